//! The store under test, behind one trait: kuberaft through its own
//! [`Client`] (the one applications use, with its failover, retries and
//! exactly-once write sessions), etcd through its v3 gRPC KV API (`Put`,
//! `Range`; `proto/proto/etcd.proto`). Both go through tonic over HTTP/2 on
//! the same kind of connection, so the load generator is the same code for
//! both and only the server differs.
//!
//! Connections: a run opens `conns` gRPC connections and spreads its
//! clients over them (client `i` on connection `i % conns`), and the
//! connections over the endpoints (connection `k` starts at endpoint
//! `k % endpoints`), for both targets alike.

use super::workload::ReadConsistency;
use crate::client::{Client, ClientError, ClientOptions};
use bytes::Bytes;
use kuberaft_proto::etcd as etcd_pb;
use kuberaft_proto::etcd::kv_client::KvClient as EtcdKvClient;
use kuberaft_proto::kv::Consistency;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;
use tonic::transport::{Channel, Endpoint};

/// Which store a run drives.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum TargetKind {
    Kuberaft,
    Etcd,
}

impl TargetKind {
    pub fn name(self) -> &'static str {
        match self {
            TargetKind::Kuberaft => "kuberaft",
            TargetKind::Etcd => "etcd",
        }
    }
}

/// One benchmark client of a store. An error is the failed operation's
/// message (counted, and a few shown, by the run).
pub trait Target: Send + Sync + 'static {
    fn put(&self, key: Bytes, value: Bytes) -> impl Future<Output = Result<(), String>> + Send;
    fn get(
        &self,
        key: Bytes,
        reads: ReadConsistency,
    ) -> impl Future<Output = Result<(), String>> + Send;
}

/// kuberaft: one [`Client`] per benchmark client (its own client id, so
/// its own write sessions, as the client's documentation asks of
/// concurrent writers).
pub struct KuberaftTarget(Client);

impl KuberaftTarget {
    /// The cluster's number of groups, from the first replica that answers.
    pub async fn groups(&self) -> Result<u32, ClientError> {
        let status = self.0.status().await?;
        Ok(u32::try_from(status.groups.len().max(1)).unwrap_or(u32::MAX))
    }
}

impl Target for KuberaftTarget {
    async fn put(&self, key: Bytes, value: Bytes) -> Result<(), String> {
        self.0
            .put(&key, &value)
            .await
            .map(drop)
            .map_err(|e| e.to_string())
    }

    async fn get(&self, key: Bytes, reads: ReadConsistency) -> Result<(), String> {
        let consistency = match reads {
            ReadConsistency::Linearizable => Consistency::Linearizable,
            ReadConsistency::Serializable => Consistency::Serializable,
        };
        self.0
            .get(&key, consistency)
            .await
            .map(drop)
            .map_err(|e| e.to_string())
    }
}

/// `clients` kuberaft clients over `conns` connections to `endpoints`,
/// each request bounded by `timeout` (retries included).
pub fn kuberaft_clients(
    endpoints: &[String],
    clients: u32,
    conns: u32,
    timeout: Duration,
) -> Result<Vec<Arc<KuberaftTarget>>, ClientError> {
    let options = ClientOptions {
        timeout,
        attempt_timeout: timeout.min(Duration::from_secs(3)),
        ..ClientOptions::default()
    };
    let mut base = Vec::with_capacity(conns as usize);
    for k in 0..conns as usize {
        let mut rotated = endpoints.to_vec();
        rotated.rotate_left(k % endpoints.len().max(1));
        base.push(Client::new(&rotated, options.clone())?);
    }
    // The first `conns` clients are the connections' own; the others share
    // them, each with a client id of its own.
    let mut out: Vec<Arc<KuberaftTarget>> = Vec::with_capacity(clients as usize);
    for i in conns as usize..clients as usize {
        out.push(Arc::new(KuberaftTarget(base[i % conns as usize].fork())));
    }
    let mut all: Vec<Arc<KuberaftTarget>> = base
        .into_iter()
        .map(|c| Arc::new(KuberaftTarget(c)))
        .collect();
    all.append(&mut out);
    Ok(all)
}

/// etcd: a KV stub on a shared connection. No retries: etcd's own Go
/// client would retry an `Unavailable` on another member, but in a steady
/// benchmark any error is worth seeing, and it is counted as one.
pub struct EtcdTarget {
    kv: EtcdKvClient<Channel>,
}

impl Target for EtcdTarget {
    async fn put(&self, key: Bytes, value: Bytes) -> Result<(), String> {
        let req = etcd_pb::PutRequest {
            key,
            value,
            ..Default::default()
        };
        self.kv
            .clone()
            .put(req)
            .await
            .map(drop)
            .map_err(|s| format!("etcd put: {}: {}", s.code(), s.message()))
    }

    async fn get(&self, key: Bytes, reads: ReadConsistency) -> Result<(), String> {
        let req = etcd_pb::RangeRequest {
            key,
            serializable: reads == ReadConsistency::Serializable,
            ..Default::default()
        };
        self.kv
            .clone()
            .range(req)
            .await
            .map(drop)
            .map_err(|s| format!("etcd range: {}: {}", s.code(), s.message()))
    }
}

/// `clients` etcd clients over `conns` connections to `endpoints`
/// (`host:port` or `http://host:port`), each request bounded by `timeout`.
pub fn etcd_clients(
    endpoints: &[String],
    clients: u32,
    conns: u32,
    timeout: Duration,
) -> Result<Vec<Arc<EtcdTarget>>, ClientError> {
    let mut channels = Vec::with_capacity(conns as usize);
    for k in 0..conns as usize {
        channels.push(etcd_channel(&endpoints[k % endpoints.len()], timeout)?);
    }
    Ok((0..clients as usize)
        .map(|i| {
            Arc::new(EtcdTarget {
                kv: EtcdKvClient::new(channels[i % channels.len()].clone()),
            })
        })
        .collect())
}

fn etcd_channel(endpoint: &str, timeout: Duration) -> Result<Channel, ClientError> {
    let bad = |reason: String| ClientError::BadEndpoint {
        endpoint: endpoint.to_string(),
        reason,
    };
    if endpoint.starts_with("https://") {
        return Err(bad(
            "raft bench talks to etcd without TLS; give the member's http:// client URL".into(),
        ));
    }
    let uri = if endpoint.contains("://") {
        endpoint.to_string()
    } else {
        format!("http://{endpoint}")
    };
    Ok(Endpoint::from_shared(uri)
        .map_err(|e| bad(e.to_string()))?
        .connect_timeout(timeout.min(Duration::from_secs(3)))
        .timeout(timeout)
        .tcp_nodelay(true)
        .connect_lazy())
}

#[cfg(test)]
mod tests {
    use super::*;
    use kuberaft_proto::etcd::kv_server::{Kv, KvServer};
    use std::sync::Mutex;
    use tonic::{Request, Response, Status};

    /// Just enough of etcd to see what the client sends.
    #[derive(Default, Clone)]
    struct FakeEtcd {
        seen: Arc<Mutex<Vec<String>>>,
    }

    #[tonic::async_trait]
    impl Kv for FakeEtcd {
        async fn range(
            &self,
            r: Request<etcd_pb::RangeRequest>,
        ) -> Result<Response<etcd_pb::RangeResponse>, Status> {
            let r = r.into_inner();
            self.seen.lock().unwrap().push(format!(
                "range {} serializable={}",
                String::from_utf8_lossy(&r.key),
                r.serializable
            ));
            Ok(Response::new(etcd_pb::RangeResponse::default()))
        }
        async fn put(
            &self,
            r: Request<etcd_pb::PutRequest>,
        ) -> Result<Response<etcd_pb::PutResponse>, Status> {
            let r = r.into_inner();
            if r.value.is_empty() {
                return Err(Status::invalid_argument("empty"));
            }
            self.seen.lock().unwrap().push(format!(
                "put {} {}",
                String::from_utf8_lossy(&r.key),
                r.value.len()
            ));
            Ok(Response::new(etcd_pb::PutResponse::default()))
        }
    }

    #[tokio::test]
    async fn the_etcd_client_speaks_etcds_kv_service() {
        let fake = FakeEtcd::default();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let server = tokio::spawn(
            tonic::transport::Server::builder()
                .add_service(KvServer::new(fake.clone()))
                .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener)),
        );
        let clients = etcd_clients(&[addr.to_string()], 3, 2, Duration::from_secs(5)).unwrap();
        assert_eq!(clients.len(), 3);
        clients[0]
            .put(Bytes::from_static(b"k"), Bytes::from_static(b"vvv"))
            .await
            .unwrap();
        clients[1]
            .get(Bytes::from_static(b"k"), ReadConsistency::Serializable)
            .await
            .unwrap();
        clients[2]
            .get(Bytes::from_static(b"k"), ReadConsistency::Linearizable)
            .await
            .unwrap();
        let err = clients[2]
            .put(Bytes::from_static(b"k"), Bytes::new())
            .await
            .unwrap_err();
        assert!(err.contains("etcd put") && err.contains("empty"), "{err}");
        assert_eq!(
            *fake.seen.lock().unwrap(),
            [
                "put k 3",
                "range k serializable=true",
                "range k serializable=false"
            ]
        );
        server.abort();
    }

    #[test]
    fn tls_endpoints_of_etcd_are_refused_with_a_reason() {
        let err = etcd_channel("https://127.0.0.1:2379", Duration::from_secs(1)).unwrap_err();
        assert!(err.to_string().contains("http://"), "{err}");
    }
}
