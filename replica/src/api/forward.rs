//! Reaching other replicas from the API layer: a replica that does not
//! lead a key's group forwards the client's request to the leader, once.
//!
//! A forwarded request carries the `x-kuberaft-forwarded` header; a replica
//! that receives one and is not the leader either answers `Unavailable`
//! (the client retries) instead of forwarding again, so requests never
//! bounce between replicas that disagree about who leads.

use crate::node::NodeHandle;
use crate::raft::NodeId;
use std::collections::HashMap;
use std::sync::Mutex;
use tonic::transport::{Channel, Endpoint};
use tonic::{Request, Status};

pub const FORWARDED: &str = "x-kuberaft-forwarded";

pub struct Forwarder {
    node: NodeHandle,
    /// Per member: the address a channel was made for, and the channel.
    channels: Mutex<HashMap<NodeId, (String, Channel)>>,
}

impl Forwarder {
    pub fn new(node: NodeHandle) -> Forwarder {
        Forwarder {
            node,
            channels: Mutex::new(HashMap::new()),
        }
    }

    /// A channel to `to`'s gRPC listener, at the address the member
    /// directory knows now.
    pub fn channel(&self, to: NodeId) -> Result<Channel, Status> {
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
        let mut channels = self.channels.lock().expect("not poisoned");
        if let Some((known, ch)) = channels.get(&to)
            && *known == address
        {
            return Ok(ch.clone());
        }
        let endpoint = Endpoint::from_shared(format!("http://{address}"))
            .map_err(|e| Status::internal(format!("bad address {address:?} of node {to}: {e}")))?
            .tcp_nodelay(true)
            .connect_timeout(self.node.config.rpc_timeout)
            .local_address(self.node.config.local_ip);
        let ch = endpoint.connect_lazy();
        channels.insert(to, (address, ch.clone()));
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
