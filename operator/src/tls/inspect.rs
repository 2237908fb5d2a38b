//! Reading certificates: names, lifetime, usages, issuer and key, from
//! PEM. Used to decide about rotation and to check user-provided Secrets;
//! nothing here trusts a certificate for a connection (rustls does that).

use super::TlsError;
use x509_parser::prelude::*;

/// What one certificate says.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CertInfo {
    /// Unix seconds.
    pub not_before: i64,
    pub not_after: i64,
    pub common_name: Option<String>,
    pub dns_names: Vec<String>,
    pub is_ca: bool,
    pub server_auth: bool,
    pub client_auth: bool,
    /// The DER SubjectPublicKeyInfo.
    pub public_key: Vec<u8>,
    /// The DER subject and issuer names.
    pub subject: Vec<u8>,
    pub issuer: Vec<u8>,
}

impl CertInfo {
    /// Whether `now` (unix seconds) is past `fraction` of the lifetime.
    pub fn past(&self, fraction_num: i64, fraction_den: i64, now: i64) -> bool {
        let lifetime = (self.not_after - self.not_before).max(0);
        now >= self.not_before + lifetime * fraction_num / fraction_den
    }

    /// Whether the certificate names `name` (its CN or a DNS name).
    pub fn names(&self, name: &str) -> bool {
        self.common_name.as_deref() == Some(name) || self.dns_names.iter().any(|n| n == name)
    }
}

/// The DER blocks of every `CERTIFICATE` in `pem`.
pub fn pem_blocks(pem: &str) -> Result<Vec<Vec<u8>>, TlsError> {
    let mut out = Vec::new();
    for block in Pem::iter_from_buffer(pem.as_bytes()) {
        let block = block.map_err(|e| TlsError(format!("not PEM: {e}")))?;
        if block.label == "CERTIFICATE" {
            out.push(block.contents);
        }
    }
    if out.is_empty() {
        return Err(TlsError("no PEM CERTIFICATE block".to_string()));
    }
    Ok(out)
}

fn info(der: &[u8]) -> Result<CertInfo, TlsError> {
    let (_, cert) = X509Certificate::from_der(der)
        .map_err(|e| TlsError(format!("not an X.509 certificate: {e}")))?;
    let common_name = cert
        .subject()
        .iter_common_name()
        .next()
        .and_then(|cn| cn.as_str().ok())
        .map(str::to_string);
    let dns_names = match cert.subject_alternative_name() {
        Ok(Some(san)) => san
            .value
            .general_names
            .iter()
            .filter_map(|n| match n {
                GeneralName::DNSName(d) => Some(d.to_string()),
                _ => None,
            })
            .collect(),
        _ => Vec::new(),
    };
    let (server_auth, client_auth) = match cert.extended_key_usage() {
        Ok(Some(eku)) => (eku.value.server_auth, eku.value.client_auth),
        _ => (false, false),
    };
    Ok(CertInfo {
        not_before: cert.validity().not_before.timestamp(),
        not_after: cert.validity().not_after.timestamp(),
        common_name,
        dns_names,
        is_ca: cert.is_ca(),
        server_auth,
        client_auth,
        public_key: cert.public_key().raw.to_vec(),
        subject: cert.subject().as_raw().to_vec(),
        issuer: cert.issuer().as_raw().to_vec(),
    })
}

/// The first (leaf) certificate of a PEM chain.
pub fn parse(pem: &str) -> Result<CertInfo, TlsError> {
    let blocks = pem_blocks(pem)?;
    info(&blocks[0])
}

/// Every certificate of a PEM bundle.
pub fn parse_all(pem: &str) -> Result<Vec<CertInfo>, TlsError> {
    pem_blocks(pem)?.iter().map(|d| info(d)).collect()
}

/// Whether the leaf of `cert_pem` carries a signature of one of the CAs in
/// `ca_pem` (checked cryptographically, not by name only).
pub fn issued_by(cert_pem: &str, ca_pem: &str) -> bool {
    let (Ok(leaf), Ok(cas)) = (pem_blocks(cert_pem), pem_blocks(ca_pem)) else {
        return false;
    };
    let Ok((_, leaf)) = X509Certificate::from_der(&leaf[0]) else {
        return false;
    };
    cas.iter().any(|ca| {
        X509Certificate::from_der(ca).is_ok_and(|(_, ca)| {
            leaf.issuer().as_raw() == ca.subject().as_raw()
                && leaf.verify_signature(Some(ca.public_key())).is_ok()
        })
    })
}

/// Whether `key_pem` is the private key of the certificate `info`.
pub fn key_matches(info: &CertInfo, key_pem: &str) -> bool {
    rcgen::KeyPair::from_pem(key_pem).is_ok_and(|k| {
        use rcgen::PublicKeyData;
        k.subject_public_key_info() == info.public_key
    })
}
