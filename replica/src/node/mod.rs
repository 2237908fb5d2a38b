//! The node: one event loop that owns every group's state on this replica.
//! (The loop itself lands with the integration of storage and multi; health
//! reporting comes first so the HTTP endpoints have something to serve.)

pub mod health;
pub mod persist;
