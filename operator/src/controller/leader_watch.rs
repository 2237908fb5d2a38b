//! Status-stream watchers: one task per cluster subscribes to a replica's
//! `WatchStatus` stream and, the moment group 0 reports a new leader, moves
//! the leader label and asks for a reconcile (so the status follows too).
//! A stream that ends is reopened on another replica; reconciles keep the
//! list of replicas to try current.

use super::Context;
use super::labels::label_leader;
use crate::admin::AdminEndpoint;
use crate::names::{Names, ordinal};
use futures::Stream;
use k8s_openapi::api::core::v1::Pod;
use kube::Client;
use kube::api::{Api, ListParams};
use kuberaft_proto::admin as pb;
use kuberaft_proto::admin::admin_client::AdminClient;
use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::mpsc;

struct Watch {
    endpoints: Arc<Mutex<Vec<AdminEndpoint>>>,
    task: tokio::task::JoinHandle<()>,
}

/// The running watchers, by `namespace/name`.
pub struct Watches {
    running: Mutex<HashMap<String, Watch>>,
    trigger: mpsc::UnboundedSender<()>,
    receiver: Mutex<Option<mpsc::UnboundedReceiver<()>>>,
}

impl Default for Watches {
    fn default() -> Self {
        let (trigger, receiver) = mpsc::unbounded_channel();
        Watches {
            running: Mutex::new(HashMap::new()),
            trigger,
            receiver: Mutex::new(Some(receiver)),
        }
    }
}

fn key(names: &Names) -> String {
    format!("{}/{}", names.namespace, names.cluster)
}

impl Watches {
    /// The stream of "a leader changed" signals (taken once, by the
    /// controller).
    pub fn trigger_stream(&self) -> impl Stream<Item = ()> + Send + 'static {
        let receiver = self
            .receiver
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take();
        futures::stream::unfold(receiver, |receiver| async move {
            let mut receiver = receiver?;
            receiver.recv().await.map(|()| ((), Some(receiver)))
        })
    }

    /// Starts the cluster's watcher if needed and gives it the replicas to
    /// try.
    pub fn ensure(&self, ctx: &Context, names: &Names, endpoints: Vec<AdminEndpoint>) {
        let mut running = self.running.lock().unwrap_or_else(|p| p.into_inner());
        let key = key(names);
        if let Some(watch) = running.get(&key)
            && !watch.task.is_finished()
        {
            *watch.endpoints.lock().unwrap_or_else(|p| p.into_inner()) = endpoints;
            return;
        }
        let shared = Arc::new(Mutex::new(endpoints));
        let task = tokio::spawn(watch_cluster(
            ctx.client.clone(),
            names.clone(),
            shared.clone(),
            self.trigger.clone(),
        ));
        running.insert(
            key,
            Watch {
                endpoints: shared,
                task,
            },
        );
    }

    /// Stops the watcher of a deleted cluster.
    pub fn stop(&self, names: &Names) {
        if let Some(watch) = self
            .running
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&key(names))
        {
            watch.task.abort();
        }
    }
}

/// Group 0's leader as one replica reports it.
fn leader_of_group0(status: &pb::NodeStatus) -> Option<u32> {
    status
        .groups
        .iter()
        .find(|g| g.group == 0)
        .and_then(|g| ordinal(g.leader))
}

async fn relabel(client: &Client, names: &Names, leader: Option<u32>) -> kube::Result<()> {
    let api: Api<Pod> = Api::namespaced(client.clone(), &names.namespace);
    let list = api
        .list(&ListParams::default().labels(&names.selector_string()))
        .await?;
    let pods: BTreeMap<u32, Pod> = list
        .items
        .into_iter()
        .filter_map(|p| Some((names.ordinal_of(p.metadata.name.as_deref()?)?, p)))
        .collect();
    if let Err(e) = label_leader(client, names, &pods, leader).await {
        tracing::warn!(error = %e, "could not move the leader label");
    }
    Ok(())
}

async fn watch_cluster(
    client: Client,
    names: Names,
    endpoints: Arc<Mutex<Vec<AdminEndpoint>>>,
    trigger: mpsc::UnboundedSender<()>,
) {
    let mut next = 0usize;
    let mut last_leader = None;
    loop {
        let endpoint = {
            let list = endpoints.lock().unwrap_or_else(|p| p.into_inner());
            (!list.is_empty()).then(|| list[next % list.len()].clone())
        };
        next = next.wrapping_add(1);
        let Some(endpoint) = endpoint else {
            tokio::time::sleep(Duration::from_secs(5)).await;
            continue;
        };
        let stream = async {
            let channel = endpoint
                .endpoint(Duration::from_secs(2))
                .ok()?
                .connect()
                .await
                .ok()?;
            AdminClient::new(channel)
                .watch_status(pb::StatusRequest {})
                .await
                .ok()
                .map(tonic::Response::into_inner)
        }
        .await;
        if let Some(mut stream) = stream {
            while let Ok(Some(status)) = stream.message().await {
                let leader = leader_of_group0(&status);
                if leader != last_leader {
                    last_leader = leader;
                    if let Err(e) = relabel(&client, &names, leader).await {
                        tracing::warn!(error = %e, cluster = %names.cluster, "could not list pods to move the leader label");
                    }
                    // The controller has gone away when this fails: stop.
                    if trigger.send(()).is_err() {
                        return;
                    }
                }
            }
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
}

#[cfg(test)]
#[path = "leader_watch_tests.rs"]
mod tests;
