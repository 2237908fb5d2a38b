//! Transport security of a replica: TLS material and its reloading, the
//! names certificates carry, who may do what ([`authz`]), and the TLS
//! settings of outgoing connections ([`connect`]).
//!
//! What is enforced where:
//! - every TLS listener (`api/listener.rs`): the handshake, with client
//!   certificates verified against `tls.ca` (required for every client when
//!   `tls.client_cert_auth` is set), a handshake timeout and a connection
//!   cap;
//! - the peer service (`transport/server.rs`): the certificate names a
//!   member ([`authz::Authz::check_peer`]);
//! - the admin service (`api/admin_service.rs`): the admin role for every
//!   admin RPC that changes something ([`authz::Authz::require_admin`]);
//! - outgoing connections verify the other replica's certificate against
//!   `tls.ca` and the host of its address, and present our own.
//!
//! Only rustls with the ring provider is used; nothing here does I/O on
//! the hot path (files are read by the reload task).

pub mod authz;
pub mod connect;
pub mod issue;
pub mod material;
pub mod names;
pub mod reload;

pub use authz::{Authz, MemberName};
pub use connect::{AuthChannel, ClientSecurity, Credentials, error_chain, replica_endpoint};
pub use material::{Material, MaterialError, TlsPaths};
pub use names::CertNames;
pub use reload::{AdminToken, Tls};
