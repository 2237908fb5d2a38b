//! Reconciler scenarios against a mocked API server (kube's documented
//! approach: a `tower_test` mock service behind a real `kube::Client`) and
//! fake replicas behind the [`ReplicaAdmin`] trait.
//!
//! The fake API server keeps objects by path, answers GET, LIST, PATCH
//! (apply, merge, status), POST, PUT and DELETE like the real one does for
//! the calls the reconciler makes, and records every request, so each
//! scenario reads: this is the world, reconcile, these are the calls and
//! this is the status.

use crate::admin::{AdminEndpoint, AdminError, ReplicaAdmin};
use crate::builders::test_cluster::cluster;
use crate::controller::{Context, reconcile};
use crate::crd::{RaftCluster, RaftClusterSpec, RaftClusterStatus};
use crate::metrics::Metrics;
use crate::names::node_id;
use futures::future::BoxFuture;
use http::{Request, Response, StatusCode};
use kube::client::Body;
use kuberaft_proto::admin as pb;
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

const NS: &str = "default";
const STS_PATH: &str = "/apis/apps/v1/namespaces/default/statefulsets/kv";

/// One request the reconciler made.
#[derive(Clone, Debug)]
struct Recorded {
    method: String,
    path: String,
    body: Value,
}

/// The fake API server's state.
#[derive(Default)]
struct World {
    objects: BTreeMap<String, Value>,
    requests: Vec<Recorded>,
    /// Paths (prefixes) whose resource type does not exist (404 on any call).
    missing_types: Vec<String>,
}

#[derive(Clone, Default)]
pub(crate) struct FakeApi(Arc<Mutex<World>>);

fn merge(target: &mut Value, patch: &Value) {
    match (target, patch) {
        (Value::Object(t), Value::Object(p)) => {
            for (k, v) in p {
                if v.is_null() {
                    t.remove(k);
                } else {
                    merge(t.entry(k.clone()).or_insert(Value::Null), v);
                }
            }
        }
        (t, p) => *t = p.clone(),
    }
}

fn not_found() -> (StatusCode, Value) {
    (
        StatusCode::NOT_FOUND,
        json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
               "message": "not found", "reason": "NotFound", "code": 404}),
    )
}

impl FakeApi {
    fn handle(&self, method: &str, path: &str, body: Value) -> (StatusCode, Value) {
        let mut world = self.0.lock().unwrap();
        world.requests.push(Recorded {
            method: method.to_string(),
            path: path.to_string(),
            body: body.clone(),
        });
        if world
            .missing_types
            .iter()
            .any(|p| path.starts_with(p.as_str()))
        {
            return not_found();
        }
        match method {
            "GET" => {
                if let Some(o) = world.objects.get(path) {
                    return (StatusCode::OK, o.clone());
                }
                let prefix = format!("{path}/");
                let is_list =
                    path.ends_with('s') && !path.rsplit('/').next().unwrap_or("").contains('-');
                if is_list {
                    let items: Vec<Value> = world
                        .objects
                        .iter()
                        .filter(|(p, _)| p.starts_with(&prefix) && !p[prefix.len()..].contains('/'))
                        .map(|(_, o)| o.clone())
                        .collect();
                    return (
                        StatusCode::OK,
                        json!({"kind": "List", "apiVersion": "v1", "metadata": {"resourceVersion": "1"}, "items": items}),
                    );
                }
                not_found()
            }
            "PATCH" => {
                if let Some(parent) = path.strip_suffix("/status") {
                    let Some(o) = world.objects.get_mut(parent) else {
                        return not_found();
                    };
                    o["status"] = body["status"].clone();
                    return (StatusCode::OK, o.clone());
                }
                let entry = world.objects.entry(path.to_string()).or_insert(Value::Null);
                if entry.is_null() {
                    *entry = body;
                } else {
                    merge(entry, &body);
                }
                (StatusCode::OK, entry.clone())
            }
            "POST" => {
                let name = body["metadata"]["name"]
                    .as_str()
                    .unwrap_or("generated")
                    .to_string();
                world.objects.insert(format!("{path}/{name}"), body.clone());
                (StatusCode::CREATED, body)
            }
            "PUT" => {
                world.objects.insert(path.to_string(), body.clone());
                (StatusCode::OK, body)
            }
            "DELETE" => match world.objects.remove(path) {
                Some(o) => (StatusCode::OK, o),
                None => not_found(),
            },
            _ => (StatusCode::METHOD_NOT_ALLOWED, json!({})),
        }
    }

    pub(crate) fn put(&self, path: &str, object: Value) {
        self.0
            .lock()
            .unwrap()
            .objects
            .insert(path.to_string(), object);
    }

    pub(crate) fn get(&self, path: &str) -> Option<Value> {
        self.0.lock().unwrap().objects.get(path).cloned()
    }

    fn take_requests(&self) -> Vec<Recorded> {
        std::mem::take(&mut self.0.lock().unwrap().requests)
    }

    fn missing_type(&self, prefix: &str) {
        self.0
            .lock()
            .unwrap()
            .missing_types
            .push(prefix.to_string());
    }
}

/// A client whose every request is answered by `api`.
pub(crate) fn client(api: FakeApi) -> kube::Client {
    let (service, mut handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
    tokio::spawn(async move {
        while let Some((request, send)) = handle.next_request().await {
            let method = request.method().to_string();
            let path = request.uri().path().to_string();
            let bytes = request
                .into_body()
                .collect_bytes()
                .await
                .unwrap_or_default();
            let body: Value = if bytes.is_empty() {
                Value::Null
            } else {
                serde_json::from_slice(&bytes).unwrap_or(Value::Null)
            };
            let (status, reply) = api.handle(&method, &path, body);
            let response = Response::builder()
                .status(status)
                .header("content-type", "application/json")
                .body(Body::from(serde_json::to_vec(&reply).unwrap()))
                .unwrap();
            send.send_response(response);
        }
    });
    kube::Client::new(service, NS)
}

/// Fake replicas: a status per admin endpoint, and every change asked.
#[derive(Default)]
pub(crate) struct FakeReplicas {
    statuses: Mutex<BTreeMap<String, pb::NodeStatus>>,
    calls: Mutex<Vec<String>>,
    /// Every endpoint asked for its status, with its TLS settings.
    seen: Mutex<Vec<AdminEndpoint>>,
}

impl FakeReplicas {
    fn record(&self, call: String) -> BoxFuture<'_, Result<(), AdminError>> {
        self.calls.lock().unwrap().push(call);
        Box::pin(async { Ok(()) })
    }
    fn take_calls(&self) -> Vec<String> {
        std::mem::take(&mut self.calls.lock().unwrap())
    }
}

impl ReplicaAdmin for FakeReplicas {
    fn status<'a>(
        &'a self,
        endpoint: &'a AdminEndpoint,
    ) -> BoxFuture<'a, Result<pb::NodeStatus, AdminError>> {
        self.seen.lock().unwrap().push(endpoint.clone());
        let found = self
            .statuses
            .lock()
            .unwrap()
            .get(&endpoint.address)
            .cloned();
        Box::pin(async move {
            found.ok_or_else(|| AdminError {
                endpoint: endpoint.address.clone(),
                call: "Status",
                message: "connection refused".into(),
            })
        })
    }
    fn add_learner<'a>(
        &'a self,
        e: &'a AdminEndpoint,
        m: pb::Member,
        g: Option<u64>,
    ) -> BoxFuture<'a, Result<(), AdminError>> {
        self.record(format!(
            "AddLearner to={} id={} name={} address={} group={g:?}",
            e.address, m.id, m.name, m.address
        ))
    }
    fn promote<'a>(
        &'a self,
        e: &'a AdminEndpoint,
        id: u64,
        g: Option<u64>,
    ) -> BoxFuture<'a, Result<(), AdminError>> {
        self.record(format!("Promote to={} id={id} group={g:?}", e.address))
    }
    fn remove_member<'a>(
        &'a self,
        e: &'a AdminEndpoint,
        id: u64,
        g: Option<u64>,
    ) -> BoxFuture<'a, Result<(), AdminError>> {
        self.record(format!("RemoveMember to={} id={id} group={g:?}", e.address))
    }
    fn transfer_leader<'a>(
        &'a self,
        e: &'a AdminEndpoint,
        g: Option<u64>,
        to: u64,
    ) -> BoxFuture<'a, Result<(), AdminError>> {
        self.record(format!(
            "TransferLeader to={} group={g:?} new_leader={to}",
            e.address
        ))
    }
}

fn ip(ordinal: u32) -> String {
    format!("127.0.9.{}", ordinal + 1)
}

fn endpoint(ordinal: u32) -> String {
    format!("{}:7400", ip(ordinal))
}

/// One scenario's world: the API server, the replicas, the context.
struct Scenario {
    api: FakeApi,
    replicas: Arc<FakeReplicas>,
    ctx: Arc<Context>,
}

impl Scenario {
    fn new() -> Scenario {
        let api = FakeApi::default();
        let replicas = Arc::new(FakeReplicas::default());
        let mut ctx = Context::new(client(api.clone()), replicas.clone(), Metrics::new());
        ctx.watch_leaders = false;
        let ctx = Arc::new(ctx);
        Scenario { api, replicas, ctx }
    }

    /// Stores the cluster (as the API server has it) and returns it.
    fn cluster(&self, spec: RaftClusterSpec, status: Option<RaftClusterStatus>) -> RaftCluster {
        let mut c = cluster("kv", spec);
        c.status = status;
        self.api.put(
            "/apis/kuberaft.io/v1alpha1/namespaces/default/raftclusters/kv",
            serde_json::to_value(&c).unwrap(),
        );
        c
    }

    fn statefulset(&self, replicas: u32, update_revision: &str) {
        self.api.put(
            STS_PATH,
            json!({"apiVersion": "apps/v1", "kind": "StatefulSet",
                   "metadata": {"name": "kv", "namespace": NS},
                   "spec": {"replicas": replicas, "selector": {}, "serviceName": "kv-peer",
                            "template": {"spec": {"containers": [{"name": "raft",
                                "env": [{"name": "RAFT_TLS_CA", "value": "/etc/raft/tls/ca.crt"}]}]}},
                            "volumeClaimTemplates": [{"metadata": {"name": "data"},
                               "spec": {"resources": {"requests": {"storage": "1Gi"}}}}]},
                   "status": {"replicas": replicas, "updateRevision": update_revision}}),
        );
    }

    fn pod(&self, ordinal: u32, ready: bool, revision: &str) {
        self.api.put(
            &format!("/api/v1/namespaces/default/pods/kv-{ordinal}"),
            json!({"apiVersion": "v1", "kind": "Pod",
                   "metadata": {"name": format!("kv-{ordinal}"), "namespace": NS,
                                "labels": {"app.kubernetes.io/name": "kuberaft",
                                           "app.kubernetes.io/instance": "kv",
                                           "controller-revision-hash": revision}},
                   "status": {"podIP": ip(ordinal),
                              "conditions": [{"type": "Ready", "status": if ready {"True"} else {"False"}}]}}),
        );
    }

    /// Replicas `voters` form the configuration with `leader` leading;
    /// `waiting` answer but are not members.
    fn replicas(&self, voters: &[u32], leader: u32, waiting: &[u32]) {
        let ids: Vec<u64> = voters.iter().map(|o| node_id(*o)).collect();
        let mut statuses = self.replicas.statuses.lock().unwrap();
        statuses.clear();
        for &o in voters {
            let progress = if o == leader {
                voters
                    .iter()
                    .filter(|v| **v != o)
                    .map(|v| pb::FollowerProgress {
                        node: node_id(*v),
                        match_index: 42,
                        next_index: 43,
                        state: "replicate".into(),
                        recent_active: true,
                    })
                    .collect()
            } else {
                vec![]
            };
            statuses.insert(
                endpoint(o),
                pb::NodeStatus {
                    node_id: node_id(o),
                    name: format!("kv-{o}"),
                    groups: vec![pb::GroupStatus {
                        group: 0,
                        role: if o == leader {
                            pb::Role::Leader
                        } else {
                            pb::Role::Follower
                        } as i32,
                        term: 3,
                        leader: node_id(leader),
                        commit_index: 42,
                        applied_index: 42,
                        voters: ids.clone(),
                        progress,
                        ..Default::default()
                    }],
                    ready: true,
                    ..Default::default()
                },
            );
        }
        for &o in waiting {
            statuses.insert(
                endpoint(o),
                pb::NodeStatus {
                    node_id: node_id(o),
                    name: format!("kv-{o}"),
                    groups: vec![pb::GroupStatus::default()],
                    awaiting_membership: true,
                    ..Default::default()
                },
            );
        }
    }

    async fn reconcile(&self, c: &RaftCluster) -> kube::runtime::controller::Action {
        reconcile(Arc::new(c.clone()), self.ctx.clone())
            .await
            .expect("reconcile succeeds")
    }

    fn status(&self) -> RaftClusterStatus {
        let c = self
            .api
            .get("/apis/kuberaft.io/v1alpha1/namespaces/default/raftclusters/kv")
            .unwrap();
        serde_json::from_value(c["status"].clone()).expect("a status was written")
    }

    fn condition(&self, type_: &str) -> (String, String, String) {
        let s = self.status();
        let c = s
            .conditions
            .iter()
            .find(|c| c.type_ == type_)
            .expect("condition");
        (c.status.clone(), c.reason.clone(), c.message.clone())
    }

    fn config_text(&self) -> String {
        let cm = self
            .api
            .get("/api/v1/namespaces/default/configmaps/kv-config")
            .expect("the ConfigMap was applied");
        cm["data"]["raft.json"].as_str().unwrap().to_string()
    }

    fn statefulset_replicas(&self) -> u64 {
        self.api.get(STS_PATH).unwrap()["spec"]["replicas"]
            .as_u64()
            .unwrap()
    }
}

fn bootstrapped() -> Option<RaftClusterStatus> {
    Some(RaftClusterStatus {
        bootstrapped: true,
        bootstrap_replicas: Some(3),
        ..RaftClusterStatus::default()
    })
}

/// Every event reason published.
fn all_events(requests: &[Recorded]) -> Vec<String> {
    requests
        .iter()
        .filter(|r| r.path.contains("/events") && r.method == "POST")
        .map(|r| r.body["reason"].as_str().unwrap_or("").to_string())
        .collect()
}

/// The event reasons of membership and rollout (a cluster's first
/// certificates, issued on the scenario's first reconcile, left out).
fn events(requests: &[Recorded]) -> Vec<String> {
    all_events(requests)
        .into_iter()
        .filter(|r| r != "CertificatesIssued")
        .collect()
}

fn applied(requests: &[Recorded]) -> Vec<String> {
    requests
        .iter()
        .filter(|r| {
            r.method == "PATCH" && !r.path.ends_with("/status") && !r.path.contains("/pods/")
        })
        .map(|r| r.path.clone())
        .collect()
}

#[tokio::test]
async fn create_applies_every_object_and_bootstraps_a_new_cluster() {
    let s = Scenario::new();
    let c = s.cluster(RaftClusterSpec::default(), None);
    s.reconcile(&c).await;
    let requests = s.api.take_requests();
    let applied = applied(&requests);
    for path in [
        "/api/v1/namespaces/default/configmaps/kv-config",
        "/api/v1/namespaces/default/services/kv-peer",
        "/api/v1/namespaces/default/services/kv",
        "/api/v1/namespaces/default/services/kv-leader",
        STS_PATH,
        "/apis/policy/v1/namespaces/default/poddisruptionbudgets/kv",
    ] {
        assert!(
            applied.iter().any(|p| p == path),
            "{path} not applied: {applied:?}"
        );
    }
    let sts = s.api.get(STS_PATH).unwrap();
    assert_eq!(sts["spec"]["replicas"], 3);
    assert_eq!(sts["spec"]["podManagementPolicy"], "Parallel");
    assert_eq!(sts["metadata"]["ownerReferences"][0]["kind"], "RaftCluster");
    assert!(
        s.config_text()
            .contains("\"initial_cluster_state\": \"new\"")
    );
    let pdb = s
        .api
        .get("/apis/policy/v1/namespaces/default/poddisruptionbudgets/kv")
        .unwrap();
    assert_eq!(pdb["spec"]["maxUnavailable"], 1);
    let status = s.status();
    assert!(!status.bootstrapped);
    assert_eq!(status.bootstrap_replicas, Some(3));
    assert_eq!(s.condition("Progressing").1, "Bootstrapping");
    assert_eq!(s.condition("Available").0, "False");
    assert!(
        s.replicas.take_calls().is_empty(),
        "no membership change before bootstrap"
    );
}

#[tokio::test]
async fn status_reports_members_leader_and_quorum_and_labels_the_leader() {
    let s = Scenario::new();
    let c = s.cluster(RaftClusterSpec::default(), None);
    s.statefulset(3, "r1");
    for o in 0..3 {
        s.pod(o, true, "r1");
    }
    s.replicas(&[0, 1, 2], 1, &[]);
    s.reconcile(&c).await;
    let status = s.status();
    assert!(
        status.bootstrapped,
        "Available once: bootstrapped from now on"
    );
    assert_eq!(status.leader.as_deref(), Some("kv-1"));
    assert_eq!(status.term, Some(3));
    assert_eq!(status.commit_index, Some(42));
    assert_eq!(status.ready_replicas, 3);
    assert_eq!(status.members.len(), 3);
    assert!(status.members.iter().all(|m| m.healthy));
    assert_eq!(
        status.selector,
        "app.kubernetes.io/instance=kv,app.kubernetes.io/name=kuberaft"
    );
    let (available, reason, message) = s.condition("Available");
    assert_eq!(
        (available.as_str(), reason.as_str()),
        ("True", "QuorumHealthy")
    );
    assert_eq!(message, "3/3 healthy, quorum 2");
    let pod = s.api.get("/api/v1/namespaces/default/pods/kv-1").unwrap();
    assert_eq!(pod["metadata"]["labels"]["kuberaft.io/role"], "leader");

    // Leadership moves: the label follows on the next reconcile.
    s.replicas(&[0, 1, 2], 2, &[]);
    let c = s.cluster(RaftClusterSpec::default(), Some(status));
    s.reconcile(&c).await;
    let labels = |o: u32| {
        s.api
            .get(&format!("/api/v1/namespaces/default/pods/kv-{o}"))
            .unwrap()["metadata"]["labels"]
            .clone()
    };
    assert!(labels(1).get("kuberaft.io/role").is_none());
    assert_eq!(labels(2)["kuberaft.io/role"], "leader");
    assert!(
        s.config_text()
            .contains("\"initial_cluster_state\": \"existing\"")
    );
}

#[tokio::test]
async fn scale_up_grows_the_statefulset_then_adds_a_learner_through_the_leader() {
    let s = Scenario::new();
    let spec = RaftClusterSpec {
        replicas: 5,
        ..RaftClusterSpec::default()
    };
    let c = s.cluster(spec.clone(), bootstrapped());
    s.statefulset(3, "r1");
    for o in 0..3 {
        s.pod(o, true, "r1");
    }
    s.replicas(&[0, 1, 2], 0, &[]);
    s.reconcile(&c).await;
    assert_eq!(s.statefulset_replicas(), 5);
    assert!(s.config_text().contains("kv-4.kv-peer.default.svc"));
    assert!(
        s.replicas.take_calls().is_empty(),
        "pods 3 and 4 do not answer yet"
    );
    assert_eq!(s.condition("Progressing").1, "ScalingOut");

    s.pod(3, false, "r1");
    s.pod(4, false, "r1");
    s.replicas(&[0, 1, 2], 0, &[3, 4]);
    s.api.take_requests();
    s.reconcile(&c).await;
    assert_eq!(
        s.replicas.take_calls(),
        vec![
            "AddLearner to=127.0.9.1:7400 id=4 name=kv-3 address=kv-3.kv-peer.default.svc:7400 group=None"
        ]
    );
    assert_eq!(events(&s.api.take_requests()), vec!["MemberAdded"]);
}

#[tokio::test]
async fn scale_down_removes_the_highest_member_before_shrinking_the_statefulset() {
    let s = Scenario::new();
    let c = s.cluster(RaftClusterSpec::default(), bootstrapped());
    s.statefulset(5, "r1");
    for o in 0..5 {
        s.pod(o, true, "r1");
    }
    s.replicas(&[0, 1, 2, 3, 4], 0, &[]);
    s.reconcile(&c).await;
    assert_eq!(
        s.statefulset_replicas(),
        5,
        "member 4 is still in the configuration"
    );
    assert_eq!(
        s.replicas.take_calls(),
        vec!["RemoveMember to=127.0.9.1:7400 id=5 group=None"]
    );
    assert_eq!(events(&s.api.take_requests()), vec!["MemberRemoved"]);
    assert_eq!(s.condition("Progressing").1, "ScalingIn");

    // Committed: 4 is gone, so the StatefulSet shrinks to 4 and 3 goes next.
    s.replicas(&[0, 1, 2, 3], 0, &[4]);
    s.reconcile(&c).await;
    assert_eq!(s.statefulset_replicas(), 4);
    assert_eq!(
        s.replicas.take_calls(),
        vec!["RemoveMember to=127.0.9.1:7400 id=4 group=None"]
    );
}

#[tokio::test]
async fn a_leader_being_scaled_away_hands_over_first() {
    let s = Scenario::new();
    let c = s.cluster(RaftClusterSpec::default(), bootstrapped());
    s.statefulset(4, "r1");
    for o in 0..4 {
        s.pod(o, true, "r1");
    }
    s.replicas(&[0, 1, 2, 3], 3, &[]);
    s.reconcile(&c).await;
    let calls = s.replicas.take_calls();
    assert_eq!(calls.len(), 1);
    assert!(
        calls[0].starts_with("TransferLeader to=127.0.9.4:7400 group=Some(0)"),
        "{calls:?}"
    );
    assert_eq!(
        events(&s.api.take_requests()),
        vec!["LeadershipTransferred"]
    );
}

#[tokio::test]
async fn paused_changes_nothing_and_warns() {
    let s = Scenario::new();
    let spec = RaftClusterSpec {
        replicas: 5,
        paused: true,
        ..RaftClusterSpec::default()
    };
    let c = s.cluster(spec, bootstrapped());
    s.statefulset(3, "r1");
    for o in 0..3 {
        s.pod(o, true, "r1");
    }
    s.replicas(&[0, 1, 2], 0, &[]);
    s.reconcile(&c).await;
    let requests = s.api.take_requests();
    assert!(
        applied(&requests).is_empty(),
        "nothing applied: {:?}",
        applied(&requests)
    );
    assert!(
        !requests.iter().any(|r| r.path.contains("/pods/")),
        "no label changes"
    );
    assert!(s.replicas.take_calls().is_empty());
    assert_eq!(s.statefulset_replicas(), 3);
    assert_eq!(events(&requests), vec!["ReconciliationPaused"]);
    let w = requests
        .iter()
        .find(|r| r.path.contains("/events"))
        .unwrap();
    assert_eq!(w.body["type"], "Warning");
    assert_eq!(s.condition("ReconciliationPaused").0, "True");
    assert_eq!(
        s.status().leader.as_deref(),
        Some("kv-0"),
        "status is still reported"
    );
}

#[tokio::test]
async fn a_cluster_being_deleted_is_left_to_the_garbage_collector() {
    let s = Scenario::new();
    let mut c = s.cluster(RaftClusterSpec::default(), bootstrapped());
    c.metadata.deletion_timestamp = Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
        k8s_openapi::jiff::Timestamp::now(),
    ));
    s.statefulset(3, "r1");
    s.replicas(&[0, 1, 2], 0, &[]);
    let action = s.reconcile(&c).await;
    assert_eq!(action, kube::runtime::controller::Action::await_change());
    assert!(s.api.take_requests().is_empty(), "no call at all");
    assert!(
        s.replicas.take_calls().is_empty(),
        "no member removed on deletion"
    );
}

#[tokio::test]
async fn rolling_update_restarts_a_follower_and_reports_it() {
    let s = Scenario::new();
    let c = s.cluster(RaftClusterSpec::default(), bootstrapped());
    s.statefulset(3, "r2");
    for o in 0..3 {
        s.pod(o, true, "r1");
    }
    s.replicas(&[0, 1, 2], 0, &[]);
    s.reconcile(&c).await;
    let requests = s.api.take_requests();
    let deleted: Vec<&str> = requests
        .iter()
        .filter(|r| r.method == "DELETE")
        .map(|r| r.path.as_str())
        .collect();
    assert_eq!(deleted, vec!["/api/v1/namespaces/default/pods/kv-2"]);
    assert_eq!(events(&requests), vec!["RollingUpdate"]);
    assert_eq!(s.condition("Progressing").1, "RollingUpdate");
}

#[tokio::test]
async fn rolling_update_stops_and_says_why_when_a_member_is_unhealthy() {
    let s = Scenario::new();
    let c = s.cluster(RaftClusterSpec::default(), bootstrapped());
    s.statefulset(3, "r2");
    s.pod(0, true, "r1");
    s.pod(1, false, "r2");
    s.pod(2, true, "r1");
    s.replicas(&[0, 1, 2], 0, &[]);
    s.reconcile(&c).await;
    let requests = s.api.take_requests();
    assert!(!requests.iter().any(|r| r.method == "DELETE"));
    let (degraded, reason, message) = s.condition("Degraded");
    assert_eq!(
        (degraded.as_str(), reason.as_str()),
        ("True", "RollingUpdateBlocked")
    );
    assert!(message.contains("[1]"), "{message}");
}

#[tokio::test]
async fn quorum_loss_is_a_warning_event_and_changes_no_membership() {
    let s = Scenario::new();
    let c = s.cluster(RaftClusterSpec::default(), bootstrapped());
    s.statefulset(3, "r1");
    for o in 0..3 {
        s.pod(o, true, "r1");
    }
    s.replicas(&[0, 1, 2], 0, &[]);
    s.reconcile(&c).await;
    let healthy = s.status();
    // Two replicas stop answering.
    s.replicas
        .statuses
        .lock()
        .unwrap()
        .retain(|e, _| e == &endpoint(0));
    let c = s.cluster(RaftClusterSpec::default(), Some(healthy));
    s.api.take_requests();
    s.reconcile(&c).await;
    assert!(events(&s.api.take_requests()).contains(&"QuorumLost".to_string()));
    assert_eq!(s.condition("Available").0, "False");
    assert_eq!(s.condition("Degraded").1, "QuorumLost");
    assert!(s.replicas.take_calls().is_empty());
    assert_eq!(s.statefulset_replicas(), 3);
}

#[tokio::test]
async fn a_lost_volume_is_replaced() {
    let s = Scenario::new();
    let c = s.cluster(RaftClusterSpec::default(), bootstrapped());
    s.statefulset(3, "r1");
    for o in 0..3 {
        s.pod(o, true, "r1");
    }
    s.replicas(&[0, 1, 2], 0, &[]);
    {
        let mut st = s.replicas.statuses.lock().unwrap();
        let lost = st.get_mut(&endpoint(2)).unwrap();
        lost.awaiting_membership = true;
        lost.ready = false;
    }
    s.reconcile(&c).await;
    assert_eq!(
        s.replicas.take_calls(),
        vec!["RemoveMember to=127.0.9.1:7400 id=3 group=None"]
    );
    assert_eq!(events(&s.api.take_requests()), vec!["ReplacingMember"]);
}

#[tokio::test]
async fn a_change_to_groups_or_storage_is_refused_and_nothing_is_applied() {
    let s = Scenario::new();
    let spec = RaftClusterSpec {
        groups: 4,
        ..RaftClusterSpec::default()
    };
    let c = s.cluster(spec, bootstrapped());
    s.statefulset(3, "r1");
    for o in 0..3 {
        s.pod(o, true, "r1");
    }
    s.replicas(&[0, 1, 2], 0, &[]);
    s.reconcile(&c).await;
    let requests = s.api.take_requests();
    assert!(applied(&requests).is_empty());
    let (degraded, reason, message) = s.condition("Degraded");
    assert_eq!(
        (degraded.as_str(), reason.as_str()),
        ("True", "SpecRejected")
    );
    assert!(message.contains("set it back to 1"), "{message}");
}

#[tokio::test]
async fn a_missing_service_monitor_crd_is_a_warning_not_a_failure() {
    let s = Scenario::new();
    s.api.missing_type("/apis/monitoring.coreos.com/");
    let mut spec = RaftClusterSpec::default();
    spec.monitoring.service_monitor = true;
    let c = s.cluster(spec, None);
    s.reconcile(&c).await;
    assert_eq!(
        events(&s.api.take_requests()),
        vec!["ServiceMonitorUnavailable"]
    );
    assert!(s.api.get(STS_PATH).is_some(), "everything else was applied");
}

mod lease {
    use super::*;
    use crate::lease::LeaseLock;
    use std::time::Duration;

    const LEASE: &str =
        "/apis/coordination.k8s.io/v1/namespaces/kuberaft-system/leases/kuberaft-operator";

    fn lock(api: &FakeApi, identity: &str) -> LeaseLock {
        LeaseLock::new(
            client(api.clone()),
            "kuberaft-system",
            "kuberaft-operator",
            identity,
            Duration::from_secs(15),
        )
    }

    fn holder(api: &FakeApi) -> Option<String> {
        api.get(LEASE)?["spec"]["holderIdentity"]
            .as_str()
            .map(String::from)
    }

    #[tokio::test]
    async fn the_first_instance_takes_the_lease_and_the_second_waits() {
        let api = FakeApi::default();
        let a = lock(&api, "operator-a");
        let b = lock(&api, "operator-b");
        assert!(a.try_acquire().await.unwrap(), "a free lease is taken");
        assert!(
            !b.try_acquire().await.unwrap(),
            "a fresh lease is respected"
        );
        assert!(a.try_acquire().await.unwrap(), "the holder renews");
        assert_eq!(holder(&api).as_deref(), Some("operator-a"));
    }

    #[tokio::test]
    async fn an_expired_lease_is_taken_over_and_a_released_one_at_once() {
        let api = FakeApi::default();
        let a = lock(&api, "operator-a");
        let b = lock(&api, "operator-b");
        assert!(a.try_acquire().await.unwrap());
        // a stops renewing: its last renewal is a minute old.
        let mut lease = api.get(LEASE).unwrap();
        lease["spec"]["renewTime"] = json!("2020-01-01T00:00:00.000000Z");
        api.put(LEASE, lease);
        assert!(
            b.try_acquire().await.unwrap(),
            "an expired lease is taken over"
        );
        assert_eq!(holder(&api).as_deref(), Some("operator-b"));
        assert_eq!(api.get(LEASE).unwrap()["spec"]["leaseTransitions"], 1);
        assert!(
            !a.try_acquire().await.unwrap(),
            "the old holder does not take it back"
        );

        b.release().await.unwrap();
        assert!(
            a.try_acquire().await.unwrap(),
            "a released lease is free at once"
        );
    }
}

// --- TLS and NetworkPolicy -------------------------------------------------

fn secret_text(api: &FakeApi, name: &str) -> Option<BTreeMap<String, String>> {
    let value = api.get(&format!("/api/v1/namespaces/default/secrets/{name}"))?;
    let secret: k8s_openapi::api::core::v1::Secret =
        serde_json::from_value(value).expect("a Secret");
    Some(crate::tls::bundle::secret_text(&secret))
}

fn secret_patches(requests: &[Recorded]) -> Vec<String> {
    requests
        .iter()
        .filter(|r| r.method == "PATCH" && r.path.contains("/secrets/"))
        .map(|r| r.path.clone())
        .collect()
}

fn env_of(sts: &Value) -> BTreeMap<String, String> {
    sts["spec"]["template"]["spec"]["containers"][0]["env"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["name"].as_str().unwrap().to_string(),
                e["value"].as_str().unwrap_or("(from field)").to_string(),
            )
        })
        .collect()
}

#[tokio::test]
async fn a_new_cluster_gets_a_ca_certificates_for_every_pod_and_mounts_them() {
    use crate::tls::inspect::{issued_by, parse};
    let s = Scenario::new();
    let c = s.cluster(RaftClusterSpec::default(), None);
    s.reconcile(&c).await;
    let requests = s.api.take_requests();
    assert_eq!(
        secret_patches(&requests),
        [
            "/api/v1/namespaces/default/secrets/kv-ca",
            "/api/v1/namespaces/default/secrets/kv-tls"
        ],
        "the CA first, then the replicas' bundle"
    );
    assert!(all_events(&requests).contains(&"CertificatesIssued".to_string()));
    let tls = secret_text(&s.api, "kv-tls").expect("kv-tls");
    let ca = secret_text(&s.api, "kv-ca").expect("kv-ca");
    assert!(
        ca.contains_key("ca.key") && !tls.contains_key("ca.key"),
        "the CA key never reaches the pods"
    );
    let mut keys: Vec<&str> = tls.keys().map(String::as_str).collect();
    keys.sort();
    assert_eq!(
        keys,
        [
            "ca.crt", "kv-0.crt", "kv-0.key", "kv-1.crt", "kv-1.key", "kv-2.crt", "kv-2.key"
        ]
    );
    for o in 0..3 {
        let cert = &tls[&format!("kv-{o}.crt")];
        let info = parse(cert).unwrap();
        assert_eq!(info.common_name, Some(format!("kv-{o}")));
        assert!(
            info.dns_names
                .contains(&format!("kv-{o}.kv-peer.default.svc"))
        );
        assert!(info.server_auth && info.client_auth);
        assert!(issued_by(cert, &tls["ca.crt"]));
    }
    let operator = parse(&ca["operator.crt"]).unwrap();
    assert_eq!(operator.common_name.as_deref(), Some("raft-operator"));
    assert!(issued_by(&ca["operator.crt"], &ca["ca.crt"]));
    // The owner reference lets the garbage collector take them along.
    let raw = s
        .api
        .get("/api/v1/namespaces/default/secrets/kv-tls")
        .unwrap();
    assert_eq!(raw["metadata"]["ownerReferences"][0]["kind"], "RaftCluster");

    let sts = s.api.get(STS_PATH).unwrap();
    let env = env_of(&sts);
    assert_eq!(env["RAFT_TLS_CERT"], "/etc/raft/tls/$(POD_NAME).crt");
    assert_eq!(env["RAFT_TLS_KEY"], "/etc/raft/tls/$(POD_NAME).key");
    assert_eq!(env["RAFT_TLS_CA"], "/etc/raft/tls/ca.crt");
    assert_eq!(env["POD_NAME"], "(from field)");
    let names: Vec<&str> = sts["spec"]["template"]["spec"]["containers"][0]["env"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["name"].as_str().unwrap())
        .collect();
    let pos = |n: &str| names.iter().position(|x| *x == n).unwrap();
    assert!(
        pos("POD_NAME") < pos("RAFT_TLS_CERT"),
        "$(POD_NAME) must be defined before use"
    );
    let volumes = sts["spec"]["template"]["spec"]["volumes"]
        .as_array()
        .unwrap();
    let tls_volume = volumes
        .iter()
        .find(|v| v["name"] == "tls")
        .expect("tls volume");
    assert_eq!(tls_volume["secret"]["secretName"], "kv-tls");
    let mounts = sts["spec"]["template"]["spec"]["containers"][0]["volumeMounts"]
        .as_array()
        .unwrap();
    assert!(
        mounts.iter().any(|m| m["name"] == "tls"
            && m["mountPath"] == "/etc/raft/tls"
            && m["readOnly"] == true)
    );
    assert_eq!(s.condition("TLSReady").0, "True");

    // The next reconcile has nothing to issue.
    let c = s.cluster(RaftClusterSpec::default(), Some(s.status()));
    s.reconcile(&c).await;
    assert!(secret_patches(&s.api.take_requests()).is_empty());
}

#[tokio::test]
async fn scale_out_issues_the_new_pods_certificate_before_the_statefulset_grows() {
    let s = Scenario::new();
    let c = s.cluster(RaftClusterSpec::default(), None);
    s.reconcile(&c).await;
    s.statefulset(3, "r1");
    for o in 0..3 {
        s.pod(o, true, "r1");
    }
    s.replicas(&[0, 1, 2], 1, &[]);
    let spec = RaftClusterSpec {
        replicas: 4,
        ..RaftClusterSpec::default()
    };
    let c = s.cluster(spec, bootstrapped());
    s.api.take_requests();
    s.reconcile(&c).await;
    let requests = s.api.take_requests();
    let order: Vec<&str> = requests
        .iter()
        .filter(|r| r.method == "PATCH")
        .map(|r| r.path.as_str())
        .collect();
    let tls = order
        .iter()
        .position(|p| p.ends_with("/secrets/kv-tls"))
        .expect("kv-tls updated");
    let sts = order
        .iter()
        .position(|p| *p == STS_PATH)
        .expect("sts applied");
    assert!(tls < sts, "{order:?}");
    assert_eq!(s.statefulset_replicas(), 4);
    let bundle = secret_text(&s.api, "kv-tls").unwrap();
    assert!(bundle.contains_key("kv-3.crt") && bundle.contains_key("kv-3.key"));
    assert!(
        !secret_patches(&requests)
            .iter()
            .any(|p| p.ends_with("/kv-ca")),
        "the CA and the operator's certificate stay"
    );
}

#[tokio::test]
async fn the_operator_speaks_tls_to_the_replicas_with_its_client_certificate() {
    let s = Scenario::new();
    let c = s.cluster(RaftClusterSpec::default(), None);
    s.reconcile(&c).await;
    s.statefulset(3, "r1");
    for o in 0..3 {
        s.pod(o, true, "r1");
    }
    s.replicas(&[0, 1, 2], 1, &[]);
    s.replicas.seen.lock().unwrap().clear();
    s.reconcile(&c).await;
    let seen = s.replicas.seen.lock().unwrap().clone();
    assert_eq!(seen.len(), 3);
    let ca = secret_text(&s.api, "kv-ca").unwrap();
    let bundle = secret_text(&s.api, "kv-tls").unwrap();
    for e in &seen {
        let o = e
            .address
            .strip_prefix("127.0.9.")
            .and_then(|r| r.split(':').next())
            .unwrap();
        let ordinal: u32 = o.parse::<u32>().unwrap() - 1;
        let (server_name, tls) = e.tls.as_ref().expect("TLS towards every replica");
        assert_eq!(
            server_name,
            &format!("kv-{ordinal}.kv-peer.default.svc"),
            "verified under the pod's DNS name, dialled by IP"
        );
        assert_eq!(tls.identity.cert, ca["operator.crt"]);
        assert_eq!(tls.ca, bundle["ca.crt"]);
    }
    assert_eq!(s.status().leader.as_deref(), Some("kv-1"));
}

#[tokio::test]
async fn a_running_plain_cluster_stays_plain_and_says_why() {
    let s = Scenario::new();
    let c = s.cluster(RaftClusterSpec::default(), bootstrapped());
    s.statefulset(3, "r1");
    // A StatefulSet made before TLS existed.
    s.api.put(STS_PATH, {
        let mut sts = s.api.get(STS_PATH).unwrap();
        sts["spec"]["template"] = json!({});
        sts
    });
    for o in 0..3 {
        s.pod(o, true, "r1");
    }
    s.replicas(&[0, 1, 2], 0, &[]);
    s.reconcile(&c).await;
    let requests = s.api.take_requests();
    assert!(
        secret_patches(&requests).is_empty(),
        "no certificates for a plain cluster"
    );
    let sts = s.api.get(STS_PATH).unwrap();
    assert!(
        !env_of(&sts).contains_key("RAFT_TLS_CA"),
        "the pods are not switched"
    );
    let (ready, reason, message) = s.condition("TLSReady");
    assert_eq!(
        (ready.as_str(), reason.as_str()),
        ("False", "TLSChangeRefused")
    );
    assert!(
        message.contains("split the quorum") && message.contains("spec.tls.enabled: false"),
        "{message}"
    );
    assert!(
        s.replicas
            .seen
            .lock()
            .unwrap()
            .iter()
            .all(|e| e.tls.is_none())
    );
}

#[tokio::test]
async fn the_network_policy_follows_the_spec() {
    let s = Scenario::new();
    let mut spec = RaftClusterSpec::default();
    spec.network_policy.enabled = true;
    let c = s.cluster(spec, None);
    s.reconcile(&c).await;
    let path = "/apis/networking.k8s.io/v1/namespaces/default/networkpolicies/kv";
    let np = s.api.get(path).expect("the NetworkPolicy was applied");
    assert_eq!(np["spec"]["policyTypes"], json!(["Ingress", "Egress"]));
    assert_eq!(np["spec"]["ingress"][0]["ports"][0]["port"], 7400);
    let c = s.cluster(RaftClusterSpec::default(), Some(s.status()));
    s.reconcile(&c).await;
    assert!(s.api.get(path).is_none(), "deleted once disabled");
}

#[tokio::test]
async fn cert_manager_mode_asks_for_certificates_and_assembles_their_secrets() {
    use crate::tls::issue::{self, Usage};
    let s = Scenario::new();
    let mut spec = RaftClusterSpec::default();
    spec.tls.mode = crate::crd::TlsMode::CertManager;
    spec.tls.cert_manager = Some(crate::crd::CertManagerTls {
        issuer_ref: crate::crd::IssuerRef {
            name: "ca-issuer".into(),
            kind: crate::crd::IssuerKind::ClusterIssuer,
            group: "cert-manager.io".into(),
        },
        duration: None,
    });
    let c = s.cluster(spec.clone(), None);
    s.reconcile(&c).await;
    let cert = s
        .api
        .get("/apis/cert-manager.io/v1/namespaces/default/certificates/kv-1-tls")
        .expect("a Certificate per replica");
    assert_eq!(cert["spec"]["secretName"], "kv-1-tls");
    assert_eq!(cert["spec"]["commonName"], "kv-1");
    assert_eq!(cert["spec"]["dnsNames"][0], "kv-1.kv-peer.default.svc");
    assert_eq!(cert["spec"]["issuerRef"]["kind"], "ClusterIssuer");
    let op = s
        .api
        .get("/apis/cert-manager.io/v1/namespaces/default/certificates/kv-operator-tls")
        .expect("the operator's Certificate");
    assert_eq!(op["spec"]["commonName"], "raft-operator");
    let (ready, reason, message) = s.condition("TLSReady");
    assert_eq!(
        (ready.as_str(), reason.as_str()),
        ("False", "WaitingForCertManager")
    );
    assert!(message.contains("kv-0-tls"), "{message}");

    // cert-manager issues: the Secrets appear and are assembled.
    let names = crate::names::Names::new("kv", "default");
    let ca = issue::new_ca("cm", 1_800_000_000, 86_400 * 300).unwrap();
    let now = crate::controller::tls::now_seconds();
    let put = |name: String, pem: crate::tls::Pem| {
        let data = BTreeMap::from([
            ("tls.crt".to_string(), pem.cert),
            ("tls.key".to_string(), pem.key),
            ("ca.crt".to_string(), ca.cert.clone()),
        ]);
        s.api.put(
            &format!("/api/v1/namespaces/default/secrets/{name}"),
            json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": name},
                   "data": serde_json::to_value(crate::tls::bundle::secret_data(&data)).unwrap()}),
        );
    };
    for o in 0..3 {
        let pem = issue::leaf(
            &ca,
            &names.pod(o),
            &names.replica_dns_names(o),
            Usage::Replica,
            now,
            86_400,
        )
        .unwrap();
        put(names.replica_certificate(o), pem);
    }
    put(
        names.operator_certificate(),
        issue::leaf(&ca, "raft-operator", &[], Usage::Client, now, 86_400).unwrap(),
    );
    let c = s.cluster(spec, Some(s.status()));
    s.reconcile(&c).await;
    let bundle = secret_text(&s.api, "kv-tls").unwrap();
    assert!(crate::tls::bundle::bundle_contains(
        &bundle["ca.crt"],
        &ca.cert
    ));
    assert_eq!(
        crate::tls::inspect::parse_all(&bundle["ca.crt"])
            .unwrap()
            .len(),
        1
    );
    assert!(bundle.contains_key("kv-2.key"));
    assert_eq!(s.condition("TLSReady").0, "True");
    assert!(
        secret_text(&s.api, "kv-ca").is_none(),
        "no operator CA in this mode"
    );
}

#[tokio::test]
async fn cert_manager_mode_without_cert_manager_says_how_to_fix_it() {
    let s = Scenario::new();
    s.api.missing_type("/apis/cert-manager.io/");
    let mut spec = RaftClusterSpec::default();
    spec.tls.mode = crate::crd::TlsMode::CertManager;
    spec.tls.cert_manager = Some(crate::crd::CertManagerTls {
        issuer_ref: crate::crd::IssuerRef {
            name: "ca".into(),
            kind: crate::crd::IssuerKind::Issuer,
            group: "cert-manager.io".into(),
        },
        duration: None,
    });
    let c = s.cluster(spec, None);
    s.reconcile(&c).await;
    let (ready, reason, message) = s.condition("TLSReady");
    assert_eq!(
        (ready.as_str(), reason.as_str()),
        ("False", "CertManagerMissing")
    );
    assert!(message.contains("install cert-manager"), "{message}");
    assert!(
        s.api.get(STS_PATH).is_some(),
        "the rest is applied all the same"
    );
}

#[tokio::test]
async fn a_missing_user_secret_is_a_condition_naming_the_keys_to_create() {
    let s = Scenario::new();
    let mut spec = RaftClusterSpec::default();
    spec.tls.mode = crate::crd::TlsMode::Secret;
    spec.tls.secret = Some(crate::crd::SecretTls {
        name: "my-certs".into(),
        operator_client_secret_name: "my-operator".into(),
    });
    let c = s.cluster(spec, None);
    s.reconcile(&c).await;
    let (ready, reason, message) = s.condition("TLSReady");
    assert_eq!(
        (ready.as_str(), reason.as_str()),
        ("False", "SecretMissing")
    );
    assert!(
        message.contains("my-certs") && message.contains("<pod>.crt"),
        "{message}"
    );
    assert!(secret_text(&s.api, "kv-tls").is_none());
}
