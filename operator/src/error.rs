//! The operator's errors. Each says what went wrong and, where a user can
//! fix it, how.

use thiserror::Error;

#[derive(Error, Debug)]
pub enum Error {
    #[error("Kubernetes API: {0}")]
    Kube(#[from] kube::Error),

    #[error("the RaftCluster has no {0}: the API server should always set it")]
    MissingObjectKey(&'static str),

    #[error("invalid RaftCluster spec: {0}")]
    InvalidSpec(String),

    #[error("replica {replica} at {endpoint}: {message}")]
    Admin {
        replica: String,
        endpoint: String,
        message: String,
    },

    #[error("cannot serialize {what}: {message}")]
    Serialize { what: &'static str, message: String },
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// A short label for metrics.
    pub fn metric_label(&self) -> &'static str {
        match self {
            Error::Kube(_) => "kube",
            Error::MissingObjectKey(_) => "missing_key",
            Error::InvalidSpec(_) => "invalid_spec",
            Error::Admin { .. } => "admin",
            Error::Serialize { .. } => "serialize",
        }
    }
}
