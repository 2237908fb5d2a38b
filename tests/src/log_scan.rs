//! Reading what replicas logged: the wall-clock time of a line (the text
//! format starts each line with an RFC 3339 UTC timestamp, e.g.
//! `2026-12-02T15:58:41.649760Z`) and the first line of interest after a
//! moment. Used to time events inside the replicas (an election won) from
//! outside, without polling them.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// The time at the start of a log line, if it has one.
pub fn line_time(line: &str) -> Option<SystemTime> {
    let stamp = line.split_whitespace().next()?.strip_suffix('Z')?;
    let (date, time) = stamp.split_once('T')?;
    let mut ymd = date.split('-').map(str::parse::<i64>);
    let (year, month, day) = (ymd.next()?.ok()?, ymd.next()?.ok()?, ymd.next()?.ok()?);
    let (hms, fraction) = time.split_once('.').unwrap_or((time, ""));
    let mut parts = hms.split(':').map(str::parse::<u64>);
    let (h, m, s) = (
        parts.next()?.ok()?,
        parts.next()?.ok()?,
        parts.next()?.ok()?,
    );
    if !(1..=12).contains(&month) || !(1..=31).contains(&day) || h > 23 || m > 59 || s > 60 {
        return None;
    }
    let digits: String = fraction.chars().take(9).collect();
    let nanos: u32 = if digits.is_empty() {
        0
    } else {
        format!("{digits:0<9}").parse().ok()?
    };
    let days = u64::try_from(days_from_civil(year, month, day)).ok()?;
    let secs = days * 86_400 + h * 3600 + m * 60 + s;
    Some(UNIX_EPOCH + Duration::new(secs, nanos))
}

/// Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant).
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = if y >= 0 { y } else { y - 399 } / 400;
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The time of the first line at or after `since` that contains every
/// one of `needles`.
pub fn first_after(log: &str, since: SystemTime, needles: &[&str]) -> Option<SystemTime> {
    log.lines()
        .filter(|l| needles.iter().all(|n| l.contains(n)))
        .filter_map(line_time)
        .find(|t| *t >= since)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_of_the_replicas_text_logs_parse() {
        let t = line_time("2026-12-02T15:58:41.649760Z  INFO kuberaft::node: x").unwrap();
        let d = t.duration_since(UNIX_EPOCH).unwrap();
        // date -u -d 2026-12-02T15:58:41Z +%s
        assert_eq!(d.as_secs(), 1_796_227_121);
        assert_eq!(d.subsec_micros(), 649_760);
        assert_eq!(
            line_time("1970-01-01T00:00:00Z x").unwrap(),
            UNIX_EPOCH,
            "no fraction"
        );
        assert!(line_time("   at frame 3").is_none());
        assert!(line_time("2026-13-02T00:00:00Z bad month").is_none());
    }

    #[test]
    fn the_first_matching_line_after_a_moment_is_found() {
        let log = "2026-12-02T15:58:40.000000Z  INFO leader known group=0 role=Leader\n\
                   2026-12-02T15:58:41.000000Z  INFO leader known group=0 role=Follower\n\
                   2026-12-02T15:58:42.500000Z  INFO leader known group=0 role=Leader\n";
        let since = line_time("2026-12-02T15:58:40.500000Z").unwrap();
        let found = first_after(log, since, &["group=0", "role=Leader"]).unwrap();
        assert_eq!(found, line_time("2026-12-02T15:58:42.500000Z").unwrap());
        assert!(first_after(log, found + Duration::from_millis(1), &["role=Leader"]).is_none());
    }
}
