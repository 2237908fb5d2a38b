//! Linearizability of a recorded [`History`], key by key.
//!
//! Each key is an independent register (get, put, compare-and-swap), so the
//! history is checked one key at a time (P-compositionality: a history is
//! linearizable iff each object's sub-history is). The search is the
//! Wing–Gong algorithm with Lowe's memoization of (linearized set, state),
//! from the `todc-utils` crate (`WGLChecker`). stateright's
//! `LinearizabilityTester` was the first candidate, but its search has no
//! memoization and explodes on histories of a few hundred operations with
//! indeterminate ones among them.
//!
//! Indeterminate operations follow Porcupine and Knossos: a write that got
//! no answer is given a response at the end of time, so it may take effect
//! at any point after its invocation, or (linearized after everything
//! else) not at all; its result is unconstrained. A read without an answer
//! constrains nothing and is left out.

use crate::history::{Call, History, Observed, Op, Outcome};
use std::collections::BTreeMap;
use std::time::Duration;
use todc_utils::linearizability::WGLChecker;
use todc_utils::linearizability::history::{Action, History as WglHistory};
use todc_utils::specifications::Specification;

/// The register's state: absent, or the unique value written last.
pub type State = Option<u64>;

/// One operation as the checker sees it: the call and its answer (`None`:
/// no answer, any result is allowed).
#[derive(Clone, Debug)]
pub enum RegisterOp {
    Get(Observed),
    Put(u64),
    Cas {
        expected: Option<u64>,
        value: u64,
        answer: Option<(bool, Observed)>,
    },
}

/// A register of unique values with compare-and-swap.
pub struct CasRegister;

fn observe(state: &State) -> Observed {
    state.map_or(Observed::Absent, Observed::Value)
}

impl Specification for CasRegister {
    type State = State;
    type Operation = RegisterOp;

    fn init() -> State {
        None
    }

    fn apply(op: &RegisterOp, state: &State) -> (bool, State) {
        match op {
            RegisterOp::Get(seen) => (*seen == observe(state), *state),
            RegisterOp::Put(v) => (true, Some(*v)),
            RegisterOp::Cas {
                expected,
                value,
                answer,
            } => {
                let matches = state == expected;
                let next = if matches { Some(*value) } else { *state };
                let valid = match answer {
                    None => true,
                    Some((true, _)) => matches,
                    Some((false, current)) => !matches && *current == observe(state),
                };
                (valid, if valid { next } else { *state })
            }
        }
    }
}

/// What the check of one key found.
#[derive(Clone, Debug)]
pub struct KeyVerdict {
    pub key: String,
    /// Operations checked (answered ones and indeterminate writes).
    pub ops: usize,
    pub indeterminate: usize,
    pub linearizable: bool,
}

/// The checker's form of `op`, or `None` if it constrains nothing.
fn checked(op: &Op) -> Option<RegisterOp> {
    match (&op.call, &op.outcome) {
        (Call::Get, Outcome::Got(seen)) => Some(RegisterOp::Get(seen.clone())),
        (Call::Get, _) => None,
        (Call::Put { value }, _) => Some(RegisterOp::Put(*value)),
        (Call::Cas { expected, value }, outcome) => Some(RegisterOp::Cas {
            expected: *expected,
            value: *value,
            answer: match outcome {
                Outcome::Cas { swapped, current } => Some((*swapped, current.clone())),
                _ => None,
            },
        }),
    }
}

/// Whether the operations of one key (in any order) are linearizable.
pub fn check_key(ops: &[&Op]) -> KeyVerdict {
    let key = ops.first().map(|o| o.key.clone()).unwrap_or_default();
    let checked_ops: Vec<&Op> = ops
        .iter()
        .copied()
        .filter(|o| checked(o).is_some())
        .collect();
    KeyVerdict {
        key,
        ops: checked_ops.len(),
        indeterminate: checked_ops.iter().filter(|o| o.is_indeterminate()).count(),
        linearizable: linearizable_until(ops, Duration::MAX),
    }
}

/// Whether the history of one key as it stood at time `cut` is
/// linearizable: operations invoked after `cut` are left out, and those
/// that had not been answered by then count as indeterminate. A history
/// that is not linearizable at `cut` is not at any later cut either (a
/// later cut only adds operations and answers), which is what lets
/// [`first_violation`] search for the earliest one.
fn linearizable_until(ops: &[&Op], cut: Duration) -> bool {
    // (time, 0 = call / 1 = response, process, operation). At equal times
    // calls sort first: the two operations count as concurrent, the
    // permissive reading.
    let mut events: Vec<(Duration, u8, usize, RegisterOp)> = Vec::new();
    for op in ops.iter().filter(|o| o.invoked <= cut) {
        let answered = !op.is_indeterminate() && op.completed <= cut;
        let rop = if answered {
            checked(op)
        } else {
            checked(&Op {
                outcome: Outcome::Indeterminate(String::new()),
                ..(*op).clone()
            })
        };
        let Some(rop) = rop else { continue };
        let process = events.len() / 2;
        let end = if answered {
            op.completed
        } else {
            Duration::MAX
        };
        events.push((op.invoked, 0, process, rop.clone()));
        events.push((end, 1, process, rop));
    }
    if events.is_empty() {
        return true;
    }
    events.sort_by_key(|e| (e.0, e.1, e.2));
    let actions = events
        .into_iter()
        .map(|(_, kind, process, op)| {
            let action = if kind == 0 {
                Action::Call(op)
            } else {
                Action::Response(op)
            };
            (process, action)
        })
        .collect();
    WGLChecker::<CasRegister>::is_linearizable(WglHistory::from_actions(actions))
}

/// Where a key's history stops being linearizable: the first answer no
/// order of the operations can explain, the operations that overlapped
/// it, and the answered operations just before it.
#[derive(Clone, Debug)]
pub struct Violation {
    pub culprit: Op,
    pub concurrent: Vec<Op>,
    pub before: Vec<Op>,
}

/// How many answered operations before the culprit a [`Violation`] shows.
const CONTEXT: usize = 6;

/// The earliest answer of one key's operations that makes the history
/// non-linearizable (a binary search over answer times), or `None` if the
/// whole history is linearizable.
pub fn first_violation(ops: &[&Op]) -> Option<Violation> {
    let mut answers: Vec<&Op> = ops
        .iter()
        .copied()
        .filter(|o| !o.is_indeterminate() && checked(o).is_some())
        .collect();
    answers.sort_by_key(|o| o.completed);
    if linearizable_until(ops, Duration::MAX) || answers.is_empty() {
        return None;
    }
    // Invariant: the cut at answers[hi] is violated; the cut just before
    // answers[lo] is not.
    let (mut lo, mut hi) = (0, answers.len() - 1);
    while lo < hi {
        let mid = lo + (hi - lo) / 2;
        if linearizable_until(ops, answers[mid].completed) {
            lo = mid + 1;
        } else {
            hi = mid;
        }
    }
    let culprit = answers[hi].clone();
    let concurrent = ops
        .iter()
        .filter(|o| {
            let end = if o.is_indeterminate() {
                Duration::MAX
            } else {
                o.completed
            };
            !std::ptr::eq(**o, answers[hi])
                && o.invoked <= culprit.completed
                && end >= culprit.invoked
        })
        .map(|o| (*o).clone())
        .collect();
    let earlier: Vec<&Op> = answers
        .iter()
        .copied()
        .filter(|o| o.completed < culprit.invoked)
        .collect();
    let before = earlier[earlier.len().saturating_sub(CONTEXT)..]
        .iter()
        .map(|o| (*o).clone())
        .collect();
    Some(Violation {
        culprit,
        concurrent,
        before,
    })
}

impl std::fmt::Display for Violation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(
            f,
            "first answer that no order explains:\n    {}",
            self.culprit
        )?;
        writeln!(f, "  overlapping it ({}):", self.concurrent.len())?;
        for op in &self.concurrent {
            writeln!(f, "    {op}")?;
        }
        writeln!(f, "  answered just before it:")?;
        for op in &self.before {
            writeln!(f, "    {op}")?;
        }
        Ok(())
    }
}

/// Checks every key of `history`.
pub fn check(history: &History) -> Vec<KeyVerdict> {
    let ops = history.ops();
    let mut by_key: BTreeMap<&str, Vec<&Op>> = BTreeMap::new();
    for op in &ops {
        by_key.entry(&op.key).or_default().push(op);
    }
    by_key.values().map(|ops| check_key(ops)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn op(invoked: u64, completed: u64, call: Call, outcome: Outcome) -> Op {
        Op {
            process: 0,
            key: "k".into(),
            call,
            invoked: Duration::from_millis(invoked),
            completed: Duration::from_millis(completed),
            outcome,
        }
    }

    fn get(i: u64, c: u64, v: Option<u64>) -> Op {
        let seen = v.map_or(Observed::Absent, Observed::Value);
        op(i, c, Call::Get, Outcome::Got(seen))
    }

    fn put(i: u64, c: u64, value: u64) -> Op {
        op(i, c, Call::Put { value }, Outcome::Put)
    }

    fn lost(i: u64, call: Call) -> Op {
        op(i, i, call, Outcome::Indeterminate("timeout".into()))
    }

    fn verdict(ops: &[Op]) -> bool {
        check_key(&ops.iter().collect::<Vec<_>>()).linearizable
    }

    #[test]
    fn sequential_history_is_linearizable() {
        assert!(verdict(&[
            get(0, 1, None),
            put(2, 3, 1),
            get(4, 5, Some(1))
        ]));
    }

    #[test]
    fn a_stale_read_after_an_acknowledged_write_is_not() {
        assert!(!verdict(&[put(0, 1, 1), put(2, 3, 2), get(4, 5, Some(1))]));
    }

    #[test]
    fn concurrent_operations_may_take_effect_in_either_order() {
        assert!(verdict(&[
            put(0, 10, 1),
            put(1, 11, 2),
            get(2, 3, Some(2)),
            get(12, 13, Some(1))
        ]));
        // Once a read saw 1 after 2, no later read may see 2 again.
        assert!(!verdict(&[
            put(0, 10, 1),
            put(1, 11, 2),
            get(12, 13, Some(1)),
            get(14, 15, Some(2))
        ]));
    }

    #[test]
    fn an_indeterminate_write_may_happen_late_or_never_but_only_once() {
        let lost_put = lost(0, Call::Put { value: 7 });
        assert!(verdict(&[lost_put.clone(), get(5, 6, None)]), "never");
        assert!(
            verdict(&[lost_put.clone(), get(5, 6, None), get(20, 21, Some(7))]),
            "late"
        );
        assert!(
            !verdict(&[
                lost_put,
                get(5, 6, Some(7)),
                put(7, 8, 1),
                get(9, 10, Some(7))
            ]),
            "not twice"
        );
    }

    #[test]
    fn a_failed_cas_must_report_what_was_there() {
        let cas = |i, c, expected, value, swapped, current: Option<u64>| {
            let current = current.map_or(Observed::Absent, Observed::Value);
            op(
                i,
                c,
                Call::Cas { expected, value },
                Outcome::Cas { swapped, current },
            )
        };
        assert!(verdict(&[
            put(0, 1, 1),
            cas(2, 3, Some(1), 2, true, None),
            get(4, 5, Some(2))
        ]));
        assert!(verdict(&[
            put(0, 1, 1),
            cas(2, 3, Some(5), 2, false, Some(1))
        ]));
        assert!(!verdict(&[
            put(0, 1, 1),
            cas(2, 3, Some(5), 2, false, Some(9))
        ]));
        assert!(!verdict(&[
            put(0, 1, 1),
            cas(2, 3, Some(1), 2, false, Some(1))
        ]));
        assert!(!verdict(&[put(0, 1, 1), cas(2, 3, None, 2, true, None)]));
    }

    #[test]
    fn a_value_nobody_wrote_is_a_violation() {
        let foreign = op(0, 1, Call::Get, Outcome::Got(Observed::Foreign("x".into())));
        assert!(!verdict(&[foreign]));
    }

    #[test]
    fn the_first_violation_names_the_stale_read() {
        let ops = [
            put(0, 1, 1),
            put(2, 3, 2),
            get(4, 5, Some(2)),
            get(6, 7, Some(1)),
            put(8, 9, 3),
            get(10, 11, Some(3)),
        ];
        let refs: Vec<&Op> = ops.iter().collect();
        let v = first_violation(&refs).expect("a violation");
        assert_eq!(v.culprit.invoked, Duration::from_millis(6));
        assert!(v.concurrent.is_empty(), "{v}");
        assert_eq!(v.before.len(), 3, "{v}");
        assert!(v.to_string().contains("get -> v1"), "{v}");
        assert!(first_violation(&refs[..3]).is_none());
    }

    #[test]
    fn a_failed_read_constrains_nothing() {
        let failed = lost(2, Call::Get);
        assert!(verdict(&[put(0, 1, 1), failed]));
    }
}
