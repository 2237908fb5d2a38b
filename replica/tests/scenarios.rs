//! Scenario tests of the Raft core, written as text files in
//! `tests/scenarios/*.txt` in the style of etcd-io/raft's `testdata`.
//!
//! Each file is a script: one command per line, then `----`, then the output
//! the command must print, then a blank line. Lines starting with `#` are
//! commentary. `REWRITE=1 cargo test --test scenarios` regenerates every
//! expected output (review the diff: an expectation is a claim about correct
//! Raft behaviour, not a recording); `SCENARIO=name` runs only files whose
//! name contains `name`.
//!
//! The harness is a deterministic toy world around the real core: N cores,
//! a network that holds every message until the script delivers or drops
//! it, and a disk per node that is durable at once unless told to hold
//! writes (each `Ready` is written, acknowledged with `on_persisted`, then
//! its `persisted_messages` are sent).
//! The replicated state machine is the list of commands applied, in order;
//! a snapshot is that list, and it travels with `InstallSnapshot`.
//!
//! Commands (node lists are `1,2,3`; `all` means every live node):
//! - `cluster voters=1,2,3 [pre-vote=B] [check-quorum=B] [election=T] [heartbeat=T]
//!   [max-append-bytes=N] [max-inflight=N] [read-only=safe|lease]` — a new group;
//! - `add-node N [rejoining=B]` — start N with an empty disk (a new node, or a
//!   crashed one that lost its volume; `rejoining=true` as the replica starts
//!   such a node: no vote until `readmit N`, which works once N is a learner);
//! - `crash N` (only the disk survives) / `restart N`;
//! - `campaign N`, `tick NODES [COUNT]`, `run [COUNT]` (tick every live node,
//!   then `stabilize`, COUNT times);
//! - `propose N DATA...`, `conf-change N [add-voter=..] [add-learner=..]
//!   [remove=..] [transition=auto|joint|explicit]` or `conf-change N leave-joint`,
//!   `transfer-leader N to=M`, `read-index N CONTEXT...`, `compact N`;
//! - `msgs`, `deliver [from=..] [to=..] [type=..] [drop]` (one hop: the messages
//!   queued now), `stabilize` (deliver and process until the network is quiet);
//! - `disk N hold` (N's writes stay in flight: nothing that waits for
//!   durability is sent, and a crash loses them), `disk N sync` (they become
//!   durable, in order), `disk N auto` (sync, then durable at once again);
//! - `partition 1,2 | 3,4,5` (nodes named in different groups cannot talk;
//!   nodes not named talk to everyone), `isolate N`, `heal`;
//! - `raft-state`, `status N`, `log NODES`, `applied NODES`.
//!
//! A node handles its readies after each command, after each tick, and after
//! each batch of messages delivered together: everything that arrives
//! together is stepped before `ready` is called, as in a real event loop.
//! Messages sent to a node that crashes are lost; messages it sent before
//! crashing are still on their way.
//!
//! Every command also prints what changed on each node, one line per change,
//! consecutive identical changes of several nodes merged (`n2,n3: ...`). The
//! harness checks two safety properties after every step and prints a
//! `SAFETY VIOLATION` line if one breaks: at most one leader per term, and no
//! two nodes apply different entries at the same index.
//!
//! A case preceded by a comment starting with `# BUG(core)` documents a known
//! core bug: its expectation is the correct behaviour, a mismatch is reported
//! without failing, and a match fails so the marker gets removed.

use bytes::Bytes;
use kuberaft::raft::{
    ConfChange, ConfChangeKind, ConfChangeSingle, ConfChangeTransition, ConfState, Config, Entry,
    HardState, LogIndex, Message, MessageBody, NodeId, Payload, ProgressState, Raft,
    ReadOnlyOption, RecoveredState, Role, SnapshotMeta, Term,
};
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

// ---------------------------------------------------------------- the files

/// One command of a script and the output written under it.
struct Case {
    line: usize,
    command: String,
    expected: Vec<String>,
    known_bug: bool,
}

/// A script keeps its commentary so that a rewrite can reproduce it.
enum Item {
    Text(String),
    Case(Case),
}

fn parse_script(text: &str) -> Result<Vec<Item>, String> {
    let lines: Vec<&str> = text.lines().collect();
    let mut items = Vec::new();
    let mut i = 0;
    let mut bug_marker = false;
    while i < lines.len() {
        let line = lines[i];
        if line.trim().is_empty() || line.starts_with('#') {
            if line.starts_with("# BUG(core)") {
                bug_marker = true;
            }
            items.push(Item::Text(line.to_string()));
            i += 1;
            continue;
        }
        if lines.get(i + 1).copied() != Some("----") {
            return Err(format!(
                "line {}: a command must be followed by a line `----` (then its expected output and a blank line)",
                i + 1
            ));
        }
        let mut expected = Vec::new();
        let mut j = i + 2;
        while j < lines.len() && !lines[j].trim().is_empty() {
            expected.push(lines[j].to_string());
            j += 1;
        }
        items.push(Item::Case(Case {
            line: i + 1,
            command: line.to_string(),
            expected,
            known_bug: std::mem::take(&mut bug_marker),
        }));
        i = j + 1; // the blank line that ends the case belongs to it
    }
    Ok(items)
}

fn render_script(items: &[Item]) -> String {
    let mut out = String::new();
    for item in items {
        match item {
            Item::Text(line) => {
                out.push_str(line);
                out.push('\n');
            }
            Item::Case(case) => {
                out.push_str(&case.command);
                out.push_str("\n----\n");
                for line in &case.expected {
                    out.push_str(line);
                    out.push('\n');
                }
                out.push('\n');
            }
        }
    }
    format!("{}\n", out.trim_end())
}

/// Runs one script; returns a report of every mismatching case.
fn run_script(path: &Path, rewrite: bool) -> Result<(), String> {
    let name = path.file_name().unwrap_or_default().to_string_lossy();
    let text = std::fs::read_to_string(path).map_err(|e| format!("{name}: cannot read: {e}"))?;
    let mut items = parse_script(&text).map_err(|e| format!("{name}: {e}"))?;
    let mut world = World::default();
    let mut failures = Vec::new();
    for item in &mut items {
        let Item::Case(case) = item else { continue };
        let actual = match world.run(&case.command) {
            Ok(lines) if lines.is_empty() => vec!["ok".to_string()],
            Ok(lines) => lines,
            Err(e) => vec![format!("error: {e}")],
        };
        if actual == case.expected {
            if case.known_bug {
                failures.push(format!(
                    "{name}:{}: `{}` is marked BUG(core) but now behaves as expected: remove the marker",
                    case.line, case.command
                ));
            }
            continue;
        }
        if case.known_bug {
            eprintln!(
                "{name}:{}: known core bug still present in `{}`",
                case.line, case.command
            );
        } else if rewrite {
            case.expected = actual;
        } else {
            failures.push(format!(
                "{name}:{}: {}\n--- expected\n{}\n--- actual\n{}",
                case.line,
                case.command,
                case.expected.join("\n"),
                actual.join("\n")
            ));
        }
    }
    if rewrite {
        std::fs::write(path, render_script(&items))
            .map_err(|e| format!("{name}: cannot rewrite: {e}"))?;
    }
    if failures.is_empty() {
        Ok(())
    } else {
        Err(failures.join("\n\n"))
    }
}

#[test]
fn scenarios() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/scenarios");
    let rewrite = std::env::var_os("REWRITE").is_some();
    let only = std::env::var("SCENARIO").unwrap_or_default();
    let mut paths: Vec<_> = std::fs::read_dir(&dir)
        .expect("tests/scenarios exists")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "txt"))
        .filter(|p| p.to_string_lossy().contains(only.as_str()))
        .collect();
    paths.sort();
    assert!(!paths.is_empty(), "no scenario in {}", dir.display());
    let failures: Vec<String> = paths
        .iter()
        .filter_map(|p| run_script(p, rewrite).err())
        .collect();
    assert!(
        failures.is_empty(),
        "{} of {} scenario files failed (REWRITE=1 regenerates expectations):\n\n{}",
        failures.len(),
        paths.len(),
        failures.join("\n\n")
    );
}

// ---------------------------------------------------------------- the world

/// The state machine's snapshot: every command applied up to `meta.index`.
#[derive(Clone, Debug)]
struct AppSnapshot {
    meta: SnapshotMeta,
    commands: Vec<String>,
}

/// What survives a crash.
#[derive(Default)]
struct Disk {
    hard_state: HardState,
    snapshot: Option<AppSnapshot>,
    entries: Vec<Entry>,
}

struct Node {
    /// `None` while crashed.
    raft: Option<Raft>,
    disk: Disk,
    /// The replicated state machine: the commands applied, in order.
    commands: Vec<String>,
    applied: LogIndex,
    /// Snapshot data that arrived with the latest InstallSnapshot.
    incoming: Option<AppSnapshot>,
    /// `disk N hold`: writes stay in flight until `disk N sync`.
    hold_writes: bool,
    /// Writes handed to the disk and not durable yet, in order.
    in_flight: Vec<Write>,
    /// What the last observation saw, to print changes.
    seen: Option<Seen>,
}

#[derive(Clone, PartialEq)]
struct Seen {
    role: Role,
    term: Term,
    leader: Option<NodeId>,
    vote: Option<NodeId>,
    commit: LogIndex,
    conf: ConfState,
    rejoining: bool,
}

/// The durable part of one Ready, and what may be sent once it is durable.
struct Write {
    number: u64,
    snapshot: Option<AppSnapshot>,
    entries: Vec<Entry>,
    hard_state: Option<HardState>,
    then_send: Vec<Message>,
}

impl Write {
    fn describe(&self) -> String {
        let mut parts = Vec::new();
        if let Some(s) = &self.snapshot {
            parts.push(format!("snapshot {}@t{}", s.meta.index.0, s.meta.term.0));
        }
        if !self.entries.is_empty() {
            let entries: Vec<String> = self.entries.iter().map(fmt_entry).collect();
            parts.push(format!("entries [{}]", entries.join(", ")));
        }
        if let Some(hs) = self.hard_state {
            parts.push(format!(
                "hard state term={} vote={} commit={}",
                hs.term.0,
                fmt_opt(hs.vote),
                hs.commit.0
            ));
        }
        if parts.is_empty() {
            parts.push("nothing".into());
        }
        parts.join(", ")
    }
}

struct Envelope {
    msg: Message,
    /// The data of an InstallSnapshot, attached by the sender's application.
    snapshot: Option<AppSnapshot>,
}

/// One line of a command's output; changes of nodes are merged when alike.
enum Line {
    Plain(String),
    Change {
        prefix: String,
        node: NodeId,
        text: String,
    },
}

#[derive(Default)]
struct World {
    template: Option<Config>,
    nodes: BTreeMap<NodeId, Node>,
    network: Vec<Envelope>,
    partition: Vec<BTreeSet<NodeId>>,
    output: Vec<Line>,
    /// Written before every change line (e.g. which tick it happened on).
    prefix: String,
    /// Safety: the entry applied at each index, by whoever applied it first.
    applied_at: BTreeMap<LogIndex, (NodeId, Entry)>,
    /// Safety: the leader of each term.
    leaders: BTreeMap<Term, NodeId>,
}

type Result<T, E = String> = std::result::Result<T, E>;

/// The words of a command: positional arguments and `key=value` options.
struct Args {
    positional: Vec<String>,
    options: BTreeMap<String, String>,
}

impl Args {
    fn parse(words: &[&str]) -> Args {
        let mut positional = Vec::new();
        let mut options = BTreeMap::new();
        for w in words {
            match w.split_once('=') {
                Some((k, v)) => {
                    options.insert(k.to_string(), v.to_string());
                }
                None => positional.push(w.to_string()),
            }
        }
        Args {
            positional,
            options,
        }
    }

    fn node(&self, i: usize) -> Result<NodeId> {
        let word = self
            .positional
            .get(i)
            .ok_or_else(|| format!("missing node id (argument {})", i + 1))?;
        parse_id(word)
    }

    fn nodes(&self, key: &str) -> Result<Option<Vec<NodeId>>> {
        self.options.get(key).map(|v| parse_ids(v)).transpose()
    }

    fn flag(&self, key: &str, default: bool) -> Result<bool> {
        match self.options.get(key).map(String::as_str) {
            None => Ok(default),
            Some("true") => Ok(true),
            Some("false") => Ok(false),
            Some(v) => Err(format!("{key}={v}: expected true or false")),
        }
    }

    fn number(&self, key: &str, default: u64) -> Result<u64> {
        match self.options.get(key) {
            None => Ok(default),
            Some(v) => v
                .parse()
                .map_err(|_| format!("{key}={v}: expected a number")),
        }
    }
}

fn parse_id(word: &str) -> Result<NodeId> {
    word.trim_start_matches('n')
        .parse()
        .map(NodeId)
        .map_err(|_| format!("`{word}` is not a node id"))
}

fn parse_ids(list: &str) -> Result<Vec<NodeId>> {
    list.split(',')
        .filter(|w| !w.is_empty())
        .map(parse_id)
        .collect()
}

impl World {
    fn run(&mut self, command: &str) -> Result<Vec<String>> {
        self.output.clear();
        self.prefix.clear();
        let words: Vec<&str> = command.split_whitespace().collect();
        let (name, rest) = words.split_first().ok_or("empty command")?;
        let args = Args::parse(rest);
        if *name != "cluster" && self.template.is_none() {
            return Err("start with `cluster voters=...`".into());
        }
        match *name {
            "cluster" => self.cluster(&args)?,
            "add-node" => {
                let id = args.node(0)?;
                if self.nodes.get(&id).is_some_and(|n| n.raft.is_some()) {
                    return Err(format!(
                        "{id:?} is running: crash it first to give it a new disk"
                    ));
                }
                // rejoining=true: the empty disk of a node that was a
                // member (a lost volume), as the replica starts it.
                let disk = Disk {
                    hard_state: HardState {
                        rejoining: args.flag("rejoining", false)?,
                        ..HardState::default()
                    },
                    ..Disk::default()
                };
                self.start(id, disk)?;
            }
            "crash" => {
                let id = args.node(0)?;
                let node = self.node_mut(id)?;
                node.raft = None;
                node.incoming = None;
                node.hold_writes = false;
                let lost: Vec<String> = node.in_flight.drain(..).map(|w| w.describe()).collect();
                for write in lost {
                    self.plain(format!("{id:?} lost a write that was not durable: {write}"));
                }
                // Connections to it break: what was on its way is lost.
                self.network.retain(|env| env.msg.to != id);
            }
            "restart" => self.restart(args.node(0)?)?,
            "readmit" => self.with_raft(args.node(0)?, |raft| {
                if !raft.readmit() {
                    return Err("not re-admitted: not rejoining, or not a learner yet".into());
                }
                Ok(())
            })?,
            "campaign" => self.with_raft(args.node(0)?, |raft| {
                raft.campaign();
                Ok(())
            })?,
            "tick" => self.tick(&args)?,
            "run" => {
                let count = args.positional.first().map_or(Ok(1), |c| {
                    c.parse().map_err(|_| format!("`{c}` is not a count"))
                })?;
                for k in 1..=count {
                    self.prefix = if count > 1 {
                        format!("tick {k}: ")
                    } else {
                        String::new()
                    };
                    for id in self.live() {
                        self.with_raft(id, |raft| {
                            raft.tick();
                            Ok(())
                        })?;
                    }
                    self.stabilize(false)?;
                }
            }
            "propose" => self.propose(&args)?,
            "conf-change" => self.conf_change(&args)?,
            "transfer-leader" => {
                let to = parse_id(args.options.get("to").ok_or("missing to=")?)?;
                let id = args.node(0)?;
                let result = self.with_raft(id, |raft| Ok(raft.transfer_leader(to)))?;
                if let Err(e) = result {
                    self.plain(format!("{id:?} refused: {e}"));
                }
            }
            "read-index" => {
                let id = args.node(0)?;
                for context in &args.positional[1..] {
                    let context = context
                        .parse()
                        .map_err(|_| "read-index N CONTEXT...: a context is a number")?;
                    self.with_raft(id, |raft| {
                        raft.read_index(context);
                        Ok(())
                    })?;
                }
            }
            "compact" => self.compact(args.node(0)?)?,
            "disk" => {
                let id = args.node(0)?;
                match args.positional.get(1).map(String::as_str) {
                    Some("hold") => self.node_mut(id)?.hold_writes = true,
                    Some("sync") => self.sync(id)?,
                    Some("auto") => {
                        self.sync(id)?;
                        self.node_mut(id)?.hold_writes = false;
                    }
                    _ => return Err("disk N hold|sync|auto".into()),
                }
            }
            "msgs" => {
                for env in &self.network {
                    self.output.push(Line::Plain(fmt_message(&env.msg)));
                }
            }
            "deliver" => self.deliver(&args)?,
            "stabilize" => self.stabilize(true)?,
            "partition" => {
                self.partition = command
                    .trim_start_matches("partition")
                    .split('|')
                    .map(|group| parse_ids(group.trim()).map(|v| v.into_iter().collect()))
                    .collect::<Result<_>>()?;
            }
            "isolate" => {
                let id = args.node(0)?;
                let rest = self.nodes.keys().copied().filter(|n| *n != id).collect();
                self.partition = vec![BTreeSet::from([id]), rest];
            }
            "heal" => self.partition.clear(),
            "raft-state" => {
                for id in self.nodes.keys().copied().collect::<Vec<_>>() {
                    let line = self.state_line(id);
                    self.plain(line);
                }
            }
            "status" => self.status(args.node(0)?)?,
            "log" => {
                for id in parse_ids(args.positional.first().ok_or("log NODES")?)? {
                    let line = self.log_line(id)?;
                    self.plain(line);
                }
            }
            "applied" => {
                for id in parse_ids(args.positional.first().ok_or("applied NODES")?)? {
                    let node = self.node(id)?;
                    let line = format!(
                        "{id:?}: applied up to {}: [{}]",
                        node.applied.0,
                        node.commands.join(" ")
                    );
                    self.plain(line);
                }
            }
            other => return Err(format!("unknown command `{other}`")),
        }
        self.process_all();
        Ok(self.render())
    }

    // ----- commands -----

    fn cluster(&mut self, args: &Args) -> Result<()> {
        *self = World::default();
        let mut config = Config::new(NodeId(1));
        config.pre_vote = args.flag("pre-vote", config.pre_vote)?;
        config.check_quorum = args.flag("check-quorum", config.check_quorum)?;
        config.election_ticks = args.number("election", 10)? as u32;
        config.heartbeat_ticks = args.number("heartbeat", 1)? as u32;
        config.max_append_bytes = args.number("max-append-bytes", config.max_append_bytes)?;
        config.max_inflight_msgs = args.number("max-inflight", 256)? as usize;
        config.read_only = match args.options.get("read-only").map(String::as_str) {
            None | Some("safe") => ReadOnlyOption::Safe,
            Some("lease") => ReadOnlyOption::LeaseBased,
            Some(v) => return Err(format!("read-only={v}: expected safe or lease")),
        };
        self.template = Some(config);
        let voters = args.nodes("voters")?.ok_or("cluster needs voters=1,2,3")?;
        for &id in &voters {
            let bootstrap = RecoveredState::bootstrap(voters.clone());
            let disk = Disk {
                hard_state: bootstrap.hard_state,
                snapshot: bootstrap.snapshot.map(|meta| AppSnapshot {
                    meta,
                    commands: Vec::new(),
                }),
                entries: Vec::new(),
            };
            self.start(id, disk)?;
        }
        Ok(())
    }

    /// Starts (or restarts) `id` from what its disk holds.
    fn start(&mut self, id: NodeId, disk: Disk) -> Result<()> {
        let mut config = self.template.clone().ok_or("no cluster")?;
        config.id = id;
        config.seed = id.0;
        let state = RecoveredState {
            hard_state: disk.hard_state,
            snapshot: disk.snapshot.as_ref().map(|s| s.meta.clone()),
            entries: disk.entries.clone(),
        };
        let raft = Raft::new(config, state).map_err(|e| e.to_string())?;
        let (commands, applied) = match &disk.snapshot {
            Some(s) => (s.commands.clone(), s.meta.index),
            None => (Vec::new(), LogIndex::ZERO),
        };
        let seen = Some(Seen::of(&raft));
        self.nodes.insert(
            id,
            Node {
                raft: Some(raft),
                disk,
                commands,
                applied,
                incoming: None,
                hold_writes: false,
                in_flight: Vec::new(),
                seen,
            },
        );
        self.process(id);
        Ok(())
    }

    fn restart(&mut self, id: NodeId) -> Result<()> {
        let node = self.nodes.remove(&id).ok_or(format!("no node {id:?}"))?;
        if node.raft.is_some() {
            self.nodes.insert(id, node);
            return Err(format!("{id:?} is running: crash it first"));
        }
        self.start(id, node.disk)
    }

    fn tick(&mut self, args: &Args) -> Result<()> {
        let which = args.positional.first().ok_or("tick NODES [COUNT]")?;
        let ids = if which == "all" {
            self.live()
        } else {
            parse_ids(which)?
        };
        let count: u32 = match args.positional.get(1) {
            Some(c) => c.parse().map_err(|_| format!("`{c}` is not a count"))?,
            None => 1,
        };
        for k in 1..=count {
            if count > 1 {
                self.prefix = format!("tick {k}: ");
            }
            for &id in &ids {
                self.with_raft(id, |raft| {
                    raft.tick();
                    Ok(())
                })?;
            }
            self.process_all();
        }
        Ok(())
    }

    fn propose(&mut self, args: &Args) -> Result<()> {
        let id = args.node(0)?;
        for data in &args.positional[1..] {
            let command = Bytes::from(data.clone().into_bytes());
            match self.with_raft(id, |raft| Ok(raft.propose(command)))? {
                Ok((index, term)) => self.plain(format!(
                    "{id:?} appended {}@t{} \"{data}\"",
                    index.0, term.0
                )),
                Err(e) => self.plain(format!("{id:?} refused \"{data}\": {e}")),
            }
        }
        Ok(())
    }

    fn conf_change(&mut self, args: &Args) -> Result<()> {
        let id = args.node(0)?;
        let mut cc = ConfChange::default();
        if args.positional.get(1).map(String::as_str) != Some("leave-joint") {
            for (key, kind) in [
                ("add-voter", ConfChangeKind::AddVoter),
                ("add-learner", ConfChangeKind::AddLearner),
                ("remove", ConfChangeKind::Remove),
            ] {
                for node in args.nodes(key)?.unwrap_or_default() {
                    cc.changes.push(ConfChangeSingle { kind, node });
                }
            }
            cc.transition = match args.options.get("transition").map(String::as_str) {
                None | Some("auto") => ConfChangeTransition::Auto,
                Some("joint") => ConfChangeTransition::JointImplicit,
                Some("explicit") => ConfChangeTransition::JointExplicit,
                Some(v) => return Err(format!("transition={v}: expected auto, joint or explicit")),
            };
            if cc.changes.is_empty() {
                return Err(
                    "conf-change N add-voter=.. add-learner=.. remove=.. (or leave-joint)".into(),
                );
            }
        }
        let text = fmt_payload(&Payload::ConfChange(cc.clone()));
        match self.with_raft(id, |raft| Ok(raft.propose_conf_change(cc)))? {
            Ok((index, term)) => {
                self.plain(format!("{id:?} appended {}@t{} {text}", index.0, term.0))
            }
            Err(e) => self.plain(format!("{id:?} refused {text}: {e}")),
        }
        Ok(())
    }

    /// Takes a snapshot of `id`'s state machine and lets the core compact.
    fn compact(&mut self, id: NodeId) -> Result<()> {
        let node = self.node_mut(id)?;
        let raft = node.raft.as_mut().ok_or(format!("{id:?} is down"))?;
        let meta = raft.applied_snapshot_meta();
        node.disk.snapshot = Some(AppSnapshot {
            meta: meta.clone(),
            commands: node.commands.clone(),
        });
        node.disk.entries.retain(|e| e.index > meta.index);
        raft.compact(meta.clone());
        let first = raft.status().first_index;
        self.plain(format!(
            "{id:?} compacted its log up to {}@t{}: it now starts at index {}",
            meta.index.0, meta.term.0, first.0
        ));
        Ok(())
    }

    fn deliver(&mut self, args: &Args) -> Result<()> {
        let from = args.nodes("from")?;
        let to = args.nodes("to")?;
        let kinds: Option<Vec<String>> = args
            .options
            .get("type")
            .map(|t| t.split(',').map(|k| k.replace('-', "_")).collect());
        let drop = args.positional.iter().any(|w| w == "drop");
        let wanted = |m: &Message| {
            from.as_ref().is_none_or(|f| f.contains(&m.from))
                && to.as_ref().is_none_or(|t| t.contains(&m.to))
                && kinds
                    .as_ref()
                    .is_none_or(|k| k.iter().any(|k| k == m.body.kind()))
        };
        let (batch, rest): (Vec<Envelope>, Vec<Envelope>) = std::mem::take(&mut self.network)
            .into_iter()
            .partition(|env| wanted(&env.msg));
        self.network = rest;
        for env in batch {
            let text = fmt_message(&env.msg);
            if drop {
                self.plain(format!("dropped {text}"));
                self.lost(&env.msg);
            } else {
                match self.lost_why(&env.msg) {
                    Some(why) => {
                        self.plain(format!("lost {text} ({why})"));
                        self.lost(&env.msg);
                    }
                    None => {
                        self.plain(text);
                        self.step(env);
                    }
                }
            }
        }
        self.process_all();
        Ok(())
    }

    /// Delivers and processes until no message is left.
    fn stabilize(&mut self, report_unfinished: bool) -> Result<()> {
        for _ in 0..10_000 {
            self.process_all();
            if self.network.is_empty() {
                return Ok(());
            }
            for env in std::mem::take(&mut self.network) {
                if self.lost_why(&env.msg).is_some() {
                    self.lost(&env.msg);
                } else {
                    self.step(env);
                }
            }
        }
        if report_unfinished {
            Err("the network never went quiet".into())
        } else {
            Ok(())
        }
    }

    // ----- the network -----

    fn lost_why(&self, m: &Message) -> Option<&'static str> {
        let cut = |a: NodeId, b: NodeId| {
            let group = |n| self.partition.iter().position(|g| g.contains(&n));
            matches!((group(a), group(b)), (Some(x), Some(y)) if x != y)
        };
        if cut(m.from, m.to) {
            Some("partition")
        } else if self.nodes.get(&m.to).is_none_or(|n| n.raft.is_none()) {
            Some("recipient down")
        } else {
            None
        }
    }

    /// A message that will never arrive; a snapshot's sender learns of it as
    /// a transport would tell it.
    fn lost(&mut self, m: &Message) {
        if matches!(m.body, MessageBody::InstallSnapshot { .. }) {
            let _ = self.with_raft(m.from, |raft| {
                raft.report_snapshot(m.to, false);
                Ok(())
            });
        }
    }

    fn step(&mut self, env: Envelope) {
        let (from, to) = (env.msg.from, env.msg.to);
        let is_snapshot = matches!(env.msg.body, MessageBody::InstallSnapshot { .. });
        if let Some(node) = self.nodes.get_mut(&to)
            && env.snapshot.is_some()
        {
            node.incoming = env.snapshot;
        }
        let _ = self.with_raft(to, |raft| {
            raft.step(env.msg);
            Ok(())
        });
        if is_snapshot {
            let _ = self.with_raft(from, |raft| {
                raft.report_snapshot(to, true);
                Ok(())
            });
        }
    }

    fn send(&mut self, msg: Message) {
        let mut snapshot = None;
        if let MessageBody::InstallSnapshot { meta } = &msg.body {
            let stored = self
                .nodes
                .get(&msg.from)
                .and_then(|n| n.disk.snapshot.clone());
            match stored {
                Some(s) if s.meta == *meta => snapshot = Some(s),
                _ => self.plain(format!(
                    "HARNESS ERROR: {:?} sends a snapshot at {} it has not stored",
                    msg.from, meta.index.0
                )),
            }
        }
        self.network.push(Envelope { msg, snapshot });
    }

    // ----- one node -----

    fn node(&self, id: NodeId) -> Result<&Node> {
        self.nodes.get(&id).ok_or(format!("no node {id:?}"))
    }

    fn node_mut(&mut self, id: NodeId) -> Result<&mut Node> {
        self.nodes.get_mut(&id).ok_or(format!("no node {id:?}"))
    }

    fn live(&self) -> Vec<NodeId> {
        self.nodes
            .iter()
            .filter(|(_, n)| n.raft.is_some())
            .map(|(&id, _)| id)
            .collect()
    }

    /// Gives `f` the core of `id`, then prints what changed. The node's
    /// readies are handled later, by `process`: as in a real event loop,
    /// everything that arrives together is stepped before `ready` is called.
    fn with_raft<T>(&mut self, id: NodeId, f: impl FnOnce(&mut Raft) -> Result<T>) -> Result<T> {
        let raft = self
            .node_mut(id)?
            .raft
            .as_mut()
            .ok_or(format!("{id:?} is down"))?;
        let out = f(raft)?;
        self.observe(id);
        Ok(out)
    }

    fn process_all(&mut self) {
        for id in self.live() {
            self.process(id);
        }
    }

    /// The caller's loop of ready.rs: send, persist, acknowledge, apply.
    fn process(&mut self, id: NodeId) {
        loop {
            let Some(node) = self.nodes.get_mut(&id) else {
                return;
            };
            let Some(raft) = node.raft.as_mut() else {
                return;
            };
            if !raft.has_ready() {
                return;
            }
            let rd = raft.ready();
            let mut notes = Vec::new();
            let mut snapshot = None;
            if let Some(meta) = &rd.snapshot {
                match node.incoming.take() {
                    Some(s) if s.meta == *meta => {
                        // The state machine is restored now; the disk gets
                        // the snapshot with this ready's write.
                        node.commands = s.commands.clone();
                        node.applied = meta.index;
                        snapshot = Some(s);
                        notes.push(format!(
                            "installed snapshot {}@t{} {}",
                            meta.index.0,
                            meta.term.0,
                            fmt_conf(&meta.conf_state)
                        ));
                    }
                    _ => notes.push(format!(
                        "HARNESS ERROR: snapshot {} to install without its data",
                        meta.index.0
                    )),
                }
            }
            let write = Write {
                number: rd.number,
                snapshot,
                entries: rd.entries,
                hard_state: rd.hard_state,
                then_send: rd.persisted_messages,
            };
            let empty = write.snapshot.is_none()
                && write.entries.is_empty()
                && write.hard_state.is_none()
                && write.then_send.is_empty();
            let durable_now = if !node.hold_writes && node.in_flight.is_empty() {
                Some(write)
            } else {
                if !empty {
                    node.in_flight.push(write);
                }
                None
            };
            let mut applied = Vec::new();
            for e in &rd.committed_entries {
                if e.index != node.applied.next() {
                    notes.push(format!(
                        "HARNESS ERROR: applied {} right after {}",
                        e.index.0, node.applied.0
                    ));
                }
                node.applied = e.index;
                if let Payload::Command(data) = &e.payload {
                    node.commands
                        .push(String::from_utf8_lossy(data).into_owned());
                }
                applied.push(e.clone());
            }
            for r in &rd.read_states {
                notes.push(format!(
                    "read {} may be served at index {}",
                    r.context, r.index.0
                ));
            }
            for d in &rd.dropped_reads {
                notes.push(format!("read {} dropped", d.context));
            }
            for e in applied {
                self.check_applied(id, e);
            }
            for m in rd.messages {
                self.send(m);
            }
            if let Some(write) = durable_now {
                self.complete_write(id, write);
            }
            for text in notes {
                self.change(id, text);
            }
            self.observe(id);
        }
    }

    /// A write became durable: store it, tell the core, send what waited.
    fn complete_write(&mut self, id: NodeId, write: Write) {
        let Some(node) = self.nodes.get_mut(&id) else {
            return;
        };
        if let Some(s) = write.snapshot {
            node.disk.snapshot = Some(s);
            node.disk.entries.clear();
        }
        if let Some(first) = write.entries.first() {
            node.disk.entries.retain(|e| e.index < first.index);
            node.disk.entries.extend(write.entries.iter().cloned());
        }
        if let Some(hs) = write.hard_state {
            node.disk.hard_state = hs;
        }
        if let Some(raft) = node.raft.as_mut() {
            raft.on_persisted(write.number);
        }
        for m in write.then_send {
            self.send(m);
        }
        self.observe(id);
    }

    /// Makes every write in flight on `id` durable, in order.
    fn sync(&mut self, id: NodeId) -> Result<()> {
        let writes = std::mem::take(&mut self.node_mut(id)?.in_flight);
        for write in writes {
            self.plain(format!("{id:?} synced {}", write.describe()));
            self.complete_write(id, write);
        }
        Ok(())
    }

    /// Prints what changed on `id` since the last observation.
    fn observe(&mut self, id: NodeId) {
        let Some(node) = self.nodes.get_mut(&id) else {
            return;
        };
        let Some(raft) = &node.raft else { return };
        let now = Seen::of(raft);
        let Some(before) = node.seen.replace(now.clone()) else {
            return;
        };
        let mut parts = Vec::new();
        if (before.role, before.term, before.leader) != (now.role, now.term, now.leader) {
            parts.push(fmt_role(&now));
        }
        if (before.term, before.vote) != (now.term, now.vote)
            && let Some(v) = now.vote
            && v != id
        {
            parts.push(format!("voted for {v:?}"));
        }
        if before.commit != now.commit {
            parts.push(format!("commit={}", now.commit.0));
        }
        if before.conf != now.conf {
            parts.push(fmt_conf(&now.conf));
        }
        if before.rejoining && !now.rejoining {
            parts.push("re-admitted: may vote again".into());
        }
        if now.role == Role::Leader {
            let first = *self.leaders.entry(now.term).or_insert(id);
            if first != id {
                parts.push(format!(
                    "SAFETY VIOLATION: {first:?} was already leader at term {}",
                    now.term.0
                ));
            }
        }
        if !parts.is_empty() {
            self.change(id, parts.join(", "));
        }
    }

    fn check_applied(&mut self, id: NodeId, e: Entry) {
        let index = e.index;
        match self.applied_at.get(&index) {
            Some((other, first)) if *first != e => {
                let line = format!(
                    "SAFETY VIOLATION: {id:?} applied {} but {other:?} applied {} at index {}",
                    fmt_entry(&e),
                    fmt_entry(first),
                    index.0
                );
                self.plain(line);
            }
            Some(_) => {}
            None => {
                self.applied_at.insert(index, (id, e));
            }
        }
    }

    // ----- output -----

    fn plain(&mut self, line: String) {
        self.output.push(Line::Plain(line));
    }

    fn change(&mut self, node: NodeId, text: String) {
        let prefix = self.prefix.clone();
        self.output.push(Line::Change { prefix, node, text });
    }

    /// The output, with alike consecutive changes of several nodes merged.
    fn render(&mut self) -> Vec<String> {
        // (prefix, nodes, text) of each line; plain lines have no nodes.
        let mut lines: Vec<(String, Vec<NodeId>, String)> = Vec::new();
        for line in std::mem::take(&mut self.output) {
            match line {
                Line::Plain(text) => lines.push((String::new(), Vec::new(), text)),
                Line::Change { prefix, node, text } => match lines.last_mut() {
                    Some((p, nodes, t))
                        if *p == prefix
                            && *t == text
                            && !nodes.is_empty()
                            && !nodes.contains(&node) =>
                    {
                        nodes.push(node)
                    }
                    _ => lines.push((prefix, vec![node], text)),
                },
            }
        }
        lines
            .into_iter()
            .map(|(prefix, nodes, text)| {
                if nodes.is_empty() {
                    return text;
                }
                let names: Vec<String> = nodes.iter().map(|n| format!("{n:?}")).collect();
                format!("{prefix}{}: {text}", names.join(","))
            })
            .collect()
    }

    fn state_line(&self, id: NodeId) -> String {
        let node = &self.nodes[&id];
        match &node.raft {
            None => {
                let hs = node.disk.hard_state;
                format!(
                    "{id:?}: down (on disk: term={} vote={} commit={} last={})",
                    hs.term.0,
                    fmt_opt(hs.vote),
                    hs.commit.0,
                    disk_last(&node.disk).0
                )
            }
            Some(raft) => {
                let s = Seen::of(raft);
                format!(
                    "{id:?}: {} commit={} applied={} last={} {}",
                    fmt_role(&s),
                    s.commit.0,
                    raft.applied().0,
                    raft.status().last_index.0,
                    fmt_conf(&s.conf)
                )
            }
        }
    }

    fn status(&mut self, id: NodeId) -> Result<()> {
        let node = self.node(id)?;
        let raft = node.raft.as_ref().ok_or(format!("{id:?} is down"))?;
        let s = raft.status();
        let mut lines = vec![format!(
            "{id:?}: {} vote={} commit={} applied={} log=[{},{}] {}",
            fmt_role(&Seen::of(raft)),
            fmt_opt(s.vote),
            s.commit.0,
            s.applied.0,
            s.first_index.0,
            s.last_index.0,
            fmt_conf(&s.conf_state)
        )];
        if let Some(t) = s.lead_transferee {
            lines.push(format!("  transferring leadership to {t:?}"));
        }
        for (peer, p) in &s.progress {
            let state = match p.state {
                ProgressState::Probe => "probe",
                ProgressState::Replicate => "replicate",
                ProgressState::Snapshot => "snapshot",
            };
            lines.push(format!(
                "  {peer:?}: {state} match={} next={} inflight={}{}",
                p.matched.0,
                p.next.0,
                p.inflight,
                if p.recent_active { " active" } else { "" }
            ));
        }
        for line in lines {
            self.plain(line);
        }
        Ok(())
    }

    /// What `id` holds durably: its snapshot, then its entries.
    fn log_line(&self, id: NodeId) -> Result<String> {
        let disk = &self.node(id)?.disk;
        let mut parts = Vec::new();
        if let Some(s) = &disk.snapshot {
            parts.push(format!("[snapshot {}@t{}]", s.meta.index.0, s.meta.term.0));
        }
        parts.extend(disk.entries.iter().map(fmt_entry));
        if parts.is_empty() {
            parts.push("(empty)".into());
        }
        Ok(format!("{id:?}: {}", parts.join(", ")))
    }
}

fn disk_last(disk: &Disk) -> LogIndex {
    disk.entries
        .last()
        .map(|e| e.index)
        .or(disk.snapshot.as_ref().map(|s| s.meta.index))
        .unwrap_or_default()
}

impl Seen {
    fn of(raft: &Raft) -> Seen {
        let s = raft.status();
        Seen {
            role: s.role,
            term: s.term,
            leader: s.leader,
            vote: s.vote,
            commit: s.commit,
            conf: s.conf_state,
            rejoining: s.rejoining,
        }
    }
}

// ---------------------------------------------------------------- formatting

fn fmt_opt(id: Option<NodeId>) -> String {
    id.map_or("-".into(), |id| format!("{id:?}"))
}

fn fmt_role(s: &Seen) -> String {
    let t = s.term.0;
    match (s.role, s.leader) {
        (Role::Leader, _) => format!("leader at term {t}"),
        (Role::Candidate, _) => format!("candidate at term {t}"),
        (Role::PreCandidate, _) => format!("pre-candidate at term {t}"),
        (Role::Follower, Some(l)) => format!("follower of {l:?} at term {t}"),
        (Role::Follower, None) => format!("follower at term {t} (no leader)"),
    }
}

fn fmt_set(ids: &[NodeId]) -> String {
    let ids: Vec<String> = ids.iter().map(|i| i.0.to_string()).collect();
    format!("({})", ids.join(","))
}

fn fmt_conf(c: &ConfState) -> String {
    let mut s = format!("voters={}", fmt_set(&c.voters));
    if c.is_joint() {
        s.push_str(&format!("&&{}", fmt_set(&c.voters_outgoing)));
    }
    if !c.learners.is_empty() {
        s.push_str(&format!(" learners={}", fmt_set(&c.learners)));
    }
    if !c.learners_next.is_empty() {
        s.push_str(&format!(" learners-next={}", fmt_set(&c.learners_next)));
    }
    if c.auto_leave {
        s.push_str(" auto-leave");
    }
    s
}

fn fmt_payload(p: &Payload) -> String {
    match p {
        Payload::Empty => "noop".into(),
        Payload::Command(data) => format!("\"{}\"", String::from_utf8_lossy(data)),
        Payload::ConfChange(cc) if cc.is_leave_joint() => "conf(leave-joint)".into(),
        Payload::ConfChange(cc) => {
            let changes: Vec<String> = cc
                .changes
                .iter()
                .map(|c| {
                    let kind = match c.kind {
                        ConfChangeKind::AddVoter => "add-voter",
                        ConfChangeKind::AddLearner => "add-learner",
                        ConfChangeKind::Remove => "remove",
                    };
                    format!("{kind} {}", c.node.0)
                })
                .collect();
            let transition = match cc.transition {
                ConfChangeTransition::Auto => "",
                ConfChangeTransition::JointImplicit => "joint: ",
                ConfChangeTransition::JointExplicit => "explicit joint: ",
            };
            format!("conf({transition}{})", changes.join(", "))
        }
    }
}

fn fmt_entry(e: &Entry) -> String {
    format!("{}@t{} {}", e.index.0, e.term.0, fmt_payload(&e.payload))
}

fn fmt_message(m: &Message) -> String {
    let body = match &m.body {
        MessageBody::Append {
            prev_index,
            prev_term,
            entries,
            commit,
        } => {
            let entries: Vec<String> = entries.iter().map(fmt_entry).collect();
            format!(
                "append after {}@t{} commit={} [{}]",
                prev_index.0,
                prev_term.0,
                commit.0,
                entries.join(", ")
            )
        }
        MessageBody::AppendResponse {
            index,
            reject: None,
        } => format!("append ok up to {}", index.0),
        MessageBody::AppendResponse {
            index,
            reject: Some(hint),
        } => format!(
            "append rejected after {} (hint: my log may match up to {}@t{})",
            index.0, hint.index.0, hint.term.0
        ),
        MessageBody::Heartbeat { commit, read_round } => {
            format!("heartbeat commit={}{}", commit.0, fmt_round(*read_round))
        }
        MessageBody::HeartbeatResponse { read_round } => {
            format!("heartbeat ok{}", fmt_round(*read_round))
        }
        MessageBody::RequestVote {
            pre_vote,
            last_index,
            last_term,
            transfer,
        } => format!(
            "{} last={}@t{}{}",
            if *pre_vote { "pre-vote" } else { "vote" },
            last_index.0,
            last_term.0,
            if *transfer { " (leader transfer)" } else { "" }
        ),
        MessageBody::RequestVoteResponse { pre_vote, granted } => format!(
            "{} {}",
            if *pre_vote { "pre-vote" } else { "vote" },
            if *granted { "granted" } else { "rejected" }
        ),
        MessageBody::InstallSnapshot { meta } => format!(
            "snapshot {}@t{} {}",
            meta.index.0,
            meta.term.0,
            fmt_conf(&meta.conf_state)
        ),
        MessageBody::TimeoutNow => "timeout-now".into(),
        MessageBody::ReadIndex { context } => format!("read-index {context}"),
        MessageBody::ReadIndexResponse { context, index } => match index {
            Some(i) => format!("read-index {context} at index {}", i.0),
            None => format!("read-index {context} refused"),
        },
    };
    format!("{:?}->{:?} t{} {body}", m.from, m.to, m.term.0)
}

fn fmt_round(round: u64) -> String {
    if round == 0 {
        String::new()
    } else {
        format!(" read-round={round}")
    }
}
