//! Scenario tests of the key-value state machine: what a client sees for
//! each command, exactly-once sessions, reads, and snapshots.

/// Named so that `cargo test kv` selects these tests.
mod kv {
    use bytes::Bytes;
    use kuberaft::kv::{
        Applied, ClientId, Command, CommandError, CommandResult, KvStateMachine, LimitError,
        MAX_KEY_BYTES, MAX_SCAN_BYTES, MAX_SCAN_LIMIT, MAX_VALUE_BYTES, Op, Response,
        SessionPolicy, SessionRef, SnapshotError, group_for_key,
    };
    use kuberaft::raft::{
        ConfChange, ConfChangeKind, Entry, GroupId, LogIndex, NodeId, Payload, Term,
    };
    use std::time::Duration;

    const G: GroupId = GroupId(7);

    fn b(s: &str) -> Bytes {
        Bytes::copy_from_slice(s.as_bytes())
    }

    fn put(k: &str, v: &str) -> Op {
        Op::Put {
            key: b(k),
            value: b(v),
        }
    }

    fn client(id: u64) -> ClientId {
        ClientId::new(id).expect("non-zero")
    }

    /// A test harness: a machine plus the next index and the replicated time.
    struct Sm {
        m: KvStateMachine,
        now_ms: u64,
    }

    impl Sm {
        fn new() -> Sm {
            Sm::with_policy(SessionPolicy::default())
        }

        fn with_policy(policy: SessionPolicy) -> Sm {
            Sm {
                m: KvStateMachine::new(G, policy),
                now_ms: 1_000_000,
            }
        }

        fn apply_payload(&mut self, payload: Payload) -> Applied {
            let index = self.m.applied_index().next();
            self.m
                .apply(&Entry {
                    term: Term(2),
                    index,
                    payload,
                })
                .expect("in order")
        }

        fn raw(&mut self, bytes: Bytes) -> CommandResult {
            match self.apply_payload(Payload::Command(bytes)) {
                Applied::Command(r) => r,
                other => panic!("a command entry gave {other:?}"),
            }
        }

        fn cmd(&mut self, session: Option<(u64, u64)>, op: Op) -> CommandResult {
            let c = Command {
                session: session.map(|(c, seq)| SessionRef {
                    client: client(c),
                    seq,
                }),
                proposed_at_ms: self.now_ms,
                op,
            };
            self.raw(c.encode())
        }

        fn run(&mut self, op: Op) -> CommandResult {
            self.cmd(None, op)
        }

        fn get(&self, k: &str) -> Option<&str> {
            self.m
                .get(k.as_bytes())
                .map(|v| std::str::from_utf8(v).expect("utf8"))
        }
    }

    #[test]
    fn put_get_delete_and_compare_and_swap_answer_as_documented() {
        let mut sm = Sm::new();
        assert_eq!(sm.run(put("a", "1")), Ok(Response::Put));
        assert_eq!(sm.get("a"), Some("1"));
        assert_eq!(sm.run(put("a", "2")), Ok(Response::Put));
        assert_eq!(sm.get("a"), Some("2"));

        let cas = |expected: Option<&str>, new: Option<&str>| Op::CompareAndSwap {
            key: b("a"),
            expected: expected.map(b),
            new: new.map(b),
        };
        assert_eq!(
            sm.run(cas(Some("1"), Some("3"))),
            Ok(Response::CompareAndSwap {
                swapped: false,
                current: Some(b("2"))
            })
        );
        assert_eq!(
            sm.run(cas(None, Some("3"))),
            Ok(Response::CompareAndSwap {
                swapped: false,
                current: Some(b("2"))
            }),
            "expecting absence fails on a present key"
        );
        assert_eq!(
            sm.run(cas(Some("2"), Some("3"))),
            Ok(Response::CompareAndSwap {
                swapped: true,
                current: Some(b("3"))
            })
        );
        assert_eq!(
            sm.run(cas(Some("3"), None)),
            Ok(Response::CompareAndSwap {
                swapped: true,
                current: None
            }),
            "a swap to nothing deletes"
        );
        assert_eq!(sm.get("a"), None);
        assert_eq!(
            sm.run(cas(None, Some("new"))),
            Ok(Response::CompareAndSwap {
                swapped: true,
                current: Some(b("new"))
            }),
            "create-if-absent"
        );
        assert_eq!(
            sm.run(Op::Delete { key: b("a") }),
            Ok(Response::Delete { existed: true })
        );
        assert_eq!(
            sm.run(Op::Delete { key: b("a") }),
            Ok(Response::Delete { existed: false })
        );
        assert!(sm.m.is_empty());
        assert_eq!(sm.m.data_bytes(), 0);
        assert_eq!(sm.m.applied_index(), LogIndex(9));
    }

    #[test]
    fn entries_apply_in_order_only() {
        let mut m = KvStateMachine::empty_at(G, SessionPolicy::default(), LogIndex(1), Term(1));
        let noop = |index| Entry {
            term: Term(2),
            index: LogIndex(index),
            payload: Payload::Empty,
        };
        assert_eq!(
            m.apply(&noop(1)),
            Ok(Applied::Skipped),
            "the bootstrap index is applied"
        );
        let err = m.apply(&noop(3)).unwrap_err();
        assert!(err.to_string().contains("needs entry 2 next"), "{err}");
        assert_eq!(m.applied_index(), LogIndex(1), "a gap changes nothing");
        assert_eq!(m.apply(&noop(2)), Ok(Applied::Nothing));
        let cc = Entry {
            term: Term(3),
            index: LogIndex(3),
            payload: Payload::ConfChange(ConfChange::single(ConfChangeKind::AddLearner, NodeId(4))),
        };
        assert_eq!(m.apply(&cc), Ok(Applied::Nothing));
        assert_eq!(
            (m.applied_index(), m.applied_term()),
            (LogIndex(3), Term(3))
        );
    }

    #[test]
    fn an_undecodable_command_is_the_same_error_everywhere_and_changes_nothing() {
        let mut one = Sm::new();
        let mut two = Sm::new();
        for sm in [&mut one, &mut two] {
            sm.run(put("k", "v")).expect("put");
        }
        let before = one.m.digest();
        for garbage in [
            &b""[..],
            b"\x01",
            b"\x07\x01\x00",
            b"\x01\x01\x00\x00\x00\xff",
        ] {
            let r1 = one.raw(Bytes::copy_from_slice(garbage));
            let r2 = two.raw(Bytes::copy_from_slice(garbage));
            assert!(matches!(r1, Err(CommandError::Malformed(_))), "{r1:?}");
            assert_eq!(r1, r2);
        }
        let after = one.m.digest();
        assert_eq!(after, two.m.digest());
        assert_eq!((after.keys, after.data), (before.keys, before.data));
        assert_eq!(after.applied, LogIndex(5), "the index still moves");
    }

    #[test]
    fn oversized_keys_and_values_fail_on_apply_with_the_limit() {
        let mut sm = Sm::new();
        let big_key = Bytes::from(vec![b'k'; MAX_KEY_BYTES + 1]);
        let big_value = Bytes::from(vec![0; MAX_VALUE_BYTES + 1]);
        assert_eq!(
            sm.run(Op::Put {
                key: big_key.clone(),
                value: b("v")
            }),
            Err(CommandError::Limit(LimitError::KeyTooLarge {
                len: MAX_KEY_BYTES + 1,
                max: MAX_KEY_BYTES
            }))
        );
        let r = sm.run(Op::CompareAndSwap {
            key: b("k"),
            expected: None,
            new: Some(big_value.clone()),
        });
        assert!(matches!(
            r,
            Err(CommandError::Limit(LimitError::ValueTooLarge { .. }))
        ));
        assert_eq!(
            sm.run(Op::Delete { key: Bytes::new() }),
            Err(CommandError::Limit(LimitError::EmptyKey))
        );
        let maximal = Bytes::from(vec![1; MAX_VALUE_BYTES]);
        let key = Bytes::from(vec![b'k'; MAX_KEY_BYTES]);
        assert_eq!(
            sm.run(Op::Put {
                key: key.clone(),
                value: maximal.clone()
            }),
            Ok(Response::Put)
        );
        assert_eq!(sm.m.get(&key), Some(&maximal));
        assert_eq!(sm.m.len(), 1);
    }

    #[test]
    fn a_retried_command_applies_once_and_gets_the_first_answer() {
        let mut sm = Sm::new();
        let c = 0xabc;
        assert_eq!(sm.cmd(Some((c, 1)), put("x", "from-c")), Ok(Response::Put));
        // Another client overwrites x; a retry of c's put must not undo that.
        sm.run(put("x", "from-other")).expect("put");
        assert_eq!(sm.cmd(Some((c, 1)), put("x", "from-c")), Ok(Response::Put));
        assert_eq!(sm.get("x"), Some("from-other"));

        let cas = Op::CompareAndSwap {
            key: b("x"),
            expected: Some(b("from-other")),
            new: Some(b("swapped")),
        };
        let first = sm.cmd(Some((c, 2)), cas.clone());
        assert_eq!(
            first,
            Ok(Response::CompareAndSwap {
                swapped: true,
                current: Some(b("swapped"))
            })
        );
        // Applied again, the CAS would fail; the retry gets the cached success.
        assert_eq!(sm.cmd(Some((c, 2)), cas), first);
        assert_eq!(
            sm.cmd(Some((c, 1)), put("x", "from-c")),
            Err(CommandError::StaleRequest {
                client: client(c),
                seq: 1,
                latest: 2
            })
        );
        assert_eq!(sm.get("x"), Some("swapped"));
        // Errors of applying are cached too.
        let empty = Op::Delete { key: Bytes::new() };
        let err = sm.cmd(Some((c, 5)), empty.clone());
        assert_eq!(err, Err(CommandError::Limit(LimitError::EmptyKey)));
        assert_eq!(
            sm.cmd(Some((c, 5)), put("ignored", "ignored")),
            err,
            "cached by seq"
        );
        assert_eq!(sm.get("ignored"), None);
    }

    #[test]
    fn a_session_must_start_at_one() {
        let mut sm = Sm::new();
        let err = sm.cmd(Some((9, 4)), put("k", "v")).unwrap_err();
        assert_eq!(
            err,
            CommandError::UnknownSession {
                client: client(9),
                seq: 4
            }
        );
        assert!(err.to_string().contains("new client id"), "{err}");
        assert_eq!(sm.get("k"), None);
        assert_eq!(sm.m.session_count(), 0);
    }

    #[test]
    fn sessions_expire_in_replicated_time() {
        let ttl = Duration::from_secs(60);
        let mut sm = Sm::with_policy(SessionPolicy {
            ttl,
            max_sessions: 1000,
        });
        sm.cmd(Some((1, 1)), put("a", "1")).expect("put");
        // Time as proposed by the leader: 60 s later, the session is still there.
        sm.now_ms += 60_000;
        sm.run(put("tick", "")).expect("put");
        assert_eq!(sm.m.session_count(), 1);
        assert_eq!(
            sm.cmd(Some((1, 1)), put("a", "1")),
            Ok(Response::Put),
            "retry"
        );
        // A leader whose clock runs behind does not turn time back.
        sm.now_ms = 1_000;
        sm.run(put("tick", "")).expect("put");
        assert_eq!(sm.m.clock_ms(), 1_060_000);
        // The retry refreshed the session; 60.001 s after it, it is gone.
        sm.now_ms = 1_060_000 + 60_001;
        sm.run(put("tick", "")).expect("put");
        assert_eq!(sm.m.session_count(), 0);
        assert_eq!(
            sm.cmd(Some((1, 2)), put("a", "2")),
            Err(CommandError::UnknownSession {
                client: client(1),
                seq: 2
            })
        );
        assert_eq!(sm.get("a"), Some("1"));
    }

    #[test]
    fn the_least_recently_active_session_is_evicted_at_the_cap() {
        let mut sm = Sm::with_policy(SessionPolicy {
            ttl: Duration::from_secs(3600),
            max_sessions: 3,
        });
        for c in 1..=3 {
            sm.now_ms += 1;
            sm.cmd(Some((c, 1)), put("k", "v")).expect("put");
        }
        sm.now_ms += 1;
        sm.cmd(Some((1, 2)), put("k", "v"))
            .expect("client 1 is active again");
        sm.now_ms += 1;
        sm.cmd(Some((4, 1)), put("k", "v"))
            .expect("a fourth client");
        assert_eq!(sm.m.session_count(), 3);
        assert!(matches!(
            sm.cmd(Some((2, 2)), put("k", "v")),
            Err(CommandError::UnknownSession { .. })
        ));
        assert_eq!(sm.cmd(Some((3, 1)), put("k", "other")), Ok(Response::Put));
        assert_eq!(
            sm.get("k"),
            Some("v"),
            "client 3's retry was answered from its session"
        );
    }

    #[test]
    fn scans_page_through_a_prefix() {
        let mut sm = Sm::new();
        for k in ["a", "b/1", "b/2", "b/3", "b/4", "b0", "c"] {
            sm.run(put(k, k)).expect("put");
        }
        let keys = |p: &kuberaft::kv::ScanPage| -> Vec<String> {
            p.entries
                .iter()
                .map(|(k, _)| String::from_utf8(k.to_vec()).expect("utf8"))
                .collect()
        };
        let page = sm.m.scan(b"b/", None, 3);
        assert_eq!(keys(&page), ["b/1", "b/2", "b/3"]);
        assert_eq!(page.next, Some(b("b/4")));
        let page = sm.m.scan(b"b/", page.next.as_deref(), 3);
        assert_eq!(keys(&page), ["b/4"]);
        assert_eq!(page.next, None);
        assert_eq!(
            keys(&sm.m.scan(b"", None, 0)).len(),
            7,
            "limit 0 means the maximum"
        );
        assert_eq!(
            keys(&sm.m.scan(b"b/", Some(b"a"), 10)).len(),
            4,
            "start below the prefix"
        );
        assert!(sm.m.scan(b"b/", Some(b"c"), 10).entries.is_empty());
        assert!(sm.m.scan(b"zz", None, 10).entries.is_empty());
        assert_eq!(sm.m.scan(b"a", None, 1).entries[0], (b("a"), b("a")));
    }

    #[test]
    fn scans_are_bounded_by_count_and_bytes() {
        let mut sm = Sm::new();
        let big = Bytes::from(vec![0; MAX_VALUE_BYTES]);
        for i in 0..6 {
            sm.run(Op::Put {
                key: b(&format!("big/{i}")),
                value: big.clone(),
            })
            .expect("put");
        }
        let page = sm.m.scan(b"big/", None, 100);
        assert_eq!(page.entries.len(), MAX_SCAN_BYTES / MAX_VALUE_BYTES - 1);
        assert_eq!(page.next, Some(b("big/3")));
        for i in 0..(MAX_SCAN_LIMIT + 5) {
            sm.run(put(&format!("small/{i:06}"), "")).expect("put");
        }
        let page = sm.m.scan(b"small/", None, usize::MAX);
        assert_eq!(page.entries.len(), MAX_SCAN_LIMIT);
    }

    fn populated() -> Sm {
        let mut sm = Sm::new();
        for i in 0..200 {
            sm.now_ms += 7;
            sm.cmd(
                Some((i % 5 + 1, i / 5 + 1)),
                put(&format!("key/{i:03}"), &"v".repeat(i as usize)),
            )
            .expect("put");
        }
        sm.cmd(
            Some((9, 1)),
            Op::CompareAndSwap {
                key: b("key/001"),
                expected: None,
                new: None,
            },
        )
        .expect("failed cas");
        sm
    }

    #[test]
    fn a_snapshot_restores_the_same_state() {
        let sm = populated();
        let mut buf = Vec::new();
        let info = sm.m.write_snapshot(&mut buf).expect("write");
        assert_eq!(info.bytes, buf.len() as u64);
        assert_eq!((info.pairs, info.sessions), (200, 6));

        let mut other = Sm::new();
        other.run(put("stale", "state")).expect("put");
        let restored = other.m.restore_snapshot(&buf[..]).expect("restore");
        assert_eq!(restored, info);
        assert_eq!(other.m.digest(), sm.m.digest());
        assert_eq!(other.get("stale"), None);
        assert_eq!(other.m.iter().count(), 200);
        assert_eq!(other.m.data_bytes(), sm.m.data_bytes());
        // Sessions came along: a retry is answered from the restored session.
        other.now_ms = sm.now_ms;
        assert_eq!(
            other.cmd(Some((9, 1)), put("key/001", "x")),
            Ok(Response::CompareAndSwap {
                swapped: false,
                current: Some(b("v"))
            })
        );
    }

    #[test]
    fn a_corrupt_or_truncated_snapshot_is_refused_and_changes_nothing() {
        let sm = populated();
        let mut good = Vec::new();
        sm.m.write_snapshot(&mut good).expect("write");

        let mut target = Sm::new();
        target.run(put("mine", "kept")).expect("put");
        let before = target.m.digest();
        let check = |target: &mut Sm, bytes: &[u8]| -> SnapshotError {
            let err = target
                .m
                .restore_snapshot(bytes)
                .expect_err("must be refused");
            assert_eq!(
                target.m.digest(),
                before,
                "state changed by a refused snapshot"
            );
            err
        };

        for len in (0..good.len())
            .step_by(97)
            .chain([good.len() - 1, good.len() - 4])
        {
            let err = check(&mut target, &good[..len]);
            assert!(
                matches!(err, SnapshotError::Truncated { .. }),
                "prefix of {len}: {err}"
            );
        }
        for pos in (0..good.len()).step_by(13) {
            let mut bad = good.clone();
            bad[pos] ^= 0x20;
            check(&mut target, &bad);
        }
        let mut trailing = good.clone();
        trailing.push(0);
        let err = check(&mut target, &trailing);
        assert!(err.to_string().contains("follow the trailer"), "{err}");

        let mut flipped = good.clone();
        let mid = good.len() / 2;
        flipped[mid] ^= 1;
        let err = check(&mut target, &flipped);
        assert!(err.to_string().contains("corrupt"), "{err}");

        let err = check(
            &mut target,
            b"PK\x03\x04 not a snapshot at all.................",
        );
        assert!(matches!(err, SnapshotError::BadMagic { .. }), "{err}");
        let mut v9 = good.clone();
        v9[8] = 9;
        assert!(matches!(
            check(&mut target, &v9),
            SnapshotError::UnsupportedVersion { found: 9, .. }
        ));

        let mut elsewhere = KvStateMachine::new(GroupId(8), SessionPolicy::default());
        let err = elsewhere.restore_snapshot(&good[..]).unwrap_err();
        assert!(
            err.to_string()
                .contains("belongs to group 7, not to group 8"),
            "{err}"
        );
        assert_eq!(target.get("mine"), Some("kept"));
    }

    /// Version 1 snapshots (before the member directory) are still read:
    /// a replica upgraded in place restarts from the snapshot it has.
    #[test]
    fn a_version_1_snapshot_is_still_read() {
        let sm = populated();
        let mut v2 = Vec::new();
        sm.m.write_snapshot(&mut v2).expect("write");
        // Version 2 without members differs from version 1 only in the
        // version byte and the end record: tag 0, body length, then the
        // counts of pairs (200, two varint bytes), sessions (6) and, in
        // version 2 only, members (0).
        let trailer = v2.len() - 4;
        let end_v2 = [0u8, 4, 0xc8, 0x01, 6, 0];
        assert_eq!(&v2[trailer - end_v2.len()..trailer], &end_v2);
        let mut v1 = v2[..trailer - end_v2.len()].to_vec();
        v1.extend_from_slice(&[0, 3, 0xc8, 0x01, 6]);
        v1[8] = 1;
        let crc = crc32c::crc32c(&v1);
        v1.extend_from_slice(&crc.to_le_bytes());

        let mut other = Sm::new();
        other
            .m
            .restore_snapshot(&v1[..])
            .expect("a version 1 snapshot");
        assert_eq!(other.m.digest(), sm.m.digest());
    }

    #[test]
    fn digests_tell_replicas_apart() {
        let mut one = Sm::new();
        let mut two = Sm::new();
        one.run(put("k", "v1")).expect("put");
        two.run(put("k", "v2")).expect("put");
        assert_ne!(one.m.digest(), two.m.digest());
        two.run(put("k", "v1")).expect("put");
        one.run(put("k", "v1")).expect("put");
        assert_eq!(one.m.digest(), two.m.digest(), "same state, same index");
        one.cmd(Some((3, 1)), put("k", "v1")).expect("put");
        two.run(put("k", "v1")).expect("put");
        let (d1, d2) = (one.m.digest(), two.m.digest());
        assert_eq!(d1.data, d2.data);
        assert_ne!(d1.sessions, d2.sessions, "sessions are part of the state");
    }

    #[test]
    fn keys_map_to_groups_by_a_pinned_hash() {
        assert_eq!(group_for_key(b"user/1", 16), GroupId(10));
        assert_eq!(group_for_key(b"user/1", 1), GroupId(0));
    }
}
