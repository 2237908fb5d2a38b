//! The configuration file as written: every key optional, unknown keys
//! refused, parsed from JSON, TOML or YAML with the position of any error.

use super::error::ConfigError;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// The configuration as written in a file (or in `RAFT_*` variables).
/// Values whose checks need context (durations, addresses, ranges) are kept
/// as written and checked in one place, so every message names the key.
#[derive(Clone, Debug, Default, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawConfig {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cluster_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub initial_cluster_state: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub data_dir: Option<PathBuf>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub groups: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tick: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub election_ticks: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub timeout: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub aggregate: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub log_level: Option<RawLogLevel>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub log_format: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub listen_address: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub metrics_address: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub snapshot_threshold: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_message_bytes: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_connections: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls: Option<RawTls>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub admin_token_file: Option<PathBuf>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub peers: Option<Vec<RawPeer>>,
}

/// `log_level`: 0-5 as in the original program, or a level's name.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(untagged)]
pub enum RawLogLevel {
    Number(u64),
    Name(String),
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawTls {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cert: Option<PathBuf>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key: Option<PathBuf>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ca: Option<PathBuf>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_cert_auth: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub metrics: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub admin_names: Option<Vec<String>>,
}

/// One peer, with the original program's keys.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawPeer {
    pub pid: u64,
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ip_address: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub domain: Option<String>,
    pub port: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metrics_port: Option<u64>,
}

/// The file formats, told apart by extension.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    Json,
    Toml,
    Yaml,
}

impl Format {
    /// The extensions searched, in order of preference.
    pub const EXTENSIONS: [&'static str; 4] = ["json", "toml", "yaml", "yml"];

    pub fn from_path(path: &Path) -> Option<Format> {
        match path.extension()?.to_str()?.to_ascii_lowercase().as_str() {
            "json" => Some(Format::Json),
            "toml" => Some(Format::Toml),
            "yaml" | "yml" => Some(Format::Yaml),
            _ => None,
        }
    }
}

/// Parses a file's text. `path` is only for messages. Errors carry the
/// position when the format reports one, and the key path (`peers[1].port`)
/// for errors about a value.
pub fn parse(text: &str, format: Format, path: &Path) -> Result<RawConfig, ConfigError> {
    let error = |key: String, line: Option<usize>, column: Option<usize>, message: &str| {
        let message = if key.is_empty() || key == "." {
            message.to_string()
        } else {
            format!("{key}: {message}")
        };
        ConfigError::Parse {
            path: path.to_path_buf(),
            line,
            column,
            message,
        }
    };
    match format {
        Format::Json => {
            let mut de = serde_json::Deserializer::from_str(text);
            let raw: RawConfig = serde_path_to_error::deserialize(&mut de).map_err(|e| {
                let key = e.path().to_string();
                let e = e.into_inner();
                let (line, column) = (e.line(), e.column());
                let full = e.to_string();
                let suffix = format!(" at line {line} column {column}");
                let message = full.strip_suffix(&suffix).unwrap_or(&full);
                let known = line > 0;
                error(key, known.then_some(line), known.then_some(column), message)
            })?;
            de.end().map_err(|e| {
                error(
                    String::new(),
                    Some(e.line()),
                    Some(e.column()),
                    "trailing characters after the configuration",
                )
            })?;
            Ok(raw)
        }
        Format::Toml => {
            let toml_error = |key: String, e: toml::de::Error| {
                let (line, column) = match e.span() {
                    Some(span) => {
                        let (l, c) = line_column(text, span.start);
                        (Some(l), Some(c))
                    }
                    None => (None, None),
                };
                // A syntax error has no key path: name the key the line sets.
                let key = match (key.is_empty(), line) {
                    (true, Some(l)) => toml_key_on_line(text, l).unwrap_or_default(),
                    _ => key,
                };
                error(key, line, column, e.message().trim())
            };
            let de = toml::Deserializer::parse(text).map_err(|e| toml_error(String::new(), e))?;
            serde_path_to_error::deserialize(de)
                .map_err(|e| toml_error(e.path().to_string(), e.into_inner()))
        }
        Format::Yaml => {
            let yaml_error = |key: String, e: serde_saphyr::Error| {
                let (line, column) = match e.location() {
                    Some(l) => (Some(l.line() as usize), Some(l.column() as usize)),
                    None => (None, None),
                };
                // The first line is "error: line L column C: message"; the
                // rest is a source snippet.
                let full = e.to_string();
                let first = full.lines().next().unwrap_or_default();
                let first = first.strip_prefix("error: ").unwrap_or(first);
                let message = match first.strip_prefix("line ") {
                    Some(rest) => rest.split_once(": ").map_or(first, |(_, m)| m),
                    None => first,
                };
                error(key, line, column, message)
            };
            // The wrapper must see the error to stop reading, so the key
            // path leaves the closure on the side.
            let mut key = String::new();
            serde_saphyr::with_deserializer_from_str(text, |de| {
                serde_path_to_error::deserialize::<_, RawConfig>(de).map_err(|e| {
                    key = e.path().to_string();
                    e.into_inner()
                })
            })
            .map_err(|e| yaml_error(key.clone(), e))
        }
    }
}

/// The dotted key that 1-based `line` of a TOML text assigns (`key = ...`),
/// inside the table opened last before it (`[t]`, `[[t]]`), if it
/// assigns one.
fn toml_key_on_line(text: &str, line: usize) -> Option<String> {
    let mut table = String::new();
    for (i, l) in text.lines().enumerate().take(line) {
        let l = l.trim();
        if i + 1 == line {
            let (key, _) = l.split_once('=')?;
            let key = key.trim().trim_matches('"');
            if key.is_empty() || key.starts_with('#') {
                return None;
            }
            return Some(if table.is_empty() {
                key.to_string()
            } else {
                format!("{table}.{key}")
            });
        }
        if let Some(header) = l.strip_prefix('[') {
            table = header
                .trim_start_matches('[')
                .split(']')
                .next()
                .unwrap_or_default()
                .trim()
                .to_string();
        }
    }
    None
}

/// 1-based line and column (in characters) of a byte offset.
fn line_column(text: &str, offset: usize) -> (usize, usize) {
    let before = text.get(..offset).unwrap_or(text);
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    (line, before[line_start..].chars().count() + 1)
}
