//! The names a certificate carries: the subject's common name and the DNS
//! and IP subject alternative names. Roles are decided on these names
//! (a peer must be named like a member; an admin like one of
//! `admin_names`); the signature was already verified by rustls.

use rustls::pki_types::CertificateDer;
use std::fmt;
use std::net::IpAddr;
use x509_parser::extensions::GeneralName;
use x509_parser::prelude::{FromDer, X509Certificate};

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CertNames {
    pub common_name: Option<String>,
    pub dns: Vec<String>,
    pub ips: Vec<IpAddr>,
    /// The serial number in hex, as `openssl x509 -serial` prints it.
    pub serial: String,
}

impl CertNames {
    /// Parses a DER certificate.
    pub fn of(der: &CertificateDer<'_>) -> Result<CertNames, String> {
        let (_, cert) = X509Certificate::from_der(der.as_ref()).map_err(|e| e.to_string())?;
        let common_name = cert
            .subject()
            .iter_common_name()
            .next()
            .and_then(|cn| cn.as_str().ok())
            .map(str::to_string);
        let mut names = CertNames {
            common_name,
            serial: cert
                .tbs_certificate
                .raw_serial()
                .iter()
                .map(|b| format!("{b:02X}"))
                .collect(),
            ..CertNames::default()
        };
        if let Ok(Some(san)) = cert.subject_alternative_name() {
            for name in &san.value.general_names {
                match name {
                    GeneralName::DNSName(d) => names.dns.push(d.to_ascii_lowercase()),
                    GeneralName::IPAddress(bytes) => {
                        if let Some(ip) = ip_from_bytes(bytes) {
                            names.ips.push(ip);
                        }
                    }
                    _ => {}
                }
            }
        }
        Ok(names)
    }

    /// Whether the certificate names `host` (a DNS name or an IP address,
    /// compared exactly; DNS names case-insensitively) among its SANs.
    pub fn has_san(&self, host: &str) -> bool {
        let host = host.trim_start_matches('[').trim_end_matches(']');
        match host.parse::<IpAddr>() {
            Ok(ip) => self.ips.contains(&ip),
            Err(_) => {
                let host = host.trim_end_matches('.');
                self.dns
                    .iter()
                    .any(|d| d.trim_end_matches('.').eq_ignore_ascii_case(host))
            }
        }
    }

    /// Whether the subject CN or a DNS SAN equals one of `names`.
    pub fn has_any_name(&self, names: &[String]) -> bool {
        names.iter().any(|n| {
            self.common_name.as_deref() == Some(n.as_str())
                || self.dns.iter().any(|d| d.eq_ignore_ascii_case(n))
        })
    }
}

impl fmt::Display for CertNames {
    /// `CN=x-0, DNS:a, DNS:b, IP:10.0.0.1`, or `no names`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut parts: Vec<String> = Vec::new();
        if let Some(cn) = &self.common_name {
            parts.push(format!("CN={cn}"));
        }
        parts.extend(self.dns.iter().map(|d| format!("DNS:{d}")));
        parts.extend(self.ips.iter().map(|ip| format!("IP:{ip}")));
        if parts.is_empty() {
            f.write_str("no names")
        } else {
            f.write_str(&parts.join(", "))
        }
    }
}

fn ip_from_bytes(bytes: &[u8]) -> Option<IpAddr> {
    match bytes.len() {
        4 => <[u8; 4]>::try_from(bytes).ok().map(IpAddr::from),
        16 => <[u8; 16]>::try_from(bytes).ok().map(IpAddr::from),
        _ => None,
    }
}
