//! The status-stream watcher against fake replicas whose `WatchStatus`
//! streams the test scripts, and the mocked API server holding the pods:
//! a new group-0 leader moves the leader label and asks for a reconcile; a
//! stream that ends is reopened on the next replica, skipping one that
//! does not answer; stopping the watcher closes its stream.

use super::*;
use crate::admin::AdminEndpoint;
use crate::fixtures::{FakeApi, FakeReplicas, client};
use crate::metrics::Metrics;
use crate::names::{ROLE_LABEL, ROLE_LEADER};
use futures::StreamExt;
use kuberaft_proto::admin::admin_server::{Admin, AdminServer};
use serde_json::json;
use std::collections::VecDeque;
use std::pin::Pin;
use tonic::{Request, Response, Status};

/// Bound on every wait of these tests (the watcher retries every 2 s).
const WAIT: Duration = Duration::from_secs(20);

type StatusStream =
    Pin<Box<dyn futures::Stream<Item = Result<pb::NodeStatus, Status>> + Send + 'static>>;

/// A replica that answers only `WatchStatus`: each call takes the next
/// scripted stream; with none left, the call fails.
#[derive(Clone, Default)]
struct ScriptedReplica {
    streams: Arc<Mutex<VecDeque<mpsc::Receiver<pb::NodeStatus>>>>,
}

impl ScriptedReplica {
    /// A stream the next `WatchStatus` call gets, and its sender.
    fn next_stream(&self) -> mpsc::Sender<pb::NodeStatus> {
        let (tx, rx) = mpsc::channel(8);
        self.streams.lock().unwrap().push_back(rx);
        tx
    }

    /// Serves on a fresh loopback port; returns `host:port`.
    async fn serve(&self) -> String {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap().to_string();
        let server = tonic::transport::Server::builder()
            .add_service(AdminServer::new(self.clone()))
            .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener));
        tokio::spawn(server);
        address
    }
}

fn unimplemented<T>() -> Result<Response<T>, Status> {
    Err(Status::unimplemented("not scripted"))
}

#[tonic::async_trait]
impl Admin for ScriptedReplica {
    type WatchStatusStream = StatusStream;

    async fn status(
        &self,
        _: Request<pb::StatusRequest>,
    ) -> Result<Response<pb::NodeStatus>, Status> {
        unimplemented()
    }
    async fn add_learner(
        &self,
        _: Request<pb::AddLearnerRequest>,
    ) -> Result<Response<pb::MembershipResponse>, Status> {
        unimplemented()
    }
    async fn promote(
        &self,
        _: Request<pb::MemberRequest>,
    ) -> Result<Response<pb::MembershipResponse>, Status> {
        unimplemented()
    }
    async fn remove_member(
        &self,
        _: Request<pb::MemberRequest>,
    ) -> Result<Response<pb::MembershipResponse>, Status> {
        unimplemented()
    }
    async fn update_member(
        &self,
        _: Request<pb::UpdateMemberRequest>,
    ) -> Result<Response<pb::MembershipResponse>, Status> {
        unimplemented()
    }
    async fn transfer_leader(
        &self,
        _: Request<pb::TransferLeaderRequest>,
    ) -> Result<Response<pb::TransferLeaderResponse>, Status> {
        unimplemented()
    }
    async fn snapshot(
        &self,
        _: Request<pb::SnapshotRequest>,
    ) -> Result<Response<pb::SnapshotResponse>, Status> {
        unimplemented()
    }
    async fn watch_status(
        &self,
        _: Request<pb::StatusRequest>,
    ) -> Result<Response<StatusStream>, Status> {
        let Some(rx) = self.streams.lock().unwrap().pop_front() else {
            return Err(Status::unavailable("no stream scripted"));
        };
        let stream = tokio_stream::wrappers::ReceiverStream::new(rx).map(Ok);
        Ok(Response::new(Box::pin(stream)))
    }
}

/// A status whose group 0 is led by node `leader`.
fn led_by(leader: u64) -> pb::NodeStatus {
    pb::NodeStatus {
        groups: vec![pb::GroupStatus {
            group: 0,
            leader,
            ..Default::default()
        }],
        ..Default::default()
    }
}

fn pod_path(ordinal: u32) -> String {
    format!("/api/v1/namespaces/default/pods/kv-{ordinal}")
}

/// Three pods of cluster `kv`; `kv-0` carries the leader label.
fn world() -> (FakeApi, Names) {
    let names = Names::new("kv", "default");
    let api = FakeApi::default();
    for ordinal in 0..3 {
        let mut labels = serde_json::to_value(names.selector_labels()).unwrap();
        if ordinal == 0 {
            labels[ROLE_LABEL] = json!(ROLE_LEADER);
        }
        api.put(
            &pod_path(ordinal),
            json!({"apiVersion": "v1", "kind": "Pod",
                   "metadata": {"name": format!("kv-{ordinal}"), "namespace": "default",
                                "labels": labels}}),
        );
    }
    (api, names)
}

/// The role labels the pods carry, by ordinal.
fn role_labels(api: &FakeApi) -> BTreeMap<u32, String> {
    (0..3)
        .filter_map(|o| {
            let pod = api.get(&pod_path(o))?;
            let role = pod["metadata"]["labels"][ROLE_LABEL].as_str()?.to_string();
            Some((o, role))
        })
        .collect()
}

/// Exactly `leader` (or, with `None`, no pod) carries the leader label.
fn labelled(leader: Option<u32>) -> BTreeMap<u32, String> {
    leader
        .map(|o| (o, ROLE_LEADER.to_string()))
        .into_iter()
        .collect()
}

fn context(api: &FakeApi) -> Context {
    Context::new(
        client(api.clone()),
        Arc::new(FakeReplicas::default()),
        Metrics::new(),
    )
}

async fn next_trigger(triggers: &mut (impl Stream<Item = ()> + Unpin)) {
    tokio::time::timeout(WAIT, triggers.next())
        .await
        .expect("the watcher asks for a reconcile")
        .expect("the trigger stream stays open");
}

async fn until_labelled(api: &FakeApi, leader: Option<u32>) {
    let deadline = tokio::time::Instant::now() + WAIT;
    while role_labels(api) != labelled(leader) {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the leader label did not move to {leader:?} (the role labels are {:?})",
            role_labels(api)
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn a_new_leader_moves_the_label_and_asks_for_a_reconcile() {
    let (api, names) = world();
    let ctx = context(&api);
    let mut triggers = Box::pin(ctx.watches.trigger_stream());
    let replica = ScriptedReplica::default();
    let stream = replica.next_stream();
    let endpoint = replica.serve().await;
    ctx.watches
        .ensure(&ctx, &names, vec![AdminEndpoint::plain(endpoint)]);

    // The first status only confirms what the labels say.
    stream.send(led_by(1)).await.unwrap();
    next_trigger(&mut triggers).await;
    assert_eq!(role_labels(&api), labelled(Some(0)));

    stream.send(led_by(2)).await.unwrap();
    next_trigger(&mut triggers).await;
    until_labelled(&api, Some(1)).await;

    // A status with the same leader (another group moved) changes nothing.
    stream.send(led_by(2)).await.unwrap();
    stream.send(led_by(3)).await.unwrap();
    next_trigger(&mut triggers).await;
    until_labelled(&api, Some(2)).await;

    // No leader: no pod carries the label.
    stream.send(led_by(0)).await.unwrap();
    next_trigger(&mut triggers).await;
    until_labelled(&api, None).await;
    ctx.watches.stop(&names);
}

#[tokio::test]
async fn an_ended_stream_is_reopened_on_the_next_replica() {
    let (api, names) = world();
    let ctx = context(&api);
    let mut triggers = Box::pin(ctx.watches.trigger_stream());
    let first = ScriptedReplica::default();
    let first_stream = first.next_stream();
    let first_endpoint = first.serve().await;
    // A port nobody listens on: bound, then closed.
    let dead = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().to_string()
    };
    let second = ScriptedReplica::default();
    let second_stream = second.next_stream();
    let second_endpoint = second.serve().await;
    ctx.watches.ensure(
        &ctx,
        &names,
        [first_endpoint, dead, second_endpoint]
            .into_iter()
            .map(AdminEndpoint::plain)
            .collect(),
    );

    first_stream.send(led_by(2)).await.unwrap();
    next_trigger(&mut triggers).await;
    until_labelled(&api, Some(1)).await;
    drop(first_stream); // the first replica's stream ends

    second_stream.send(led_by(3)).await.unwrap();
    next_trigger(&mut triggers).await;
    until_labelled(&api, Some(2)).await;
    ctx.watches.stop(&names);
}

#[tokio::test]
async fn stopping_the_watcher_closes_its_stream() {
    let (api, names) = world();
    let ctx = context(&api);
    let mut triggers = Box::pin(ctx.watches.trigger_stream());
    let replica = ScriptedReplica::default();
    let stream = replica.next_stream();
    let endpoint = replica.serve().await;
    ctx.watches
        .ensure(&ctx, &names, vec![AdminEndpoint::plain(endpoint)]);
    stream.send(led_by(1)).await.unwrap();
    next_trigger(&mut triggers).await;

    ctx.watches.stop(&names);
    tokio::time::timeout(WAIT, stream.closed())
        .await
        .expect("the replica sees the watcher go away");
}
