//! Membership: which single step brings the cluster closer to what the
//! spec asks, derived from observed state only (so a restarted operator
//! picks up where it stopped, and every step is safe to repeat).
//!
//! The planner never performs I/O. [`plan`] answers with at most one
//! consensus step (add a learner, promote, remove, transfer leadership,
//! restart a pod) plus the StatefulSet size; the reconciler (or the
//! real-replica tests) carry the step out and observe again.

mod execute;
mod observed;
mod plan;
mod view;

pub use execute::{Directory, execute};
pub use observed::{Observed, PodView, ReplicaView};
pub use plan::{Blocked, Plan, Progress, Step, plan};
pub use view::{CATCH_UP_SLACK, ClusterView, GroupView};

#[cfg(test)]
mod tests;
