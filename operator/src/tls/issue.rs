//! Issuing certificates with rcgen (ECDSA P-256, PKCS#8 keys): the
//! cluster's CA, the replicas' server-and-client certificates and the
//! operator's client certificate. Each call makes a fresh key pair; rcgen
//! derives the serial number from it, so serials never repeat.

use super::{Pem, TlsError};
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, SanType,
};
use time::OffsetDateTime;

/// Certificates start this long before they are issued, so that a replica
/// whose clock is a little behind already accepts them.
pub const BACKDATE_SECONDS: i64 = 300;

fn error(what: &str, e: rcgen::Error) -> TlsError {
    TlsError(format!("cannot issue {what}: {e}"))
}

fn validity(
    params: &mut CertificateParams,
    now: i64,
    lifetime_seconds: i64,
) -> Result<(), TlsError> {
    let at = |t: i64| {
        OffsetDateTime::from_unix_timestamp(t)
            .map_err(|e| TlsError(format!("time {t} out of range: {e}")))
    };
    params.not_before = at(now - BACKDATE_SECONDS)?;
    params.not_after = at(now + lifetime_seconds)?;
    Ok(())
}

fn key_pair(what: &str) -> Result<KeyPair, TlsError> {
    KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).map_err(|e| error(what, e))
}

/// A new self-signed CA for one cluster. `id` (namespace and name) and
/// the issue time make every generation's subject distinct, so old and new
/// CA can sit in one bundle during a rotation.
pub fn new_ca(id: &str, now: i64, lifetime_seconds: i64) -> Result<Pem, TlsError> {
    let mut params = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::OrganizationName, "kuberaft");
    dn.push(DnType::CommonName, format!("kuberaft CA {id} {now}"));
    params.distinguished_name = dn;
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    validity(&mut params, now, lifetime_seconds)?;
    let key = key_pair("the CA")?;
    let cert = params.self_signed(&key).map_err(|e| error("the CA", e))?;
    Ok(Pem {
        cert: cert.pem(),
        key: key.serialize_pem(),
    })
}

/// Who a leaf certificate is for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Usage {
    /// A replica: server of its gRPC port and client towards its peers.
    Replica,
    /// A client only (the operator).
    Client,
}

/// A certificate for `common_name` with `dns_names`, signed by `ca`.
pub fn leaf(
    ca: &Pem,
    common_name: &str,
    dns_names: &[String],
    usage: Usage,
    now: i64,
    lifetime_seconds: i64,
) -> Result<Pem, TlsError> {
    let ca_key = KeyPair::from_pem(&ca.key)
        .map_err(|e| TlsError(format!("the CA's key is not a usable PEM private key: {e}")))?;
    let issuer = Issuer::from_ca_cert_pem(&ca.cert, ca_key)
        .map_err(|e| TlsError(format!("the CA's certificate cannot sign: {e}")))?;
    let mut params = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::OrganizationName, "kuberaft");
    dn.push(DnType::CommonName, common_name);
    params.distinguished_name = dn;
    params.subject_alt_names = dns_names
        .iter()
        .map(|n| {
            n.as_str()
                .try_into()
                .map(SanType::DnsName)
                .map_err(|e| error(&format!("a certificate for {n}"), e))
        })
        .collect::<Result<_, _>>()?;
    params.is_ca = IsCa::ExplicitNoCa;
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = match usage {
        Usage::Replica => vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ],
        Usage::Client => vec![ExtendedKeyUsagePurpose::ClientAuth],
    };
    params.use_authority_key_identifier_extension = true;
    validity(&mut params, now, lifetime_seconds)?;
    let key = key_pair(common_name)?;
    let cert = params
        .signed_by(&key, &issuer)
        .map_err(|e| error(common_name, e))?;
    Ok(Pem {
        cert: cert.pem(),
        key: key.serialize_pem(),
    })
}
