//! What the replica serves: the client and admin gRPC services and the HTTP
//! endpoints for metrics and health.

pub mod admin_service;
pub mod forward;
pub mod http;
pub mod kv_request;
pub mod kv_service;
pub mod listener;
