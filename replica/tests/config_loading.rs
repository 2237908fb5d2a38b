//! Loading the replica's configuration: the original format, the three file
//! formats, every validation message, environment overrides, search order.

/// Named so that `cargo test config` selects these tests.
mod config {
    use kuberaft::config::{
        Config, ConfigError, Format, InitialClusterState, LogFormat, LogLevel, Sources, load,
        load_text,
    };
    use kuberaft::raft::NodeId;
    use std::collections::BTreeMap;
    use std::net::SocketAddr;
    use std::path::{Path, PathBuf};
    use std::time::Duration;

    fn fixture(name: &str) -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures/config")
            .join(name)
    }

    /// Sources that search only inside `dir` (never the real home or /etc).
    fn sources_in(dir: &Path) -> Sources {
        Sources {
            path: None,
            name: None,
            env: BTreeMap::new(),
            cwd: dir.join("cwd"),
            home: Some(dir.join("home")),
            etc: dir.join("etc"),
        }
    }

    fn with_file(path: PathBuf) -> Sources {
        Sources {
            path: Some(path),
            ..sources_in(Path::new("/nonexistent-kuberaft-test"))
        }
    }

    fn env(vars: &[(&str, &str)]) -> BTreeMap<String, String> {
        vars.iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    const ORIGINAL: &str = r#"{ "tick": "300ms", "timeout": "100ms", "aggregate": true, "log_level": 5,
      "peers": [
        {"pid": 1, "name": "alpha", "ip_address": "127.0.0.1", "domain": "localhost", "port": 3264},
        {"pid": 2, "name": "bravo", "ip_address": "127.0.0.1", "domain": "localhost", "port": 3265},
        {"pid": 3, "name": "charlie", "ip_address": "127.0.0.1", "domain": "localhost", "port": 3266}
      ] }"#;

    /// Loads JSON text with extra environment variables and a name.
    fn try_json(text: &str, vars: &[(&str, &str)]) -> Result<Config, ConfigError> {
        let sources = Sources {
            env: env(vars),
            ..sources_in(Path::new("/nonexistent-kuberaft-test"))
        };
        load_text(text, Format::Json, Path::new("raft.json"), &sources).map(|l| l.config)
    }

    /// The original example with `name` set and one key replaced or added.
    fn original_with(key: &str, value: &str) -> String {
        let mut v: serde_json::Value = serde_json::from_str(ORIGINAL).expect("valid JSON");
        v["name"] = "alpha".into();
        v[key] = serde_json::from_str(value).expect("valid JSON value");
        v.to_string()
    }

    /// The message of an invalid configuration, which must mention each of
    /// `parts`.
    fn invalid(text: &str, vars: &[(&str, &str)], parts: &[&str]) -> String {
        let err = try_json(text, vars).expect_err("must be refused");
        assert!(matches!(err, ConfigError::Invalid { .. }), "{err:?}");
        let msg = err.to_string();
        for part in parts {
            assert!(msg.contains(part), "{part:?} missing from:\n{msg}");
        }
        msg
    }

    #[test]
    fn the_original_format_loads_unchanged() {
        let sources = Sources {
            name: Some("bravo".into()),
            ..with_file(fixture("original.json"))
        };
        let loaded = load(&sources).expect("the original example loads");
        let c = loaded.config;
        assert_eq!(c.self_id, NodeId(2));
        assert_eq!(c.name, "bravo");
        assert_eq!(c.tick, Duration::from_millis(300));
        assert_eq!(c.rpc_timeout, Duration::from_millis(100));
        assert!(c.aggregate);
        assert_eq!(c.log_level, LogLevel::Trace);
        assert_eq!(c.log_format, LogFormat::Text);
        assert_eq!(c.peers.len(), 3);
        let alpha = &c.peers[&NodeId(1)];
        assert_eq!(alpha.name, "alpha");
        assert_eq!(alpha.socket_addr(), Some("127.0.0.1:3264".parse().unwrap()));
        assert_eq!(alpha.domain.as_deref(), Some("localhost"));
        assert_eq!(alpha.endpoint(), "127.0.0.1:3264");
        // Defaults for everything kuberaft added.
        assert_eq!(
            c.listen_address,
            "127.0.0.1:3265".parse::<SocketAddr>().unwrap()
        );
        assert_eq!(
            c.metrics_address,
            "127.0.0.1:4265".parse::<SocketAddr>().unwrap()
        );
        assert_eq!(c.cluster_id, "kuberaft");
        assert_eq!(c.initial_cluster_state, InitialClusterState::New);
        assert_eq!(c.data_dir, Path::new("data/bravo"));
        assert_eq!((c.groups, c.election_ticks), (1, 10));
        assert_eq!(c.election_timeout(), Duration::from_secs(3));
        assert_eq!(c.me().id, NodeId(2));
        assert!(c.tls.is_none());
        assert!(loaded.warnings.is_empty(), "{:?}", loaded.warnings);
    }

    #[test]
    fn json_toml_and_yaml_say_the_same_thing() {
        let configs: Vec<Config> = ["full.json", "full.toml", "full.yaml"]
            .iter()
            .map(|f| {
                load(&with_file(fixture(f)))
                    .unwrap_or_else(|e| panic!("{f}: {e}"))
                    .config
            })
            .collect();
        assert_eq!(configs[0], configs[1], "json vs toml");
        assert_eq!(configs[0], configs[2], "json vs yaml");
        let c = &configs[0];
        assert_eq!((c.self_id, c.name.as_str()), (NodeId(2), "raft-1"));
        assert_eq!(c.cluster_id, "prod-eu.1");
        assert_eq!(c.initial_cluster_state, InitialClusterState::Existing);
        assert_eq!(c.data_dir, Path::new("/var/lib/raft"));
        assert_eq!((c.groups, c.election_ticks), (16, 12));
        assert_eq!(
            (c.tick, c.rpc_timeout),
            (Duration::from_millis(150), Duration::from_secs(2))
        );
        assert!(!c.aggregate);
        assert_eq!(c.log_level, LogLevel::Debug);
        assert_eq!(c.log_format, LogFormat::Json);
        assert_eq!(
            c.listen_address,
            "0.0.0.0:7000".parse::<SocketAddr>().unwrap()
        );
        assert_eq!(
            c.metrics_address,
            "0.0.0.0:9090".parse::<SocketAddr>().unwrap()
        );
        assert_eq!(
            (c.snapshot_threshold, c.max_message_bytes),
            (50_000, 16 << 20)
        );
        let p0 = &c.peers[&NodeId(1)];
        assert_eq!(
            p0.socket_addr(),
            None,
            "a DNS-only peer is resolved when dialled"
        );
        assert_eq!(p0.endpoint(), "raft-0.raft-peers.db.svc:7000");
        assert_eq!(p0.metrics_port, 8000, "port + 1000 by default");
        assert_eq!(c.peers[&NodeId(3)].endpoint(), "10.0.0.12:7000");
    }

    #[test]
    fn unknown_keys_are_named_with_their_position() {
        let cases = [
            ("unknown_key.json", "heartbeat", ":3:"),
            ("unknown_key.toml", "adress", ":7:1"),
            ("unknown_key.yaml", "keyfile", ":8:"),
        ];
        for (file, key, position) in cases {
            let err = load(&with_file(fixture(file))).expect_err(file);
            assert!(matches!(err, ConfigError::Parse { .. }), "{file}: {err:?}");
            let msg = err.to_string();
            assert!(msg.contains(&format!("unknown field `{key}`")), "{msg}");
            assert!(
                msg.contains(file) && msg.contains(position),
                "{file}: {msg}"
            );
        }
    }

    #[test]
    fn type_errors_have_a_position_in_every_format() {
        let err = load(&with_file(fixture("wrong_type.yaml"))).unwrap_err();
        let ConfigError::Parse { line, .. } = &err else {
            panic!("{err:?}")
        };
        assert_eq!(*line, Some(2), "{err}");
        assert!(
            err.to_string().contains("groups: "),
            "the key is named: {err}"
        );
        let err = try_json("{\n  \"groups\": \"four\"\n}", &[]).unwrap_err();
        assert!(err.to_string().contains("raft.json:2:"), "{err}");
        assert!(err.to_string().contains("groups: invalid type"), "{err}");
        let err =
            try_json(r#"{"peers": [{"pid": 1, "name": "a", "port": "x"}]}"#, &[]).unwrap_err();
        assert!(err.to_string().contains("peers[0].port: "), "{err}");
        let sources = sources_in(Path::new("/nonexistent-kuberaft-test"));
        let err = load_text(
            "groups = 1\ntick = 3\n",
            Format::Toml,
            Path::new("r.toml"),
            &sources,
        )
        .unwrap_err();
        assert!(err.to_string().starts_with("r.toml:2:"), "{err}");
        assert!(err.to_string().contains("tick: "), "{err}");
        let err = load_text("tick = \n", Format::Toml, Path::new("r.toml"), &sources).unwrap_err();
        assert!(
            err.to_string().starts_with("r.toml:1:"),
            "a syntax error: {err}"
        );
        // A syntax error names the key of its line, inside its table.
        let err = load_text(
            "name = \"a\"\ntick = 300ms\n",
            Format::Toml,
            Path::new("r.toml"),
            &sources,
        )
        .unwrap_err();
        assert!(err.to_string().contains("r.toml:2:"), "{err}");
        assert!(err.to_string().contains("tick"), "{err}");
        let err = load_text(
            "name = \"a\"\n[[peers]]\npid = 1\nport = 32x\n",
            Format::Toml,
            Path::new("r.toml"),
            &sources,
        )
        .unwrap_err();
        assert!(err.to_string().contains("peers.port"), "{err}");
        let err = load_text("peers: [\n", Format::Yaml, Path::new("r.yaml"), &sources).unwrap_err();
        assert!(
            err.to_string().starts_with("r.yaml:"),
            "a syntax error: {err}"
        );
        let err = try_json("{\"tick\": ", &[]).unwrap_err();
        assert!(err.to_string().contains("raft.json:1:"), "{err}");
    }

    #[test]
    fn a_missing_or_unknown_name_lists_the_peers() {
        invalid(
            ORIGINAL,
            &[],
            &[
                "name = (not set)",
                "-n NAME",
                "RAFT_NAME",
                "alpha, bravo, charlie",
            ],
        );
        let msg = invalid(
            &original_with("name", "\"delta\""),
            &[],
            &[
                "name = \"delta\"",
                "not the name of any peer",
                "alpha, bravo, charlie",
            ],
        );
        assert!(!msg.contains("(from"), "{msg}");
        invalid(
            ORIGINAL,
            &[("RAFT_NAME", "echo")],
            &["name = \"echo\" (from RAFT_NAME)"],
        );
    }

    #[test]
    fn every_bad_value_is_named_with_a_fix() {
        // (key, value, what the message must say)
        let cases: &[(&str, &str, &[&str])] = &[
            ("tick", "\"0s\"", &["tick = \"0s\"", "longer than zero"]),
            (
                "tick",
                "\"fast\"",
                &["tick = \"fast\"", "not a duration", "\"300ms\""],
            ),
            (
                "timeout",
                "\"0ms\"",
                &["timeout = \"0ms\"", "longer than zero"],
            ),
            (
                "election_ticks",
                "1",
                &["election_ticks = 1", "between 2 and 1000000", "use 10"],
            ),
            ("election_ticks", "0", &["election_ticks = 0"]),
            (
                "election_ticks",
                "4294967295",
                &["election_ticks = 4294967295", "between 2 and 1000000"],
            ),
            ("tick", "\"1000y\"", &["tick = \"1000y\"", "at most 1m"]),
            ("timeout", "\"2h\"", &["timeout = \"2h\"", "at most 1h"]),
            ("groups", "0", &["groups = 0", "between 1 and 1024"]),
            ("groups", "1025", &["groups = 1025", "between 1 and 1024"]),
            ("log_level", "6", &["log_level = 6", "0-5"]),
            ("log_level", "\"loud\"", &["log_level = \"loud\"", "trace"]),
            ("log_format", "\"xml\"", &["log_format = \"xml\"", "json"]),
            (
                "initial_cluster_state",
                "\"old\"",
                &["initial_cluster_state = \"old\"", "\"new\"", "\"existing\""],
            ),
            (
                "cluster_id",
                "\"no spaces\"",
                &["cluster_id = \"no spaces\"", "letters, digits"],
            ),
            ("cluster_id", "\"\"", &["cluster_id = \"\""]),
            ("data_dir", "\"\"", &["data_dir = \"\"", "is empty"]),
            (
                "listen_address",
                "\"localhost\"",
                &["listen_address = \"localhost\"", "0.0.0.0:3264"],
            ),
            (
                "listen_address",
                "\"0.0.0.0:0\"",
                &["listen_address = \"0.0.0.0:0\"", "port 0"],
            ),
            (
                "metrics_address",
                "\"127.0.0.1:3264\"",
                &[
                    "metrics_address = \"127.0.0.1:3264\"",
                    "same as listen_address",
                ],
            ),
            (
                "snapshot_threshold",
                "0",
                &["snapshot_threshold = 0", "at least 1"],
            ),
            (
                "max_message_bytes",
                "1024",
                &["max_message_bytes = 1024", "largest command"],
            ),
            (
                "tls",
                r#"{"cert": "/nonexistent/cert.pem"}"#,
                &[
                    "tls.cert = \"/nonexistent/cert.pem\"",
                    "not a readable file",
                    "tls.key = (not set)",
                    "give both tls.cert and tls.key",
                ],
            ),
            ("peers", "[]", &["peers = []", "no peers are configured"]),
        ];
        for (key, value, parts) in cases {
            invalid(&original_with(key, value), &[], parts);
        }
    }

    #[test]
    fn bad_peers_are_named_by_position() {
        let peers = |list: &str| original_with("peers", list);
        let p = |pid: u64, name: &str, ip: &str, port: u64| {
            format!(r#"{{"pid": {pid}, "name": "{name}", "ip_address": "{ip}", "port": {port}}}"#)
        };
        let alpha = p(1, "alpha", "127.0.0.1", 3264);
        let cases: Vec<(String, Vec<&str>)> = vec![
            (
                format!("[{alpha}, {}]", p(0, "b", "127.0.0.2", 1)),
                vec!["peers[1].pid = 0", "start at 1"],
            ),
            (
                format!("[{alpha}, {}]", p(1, "b", "127.0.0.2", 1)),
                vec!["peers[1].pid = 1", "used by another peer"],
            ),
            (
                format!("[{alpha}, {}]", p(2, "alpha", "127.0.0.2", 1)),
                vec!["peers[1].name = \"alpha\"", "distinct name"],
            ),
            (
                format!("[{alpha}, {}]", p(2, "b", "127.0.0.1", 3264)),
                vec![
                    "peers[1].port = 3264",
                    "127.0.0.1:3264 is the address of another peer",
                ],
            ),
            (
                format!("[{alpha}, {}]", p(2, "b", "127.0.0.2", 0)),
                vec!["peers[1].port = 0", "between 1 and 65535"],
            ),
            (
                format!("[{alpha}, {}]", p(2, "b", "127.0.0.2", 70000)),
                vec!["peers[1].port = 70000"],
            ),
            (
                format!("[{alpha}, {}]", p(2, "b", "0.0.0.0", 5)),
                vec!["peers[1].ip_address = \"0.0.0.0\"", "unspecified"],
            ),
            (
                format!("[{alpha}, {}]", p(2, "b", "10.0.0.300", 5)),
                vec!["peers[1].ip_address = \"10.0.0.300\"", "not an IP address"],
            ),
            (
                format!("[{alpha}, {}]", p(2, "has space", "10.0.0.3", 5)),
                vec!["peers[1].name = \"has space\""],
            ),
            (
                format!(r#"[{alpha}, {{"pid": 2, "name": "b", "port": 5}}]"#),
                vec!["peers[1] = \"b\"", "neither ip_address nor domain"],
            ),
            (
                format!(r#"[{alpha}, {{"pid": 2, "name": "b", "domain": "", "port": 5}}]"#),
                vec!["peers[1].domain = \"\""],
            ),
            (
                format!(r#"[{alpha}, {{"pid": 2, "name": "b", "domain": "x", "port": 65000}}]"#),
                vec!["peers[1].metrics_port = (not set)", "port + 1000"],
            ),
        ];
        for (list, parts) in &cases {
            invalid(&peers(list), &[], parts);
        }
    }

    #[test]
    fn all_problems_are_reported_at_once() {
        let mut v: serde_json::Value = serde_json::from_str(ORIGINAL).unwrap();
        v["name"] = "alpha".into();
        v["tick"] = "0s".into();
        v["groups"] = 0.into();
        let msg = invalid(&v.to_string(), &[], &["tick = \"0s\"", "groups = 0"]);
        assert_eq!(msg.lines().count(), 3, "{msg}");
    }

    /// A CA and certificates in a directory, for the TLS settings.
    struct Pki {
        dir: PathBuf,
        authority: kuberaft::security::issue::Authority,
        ca: PathBuf,
    }

    impl Pki {
        fn new(dir: &Path) -> Pki {
            let authority = kuberaft::security::issue::Authority::new("test CA").unwrap();
            let ca = dir.join("ca.pem");
            std::fs::write(&ca, authority.cert_pem()).unwrap();
            Pki {
                dir: dir.to_path_buf(),
                authority,
                ca,
            }
        }

        fn cert(&self, name: &str) -> (PathBuf, PathBuf) {
            let issued = self
                .authority
                .issue(
                    name,
                    &[name.to_string()],
                    kuberaft::security::issue::Usage::Replica,
                )
                .unwrap();
            let cert = self.dir.join(format!("{name}.crt"));
            let key = self.dir.join(format!("{name}.key"));
            std::fs::write(&cert, issued.cert_pem).unwrap();
            std::fs::write(&key, issued.key_pem).unwrap();
            (cert, key)
        }
    }

    #[test]
    fn tls_problems_are_named_with_the_fix() {
        let dir = tempfile::tempdir().unwrap();
        let pki = Pki::new(dir.path());
        let (cert, key) = pki.cert("alpha");
        let (_, other_key) = pki.cert("bravo");
        let garbage = dir.path().join("garbage.pem");
        std::fs::write(&garbage, "not a certificate").unwrap();
        let tls = |cert: &Path, key: &Path, ca: Option<&Path>, more: &str| {
            let ca = ca.map_or(String::new(), |ca| format!(r#", "ca": {:?}"#, ca));
            original_with(
                "tls",
                &format!(r#"{{"cert": {cert:?}, "key": {key:?}{ca}{more}}}"#),
            )
        };
        let ca = Some(pki.ca.as_path());
        invalid(
            &tls(&cert, &key, None, ""),
            &[],
            &[
                "tls.ca = (not set)",
                "required when TLS is configured",
                "mutual TLS",
            ],
        );
        invalid(
            &tls(dir.path(), &key, ca, ""),
            &[],
            &["tls.cert = ", "is not a readable file"],
        );
        invalid(
            &tls(&garbage, &key, ca, ""),
            &[],
            &["tls.cert = ", "holds no certificate", "BEGIN CERTIFICATE"],
        );
        invalid(
            &tls(&cert, &garbage, ca, ""),
            &[],
            &["tls.key = ", "no usable private key"],
        );
        invalid(
            &tls(&cert, &other_key, ca, ""),
            &[],
            &[
                "tls.key = ",
                "does not belong to the certificate in tls.cert",
            ],
        );
        invalid(
            &tls(&cert, &key, Some(&garbage), ""),
            &[],
            &["tls.ca = ", "holds no certificate"],
        );
        invalid(
            &tls(
                &cert,
                &key,
                ca,
                r#", "admin_names": ["ok", "two words", ""]"#,
            ),
            &[],
            &[
                "tls.admin_names[1] = \"two words\"",
                "tls.admin_names[2] = \"\"",
                "is not a certificate name",
            ],
        );
        let empty = dir.path().join("empty-token");
        std::fs::write(&empty, "  \n").unwrap();
        let mut v: serde_json::Value = serde_json::from_str(&tls(&cert, &key, ca, "")).unwrap();
        v["admin_token_file"] = empty.to_str().unwrap().into();
        invalid(&v.to_string(), &[], &["admin_token_file = ", "is empty"]);
        v["admin_token_file"] = "/nonexistent/token".into();
        invalid(&v.to_string(), &[], &["admin_token_file = ", "cannot read"]);
        invalid(
            &original_with("max_connections", "3"),
            &[],
            &["max_connections = 3", "must be between 16"],
        );
        // And the good one loads, with the defaults.
        let c = try_json(&tls(&cert, &key, ca, ""), &[]).expect("valid TLS settings");
        let t = c.tls.expect("tls");
        assert_eq!(t.admin_names, ["raft-operator", "admin"]);
        assert!(!t.client_cert_auth && !t.metrics);
    }

    #[test]
    fn the_environment_overrides_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let pki = Pki::new(dir.path());
        let (cert, key) = pki.cert("charlie");
        let ca = pki.ca.clone();
        let token = dir.path().join("token");
        std::fs::write(&token, "t0ken\n").unwrap();
        let c = try_json(
            ORIGINAL,
            &[
                ("RAFT_NAME", "charlie"),
                ("RAFT_TICK", "200ms"),
                ("RAFT_TIMEOUT", "1s"),
                ("RAFT_AGGREGATE", "false"),
                ("RAFT_LOG_LEVEL", "debug"),
                ("RAFT_DATA_DIR", "/data/raft"),
                ("RAFT_GROUPS", "8"),
                ("RAFT_ELECTION_TICKS", "20"),
                ("RAFT_CLUSTER_ID", "staging"),
                ("RAFT_INITIAL_CLUSTER_STATE", "existing"),
                ("RAFT_LISTEN_ADDRESS", "0.0.0.0:3266"),
                ("RAFT_METRICS_ADDRESS", "0.0.0.0:9100"),
                ("RAFT_SNAPSHOT_THRESHOLD", "123"),
                ("RAFT_MAX_MESSAGE_BYTES", "4194304"),
                ("RAFT_TLS_CERT", cert.to_str().unwrap()),
                ("RAFT_TLS_KEY", key.to_str().unwrap()),
                ("RAFT_TLS_CA", ca.to_str().unwrap()),
                ("RAFT_TLS_CLIENT_CERT_AUTH", "true"),
                ("RAFT_TLS_ADMIN_NAMES", "ops, admin"),
                ("RAFT_ADMIN_TOKEN_FILE", token.to_str().unwrap()),
                ("RAFT_MAX_CONNECTIONS", "100"),
                ("PATH", "/usr/bin"),
            ],
        )
        .expect("loads");
        assert_eq!((c.name.as_str(), c.self_id), ("charlie", NodeId(3)));
        assert_eq!(c.tick, Duration::from_millis(200));
        assert_eq!(c.rpc_timeout, Duration::from_secs(1));
        assert!(!c.aggregate);
        assert_eq!(c.log_level, LogLevel::Debug);
        assert_eq!(c.data_dir, Path::new("/data/raft"));
        assert_eq!((c.groups, c.election_ticks), (8, 20));
        assert_eq!(c.cluster_id, "staging");
        assert_eq!(c.initial_cluster_state, InitialClusterState::Existing);
        assert_eq!(c.listen_address.to_string(), "0.0.0.0:3266");
        assert_eq!(c.metrics_address.to_string(), "0.0.0.0:9100");
        assert_eq!((c.snapshot_threshold, c.max_message_bytes), (123, 4 << 20));
        assert_eq!(c.max_connections, 100);
        assert_eq!(c.admin_token_file.as_deref(), Some(token.as_path()));
        let tls = c.tls.expect("tls from the environment");
        assert_eq!((tls.cert, tls.key, tls.ca), (cert, key, ca));
        assert!(tls.client_cert_auth && !tls.metrics);
        assert_eq!(tls.admin_names, ["ops", "admin"]);

        let c = try_json(
            ORIGINAL,
            &[
                ("RAFT_NAME", "solo"),
                (
                    "RAFT_PEERS",
                    r#"[{"pid": 9, "name": "solo", "domain": "solo.local", "port": 1}]"#,
                ),
                ("RAFT_LOG_LEVEL", "2"),
            ],
        )
        .expect("peers from the environment");
        assert_eq!(c.peers.keys().copied().collect::<Vec<_>>(), [NodeId(9)]);
        assert_eq!(c.log_level, LogLevel::Warn);
    }

    #[test]
    fn environment_mistakes_are_named() {
        let err =
            try_json(ORIGINAL, &[("RAFT_NAME", "alpha"), ("RAFT_GROUPS", "many")]).unwrap_err();
        assert!(matches!(err, ConfigError::Env { .. }), "{err:?}");
        assert!(err.to_string().contains("RAFT_GROUPS=\"many\""), "{err}");
        let err = try_json(ORIGINAL, &[("RAFT_PEERS", "[{\"pid\": 1}")]).unwrap_err();
        assert!(err.to_string().contains("RAFT_PEERS"), "{err}");
        invalid(
            ORIGINAL,
            &[("RAFT_NAME", "alpha"), ("RAFT_GROUPS", "0")],
            &["groups = 0 (from RAFT_GROUPS)"],
        );
        invalid(
            ORIGINAL,
            &[("RAFT_NAME", "alpha"), ("RAFT_TLS_CA", "/nope.pem")],
            &["tls.ca = \"/nope.pem\" (from RAFT_TLS_CA)"],
        );
    }

    #[test]
    fn unknown_raft_variables_are_warnings_not_errors() {
        // Kubernetes injects RAFT_PORT, RAFT_SERVICE_HOST... for a Service
        // named raft.
        let sources = Sources {
            env: env(&[
                ("RAFT_NAME", "alpha"),
                ("RAFT_PORT", "tcp://10.0.0.1:3264"),
                ("RAFT_TIKC", "1s"),
            ]),
            ..sources_in(Path::new("/nonexistent-kuberaft-test"))
        };
        let loaded = load_text(ORIGINAL, Format::Json, Path::new("raft.json"), &sources).unwrap();
        assert_eq!(loaded.warnings.len(), 2, "{:?}", loaded.warnings);
        assert!(loaded.warnings.iter().any(|w| w.contains("RAFT_TIKC")));
    }

    #[test]
    fn the_command_line_name_wins() {
        let sources = Sources {
            name: Some("alpha".into()),
            env: env(&[("RAFT_NAME", "bravo")]),
            ..with_file(fixture("original.json"))
        };
        assert_eq!(load(&sources).unwrap().config.self_id, NodeId(1));
        let sources = Sources {
            name: Some("zulu".into()),
            ..with_file(fixture("original.json"))
        };
        let msg = load(&sources).unwrap_err().to_string();
        assert!(msg.contains("name = \"zulu\" (from -n)"), "{msg}");
    }

    fn write(path: &Path, text: &str) {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, text).unwrap();
    }

    fn named(name: &str) -> String {
        original_with("name", &format!("{name:?}"))
    }

    #[test]
    fn the_search_order_is_cwd_then_home_then_etc() {
        let dir = tempfile::tempdir().unwrap();
        let sources = sources_in(dir.path());
        let err = load(&sources).unwrap_err();
        let ConfigError::NotFound { tried } = &err else {
            panic!("{err:?}")
        };
        assert_eq!(tried.len(), 12);
        assert_eq!(tried[0], dir.path().join("cwd/raft.json"));
        assert_eq!(tried[4], dir.path().join("home/.raft.json"));
        assert_eq!(tried[11], dir.path().join("etc/raft.yml"));
        let msg = err.to_string();
        assert!(
            msg.contains("cwd/raft.toml") && msg.contains("-c PATH"),
            "{msg}"
        );

        write(&dir.path().join("etc/raft.yml"), "name: charlie\n");
        let loaded = load(&sources).unwrap_err();
        assert!(
            loaded.to_string().contains("etc/raft.yml"),
            "the /etc file is read: {loaded}"
        );

        write(&dir.path().join("home/.raft.json"), &named("bravo"));
        let loaded = load(&sources).unwrap();
        assert_eq!(loaded.config.name, "bravo");
        assert_eq!(loaded.path, dir.path().join("home/.raft.json"));
        assert_eq!(loaded.warnings.len(), 1, "{:?}", loaded.warnings);

        write(&dir.path().join("cwd/raft.yaml"), &named("alpha"));
        write(&dir.path().join("cwd/raft.toml"), "name = \"charlie\"\n");
        let err = load(&sources).unwrap_err();
        assert!(
            err.to_string().contains("cwd/raft.toml"),
            "toml comes before yaml: {err}"
        );
        std::fs::remove_file(dir.path().join("cwd/raft.toml")).unwrap();
        let loaded = load(&sources).unwrap();
        assert_eq!(loaded.config.name, "alpha");

        // -c wins over every searched file.
        let explicit = dir.path().join("elsewhere/my.json");
        write(&explicit, &named("charlie"));
        let loaded = load(&Sources {
            path: Some(explicit.clone()),
            ..sources
        })
        .unwrap();
        assert_eq!(
            (loaded.config.name.as_str(), loaded.path),
            ("charlie", explicit)
        );
    }

    #[test]
    fn an_explicit_path_must_exist_and_have_a_known_extension() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("missing.json");
        let err = load(&with_file(missing.clone())).unwrap_err();
        assert!(matches!(err, ConfigError::Read { .. }));
        assert!(
            err.to_string().contains(&missing.display().to_string()),
            "{err}"
        );
        let ini = dir.path().join("raft.ini");
        write(&ini, "tick=1s");
        let err = load(&with_file(ini)).unwrap_err();
        assert!(
            err.to_string().contains("*.json, *.toml, *.yaml or *.yml"),
            "{err}"
        );
    }

    #[test]
    fn to_json_pretty_writes_a_file_that_loads_back_the_same() {
        let dir = tempfile::tempdir().unwrap();
        let pki = Pki::new(dir.path());
        let (cert, key) = pki.cert("alpha");
        for (file, name) in [("original.json", "alpha"), ("full.yaml", "raft-1")] {
            let sources = Sources {
                name: Some(name.into()),
                env: env(&[(
                    "RAFT_TLS",
                    &format!(
                        r#"{{"cert":{:?},"key":{:?},"ca":{:?}}}"#,
                        cert.display().to_string(),
                        key.display().to_string(),
                        pki.ca.display().to_string()
                    ),
                )]),
                ..with_file(fixture(file))
            };
            let first = load(&sources).unwrap().config;
            let text = first.to_json_pretty();
            let again = load_text(
                &text,
                Format::Json,
                Path::new("raft.json"),
                &sources_in(Path::new("/nonexistent-kuberaft-test")),
            )
            .unwrap_or_else(|e| panic!("{e}\n{text}"))
            .config;
            assert_eq!(again, first, "{text}");
            assert!(text.contains("\"tick\": \""), "{text}");
        }
    }
}
