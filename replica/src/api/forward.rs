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
    channels: Mutex<HashMap<NodeId, Channel>>,
}

impl Forwarder {
    pub fn new(node: NodeHandle) -> Forwarder {
        Forwarder {
            node,
            channels: Mutex::new(HashMap::new()),
        }
    }

    /// A channel to `to`'s gRPC listener, if its address is known.
    pub fn channel(&self, to: NodeId) -> Result<Channel, Status> {
        let mut channels = self.channels.lock().expect("not poisoned");
        if let Some(ch) = channels.get(&to) {
            return Ok(ch.clone());
        }
        let member = self
            .node
            .config
            .members
            .iter()
            .find(|m| m.id == to)
            .ok_or_else(|| Status::unavailable(format!("the leader (node {to}) is not in this replica's member list; retry another replica")))?;
        let endpoint = Endpoint::from_shared(format!("http://{}", member.address))
            .map_err(|e| {
                Status::internal(format!(
                    "bad address {:?} of node {to}: {e}",
                    member.address
                ))
            })?
            .tcp_nodelay(true)
            .connect_timeout(self.node.config.rpc_timeout)
            .local_address(self.node.config.local_ip);
        let ch = endpoint.connect_lazy();
        channels.insert(to, ch.clone());
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
