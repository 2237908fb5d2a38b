//! Fuzz target `config_file`: a configuration file's text, parsed,
//! overridden from the environment and validated as `raft serve` loads it.
//!
//! Input: a mode byte, then the file's bytes. Mode `% 3` picks the format
//! (JSON, TOML, YAML); bit 4 names the replica `alpha` as `-n` would; with
//! bit 8, the bytes after the first NUL are `KEY=VALUE` lines of the
//! environment (`RAFT_*` overrides).
//!
//! Checked, whatever the bytes: loading succeeds or fails with an error,
//! never panics; what `raft serve` derives from a configuration that loads
//! (its options, a Raft core per group, timeouts) can be derived without a
//! panic; and it is written back out as JSON (what `raft local` writes) and
//! loads again to the same configuration.

use super::{split_mode, with_mode};
use crate::cli::serve::ServeOptions;
use crate::config::{self, Format, Sources};
use crate::raft::{Raft, RecoveredState};
use std::path::Path;

const FORMATS: [(Format, &str); 3] = [
    (Format::Json, "fuzz.json"),
    (Format::Toml, "fuzz.toml"),
    (Format::Yaml, "fuzz.yaml"),
];

pub fn run(data: &[u8]) {
    let Some((mode, rest)) = split_mode(data) else {
        return;
    };
    // The replica reads the file as UTF-8 text.
    let Ok(text) = std::str::from_utf8(rest) else {
        return;
    };
    let (format, name) = FORMATS[mode as usize % 3];
    let mut sources = Sources {
        name: (mode & 4 == 4).then(|| "alpha".to_string()),
        ..Sources::default()
    };
    let mut file = text;
    if mode & 8 == 8
        && let Some((head, env)) = text.split_once('\0')
    {
        file = head;
        sources.env = env
            .lines()
            .filter_map(|l| l.split_once('='))
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
    }
    let Ok(loaded) = config::load_text(file, format, Path::new(name), &sources) else {
        return;
    };
    let options = ServeOptions::from_config(&loaded.config);
    let _ = options.node.tick * 20;
    let _ = loaded.config.election_timeout();
    let mut core = Raft::new(options.node.raft.clone(), RecoveredState::default())
        .unwrap_or_else(|e| panic!("a loaded configuration gives an invalid Raft core: {e}"));
    core.tick();
    let json = loaded.config.to_json_pretty();
    let again = config::load_text(
        &json,
        Format::Json,
        Path::new("written.json"),
        &Sources::default(),
    )
    .unwrap_or_else(|e| panic!("the written configuration does not load: {e}\n{json}"));
    assert_eq!(
        again.config, loaded.config,
        "the written configuration loads differently:\n{json}"
    );
}

pub fn seeds() -> Vec<Vec<u8>> {
    let json = r#"{
  "name": "alpha",
  "tick": "300ms",
  "timeout": "100ms",
  "aggregate": true,
  "log_level": 5,
  "peers": [
    {"pid": 1, "name": "alpha",   "ip_address": "127.0.0.1", "domain": "localhost", "port": 3264},
    {"pid": 2, "name": "bravo",   "ip_address": "127.0.0.1", "domain": "localhost", "port": 3265},
    {"pid": 3, "name": "charlie", "ip_address": "127.0.0.1", "domain": "localhost", "port": 3266}
  ]
}"#;
    let toml = r#"name = "bravo"
cluster_id = "prod"
initial_cluster_state = "existing"
groups = 4
tick = "100ms"
election_ticks = 10
timeout = "2s"
data_dir = "/var/lib/raft"
max_message_bytes = 8388608

[[peers]]
pid = 1
name = "alpha"
domain = "alpha.raft.svc"
port = 3264

[[peers]]
pid = 2
name = "bravo"
ip_address = "::1"
port = 3265
"#;
    let yaml = "name: charlie\ngroups: 2\ntick: 200ms\nlog_format: json\npeers:\n  - {pid: 3, name: charlie, ip_address: 10.0.0.3, port: 3266}\n  - {pid: 1, name: alpha, ip_address: 10.0.0.1, port: 3264}\n";
    let with_env = format!("{json}\0RAFT_GROUPS=3\nRAFT_TICK=50ms\nRAFT_NAME=bravo\n");
    vec![
        with_mode(0, json.as_bytes()),
        with_mode(1, toml.as_bytes()),
        with_mode(2, yaml.as_bytes()),
        with_mode(4 | 2, yaml.as_bytes()),
        with_mode(8, with_env.as_bytes()),
    ]
}
