//! Issuing, reading and rotating certificates, as pure scenarios: the
//! time is a parameter, so "two thirds of the lifetime later" is one
//! addition, not a wait.

use super::bundle::{CaStore, ReplicaBundle, bundle_contains};
use super::cert_manager::{Assembled, assemble};
use super::inspect::{issued_by, key_matches, parse, parse_all};
use super::issue::{self, Usage};
use super::rotation::{Decision, PROPAGATION_SECONDS, Reason, Wanted, carry_out, decide};
use super::user_secret;
use crate::names::{Names, OPERATOR_CLIENT_NAME};
use std::collections::BTreeMap;

const DAY: i64 = 86_400;
const T0: i64 = 1_800_000_000;

fn names() -> Names {
    Names::new("kv", "prod")
}

fn wanted(replicas: u32) -> Wanted {
    let n = names();
    Wanted {
        id: n.cluster_id(),
        replicas: (0..replicas)
            .map(|o| (n.pod(o), n.replica_dns_names(o)))
            .collect(),
        certificate_lifetime: 90 * DAY,
        ca_lifetime: 300 * DAY,
    }
}

/// Decides and carries out, like one reconcile.
fn step(
    store: &CaStore,
    bundle: &ReplicaBundle,
    w: &Wanted,
    now: i64,
) -> (Decision, CaStore, ReplicaBundle) {
    let d = decide(store, bundle, w, now);
    let (s, b) = carry_out(&d, store, bundle, w, now).expect("issues");
    (d, s, b)
}

/// Every replica's and the operator's certificate is trusted by the
/// bundle the replicas hold: the invariant of every rotation step.
fn assert_trusted(store: &CaStore, bundle: &ReplicaBundle) {
    for (pod, pem) in &bundle.replicas {
        assert!(
            issued_by(&pem.cert, &bundle.ca),
            "{pod} is not trusted by the bundle"
        );
    }
    let op = store.operator.as_ref().expect("operator certificate");
    assert!(
        issued_by(&op.cert, &bundle.ca),
        "the operator is not trusted"
    );
}

fn new_cluster(replicas: u32, now: i64) -> (CaStore, ReplicaBundle) {
    let (_, s, b) = step(
        &CaStore::default(),
        &ReplicaBundle::default(),
        &wanted(replicas),
        now,
    );
    (s, b)
}

#[test]
fn issued_certificates_carry_the_names_usages_and_signature_of_the_contract() {
    let n = names();
    let ca = issue::new_ca(&n.cluster_id(), T0, 300 * DAY).unwrap();
    let ca_info = parse(&ca.cert).unwrap();
    assert!(ca_info.is_ca);
    assert!(key_matches(&ca_info, &ca.key));
    assert_eq!(ca_info.not_after - T0, 300 * DAY);

    let dns = n.replica_dns_names(1);
    let leaf = issue::leaf(&ca, "kv-1", &dns, Usage::Replica, T0, 90 * DAY).unwrap();
    let info = parse(&leaf.cert).unwrap();
    assert_eq!(info.common_name.as_deref(), Some("kv-1"));
    for name in [
        "kv-1.kv-peer.prod.svc",
        "kv-1.kv-peer.prod.svc.cluster.local",
        "kv-1.kv-peer",
        "kv-1",
        "kv.prod.svc",
        "kv-leader.prod.svc",
    ] {
        assert!(
            info.dns_names.iter().any(|d| d == name),
            "no SAN {name}: {:?}",
            info.dns_names
        );
    }
    assert_eq!(
        info.dns_names[0],
        n.pod_domain(1),
        "the member address's host comes first"
    );
    assert!(
        info.server_auth && info.client_auth,
        "server and client of the gRPC port"
    );
    assert!(!info.is_ca);
    assert!(info.not_before <= T0 && info.not_after == T0 + 90 * DAY);
    assert!(issued_by(&leaf.cert, &ca.cert), "signed by the cluster CA");
    assert!(key_matches(&info, &leaf.key));
    assert!(leaf.key.contains("BEGIN PRIVATE KEY"), "PKCS#8");

    let other = issue::new_ca("other.ns", T0, 300 * DAY).unwrap();
    assert!(
        !issued_by(&leaf.cert, &other.cert),
        "another CA's signature does not count"
    );
    assert!(!key_matches(&info, &other.key));

    let op = issue::leaf(&ca, OPERATOR_CLIENT_NAME, &[], Usage::Client, T0, 90 * DAY).unwrap();
    let op_info = parse(&op.cert).unwrap();
    assert_eq!(op_info.common_name.as_deref(), Some("raft-operator"));
    assert!(op_info.client_auth && !op_info.server_auth);
    assert!(issued_by(&op.cert, &ca.cert));
}

#[test]
fn a_new_cluster_gets_a_ca_and_every_certificate_once() {
    let w = wanted(3);
    let (d, store, bundle) = step(&CaStore::default(), &ReplicaBundle::default(), &w, T0);
    assert_eq!(d.ca, Some(Reason::Missing));
    assert_eq!(d.replicas.len(), 3);
    assert!(d.operator.is_some());
    assert_eq!(bundle.replicas.len(), 3);
    assert_eq!(
        parse_all(&bundle.ca).unwrap().len(),
        1,
        "one CA, no overlap"
    );
    assert!(store.previous.is_none());
    assert_trusted(&store, &bundle);
    // Nothing to do the next time round, or a month later.
    for later in [T0 + 1, T0 + 30 * DAY] {
        assert!(decide(&store, &bundle, &w, later).is_empty());
    }
}

#[test]
fn certificates_are_reissued_after_two_thirds_of_their_lifetime() {
    let (store, bundle) = new_cluster(3, T0);
    let w = wanted(3);
    assert!(decide(&store, &bundle, &w, T0 + 59 * DAY).is_empty());
    let (d, store2, bundle2) = step(&store, &bundle, &w, T0 + 61 * DAY);
    assert!(d.ca.is_none(), "the CA is far from expiry");
    assert_eq!(d.replicas.len(), 3);
    assert!(
        d.replicas.values().all(|r| *r == Reason::NearExpiry),
        "{d:?}"
    );
    assert_eq!(d.operator, Some(Reason::NearExpiry));
    assert_eq!(store2.ca, store.ca, "same CA");
    let fresh = parse(&bundle2.replicas["kv-0"].cert).unwrap();
    assert_eq!(fresh.not_after, T0 + 61 * DAY + 90 * DAY);
    assert_ne!(
        bundle2.replicas["kv-0"].key, bundle.replicas["kv-0"].key,
        "a new key"
    );
    assert_trusted(&store2, &bundle2);
}

#[test]
fn scale_out_adds_certificates_and_scale_in_removes_them() {
    let (store, bundle) = new_cluster(3, T0);
    let (d, store, five) = step(&store, &bundle, &wanted(5), T0 + DAY);
    assert_eq!(
        d.replicas.keys().cloned().collect::<Vec<_>>(),
        ["kv-3", "kv-4"],
        "only the new pods"
    );
    assert!(d.operator.is_none() && d.ca.is_none());
    assert_eq!(five.replicas["kv-0"], bundle.replicas["kv-0"], "untouched");
    let (d, _, three) = step(&store, &five, &wanted(3), T0 + 2 * DAY);
    assert_eq!(d.removed, ["kv-3", "kv-4"]);
    assert!(d.replicas.is_empty());
    assert_eq!(three.replicas.len(), 3);
}

#[test]
fn wrong_names_foreign_keys_other_cas_and_garbage_are_reissued() {
    let (store, mut bundle) = new_cluster(4, T0);
    let ca = store.ca.clone().unwrap();
    let n = names();
    // kv-0 holds a certificate made for kv-9.
    bundle.replicas.insert(
        "kv-0".into(),
        issue::leaf(
            &ca,
            "kv-9",
            &n.replica_dns_names(9),
            Usage::Replica,
            T0,
            90 * DAY,
        )
        .unwrap(),
    );
    // kv-1's key belongs to another certificate.
    let other_key = bundle.replicas["kv-2"].key.clone();
    bundle.replicas.get_mut("kv-1").unwrap().key = other_key;
    // kv-2 carries a certificate of a CA the cluster does not use.
    let stranger = issue::new_ca("x.y", T0, 300 * DAY).unwrap();
    bundle.replicas.insert(
        "kv-2".into(),
        issue::leaf(
            &stranger,
            "kv-2",
            &n.replica_dns_names(2),
            Usage::Replica,
            T0,
            90 * DAY,
        )
        .unwrap(),
    );
    // kv-3 is not a certificate at all.
    bundle.replicas.get_mut("kv-3").unwrap().cert = "garbage".into();
    let (d, store, fixed) = step(&store, &bundle, &wanted(4), T0 + DAY);
    assert!(
        matches!(&d.replicas["kv-0"], Reason::WrongNames(n) if n.contains(&"CN=kv-0".to_string()) && n.contains(&"kv-0.kv-peer.prod.svc".to_string())),
        "{d:?}"
    );
    assert_eq!(d.replicas["kv-1"], Reason::KeyMismatch);
    assert_eq!(d.replicas["kv-2"], Reason::OldCa);
    assert!(matches!(d.replicas["kv-3"], Reason::Unreadable(_)));
    assert_trusted(&store, &fixed);
    assert!(decide(&store, &fixed, &wanted(4), T0 + DAY + 1).is_empty());
}

#[test]
fn a_certificate_missing_a_new_service_name_is_reissued() {
    let (store, bundle) = new_cluster(1, T0);
    let mut w = wanted(1);
    w.replicas
        .get_mut("kv-0")
        .unwrap()
        .push("kv-extra.prod.svc".into());
    let d = decide(&store, &bundle, &w, T0 + 1);
    assert_eq!(
        d.replicas["kv-0"],
        Reason::WrongNames(vec!["kv-extra.prod.svc".into()])
    );
}

#[test]
fn ca_rotation_keeps_the_old_ca_in_the_bundle_until_every_certificate_is_reissued_and_spread() {
    let w = wanted(3);
    // The CA from T0; the replicas' certificates recently renewed.
    let (store, bundle) = new_cluster(3, T0);
    let renewed_at = T0 + 195 * DAY;
    let (_, store, bundle) = step(&store, &bundle, &w, renewed_at);
    let old_ca = store.ca.clone().unwrap();

    // Two thirds of the CA's 300 days: a new CA, old certificates kept.
    let t = T0 + 201 * DAY;
    let (d, store, bundle) = step(&store, &bundle, &w, t);
    assert_eq!(d.ca, Some(Reason::NearExpiry));
    assert!(d.replicas.is_empty() && d.operator.is_none(), "{d:?}");
    assert_ne!(store.ca, Some(old_ca.clone()));
    assert_eq!(store.previous.as_deref(), Some(old_ca.cert.as_str()));
    assert_eq!(store.rotation_started, Some(t));
    assert_eq!(parse_all(&bundle.ca).unwrap().len(), 2, "old and new CA");
    assert_trusted(&store, &bundle);

    // While the new bundle spreads nothing changes.
    assert!(decide(&store, &bundle, &w, t + PROPAGATION_SECONDS - 1).is_empty());

    // Then every certificate is re-issued by the new CA; both CAs stay.
    let t2 = t + PROPAGATION_SECONDS;
    let (d, store, bundle) = step(&store, &bundle, &w, t2);
    assert!(d.ca.is_none() && !d.drop_previous);
    assert_eq!(d.replicas.len(), 3);
    assert!(d.replicas.values().all(|r| *r == Reason::OldCa));
    assert_eq!(d.operator, Some(Reason::OldCa));
    let new_ca = store.ca.clone().unwrap();
    for pem in bundle.replicas.values() {
        assert!(issued_by(&pem.cert, &new_ca.cert));
    }
    assert_eq!(parse_all(&bundle.ca).unwrap().len(), 2);
    assert_trusted(&store, &bundle);

    // The old CA leaves once the new certificates have spread too.
    assert!(decide(&store, &bundle, &w, t2 + 10).is_empty());
    let (d, store, bundle) = step(&store, &bundle, &w, t2 + PROPAGATION_SECONDS);
    assert!(d.drop_previous && d.replicas.is_empty(), "{d:?}");
    assert!(store.previous.is_none() && store.rotation_started.is_none());
    assert_eq!(parse_all(&bundle.ca).unwrap().len(), 1);
    assert!(
        !bundle_contains(&bundle.ca, &old_ca.cert),
        "the old CA is gone"
    );
    assert_trusted(&store, &bundle);
    assert!(decide(&store, &bundle, &w, t2 + PROPAGATION_SECONDS + 1).is_empty());
}

#[test]
fn a_lost_ca_secret_overlaps_with_the_ca_the_replicas_still_trust() {
    let w = wanted(3);
    let (_, bundle) = new_cluster(3, T0);
    let (d, store, after) = step(&CaStore::default(), &bundle, &w, T0 + DAY);
    assert_eq!(d.ca, Some(Reason::Missing));
    assert!(
        d.replicas.is_empty(),
        "the running certificates stay until the new CA spread"
    );
    assert_eq!(d.operator, Some(Reason::Missing));
    assert_eq!(store.previous.as_deref(), Some(bundle.ca.as_str()));
    assert_eq!(after.replicas, bundle.replicas);
    assert_trusted(&store, &after);
}

fn text(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

#[test]
fn a_user_secret_is_checked_key_by_key_with_the_fix_in_the_message() {
    let n = names();
    let pods: BTreeMap<String, Vec<String>> =
        (0..2).map(|o| (n.pod(o), n.replica_dns_names(o))).collect();
    let ca = issue::new_ca("user", T0, 300 * DAY).unwrap();
    let kv0 = issue::leaf(
        &ca,
        "kv-0",
        &n.replica_dns_names(0),
        Usage::Replica,
        T0,
        90 * DAY,
    )
    .unwrap();
    let kv1 = issue::leaf(
        &ca,
        "kv-1",
        &n.replica_dns_names(1),
        Usage::Replica,
        T0,
        90 * DAY,
    )
    .unwrap();
    let good = text(&[
        ("ca.crt", &ca.cert),
        ("kv-0.crt", &kv0.cert),
        ("kv-0.key", &kv0.key),
        ("kv-1.crt", &kv1.cert),
        ("kv-1.key", &kv1.key),
    ]);
    let bundle = user_secret::replica_bundle("certs", &good, &pods, T0).unwrap();
    assert_eq!(bundle.replicas["kv-1"], kv1);

    let mut missing = good.clone();
    missing.remove("kv-1.key");
    let e = user_secret::replica_bundle("certs", &missing, &pods, T0).unwrap_err();
    assert!(
        e.0.contains("lacks the keys kv-1.key") && e.0.contains("tls.crt"),
        "{e}"
    );

    let mut no_ca = good.clone();
    no_ca.remove("ca.crt");
    let e = user_secret::replica_bundle("certs", &no_ca, &pods, T0).unwrap_err();
    assert!(e.0.contains("no key ca.crt"), "{e}");

    let e = user_secret::replica_bundle("certs", &good, &pods, T0 + 91 * DAY).unwrap_err();
    assert!(e.0.contains("expired"), "{e}");

    // A shared certificate must name every replica.
    let shared = issue::leaf(
        &ca,
        "kv",
        &n.replica_dns_names(0),
        Usage::Replica,
        T0,
        90 * DAY,
    )
    .unwrap();
    let data = text(&[
        ("ca.crt", &ca.cert),
        ("tls.crt", &shared.cert),
        ("tls.key", &shared.key),
    ]);
    let e = user_secret::replica_bundle("certs", &data, &pods, T0).unwrap_err();
    assert!(e.0.contains("does not name kv-1.kv-peer.prod.svc"), "{e}");
    let both: Vec<String> = [n.replica_dns_names(0), n.replica_dns_names(1)].concat();
    let shared = issue::leaf(&ca, "kv", &both, Usage::Replica, T0, 90 * DAY).unwrap();
    let data = text(&[
        ("ca.crt", &ca.cert),
        ("tls.crt", &shared.cert),
        ("tls.key", &shared.key),
    ]);
    let bundle = user_secret::replica_bundle("certs", &data, &pods, T0).unwrap();
    assert_eq!(bundle.replicas["kv-0"], shared);
    assert_eq!(bundle.replicas["kv-1"], shared);

    // The operator's client certificate must carry an admin name.
    let op = issue::leaf(&ca, "raft-operator", &[], Usage::Client, T0, 90 * DAY).unwrap();
    let data = text(&[("tls.crt", &op.cert), ("tls.key", &op.key)]);
    assert!(user_secret::operator_client("op", &data, &ca.cert, T0).is_ok());
    let nobody = issue::leaf(&ca, "nobody", &[], Usage::Client, T0, 90 * DAY).unwrap();
    let data = text(&[("tls.crt", &nobody.cert), ("tls.key", &nobody.key)]);
    let e = user_secret::operator_client("op", &data, &ca.cert, T0).unwrap_err();
    assert!(e.0.contains("raft-operator or admin"), "{e}");
    let e = user_secret::operator_client("op", &BTreeMap::new(), &ca.cert, T0).unwrap_err();
    assert!(e.0.contains("needs tls.crt and tls.key"), "{e}");
}

#[test]
fn cert_manager_secrets_are_assembled_and_gaps_are_named() {
    let n = names();
    let ca = issue::new_ca("cm", T0, 300 * DAY).unwrap();
    let secret = |o: u32| {
        let pem = issue::leaf(
            &ca,
            &n.pod(o),
            &n.replica_dns_names(o),
            Usage::Replica,
            T0,
            90 * DAY,
        )
        .unwrap();
        text(&[
            ("tls.crt", &pem.cert),
            ("tls.key", &pem.key),
            ("ca.crt", &ca.cert),
        ])
    };
    let mut found = BTreeMap::new();
    found.insert(
        "kv-0".to_string(),
        ("kv-0-tls".to_string(), Some(secret(0))),
    );
    found.insert(
        "kv-1".to_string(),
        ("kv-1-tls".to_string(), Some(secret(1))),
    );
    match assemble(&found).unwrap() {
        Assembled::Complete(b) => {
            assert_eq!(b.replicas.len(), 2);
            assert_eq!(parse_all(&b.ca).unwrap().len(), 1, "one CA, deduplicated");
            assert!(issued_by(&b.replicas["kv-1"].cert, &b.ca));
        }
        other => panic!("{other:?}"),
    }
    found.insert("kv-2".to_string(), ("kv-2-tls".to_string(), None));
    assert!(
        matches!(assemble(&found).unwrap(), Assembled::Waiting(b, w) if b.replicas.len() == 2 && w == ["kv-2-tls"])
    );
    let mut acme = secret(2);
    acme.remove("ca.crt");
    found.insert("kv-2".to_string(), ("kv-2-tls".to_string(), Some(acme)));
    let e = assemble(&found).unwrap_err();
    assert!(e.0.contains("kv-2-tls") && e.0.contains("no ca.crt"), "{e}");
}
