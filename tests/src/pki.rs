//! Certificates for TLS test clusters: a CA made for the test and
//! certificates it issues, written as PEM files under the test directory
//! (replaced atomically, as Kubernetes swaps a mounted Secret).

use crate::config::write_atomically;
use crate::error::HarnessError;
use kuberaft::security::ClientSecurity;
use kuberaft::security::issue::{Authority, Usage};
use std::path::{Path, PathBuf};

/// The CN of the harness's admin client certificate (a default admin name).
pub const ADMIN_NAME: &str = "admin";

/// Where one issued certificate was written.
#[derive(Clone, Debug)]
pub struct CertFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
    /// Hex, as the replica reports it.
    pub serial: String,
}

pub struct Pki {
    dir: PathBuf,
    ca: Authority,
}

impl Pki {
    /// A new CA named `name`; its certificate is written to `<dir>/ca.crt`.
    pub fn new(dir: &Path, name: &str) -> Result<Pki, HarnessError> {
        std::fs::create_dir_all(dir)
            .map_err(|e| HarnessError::io(format!("cannot create {}", dir.display()), e))?;
        let ca = Authority::new(name)
            .map_err(|e| HarnessError::io("cannot make a CA", std::io::Error::other(e)))?;
        let pki = Pki {
            dir: dir.to_path_buf(),
            ca,
        };
        write_atomically(&pki.ca_path(), pki.ca.cert_pem().as_bytes())?;
        Ok(pki)
    }

    pub fn ca_path(&self) -> PathBuf {
        self.dir.join("ca.crt")
    }

    pub fn ca_pem(&self) -> &str {
        self.ca.cert_pem()
    }

    /// Issues a certificate (CN `common_name`, SANs `names`) into
    /// `<dir>/<stem>.crt` and `.key`, replacing what was there.
    pub fn issue(
        &self,
        stem: &str,
        common_name: &str,
        names: &[String],
        usage: Usage,
    ) -> Result<CertFiles, HarnessError> {
        let issued = self.ca.issue(common_name, names, usage).map_err(|e| {
            HarnessError::io("cannot issue a certificate", std::io::Error::other(e))
        })?;
        let files = CertFiles {
            cert: self.dir.join(format!("{stem}.crt")),
            key: self.dir.join(format!("{stem}.key")),
            serial: issued.serial,
        };
        // Key first: a reader that sees the new certificate finds its key.
        write_atomically(&files.key, issued.key_pem.as_bytes())?;
        write_atomically(&files.cert, issued.cert_pem.as_bytes())?;
        Ok(files)
    }

    /// The certificate of replica `name` at `ip`: SANs its IP and its name.
    pub fn replica(&self, name: &str, ip: std::net::Ipv4Addr) -> Result<CertFiles, HarnessError> {
        self.issue(
            name,
            name,
            &[ip.to_string(), name.to_string()],
            Usage::Replica,
        )
    }

    /// What a client presents: the CA, and the certificate `files` if any.
    pub fn client(&self, files: Option<&CertFiles>) -> Result<ClientSecurity, HarnessError> {
        ClientSecurity::from_files(
            Some(&self.ca_path()),
            files.map(|f| f.cert.as_path()),
            files.map(|f| f.key.as_path()),
            None,
        )
        .map_err(|e| {
            HarnessError::io(
                "cannot read the test certificates",
                std::io::Error::other(e),
            )
        })
    }
}
