//! How client commands print: values raw (so scripts can use them), status
//! as a readable table or JSON.

use kuberaft_proto::admin::{GroupStatus, NodeStatus, Role};
use std::fmt::Write;

pub fn role_name(role: i32) -> &'static str {
    match Role::try_from(role) {
        Ok(Role::Leader) => "leader",
        Ok(Role::Follower) => "follower",
        Ok(Role::Candidate) => "candidate",
        Ok(Role::PreCandidate) => "pre-candidate",
        Ok(Role::Learner) => "learner",
        Err(_) => "unknown",
    }
}

/// A table of every replica's groups, one line per (replica, group).
pub fn status_table(statuses: &[(String, Result<NodeStatus, String>)]) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{:<24} {:<10} {:>5} {:<13} {:>6} {:>8} {:>10} {:>10} {:<6}",
        "ENDPOINT", "NAME", "GROUP", "ROLE", "TERM", "LEADER", "COMMIT", "APPLIED", "READY"
    );
    for (endpoint, status) in statuses {
        match status {
            Err(e) => {
                let _ = writeln!(out, "{endpoint:<24} unreachable: {e}");
            }
            Ok(s) => {
                for g in &s.groups {
                    let _ = writeln!(out, "{}", group_line(endpoint, s, g));
                }
                if !s.ready {
                    for reason in &s.not_ready {
                        let _ = writeln!(out, "{:<24} not ready: {reason}", "");
                    }
                }
            }
        }
    }
    out
}

fn group_line(endpoint: &str, s: &NodeStatus, g: &GroupStatus) -> String {
    let leader = s
        .members
        .iter()
        .find(|m| m.id == g.leader)
        .map(|m| m.name.clone())
        .unwrap_or_else(|| {
            if g.leader == 0 {
                "-".into()
            } else {
                g.leader.to_string()
            }
        });
    format!(
        "{:<24} {:<10} {:>5} {:<13} {:>6} {:>8} {:>10} {:>10} {:<6}",
        endpoint,
        s.name,
        g.group,
        role_name(g.role),
        g.term,
        leader,
        g.commit_index,
        g.applied_index,
        if s.ready { "yes" } else { "no" }
    )
}
