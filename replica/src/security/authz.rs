//! Who may do what on the gRPC port, decided in one place.
//!
//! - Peer service (Raft messages, snapshots): with TLS, only a connection
//!   whose client certificate (verified against the CA by rustls) names a
//!   member: a DNS or IP SAN equal to the host of a member's address, or
//!   to a member's name.
//! - Admin role (membership changes, leadership transfer, snapshots): a
//!   client certificate whose CN or a DNS SAN is one of `admin_names`, a
//!   member's certificate (replicas forward admin requests to leaders), or
//!   `authorization: Bearer <admin token>`. Enforced whenever TLS or an
//!   admin token is configured; with neither the admin API is open.
//! - Everything else (keys, status) needs only an accepted connection.

use super::names::CertNames;
use super::reload::AdminToken;
use crate::metrics::Metrics;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tonic::{Request, Status};

/// A member as the checks see it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MemberName {
    pub name: String,
    /// `host:port` of its gRPC listener.
    pub address: String,
}

impl MemberName {
    /// The host part of the address (no port, no brackets).
    pub fn host(&self) -> &str {
        host_of(&self.address)
    }
}

/// The host of `host:port` or `[v6]:port`.
pub fn host_of(address: &str) -> &str {
    let host = match address.rsplit_once(':') {
        Some((host, port)) if port.bytes().all(|b| b.is_ascii_digit()) => host,
        _ => address,
    };
    host.trim_start_matches('[').trim_end_matches(']')
}

/// The current members, from the node's member directory.
pub type Members = Arc<dyn Fn() -> Vec<MemberName> + Send + Sync>;

/// How often a refused peer is logged at most (it retries constantly).
const LOG_EVERY: Duration = Duration::from_secs(10);

pub struct Authz {
    /// Whether connections are TLS (peer checks and certificate roles).
    tls: bool,
    admin_names: Vec<String>,
    token: Option<Arc<AdminToken>>,
    members: Members,
    metrics: Option<Metrics>,
    last_logged: Mutex<Option<Instant>>,
}

/// What the connection of a request proved.
enum Identity {
    /// No TLS on the connection.
    Plain,
    NoCertificate,
    Certificate(CertNames),
}

impl Authz {
    pub fn new(
        tls: bool,
        admin_names: Vec<String>,
        token: Option<Arc<AdminToken>>,
        members: Members,
        metrics: Option<Metrics>,
    ) -> Authz {
        Authz {
            tls,
            admin_names,
            token,
            members,
            metrics,
            last_logged: Mutex::new(None),
        }
    }

    /// No checks at all (tests of layers below, a replica without TLS and token).
    pub fn open() -> Authz {
        Authz::new(false, Vec::new(), None, Arc::new(Vec::new), None)
    }

    /// Whether the admin role is checked.
    pub fn enforces_admin(&self) -> bool {
        self.tls || self.token.is_some()
    }

    fn identity<T>(&self, request: &Request<T>) -> Identity {
        if !self.tls {
            return Identity::Plain;
        }
        let Some(certs) = request.peer_certs() else {
            return Identity::NoCertificate;
        };
        let Some(leaf) = certs.first() else {
            return Identity::NoCertificate;
        };
        match CertNames::of(leaf) {
            Ok(names) => Identity::Certificate(names),
            // rustls verified it, so it parses; should it not, it names nobody.
            Err(_) => Identity::Certificate(CertNames::default()),
        }
    }

    /// The member `names` denotes, if any.
    fn member_named(&self, names: &CertNames) -> Option<MemberName> {
        (self.members)()
            .into_iter()
            .find(|m| names.has_san(m.host()) || names.has_san(&m.name))
    }

    /// The peer service's check: the connection's certificate names a member.
    pub fn check_peer<T>(&self, request: &Request<T>) -> Result<(), Status> {
        let names = match self.identity(request) {
            Identity::Plain => return Ok(()),
            Identity::Certificate(names) => {
                if self.member_named(&names).is_some() {
                    return Ok(());
                }
                names
            }
            Identity::NoCertificate => {
                self.refuse_peer("no_certificate", "presented no client certificate".into());
                return Err(Status::permission_denied(
                    "peer traffic needs a client certificate of a member, signed by this \
                     cluster's CA; the connection presented none (configure tls.cert and tls.key \
                     on the sending replica)",
                ));
            }
        };
        let members = self.member_list();
        self.refuse_peer(
            "not_a_member",
            format!("presented a certificate with {names}, which names no member ({members})"),
        );
        Err(Status::permission_denied(format!(
            "peer traffic refused: the client certificate has {names}, but none of its DNS or IP \
             names is a member's host or name; members are {members} (issue the replica a \
             certificate for its peer address, or add it to the cluster first)"
        )))
    }

    fn member_list(&self) -> String {
        let members: Vec<String> = (self.members)()
            .iter()
            .map(|m| format!("{} ({})", m.name, m.host()))
            .collect();
        if members.is_empty() {
            "none known yet".to_string()
        } else {
            members.join(", ")
        }
    }

    fn refuse_peer(&self, reason: &str, what: String) {
        if let Some(m) = &self.metrics {
            m.peer_rejected.with_label_values(&[reason]).inc();
        }
        let mut last = self.last_logged.lock().expect("not poisoned");
        if last.is_none_or(|t| t.elapsed() >= LOG_EVERY) {
            *last = Some(Instant::now());
            tracing::warn!("refused peer traffic: the connection {what}");
        }
    }

    /// The admin role's check, for the admin RPC that does `action`.
    pub fn require_admin<T>(&self, request: &Request<T>, action: &str) -> Result<(), Status> {
        if !self.enforces_admin() {
            return Ok(());
        }
        if let Some(token) = &self.token
            && let Some(presented) = bearer(request)
            && token.matches(presented)
        {
            return Ok(());
        }
        let shown = match self.identity(request) {
            Identity::Certificate(names) => {
                if names.has_any_name(&self.admin_names) || self.member_named(&names).is_some() {
                    return Ok(());
                }
                format!("the client certificate has {names}")
            }
            Identity::NoCertificate | Identity::Plain => "no client certificate".to_string(),
        };
        let token = if bearer(request).is_some() {
            "; the bearer token presented is not the admin token"
        } else {
            ""
        };
        if let Some(m) = &self.metrics {
            m.admin_denied.with_label_values(&[action]).inc();
        }
        tracing::warn!(action, "admin request denied: {shown}{token}");
        let mut ways = Vec::new();
        if self.tls {
            ways.push(format!(
                "a client certificate named one of [{}]",
                self.admin_names.join(", ")
            ));
        }
        if self.token.is_some() {
            ways.push("the bearer token of admin_token_file".to_string());
        }
        Err(Status::permission_denied(format!(
            "{action} needs the admin role: {} ({shown}{token})",
            ways.join(" or ")
        )))
    }
}

/// The `authorization: Bearer <token>` of a request.
fn bearer<T>(request: &Request<T>) -> Option<&str> {
    let value = request.metadata().get("authorization")?.to_str().ok()?;
    let (scheme, token) = value.trim().split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts_come_out_of_addresses() {
        assert_eq!(host_of("10.0.0.1:3264"), "10.0.0.1");
        assert_eq!(
            host_of("raft-0.raft-peers.ns.svc:3264"),
            "raft-0.raft-peers.ns.svc"
        );
        assert_eq!(host_of("[::1]:3264"), "::1");
        assert_eq!(host_of("localhost"), "localhost");
    }

    #[test]
    fn the_bearer_token_is_read_from_the_authorization_header() {
        let mut r = Request::new(());
        assert_eq!(bearer(&r), None);
        r.metadata_mut()
            .insert("authorization", "Bearer  s3cret ".parse().unwrap());
        assert_eq!(bearer(&r), Some("s3cret"));
        r.metadata_mut()
            .insert("authorization", "Basic abc".parse().unwrap());
        assert_eq!(bearer(&r), None);
    }

    #[test]
    fn without_tls_and_token_everything_is_allowed() {
        let a = Authz::open();
        assert!(!a.enforces_admin());
        assert!(a.require_admin(&Request::new(()), "add a learner").is_ok());
        assert!(a.check_peer(&Request::new(())).is_ok());
    }

    #[test]
    fn a_token_grants_the_admin_role_and_its_absence_is_explained() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("token");
        std::fs::write(&path, "  t0ken\n").unwrap();
        let token = Arc::new(AdminToken::load(&path).unwrap());
        let a = Authz::new(
            false,
            vec!["admin".into()],
            Some(token),
            Arc::new(Vec::new),
            None,
        );
        let denied = a
            .require_admin(&Request::new(()), "transfer leadership")
            .unwrap_err();
        assert_eq!(denied.code(), tonic::Code::PermissionDenied);
        assert!(
            denied
                .message()
                .contains("transfer leadership needs the admin role")
                && denied.message().contains("admin_token_file"),
            "{}",
            denied.message()
        );
        let mut r = Request::new(());
        r.metadata_mut()
            .insert("authorization", "Bearer wrong".parse().unwrap());
        assert!(
            a.require_admin(&r, "x")
                .unwrap_err()
                .message()
                .contains("not the admin token")
        );
        r.metadata_mut()
            .insert("authorization", "Bearer t0ken".parse().unwrap());
        assert!(a.require_admin(&r, "x").is_ok());
    }
}
