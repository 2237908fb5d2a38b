//! Reaching other replicas from the API layer: a replica that does not
//! lead a key's group forwards the client's request to the leader, once.
//!
//! A forwarded request carries the `x-kuberaft-forwarded` header; a replica
//! that receives one and is not the leader either answers `Unavailable`
//! (the client retries) instead of forwarding again, so requests never
//! bounce between replicas that disagree about who leads.

use crate::node::NodeHandle;
use crate::raft::NodeId;
use crate::security::{AuthChannel, Credentials, Tls, replica_endpoint};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use tonic::{Request, Status};

pub const FORWARDED: &str = "x-kuberaft-forwarded";

/// What a cached channel was made for: an address and a TLS generation.
type ChannelKey = (String, u64);

pub struct Forwarder {
    node: NodeHandle,
    /// With TLS: https, our certificate as client certificate (a member's
    /// certificate carries the admin role at the leader).
    tls: Option<Arc<Tls>>,
    /// Our admin token, if configured, for admin requests forwarded.
    credentials: Credentials,
    /// Per member: the address and TLS generation a channel was made for,
    /// and the channel.
    channels: Mutex<HashMap<NodeId, (ChannelKey, AuthChannel)>>,
}

impl Forwarder {
    pub fn new(node: NodeHandle, tls: Option<Arc<Tls>>, credentials: Credentials) -> Forwarder {
        Forwarder {
            node,
            tls,
            credentials,
            channels: Mutex::new(HashMap::new()),
        }
    }

    /// The endpoint of another replica's gRPC port, as this replica dials it.
    pub fn endpoint(&self, address: &str) -> Result<tonic::transport::Endpoint, Status> {
        replica_endpoint(self.tls.as_deref(), address)
            .map(|e| {
                e.tcp_nodelay(true)
                    .connect_timeout(self.node.config.rpc_timeout)
                    .local_address(self.node.config.local_ip)
            })
            .map_err(Status::internal)
    }

    /// Our credentials on a channel.
    pub fn authenticate(&self, channel: tonic::transport::Channel) -> AuthChannel {
        self.credentials.wrap(channel)
    }

    /// A channel to `to`'s gRPC listener, at the address the member
    /// directory knows now.
    pub fn channel(&self, to: NodeId) -> Result<AuthChannel, Status> {
        let address = self
            .node
            .status
            .borrow()
            .members
            .iter()
            .find(|m| m.id == to)
            .map(|m| m.address.clone())
            .ok_or_else(|| {
                Status::unavailable(format!(
                    "node {to} (the leader) is not in this replica's member directory yet; retry another replica"
                ))
            })?;
        let key = (address, self.tls.as_ref().map_or(0, |t| t.generation()));
        let mut channels = self.channels.lock().expect("not poisoned");
        if let Some((known, ch)) = channels.get(&to)
            && *known == key
        {
            return Ok(ch.clone());
        }
        let ch = self.authenticate(self.endpoint(&key.0)?.connect_lazy());
        channels.insert(to, (key, ch.clone()));
        Ok(ch)
    }

    /// Marks a request as forwarded.
    pub fn mark<T>(message: T) -> Request<T> {
        let mut request = Request::new(message);
        request
            .metadata_mut()
            .insert(FORWARDED, tonic::metadata::MetadataValue::from_static("1"));
        request
    }
}

/// Whether a request was already forwarded by another replica.
pub fn was_forwarded<T>(request: &Request<T>) -> bool {
    request.metadata().contains_key(FORWARDED)
}
