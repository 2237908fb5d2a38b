//! Outgoing connections: `http://` or `https://` endpoints with the right
//! TLS settings, and the bearer token added to every request.
//!
//! A replica dials peers and leaders with its own certificate and verifies
//! theirs against its CA and the host of their address; the TLS settings
//! are taken from the material current at each (re)connection, so a
//! rotated certificate is used from the next connection on. A client (the
//! CLI, the [`crate::client::Client`] library) uses [`ClientSecurity`].

use super::authz::host_of;
use super::reload::{AdminToken, Tls};
use std::path::Path;
use std::sync::Arc;
use tonic::metadata::{Ascii, MetadataValue};
use tonic::service::Interceptor;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity};
use tonic::{Request, Status};

/// A channel whose requests carry the credentials' bearer token.
pub type AuthChannel = InterceptedService<Channel, Credentials>;

/// The endpoint of another replica's gRPC port at `address` (`host:port`).
pub fn replica_endpoint(tls: Option<&Tls>, address: &str) -> Result<Endpoint, String> {
    let scheme = if tls.is_some() { "https" } else { "http" };
    let endpoint = Endpoint::from_shared(format!("{scheme}://{address}"))
        .map_err(|e| format!("bad address {address:?}: {e}"))?;
    match tls {
        None => Ok(endpoint),
        Some(tls) => endpoint
            .tls_config(tls.client_config(host_of(address)))
            .map_err(|e| format!("cannot set up TLS towards {address}: {e}")),
    }
}

/// Adds `authorization: Bearer <token>` to each request, when there is a token.
#[derive(Clone, Debug, Default)]
pub struct Credentials {
    token: Option<Token>,
}

#[derive(Clone, Debug)]
enum Token {
    Fixed(MetadataValue<Ascii>),
    /// The replica's own admin token, as currently read from its file.
    File(Arc<AdminToken>),
}

impl Credentials {
    pub fn none() -> Credentials {
        Credentials::default()
    }

    /// A fixed token (a client's `--token-file`, read once).
    pub fn bearer(token: &str) -> Result<Credentials, String> {
        let value = format!("Bearer {token}")
            .parse()
            .map_err(|_| "the token contains characters not allowed in a header".to_string())?;
        Ok(Credentials {
            token: Some(Token::Fixed(value)),
        })
    }

    /// The replica's admin token file, re-read as it changes.
    pub fn admin_token(token: Option<Arc<AdminToken>>) -> Credentials {
        Credentials {
            token: token.map(Token::File),
        }
    }

    pub fn wrap(&self, channel: Channel) -> AuthChannel {
        InterceptedService::new(channel, self.clone())
    }
}

impl Interceptor for Credentials {
    fn call(&mut self, mut request: Request<()>) -> Result<Request<()>, Status> {
        let value = match &self.token {
            None => return Ok(request),
            Some(Token::Fixed(v)) => v.clone(),
            Some(Token::File(t)) => format!("Bearer {}", t.current())
                .parse()
                .map_err(|_| Status::internal("the admin token is not a valid header value"))?,
        };
        request.metadata_mut().insert("authorization", value);
        Ok(request)
    }
}

/// What a client presents and trusts: `--cacert`, `--cert`/`--key-file`,
/// `--token-file` (or a configuration's `tls` section).
#[derive(Clone, Debug, Default)]
pub struct ClientSecurity {
    /// PEM CA bundle: given, the client speaks https and verifies replicas.
    pub ca: Option<Vec<u8>>,
    /// PEM certificate chain and key presented to replicas.
    pub identity: Option<(Vec<u8>, Vec<u8>)>,
    pub token: Option<String>,
}

impl ClientSecurity {
    /// Reads the files; every error names the flag and the file.
    pub fn from_files(
        cacert: Option<&Path>,
        cert: Option<&Path>,
        key: Option<&Path>,
        token_file: Option<&Path>,
    ) -> Result<ClientSecurity, String> {
        let read = |flag: &str, path: &Path| {
            std::fs::read(path)
                .map_err(|e| format!("{flag} {}: cannot read it: {e}", path.display()))
        };
        let ca = cacert.map(|p| read("--cacert", p)).transpose()?;
        let identity = match (cert, key) {
            (Some(c), Some(k)) => Some((read("--cert", c)?, read("--key-file", k)?)),
            (None, None) => None,
            (Some(_), None) => {
                return Err("--cert needs --key-file (the certificate's private key)".into());
            }
            (None, Some(_)) => {
                return Err("--key-file needs --cert (the certificate it belongs to)".into());
            }
        };
        if identity.is_some() && ca.is_none() {
            return Err(
                "--cert and --key-file need --cacert (the CA bundle that signed the replicas' certificates)"
                    .into(),
            );
        }
        let token = token_file
            .map(|p| super::reload::read_token(p).map_err(|e| format!("--token-file: {e}")))
            .transpose()?;
        Ok(ClientSecurity {
            ca,
            identity,
            token,
        })
    }

    pub fn uses_tls(&self) -> bool {
        self.ca.is_some()
    }

    /// The endpoint of a replica at `address`: https when a CA is given.
    pub fn endpoint(&self, address: &str) -> Result<Endpoint, String> {
        let Some(ca) = &self.ca else {
            return Endpoint::from_shared(format!("http://{address}"))
                .map_err(|e| format!("not a host:port: {e}"));
        };
        let mut tls = ClientTlsConfig::new()
            .ca_certificate(Certificate::from_pem(ca))
            .domain_name(host_of(address));
        if let Some((cert, key)) = &self.identity {
            tls = tls.identity(Identity::from_pem(cert, key));
        }
        Endpoint::from_shared(format!("https://{address}"))
            .map_err(|e| format!("not a host:port: {e}"))?
            .tls_config(tls)
            .map_err(|e| format!("cannot set up TLS: {e}"))
    }

    pub fn credentials(&self) -> Result<Credentials, String> {
        match &self.token {
            Some(t) => Credentials::bearer(t),
            None => Ok(Credentials::none()),
        }
    }
}

/// An error and its sources on one line: a transport error says little at
/// the top, the TLS or connection reason is underneath.
pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let line = s.to_string();
        if !text.contains(&line) {
            text.push_str(": ");
            text.push_str(&line);
        }
        source = s.source();
    }
    text
}
