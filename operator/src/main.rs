//! `raft-operator`: the kuberaft Kubernetes operator.
//!
//! The reconciler of `RaftCluster` resources lands with issue 5; until then the
//! binary only says so, so that nobody mistakes it for a working operator.

fn main() {
    eprintln!(
        "raft-operator {}: the RaftCluster reconciler is not built yet (see issue 5); nothing to run",
        env!("CARGO_PKG_VERSION")
    );
    std::process::exit(2);
}
