//! Bounded waits on a cluster's state, read through the admin API and the
//! HTTP endpoints. Every wait gives up after a limit with the last thing it
//! saw, so a failing test says what the cluster looked like; no wait is a
//! timing assertion.

use crate::cluster::Cluster;
use crate::error::HarnessError;
use crate::http;
use kuberaft_proto::admin::{GroupStatus, NodeStatus, Role};
use std::time::Duration;
use tokio::time::Instant;

/// The default bound of a wait: many election timeouts on a loaded machine.
pub const WAIT: Duration = Duration::from_secs(40);
/// How often a wait looks again.
pub const POLL: Duration = Duration::from_millis(50);

/// Calls `probe` until it returns `Ok`, or fails after `limit` with the
/// last `Err` it returned (a description of what it saw).
pub async fn until<T>(
    what: &str,
    limit: Duration,
    mut probe: impl AsyncFnMut() -> Result<T, String>,
) -> Result<T, HarnessError> {
    let start = Instant::now();
    loop {
        let last = match probe().await {
            Ok(v) => return Ok(v),
            Err(seen) => seen,
        };
        if start.elapsed() >= limit {
            return Err(HarnessError::Timeout {
                what: what.to_string(),
                waited_ms: start.elapsed().as_millis(),
                last,
            });
        }
        tokio::time::sleep(POLL).await;
    }
}

/// The status of `group` in a node's status.
pub fn group(status: &NodeStatus, group: u64) -> Option<&GroupStatus> {
    status.groups.iter().find(|g| g.group == group)
}

/// Whether `g` says its replica leads the group.
pub fn is_leader(g: &GroupStatus) -> bool {
    g.role == Role::Leader as i32
}

impl Cluster {
    /// Replicas started and not paused (they may have died since).
    pub fn started_ids(&self) -> Vec<u64> {
        self.ids()
            .into_iter()
            .filter(|id| {
                self.replica(*id)
                    .is_ok_and(|r| r.pid().is_some() && !r.is_paused())
            })
            .collect()
    }

    /// The status of replica `id`.
    pub async fn status(&self, id: u64) -> Result<NodeStatus, HarnessError> {
        self.replica(id)?.status().await
    }

    /// The status of every started replica that answers.
    pub async fn statuses(&self) -> Vec<(u64, Result<NodeStatus, HarnessError>)> {
        let mut out = Vec::new();
        for id in self.started_ids() {
            out.push((id, self.status(id).await));
        }
        out
    }

    /// The leader of `group`: a replica that says it leads, with a majority
    /// of the group's voters (itself included) naming it at its term.
    pub async fn wait_leader(&self, group_id: u64) -> Result<u64, HarnessError> {
        self.wait_leader_within(group_id, WAIT).await
    }

    pub async fn wait_leader_within(
        &self,
        group_id: u64,
        limit: Duration,
    ) -> Result<u64, HarnessError> {
        until(
            &format!("a leader of group {group_id}"),
            limit,
            async || {
                let statuses = self.statuses().await;
                let seen = describe_group(&statuses, group_id);
                let groups: Vec<(u64, &GroupStatus)> = statuses
                    .iter()
                    .filter_map(|(id, s)| Some((*id, group(s.as_ref().ok()?, group_id)?)))
                    .collect();
                for (id, g) in &groups {
                    if !is_leader(g) {
                        continue;
                    }
                    let followers = groups
                        .iter()
                        .filter(|(_, o)| o.leader == *id && o.term == g.term)
                        .count();
                    if followers > g.voters.len() / 2 {
                        return Ok(*id);
                    }
                }
                Err(seen)
            },
        )
        .await
    }

    /// A leader of every group; returns them by group.
    pub async fn wait_all_leaders(&self) -> Result<Vec<u64>, HarnessError> {
        let mut leaders = Vec::new();
        for g in 0..u64::from(self.options().groups) {
            leaders.push(self.wait_leader(g).await?);
        }
        Ok(leaders)
    }

    /// Every replica given answers `/readyz` with 200.
    pub async fn wait_ready(&self, ids: &[u64]) -> Result<(), HarnessError> {
        for &id in ids {
            let addr = self.replica(id)?.http_addr();
            until(
                &format!("replica {id} to be ready"),
                WAIT,
                async || match http::get(addr, "/readyz?verbose", Duration::from_secs(2)).await {
                    Ok(r) if r.status == 200 => Ok(()),
                    Ok(r) => Err(format!("{}: {}", r.status, r.body.trim())),
                    Err(e) => Err(e.to_string()),
                },
            )
            .await?;
        }
        Ok(())
    }

    /// Replica `id` has applied `index` of `group`.
    pub async fn wait_applied(
        &self,
        id: u64,
        group_id: u64,
        index: u64,
    ) -> Result<(), HarnessError> {
        until(
            &format!("replica {id} to apply index {index} of group {group_id}"),
            WAIT,
            async || match self.status(id).await {
                Ok(s) => match group(&s, group_id) {
                    Some(g) if g.applied_index >= index => Ok(()),
                    Some(g) => Err(format!("applied {}", g.applied_index)),
                    None => Err(format!(
                        "no group {group_id} (awaiting membership: {})",
                        s.awaiting_membership
                    )),
                },
                Err(e) => Err(e.to_string()),
            },
        )
        .await
    }

    /// Every replica given has applied the same index of `group`, at least
    /// the leader's commit index when the wait began, with the same state
    /// digest. Returns (index, digest).
    pub async fn wait_converged(
        &self,
        ids: &[u64],
        group_id: u64,
    ) -> Result<(u64, u64), HarnessError> {
        let leader = self.wait_leader(group_id).await?;
        let commit = group(&self.status(leader).await?, group_id).map_or(0, |g| g.commit_index);
        until(
            &format!("replicas {ids:?} to converge on group {group_id} (commit {commit})"),
            WAIT,
            async || {
                let mut seen = Vec::new();
                for &id in ids {
                    match self.status(id).await {
                        Ok(s) => match group(&s, group_id) {
                            Some(g) => seen.push((id, g.applied_index, g.state_digest)),
                            None => return Err(format!("replica {id} has no group {group_id}")),
                        },
                        Err(e) => return Err(e.to_string()),
                    }
                }
                let first = seen.first().map(|&(_, i, d)| (i, d)).unwrap_or_default();
                if first.0 >= commit && seen.iter().all(|&(_, i, d)| (i, d) == first) {
                    Ok(first)
                } else {
                    Err(format!("(replica, applied, digest): {seen:?}"))
                }
            },
        )
        .await
    }
}

/// One line per replica: role, term and leader of `group`, for messages.
pub fn describe_group(
    statuses: &[(u64, Result<NodeStatus, HarnessError>)],
    group_id: u64,
) -> String {
    let parts: Vec<String> = statuses
        .iter()
        .map(|(id, s)| match s {
            Ok(s) => match group(s, group_id) {
                Some(g) => format!(
                    "{id}: {} term {} leader {} commit {} applied {}",
                    Role::try_from(g.role).map_or("?", |r| r.as_str_name()),
                    g.term,
                    g.leader,
                    g.commit_index,
                    g.applied_index
                ),
                None => format!(
                    "{id}: no group {group_id} (awaiting membership: {})",
                    s.awaiting_membership
                ),
            },
            Err(e) => format!("{id}: {e}"),
        })
        .collect();
    parts.join("; ")
}
