//! A client of a kuberaft cluster: the library behind the `raft` client
//! commands, the benchmarks and the multi-process tests.
//!
//! Any replica accepts any request (it forwards to the leader of the key's
//! group), so the client only has to find a replica that answers: it keeps
//! the endpoint that worked last, moves to the next one when a replica is
//! down or has no leader to forward to, and retries until its deadline.
//! Writes carry a (client id, sequence) pair so that a retried write is
//! applied once even if the first attempt did commit. Sessions live in each
//! group's state machine, so the client numbers its writes per group and
//! keeps at most one write per group in flight (a later number applied
//! first would make an earlier one stale); for concurrent writes, use one
//! client per concurrent writer.

use crate::security::{AuthChannel, ClientSecurity};
use kuberaft_proto::admin::admin_client::AdminClient;
use kuberaft_proto::admin::{self as admin_pb};
use kuberaft_proto::kv::kv_client::KvClient;
use kuberaft_proto::kv::{self as pb, Consistency, WriteHeader};
use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use thiserror::Error;
use tokio::time::Instant;
use tonic::{Code, Status};

#[derive(Debug, Error)]
pub enum ClientError {
    #[error("no replica answered within {timeout:?} (tried {endpoints}); last error: {last}")]
    Unavailable {
        timeout: Duration,
        endpoints: String,
        last: String,
    },
    /// The cluster refused the request itself (bad key, value too large...):
    /// retrying will not help.
    #[error("{0}")]
    Rejected(String),
    #[error("invalid endpoint {endpoint:?}: {reason}")]
    BadEndpoint { endpoint: String, reason: String },
    /// The cluster refused the caller (PERMISSION_DENIED, UNAUTHENTICATED).
    #[error("permission denied: {0}")]
    Denied(String),
}

/// Options of a [`Client`].
#[derive(Clone, Debug)]
pub struct ClientOptions {
    /// How long one request may take, retries included.
    pub timeout: Duration,
    /// How long one attempt on one replica may take.
    pub attempt_timeout: Duration,
    /// Bind outgoing connections to this address (tests on loopback).
    pub local_ip: Option<std::net::IpAddr>,
    /// TLS (CA, client certificate) and the bearer token.
    pub security: ClientSecurity,
}

impl Default for ClientOptions {
    fn default() -> Self {
        ClientOptions {
            timeout: Duration::from_secs(10),
            attempt_timeout: Duration::from_secs(3),
            local_ip: None,
            security: ClientSecurity::default(),
        }
    }
}

pub struct Client {
    endpoints: Vec<String>,
    channels: Vec<AuthChannel>,
    current: AtomicUsize,
    client_id: u64,
    /// The cluster's number of groups, learned from the first replica that
    /// answers a status request.
    groups: tokio::sync::OnceCell<u32>,
    /// Per group: the last sequence number used, behind a lock held for the
    /// whole write (one write per group in flight).
    sessions: Mutex<HashMap<u32, Arc<tokio::sync::Mutex<u64>>>>,
    options: ClientOptions,
    last_error: Mutex<String>,
}

impl Client {
    /// A client of the replicas at `endpoints` (`host:port`). Connections
    /// are made lazily, so this succeeds even if no replica is up yet.
    pub fn new(endpoints: &[String], options: ClientOptions) -> Result<Client, ClientError> {
        if endpoints.is_empty() {
            return Err(ClientError::BadEndpoint {
                endpoint: String::new(),
                reason: "no endpoints given: pass --endpoints host:port[,host:port] or a configuration with peers".into(),
            });
        }
        let mut client = Client {
            endpoints: endpoints.to_vec(),
            channels: Vec::with_capacity(endpoints.len()),
            current: AtomicUsize::new(0),
            client_id: random_client_id(),
            groups: tokio::sync::OnceCell::new(),
            sessions: Mutex::new(HashMap::new()),
            options,
            last_error: Mutex::new(String::new()),
        };
        for e in endpoints {
            let channel = client.channel_to(e)?;
            client.channels.push(channel);
        }
        Ok(client)
    }

    /// Another client over the same connections, with a client id (so
    /// write sessions) of its own: many concurrent writers without one
    /// connection each (`raft bench --conns`).
    pub fn fork(&self) -> Client {
        Client {
            endpoints: self.endpoints.clone(),
            channels: self.channels.clone(),
            current: AtomicUsize::new(self.current.load(Ordering::Relaxed)),
            client_id: random_client_id(),
            groups: self.groups.clone(),
            sessions: Mutex::new(HashMap::new()),
            options: self.options.clone(),
            last_error: Mutex::new(String::new()),
        }
    }

    /// The session of `key`'s group: lock it for the whole write.
    async fn session(&self, key: &[u8]) -> Result<Arc<tokio::sync::Mutex<u64>>, ClientError> {
        let groups = *self
            .groups
            .get_or_try_init(|| async {
                let status = self.status().await?;
                group_count(&status)
            })
            .await?;
        let group = crate::kv::group_for_key(key, groups).0 as u32;
        let mut sessions = self.sessions.lock().expect("not poisoned");
        Ok(sessions.entry(group).or_default().clone())
    }

    /// Runs one write under its group's session: the next sequence number,
    /// the same one for every retry.
    async fn write<T, F, Fut>(&self, key: &[u8], mut call: F) -> Result<T, ClientError>
    where
        F: FnMut(AuthChannel, Option<WriteHeader>) -> Fut,
        Fut: std::future::Future<Output = Result<T, Status>>,
    {
        let session = self.session(key).await?;
        let mut seq = session.lock().await;
        *seq += 1;
        let header = Some(WriteHeader {
            client_id: self.client_id,
            seq: *seq,
        });
        self.retry(|ch| call(ch, header)).await
    }

    /// Runs `call` against replicas until one answers, the cluster rejects
    /// the request, or the deadline passes.
    async fn retry<T, F, Fut>(&self, mut call: F) -> Result<T, ClientError>
    where
        F: FnMut(AuthChannel) -> Fut,
        Fut: std::future::Future<Output = Result<T, Status>>,
    {
        let deadline = Instant::now() + self.options.timeout;
        let mut backoff = Duration::from_millis(10);
        loop {
            let i = self.current.load(Ordering::Relaxed) % self.channels.len();
            match call(self.channels[i].clone()).await {
                Ok(v) => return Ok(v),
                Err(status)
                    if matches!(
                        status.code(),
                        Code::PermissionDenied | Code::Unauthenticated
                    ) =>
                {
                    return Err(ClientError::Denied(status.message().to_string()));
                }
                Err(status) if !retryable(&status) => {
                    return Err(ClientError::Rejected(status.message().to_string()));
                }
                Err(status) => {
                    *self.last_error.lock().expect("not poisoned") =
                        format!("{}: {}", self.endpoints[i], describe(&status));
                    // Try the next replica; back off once all were tried.
                    let next = (i + 1) % self.channels.len();
                    self.current.store(next, Ordering::Relaxed);
                    if next == 0 {
                        backoff = (backoff * 2).min(Duration::from_millis(500));
                    }
                }
            }
            if Instant::now() + backoff >= deadline {
                return Err(ClientError::Unavailable {
                    timeout: self.options.timeout,
                    endpoints: self.endpoints.join(","),
                    last: self.last_error.lock().expect("not poisoned").clone(),
                });
            }
            tokio::time::sleep(backoff).await;
        }
    }

    pub async fn put(&self, key: &[u8], value: &[u8]) -> Result<pb::PutResponse, ClientError> {
        let req = pb::PutRequest {
            header: None,
            key: key.to_vec().into(),
            value: value.to_vec().into(),
        };
        self.write(key, |ch, header| {
            let req = pb::PutRequest {
                header,
                ..req.clone()
            };
            async move { KvClient::new(ch).put(req).await.map(|r| r.into_inner()) }
        })
        .await
    }

    pub async fn get(
        &self,
        key: &[u8],
        consistency: Consistency,
    ) -> Result<pb::GetResponse, ClientError> {
        let req = pb::GetRequest {
            key: key.to_vec().into(),
            consistency: consistency as i32,
        };
        self.retry(|ch| {
            let req = req.clone();
            async move { KvClient::new(ch).get(req).await.map(|r| r.into_inner()) }
        })
        .await
    }

    pub async fn delete(&self, key: &[u8]) -> Result<pb::DeleteResponse, ClientError> {
        let req = pb::DeleteRequest {
            header: None,
            key: key.to_vec().into(),
        };
        self.write(key, |ch, header| {
            let req = pb::DeleteRequest {
                header,
                ..req.clone()
            };
            async move { KvClient::new(ch).delete(req).await.map(|r| r.into_inner()) }
        })
        .await
    }

    /// Sets `value` if the current value is `expected` (`None`: if absent).
    pub async fn compare_and_swap(
        &self,
        key: &[u8],
        expected: Option<&[u8]>,
        value: &[u8],
    ) -> Result<pb::CompareAndSwapResponse, ClientError> {
        let req = pb::CompareAndSwapRequest {
            header: None,
            key: key.to_vec().into(),
            expected: expected.map(|e| e.to_vec().into()),
            value: value.to_vec().into(),
        };
        self.write(key, |ch, header| {
            let req = pb::CompareAndSwapRequest {
                header,
                ..req.clone()
            };
            async move {
                KvClient::new(ch)
                    .compare_and_swap(req)
                    .await
                    .map(|r| r.into_inner())
            }
        })
        .await
    }

    pub async fn scan(
        &self,
        prefix: &[u8],
        limit: u32,
        start_after: &[u8],
        consistency: Consistency,
    ) -> Result<pb::ScanResponse, ClientError> {
        let req = pb::ScanRequest {
            prefix: prefix.to_vec().into(),
            limit,
            start_after: start_after.to_vec().into(),
            consistency: consistency as i32,
        };
        self.retry(|ch| {
            let req = req.clone();
            async move { KvClient::new(ch).scan(req).await.map(|r| r.into_inner()) }
        })
        .await
    }

    /// The status of the first replica that answers.
    pub async fn status(&self) -> Result<admin_pb::NodeStatus, ClientError> {
        self.retry(|ch| async move {
            AdminClient::new(ch)
                .status(admin_pb::StatusRequest {})
                .await
                .map(|r| r.into_inner())
        })
        .await
    }

    /// The status of every replica (`Err` for those that do not answer):
    /// the endpoints given, then members of the cluster's member directory
    /// that were not among them (a replica added since the configuration
    /// file was written).
    pub async fn status_all(&self) -> Vec<(String, Result<admin_pb::NodeStatus, String>)> {
        let mut out = Vec::new();
        for (endpoint, ch) in self.endpoints.iter().zip(&self.channels) {
            out.push((endpoint.clone(), status_of(ch.clone()).await));
        }
        let mut others: Vec<String> = out
            .iter()
            .filter_map(|(_, r)| r.as_ref().ok())
            .flat_map(|s| s.members.iter().map(|m| m.address.clone()))
            .filter(|a| !self.endpoints.contains(a))
            .collect();
        others.sort();
        others.dedup();
        for address in others {
            let status = match self.channel_to(&address) {
                Ok(ch) => status_of(ch).await,
                Err(e) => Err(e.to_string()),
            };
            out.push((address, status));
        }
        out
    }

    fn channel_to(&self, endpoint: &str) -> Result<AuthChannel, ClientError> {
        let bad = |reason: String| ClientError::BadEndpoint {
            endpoint: endpoint.to_string(),
            reason,
        };
        let security = &self.options.security;
        let address = match endpoint.split_once("://") {
            Some(("https", _)) if !security.uses_tls() => {
                return Err(bad(
                    "https needs the CA that signed the replicas' certificates: pass --cacert FILE"
                        .into(),
                ));
            }
            Some(("http", _)) if security.uses_tls() => {
                return Err(bad(
                    "--cacert was given: write the endpoint as https:// or host:port".into(),
                ));
            }
            Some((_, address)) => address,
            None => endpoint,
        };
        let endpoint = security.endpoint(address).map_err(bad)?;
        let channel = endpoint
            .connect_timeout(self.options.attempt_timeout)
            .timeout(self.options.attempt_timeout)
            .tcp_nodelay(true)
            .local_address(self.options.local_ip)
            .connect_lazy();
        Ok(security.credentials().map_err(bad)?.wrap(channel))
    }

    /// An admin client on the replica that answered last.
    pub fn admin(&self) -> AdminClient<AuthChannel> {
        let i = self.current.load(Ordering::Relaxed) % self.channels.len();
        AdminClient::new(self.channels[i].clone())
    }

    /// Runs an admin call with the same failover and deadline as data calls.
    pub async fn admin_call<T, F, Fut>(&self, call: F) -> Result<T, ClientError>
    where
        F: FnMut(AuthChannel) -> Fut,
        Fut: std::future::Future<Output = Result<T, Status>>,
    {
        self.retry(call).await
    }
}

async fn status_of(ch: AuthChannel) -> Result<admin_pb::NodeStatus, String> {
    AdminClient::new(ch)
        .status(admin_pb::StatusRequest {})
        .await
        .map(|r| r.into_inner())
        .map_err(|s| describe(&s))
}

/// A status's message with what caused it (a transport error's TLS or
/// connection reason is in its sources).
pub fn describe(status: &Status) -> String {
    crate::security::error_chain(status)
}

/// Whether another attempt (perhaps on another replica) may succeed.
/// The cluster's number of groups as a replica reports it. A replica that
/// has not published its groups yet lists none; guessing then (one group)
/// would put writes of other groups under the wrong session, which the
/// cluster refuses as an unknown session.
fn group_count(status: &admin_pb::NodeStatus) -> Result<u32, ClientError> {
    if status.group_count > 0 {
        return Ok(status.group_count);
    }
    match u32::try_from(status.groups.len()) {
        Ok(n) if n > 0 => Ok(n),
        _ => Err(ClientError::Unavailable {
            timeout: Duration::ZERO,
            endpoints: status.name.clone(),
            last: "the replica does not report its number of groups yet (it is starting); retry"
                .into(),
        }),
    }
}

fn retryable(status: &Status) -> bool {
    matches!(
        status.code(),
        Code::Unavailable
            | Code::DeadlineExceeded
            | Code::Aborted
            | Code::Unknown
            | Code::Cancelled
    )
}

/// 64 random bits (never 0), seeded from the OS.
pub fn random_client_id() -> u64 {
    crate::random::nonzero_u64()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_group_count_comes_from_the_configuration_not_from_published_groups() {
        // A replica that has just started lists no groups yet; its count
        // still routes keys right.
        let starting = admin_pb::NodeStatus {
            group_count: 4,
            ..Default::default()
        };
        assert_eq!(group_count(&starting).unwrap(), 4);
        // A replica of an older version reports only its groups.
        let older = admin_pb::NodeStatus {
            groups: vec![admin_pb::GroupStatus::default(); 2],
            ..Default::default()
        };
        assert_eq!(group_count(&older).unwrap(), 2);
        // Neither: the client must not guess one group.
        let unknown = admin_pb::NodeStatus::default();
        assert!(group_count(&unknown).is_err());
    }
}
