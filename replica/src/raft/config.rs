//! How one group's Raft behaves: timeouts in ticks, flow control, and the
//! optional protocol features. The core never reads a clock: the caller
//! decides how long a tick is.

use super::types::NodeId;
use thiserror::Error;

/// How ReadIndex requests are confirmed.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default)]
pub enum ReadOnlyOption {
    /// Every read round-trips a heartbeat to a quorum (linearizable without
    /// any assumption about clocks).
    #[default]
    Safe,
    /// The leader serves reads without a round trip while its lease holds:
    /// it heard from a quorum within the last election timeout. Correct only
    /// if clocks of the nodes drift apart by less than
    /// `election_ticks - heartbeat_ticks` ticks per election timeout (the
    /// bound etcd documents). Requires `check_quorum`.
    LeaseBased,
}

#[derive(Clone, Debug)]
pub struct Config {
    /// This node.
    pub id: NodeId,
    /// Followers start an election after a randomized timeout in
    /// `[election_ticks, 2 * election_ticks)` ticks without hearing a leader.
    pub election_ticks: u32,
    /// A leader sends heartbeats every `heartbeat_ticks` ticks.
    pub heartbeat_ticks: u32,
    /// Appends in flight to one follower, by count (pipelining window).
    pub max_inflight_msgs: usize,
    /// Appends in flight to one follower, by bytes.
    pub max_inflight_bytes: u64,
    /// Upper bound of one append message's entries, by bytes (at least one
    /// entry is always sent).
    pub max_append_bytes: u64,
    /// Campaign in a pre-vote round first so a node that was partitioned
    /// away cannot disrupt a healthy leader by bumping the term.
    pub pre_vote: bool,
    /// A leader that has not heard from a quorum within an election timeout
    /// steps down; followers that heard a leader within the election timeout
    /// refuse to vote for others (leader lease).
    pub check_quorum: bool,
    pub read_only: ReadOnlyOption,
    /// The seed of the randomized election timeouts.
    pub seed: u64,
}

impl Config {
    /// Defaults that suit a replica ticking every 100 ms: heartbeats every
    /// tick, elections after 1–2 s of silence.
    pub fn new(id: NodeId) -> Config {
        Config {
            id,
            election_ticks: 10,
            heartbeat_ticks: 1,
            max_inflight_msgs: 256,
            max_inflight_bytes: 32 << 20,
            max_append_bytes: 1 << 20,
            pre_vote: true,
            check_quorum: true,
            read_only: ReadOnlyOption::Safe,
            seed: id.0,
        }
    }

    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.id.0 == 0 {
            return Err(ConfigError(
                "node id 0 is reserved for \"none\"; give every node an id of 1 or more",
            ));
        }
        if self.heartbeat_ticks == 0 {
            return Err(ConfigError("heartbeat_ticks must be at least 1"));
        }
        if self.election_ticks <= self.heartbeat_ticks {
            return Err(ConfigError(
                "election_ticks must be greater than heartbeat_ticks (a follower would time out between two heartbeats)",
            ));
        }
        if self.max_inflight_msgs == 0 || self.max_inflight_bytes == 0 {
            return Err(ConfigError(
                "max_inflight_msgs and max_inflight_bytes must be at least 1",
            ));
        }
        if self.read_only == ReadOnlyOption::LeaseBased && !self.check_quorum {
            return Err(ConfigError(
                "lease-based reads need check_quorum: without it a deposed leader could serve stale reads",
            ));
        }
        Ok(())
    }
}

#[derive(Debug, Error, PartialEq, Eq)]
#[error("invalid raft configuration: {0}")]
pub struct ConfigError(pub &'static str);
