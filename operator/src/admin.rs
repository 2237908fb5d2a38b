//! Talking to replicas through their admin API (`admin.proto`): the only way
//! the operator changes anything that needs consensus.
//!
//! [`ReplicaAdmin`] is a trait so that the reconciler's scenario tests can
//! stand in for the replicas; [`GrpcAdmin`] is the real client. Every call
//! is bounded by a timeout: a replica that does not answer is reported as
//! unreachable, never waited on forever.
//!
//! With TLS (every cluster created with `spec.tls.enabled`) the operator
//! dials `https://<pod IP>`, verifies the replica's certificate against
//! the cluster's CA bundle under the pod's peer DNS name (pod IPs change,
//! names do not), and presents its own client certificate (common name
//! `raft-operator`, an admin name of every replica).

use crate::tls::Pem;
use futures::future::BoxFuture;
use kuberaft_proto::admin as pb;
use kuberaft_proto::admin::admin_client::AdminClient;
use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity};

/// The operator's credentials towards one cluster's replicas.
#[derive(Clone, PartialEq, Eq)]
pub struct AdminTls {
    /// PEM CA bundle the replicas' certificates are checked against.
    pub ca: String,
    /// The operator's client certificate and key.
    pub identity: Pem,
}

impl fmt::Debug for AdminTls {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AdminTls").finish_non_exhaustive()
    }
}

/// Where and how to reach one replica's admin API.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AdminEndpoint {
    /// `host:port` to dial.
    pub address: String,
    /// With TLS: the name the replica's certificate must carry, and the
    /// operator's credentials.
    pub tls: Option<(String, Arc<AdminTls>)>,
}

impl AdminEndpoint {
    /// A replica without TLS.
    pub fn plain(address: impl Into<String>) -> AdminEndpoint {
        AdminEndpoint {
            address: address.into(),
            tls: None,
        }
    }

    /// The tonic endpoint: `http://` or, with TLS, `https://` verifying
    /// the server name and presenting the client certificate.
    pub fn endpoint(&self, connect_timeout: Duration) -> Result<Endpoint, String> {
        let scheme = if self.tls.is_some() { "https" } else { "http" };
        let mut endpoint = Endpoint::from_shared(format!("{scheme}://{}", self.address))
            .map_err(|e| format!("not a valid address: {e}"))?;
        if let Some((server_name, tls)) = &self.tls {
            let config = ClientTlsConfig::new()
                .ca_certificate(Certificate::from_pem(&tls.ca))
                .identity(Identity::from_pem(&tls.identity.cert, &tls.identity.key))
                .domain_name(server_name.clone());
            endpoint = endpoint
                .tls_config(config)
                .map_err(|e| format!("the operator's TLS credentials are not usable: {e}"))?;
        }
        Ok(endpoint.connect_timeout(connect_timeout).tcp_nodelay(true))
    }
}

impl fmt::Display for AdminEndpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.tls {
            Some((name, _)) => write!(f, "https://{} ({name})", self.address),
            None => write!(f, "http://{}", self.address),
        }
    }
}

/// A failed admin call: which replica, and what it (or the network) said.
#[derive(Debug, Clone, thiserror::Error)]
#[error("admin call {call} to {endpoint}: {message}")]
pub struct AdminError {
    pub endpoint: String,
    pub call: &'static str,
    pub message: String,
}

/// The admin operations the operator uses, each on one replica's gRPC
/// listener.
pub trait ReplicaAdmin: Send + Sync {
    fn status<'a>(
        &'a self,
        endpoint: &'a AdminEndpoint,
    ) -> BoxFuture<'a, Result<pb::NodeStatus, AdminError>>;
    fn add_learner<'a>(
        &'a self,
        endpoint: &'a AdminEndpoint,
        member: pb::Member,
        group: Option<u64>,
    ) -> BoxFuture<'a, Result<(), AdminError>>;
    fn promote<'a>(
        &'a self,
        endpoint: &'a AdminEndpoint,
        id: u64,
        group: Option<u64>,
    ) -> BoxFuture<'a, Result<(), AdminError>>;
    fn remove_member<'a>(
        &'a self,
        endpoint: &'a AdminEndpoint,
        id: u64,
        group: Option<u64>,
    ) -> BoxFuture<'a, Result<(), AdminError>>;
    fn transfer_leader<'a>(
        &'a self,
        endpoint: &'a AdminEndpoint,
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
    /// By address, with the TLS settings the channel was made with.
    channels: Mutex<HashMap<String, (AdminEndpoint, Channel)>>,
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
        endpoint: &AdminEndpoint,
        call: &'static str,
    ) -> Result<AdminClient<Channel>, AdminError> {
        let mut channels = self.channels.lock().unwrap_or_else(|p| p.into_inner());
        // A channel made with other credentials (a rotated certificate) is
        // replaced.
        if let Some((made_for, ch)) = channels.get(&endpoint.address)
            && made_for == endpoint
        {
            return Ok(AdminClient::new(ch.clone()));
        }
        let ch = endpoint
            .endpoint(self.connect_timeout)
            .map_err(|message| AdminError {
                endpoint: endpoint.address.clone(),
                call,
                message,
            })?
            .connect_lazy();
        channels.insert(endpoint.address.clone(), (endpoint.clone(), ch.clone()));
        Ok(AdminClient::new(ch))
    }

    /// Forgets the channel of a replica that failed, so the next call dials
    /// again (a restarted pod has a new IP behind the same name).
    fn forget(&self, endpoint: &AdminEndpoint) {
        self.channels
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&endpoint.address);
    }

    async fn call<T, F, Fut>(
        &self,
        endpoint: &AdminEndpoint,
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
            endpoint: endpoint.address.clone(),
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
        endpoint: &'a AdminEndpoint,
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
        endpoint: &'a AdminEndpoint,
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
        endpoint: &'a AdminEndpoint,
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
        endpoint: &'a AdminEndpoint,
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
        endpoint: &'a AdminEndpoint,
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
