//! The Grafana dashboards and Prometheus alert rules, checked with real
//! tools: a real Prometheus (Debian's `prometheus` package, which
//! `.ci/run` installs) scrapes a real three-replica cluster on loopback and
//! the operator's real `/metrics` handler, and every PromQL expression of
//! the dashboards must evaluate without error and return at least one
//! series; every metric a dashboard or an alert names must be in the scrape.
//! `promtool check rules` and `promtool test rules` run on the alert rules.
//!
//! The operator cannot reconcile without a Kubernetes API server, so its
//! registry is filled by this test (one reconcile, one failure, one action,
//! the cluster gauges) and served by the operator's own router: what is
//! checked is that the names and labels the dashboards use are the ones
//! the operator exports, not the values a live operator would report.
//!
//! The dashboards and rules live under `deploy/` with identical copies in
//! the Helm chart; the copies are compared here too.

use kuberaft_operator::http::{HttpState, now_secs, router};
use kuberaft_operator::metrics::Metrics as OperatorMetrics;
use kuberaft_proto::kv::Consistency;
use kuberaft_tests::http::get;
use kuberaft_tests::{Cluster, ClusterOptions, bounded};
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::time::{Duration, Instant};

const LIMIT: Duration = Duration::from_secs(240);
/// What the test's scrape labels say, as a ServiceMonitor would in Kubernetes.
const NAMESPACE: &str = "default";
const CLUSTER: &str = "kv";
/// `$__rate_interval` in the test: a few scrapes at 1 s.
const RATE_INTERVAL: &str = "20s";

const DASHBOARDS: &[&str] = &["kuberaft-cluster.json", "kuberaft-operator.json"];

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ is inside the workspace")
        .to_path_buf()
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()))
}

/// A binary of Debian's `prometheus` package, or a message that says how to
/// get it.
fn tool(name: &str) -> PathBuf {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .map(|dir| dir.join(name))
        .find(|p| p.is_file())
        .unwrap_or_else(|| {
            panic!(
                "`{name}` is not on PATH: install Debian's prometheus package \
                 (apt-get install prometheus; .ci/run does) to run the dashboard and alert tests"
            )
        })
}

fn dashboard(name: &str) -> Value {
    let path = repo().join("deploy/dashboards").join(name);
    serde_json::from_str(&read(&path))
        .unwrap_or_else(|e| panic!("{} is not valid JSON: {e}", path.display()))
}

/// Every panel, rows' nested panels included.
fn panels(dashboard: &Value) -> Vec<&Value> {
    fn walk<'a>(list: &'a Value, out: &mut Vec<&'a Value>) {
        for p in list.as_array().into_iter().flatten() {
            out.push(p);
            walk(&p["panels"], out);
        }
    }
    let mut out = Vec::new();
    walk(&dashboard["panels"], &mut out);
    out
}

/// (panel title, expression) of every query of a dashboard.
fn expressions(dashboard: &Value) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for p in panels(dashboard) {
        for t in p["targets"].as_array().into_iter().flatten() {
            let expr = t["expr"]
                .as_str()
                .unwrap_or_else(|| panic!("a target of panel {:?} has no expr", p["title"]));
            out.push((p["title"].as_str().unwrap_or("?").to_string(), expr.into()));
        }
    }
    out
}

/// The `label_values(selector, label)` queries of the template variables.
fn variable_queries(dashboard: &Value) -> Vec<(String, String, String)> {
    let mut out = Vec::new();
    for v in dashboard["templating"]["list"]
        .as_array()
        .into_iter()
        .flatten()
    {
        if v["type"] != "query" {
            continue;
        }
        let q = v["query"]["query"]
            .as_str()
            .or_else(|| v["query"].as_str())
            .unwrap_or_else(|| panic!("variable {} has no query", v["name"]));
        let inner = q
            .strip_prefix("label_values(")
            .and_then(|r| r.strip_suffix(')'))
            .unwrap_or_else(|| panic!("variable {} is not a label_values query: {q}", v["name"]));
        let (selector, label) = inner.rsplit_once(',').unwrap_or_else(|| {
            panic!("variable {}: label_values needs a selector: {q}", v["name"])
        });
        out.push((
            v["name"].as_str().unwrap_or("?").to_string(),
            selector.trim().to_string(),
            label.trim().to_string(),
        ));
    }
    out
}

/// The expression as Grafana sends it for namespace `default`, cluster `kv`.
fn substitute(expr: &str) -> String {
    let out = expr
        .replace("$__rate_interval", RATE_INTERVAL)
        .replace("$namespace", NAMESPACE)
        .replace("$cluster", CLUSTER);
    assert!(
        !out.contains('$'),
        "{expr:?} uses a variable the dashboards do not define"
    );
    out
}

/// The kuberaft metric names an expression mentions (`raft_*`,
/// `kuberaft_operator_*`).
fn metric_names(expr: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    let bytes = expr.as_bytes();
    let ident = |b: u8| b.is_ascii_alphanumeric() || b == b'_' || b == b':';
    let mut i = 0;
    while i < bytes.len() {
        if ident(bytes[i]) && (i == 0 || !ident(bytes[i - 1])) {
            let start = i;
            while i < bytes.len() && ident(bytes[i]) {
                i += 1;
            }
            let word = &expr[start..i];
            // Not a label name or a string: followed by `=`/`!=`/`=~` or quoted.
            let quoted = start > 0 && bytes[start - 1] == b'"';
            let label = expr[i..].trim_start().starts_with(['=', '!']);
            if !quoted
                && !label
                && (word.starts_with("raft_") || word.starts_with("kuberaft_operator_"))
            {
                names.insert(word.to_string());
            }
        } else {
            i += 1;
        }
    }
    names
}

fn yaml(path: &Path) -> Value {
    serde_saphyr::from_str(&read(path))
        .unwrap_or_else(|e| panic!("{} is not valid YAML: {e}", path.display()))
}

/// (alert name, expression) of every alert rule.
fn alert_rules() -> Vec<(String, String)> {
    let rules = yaml(&repo().join("deploy/alerts/kuberaft.rules.yaml"));
    let mut out = Vec::new();
    for g in rules["groups"].as_array().expect("rule groups") {
        for r in g["rules"].as_array().expect("rules of a group") {
            let name = r["alert"].as_str().expect("only alert rules").to_string();
            out.push((name, r["expr"].as_str().expect("expr").to_string()));
        }
    }
    out
}

#[test]
fn dashboards_are_templated_by_namespace_and_cluster_and_the_chart_has_identical_copies() {
    for name in DASHBOARDS {
        let d = dashboard(name);
        let chart = repo()
            .join("charts/kuberaft-operator/dashboards")
            .join(name);
        assert_eq!(
            read(&chart),
            read(&repo().join("deploy/dashboards").join(name)),
            "{} differs from deploy/dashboards/{name}: copy it (cp deploy/dashboards/*.json charts/kuberaft-operator/dashboards/)",
            chart.display()
        );
        assert!(
            d["uid"].is_string() && d["title"].is_string(),
            "{name}: uid and title"
        );
        let vars: Vec<&str> = d["templating"]["list"]
            .as_array()
            .expect("templating")
            .iter()
            .filter_map(|v| v["name"].as_str())
            .collect();
        for v in ["datasource", "namespace", "cluster"] {
            assert!(vars.contains(&v), "{name} has no variable {v}: {vars:?}");
        }
        let mut ids = BTreeSet::new();
        for p in panels(&d) {
            assert!(
                ids.insert(p["id"].as_u64()),
                "{name}: panel id {} twice",
                p["id"]
            );
            if p["type"] != "row" {
                assert!(
                    p["targets"].as_array().is_some_and(|t| !t.is_empty()),
                    "{name}: panel {:?} has no query",
                    p["title"]
                );
                assert_eq!(
                    p["datasource"]["uid"], "${datasource}",
                    "{name}: panel {:?} must use the datasource variable",
                    p["title"]
                );
            }
        }
        for (title, expr) in expressions(&d) {
            // Per-cluster series are selected by both variables; the only
            // exception is the operator's own lease gauge.
            if !expr.contains("kuberaft_operator_leader") {
                assert!(
                    expr.contains("namespace=\"$namespace\""),
                    "{name}: {title:?} is not filtered by namespace: {expr}"
                );
            }
            if expr.contains("raft_") && !expr.contains("kuberaft_operator_") {
                assert!(
                    expr.contains("app_kubernetes_io_instance=\"$cluster\""),
                    "{name}: {title:?} is not filtered by cluster: {expr}"
                );
            }
            assert!(
                !metric_names(&expr).is_empty(),
                "{name}: {title:?} names no kuberaft metric: {expr}"
            );
        }
    }
    // The overview covers what the issue asks for.
    let overview = serde_json::to_string(&dashboard("kuberaft-cluster.json")).expect("json");
    for metric in [
        "raft_is_leader",
        "raft_term",
        "raft_leader_changes_total",
        "raft_commit_index",
        "raft_applied_index",
        "raft_proposal_duration_seconds_bucket",
        "raft_wal_fsync_duration_seconds_bucket",
        "raft_peer_replication_lag_entries",
        "raft_snapshot_total",
        "raft_client_requests_total",
        "raft_ready",
    ] {
        assert!(
            overview.contains(metric),
            "the overview has no panel on {metric}"
        );
    }
}

#[test]
fn alert_rules_pass_promtool_and_every_alert_has_a_runbook_and_a_unit_test() {
    let promtool = tool("promtool");
    let dir = repo().join("deploy/alerts");
    for args in [
        &["check", "rules", "kuberaft.rules.yaml"][..],
        &["test", "rules", "kuberaft.rules.test.yaml"][..],
    ] {
        let out = Command::new(&promtool)
            .args(args)
            .current_dir(&dir)
            .output()
            .expect("promtool runs");
        assert!(
            out.status.success(),
            "promtool {} failed:\n{}{}",
            args.join(" "),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }

    let rules = yaml(&dir.join("kuberaft.rules.yaml"));
    let mut alerts = BTreeSet::new();
    for g in rules["groups"].as_array().expect("groups") {
        for r in g["rules"].as_array().expect("rules") {
            let name = r["alert"].as_str().expect("alert rules only");
            let a = &r["annotations"];
            for key in ["summary", "description", "runbook", "runbook_url"] {
                assert!(
                    a[key].as_str().is_some_and(|s| !s.is_empty()),
                    "{name} has no {key} annotation"
                );
            }
            let anchor = format!("#{}", name.to_lowercase());
            assert!(
                a["runbook_url"]
                    .as_str()
                    .is_some_and(|u| u.ends_with(&anchor)),
                "{name}: runbook_url must point at {anchor}"
            );
            let runbooks = read(&dir.join("README.md"));
            assert!(
                runbooks.contains(&format!("### {name}")),
                "deploy/alerts/README.md has no runbook section ### {name}"
            );
            assert!(
                ["critical", "warning"].contains(&r["labels"]["severity"].as_str().unwrap_or("")),
                "{name}: severity must be critical or warning"
            );
            alerts.insert(name.to_string());
        }
    }
    // Every alert fires in at least one unit test.
    let tests = yaml(&dir.join("kuberaft.rules.test.yaml"));
    let mut fired = BTreeSet::new();
    for t in tests["tests"].as_array().expect("tests") {
        for a in t["alert_rule_test"].as_array().into_iter().flatten() {
            if a["exp_alerts"].as_array().is_some_and(|e| !e.is_empty()) {
                fired.insert(a["alertname"].as_str().expect("alertname").to_string());
            }
        }
    }
    assert_eq!(fired, alerts, "every alert needs a unit test that fires it");

    // The chart's copy and the PrometheusRule for kubectl users carry the
    // same rules.
    assert_eq!(
        read(&repo().join("charts/kuberaft-operator/alerts/kuberaft.rules.yaml")),
        read(&dir.join("kuberaft.rules.yaml")),
        "charts/kuberaft-operator/alerts/kuberaft.rules.yaml differs from deploy/alerts/kuberaft.rules.yaml: copy it"
    );
    let rule = yaml(&dir.join("prometheusrule.yaml"));
    assert_eq!(rule["kind"], "PrometheusRule");
    assert_eq!(
        rule["spec"]["groups"], rules["groups"],
        "deploy/alerts/prometheusrule.yaml's spec.groups must equal kuberaft.rules.yaml's groups"
    );
}

/// A Prometheus server, killed by pid when dropped.
struct Prometheus {
    child: Child,
    addr: SocketAddr,
    log: PathBuf,
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Prometheus {
    fn start(dir: &Path, addr: SocketAddr, config: &str) -> Prometheus {
        let config_path = dir.join("prometheus.yml");
        std::fs::write(&config_path, config).expect("write prometheus.yml");
        let log = dir.join("prometheus.log");
        let log_file = std::fs::File::create(&log).expect("create prometheus.log");
        let child = Command::new(tool("prometheus"))
            .arg(format!("--config.file={}", config_path.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.join("tsdb").display()
            ))
            .arg(format!("--web.listen-address={addr}"))
            .arg("--log.level=warn")
            .stdin(Stdio::null())
            .stdout(log_file.try_clone().expect("log handle"))
            .stderr(log_file)
            .spawn()
            .expect("prometheus starts");
        Prometheus { child, addr, log }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    async fn api(&self, path: &str) -> Value {
        let r = get(self.addr, path, Duration::from_secs(10))
            .await
            .unwrap_or_else(|e| {
                panic!(
                    "Prometheus at {} does not answer: {e}\n{}",
                    self.addr,
                    self.log()
                )
            });
        serde_json::from_str(&r.body).unwrap_or_else(|e| {
            panic!(
                "Prometheus answered {} with non-JSON {:?}: {e}",
                r.status, r.body
            )
        })
    }

    /// Evaluates `expr` now: the result vector, or Prometheus' error.
    async fn query(&self, expr: &str) -> Result<Vec<Value>, String> {
        let v = self
            .api(&format!("/api/v1/query?query={}", encode(expr)))
            .await;
        if v["status"] == "success" {
            Ok(v["data"]["result"].as_array().cloned().unwrap_or_default())
        } else {
            Err(format!("{}: {}", v["errorType"], v["error"]))
        }
    }

    async fn wait_ready(&self) {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Ok(r) = get(self.addr, "/-/ready", Duration::from_secs(2)).await
                && r.status == 200
            {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "Prometheus did not become ready within 60s:\n{}",
                self.log()
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}

/// Percent-encoding of a query parameter.
fn encode(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// The operator's registry as a running operator would have it after
/// reconciling cluster `default/kv`, served by the operator's router.
async fn serve_operator_metrics(addr: SocketAddr) -> tokio::task::JoinHandle<()> {
    let m = OperatorMetrics::new();
    let c = [NAMESPACE, CLUSTER];
    m.reconciles.with_label_values(&c).inc_by(3);
    m.duration.with_label_values(&c).observe(0.04);
    m.failures
        .with_label_values(&[NAMESPACE, CLUSTER, "admin"])
        .inc();
    m.actions
        .with_label_values(&[NAMESPACE, CLUSTER, "MemberAdded"])
        .inc();
    m.available.with_label_values(&c).set(1);
    m.ready_replicas.with_label_values(&c).set(3);
    m.members.with_label_values(&c).set(3);
    m.healthy_members.with_label_values(&c).set(3);
    m.is_leader.set(1);
    let state = HttpState {
        metrics: m.clone(),
        heartbeat: Arc::new(AtomicU64::new(now_secs())),
        stall_after: Duration::from_secs(3600),
    };
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .expect("bind the operator metrics address");
    let app = router(state);
    let server = tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    // Keep reconciling while Prometheus scrapes, so rates are not all zero.
    tokio::spawn(async move {
        for _ in 0..600 {
            m.reconciles.with_label_values(&c).inc();
            m.duration.with_label_values(&c).observe(0.02);
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    });
    server
}

fn prometheus_config(cluster: &Cluster, operator: SocketAddr) -> String {
    let mut replicas = String::new();
    for id in cluster.ids() {
        let addr = cluster.replica(id).expect("replica").http_addr();
        replicas.push_str(&format!(
            "      - targets: ['{addr}']\n        labels: {{namespace: '{NAMESPACE}', app_kubernetes_io_instance: '{CLUSTER}', pod: '{CLUSTER}-{}'}}\n",
            id - 1
        ));
    }
    format!(
        "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n\
         scrape_configs:\n\
         \x20 - job_name: replicas\n    static_configs:\n{replicas}\
         \x20 - job_name: operator\n    honor_labels: true\n    static_configs:\n\
         \x20     - targets: ['{operator}']\n        labels: {{pod: 'kuberaft-operator-0'}}\n"
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_dashboard_query_returns_series_from_a_real_prometheus_scraping_a_cluster() {
    bounded(LIMIT, async {
        let cluster = Cluster::start(
            "observability",
            ClusterOptions {
                replicas: 3,
                groups: 2,
                snapshot_threshold: Some(40),
                ..ClusterOptions::default()
            },
        )
        .await
        .expect("the cluster starts");
        let operator_addr = SocketAddr::from((cluster.subnet().ip(200), 18080));
        let _operator = serve_operator_metrics(operator_addr).await;
        let prometheus_addr = SocketAddr::from((cluster.subnet().ip(201), 19090));
        let dir = tempfile::tempdir().expect("temp dir");
        let prometheus = Prometheus::start(
            dir.path(),
            prometheus_addr,
            &prometheus_config(&cluster, operator_addr),
        );
        prometheus.wait_ready().await;

        // Traffic for every panel: writes in both groups (snapshots after 40
        // entries), reads, and a refused request for the error panel.
        let client = cluster.client();
        for i in 0..200 {
            let key = format!("obs/{i:03}");
            client
                .put(key.as_bytes(), b"value")
                .await
                .expect("put is acknowledged");
            if i % 10 == 0 {
                client
                    .get(key.as_bytes(), Consistency::Linearizable)
                    .await
                    .expect("get");
            }
        }
        let too_long = vec![b'k'; 5 * 1024];
        assert!(
            client.put(&too_long, b"v").await.is_err(),
            "a 5 KiB key is over the limit and must be refused"
        );

        let mut queries: Vec<(String, String)> = Vec::new();
        for name in DASHBOARDS {
            let d = dashboard(name);
            for (title, expr) in expressions(&d) {
                queries.push((format!("{name}: {title}"), expr));
            }
        }
        let mut variables = Vec::new();
        for name in DASHBOARDS {
            for (var, selector, label) in variable_queries(&dashboard(name)) {
                variables.push((format!("{name}: variable {var}"), selector, label));
            }
        }

        // Scrapes come every second; give them time to carry the load's
        // effects (bounded), then every query must have an answer.
        let deadline = Instant::now() + Duration::from_secs(90);
        let failures = loop {
            let mut failures = Vec::new();
            for (what, expr) in &queries {
                match prometheus.query(&substitute(expr)).await {
                    Ok(r) if r.is_empty() => failures.push(format!("{what}: no series for {expr}")),
                    Ok(_) => {}
                    Err(e) => failures.push(format!("{what}: {e} in {expr}")),
                }
            }
            for (what, selector, label) in &variables {
                let expr = format!("count by ({label}) ({})", substitute(selector));
                let want = if label == "namespace" {
                    NAMESPACE
                } else {
                    CLUSTER
                };
                match prometheus.query(&expr).await {
                    Ok(r) if r.iter().any(|s| s["metric"][label.as_str()] == want) => {}
                    Ok(r) => failures.push(format!("{what}: {want:?} not among {r:?}")),
                    Err(e) => failures.push(format!("{what}: {e} in {expr}")),
                }
            }
            if failures.is_empty() || Instant::now() > deadline {
                break failures;
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
        };
        assert!(
            failures.is_empty(),
            "dashboard queries without an answer:\n{}\nPrometheus log:\n{}",
            failures.join("\n"),
            prometheus.log()
        );

        // Alert expressions parse (they return nothing on a healthy cluster).
        for (alert, expr) in alert_rules() {
            if let Err(e) = prometheus.query(&expr).await {
                panic!("alert {alert}: {e} in {expr}");
            }
        }

        // Every metric a dashboard or an alert names is in the scrape.
        let names = prometheus.api("/api/v1/label/__name__/values").await;
        let scraped: BTreeSet<&str> = names["data"]
            .as_array()
            .expect("metric names")
            .iter()
            .filter_map(Value::as_str)
            .collect();
        let mut missing: BTreeMap<String, Vec<String>> = BTreeMap::new();
        let named = queries.iter().cloned().chain(
            alert_rules()
                .into_iter()
                .map(|(a, e)| (format!("alert {a}"), e)),
        );
        for (what, expr) in named {
            for m in metric_names(&expr) {
                if !scraped.contains(m.as_str()) {
                    missing.entry(m).or_default().push(what.clone());
                }
            }
        }
        assert!(
            missing.is_empty(),
            "metrics named but not exported by the replicas or the operator: {missing:#?}"
        );
    })
    .await;
}

#[test]
fn metric_names_are_found_in_expressions_and_labels_are_not() {
    let names = metric_names(
        "histogram_quantile(0.99, sum by (le) (rate(raft_proposal_duration_seconds_bucket{namespace=\"raft_x\", raft_label=\"a\"}[5m]))) / kuberaft_operator_leader",
    );
    assert_eq!(
        names.into_iter().collect::<Vec<_>>(),
        [
            "kuberaft_operator_leader",
            "raft_proposal_duration_seconds_bucket"
        ]
    );
}
