//! The member directory: which replicas make up the cluster and where each
//! is reached.
//!
//! The configuration's peer list seeds it; group 0's replicated records
//! (written by the admin API when a member is added, moved or removed, see
//! `kv::Op::SetMember`) override and extend it. Because the records are
//! replicated, every replica, including one that caught up from a snapshot,
//! learns where a new member is, and a removed member stays removed even if
//! an old configuration file still lists it.

use super::Member;
use crate::kv::MemberRecord;
use crate::raft::NodeId;
use std::collections::BTreeMap;

#[derive(Clone, Debug)]
pub struct Directory {
    configured: Vec<Member>,
    members: Vec<Member>,
}

impl Directory {
    pub fn new(configured: &[Member], records: &BTreeMap<u64, MemberRecord>) -> Directory {
        let mut d = Directory {
            configured: configured.to_vec(),
            members: Vec::new(),
        };
        d.refresh(records);
        d
    }

    /// Recomputes the directory from group 0's records; whether it changed.
    pub fn refresh(&mut self, records: &BTreeMap<u64, MemberRecord>) -> bool {
        let mut merged: BTreeMap<NodeId, Member> =
            self.configured.iter().map(|m| (m.id, m.clone())).collect();
        for (&id, record) in records {
            let id = NodeId(id);
            if record.is_removed() {
                merged.remove(&id);
            } else {
                merged.insert(
                    id,
                    Member {
                        id,
                        name: String::from_utf8_lossy(&record.name).into_owned(),
                        address: String::from_utf8_lossy(&record.address).into_owned(),
                    },
                );
            }
        }
        let members: Vec<Member> = merged.into_values().collect();
        let changed = members != self.members;
        self.members = members;
        changed
    }

    /// Every member, by id.
    pub fn members(&self) -> &[Member] {
        &self.members
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    fn address(d: &Directory, id: u64) -> Option<&str> {
        d.members()
            .iter()
            .find(|m| m.id == NodeId(id))
            .map(|m| m.address.as_str())
    }

    fn member(id: u64, address: &str) -> Member {
        Member {
            id: NodeId(id),
            name: format!("n{id}"),
            address: address.into(),
        }
    }

    fn record(name: &str, address: &str) -> MemberRecord {
        MemberRecord {
            name: Bytes::copy_from_slice(name.as_bytes()),
            address: Bytes::copy_from_slice(address.as_bytes()),
            incarnation: 7,
        }
    }

    #[test]
    fn records_extend_and_override_the_configuration_and_tombstones_remove() {
        let configured = [member(1, "a:1"), member(2, "b:1")];
        let mut records = BTreeMap::new();
        let mut d = Directory::new(&configured, &records);
        assert_eq!(d.members(), &configured);

        records.insert(3, record("n3", "c:1"));
        records.insert(2, record("n2", "b:2"));
        assert!(d.refresh(&records));
        assert_eq!(address(&d, 2), Some("b:2"));
        assert_eq!(address(&d, 3), Some("c:1"));
        assert!(!d.refresh(&records), "nothing changed");

        records.insert(1, record("", ""));
        assert!(d.refresh(&records));
        assert_eq!(address(&d, 1), None, "removed despite the configuration");
        assert_eq!(d.members().len(), 2);
    }
}
