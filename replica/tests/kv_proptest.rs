//! Property tests of the key-value state machine: determinism across
//! replicas, agreement with a plain map, exactly-once retries, snapshot
//! round trips, and refusal of corrupt snapshots.

/// Named so that `cargo test kv` selects these tests.
mod kv {
    use bytes::Bytes;
    use kuberaft::kv::{
        Applied, ClientId, Command, CommandResult, KvStateMachine, Op, SessionPolicy, SessionRef,
    };
    use kuberaft::raft::{Entry, GroupId, LogIndex, Payload, Term};
    use proptest::prelude::*;
    use std::collections::BTreeMap;
    use std::time::Duration;

    const G: GroupId = GroupId(3);

    /// One step of a generated history.
    #[derive(Clone, Debug)]
    enum Step {
        /// A fresh command, with or without a session.
        Fresh { client: Option<u8>, op: Op },
        /// A client re-sends one of its earlier commands (`back` picks which).
        Retry { client: u8, back: usize },
        /// An entry whose bytes are not a valid command.
        Garbage(Vec<u8>),
        /// A leader's no-op.
        Noop,
        /// The leader's clock moves on.
        Advance(u32),
    }

    fn key() -> impl Strategy<Value = Bytes> {
        // A handful of keys, so writes collide; now and then an invalid one.
        prop_oneof![
            8 => (0u8..6).prop_map(|i| Bytes::from(format!("k{i}"))),
            1 => Just(Bytes::new()),
        ]
    }

    fn value() -> impl Strategy<Value = Bytes> {
        prop::collection::vec(0u8..3, 0..4).prop_map(Bytes::from)
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            (key(), value()).prop_map(|(key, value)| Op::Put { key, value }),
            key().prop_map(|key| Op::Delete { key }),
            (key(), prop::option::of(value()), prop::option::of(value()))
                .prop_map(|(key, expected, new)| Op::CompareAndSwap { key, expected, new }),
            // The member directory shares the log with the map.
            (1u64..4, value(), any::<u64>()).prop_map(|(id, address, incarnation)| Op::SetMember {
                id,
                name: Bytes::from(format!("m{id}")),
                address,
                incarnation,
            }),
            (1u64..4).prop_map(|id| Op::RemoveMember { id }),
        ]
    }

    fn step() -> impl Strategy<Value = Step> {
        prop_oneof![
            10 => (prop::option::of(1u8..4), op()).prop_map(|(client, op)| Step::Fresh { client, op }),
            4 => (1u8..4, 0usize..3).prop_map(|(client, back)| Step::Retry { client, back }),
            1 => prop::collection::vec(any::<u8>(), 0..12).prop_map(Step::Garbage),
            1 => Just(Step::Noop),
            2 => (0u32..5_000).prop_map(Step::Advance),
        ]
    }

    /// Turns steps into log entries, numbering each client's commands.
    fn entries(steps: &[Step]) -> Vec<Entry> {
        let mut sent: BTreeMap<u8, Vec<Bytes>> = BTreeMap::new();
        let mut now = 1_000_000u64;
        let mut out = Vec::new();
        for s in steps {
            let payload = match s {
                Step::Fresh { client, op } => {
                    let session = client.map(|c| {
                        let seq = sent.get(&c).map_or(0, Vec::len) as u64 + 1;
                        SessionRef {
                            client: ClientId::new(u64::from(c)).expect("non-zero"),
                            seq,
                        }
                    });
                    let bytes = Command {
                        session,
                        proposed_at_ms: now,
                        op: op.clone(),
                    }
                    .encode();
                    if let Some(c) = client {
                        sent.entry(*c).or_default().push(bytes.clone());
                    }
                    Payload::Command(bytes)
                }
                Step::Retry { client, back } => match sent.get(client) {
                    Some(cmds) if *back < cmds.len() => {
                        Payload::Command(cmds[cmds.len() - 1 - back].clone())
                    }
                    _ => Payload::Empty,
                },
                Step::Garbage(bytes) => Payload::Command(Bytes::copy_from_slice(bytes)),
                Step::Noop => Payload::Empty,
                Step::Advance(ms) => {
                    now += u64::from(*ms);
                    Payload::Empty
                }
            };
            out.push(Entry {
                term: Term(1),
                index: LogIndex(out.len() as u64 + 1),
                payload,
            });
        }
        out
    }

    fn apply(m: &mut KvStateMachine, e: &Entry) -> Option<CommandResult> {
        match m.apply(e).expect("entries are in order") {
            Applied::Command(r) => Some(r),
            Applied::Nothing => None,
            Applied::Skipped => panic!("nothing is re-delivered here"),
        }
    }

    fn policy(short: bool) -> SessionPolicy {
        if short {
            SessionPolicy {
                ttl: Duration::from_secs(3),
                max_sessions: 2,
            }
        } else {
            SessionPolicy::default()
        }
    }

    /// The effect of an op on a plain map, as the state machine documents it.
    fn model_apply(model: &mut BTreeMap<Bytes, Bytes>, op: &Op) {
        if op.validate().is_err() {
            return;
        }
        match op {
            Op::Put { key, value } => {
                model.insert(key.clone(), value.clone());
            }
            Op::Delete { key } => {
                model.remove(key);
            }
            Op::CompareAndSwap { key, expected, new } => {
                if model.get(key) == expected.as_ref() {
                    match new {
                        Some(v) => model.insert(key.clone(), v.clone()),
                        None => model.remove(key),
                    };
                }
            }
            // The directory is not part of the map.
            Op::SetMember { .. } | Op::RemoveMember { .. } => {}
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]

        #[test]
        fn replicas_applying_the_same_log_agree(
            steps in prop::collection::vec(step(), 0..120),
            short in any::<bool>(),
        ) {
            let log = entries(&steps);
            let mut one = KvStateMachine::new(G, policy(short));
            let mut two = KvStateMachine::new(G, policy(short));
            for e in &log {
                prop_assert_eq!(apply(&mut one, e), apply(&mut two, e));
                prop_assert_eq!(one.digest(), two.digest());
            }
            prop_assert!(one.iter().eq(two.iter()));
            prop_assert!(one.session_count() <= policy(short).max_sessions);
        }

        #[test]
        fn retries_apply_once_and_repeat_the_first_answer(
            steps in prop::collection::vec(step(), 0..120),
        ) {
            // Sessions never expire here, so every (client, seq) applies once and
            // the map must equal a plain map fed each fresh command once.
            let log = entries(&steps);
            let mut m = KvStateMachine::new(G, SessionPolicy::default());
            let mut model = BTreeMap::new();
            let mut answers: BTreeMap<(u8, usize), CommandResult> = BTreeMap::new();
            let mut issued: BTreeMap<u8, usize> = BTreeMap::new();
            for (s, e) in steps.iter().zip(&log) {
                let result = apply(&mut m, e);
                match s {
                    Step::Fresh { client, op } => {
                        model_apply(&mut model, op);
                        if let Some(c) = client {
                            let n = issued.entry(*c).or_default();
                            *n += 1;
                            answers.insert((*c, *n), result.expect("a command"));
                        }
                    }
                    Step::Retry { client, back } => {
                        let n = issued.get(client).copied().unwrap_or(0);
                        if *back == 0 && n > 0 {
                            prop_assert_eq!(result.as_ref(), answers.get(&(*client, n)));
                        } else if *back < n {
                            let err = result.expect("a command").expect_err("stale");
                            prop_assert!(err.to_string().contains("stale request"), "{}", err);
                        }
                    }
                    Step::Garbage(_) => {
                        prop_assert!(matches!(result, Some(Err(_))));
                    }
                    Step::Noop | Step::Advance(_) => {}
                }
            }
            prop_assert!(m.iter().eq(model.iter()), "map {:?} model {:?}",
                m.iter().collect::<Vec<_>>(), model);
        }

        #[test]
        fn a_snapshot_round_trips_and_the_log_continues_identically(
            steps in prop::collection::vec(step(), 1..120),
            cut in any::<prop::sample::Index>(),
            short in any::<bool>(),
        ) {
            let log = entries(&steps);
            let cut = cut.index(log.len());
            let mut original = KvStateMachine::new(G, policy(short));
            for e in &log[..cut] {
                apply(&mut original, e);
            }
            let mut bytes = Vec::new();
            original.write_snapshot(&mut bytes).expect("write to a Vec");
            let mut restored = KvStateMachine::new(G, policy(short));
            restored.restore_snapshot(&bytes[..]).expect("restore");
            prop_assert_eq!(restored.digest(), original.digest());
            prop_assert_eq!(restored.members(), original.members());
            for e in &log[cut..] {
                prop_assert_eq!(apply(&mut original, e), apply(&mut restored, e));
            }
            prop_assert_eq!(restored.digest(), original.digest());
        }

        #[test]
        fn a_damaged_snapshot_is_refused_and_the_state_kept(
            steps in prop::collection::vec(step(), 1..60),
            at in any::<prop::sample::Index>(),
            flip in 1u8..=255,
            truncate in any::<bool>(),
        ) {
            let log = entries(&steps);
            let mut source = KvStateMachine::new(G, SessionPolicy::default());
            for e in &log {
                apply(&mut source, e);
            }
            let mut bytes = Vec::new();
            source.write_snapshot(&mut bytes).expect("write to a Vec");
            let at = at.index(bytes.len());
            if truncate {
                bytes.truncate(at);
            } else {
                // One damaged byte: CRC32C detects every error burst of up to 32
                // bits, so this must never pass.
                bytes[at] ^= flip;
            }
            let mut target = KvStateMachine::new(G, SessionPolicy::default());
            for e in &log[..log.len() / 2] {
                apply(&mut target, e);
            }
            let before = target.digest();
            prop_assert!(target.restore_snapshot(&bytes[..]).is_err());
            prop_assert_eq!(target.digest(), before);
        }

        #[test]
        fn any_bytes_decode_without_panicking_and_apply_alike(
            raw in prop_oneof![
                prop::collection::vec(any::<u8>(), 0..64),
                // Valid commands with one byte changed, inserted or removed.
                (op(), any::<u64>(), any::<prop::sample::Index>(), any::<u8>(), 0u8..3).prop_map(
                    |(op, at_ms, at, byte, how)| {
                        let mut raw = Command { session: None, proposed_at_ms: at_ms, op }
                            .encode()
                            .to_vec();
                        let i = at.index(raw.len());
                        match how {
                            0 => raw[i] = byte,
                            1 => raw.insert(i, byte),
                            _ => { raw.remove(i); }
                        }
                        raw
                    }
                ),
            ],
        ) {
            let bytes = Bytes::from(raw);
            if let Ok(c) = Command::decode(&bytes) {
                prop_assert_eq!(c.encode(), bytes.clone(), "decoding is canonical or fails");
            }
            let e = Entry { term: Term(1), index: LogIndex(1), payload: Payload::Command(bytes) };
            let mut one = KvStateMachine::new(G, SessionPolicy::default());
            let mut two = KvStateMachine::new(G, SessionPolicy::default());
            prop_assert_eq!(apply(&mut one, &e), apply(&mut two, &e));
            prop_assert_eq!(one.digest(), two.digest());
        }
    }
}
