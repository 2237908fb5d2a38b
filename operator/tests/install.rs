//! The Helm chart `charts/kuberaft-operator` and the plain manifests under
//! `deploy/`, checked without a cluster and without a helm binary (none is
//! packaged for this CI box):
//!
//! - the chart is rendered by `charts/render`, a small Go program built here
//!   on Go's text/template and the sprig library (Debian's packages, the
//!   same template engine and function library as Helm) with Helm's own
//!   functions and objects, for the subset this chart uses;
//! - every rendered object must deserialize into its k8s-openapi type and
//!   serialize back to the same JSON (a misspelt or misplaced field fails),
//!   ServiceMonitor and PrometheusRule are checked field by field;
//! - `values.yaml` and the example values files must pass
//!   `values.schema.json`, and bad values must fail it, with the jsonschema
//!   crate (Helm validates with the same JSON Schema at install time);
//! - the chart and `deploy/operator.yaml` grant the same RBAC rules and run
//!   the same operator container; the dashboards and alert rules the chart
//!   ships are the ones under `deploy/`.
//!
//! Not verified here: Helm's own parsing quirks beyond text/template and
//! sprig, `helm lint`, and an install on a real API server.

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{ConfigMap, Service, ServiceAccount};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding, Role, RoleBinding};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

const RELEASE: &str = "kuberaft-operator";
const NAMESPACE: &str = "kuberaft-system";

fn workspace() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the operator is in the workspace")
}

fn chart() -> PathBuf {
    workspace().join("charts/kuberaft-operator")
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()))
}

fn yaml(text: &str, what: &str) -> Value {
    serde_saphyr::from_str(text).unwrap_or_else(|e| panic!("{what} is not valid YAML: {e}\n{text}"))
}

/// The renderer, built once per test process.
fn renderer() -> &'static Path {
    static BINARY: OnceLock<PathBuf> = OnceLock::new();
    BINARY.get_or_init(|| {
        let out = Path::new(env!("CARGO_TARGET_TMPDIR")).join("kuberaft-chart-render");
        let gopath = std::env::var("KUBERAFT_GOPATH").unwrap_or("/usr/share/gocode".into());
        let built = Command::new("go")
            .args(["build", "-o"])
            .arg(&out)
            .arg(".")
            .current_dir(workspace().join("charts/render"))
            .env("GO111MODULE", "off")
            .env("GOPATH", &gopath)
            .env(
                "GOCACHE",
                Path::new(env!("CARGO_TARGET_TMPDIR")).join("go-build-cache"),
            )
            .env("GOFLAGS", "")
            .output()
            .unwrap_or_else(|e| {
                panic!(
                    "cannot run `go` ({e}): the chart tests render the chart with Go's \
                     text/template and sprig; install them with \
                     `apt-get install golang-go golang-github-masterminds-sprig-dev golang-gopkg-yaml.v2-dev` \
                     (.ci/run does)"
                )
            });
        assert!(
            built.status.success(),
            "building charts/render failed (are golang-github-masterminds-sprig-dev and \
             golang-gopkg-yaml.v2-dev installed under {gopath}?):\n{}",
            String::from_utf8_lossy(&built.stderr)
        );
        out
    })
}

/// Renders the chart with extra values files: the manifests, or the
/// renderer's error.
fn try_render(values: &[&str], extra: &[&str]) -> Result<String, String> {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut cmd = Command::new(renderer());
    cmd.arg("-chart")
        .arg(chart())
        .args(["-name", RELEASE, "-namespace", NAMESPACE])
        .args(extra);
    for (i, v) in values.iter().enumerate() {
        let path = dir.path().join(format!("values-{i}.yaml"));
        std::fs::write(&path, v).expect("write values");
        cmd.arg("-f").arg(path);
    }
    let out = cmd.output().expect("the renderer runs");
    if out.status.success() {
        Ok(String::from_utf8(out.stdout).expect("UTF-8 manifests"))
    } else {
        Err(String::from_utf8_lossy(&out.stderr).into_owned())
    }
}

fn render(values: &[&str]) -> Vec<Value> {
    let text = try_render(values, &[]).unwrap_or_else(|e| panic!("the chart does not render: {e}"));
    documents(&text, "the rendered chart")
}

/// The YAML documents of a multi-document stream, without empty ones.
fn documents(text: &str, what: &str) -> Vec<Value> {
    let mut docs = Vec::new();
    let mut current = String::new();
    for line in text.lines().chain(std::iter::once("---")) {
        if line == "---" {
            if current
                .lines()
                .any(|l| !l.trim().is_empty() && !l.starts_with('#'))
            {
                docs.push(yaml(&current, what));
            }
            current.clear();
        } else {
            current.push_str(line);
            current.push('\n');
        }
    }
    docs
}

fn find<'a>(docs: &'a [Value], kind: &str, name: &str) -> &'a Value {
    docs.iter()
        .find(|d| d["kind"] == kind && d["metadata"]["name"] == name)
        .unwrap_or_else(|| {
            let have: Vec<String> = docs
                .iter()
                .map(|d| format!("{}/{}", d["kind"], d["metadata"]["name"]))
                .collect();
            panic!("no {kind} {name} among {have:?}")
        })
}

fn kinds(docs: &[Value], kind: &str) -> Vec<Value> {
    docs.iter().filter(|d| d["kind"] == kind).cloned().collect()
}

/// Deserializes into the k8s-openapi type and back: equal only if every
/// field is one the type knows, in the right place, with the right type.
fn typed<T: DeserializeOwned + Serialize>(doc: &Value) {
    let what = format!("{} {}", doc["kind"], doc["metadata"]["name"]);
    let object: T = serde_json::from_value(doc.clone())
        .unwrap_or_else(|e| panic!("{what} is not a valid {}: {e}", doc["kind"]));
    let back = serde_json::to_value(&object).expect("serializes");
    assert_eq!(
        normalized(&back),
        normalized(doc),
        "{what} has fields its type does not know (compare the two)"
    );
}

/// Without nulls (an absent optional field) and with every number as a float.
fn normalized(v: &Value) -> Value {
    match v {
        Value::Object(m) => Value::Object(
            m.iter()
                .filter(|(_, v)| !v.is_null())
                .map(|(k, v)| (k.clone(), normalized(v)))
                .collect(),
        ),
        Value::Array(a) => Value::Array(a.iter().map(normalized).collect()),
        // 64 and 64.0 are the same number to the API server.
        Value::Number(n) => n.as_f64().map_or(v.clone(), Value::from),
        other => other.clone(),
    }
}

/// Every object of a rendering, checked against its type.
fn check_types(docs: &[Value]) {
    for d in docs {
        match d["kind"].as_str().unwrap_or("") {
            "CustomResourceDefinition" => typed::<CustomResourceDefinition>(d),
            "ServiceAccount" => typed::<ServiceAccount>(d),
            "ClusterRole" => typed::<ClusterRole>(d),
            "ClusterRoleBinding" => typed::<ClusterRoleBinding>(d),
            "Role" => typed::<Role>(d),
            "RoleBinding" => typed::<RoleBinding>(d),
            "Deployment" => typed::<Deployment>(d),
            "Service" => typed::<Service>(d),
            "ConfigMap" => typed::<ConfigMap>(d),
            "PodDisruptionBudget" => typed::<PodDisruptionBudget>(d),
            "NetworkPolicy" => typed::<NetworkPolicy>(d),
            "ServiceMonitor" => check_service_monitor(d),
            "PrometheusRule" => check_prometheus_rule(d),
            other => panic!("the chart renders a {other}, which this test does not check"),
        }
        if ![
            "CustomResourceDefinition",
            "ClusterRole",
            "ClusterRoleBinding",
        ]
        .contains(&d["kind"].as_str().unwrap_or(""))
        {
            assert!(
                d["metadata"]["namespace"].is_string(),
                "{} {} has no namespace",
                d["kind"],
                d["metadata"]["name"]
            );
        }
    }
}

fn check_service_monitor(d: &Value) {
    assert_eq!(d["apiVersion"], "monitoring.coreos.com/v1");
    let spec = d["spec"].as_object().expect("ServiceMonitor spec");
    for key in spec.keys() {
        assert!(
            ["selector", "namespaceSelector", "endpoints"].contains(&key.as_str()),
            "ServiceMonitor spec.{key} is not a field this chart means to set"
        );
    }
    let endpoint = &d["spec"]["endpoints"][0];
    for key in endpoint.as_object().expect("an endpoint").keys() {
        assert!(
            ["port", "path", "honorLabels", "interval", "scrapeTimeout"].contains(&key.as_str()),
            "ServiceMonitor endpoint field {key} is unknown to this chart"
        );
    }
    assert_eq!(
        endpoint["honorLabels"], true,
        "the operator's namespace/cluster labels must survive the scrape"
    );
}

fn rules_file() -> Value {
    yaml(
        &read(&workspace().join("deploy/alerts/kuberaft.rules.yaml")),
        "deploy/alerts/kuberaft.rules.yaml",
    )
}

fn check_prometheus_rule(d: &Value) {
    assert_eq!(d["apiVersion"], "monitoring.coreos.com/v1");
    assert_eq!(
        d["spec"],
        rules_file(),
        "the chart's PrometheusRule must carry deploy/alerts/kuberaft.rules.yaml"
    );
}

const EVERYTHING_ON: &str = "
serviceMonitor:
  enabled: true
  labels: {release: monitoring}
prometheusRule:
  enabled: true
  labels: {release: monitoring}
dashboards:
  enabled: true
  annotations: {grafana_folder: kuberaft}
";

#[test]
fn default_values_render_valid_objects_with_least_privilege_and_no_monitoring_objects() {
    let docs = render(&[]);
    check_types(&docs);
    let kinds_seen: Vec<&str> = docs.iter().filter_map(|d| d["kind"].as_str()).collect();
    for k in [
        "CustomResourceDefinition",
        "ServiceAccount",
        "ClusterRole",
        "ClusterRoleBinding",
        "Role",
        "RoleBinding",
        "Deployment",
        "Service",
        "PodDisruptionBudget",
        "NetworkPolicy",
    ] {
        assert!(kinds_seen.contains(&k), "no {k} in {kinds_seen:?}");
    }
    for k in ["ServiceMonitor", "PrometheusRule", "ConfigMap"] {
        assert!(!kinds_seen.contains(&k), "{k} must be opt-in");
    }
    // No rule grants everything; Secrets are never listed or watched.
    for role in kinds(&docs, "ClusterRole")
        .iter()
        .chain(kinds(&docs, "Role").iter())
    {
        for rule in role["rules"].as_array().expect("rules") {
            let text = rule.to_string();
            assert!(!text.contains("\"*\""), "no wildcard in RBAC: {text}");
            if text.contains("secrets") {
                assert_eq!(rule["verbs"], json!(["get", "create", "patch"]), "{text}");
            }
        }
    }
}

/// The rules the operator's code needs (operator/src/rbac.rs) as the
/// manifests spell them.
fn rules_json(rules: &[kuberaft_operator::rbac::Rule]) -> Value {
    Value::Array(
        rules
            .iter()
            .map(|(group, resources, verbs)| {
                json!({"apiGroups": [group], "resources": resources, "verbs": verbs})
            })
            .collect(),
    )
}

#[test]
fn rbac_in_the_chart_and_deploy_is_exactly_what_the_operator_uses() {
    let chart = render(&[]);
    let plain = documents(
        &read(&workspace().join("deploy/operator.yaml")),
        "deploy/operator.yaml",
    );
    let want = rules_json(kuberaft_operator::rbac::CLUSTER_RULES);
    let lease = rules_json(&[kuberaft_operator::rbac::LEASE_RULE]);
    for (what, docs) in [("the chart", &chart), ("deploy/operator.yaml", &plain)] {
        assert_eq!(
            find(docs, "ClusterRole", RELEASE)["rules"],
            want,
            "{what}: the ClusterRole must grant exactly operator/src/rbac.rs CLUSTER_RULES"
        );
        assert_eq!(
            find(docs, "Role", &format!("{RELEASE}-leader-election"))["rules"],
            lease,
            "{what}: the leader-election Role must grant exactly LEASE_RULE"
        );
    }
}

#[test]
fn the_operator_pods_are_hardened_and_fenced_by_a_network_policy() {
    let chart = render(&[]);
    let plain = documents(
        &read(&workspace().join("deploy/operator.yaml")),
        "deploy/operator.yaml",
    );
    for (what, docs) in [("the chart", &chart), ("deploy/operator.yaml", &plain)] {
        let pod = &find(docs, "Deployment", RELEASE)["spec"]["template"]["spec"];
        let psc = &pod["securityContext"];
        assert_eq!(psc["runAsNonRoot"], true, "{what}");
        assert_eq!(psc["runAsUser"], 65532, "{what}");
        assert_eq!(psc["runAsGroup"], 65532, "{what}");
        assert_eq!(psc["seccompProfile"]["type"], "RuntimeDefault", "{what}");
        let sc = &pod["containers"][0]["securityContext"];
        assert_eq!(sc["readOnlyRootFilesystem"], true, "{what}");
        assert_eq!(sc["allowPrivilegeEscalation"], false, "{what}");
        assert_eq!(sc["capabilities"]["drop"], json!(["ALL"]), "{what}");
        assert!(
            sc["privileged"].is_null() && sc["capabilities"]["add"].is_null(),
            "{what}"
        );

        let np = find(docs, "NetworkPolicy", RELEASE);
        let spec = &np["spec"];
        assert_eq!(spec["policyTypes"], json!(["Ingress", "Egress"]), "{what}");
        assert_eq!(
            spec["podSelector"]["matchLabels"]["app.kubernetes.io/name"], "kuberaft-operator",
            "{what}: selects the operator pods"
        );
        let ingress = spec["ingress"].as_array().expect("ingress");
        assert_eq!(ingress.len(), 1, "{what}: only the metrics port");
        assert_eq!(
            ingress[0]["ports"],
            json!([{"port": 8080, "protocol": "TCP"}])
        );
        let egress = spec["egress"].as_array().expect("egress");
        assert_eq!(egress.len(), 3, "{what}: API server, replicas, DNS");
        assert_eq!(
            egress[0]["ports"],
            json!([{"port": 443, "protocol": "TCP"}, {"port": 6443, "protocol": "TCP"}])
        );
        assert_eq!(
            egress[1]["ports"],
            json!([{"port": 7400, "protocol": "TCP"}])
        );
        assert_eq!(
            egress[1]["to"][0]["podSelector"]["matchLabels"]["app.kubernetes.io/name"], "kuberaft",
            "{what}: the replicas' pods"
        );
        assert_eq!(
            egress[2]["ports"],
            json!([{"port": 53, "protocol": "UDP"}, {"port": 53, "protocol": "TCP"}])
        );
    }
    let chart_np = &find(&chart, "NetworkPolicy", RELEASE)["spec"];
    let plain_np = &find(&plain, "NetworkPolicy", RELEASE)["spec"];
    assert_eq!(chart_np["ingress"], plain_np["ingress"]);
    assert_eq!(chart_np["egress"], plain_np["egress"]);

    let off = render(&["networkPolicy: {enabled: false}"]);
    assert!(kinds(&off, "NetworkPolicy").is_empty());
    let fenced = render(&[
        "networkPolicy:\n  metricsFrom: [{namespaceSelector: {matchLabels: {team: obs}}}]\n  apiServerTo: [{ipBlock: {cidr: 10.0.0.1/32}}]",
    ]);
    check_types(&fenced);
    let spec = &find(&fenced, "NetworkPolicy", RELEASE)["spec"];
    assert_eq!(
        spec["ingress"][0]["from"][0]["namespaceSelector"]["matchLabels"]["team"],
        "obs"
    );
    assert_eq!(spec["egress"][0]["to"][0]["ipBlock"]["cidr"], "10.0.0.1/32");
}

#[test]
fn the_chart_and_deploy_operator_yaml_grant_the_same_rules_and_run_the_same_container() {
    let chart = render(&[]);
    let plain = documents(
        &read(&workspace().join("deploy/operator.yaml")),
        "deploy/operator.yaml",
    );
    check_types(
        &plain
            .iter()
            .filter(|d| d["kind"] != "Namespace")
            .cloned()
            .collect::<Vec<_>>(),
    );
    assert_eq!(
        find(&chart, "ClusterRole", RELEASE)["rules"],
        find(&plain, "ClusterRole", RELEASE)["rules"],
        "the ClusterRole rules of the chart and deploy/operator.yaml differ"
    );
    let lease_role = format!("{RELEASE}-leader-election");
    assert_eq!(
        find(&chart, "Role", &lease_role)["rules"],
        find(&plain, "Role", &lease_role)["rules"],
        "the leader-election Role rules differ"
    );
    let pod =
        |docs: &[Value]| find(docs, "Deployment", RELEASE)["spec"]["template"]["spec"].clone();
    let (c, p) = (pod(&chart), pod(&plain));
    assert_eq!(
        c["containers"], p["containers"],
        "the operator container of the chart and deploy/operator.yaml differ"
    );
    assert_eq!(c["securityContext"], p["securityContext"]);
    assert_eq!(c["serviceAccountName"], p["serviceAccountName"]);
    assert_eq!(
        find(&chart, "Deployment", RELEASE)["spec"]["replicas"],
        find(&plain, "Deployment", RELEASE)["spec"]["replicas"]
    );
    // Same CRD: the chart's crds/ file (itself checked against
    // `raft-operator crd` by generated_crd.rs) is deploy/crd.yaml.
    let crd = kinds(&chart, "CustomResourceDefinition");
    assert_eq!(crd.len(), 1);
    assert_eq!(
        crd[0],
        yaml(
            &read(&workspace().join("deploy/crd.yaml")),
            "deploy/crd.yaml"
        )
    );
    // Every binding names the ServiceAccount that exists.
    for docs in [&chart, &plain] {
        for kind in ["ClusterRoleBinding", "RoleBinding"] {
            for b in kinds(docs, kind) {
                assert_eq!(b["subjects"][0]["name"], RELEASE);
                assert_eq!(b["subjects"][0]["namespace"], NAMESPACE);
            }
        }
    }
}

#[test]
fn monitoring_values_add_a_service_monitor_alerts_and_labelled_dashboards() {
    let docs = render(&[EVERYTHING_ON]);
    check_types(&docs);
    let service = find(&docs, "Service", &format!("{RELEASE}-metrics"));
    let monitor = find(&docs, "ServiceMonitor", RELEASE);
    assert_eq!(monitor["metadata"]["labels"]["release"], "monitoring");
    // The ServiceMonitor selects the metrics Service, on a port it has.
    let selector = monitor["spec"]["selector"]["matchLabels"]
        .as_object()
        .expect("matchLabels");
    for (k, v) in selector {
        assert_eq!(&service["metadata"]["labels"][k], v, "Service label {k}");
    }
    assert!(
        service["spec"]["ports"]
            .as_array()
            .expect("ports")
            .iter()
            .any(|p| p["name"] == monitor["spec"]["endpoints"][0]["port"])
    );
    // The Service selects the operator pods.
    let pod_labels = &find(&docs, "Deployment", RELEASE)["spec"]["template"]["metadata"]["labels"];
    for (k, v) in service["spec"]["selector"].as_object().expect("selector") {
        assert_eq!(&pod_labels[k], v, "pod label {k}");
    }
    assert_eq!(
        find(&docs, "PrometheusRule", RELEASE)["metadata"]["labels"]["release"],
        "monitoring"
    );

    let maps = kinds(&docs, "ConfigMap");
    assert_eq!(maps.len(), 2, "one ConfigMap per dashboard");
    for m in &maps {
        assert_eq!(m["metadata"]["labels"]["grafana_dashboard"], "1");
        assert_eq!(m["metadata"]["annotations"]["grafana_folder"], "kuberaft");
        let data = m["data"].as_object().expect("data");
        assert_eq!(data.len(), 1);
        let (file, json) = data.iter().next().expect("one dashboard");
        let shipped: Value =
            serde_json::from_str(&read(&workspace().join("deploy/dashboards").join(file)))
                .expect("deploy/dashboards JSON");
        let rendered: Value =
            serde_json::from_str(json.as_str().expect("text")).unwrap_or_else(|e| {
                panic!(
                    "the dashboard in {} is not JSON: {e}",
                    m["metadata"]["name"]
                )
            });
        assert_eq!(
            rendered, shipped,
            "{file} in the ConfigMap differs from deploy/dashboards"
        );
    }

    // The sidecar label, its value and the namespace are configurable.
    let docs = render(&[
        EVERYTHING_ON,
        "dashboards: {label: dashboards, labelValue: kuberaft, namespace: monitoring}",
    ]);
    for m in kinds(&docs, "ConfigMap") {
        assert_eq!(m["metadata"]["labels"]["dashboards"], "kuberaft");
        assert!(m["metadata"]["labels"].get("grafana_dashboard").is_none());
        assert_eq!(m["metadata"]["namespace"], "monitoring");
    }
}

#[test]
fn overrides_reach_the_objects_and_impossible_combinations_fail_with_a_reason() {
    let docs = render(&["
replicaCount: 1
leaderElection: {enabled: false}
image: {repository: registry.local/raft-operator, tag: dev, pullPolicy: Never}
serviceAccount: {create: false, name: existing}
logLevel: debug
"]);
    check_types(&docs);
    let d = find(&docs, "Deployment", RELEASE);
    let c = &d["spec"]["template"]["spec"]["containers"][0];
    assert_eq!(c["image"], "registry.local/raft-operator:dev");
    assert_eq!(c["imagePullPolicy"], "Never");
    assert_eq!(c["args"], json!(["run", "--no-leader-election"]));
    assert!(
        c["env"]
            .as_array()
            .expect("env")
            .contains(&json!({"name": "RUST_LOG", "value": "debug"}))
    );
    assert_eq!(
        d["spec"]["template"]["spec"]["serviceAccountName"],
        "existing"
    );
    assert!(kinds(&docs, "ServiceAccount").is_empty());
    assert!(kinds(&docs, "Role").is_empty(), "no Lease, no Role for it");
    assert!(
        kinds(&docs, "PodDisruptionBudget").is_empty(),
        "one pod: no PDB"
    );

    let named = render(&["fullnameOverride: ops"]);
    assert!(
        named
            .iter()
            .filter(|d| d["kind"] != "CustomResourceDefinition")
            .all(|d| d["metadata"]["name"]
                .as_str()
                .is_some_and(|n| n.starts_with("ops")))
    );

    for (values, reason) in [
        ("leaderElection: {enabled: false}", "several reconcilers"),
        (
            "serviceAccount: {create: false}",
            "serviceAccount.name is required",
        ),
        (
            "serviceMonitor: {enabled: true}\nmetrics: {service: {enabled: false}}",
            "needs metrics.service.enabled",
        ),
    ] {
        let err = try_render(&[values], &[]).expect_err(values);
        assert!(
            err.contains(reason),
            "{values}: expected {reason:?} in {err}"
        );
    }
}

#[test]
fn notes_tell_how_to_create_a_first_cluster() {
    let notes = try_render(&[EVERYTHING_ON], &["-notes"]).expect("NOTES.txt renders");
    for needle in [
        "kind: RaftCluster",
        "kubectl apply -f -",
        "kubectl get raftcluster kv",
        "version: 0.1.0",
        "grafana_dashboard=1",
        "PrometheusRule kuberaft-operator",
        &format!("kubectl -n {NAMESPACE} get pods"),
    ] {
        assert!(
            notes.contains(needle),
            "NOTES.txt lacks {needle:?}:\n{notes}"
        );
    }
    // The RaftCluster it shows passes the CRD's schema.
    let start = notes
        .find("apiVersion: kuberaft.io")
        .expect("a manifest in the notes");
    let end = start + notes[start..].find("\n  YAML").expect("the heredoc's end");
    let manifest: String = notes[start..end]
        .lines()
        .map(|l| l.strip_prefix("  ").unwrap_or(l))
        .collect::<Vec<_>>()
        .join("\n");
    let instance = yaml(&manifest, "the RaftCluster of NOTES.txt");
    let crd = serde_json::to_value(
        <kuberaft_operator::crd::RaftCluster as kube::CustomResourceExt>::crd(),
    )
    .expect("crd");
    let schema = &crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"];
    let validator = jsonschema::validator_for(schema).expect("the CRD schema compiles");
    let errors: Vec<String> = validator
        .iter_errors(&instance)
        .map(|e| e.to_string())
        .collect();
    assert!(
        errors.is_empty(),
        "NOTES.txt's RaftCluster is invalid: {errors:?}"
    );
}

fn values_schema() -> jsonschema::Validator {
    let schema: Value = serde_json::from_str(&read(&chart().join("values.schema.json")))
        .expect("values.schema.json is JSON");
    jsonschema::validator_for(&schema).expect("values.schema.json is a valid JSON schema")
}

#[test]
fn values_schema_accepts_the_defaults_and_the_examples_and_rejects_bad_values() {
    let schema = values_schema();
    let defaults = yaml(&read(&chart().join("values.yaml")), "values.yaml");
    let errors: Vec<String> = schema
        .iter_errors(&defaults)
        .map(|e| e.to_string())
        .collect();
    assert!(
        errors.is_empty(),
        "values.yaml fails its own schema: {errors:?}"
    );

    let mut examples = vec![EVERYTHING_ON.to_string()];
    let dir = workspace().join("deploy/examples/helm");
    for entry in std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
        let path = entry.expect("entry").path();
        let text = read(&path);
        // An example renders, too.
        check_types(&render(&[&text]));
        examples.push(text);
    }
    for text in &examples {
        let mut merged = defaults.clone();
        merge(&mut merged, &yaml(text, "an example values file"));
        let errors: Vec<String> = schema.iter_errors(&merged).map(|e| e.to_string()).collect();
        assert!(errors.is_empty(), "{text}\nfails the schema: {errors:?}");
    }

    for bad in [
        "replicaCount: \"2\"",
        "replicaCount: 0",
        "replicas: 2",
        "image: {pullPolicy: Sometimes}",
        "image: {repository: \"\"}",
        "serviceMonitor: {interval: 30}",
        "serviceMonitor: {interval: thirty}",
        "dashboards: {labelValue: 1}",
        "resources: {requests: {cpu: lots}}",
        "metrics: {port: 80}",
        "leaderElection: {leaseName: Not_A_Name}",
        "networkPolicy: {enabled: yes please}",
        "networkPolicy: {apiServerPorts: []}",
        "networkPolicy: {apiServerPorts: [70000]}",
    ] {
        let mut merged = defaults.clone();
        merge(&mut merged, &yaml(bad, bad));
        assert!(
            !schema.is_valid(&merged),
            "values.schema.json must reject {bad}"
        );
    }
}

/// Helm's coalescing of a values file over the defaults.
fn merge(base: &mut Value, over: &Value) {
    match (base, over) {
        (Value::Object(b), Value::Object(o)) => {
            for (k, v) in o {
                match b.get_mut(k) {
                    Some(existing) if existing.is_object() && v.is_object() => merge(existing, v),
                    _ => {
                        b.insert(k.clone(), v.clone());
                    }
                }
            }
        }
        (b, o) => *b = o.clone(),
    }
}

#[test]
fn the_chart_metadata_follows_helm_conventions() {
    let meta = yaml(&read(&chart().join("Chart.yaml")), "Chart.yaml");
    assert_eq!(meta["apiVersion"], "v2");
    assert_eq!(meta["name"], "kuberaft-operator");
    assert_eq!(meta["type"], "application");
    assert!(
        meta["version"]
            .as_str()
            .is_some_and(|v| v.split('.').count() == 3)
    );
    // The default image is the release the chart says it installs.
    let docs = render(&[]);
    let image =
        find(&docs, "Deployment", RELEASE)["spec"]["template"]["spec"]["containers"][0]["image"]
            .clone();
    assert_eq!(
        image,
        format!(
            "ghcr.io/kuberaft/raft-operator:{}",
            meta["appVersion"].as_str().expect("appVersion")
        )
    );
    // Every value is documented: a comment line right above each key of values.yaml.
    let text = read(&chart().join("values.yaml"));
    let lines: Vec<&str> = text.lines().collect();
    // Values that are Kubernetes objects as they are (their fields are
    // documented by Kubernetes).
    let kubernetes_typed = ["podSecurityContext:", "securityContext:", "resources:"];
    let mut top = "";
    for (i, line) in lines.iter().enumerate() {
        let trimmed = line.trim_start();
        let indent = line.len() - trimmed.len();
        let is_key =
            !trimmed.starts_with('#') && !trimmed.starts_with('-') && trimmed.contains(':');
        if is_key && indent == 0 {
            top = trimmed;
        }
        let ours = indent == 0 || !kubernetes_typed.iter().any(|k| top.starts_with(k));
        if is_key && ours {
            let above = lines[..i]
                .iter()
                .rev()
                .find(|l| !l.trim().is_empty())
                .copied()
                .unwrap_or("");
            let documented = above.trim_start().starts_with('#')
                || (above.trim_end().ends_with(':')
                    && (above.len() - above.trim_start().len()) < indent);
            assert!(
                documented,
                "values.yaml line {}: {line:?} has no comment above it",
                i + 1
            );
        }
    }
}

/// The instructions of a Dockerfile's last stage (after its last FROM).
fn last_stage(text: &str) -> Vec<String> {
    let lines: Vec<String> = text
        .replace("\\\n", " ")
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(String::from)
        .collect();
    let from = lines
        .iter()
        .rposition(|l| l.starts_with("FROM "))
        .expect("a FROM");
    lines[from..].to_vec()
}

#[test]
fn dockerfiles_build_release_binaries_into_a_distroless_non_root_image() {
    use kuberaft_operator::builders::statefulset::RUN_AS_USER;
    use kuberaft_operator::names::{DATA_DIR, GRPC_PORT, METRICS_PORT};
    let chart_uid = yaml(&read(&chart().join("values.yaml")), "values.yaml")["podSecurityContext"]
        ["runAsUser"]
        .as_i64();
    assert_eq!(
        chart_uid,
        Some(RUN_AS_USER),
        "the chart's operator uid is the replicas' uid"
    );
    for (file, package, binary) in [
        ("replica/Dockerfile", "kuberaft-replica", "raft"),
        ("operator/Dockerfile", "kuberaft-operator", "raft-operator"),
    ] {
        let text = read(&workspace().join(file));
        assert!(
            text.matches("\nFROM ").count() >= 2,
            "{file} must be multi-stage"
        );
        assert!(
            text.contains(&format!(
                "cargo build --release --locked -p {package} --bin {binary}"
            )),
            "{file} must build {binary} of {package} in release mode from Cargo.lock"
        );
        let stage = last_stage(&text);
        assert!(
            stage[0].starts_with("FROM gcr.io/distroless/"),
            "{file}: the runtime image must be distroless (no shell): {}",
            stage[0]
        );
        assert!(
            stage.contains(&format!("USER {RUN_AS_USER}:{RUN_AS_USER}")),
            "{file}: the runtime user must be {RUN_AS_USER}, the uid of the pods' security contexts"
        );
        assert!(
            stage.contains(&format!("ENTRYPOINT [\"/usr/local/bin/{binary}\"]")),
            "{file}: the entrypoint must be {binary} (the pods pass only args)"
        );
        assert!(
            stage.iter().all(|l| !l.starts_with("RUN ")),
            "{file}: the runtime stage cannot RUN anything (no shell there)"
        );
        if binary == "raft" {
            assert!(
                stage.contains(&format!("VOLUME [\"{DATA_DIR}\"]")),
                "{file}: {DATA_DIR} volume"
            );
            assert!(
                stage.contains(&format!("EXPOSE {GRPC_PORT} {METRICS_PORT}")),
                "{file}: expose the gRPC and metrics ports"
            );
        }
    }
}

#[test]
fn the_image_workflow_builds_both_images_for_amd64_and_arm64_under_the_names_the_manifests_use() {
    let workflow = yaml(
        &read(&workspace().join(".github/workflows/images.yml")),
        ".github/workflows/images.yml",
    );
    let job = &workflow["jobs"]["image"];
    let matrix = job["strategy"]["matrix"]["include"]
        .as_array()
        .expect("a matrix");
    let images: Vec<(&str, &str)> = matrix
        .iter()
        .map(|m| {
            (
                m["image"].as_str().expect("image"),
                m["dockerfile"].as_str().expect("dockerfile"),
            )
        })
        .collect();
    assert_eq!(
        images,
        [
            ("raft", "replica/Dockerfile"),
            ("raft-operator", "operator/Dockerfile")
        ]
    );
    let build = job["steps"]
        .as_array()
        .expect("steps")
        .iter()
        .find(|s| {
            s["uses"]
                .as_str()
                .is_some_and(|u| u.starts_with("docker/build-push-action@"))
        })
        .expect("a docker/build-push-action step");
    let platforms = build["with"]["platforms"].as_str().expect("platforms");
    assert_eq!(platforms, "linux/amd64,linux/arm64");
    assert_eq!(build["with"]["file"], "${{ matrix.dockerfile }}");
    assert!(job["steps"].as_array().expect("steps").iter().any(|s| {
        s["uses"]
            .as_str()
            .is_some_and(|u| u.starts_with("docker/setup-buildx-action@"))
    }));
    // The names the images are pushed under are the ones users pull.
    let repo_of = |image: &str| image.rsplit('/').next().unwrap_or(image).to_string();
    let chart_image =
        yaml(&read(&chart().join("values.yaml")), "values.yaml")["image"]["repository"]
            .as_str()
            .map(repo_of);
    assert_eq!(chart_image.as_deref(), Some("raft-operator"));
    let example = yaml(
        &read(&workspace().join("deploy/examples/raftcluster.yaml")),
        "raftcluster.yaml",
    );
    assert_eq!(
        example["spec"]["image"].as_str().map(repo_of).as_deref(),
        Some("raft")
    );
}
