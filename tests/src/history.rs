//! The recorded history of a fault run: every client operation with when it
//! was invoked, when it completed and what it returned, as the checkers of
//! [`crate::linearizability`] and the durability check read it.
//!
//! Register values are unique numbers (`v<n>`), so a read says exactly which
//! write it saw. An operation that did not complete with an answer is
//! indeterminate: a write may or may not have taken effect (at any time
//! after its invocation); a read that failed tells nothing and is kept only
//! for the record.

use serde_json::json;
use std::io::Write;
use std::path::Path;
use std::sync::Mutex;
use std::time::Duration;
use tokio::time::Instant;

/// What a client asked of a register key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Call {
    /// A linearizable get.
    Get,
    Put {
        value: u64,
    },
    /// Set `value` if the register holds `expected` (`None`: is absent).
    Cas {
        expected: Option<u64>,
        value: u64,
    },
}

/// What a read found in a register.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Observed {
    Absent,
    Value(u64),
    /// Bytes no client of this run wrote.
    Foreign(String),
}

/// How an operation ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    Got(Observed),
    Put,
    /// A CAS answered: whether it swapped and, if not, what it found.
    Cas {
        swapped: bool,
        current: Observed,
    },
    /// No answer (a timeout, an unreachable cluster): a write may or may
    /// not have happened; a read tells nothing.
    Indeterminate(String),
}

/// One operation of one client process.
#[derive(Clone, Debug)]
pub struct Op {
    /// The logical process (a client gets a new one after an indeterminate
    /// operation, as in Jepsen: the old one may still be in flight).
    pub process: u64,
    pub key: String,
    pub call: Call,
    /// Since the start of the history.
    pub invoked: Duration,
    pub completed: Duration,
    pub outcome: Outcome,
}

impl Op {
    /// Whether the operation may have changed the register.
    pub fn may_write(&self) -> bool {
        !matches!(self.call, Call::Get)
    }

    pub fn is_indeterminate(&self) -> bool {
        matches!(self.outcome, Outcome::Indeterminate(_))
    }

    pub fn json(&self) -> serde_json::Value {
        let call = match &self.call {
            Call::Get => json!({"f": "get"}),
            Call::Put { value } => json!({"f": "put", "value": value}),
            Call::Cas { expected, value } => {
                json!({"f": "cas", "expected": expected, "value": value})
            }
        };
        let outcome = match &self.outcome {
            Outcome::Got(o) => json!({"type": "ok", "read": observed_json(o)}),
            Outcome::Put => json!({"type": "ok"}),
            Outcome::Cas { swapped, current } => {
                json!({"type": "ok", "swapped": swapped, "current": observed_json(current)})
            }
            Outcome::Indeterminate(why) => json!({"type": "info", "error": why}),
        };
        json!({
            "process": self.process,
            "key": self.key,
            "call": call,
            "invoked_us": self.invoked.as_micros() as u64,
            "completed_us": self.completed.as_micros() as u64,
            "outcome": outcome,
        })
    }
}

/// One line for a failure message: `p3 get -> v12 (invoked 1.204 s, answered 1.250 s)`.
impl std::fmt::Display for Op {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let value = |v: &Option<u64>| v.map_or("absent".to_string(), |v| format!("v{v}"));
        match &self.call {
            Call::Get => write!(f, "p{} get", self.process)?,
            Call::Put { value: v } => write!(f, "p{} put v{v}", self.process)?,
            Call::Cas { expected, value: v } => {
                write!(f, "p{} cas {} -> v{v}", self.process, value(expected))?
            }
        }
        match &self.outcome {
            Outcome::Got(seen) => write!(f, " -> {seen}")?,
            Outcome::Put => write!(f, " -> ok")?,
            Outcome::Cas { swapped: true, .. } => write!(f, " -> swapped")?,
            Outcome::Cas { current, .. } => write!(f, " -> not swapped, found {current}")?,
            Outcome::Indeterminate(why) => write!(f, " -> no answer ({why})")?,
        }
        write!(f, " (invoked {:.3} s", self.invoked.as_secs_f64())?;
        if self.is_indeterminate() {
            write!(f, ")")
        } else {
            write!(f, ", answered {:.3} s)", self.completed.as_secs_f64())
        }
    }
}

impl std::fmt::Display for Observed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Observed::Absent => write!(f, "absent"),
            Observed::Value(v) => write!(f, "v{v}"),
            Observed::Foreign(s) => write!(f, "foreign bytes {s:?}"),
        }
    }
}

fn observed_json(o: &Observed) -> serde_json::Value {
    match o {
        Observed::Absent => serde_json::Value::Null,
        Observed::Value(v) => json!(v),
        Observed::Foreign(s) => json!({ "foreign": s }),
    }
}

/// The bytes a register value is written as.
pub fn encode_value(v: u64) -> Vec<u8> {
    format!("v{v}").into_bytes()
}

/// What a read of a register returned.
pub fn decode_value(found: bool, bytes: &[u8]) -> Observed {
    if !found {
        return Observed::Absent;
    }
    std::str::from_utf8(bytes)
        .ok()
        .and_then(|s| s.strip_prefix('v'))
        .and_then(|s| s.parse().ok())
        .map_or_else(
            || Observed::Foreign(String::from_utf8_lossy(bytes).into_owned()),
            Observed::Value,
        )
}

/// A write-once key of the durability check and whether it was acknowledged.
#[derive(Clone, Debug)]
pub struct UniqueWrite {
    pub key: String,
    pub value: String,
    pub invoked: Duration,
    pub acked: bool,
}

/// Everything the clients did, shared between them.
#[derive(Debug)]
pub struct History {
    start: Instant,
    ops: Mutex<Vec<Op>>,
    unique: Mutex<Vec<UniqueWrite>>,
}

impl History {
    pub fn new() -> History {
        History {
            start: Instant::now(),
            ops: Mutex::new(Vec::new()),
            unique: Mutex::new(Vec::new()),
        }
    }

    /// Time since the history began.
    pub fn now(&self) -> Duration {
        self.start.elapsed()
    }

    pub fn start(&self) -> Instant {
        self.start
    }

    pub fn record(&self, op: Op) {
        self.ops.lock().expect("not poisoned").push(op);
    }

    pub fn record_unique(&self, w: UniqueWrite) {
        self.unique.lock().expect("not poisoned").push(w);
    }

    /// The register operations, in order of invocation.
    pub fn ops(&self) -> Vec<Op> {
        let mut ops = self.ops.lock().expect("not poisoned").clone();
        ops.sort_by_key(|o| o.invoked);
        ops
    }

    pub fn unique_writes(&self) -> Vec<UniqueWrite> {
        self.unique.lock().expect("not poisoned").clone()
    }

    /// Operations answered since `t` (for recovery figures).
    pub fn answered_since(&self, t: Duration) -> usize {
        self.ops
            .lock()
            .expect("not poisoned")
            .iter()
            .filter(|o| o.invoked >= t && !o.is_indeterminate())
            .count()
    }

    /// Writes the history as JSON lines, one operation a line, in order of
    /// invocation, then the write-once keys.
    pub fn write_to(&self, path: &Path) -> std::io::Result<()> {
        let mut out = std::io::BufWriter::new(std::fs::File::create(path)?);
        for op in self.ops() {
            writeln!(out, "{}", op.json())?;
        }
        for w in self.unique_writes() {
            writeln!(
                out,
                "{}",
                json!({"unique_key": w.key, "value": w.value,
                       "invoked_us": w.invoked.as_micros() as u64, "acked": w.acked})
            )?;
        }
        out.flush()
    }
}

impl Default for History {
    fn default() -> Self {
        History::new()
    }
}
