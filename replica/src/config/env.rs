//! `RAFT_<KEY>` environment variables, applied over the file.
//!
//! Every top-level key has a variable: its name upper-cased, prefixed with
//! `RAFT_` (`RAFT_TICK=200ms`, `RAFT_DATA_DIR=/data`, `RAFT_GROUPS=4`).
//! Keys holding a list or a table take JSON (`RAFT_PEERS='[{"pid":1,...}]'`,
//! `RAFT_TLS='{"cert":...}'`); the TLS files also have their own variables
//! (`RAFT_TLS_CERT`, `RAFT_TLS_KEY`, `RAFT_TLS_CA`, `RAFT_TLS_CLIENT_CERT_AUTH`,
//! `RAFT_TLS_METRICS`, and `RAFT_TLS_ADMIN_NAMES`, comma-separated). A value is read as a
//! plain string when the key holds a string, and as JSON otherwise (so
//! `RAFT_AGGREGATE=false`, `RAFT_LOG_LEVEL=4` or `RAFT_LOG_LEVEL=debug`).
//!
//! Other `RAFT_*` variables are not errors, because Kubernetes injects
//! `<SERVICE>_PORT`, `<SERVICE>_SERVICE_HOST`... for every Service in the
//! namespace, and a Service named `raft` would make those `RAFT_*`. They are
//! reported as warnings instead, so a typo does not go unnoticed.

use super::error::ConfigError;
use super::file::{RawConfig, RawTls};
use serde::de::DeserializeOwned;
use std::collections::BTreeMap;

pub const PREFIX: &str = "RAFT_";

/// Applies the variables to `raw`. Returns the keys that were overridden
/// (for messages) and warnings about variables that match no key.
pub fn apply(
    raw: &mut RawConfig,
    env: &BTreeMap<String, String>,
) -> Result<(BTreeMap<String, String>, Vec<String>), ConfigError> {
    let mut overridden = BTreeMap::new();
    let mut warnings = Vec::new();
    // RAFT_TLS first, so RAFT_TLS_CERT and friends refine it.
    let mut vars: Vec<(&String, &String)> =
        env.iter().filter(|(k, _)| k.starts_with(PREFIX)).collect();
    vars.sort_by_key(|(k, _)| (k.as_str() != "RAFT_TLS", k.as_str()));
    for (var, value) in vars {
        let key = var[PREFIX.len()..].to_ascii_lowercase();
        let known = set(raw, &key, var, value)?;
        if known {
            overridden.insert(key, var.clone());
        } else {
            warnings.push(format!(
                "ignoring environment variable {var}: no configuration key `{key}` \
                 (keys are set with RAFT_<KEY>, e.g. RAFT_TICK)"
            ));
        }
    }
    Ok((overridden, warnings))
}

/// Sets one key; `false` if there is no such key.
fn set(raw: &mut RawConfig, key: &str, var: &str, value: &str) -> Result<bool, ConfigError> {
    macro_rules! field {
        ($field:expr) => {
            $field = Some(parse(var, value)?)
        };
    }
    match key {
        "name" => field!(raw.name),
        "cluster_id" => field!(raw.cluster_id),
        "initial_cluster_state" => field!(raw.initial_cluster_state),
        "data_dir" => field!(raw.data_dir),
        "groups" => field!(raw.groups),
        "tick" => field!(raw.tick),
        "election_ticks" => field!(raw.election_ticks),
        "timeout" => field!(raw.timeout),
        "aggregate" => field!(raw.aggregate),
        "log_level" => field!(raw.log_level),
        "log_format" => field!(raw.log_format),
        "listen_address" => field!(raw.listen_address),
        "metrics_address" => field!(raw.metrics_address),
        "snapshot_threshold" => field!(raw.snapshot_threshold),
        "max_message_bytes" => field!(raw.max_message_bytes),
        "max_connections" => field!(raw.max_connections),
        "peers" => field!(raw.peers),
        "tls" => field!(raw.tls),
        "tls_cert" => field!(raw.tls.get_or_insert_with(RawTls::default).cert),
        "tls_key" => field!(raw.tls.get_or_insert_with(RawTls::default).key),
        "tls_ca" => field!(raw.tls.get_or_insert_with(RawTls::default).ca),
        "tls_client_cert_auth" => {
            field!(raw.tls.get_or_insert_with(RawTls::default).client_cert_auth)
        }
        "tls_metrics" => field!(raw.tls.get_or_insert_with(RawTls::default).metrics),
        "tls_admin_names" => {
            raw.tls.get_or_insert_with(RawTls::default).admin_names = Some(names(var, value)?)
        }
        "admin_token_file" => field!(raw.admin_token_file),
        _ => return Ok(false),
    }
    Ok(true)
}

/// A list of names: comma-separated (`raft-operator,admin`) or JSON.
fn names(var: &str, value: &str) -> Result<Vec<String>, ConfigError> {
    if value.trim_start().starts_with('[') {
        return parse(var, value);
    }
    Ok(value
        .split(',')
        .map(|n| n.trim().to_string())
        .filter(|n| !n.is_empty())
        .collect())
}

/// Reads a value as a plain string if the key takes one, else as JSON.
fn parse<T: DeserializeOwned>(var: &str, value: &str) -> Result<T, ConfigError> {
    if let Ok(v) = serde_json::from_value(serde_json::Value::String(value.to_string())) {
        return Ok(v);
    }
    serde_json::from_str(value).map_err(|e| ConfigError::Env {
        var: var.to_string(),
        value: value.to_string(),
        message: e.to_string(),
    })
}
