//! What the replica serves: the client and admin gRPC services and the HTTP
//! endpoints for metrics and health.

pub mod http;
