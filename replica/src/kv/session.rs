//! Client sessions: what makes a retried command apply once.
//!
//! Per client the table remembers the highest sequence number applied and
//! its result. A retry of that number gets the remembered result; an older
//! number is a stale request; a newer one is applied.
//!
//! # Expiry, and the guarantee
//!
//! Time here is replicated time: the largest proposal time (the leader's wall
//! clock, carried in each command) applied so far. A session idle for longer
//! than [`SessionPolicy::ttl`] in that time is forgotten, and when there are
//! more than [`SessionPolicy::max_sessions`] sessions the least recently
//! active is forgotten (ties broken by client id). Both depend only on the
//! applied commands, so every replica forgets the same sessions at the same
//! index; memory is bounded by `max_sessions`.
//!
//! The guarantee is therefore exactly-once *while the session lives*: a
//! client retrying within the TTL (and not crowded out) never applies a
//! command twice. A command of a forgotten session with sequence number > 1
//! is refused ([`UnknownSession`](super::CommandError::UnknownSession)) rather
//! than risk a second application; sequence number 1 opens a session, so a
//! client's very first command retried after its session expired would apply
//! again. The policy must be the same on every replica of a group: it decides
//! outcomes of applied commands.

use super::command::{CachedResult, ClientId};
use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

/// How long sessions live and how many there may be.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SessionPolicy {
    /// Idle time (in replicated time) after which a session is forgotten.
    pub ttl: Duration,
    pub max_sessions: usize,
}

impl Default for SessionPolicy {
    /// One hour, 100 000 sessions: far longer than any client's retry loop,
    /// and a bounded few tens of megabytes of cached responses in the
    /// common case.
    fn default() -> SessionPolicy {
        SessionPolicy {
            ttl: Duration::from_secs(3600),
            max_sessions: 100_000,
        }
    }
}

/// One client's session.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Session {
    /// The highest sequence number applied.
    pub seq: u64,
    /// Replicated time (ms) of the session's last command.
    pub last_active_ms: u64,
    pub result: CachedResult,
}

/// Every live session, with an index by activity for expiry.
#[derive(Clone, Debug, Default)]
pub(crate) struct Sessions {
    by_client: BTreeMap<ClientId, Session>,
    by_activity: BTreeSet<(u64, ClientId)>,
}

impl Sessions {
    pub fn get(&self, client: ClientId) -> Option<&Session> {
        self.by_client.get(&client)
    }

    pub fn len(&self) -> usize {
        self.by_client.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_client.is_empty()
    }

    /// Sessions in client id order (the snapshot order).
    pub fn iter(&self) -> impl Iterator<Item = (&ClientId, &Session)> {
        self.by_client.iter()
    }

    /// Inserts or replaces a session.
    pub fn put(&mut self, client: ClientId, session: Session) {
        self.by_activity.insert((session.last_active_ms, client));
        if let Some(old) = self.by_client.insert(client, session)
            && old.last_active_ms != self.by_client[&client].last_active_ms
        {
            self.by_activity.remove(&(old.last_active_ms, client));
        }
    }

    /// Marks a session active at `now_ms` (a retry keeps a session alive).
    pub fn touch(&mut self, client: ClientId, now_ms: u64) {
        if let Some(s) = self.by_client.get_mut(&client)
            && s.last_active_ms != now_ms
        {
            self.by_activity.remove(&(s.last_active_ms, client));
            s.last_active_ms = now_ms;
            self.by_activity.insert((now_ms, client));
        }
    }

    /// Forgets sessions idle for longer than the TTL at `now_ms`, then the
    /// least recently active ones beyond `max_sessions - room` (so that
    /// `room` new sessions fit).
    pub fn expire(&mut self, policy: &SessionPolicy, now_ms: u64, room: usize) {
        let ttl_ms = u64::try_from(policy.ttl.as_millis()).unwrap_or(u64::MAX);
        let keep = policy.max_sessions.saturating_sub(room);
        while let Some(&(last, client)) = self.by_activity.first() {
            let idle = now_ms.saturating_sub(last);
            if idle <= ttl_ms && self.by_client.len() <= keep {
                break;
            }
            self.by_activity.pop_first();
            self.by_client.remove(&client);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kv::Response;

    fn session(seq: u64, at: u64) -> Session {
        Session {
            seq,
            last_active_ms: at,
            result: Ok(Response::Put),
        }
    }

    fn c(id: u64) -> ClientId {
        ClientId::new(id).unwrap()
    }

    #[test]
    fn idle_sessions_expire_after_the_ttl_and_not_before() {
        let policy = SessionPolicy {
            ttl: Duration::from_millis(100),
            max_sessions: 10,
        };
        let mut s = Sessions::default();
        s.put(c(1), session(1, 1000));
        s.put(c(2), session(1, 1050));
        s.expire(&policy, 1100, 0);
        assert_eq!(s.len(), 2, "idle exactly ttl is kept");
        s.expire(&policy, 1101, 0);
        assert!(s.get(c(1)).is_none() && s.get(c(2)).is_some());
        s.touch(c(2), 1200);
        s.expire(&policy, 1300, 0);
        assert!(s.get(c(2)).is_some(), "touch keeps a session alive");
    }

    #[test]
    fn the_least_recently_active_session_makes_room() {
        let policy = SessionPolicy {
            ttl: Duration::from_secs(3600),
            max_sessions: 2,
        };
        let mut s = Sessions::default();
        s.put(c(5), session(1, 10));
        s.put(c(3), session(1, 20));
        s.put(c(5), session(2, 30));
        s.expire(&policy, 30, 1);
        assert_eq!(s.len(), 1);
        assert!(s.get(c(5)).is_some(), "c3 was the least recently active");
        assert_eq!(
            s.by_activity.len(),
            1,
            "the activity index follows the table"
        );
    }
}
