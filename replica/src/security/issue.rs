//! Making a CA and certificates (rcgen): what `raft local --tls` and the
//! tests use to run TLS clusters without an external PKI. Production
//! clusters get theirs from the operator, cert-manager or the user.

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, SanType, SerialNumber,
};
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use time::{Duration, OffsetDateTime};

/// How a certificate may be used.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Usage {
    /// A replica: server of its gRPC port and client towards peers.
    Replica,
    /// A client only (an admin, the operator).
    Client,
}

/// A certificate and its private key, PEM.
#[derive(Clone, Debug)]
pub struct Issued {
    pub cert_pem: String,
    pub key_pem: String,
    /// The serial number, hex, as [`super::CertNames::serial`] shows it.
    pub serial: String,
}

/// A self-signed CA that issues certificates.
pub struct Authority {
    issuer: Issuer<'static, KeyPair>,
    cert_pem: String,
    serials: AtomicU64,
}

/// Why a certificate could not be made.
pub type IssueError = rcgen::Error;

impl Authority {
    /// A new CA named `common_name`, valid for ten years.
    pub fn new(common_name: &str) -> Result<Authority, IssueError> {
        let mut params = CertificateParams::default();
        params
            .distinguished_name
            .push(DnType::CommonName, common_name);
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let now = OffsetDateTime::now_utc();
        params.not_before = now - Duration::hours(1);
        params.not_after = now + Duration::days(3650);
        let key = KeyPair::generate()?;
        let cert = params.self_signed(&key)?;
        // Serials: random start, then counting, so every certificate of
        // this CA has its own.
        let start = crate::random::nonzero_u64() >> 8;
        Ok(Authority {
            issuer: Issuer::new(params, key),
            cert_pem: cert.pem(),
            serials: AtomicU64::new(start),
        })
    }

    /// The CA certificate, PEM (what `tls.ca` points at).
    pub fn cert_pem(&self) -> &str {
        &self.cert_pem
    }

    /// A certificate with subject CN `common_name` and SANs `names` (each an
    /// IP address or a DNS name), valid for a year.
    pub fn issue(
        &self,
        common_name: &str,
        names: &[String],
        usage: Usage,
    ) -> Result<Issued, IssueError> {
        let mut params = CertificateParams::default();
        params
            .distinguished_name
            .push(DnType::CommonName, common_name);
        params.subject_alt_names = names
            .iter()
            .map(|n| match n.parse::<IpAddr>() {
                Ok(ip) => Ok(SanType::IpAddress(ip)),
                Err(_) => n.clone().try_into().map(SanType::DnsName),
            })
            .collect::<Result<_, _>>()?;
        params.key_usages = vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyEncipherment,
        ];
        params.extended_key_usages = match usage {
            Usage::Replica => vec![
                ExtendedKeyUsagePurpose::ServerAuth,
                ExtendedKeyUsagePurpose::ClientAuth,
            ],
            Usage::Client => vec![ExtendedKeyUsagePurpose::ClientAuth],
        };
        let serial = self.serials.fetch_add(1, Ordering::Relaxed);
        params.serial_number = Some(SerialNumber::from(serial));
        let now = OffsetDateTime::now_utc();
        params.not_before = now - Duration::hours(1);
        params.not_after = now + Duration::days(365);
        let key = KeyPair::generate()?;
        let cert = params.signed_by(&key, &self.issuer)?;
        let serial = super::CertNames::of(cert.der())
            .map(|n| n.serial)
            .unwrap_or_default();
        Ok(Issued {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
            serial,
        })
    }
}
