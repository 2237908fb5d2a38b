//! Many Raft groups on one node (filled in with the core).
