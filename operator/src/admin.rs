//! Talking to replicas through their admin API (`admin.proto`): the only way
//! the operator changes anything that needs consensus.
//!
//! [`ReplicaAdmin`] is a trait so that the reconciler's scenario tests can
//! stand in for the replicas; [`GrpcAdmin`] is the real client. Every call
//! is bounded by a timeout: a replica that does not answer is reported as
//! unreachable, never waited on forever.

use futures::future::BoxFuture;
use kuberaft_proto::admin as pb;
use kuberaft_proto::admin::admin_client::AdminClient;
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;
use tonic::transport::{Channel, Endpoint};

/// A failed admin call: which replica, and what it (or the network) said.
#[derive(Debug, Clone, thiserror::Error)]
#[error("admin call {call} to {endpoint}: {message}")]
pub struct AdminError {
    pub endpoint: String,
    pub call: &'static str,
    pub message: String,
}

/// The admin operations the operator uses. `endpoint` is `host:port` of the
/// replica's gRPC listener.
pub trait ReplicaAdmin: Send + Sync {
    fn status<'a>(&'a self, endpoint: &'a str)
    -> BoxFuture<'a, Result<pb::NodeStatus, AdminError>>;
    fn add_learner<'a>(
        &'a self,
        endpoint: &'a str,
        member: pb::Member,
        group: Option<u64>,
    ) -> BoxFuture<'a, Result<(), AdminError>>;
    fn promote<'a>(
        &'a self,
        endpoint: &'a str,
        id: u64,
        group: Option<u64>,
    ) -> BoxFuture<'a, Result<(), AdminError>>;
    fn remove_member<'a>(
        &'a self,
        endpoint: &'a str,
        id: u64,
        group: Option<u64>,
    ) -> BoxFuture<'a, Result<(), AdminError>>;
    fn transfer_leader<'a>(
        &'a self,
        endpoint: &'a str,
        group: Option<u64>,
        to: u64,
    ) -> BoxFuture<'a, Result<(), AdminError>>;
}

/// The real admin client over gRPC, one lazily connected channel per
/// replica.
pub struct GrpcAdmin {
    connect_timeout: Duration,
    /// Status calls are quick; membership calls wait for a commit.
    status_timeout: Duration,
    change_timeout: Duration,
    channels: Mutex<HashMap<String, Channel>>,
}

impl GrpcAdmin {
    pub fn new(status_timeout: Duration, change_timeout: Duration) -> GrpcAdmin {
        GrpcAdmin {
            connect_timeout: Duration::from_secs(2),
            status_timeout,
            change_timeout,
            channels: Mutex::new(HashMap::new()),
        }
    }

    fn client(
        &self,
        endpoint: &str,
        call: &'static str,
    ) -> Result<AdminClient<Channel>, AdminError> {
        let mut channels = self.channels.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(ch) = channels.get(endpoint) {
            return Ok(AdminClient::new(ch.clone()));
        }
        let ch = Endpoint::from_shared(format!("http://{endpoint}"))
            .map_err(|e| AdminError {
                endpoint: endpoint.to_string(),
                call,
                message: format!("not a valid address: {e}"),
            })?
            .connect_timeout(self.connect_timeout)
            .tcp_nodelay(true)
            .connect_lazy();
        channels.insert(endpoint.to_string(), ch.clone());
        Ok(AdminClient::new(ch))
    }

    /// Forgets the channel of a replica that failed, so the next call dials
    /// again (a restarted pod has a new IP behind the same name).
    fn forget(&self, endpoint: &str) {
        self.channels
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(endpoint);
    }

    async fn call<T, F, Fut>(
        &self,
        endpoint: &str,
        call: &'static str,
        timeout: Duration,
        f: F,
    ) -> Result<T, AdminError>
    where
        F: FnOnce(AdminClient<Channel>) -> Fut,
        Fut: std::future::Future<Output = Result<tonic::Response<T>, tonic::Status>>,
    {
        let client = self.client(endpoint, call)?;
        let error = |message: String| AdminError {
            endpoint: endpoint.to_string(),
            call,
            message,
        };
        match tokio::time::timeout(timeout, f(client)).await {
            Ok(Ok(response)) => Ok(response.into_inner()),
            Ok(Err(status)) => {
                if status.code() == tonic::Code::Unavailable {
                    self.forget(endpoint);
                }
                Err(error(format!("{:?}: {}", status.code(), status.message())))
            }
            Err(_) => {
                self.forget(endpoint);
                Err(error(format!("no answer within {timeout:?}")))
            }
        }
    }
}

impl ReplicaAdmin for GrpcAdmin {
    fn status<'a>(
        &'a self,
        endpoint: &'a str,
    ) -> BoxFuture<'a, Result<pb::NodeStatus, AdminError>> {
        Box::pin(self.call(
            endpoint,
            "Status",
            self.status_timeout,
            |mut c| async move { c.status(pb::StatusRequest {}).await },
        ))
    }

    fn add_learner<'a>(
        &'a self,
        endpoint: &'a str,
        member: pb::Member,
        group: Option<u64>,
    ) -> BoxFuture<'a, Result<(), AdminError>> {
        Box::pin(async move {
            self.call(
                endpoint,
                "AddLearner",
                self.change_timeout,
                |mut c| async move {
                    c.add_learner(pb::AddLearnerRequest {
                        member: Some(member),
                        group,
                    })
                    .await
                },
            )
            .await
            .map(drop)
        })
    }

    fn promote<'a>(
        &'a self,
        endpoint: &'a str,
        id: u64,
        group: Option<u64>,
    ) -> BoxFuture<'a, Result<(), AdminError>> {
        Box::pin(async move {
            self.call(
                endpoint,
                "Promote",
                self.change_timeout,
                |mut c| async move { c.promote(pb::MemberRequest { id, group }).await },
            )
            .await
            .map(drop)
        })
    }

    fn remove_member<'a>(
        &'a self,
        endpoint: &'a str,
        id: u64,
        group: Option<u64>,
    ) -> BoxFuture<'a, Result<(), AdminError>> {
        Box::pin(async move {
            self.call(
                endpoint,
                "RemoveMember",
                self.change_timeout,
                |mut c| async move { c.remove_member(pb::MemberRequest { id, group }).await },
            )
            .await
            .map(drop)
        })
    }

    fn transfer_leader<'a>(
        &'a self,
        endpoint: &'a str,
        group: Option<u64>,
        to: u64,
    ) -> BoxFuture<'a, Result<(), AdminError>> {
        Box::pin(async move {
            self.call(
                endpoint,
                "TransferLeader",
                self.change_timeout,
                |mut c| async move {
                    c.transfer_leader(pb::TransferLeaderRequest { group, to })
                        .await
                },
            )
            .await
            .map(drop)
        })
    }
}
