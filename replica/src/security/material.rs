//! A replica's TLS material: its certificate chain, private key and CA
//! bundle, read from PEM files and checked (parsable, key belongs to the
//! certificate), and the rustls configurations built from them.
//!
//! Material is immutable: a reload builds a new one and swaps it in
//! ([`super::reload`]), so a connection always sees one consistent set.

use super::names::CertNames;
use rustls::RootCertStore;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;
use rustls::sign::CertifiedKey;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use thiserror::Error;

/// Where the PEM files are.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TlsPaths {
    pub cert: PathBuf,
    pub key: PathBuf,
    pub ca: PathBuf,
}

/// What is wrong with one of the files, said for a person.
#[derive(Clone, Debug, Error, PartialEq, Eq)]
#[error("{key} = {}: {problem}; {fix}", .path.display())]
pub struct MaterialError {
    /// The configuration key of the file (`tls.cert`, `tls.key`, `tls.ca`).
    pub key: &'static str,
    pub path: PathBuf,
    pub problem: String,
    pub fix: String,
}

impl MaterialError {
    fn new(key: &'static str, path: &Path, problem: impl Into<String>, fix: &str) -> Self {
        MaterialError {
            key,
            path: path.to_path_buf(),
            problem: problem.into(),
            fix: fix.to_string(),
        }
    }
}

/// The bytes of the three files as read, to tell whether they changed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PemFiles {
    pub cert: Vec<u8>,
    pub key: Vec<u8>,
    pub ca: Vec<u8>,
}

impl PemFiles {
    pub fn read(paths: &TlsPaths) -> Result<PemFiles, MaterialError> {
        let read = |key: &'static str, path: &Path| {
            std::fs::read(path).map_err(|e| {
                MaterialError::new(
                    key,
                    path,
                    format!("cannot be read ({e})"),
                    "give the path of a readable PEM file",
                )
            })
        };
        Ok(PemFiles {
            cert: read("tls.cert", &paths.cert)?,
            key: read("tls.key", &paths.key)?,
            ca: read("tls.ca", &paths.ca)?,
        })
    }
}

/// Checked material, ready to serve and to dial with.
#[derive(Clone, Debug)]
pub struct Material {
    pub pem: PemFiles,
    pub chain: Vec<CertificateDer<'static>>,
    pub key: Arc<CertifiedKey>,
    pub roots: Arc<RootCertStore>,
    /// The names of our own certificate (leaf of `chain`).
    pub names: CertNames,
}

/// The one crypto provider of the replica: ring.
pub fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

impl Material {
    /// Reads and checks the files.
    pub fn load(paths: &TlsPaths) -> Result<Material, MaterialError> {
        Material::from_pem(paths, PemFiles::read(paths)?)
    }

    /// Checks files already read; `paths` only for messages.
    pub fn from_pem(paths: &TlsPaths, pem: PemFiles) -> Result<Material, MaterialError> {
        let chain = certificates("tls.cert", &paths.cert, &pem.cert)?;
        let key = PrivateKeyDer::from_pem_slice(&pem.key).map_err(|e| {
            MaterialError::new(
                "tls.key",
                &paths.key,
                format!("holds no usable private key ({e})"),
                "give the PEM private key (PKCS#8, PKCS#1 or SEC1) of tls.cert",
            )
        })?;
        let key = CertifiedKey::from_der(chain.clone(), key, &provider()).map_err(|e| {
            MaterialError::new(
                "tls.key",
                &paths.key,
                format!("does not belong to the certificate in tls.cert ({e})"),
                "give the key the certificate was issued for (a cert and key of the same pair)",
            )
        })?;
        let mut roots = RootCertStore::empty();
        for ca in certificates("tls.ca", &paths.ca, &pem.ca)? {
            roots.add(ca).map_err(|e| {
                MaterialError::new(
                    "tls.ca",
                    &paths.ca,
                    format!("holds a certificate that is not a usable CA ({e})"),
                    "give the PEM bundle of the CA certificates that sign the replicas' certificates",
                )
            })?;
        }
        let names = CertNames::of(&chain[0]).map_err(|e| {
            MaterialError::new(
                "tls.cert",
                &paths.cert,
                format!("cannot be parsed as X.509 ({e})"),
                "give a PEM certificate chain, this replica's certificate first",
            )
        })?;
        Ok(Material {
            pem,
            chain,
            key: Arc::new(key),
            roots: Arc::new(roots),
            names,
        })
    }

    /// The server side of a listener: our certificate, and client
    /// certificates verified against the CA, required or optional.
    pub fn server_config(
        &self,
        require_client_cert: bool,
        alpn: &[&[u8]],
    ) -> Result<rustls::ServerConfig, rustls::Error> {
        let provider = provider();
        let verifier =
            WebPkiClientVerifier::builder_with_provider(self.roots.clone(), provider.clone());
        let verifier = if require_client_cert {
            verifier
        } else {
            verifier.allow_unauthenticated()
        }
        .build()
        .map_err(|e| rustls::Error::General(e.to_string()))?;
        let mut config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()?
            .with_client_cert_verifier(verifier)
            .with_cert_resolver(Arc::new(rustls::sign::SingleCertAndKey::from(
                self.key.clone(),
            )));
        config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
        Ok(config)
    }
}

/// The certificates of a PEM file, at least one.
fn certificates(
    key: &'static str,
    path: &Path,
    pem: &[u8],
) -> Result<Vec<CertificateDer<'static>>, MaterialError> {
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<_, _>>()
        .map_err(|e| {
            MaterialError::new(
                key,
                path,
                format!("is not a PEM certificate file ({e})"),
                "give PEM certificates (-----BEGIN CERTIFICATE-----)",
            )
        })?;
    if certs.is_empty() {
        return Err(MaterialError::new(
            key,
            path,
            "holds no certificate",
            "give PEM certificates (-----BEGIN CERTIFICATE-----)",
        ));
    }
    Ok(certs)
}
