//! What needs (re)issuing in Automatic mode: a pure function of the two
//! observed Secrets (`<cluster>-ca`, `<cluster>-tls`), the pods that need a
//! certificate and the time. [`carry_out`] then issues what was decided.
//!
//! Rules:
//! - a certificate is re-issued when it is missing or unreadable, its key
//!   does not match, it lacks a name it must carry, its usages are wrong,
//!   two thirds of its lifetime have passed, or it is not signed by the
//!   current CA (see below);
//! - the CA is replaced when two thirds of its lifetime have passed (or it
//!   is missing or broken). The old CA stays in the bundle next to the new
//!   one (`previous-ca.crt`): certificates of the old CA keep working while
//!   the new bundle reaches every pod. Only once the bundle with the new CA
//!   has been in the replicas' Secret for [`PROPAGATION_SECONDS`] are the
//!   certificates re-issued by the new CA, and only once every certificate
//!   is the new CA's and has itself been out that long does the old CA
//!   leave the bundle. At no point does a replica hold a certificate that
//!   another replica's bundle does not trust.

use super::bundle::{CaStore, ReplicaBundle, bundle_contains};
use super::inspect::{self, CertInfo};
use super::issue::{self, BACKDATE_SECONDS, Usage};
use super::{Pem, TlsError};
use crate::names::OPERATOR_CLIENT_NAME;
use std::collections::BTreeMap;
use std::fmt;

/// How long a changed Secret may take to reach the files of every pod
/// (kubelet's sync period plus its cache, plus the replica's reload
/// check), before the operator relies on it being there.
pub const PROPAGATION_SECONDS: i64 = 180;

/// Why a certificate is (re)issued.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Reason {
    Missing,
    Unreadable(String),
    KeyMismatch,
    /// It does not carry these names.
    WrongNames(Vec<String>),
    WrongUsage,
    NearExpiry,
    /// Not signed by the current CA.
    OldCa,
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Reason::Missing => write!(f, "missing"),
            Reason::Unreadable(e) => write!(f, "unreadable ({e})"),
            Reason::KeyMismatch => write!(f, "its key does not match"),
            Reason::WrongNames(n) => write!(f, "lacks the names {}", n.join(", ")),
            Reason::WrongUsage => write!(f, "lacks the serverAuth/clientAuth usage"),
            Reason::NearExpiry => write!(f, "two thirds of its lifetime have passed"),
            Reason::OldCa => write!(f, "not signed by the current CA"),
        }
    }
}

/// What should exist.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Wanted {
    /// Names the CA (`namespace.cluster`).
    pub id: String,
    /// Every pod that needs a certificate, with the DNS names it carries.
    pub replicas: BTreeMap<String, Vec<String>>,
    /// Seconds.
    pub certificate_lifetime: i64,
    pub ca_lifetime: i64,
}

/// What to do.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Decision {
    /// Make a new CA.
    pub ca: Option<Reason>,
    /// Take the previous CA out of the bundle.
    pub drop_previous: bool,
    /// Pods whose certificate is (re)issued.
    pub replicas: BTreeMap<String, Reason>,
    /// Pods whose certificate is no longer needed.
    pub removed: Vec<String>,
    pub operator: Option<Reason>,
}

impl Decision {
    pub fn is_empty(&self) -> bool {
        self.ca.is_none()
            && !self.drop_previous
            && self.replicas.is_empty()
            && self.removed.is_empty()
            && self.operator.is_none()
    }

    /// One line for an event.
    pub fn summary(&self) -> String {
        let mut parts = Vec::new();
        if let Some(r) = &self.ca {
            parts.push(format!("new CA (the old one: {r})"));
        }
        if self.drop_previous {
            parts.push("previous CA removed from the bundle".to_string());
        }
        for (pod, r) in &self.replicas {
            parts.push(format!("{pod} certificate issued ({r})"));
        }
        if !self.removed.is_empty() {
            parts.push(format!("removed {}", self.removed.join(", ")));
        }
        if let Some(r) = &self.operator {
            parts.push(format!("operator client certificate issued ({r})"));
        }
        parts.join("; ")
    }
}

/// A leaf certificate's verdict.
enum Leaf {
    Good(CertInfo),
    /// Signed by the previous CA, which the bundle still trusts.
    Previous,
    Reissue(Reason),
}

fn check_leaf(
    pem: Option<&Pem>,
    common_name: &str,
    dns_names: &[String],
    usage: Usage,
    ca: &str,
    previous: Option<&str>,
    now: i64,
) -> Leaf {
    let Some(pem) = pem else {
        return Leaf::Reissue(Reason::Missing);
    };
    let info = match inspect::parse(&pem.cert) {
        Ok(info) => info,
        Err(e) => return Leaf::Reissue(Reason::Unreadable(e.0)),
    };
    if !inspect::key_matches(&info, &pem.key) {
        return Leaf::Reissue(Reason::KeyMismatch);
    }
    let mut missing: Vec<String> = dns_names
        .iter()
        .filter(|n| !info.dns_names.contains(n))
        .cloned()
        .collect();
    if info.common_name.as_deref() != Some(common_name) {
        missing.insert(0, format!("CN={common_name}"));
    }
    if !missing.is_empty() {
        return Leaf::Reissue(Reason::WrongNames(missing));
    }
    if !info.client_auth || (usage == Usage::Replica && !info.server_auth) {
        return Leaf::Reissue(Reason::WrongUsage);
    }
    if info.past(2, 3, now) {
        return Leaf::Reissue(Reason::NearExpiry);
    }
    if inspect::issued_by(&pem.cert, ca) {
        return Leaf::Good(info);
    }
    match previous {
        Some(p) if inspect::issued_by(&pem.cert, p) => Leaf::Previous,
        _ => Leaf::Reissue(Reason::OldCa),
    }
}

/// The CA's verdict: `None` when it is good.
fn check_ca(ca: Option<&Pem>, rotating: bool, now: i64) -> Option<Reason> {
    let Some(ca) = ca else {
        return Some(Reason::Missing);
    };
    let info = match inspect::parse(&ca.cert) {
        Ok(info) => info,
        Err(e) => return Some(Reason::Unreadable(e.0)),
    };
    if !info.is_ca {
        return Some(Reason::WrongUsage);
    }
    if !inspect::key_matches(&info, &ca.key) {
        return Some(Reason::KeyMismatch);
    }
    // One rotation at a time: a CA replaced during an overlap would push
    // the oldest CA out of the bundle while certificates still use it.
    if !rotating && info.past(2, 3, now) {
        return Some(Reason::NearExpiry);
    }
    None
}

/// Decides what to (re)issue. `bundle` is the observed `<cluster>-tls`.
pub fn decide(store: &CaStore, bundle: &ReplicaBundle, wanted: &Wanted, now: i64) -> Decision {
    let mut decision = Decision {
        ca: check_ca(store.ca.as_ref(), store.previous.is_some(), now),
        ..Decision::default()
    };
    decision.removed = bundle
        .replicas
        .keys()
        .filter(|pod| !wanted.replicas.contains_key(*pod))
        .cloned()
        .collect();

    if decision.ca.is_some() {
        // A new CA is made this round. With an old CA to overlap with,
        // existing certificates stay until the new bundle has spread;
        // without one (a new cluster) everything is issued now.
        let overlap = overlap_source(store, bundle).is_some();
        for (pod, names) in &wanted.replicas {
            let reason = match check_leaf(
                bundle.replicas.get(pod),
                pod,
                names,
                Usage::Replica,
                &bundle.ca,
                None,
                now,
            ) {
                Leaf::Reissue(r) => Some(r),
                _ if !overlap => Some(Reason::OldCa),
                _ => None,
            };
            if let Some(r) = reason {
                decision.replicas.insert(pod.clone(), r);
            }
        }
        decision.operator = match check_leaf(
            store.operator.as_ref(),
            OPERATOR_CLIENT_NAME,
            &[],
            Usage::Client,
            &bundle.ca,
            None,
            now,
        ) {
            Leaf::Reissue(r) => Some(r),
            _ if !overlap => Some(Reason::OldCa),
            _ => None,
        };
        return decision;
    }

    let ca = store
        .ca
        .as_ref()
        .map(|c| c.cert.as_str())
        .unwrap_or_default();
    // The new CA has reached every pod: certificates of the previous one
    // may now be replaced.
    let spread = bundle_contains(&bundle.ca, ca)
        && store
            .rotation_started
            .is_none_or(|t| now >= t + PROPAGATION_SECONDS);
    let previous = store.previous.as_deref().filter(|_| !spread);
    let mut all_current = true;
    let mut last_issued = i64::MIN;
    let mut judge = |pem: Option<&Pem>, cn: &str, names: &[String], usage: Usage| match check_leaf(
        pem, cn, names, usage, ca, previous, now,
    ) {
        Leaf::Good(info) => {
            last_issued = last_issued.max(info.not_before + BACKDATE_SECONDS);
            None
        }
        Leaf::Previous => {
            all_current = false;
            None
        }
        Leaf::Reissue(r) => {
            all_current = false;
            Some(r)
        }
    };
    for (pod, names) in &wanted.replicas {
        if let Some(r) = judge(bundle.replicas.get(pod), pod, names, Usage::Replica) {
            decision.replicas.insert(pod.clone(), r);
        }
    }
    decision.operator = judge(
        store.operator.as_ref(),
        OPERATOR_CLIENT_NAME,
        &[],
        Usage::Client,
    );
    if let Some(previous) = &store.previous {
        let expired = inspect::parse_all(previous)
            .map(|cas| cas.iter().all(|c| c.not_after <= now))
            .unwrap_or(true);
        let settled = all_current && now >= last_issued + PROPAGATION_SECONDS;
        decision.drop_previous = expired || settled;
    }
    decision
}

/// The CA certificates a new CA overlaps with: the store's current CA, or
/// (when the store was lost) what the replicas' bundle trusts.
fn overlap_source(store: &CaStore, bundle: &ReplicaBundle) -> Option<String> {
    let usable = |pem: &str| inspect::parse_all(pem).is_ok_and(|c| c.iter().any(|c| c.is_ca));
    match &store.ca {
        Some(ca) if usable(&ca.cert) => Some(ca.cert.clone()),
        _ if usable(&bundle.ca) => Some(bundle.ca.clone()),
        _ => None,
    }
}

/// Issues what `decision` says: the new `<cluster>-ca` and `<cluster>-tls`.
pub fn carry_out(
    decision: &Decision,
    store: &CaStore,
    bundle: &ReplicaBundle,
    wanted: &Wanted,
    now: i64,
) -> Result<(CaStore, ReplicaBundle), TlsError> {
    let mut store = store.clone();
    let mut bundle = bundle.clone();
    if decision.ca.is_some() {
        let previous = overlap_source(&store, &bundle);
        store.rotation_started = previous.as_ref().map(|_| now);
        store.previous = previous;
        store.ca = Some(issue::new_ca(&wanted.id, now, wanted.ca_lifetime)?);
    } else if decision.drop_previous {
        store.previous = None;
        store.rotation_started = None;
    }
    let ca = store
        .ca
        .clone()
        .ok_or_else(|| TlsError("no CA to issue certificates with".to_string()))?;
    for pod in &decision.removed {
        bundle.replicas.remove(pod);
    }
    for pod in decision.replicas.keys() {
        let names = wanted.replicas.get(pod).cloned().unwrap_or_default();
        let pem = issue::leaf(
            &ca,
            pod,
            &names,
            Usage::Replica,
            now,
            wanted.certificate_lifetime,
        )?;
        bundle.replicas.insert(pod.clone(), pem);
    }
    if decision.operator.is_some() {
        store.operator = Some(issue::leaf(
            &ca,
            OPERATOR_CLIENT_NAME,
            &[],
            Usage::Client,
            now,
            wanted.certificate_lifetime,
        )?);
    }
    bundle.ca = store.bundle();
    Ok((store, bundle))
}
