//! Size limits on keys and values.
//!
//! The API layer calls these checks before proposing, so a client learns of
//! an oversized request without it entering the log; the state machine checks
//! again on apply, so a command that slipped through (an older or buggy
//! proposer) fails the same way on every replica. The limits are constants on
//! purpose: they decide the outcome of applied commands, and replicas that
//! disagreed on them would diverge. Raising one is a compatible change only
//! once every replica runs the new version.

use thiserror::Error;

/// The largest key, in bytes.
pub const MAX_KEY_BYTES: usize = 4 * 1024;
/// The largest value, in bytes.
pub const MAX_VALUE_BYTES: usize = 1024 * 1024;
/// The largest encoded command: a compare-and-swap carrying a maximal key
/// and two maximal values, plus its header. A transport message must be able
/// to carry at least this much (see `max_message_bytes` in the configuration).
pub const MAX_COMMAND_BYTES: usize = MAX_KEY_BYTES + 2 * MAX_VALUE_BYTES + 64;
/// The most entries one scan returns, whatever limit the caller asks for.
pub const MAX_SCAN_LIMIT: usize = 10_000;
/// A scan stops once its page holds this many key and value bytes (it always
/// returns at least one entry, so progress is guaranteed).
pub const MAX_SCAN_BYTES: usize = 4 * 1024 * 1024;

/// A key or value outside the limits.
#[derive(Clone, Debug, PartialEq, Eq, Error)]
pub enum LimitError {
    #[error("the key is empty; keys must hold at least one byte")]
    EmptyKey,
    #[error("the key is {len} bytes, more than the limit of {max} bytes; use a shorter key")]
    KeyTooLarge { len: usize, max: usize },
    #[error(
        "the value is {len} bytes, more than the limit of {max} bytes; split it over several keys"
    )]
    ValueTooLarge { len: usize, max: usize },
}

/// Checks a key for a write or a point read.
pub fn validate_key(key: &[u8]) -> Result<(), LimitError> {
    if key.is_empty() {
        return Err(LimitError::EmptyKey);
    }
    if key.len() > MAX_KEY_BYTES {
        return Err(LimitError::KeyTooLarge {
            len: key.len(),
            max: MAX_KEY_BYTES,
        });
    }
    Ok(())
}

/// Checks a value to be written (or compared against).
pub fn validate_value(value: &[u8]) -> Result<(), LimitError> {
    if value.len() > MAX_VALUE_BYTES {
        return Err(LimitError::ValueTooLarge {
            len: value.len(),
            max: MAX_VALUE_BYTES,
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_are_inclusive() {
        assert_eq!(validate_key(&[1; MAX_KEY_BYTES]), Ok(()));
        assert_eq!(
            validate_key(&[1; MAX_KEY_BYTES + 1]),
            Err(LimitError::KeyTooLarge {
                len: MAX_KEY_BYTES + 1,
                max: MAX_KEY_BYTES
            })
        );
        assert_eq!(validate_key(b""), Err(LimitError::EmptyKey));
        assert_eq!(validate_value(&[]), Ok(()));
        assert_eq!(validate_value(&vec![0; MAX_VALUE_BYTES]), Ok(()));
        assert!(matches!(
            validate_value(&vec![0; MAX_VALUE_BYTES + 1]),
            Err(LimitError::ValueTooLarge { .. })
        ));
    }

    #[test]
    fn errors_say_what_to_do() {
        let msg = validate_value(&vec![0; MAX_VALUE_BYTES + 1])
            .unwrap_err()
            .to_string();
        assert!(
            msg.contains("1048577 bytes") && msg.contains("split"),
            "{msg}"
        );
    }
}
