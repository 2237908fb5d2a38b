//! A cluster of `raft serve` processes for one test.
//!
//! Replica `i` (1-based, named alpha, bravo, ...) listens on
//! `127.0.<subnet>.<i>`, gRPC on
//! [`GRPC_PORT`](crate::config::GRPC_PORT), HTTP on
//! [`HTTP_PORT`](crate::config::HTTP_PORT). The
//! cluster bootstraps with `initial_cluster_state: new`; once every group
//! has a leader the harness switches every configuration to `existing`, as
//! the operator and `raft local` do, so a replica restarted on an empty
//! data directory waits to be added back instead of founding a second
//! cluster.
//!
//! Dropping the cluster SIGKILLs every replica, then (on a failure) keeps
//! the test directory and prints the replicas' logs.

use crate::binary::raft_binary;
use crate::config::{PeerEntry, ReplicaConfig, name_of};
use crate::error::HarnessError;
use crate::pki::{ADMIN_NAME, CertFiles, Pki};
use crate::replica::Replica;
use crate::subnet::Subnet;
use crate::test_dir::TestDir;
use kuberaft::client::{Client, ClientOptions};
use kuberaft::security::ClientSecurity;
use kuberaft::security::issue::Usage;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::ExitStatus;
use std::time::Duration;

/// What a test cluster looks like.
#[derive(Clone, Debug)]
pub struct ClusterOptions {
    /// Voters the cluster bootstraps with (ids 1 to `replicas`).
    pub replicas: u64,
    pub groups: u32,
    /// The heartbeat interval (the replica's default is 100 ms).
    pub tick: Duration,
    /// The election timeout in ticks (default 10).
    pub election_ticks: u32,
    pub snapshot_threshold: Option<u64>,
    /// 0-5 (3: info).
    pub log_level: u8,
    pub cluster_id: String,
    /// Run with TLS: a CA of the test, a certificate per replica (its IP
    /// and name), and the harness talking as an admin client.
    pub tls: Option<TlsOptions>,
    /// Replicas read this admin token from `admin_token_file` (the
    /// harness presents it too).
    pub admin_token: Option<String>,
}

/// How a TLS test cluster is set up.
#[derive(Clone, Debug, Default)]
pub struct TlsOptions {
    /// `tls.client_cert_auth`: every client must present a certificate.
    pub client_cert_auth: bool,
}

impl Default for ClusterOptions {
    /// The replica's own defaults, three voters, one group.
    fn default() -> Self {
        ClusterOptions {
            replicas: 3,
            groups: 1,
            tick: Duration::from_millis(100),
            election_ticks: 10,
            snapshot_threshold: None,
            log_level: 3,
            cluster_id: "e2e".into(),
            tls: None,
            admin_token: None,
        }
    }
}

impl ClusterOptions {
    /// The base election timeout of this cluster.
    pub fn election_timeout(&self) -> Duration {
        self.tick * self.election_ticks
    }
}

/// What a restarted replica finds in its data directory.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DataDir {
    /// What it had.
    Keep,
    /// Nothing: a lost (or new) volume.
    Empty,
}

pub struct Cluster {
    /// By node id. Declared first: dropped (killed) before the directory
    /// reports their logs.
    replicas: BTreeMap<u64, Replica>,
    options: ClusterOptions,
    binary: PathBuf,
    subnet: Subnet,
    /// With TLS: the test's CA and the harness's admin certificate.
    pki: Option<(Pki, CertFiles)>,
    dir: TestDir,
}

impl Cluster {
    /// Starts `options.replicas` replicas and waits until every group has a
    /// leader. `test` names the test directory.
    pub async fn start(test: &str, options: ClusterOptions) -> Result<Cluster, HarnessError> {
        let mut cluster = Cluster::create(test, options)?;
        let ids: Vec<u64> = (1..=cluster.options.replicas).collect();
        // Every founding member lists every other one.
        let founders: Vec<PeerEntry> = ids.iter().map(|&id| cluster.peer_entry(id)).collect();
        for &id in &ids {
            let config = cluster.config_with_peers(id, true, founders.clone());
            cluster.define_with(id, config);
        }
        for &id in &ids {
            cluster.replica_mut(id)?.start()?;
        }
        cluster.wait_all_leaders().await?;
        for r in cluster.replicas.values_mut() {
            r.config.new_cluster = false;
            r.config.write(&r.config_path())?;
        }
        Ok(cluster)
    }

    /// A cluster with no replica yet (for tests that define their own).
    pub fn create(test: &str, options: ClusterOptions) -> Result<Cluster, HarnessError> {
        let binary = raft_binary()?;
        let subnet = Subnet::claim()?;
        let dir = TestDir::new(test)?;
        let pki = match &options.tls {
            Some(_) => {
                let pki = Pki::new(&dir.path().join("pki"), &format!("{test} CA"))?;
                let admin = pki.issue(ADMIN_NAME, ADMIN_NAME, &[], Usage::Client)?;
                Some((pki, admin))
            }
            None => None,
        };
        if let Some(token) = &options.admin_token {
            crate::config::write_atomically(&dir.path().join("admin-token"), token.as_bytes())?;
        }
        Ok(Cluster {
            replicas: BTreeMap::new(),
            options,
            binary,
            subnet,
            pki,
            dir,
        })
    }

    /// The test's CA, with TLS.
    pub fn pki(&self) -> Option<&Pki> {
        self.pki.as_ref().map(|(pki, _)| pki)
    }

    /// What the harness presents: the admin certificate (with TLS) and the
    /// admin token (when configured).
    pub fn security(&self) -> ClientSecurity {
        let mut security = match &self.pki {
            Some((pki, admin)) => pki
                .client(Some(admin))
                .expect("the harness's own certificate"),
            None => ClientSecurity::default(),
        };
        security.token = self.options.admin_token.clone();
        security
    }

    pub fn options(&self) -> &ClusterOptions {
        &self.options
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    pub fn subnet(&self) -> &Subnet {
        &self.subnet
    }

    pub fn binary(&self) -> &Path {
        &self.binary
    }

    /// The address of replica `id` (whether defined or not).
    pub fn ip_of(&self, id: u64) -> std::net::Ipv4Addr {
        self.subnet
            .ip(u8::try_from(id).expect("replica ids of a test cluster fit in 1..=253"))
    }

    /// Every replica defined so far, running or not.
    pub fn ids(&self) -> Vec<u64> {
        self.replicas.keys().copied().collect()
    }

    /// Replicas whose process is alive and not paused.
    pub fn live_ids(&mut self) -> Vec<u64> {
        self.replicas
            .values_mut()
            .filter_map(|r| (r.is_running() && !r.is_paused()).then_some(r.id))
            .collect()
    }

    pub fn replica(&self, id: u64) -> Result<&Replica, HarnessError> {
        self.replicas
            .get(&id)
            .ok_or(HarnessError::NoSuchReplica(id))
    }

    pub fn replica_mut(&mut self, id: u64) -> Result<&mut Replica, HarnessError> {
        self.replicas
            .get_mut(&id)
            .ok_or(HarnessError::NoSuchReplica(id))
    }

    /// The `peers` entries of the replicas defined so far.
    pub fn peers(&self) -> Vec<PeerEntry> {
        self.replicas
            .values()
            .map(|r| PeerEntry {
                id: r.id,
                name: r.name.clone(),
                ip: r.ip,
            })
            .collect()
    }

    /// The `peers` entry of replica `id`.
    pub fn peer_entry(&self, id: u64) -> PeerEntry {
        PeerEntry {
            id,
            name: name_of(id),
            ip: self.ip_of(id),
        }
    }

    /// The configuration replica `id` gets: the cluster's settings, the
    /// members defined so far plus itself.
    pub fn config_for(&self, id: u64, new_cluster: bool) -> ReplicaConfig {
        let mut peers = self.peers();
        if !peers.iter().any(|p| p.id == id) {
            peers.push(self.peer_entry(id));
        }
        self.config_with_peers(id, new_cluster, peers)
    }

    /// The configuration of replica `id` with the `peers` given.
    pub fn config_with_peers(
        &self,
        id: u64,
        new_cluster: bool,
        peers: Vec<PeerEntry>,
    ) -> ReplicaConfig {
        let dir = self.dir.path().join(name_of(id));
        let mut extra = serde_json::Map::new();
        if let (Some((pki, _)), Some(tls)) = (&self.pki, &self.options.tls) {
            let name = name_of(id);
            let cert = pki.ca_path().with_file_name(format!("{name}.crt"));
            let key = cert.with_extension("key");
            if !cert.is_file() {
                pki.replica(&name, self.ip_of(id))
                    .expect("a certificate for a test replica");
            }
            extra.insert(
                "tls".into(),
                serde_json::json!({
                    "cert": cert,
                    "key": key,
                    "ca": pki.ca_path(),
                    "client_cert_auth": tls.client_cert_auth,
                }),
            );
        }
        if self.options.admin_token.is_some() {
            extra.insert(
                "admin_token_file".into(),
                serde_json::json!(self.dir.path().join("admin-token")),
            );
        }
        ReplicaConfig {
            cluster_id: self.options.cluster_id.clone(),
            name: name_of(id),
            new_cluster,
            data_dir: dir.join("data"),
            groups: self.options.groups,
            tick: self.options.tick,
            election_ticks: self.options.election_ticks,
            snapshot_threshold: self.options.snapshot_threshold,
            log_level: self.options.log_level,
            peers,
            extra,
        }
    }

    /// Defines replica `id` (not started) with [`config_for`](Self::config_for).
    /// An earlier definition of `id` is replaced, its process killed.
    pub fn define(&mut self, id: u64, new_cluster: bool) -> &mut Replica {
        let config = self.config_for(id, new_cluster);
        self.define_with(id, config)
    }

    /// Defines replica `id` with the configuration given (replacing, and
    /// killing, an earlier definition).
    pub fn define_with(&mut self, id: u64, config: ReplicaConfig) -> &mut Replica {
        let mut replica = Replica::new(
            id,
            config.name.clone(),
            self.ip_of(id),
            self.dir.path().join(&config.name),
            config,
            self.binary.clone(),
        );
        replica.security = self.security();
        self.replicas.insert(id, replica);
        self.replicas.get_mut(&id).expect("just inserted")
    }

    /// A replica that joins the running cluster: `initial_cluster_state:
    /// existing`, an empty data directory, every current member as a peer.
    /// Started, not yet added to the membership.
    pub fn start_joining(&mut self, id: u64) -> Result<&mut Replica, HarnessError> {
        let replica = self.define(id, false);
        replica.wipe_data()?;
        replica.start()?;
        Ok(replica)
    }

    pub fn start_replica(&mut self, id: u64) -> Result<(), HarnessError> {
        self.replica_mut(id)?.start()
    }

    /// SIGKILL.
    pub fn kill(&mut self, id: u64) -> Result<(), HarnessError> {
        self.replica_mut(id)?.kill();
        Ok(())
    }

    /// SIGTERM and wait for the exit.
    pub async fn stop(&mut self, id: u64) -> Result<ExitStatus, HarnessError> {
        self.replica_mut(id)?.stop().await
    }

    pub fn pause(&mut self, id: u64) -> Result<(), HarnessError> {
        self.replica_mut(id)?.pause()
    }

    pub fn resume(&mut self, id: u64) -> Result<(), HarnessError> {
        self.replica_mut(id)?.resume()
    }

    /// Stops replica `id` if it runs (SIGTERM), empties its data directory
    /// if asked, and starts it again.
    pub async fn restart(&mut self, id: u64, data: DataDir) -> Result<(), HarnessError> {
        let replica = self.replica_mut(id)?;
        if replica.is_running() {
            replica.stop().await?;
        }
        if data == DataDir::Empty {
            replica.wipe_data()?;
        }
        replica.start()
    }

    /// The gRPC endpoints of every defined replica.
    pub fn endpoints(&self) -> Vec<String> {
        self.replicas.values().map(Replica::endpoint).collect()
    }

    /// The endpoints of the replicas given.
    pub fn endpoints_of(&self, ids: &[u64]) -> Vec<String> {
        ids.iter()
            .filter_map(|id| self.replicas.get(id))
            .map(Replica::endpoint)
            .collect()
    }

    /// A client of every defined replica with `timeout` per request.
    pub fn client_with_timeout(&self, timeout: Duration) -> Client {
        client_with(&self.endpoints(), timeout, self.security())
    }

    /// A client of every defined replica (20 s per request, retries
    /// included: long enough to ride out an election on a loaded machine).
    pub fn client(&self) -> Client {
        self.client_with_timeout(Duration::from_secs(20))
    }

    /// A client that only talks to the replicas given.
    pub fn client_of(&self, ids: &[u64]) -> Client {
        client_with(
            &self.endpoints_of(ids),
            Duration::from_secs(20),
            self.security(),
        )
    }
}

/// A client of `endpoints` with a request `timeout`.
pub fn client(endpoints: &[String], timeout: Duration) -> Client {
    client_with(endpoints, timeout, ClientSecurity::default())
}

/// A client of `endpoints` with a request `timeout`, presenting `security`.
pub fn client_with(endpoints: &[String], timeout: Duration, security: ClientSecurity) -> Client {
    Client::new(
        endpoints,
        ClientOptions {
            timeout,
            attempt_timeout: timeout.min(Duration::from_secs(3)),
            local_ip: None,
            security,
        },
    )
    .expect("the harness's own endpoints are valid")
}
