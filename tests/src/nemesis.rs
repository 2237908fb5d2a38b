//! The nemesis: carries out the [`schedule`](crate::schedule) on a running
//! [`Cluster`], one fault at a time, heals it, and measures how long the
//! cluster takes to have a leader in every group and acknowledge a write
//! again (figures for the report, never assertions: the waits are only
//! bounded by [`RECOVERY_TIMEOUTS`] election timeouts, so that a cluster that
//! does not recover at all fails the run).
//!
//! Every action is logged with its time since the history began, with the
//! concrete replicas the schedule's roles resolved to, in the run's
//! `schedule.log`.
//!
//! A torn WAL tail destroys data that may have been fsynced and
//! acknowledged (a real torn write only loses what was never synced). Raft
//! tolerates that only while the other replicas hold everything committed,
//! so the nemesis tears a replica only after it is down and every other
//! voter has caught up with a leader elected without it, and lets nothing
//! else fail until the torn replica has caught up again.

use crate::cluster::{Cluster, DataDir, client};
use crate::config::name_of;
use crate::netns::Firewall;
use crate::schedule::{Fault, Step, Target, permutation};
use crate::wait::{group, until};
use kuberaft::client::Client;
use kuberaft_proto::admin::admin_client::AdminClient;
use kuberaft_proto::admin::{self as admin_pb, Role};
use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;
use tokio::time::Instant;

/// How many election timeouts a recovery may take before the run fails
/// (a bound on a hang, not a timing assertion).
pub const RECOVERY_TIMEOUTS: u32 = 30;

/// How long the cluster took to recover after one fault was healed.
#[derive(Clone, Debug)]
pub struct Recovery {
    pub kind: &'static str,
    /// From the heal to a leader of every group.
    pub to_leader: Duration,
    /// From the heal to an acknowledged write.
    pub to_write: Duration,
}

pub struct Nemesis {
    firewall: Option<Firewall>,
    /// When the history began: log times are relative to it.
    epoch: Instant,
    log: std::fs::File,
    log_path: PathBuf,
    pub recoveries: Vec<Recovery>,
    /// Faults injected, by kind.
    pub injected: BTreeMap<&'static str, usize>,
    cycle: usize,
}

impl Nemesis {
    /// A nemesis logging to `<dir>/schedule.log`; `firewall` is `None`
    /// where links cannot be cut.
    pub fn new(dir: &Path, firewall: Option<Firewall>, epoch: Instant) -> Result<Nemesis, String> {
        let log_path = dir.join("schedule.log");
        let log = std::fs::File::create(&log_path)
            .map_err(|e| format!("cannot create {}: {e}", log_path.display()))?;
        Ok(Nemesis {
            firewall,
            epoch,
            log,
            log_path,
            recoveries: Vec::new(),
            injected: BTreeMap::new(),
            cycle: 0,
        })
    }

    pub fn log_path(&self) -> &Path {
        &self.log_path
    }

    /// Appends a line to the schedule log.
    pub fn note(&mut self, what: impl AsRef<str>) {
        let t = self.epoch.elapsed().as_secs_f64();
        let line = format!("[{t:9.3}s] {}", what.as_ref());
        let _ = writeln!(self.log, "{line}");
        let _ = self.log.flush();
    }

    fn limit(cluster: &Cluster) -> Duration {
        cluster.options().election_timeout() * RECOVERY_TIMEOUTS
    }

    /// The leader of group 0 and the voters of its configuration.
    async fn leader_and_voters(cluster: &Cluster) -> Result<(u64, Vec<u64>), String> {
        let leader = cluster
            .wait_leader_within(0, Self::limit(cluster))
            .await
            .map_err(|e| e.to_string())?;
        let status = cluster.status(leader).await.map_err(|e| e.to_string())?;
        let mut voters = group(&status, 0)
            .map(|g| g.voters.clone())
            .unwrap_or_default();
        voters.sort_unstable();
        Ok((leader, voters))
    }

    /// Carries out one step: the fault, its hold, the heal, the recovery.
    pub async fn run(&mut self, cluster: &mut Cluster, step: &Step) -> Result<(), String> {
        self.cycle += 1;
        let (leader, voters) = Self::leader_and_voters(cluster).await?;
        let others: Vec<u64> = voters.iter().copied().filter(|&v| v != leader).collect();
        let resolve = |t: Target| match t {
            Target::Leader => leader,
            Target::Other(n) => others[(n as usize) % others.len()],
        };
        let kind = step.fault.kind();
        *self.injected.entry(kind).or_default() += 1;
        self.note(format!(
            "cycle {}: {step} (leader {leader}, voters {voters:?})",
            self.cycle
        ));
        let mut caught_up_needed = Vec::new();
        match step.fault.clone() {
            Fault::Kill(t) => {
                let id = resolve(t);
                cluster.kill(id).map_err(|e| e.to_string())?;
                self.note(format!("SIGKILL replica {id}"));
                tokio::time::sleep(step.hold).await;
                cluster
                    .restart(id, DataDir::Keep)
                    .await
                    .map_err(|e| e.to_string())?;
                self.note(format!("restarted replica {id}"));
            }
            Fault::Pause(t) => {
                let id = resolve(t);
                cluster.pause(id).map_err(|e| e.to_string())?;
                self.note(format!("SIGSTOP replica {id}"));
                tokio::time::sleep(step.hold).await;
                cluster.resume(id).map_err(|e| e.to_string())?;
                self.note(format!("SIGCONT replica {id}"));
            }
            Fault::IsolateLeader => {
                let cuts: Vec<(u64, u64)> = others.iter().map(|&o| (leader, o)).collect();
                self.partition(cluster, &cuts, step.hold).await?;
            }
            Fault::Split { shuffle } => {
                let p = permutation(shuffle, voters.len());
                let minority: Vec<u64> = p[..(voters.len() - 1) / 2]
                    .iter()
                    .map(|&i| voters[i])
                    .collect();
                let majority: Vec<u64> = p[(voters.len() - 1) / 2..]
                    .iter()
                    .map(|&i| voters[i])
                    .collect();
                self.note(format!("minority {minority:?} | majority {majority:?}"));
                let cuts = across(&minority, &majority);
                self.partition(cluster, &cuts, step.hold).await?;
            }
            Fault::Bridge { shuffle } => {
                let p = permutation(shuffle, voters.len());
                let bridge = voters[p[0]];
                let half = (voters.len() - 1) / 2;
                let left: Vec<u64> = p[1..=half].iter().map(|&i| voters[i]).collect();
                let right: Vec<u64> = p[half + 1..].iter().map(|&i| voters[i]).collect();
                self.note(format!("{left:?} <-> bridge {bridge} <-> {right:?}"));
                let cuts = across(&left, &right);
                self.partition(cluster, &cuts, step.hold).await?;
            }
            Fault::OneWayFromLeader { shuffle } => {
                let p = permutation(shuffle, others.len());
                let n = 1 + (shuffle as usize >> 32) % others.len();
                let deaf: Vec<u64> = p[..n].iter().map(|&i| others[i]).collect();
                let fw = self.firewall()?;
                for &d in &deaf {
                    fw.drop_one_way(cluster.ip_of(leader), cluster.ip_of(d))?;
                }
                self.note(format!("packets from leader {leader} to {deaf:?} dropped"));
                tokio::time::sleep(step.hold).await;
                self.heal()?;
            }
            Fault::TransferLeader(t) => {
                let to = resolve(t);
                let replica = cluster.replica(leader).map_err(|e| e.to_string())?;
                let mut admin = replica.admin().await.map_err(|e| e.to_string())?;
                let r = admin
                    .transfer_leader(admin_pb::TransferLeaderRequest { group: None, to })
                    .await;
                self.note(format!(
                    "transfer leadership from {leader} to {to}: {}",
                    match r {
                        Ok(r) => format!("new leaders {:?}", r.into_inner().new_leaders),
                        Err(s) => format!("refused: {:?} {}", s.code(), s.message()),
                    }
                ));
            }
            Fault::TornTail(t) => {
                let id = resolve(t);
                cluster.kill(id).map_err(|e| e.to_string())?;
                self.note(format!("SIGKILL replica {id}"));
                // Everything committed must be on every other voter before
                // this replica's copy is damaged (see the module comment).
                let rest: Vec<u64> = voters.iter().copied().filter(|&v| v != id).collect();
                caught_up(cluster, &rest).await?;
                let data = cluster.replica(id).map_err(|e| e.to_string())?.data_dir();
                let what = tear_newest_segment(&data, step.hold.as_nanos() as u64)?;
                self.note(format!("tore replica {id}'s WAL: {what}"));
                tokio::time::sleep(step.hold).await;
                cluster
                    .restart(id, DataDir::Keep)
                    .await
                    .map_err(|e| e.to_string())?;
                self.note(format!("restarted replica {id}"));
                caught_up_needed = voters.clone();
            }
            Fault::LostVolume(t) => {
                let id = resolve(t);
                cluster.kill(id).map_err(|e| e.to_string())?;
                cluster
                    .restart(id, DataDir::Empty)
                    .await
                    .map_err(|e| e.to_string())?;
                self.note(format!(
                    "SIGKILL replica {id}, emptied its data directory, restarted"
                ));
                self.await_membership(cluster, id).await?;
                tokio::time::sleep(step.hold).await;
                let rest: Vec<u64> = voters.iter().copied().filter(|&v| v != id).collect();
                self.readmit(cluster, id, &rest).await?;
                caught_up_needed = voters.clone();
            }
            Fault::ReconfigureDuringKill { moved, killed } => {
                let moved = voters[(moved as usize) % voters.len()];
                let mut killed = voters[(killed as usize) % voters.len()];
                if killed == moved {
                    killed = voters
                        [(voters.iter().position(|&v| v == moved).unwrap_or(0) + 1) % voters.len()];
                }
                cluster.kill(killed).map_err(|e| e.to_string())?;
                self.note(format!("SIGKILL replica {killed}"));
                let rest: Vec<u64> = voters
                    .iter()
                    .copied()
                    .filter(|&v| v != moved && v != killed)
                    .collect();
                self.remove(cluster, moved, &rest).await?;
                cluster.kill(moved).map_err(|e| e.to_string())?;
                cluster
                    .restart(moved, DataDir::Empty)
                    .await
                    .map_err(|e| e.to_string())?;
                self.note(format!("replica {moved} restarted on a new, empty volume"));
                self.await_membership(cluster, moved).await?;
                self.add_and_promote(cluster, moved, &rest).await?;
                tokio::time::sleep(step.hold).await;
                cluster
                    .restart(killed, DataDir::Keep)
                    .await
                    .map_err(|e| e.to_string())?;
                self.note(format!("restarted replica {killed}"));
                caught_up_needed = voters.clone();
            }
        }
        let healed = Instant::now();
        let recovery = self.recover(cluster, kind, healed).await?;
        self.note(format!(
            "recovered: a leader of every group after {} ms, a write acknowledged after {} ms",
            recovery.to_leader.as_millis(),
            recovery.to_write.as_millis()
        ));
        self.recoveries.push(recovery);
        if !caught_up_needed.is_empty() {
            caught_up(cluster, &caught_up_needed).await?;
            self.note(format!("replicas {caught_up_needed:?} caught up"));
        }
        tokio::time::sleep(step.quiet).await;
        Ok(())
    }

    fn firewall(&self) -> Result<&Firewall, String> {
        self.firewall
            .as_ref()
            .ok_or_else(|| "a network fault was scheduled without a firewall".to_string())
    }

    /// Cuts the links given (both ways) for `hold`, then heals.
    async fn partition(
        &mut self,
        cluster: &Cluster,
        cuts: &[(u64, u64)],
        hold: Duration,
    ) -> Result<(), String> {
        let fw = self.firewall()?.clone();
        for &(a, b) in cuts {
            fw.cut(cluster.ip_of(a), cluster.ip_of(b))?;
        }
        self.note(format!("links cut: {cuts:?}"));
        tokio::time::sleep(hold).await;
        self.heal()
    }

    /// Removes every packet filter.
    pub fn heal(&mut self) -> Result<(), String> {
        if let Some(fw) = &self.firewall {
            fw.heal()?;
            self.note("links healed");
        }
        Ok(())
    }

    /// Waits for a leader of every group and an acknowledged write.
    async fn recover(
        &mut self,
        cluster: &Cluster,
        kind: &'static str,
        healed: Instant,
    ) -> Result<Recovery, String> {
        let limit = Self::limit(cluster);
        for g in 0..u64::from(cluster.options().groups) {
            cluster
                .wait_leader_within(g, limit)
                .await
                .map_err(|e| format!("no recovery after {kind}: {e}"))?;
        }
        let to_leader = healed.elapsed();
        let probe = client(&cluster.endpoints(), limit);
        let key = format!("probe/{}", self.cycle);
        probe
            .put(key.as_bytes(), b"probe")
            .await
            .map_err(|e| format!("no write acknowledged after {kind}: {e}"))?;
        Ok(Recovery {
            kind,
            to_leader,
            to_write: healed.elapsed(),
        })
    }

    /// Waits until replica `id`, restarted on an empty data directory,
    /// answers and says it awaits its (re-)admission.
    async fn await_membership(&mut self, cluster: &Cluster, id: u64) -> Result<(), String> {
        until(
            &format!("replica {id} to await its membership"),
            Self::limit(cluster),
            async || match cluster.status(id).await {
                Ok(s) if s.awaiting_membership => Ok(()),
                Ok(_) => Err("it does not say it awaits its membership".into()),
                Err(e) => Err(e.to_string()),
            },
        )
        .await
        .map_err(|e| e.to_string())?;
        self.note(format!("replica {id} awaits its membership"));
        Ok(())
    }

    /// An admin client of the replicas `via`.
    fn admin_client(cluster: &Cluster, via: &[u64]) -> Client {
        client(&cluster.endpoints_of(via), Self::limit(cluster))
    }

    async fn remove(&mut self, cluster: &Cluster, id: u64, via: &[u64]) -> Result<(), String> {
        let c = Self::admin_client(cluster, via);
        let r = c
            .admin_call(|ch| async move {
                AdminClient::new(ch)
                    .remove_member(admin_pb::MemberRequest { id, group: None })
                    .await
                    .map(|r| r.into_inner())
            })
            .await
            .map_err(|e| format!("cannot remove replica {id}: {e}"))?;
        self.note(format!("removed replica {id}: committed {:?}", r.committed));
        Ok(())
    }

    /// Adds `id` back as a learner, waits until it has joined every group
    /// as one and caught up, and promotes it.
    async fn add_and_promote(
        &mut self,
        cluster: &Cluster,
        id: u64,
        via: &[u64],
    ) -> Result<(), String> {
        let c = Self::admin_client(cluster, via);
        let address = cluster.replica(id).map_err(|e| e.to_string())?.endpoint();
        let member = admin_pb::Member {
            id,
            name: name_of(id),
            address: address.clone(),
            client_address: address,
        };
        let r = c
            .admin_call(|ch| {
                let req = admin_pb::AddLearnerRequest {
                    member: Some(member.clone()),
                    group: None,
                };
                async move {
                    AdminClient::new(ch)
                        .add_learner(req)
                        .await
                        .map(|r| r.into_inner())
                }
            })
            .await
            .map_err(|e| format!("cannot add replica {id} as a learner: {e}"))?;
        self.note(format!(
            "added replica {id} as a learner: committed {:?}",
            r.committed
        ));
        let groups = u64::from(cluster.options().groups);
        let limit = Self::limit(cluster);
        until(
            &format!("replica {id} to join every group as a learner"),
            limit,
            async || {
                let s = cluster.status(id).await.map_err(|e| e.to_string())?;
                if s.awaiting_membership {
                    return Err("it still awaits its membership".into());
                }
                for g in 0..groups {
                    match group(&s, g) {
                        Some(gs) if gs.role == Role::Learner as i32 || gs.voters.contains(&id) => {}
                        Some(gs) => return Err(format!("group {g}: role {}", gs.role)),
                        None => return Err(format!("no group {g} yet")),
                    }
                }
                Ok(())
            },
        )
        .await
        .map_err(|e| e.to_string())?;
        // Promotion is refused until the learner has caught up: retried.
        let promoted = until(&format!("replica {id} to be promoted"), limit, async || {
            c.admin_call(|ch| async move {
                AdminClient::new(ch)
                    .promote(admin_pb::MemberRequest { id, group: None })
                    .await
                    .map(|r| r.into_inner())
            })
            .await
            .map_err(|e| e.to_string())
        })
        .await
        .map_err(|e| e.to_string())?;
        self.note(format!(
            "promoted replica {id}: committed {:?}",
            promoted.committed
        ));
        Ok(())
    }

    /// The lost-volume procedure: remove, add back as a learner, promote.
    async fn readmit(&mut self, cluster: &Cluster, id: u64, via: &[u64]) -> Result<(), String> {
        self.remove(cluster, id, via).await?;
        self.add_and_promote(cluster, id, via).await
    }
}

/// Every pair with one end in `a` and the other in `b`.
fn across(a: &[u64], b: &[u64]) -> Vec<(u64, u64)> {
    a.iter()
        .flat_map(|&x| b.iter().map(move |&y| (x, y)))
        .collect()
}

/// Waits until `ids` have converged on every group (same applied index and
/// state digest, at least the leader's commit index): only once the clients
/// have stopped.
pub async fn converge(cluster: &Cluster, ids: &[u64]) -> Result<(), String> {
    for g in 0..u64::from(cluster.options().groups) {
        cluster
            .wait_converged(ids, g)
            .await
            .map_err(|e| e.to_string())?;
    }
    Ok(())
}

/// Waits until `ids` hold everything committed so far, under load: in
/// each group, a probe write is acknowledged at index `p` (so everything
/// up to `p` is committed), then every replica given applies `p`.
pub async fn caught_up(cluster: &Cluster, ids: &[u64]) -> Result<(), String> {
    let groups = cluster.options().groups;
    let limit = cluster.options().election_timeout() * RECOVERY_TIMEOUTS;
    let probe = client(&cluster.endpoints_of(ids), limit);
    for g in 0..groups {
        let key = (0u32..)
            .map(|n| format!("probe/catch-up/{g}/{n}"))
            .find(|k| {
                kuberaft::kv::placement::group_for_key(k.as_bytes(), groups).0 == u64::from(g)
            })
            .expect("some key falls in every group");
        let r = probe
            .put(key.as_bytes(), b"probe")
            .await
            .map_err(|e| format!("a probe write to group {g} failed: {e}"))?;
        let index = r.header.map_or(0, |h| h.index);
        for &id in ids {
            until(
                &format!("replica {id} to apply index {index} of group {g}"),
                limit,
                async || match cluster.status(id).await {
                    Ok(s) => match group(&s, u64::from(g)) {
                        Some(gs) if gs.applied_index >= index => Ok(()),
                        Some(gs) => Err(format!("applied {}", gs.applied_index)),
                        None => Err(format!("no group {g}")),
                    },
                    Err(e) => Err(e.to_string()),
                },
            )
            .await
            .map_err(|e| e.to_string())?;
        }
    }
    Ok(())
}

/// Tears the last frame of the newest WAL segment of `data_dir` (the
/// replica is down): cuts it at a point drawn from `draw`, by truncating
/// the file there or by zeroing the rest of the frame (a torn write into
/// preallocated space). Says what it did.
pub fn tear_newest_segment(data_dir: &Path, draw: u64) -> Result<String, String> {
    let wal = data_dir.join("wal");
    let mut segments: Vec<PathBuf> = std::fs::read_dir(&wal)
        .map_err(|e| format!("cannot list {}: {e}", wal.display()))?
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "log"))
        .collect();
    segments.sort();
    let Some(newest) = segments.last() else {
        return Ok("no segment to tear".into());
    };
    let bytes =
        std::fs::read(newest).map_err(|e| format!("cannot read {}: {e}", newest.display()))?;
    let Some((off, len)) = last_frame(&bytes) else {
        return Ok(format!("{} has no frame to tear", newest.display()));
    };
    // A cut strictly inside the frame, past its first byte.
    let cut = off + 1 + (draw as usize) % (len - 1).max(1);
    let file = std::fs::OpenOptions::new()
        .write(true)
        .open(newest)
        .map_err(|e| format!("cannot open {}: {e}", newest.display()))?;
    let how = if draw.is_multiple_of(2) {
        file.set_len(cut as u64)
            .map_err(|e| format!("cannot truncate {}: {e}", newest.display()))?;
        "truncated"
    } else {
        use std::os::unix::fs::FileExt;
        file.write_all_at(&vec![0u8; off + len - cut], cut as u64)
            .map_err(|e| format!("cannot write {}: {e}", newest.display()))?;
        "zeroed"
    };
    file.sync_all()
        .map_err(|e| format!("cannot sync {}: {e}", newest.display()))?;
    Ok(format!(
        "{}: last frame at {off} ({len} bytes), {how} from {cut}",
        newest.display()
    ))
}

/// The segment header's page (`replica/src/storage/segment.rs`).
const SEGMENT_HEADER_LEN: usize = 4096;
/// crc32c:u32 | len:u32 | batch:u64, then the body, padded to 8 bytes.
const FRAME_HEADER_LEN: usize = 16;

/// Offset and length (padding included) of the last frame of a segment,
/// following the frames' length fields from the first (checksums are the
/// replica's business).
fn last_frame(segment: &[u8]) -> Option<(usize, usize)> {
    let mut off = SEGMENT_HEADER_LEN;
    let mut last = None;
    while off + FRAME_HEADER_LEN <= segment.len() {
        let header = &segment[off..off + FRAME_HEADER_LEN];
        if header.iter().all(|&b| b == 0) {
            break;
        }
        let len = u32::from_le_bytes([header[4], header[5], header[6], header[7]]) as usize;
        let frame = (FRAME_HEADER_LEN + len).next_multiple_of(8);
        if off + frame > segment.len() {
            break;
        }
        last = Some((off, frame));
        off += frame;
    }
    last
}
