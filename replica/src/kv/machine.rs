//! The replicated state machine of one group: an ordered map, the client
//! sessions, and the index it has applied up to.
//!
//! It is driven by the node's event loop, which owns it: entries go in
//! through [`KvStateMachine::apply`] in log order, reads are served from it at
//! whatever index it has applied (the caller waits for a ReadIndex first).
//! It never reads a clock, never performs I/O except through the writer or
//! reader handed to the snapshot functions, and its state after applying a
//! sequence of entries depends on nothing but those entries.

use super::command::{
    CachedResult, Command, CommandError, CommandResult, Op, Response, SessionRef,
};
use super::limits::{MAX_SCAN_BYTES, MAX_SCAN_LIMIT};
use super::session::{Session, SessionPolicy, Sessions};
use crate::raft::{Entry, GroupId, LogIndex, Payload, Term};
use bytes::Bytes;
use std::collections::BTreeMap;
use std::fmt;
use std::ops::Bound;
use thiserror::Error;

/// What applying one entry did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Applied {
    /// The entry was at or below the applied index (already reflected in the
    /// state, e.g. by a snapshot); nothing changed.
    Skipped,
    /// A no-op or membership change: the applied index moved, the map did not.
    Nothing,
    /// A command, with the result for the client that proposed it.
    Command(CommandResult),
}

/// An entry handed over out of order: a bug in the caller, refused without
/// changing the state.
#[derive(Clone, Debug, PartialEq, Eq, Error)]
#[error(
    "group {group}: entry {got} handed to the state machine out of order; it has applied up to \
     {applied} and needs entry {} next",
    applied.next()
)]
pub struct ApplyError {
    pub group: GroupId,
    pub applied: LogIndex,
    pub got: LogIndex,
}

/// One page of a scan.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct ScanPage {
    pub entries: Vec<(Bytes, Bytes)>,
    /// Where to continue (pass it as `start` of the next scan), or `None`
    /// when the prefix is exhausted.
    pub next: Option<Bytes>,
}

/// A summary of the replicated state that two replicas at the same applied
/// index must agree on. Computing it costs O(sessions), not O(keys): the
/// data part is maintained incrementally on every write.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Digest {
    pub applied: LogIndex,
    pub keys: u64,
    /// An order-independent hash of every (key, value) pair: the wrapping sum
    /// of a 64-bit hash of each pair.
    pub data: u64,
    /// A hash of the sessions and the replicated clock.
    pub sessions: u64,
}

impl Digest {
    /// One number for the whole digest, to compare replicas at a glance.
    pub fn combined(&self) -> u64 {
        let mut h = self.data;
        for v in [self.applied.0, self.keys, self.sessions] {
            h = (h ^ v).wrapping_mul(0x0000_0100_0000_01B3).rotate_left(29);
        }
        h
    }
}

impl fmt::Display for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "index {} keys {} data {:016x} sessions {:016x}",
            self.applied, self.keys, self.data, self.sessions
        )
    }
}

/// The key-value state machine of one Raft group.
#[derive(Clone, Debug)]
pub struct KvStateMachine {
    pub(super) group: GroupId,
    pub(super) policy: SessionPolicy,
    pub(super) map: BTreeMap<Bytes, Bytes>,
    pub(super) sessions: Sessions,
    pub(super) applied_index: LogIndex,
    pub(super) applied_term: Term,
    /// Replicated time: the largest proposal time applied, in ms.
    pub(super) clock_ms: u64,
    /// Wrapping sum of [`entry_hash`] over the map.
    pub(super) data_digest: u64,
    /// Key and value bytes held by the map.
    pub(super) data_bytes: u64,
    /// The cluster's member directory (kept by group 0): member id to
    /// where it can be reached.
    pub(super) members: BTreeMap<u64, MemberRecord>,
}

/// Where a member of the cluster can be reached, as the member directory
/// records it. A removed member leaves a record with an empty address (a
/// tombstone), so that the configuration file's peer list, which seeds the
/// directory, cannot bring it back.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MemberRecord {
    pub name: Bytes,
    /// `host:port` of its gRPC listener; empty once removed.
    pub address: Bytes,
    /// The incarnation of the member's data directory that was admitted
    /// (see `storage::Wal::incarnation`); 0 if unknown.
    pub incarnation: u64,
}

impl MemberRecord {
    pub fn is_removed(&self) -> bool {
        self.address.is_empty()
    }
}

impl KvStateMachine {
    /// An empty state machine that has applied nothing.
    pub fn new(group: GroupId, policy: SessionPolicy) -> KvStateMachine {
        KvStateMachine::empty_at(group, policy, LogIndex::ZERO, Term::ZERO)
    }

    /// The empty state machine as of `index`/`term`: what a group's
    /// bootstrap snapshot (`RecoveredState::bootstrap`, index 1) stands for.
    pub fn empty_at(
        group: GroupId,
        policy: SessionPolicy,
        index: LogIndex,
        term: Term,
    ) -> KvStateMachine {
        KvStateMachine {
            group,
            policy,
            map: BTreeMap::new(),
            sessions: Sessions::default(),
            applied_index: index,
            applied_term: term,
            clock_ms: 0,
            data_digest: 0,
            data_bytes: 0,
            members: BTreeMap::new(),
        }
    }

    pub fn group(&self) -> GroupId {
        self.group
    }

    pub fn applied_index(&self) -> LogIndex {
        self.applied_index
    }

    pub fn applied_term(&self) -> Term {
        self.applied_term
    }

    /// Replicated time in ms since the Unix epoch (0 before any command).
    pub fn clock_ms(&self) -> u64 {
        self.clock_ms
    }

    pub fn len(&self) -> usize {
        self.map.len()
    }

    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    /// Bytes of keys and values held.
    pub fn data_bytes(&self) -> u64 {
        self.data_bytes
    }

    pub fn session_count(&self) -> usize {
        self.sessions.len()
    }

    /// Applies the next committed entry. Entries must come in log order;
    /// re-delivering an entry at or below the applied index is harmless.
    pub fn apply(&mut self, entry: &Entry) -> Result<Applied, ApplyError> {
        if entry.index <= self.applied_index {
            return Ok(Applied::Skipped);
        }
        if entry.index != self.applied_index.next() {
            return Err(ApplyError {
                group: self.group,
                applied: self.applied_index,
                got: entry.index,
            });
        }
        self.applied_index = entry.index;
        self.applied_term = entry.term;
        Ok(match &entry.payload {
            Payload::Empty | Payload::ConfChange(_) => Applied::Nothing,
            Payload::Command(bytes) => Applied::Command(self.apply_command(bytes)),
        })
    }

    /// Applies the bytes of a command entry. An undecodable command is a
    /// deterministic error that changes nothing.
    fn apply_command(&mut self, bytes: &Bytes) -> CommandResult {
        let command = Command::decode(bytes)?;
        self.clock_ms = self.clock_ms.max(command.proposed_at_ms);
        let now = self.clock_ms;
        // Expire first: a session idle past its TTL is gone even for the
        // command that would have revived it.
        self.sessions.expire(&self.policy, now, 0);
        let Some(SessionRef { client, seq }) = command.session else {
            return self.execute(&command.op).map_err(CommandError::from);
        };
        let latest = match self.sessions.get(client) {
            Some(s) if seq == s.seq => {
                let cached = s.result.clone();
                self.sessions.touch(client, now);
                return cached.map_err(CommandError::from);
            }
            Some(s) if seq < s.seq => {
                return Err(CommandError::StaleRequest {
                    client,
                    seq,
                    latest: s.seq,
                });
            }
            Some(s) => Some(s.seq),
            None if seq == 1 => None,
            None => return Err(CommandError::UnknownSession { client, seq }),
        };
        if latest.is_none() {
            // Make room before inserting, so the new session is never the
            // one evicted.
            self.sessions.expire(&self.policy, now, 1);
        }
        let result = self.execute(&command.op);
        self.sessions.put(
            client,
            Session {
                seq,
                last_active_ms: now,
                result: result.clone(),
            },
        );
        result.map_err(CommandError::from)
    }

    /// Checks limits and changes the map.
    fn execute(&mut self, op: &Op) -> CachedResult {
        op.validate()?;
        match op {
            Op::Put { key, value } => {
                self.write(key, Some(value));
                Ok(Response::Put)
            }
            Op::Delete { key } => Ok(Response::Delete {
                existed: self.write(key, None),
            }),
            Op::SetMember {
                id,
                name,
                address,
                incarnation,
            } => {
                let record = MemberRecord {
                    name: Bytes::copy_from_slice(name),
                    address: Bytes::copy_from_slice(address),
                    incarnation: *incarnation,
                };
                self.members.insert(*id, record);
                Ok(Response::Put)
            }
            Op::RemoveMember { id } => {
                let tombstone = MemberRecord {
                    name: Bytes::new(),
                    address: Bytes::new(),
                    incarnation: 0,
                };
                let old = self.members.insert(*id, tombstone);
                Ok(Response::Delete {
                    existed: old.is_some_and(|m| !m.is_removed()),
                })
            }
            Op::CompareAndSwap { key, expected, new } => {
                let current = self.map.get(key.as_ref());
                if current != expected.as_ref() {
                    return Ok(Response::CompareAndSwap {
                        swapped: false,
                        current: current.cloned(),
                    });
                }
                self.write(key, new.as_ref());
                Ok(Response::CompareAndSwap {
                    swapped: true,
                    current: self.map.get(key.as_ref()).cloned(),
                })
            }
        }
    }

    /// Sets or removes a key, keeping the digest and byte count in step.
    /// Keys and values are copied so the map never pins a log entry's (or a
    /// whole network batch's) buffer. Returns whether the key was present.
    fn write(&mut self, key: &Bytes, value: Option<&Bytes>) -> bool {
        let old = match value {
            Some(value) => {
                let value = Bytes::copy_from_slice(value);
                self.add(key, &value);
                match self.map.get_mut(key.as_ref()) {
                    Some(slot) => Some(std::mem::replace(slot, value)),
                    None => {
                        self.map.insert(Bytes::copy_from_slice(key), value);
                        None
                    }
                }
            }
            None => self.map.remove(key.as_ref()),
        };
        match old {
            Some(old) => {
                self.data_digest = self.data_digest.wrapping_sub(entry_hash(key, &old));
                self.data_bytes -= (key.len() + old.len()) as u64;
                true
            }
            None => false,
        }
    }

    /// Accounts for a pair entering the map.
    pub(super) fn add(&mut self, key: &[u8], value: &[u8]) {
        self.data_digest = self.data_digest.wrapping_add(entry_hash(key, value));
        self.data_bytes += (key.len() + value.len()) as u64;
    }

    /// The value of `key` as of the applied index.
    pub fn get(&self, key: &[u8]) -> Option<&Bytes> {
        self.map.get(key)
    }

    /// Keys starting with `prefix`, in order, from `start` (inclusive; a
    /// previous page's `next`) or from the first such key. At most `limit`
    /// entries (0 or anything above [`MAX_SCAN_LIMIT`] means
    /// `MAX_SCAN_LIMIT`), and at most about [`MAX_SCAN_BYTES`] of keys and
    /// values, but always at least one entry if any is left.
    pub fn scan(&self, prefix: &[u8], start: Option<&[u8]>, limit: usize) -> ScanPage {
        let limit = if limit == 0 {
            MAX_SCAN_LIMIT
        } else {
            limit.min(MAX_SCAN_LIMIT)
        };
        let from = match start {
            Some(start) if start > prefix => start,
            _ => prefix,
        };
        let range = self
            .map
            .range::<[u8], _>((Bound::Included(from), Bound::Unbounded))
            .take_while(|(k, _)| k.starts_with(prefix));
        let mut page = ScanPage::default();
        let mut bytes = 0usize;
        for (k, v) in range {
            let size = k.len() + v.len();
            if page.entries.len() == limit
                || (!page.entries.is_empty() && bytes + size > MAX_SCAN_BYTES)
            {
                page.next = Some(k.clone());
                break;
            }
            bytes += size;
            page.entries.push((k.clone(), v.clone()));
        }
        page
    }

    /// The member directory: every member recorded, by id.
    pub fn members(&self) -> &BTreeMap<u64, MemberRecord> {
        &self.members
    }

    /// Every pair, in key order.
    pub fn iter(&self) -> impl Iterator<Item = (&Bytes, &Bytes)> {
        self.map.iter()
    }

    pub fn digest(&self) -> Digest {
        let mut h = mix(self.clock_ms ^ 0x5e55_1045);
        let mut scratch = Vec::new();
        for (client, s) in self.sessions.iter() {
            scratch.clear();
            super::command::encode_cached(&mut scratch, &s.result);
            let fields = [
                client.get(),
                s.seq,
                s.last_active_ms,
                u64::from(crc32c::crc32c(&scratch)),
            ];
            for f in fields {
                h = mix(h ^ f);
            }
        }
        for (id, m) in &self.members {
            h = mix(h ^ *id);
            h = mix(h ^ entry_hash(&m.name, &m.address) ^ m.incarnation);
        }
        Digest {
            applied: self.applied_index,
            keys: self.map.len() as u64,
            data: self.data_digest,
            sessions: h,
        }
    }
}

/// A 64-bit hash of one (key, value) pair for the data digest. CRC32C is
/// hardware-accelerated, so hashing a 1 MiB value on every write is cheap.
pub(super) fn entry_hash(key: &[u8], value: &[u8]) -> u64 {
    let crcs = (u64::from(crc32c::crc32c(key)) << 32) | u64::from(crc32c::crc32c(value));
    let lens = (key.len() as u64) << 40 ^ value.len() as u64;
    mix(mix(crcs) ^ lens)
}

/// The splitmix64 finalizer.
fn mix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}
