//! The TLS material of a cluster: the per-cluster CA, the replicas'
//! certificates and the operator's client certificate.
//!
//! Whatever the source (the operator's own CA, a Secret the user manages,
//! or cert-manager), the result is one Secret `<cluster>-tls` in the layout
//! the replicas read (`ca.crt`, and `<pod>.crt`, `<pod>.key` per pod; see
//! docs of [`bundle`]), so the pods are the same in every mode.
//!
//! - [`inspect`]: what a PEM certificate says (names, lifetime, issuer);
//! - [`issue`]: making certificates (rcgen); the only module with
//!   randomness;
//! - [`rotation`]: the pure decision of what needs (re)issuing, from the
//!   observed Secrets and the time;
//! - [`bundle`]: the Secrets' key layout, both ways;
//! - [`user_secret`]: checking and copying a user-provided Secret;
//! - [`cert_manager`]: cert-manager `Certificate` objects and their Secrets.

pub mod bundle;
pub mod cert_manager;
pub mod inspect;
pub mod issue;
pub mod rotation;
pub mod user_secret;

/// A PEM certificate (chain) and its PEM private key.
#[derive(Clone, PartialEq, Eq)]
pub struct Pem {
    pub cert: String,
    pub key: String,
}

impl std::fmt::Debug for Pem {
    // Never print a private key.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pem")
            .field("cert", &self.cert)
            .field("key", &"<redacted>")
            .finish()
    }
}

/// A TLS problem a user can act on.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct TlsError(pub String);

#[cfg(test)]
mod tests;
