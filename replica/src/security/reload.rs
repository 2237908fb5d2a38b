//! The files a running replica re-reads: its TLS material and the admin
//! token. Kubernetes updates a mounted Secret by swapping a symlink, so
//! changes are found by comparing contents, every [`RELOAD_INTERVAL`]. A
//! new set that does not check out (unparsable, key of another
//! certificate, half-written) is logged and counted, and the old one stays
//! in use; new connections use whatever is current when they start.

use super::material::{Material, MaterialError, PemFiles, TlsPaths};
use crate::metrics::Metrics;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;
use tonic::transport::{Certificate, ClientTlsConfig, Identity};

/// How often the files are compared with what is in use.
pub const RELOAD_INTERVAL: Duration = Duration::from_secs(2);

/// ALPN of the gRPC port (HTTP/2 only) and of the HTTP port.
const GRPC_ALPN: &[&[u8]] = &[b"h2"];
const HTTP_ALPN: &[&[u8]] = &[b"h2", b"http/1.1"];

/// The material in use and the server configurations made from it.
pub struct Active {
    pub material: Material,
    pub grpc: Arc<rustls::ServerConfig>,
    pub http: Arc<rustls::ServerConfig>,
}

/// A replica's TLS: the current material, replaced by [`Tls::reload`].
pub struct Tls {
    paths: TlsPaths,
    client_cert_auth: bool,
    current: RwLock<Arc<Active>>,
    /// Bumped at every successful reload (outgoing channels made under an
    /// older generation are remade).
    generation: AtomicU64,
    /// The last set of files that failed, so it is reported once.
    last_failed: RwLock<Option<PemFiles>>,
}

impl fmt::Debug for Tls {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Tls")
            .field("paths", &self.paths)
            .field("client_cert_auth", &self.client_cert_auth)
            .field("generation", &self.generation())
            .finish()
    }
}

impl Tls {
    /// Loads and checks the files; `client_cert_auth` makes every client
    /// connection present a certificate of the CA.
    pub fn load(paths: TlsPaths, client_cert_auth: bool) -> Result<Tls, MaterialError> {
        let active = activate(&paths, Material::load(&paths)?, client_cert_auth)?;
        Ok(Tls {
            paths,
            client_cert_auth,
            current: RwLock::new(Arc::new(active)),
            generation: AtomicU64::new(1),
            last_failed: RwLock::new(None),
        })
    }

    pub fn current(&self) -> Arc<Active> {
        self.current.read().expect("not poisoned").clone()
    }

    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    pub fn client_cert_auth(&self) -> bool {
        self.client_cert_auth
    }

    /// Re-reads the files: `Ok(true)` if a new set is now in use,
    /// `Ok(false)` if nothing changed (or the same bad set is still there),
    /// `Err` for a new set that does not check out (the old one stays).
    pub fn reload(&self) -> Result<bool, MaterialError> {
        let pem = PemFiles::read(&self.paths)?;
        if pem == self.current().material.pem {
            return Ok(false);
        }
        if self.last_failed.read().expect("not poisoned").as_ref() == Some(&pem) {
            return Ok(false);
        }
        let result = Material::from_pem(&self.paths, pem.clone())
            .and_then(|m| activate(&self.paths, m, self.client_cert_auth));
        match result {
            Ok(active) => {
                *self.current.write().expect("not poisoned") = Arc::new(active);
                *self.last_failed.write().expect("not poisoned") = None;
                self.generation.fetch_add(1, Ordering::AcqRel);
                Ok(true)
            }
            Err(e) => {
                *self.last_failed.write().expect("not poisoned") = Some(pem);
                Err(e)
            }
        }
    }

    /// The client side towards another replica at `host`: present our
    /// certificate, verify theirs against the CA and `host`.
    pub fn client_config(&self, host: &str) -> ClientTlsConfig {
        let active = self.current();
        let pem = &active.material.pem;
        ClientTlsConfig::new()
            .ca_certificate(Certificate::from_pem(&pem.ca))
            .identity(Identity::from_pem(&pem.cert, &pem.key))
            .domain_name(host.trim_start_matches('[').trim_end_matches(']'))
    }
}

fn activate(
    paths: &TlsPaths,
    material: Material,
    client_cert_auth: bool,
) -> Result<Active, MaterialError> {
    let config = |require: bool, alpn: &[&[u8]]| {
        material
            .server_config(require, alpn)
            .map_err(|e| MaterialError {
                key: "tls.ca",
                path: paths.ca.clone(),
                problem: format!("cannot verify client certificates with it ({e})"),
                fix: "give the PEM bundle of the CA that signs the replicas' certificates".into(),
            })
    };
    // The gRPC port asks every connection for a certificate (peers must
    // present one); the HTTP port only serves, for Prometheus and probes.
    let grpc = Arc::new(config(client_cert_auth, GRPC_ALPN)?);
    let http = Arc::new(config(false, HTTP_ALPN)?);
    Ok(Active {
        material,
        grpc,
        http,
    })
}

/// The admin bearer token, read from `admin_token_file` (trimmed).
#[derive(Debug)]
pub struct AdminToken {
    path: PathBuf,
    current: RwLock<String>,
}

impl AdminToken {
    pub fn load(path: &Path) -> Result<AdminToken, String> {
        Ok(AdminToken {
            path: path.to_path_buf(),
            current: RwLock::new(read_token(path)?),
        })
    }

    pub fn current(&self) -> String {
        self.current.read().expect("not poisoned").clone()
    }

    /// Whether `presented` is the token, compared in constant time.
    pub fn matches(&self, presented: &str) -> bool {
        let token = self.current.read().expect("not poisoned");
        constant_time_eq(token.as_bytes(), presented.as_bytes())
    }

    /// Re-reads the file; `Ok(true)` if the token changed.
    pub fn reload(&self) -> Result<bool, String> {
        let new = read_token(&self.path)?;
        let mut current = self.current.write().expect("not poisoned");
        if *current == new {
            return Ok(false);
        }
        *current = new;
        Ok(true)
    }
}

/// The token in `path`: its contents, trimmed, not empty.
pub fn read_token(path: &Path) -> Result<String, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read the admin token file {}: {e}", path.display()))?;
    let token = text.trim();
    if token.is_empty() {
        return Err(format!(
            "the admin token file {} is empty; write a long random token into it",
            path.display()
        ));
    }
    if token.chars().any(|c| c.is_control() || c == ' ') {
        return Err(format!(
            "the admin token in {} contains spaces or control characters; use a token of \
             printable characters, like the output of `openssl rand -hex 32`",
            path.display()
        ));
    }
    Ok(token.to_string())
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Re-reads TLS material and the admin token every [`RELOAD_INTERVAL`]
/// until the task is dropped; counts `raft_tls_reloads_total{result}`.
pub fn spawn_reloader(
    tls: Option<Arc<Tls>>,
    token: Option<Arc<AdminToken>>,
    metrics: Metrics,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(RELOAD_INTERVAL);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tick.tick().await;
        // A token file that stays broken is reported once.
        let mut token_error: Option<String> = None;
        loop {
            tick.tick().await;
            if let Some(tls) = &tls {
                let tls = tls.clone();
                let result = tokio::task::spawn_blocking(move || {
                    let r = tls.reload();
                    (r, tls.current().material.names.serial.clone())
                })
                .await;
                match result {
                    Ok((Ok(true), serial)) => {
                        metrics.tls_reloads.with_label_values(&["ok"]).inc();
                        tracing::info!(%serial, "TLS certificate, key and CA reloaded; new connections use them");
                    }
                    Ok((Ok(false), _)) | Err(_) => {}
                    Ok((Err(e), _)) => {
                        metrics.tls_reloads.with_label_values(&["failed"]).inc();
                        tracing::error!(
                            "TLS files changed but cannot be used, keeping the old ones: {e}"
                        );
                    }
                }
            }
            if let Some(token) = &token {
                match token.reload() {
                    Ok(changed) => {
                        token_error = None;
                        if changed {
                            metrics.tls_reloads.with_label_values(&["ok"]).inc();
                            tracing::info!("admin token reloaded");
                        }
                    }
                    Err(e) if token_error.as_ref() != Some(&e) => {
                        metrics.tls_reloads.with_label_values(&["failed"]).inc();
                        tracing::error!("{e}; keeping the old admin token");
                        token_error = Some(e);
                    }
                    Err(_) => {}
                }
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::security::issue::{Authority, Usage};

    fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
        let path = dir.join(name);
        std::fs::write(&path, text).unwrap();
        path
    }

    #[test]
    fn a_changed_certificate_is_used_and_a_bad_one_is_refused_once() {
        let dir = tempfile::tempdir().unwrap();
        let ca = Authority::new("test CA").unwrap();
        let names = ["127.0.0.1".to_string(), "alpha".to_string()];
        let first = ca.issue("alpha", &names, Usage::Replica).unwrap();
        let paths = TlsPaths {
            cert: write(dir.path(), "alpha.crt", &first.cert_pem),
            key: write(dir.path(), "alpha.key", &first.key_pem),
            ca: write(dir.path(), "ca.crt", ca.cert_pem()),
        };
        let tls = Tls::load(paths.clone(), false).unwrap();
        assert_eq!(tls.current().material.names.serial, first.serial);
        assert_eq!(tls.reload(), Ok(false), "nothing changed");

        let second = ca.issue("alpha", &names, Usage::Replica).unwrap();
        write(dir.path(), "alpha.crt", &second.cert_pem);
        write(dir.path(), "alpha.key", &second.key_pem);
        assert_eq!(tls.reload(), Ok(true));
        assert_eq!(tls.current().material.names.serial, second.serial);
        assert_eq!(tls.generation(), 2);

        // A certificate without its key: refused, the second one stays.
        let third = ca.issue("alpha", &names, Usage::Replica).unwrap();
        write(dir.path(), "alpha.crt", &third.cert_pem);
        let err = tls.reload().unwrap_err();
        assert_eq!(err.key, "tls.key");
        assert!(err.problem.contains("does not belong"), "{err}");
        assert_eq!(tls.current().material.names.serial, second.serial);
        assert_eq!(tls.reload(), Ok(false), "the same bad set is reported once");
        write(dir.path(), "alpha.key", &third.key_pem);
        assert_eq!(tls.reload(), Ok(true), "completed, it is taken");
        assert_eq!(tls.current().material.names.serial, third.serial);
    }

    #[test]
    fn certificate_names_are_read() {
        let ca = Authority::new("test CA").unwrap();
        let issued = ca
            .issue(
                "raft-0",
                &["10.0.0.7".into(), "raft-0.raft-peers.ns.svc".into()],
                Usage::Replica,
            )
            .unwrap();
        use rustls::pki_types::pem::PemObject;
        let der =
            rustls::pki_types::CertificateDer::from_pem_slice(issued.cert_pem.as_bytes()).unwrap();
        let names = crate::security::CertNames::of(&der).unwrap();
        assert_eq!(names.common_name.as_deref(), Some("raft-0"));
        assert!(names.has_san("10.0.0.7") && names.has_san("RAFT-0.raft-peers.ns.svc"));
        assert!(!names.has_san("10.0.0.8") && !names.has_san("raft-0"));
        assert!(
            names.has_any_name(&["raft-0".into()]),
            "the CN counts for roles"
        );
        assert_eq!(
            names.to_string(),
            "CN=raft-0, DNS:raft-0.raft-peers.ns.svc, IP:10.0.0.7"
        );
        assert_eq!(names.serial, issued.serial);
    }
}
