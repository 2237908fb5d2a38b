//! The clients of a fault run: several concurrent clients doing puts,
//! compare-and-swaps and linearizable gets on a small set of register keys,
//! and now and then a write of a write-once key for the durability check,
//! every operation recorded in a [`History`].
//!
//! Register keys live for `key_lifetime` and are then replaced by a fresh
//! set (`r/<epoch>/<k>`), as Jepsen's independent keys are: each key's
//! history stays small enough for the linearizability search. Each client
//! has its own connection, bound to an address of its own
//! (`127.0.<subnet>.<200 + client>`), so cutting links between replicas
//! never cuts a client off by accident; a client talking to a replica cut
//! off from the leader sees what a real one would. The load is bounded in
//! operations and in time, and each client pauses a little between two
//! operations.

use crate::history::{
    Call, History, Observed, Op, Outcome, UniqueWrite, decode_value, encode_value,
};
use kuberaft::client::{Client, ClientOptions};
use kuberaft_proto::kv::Consistency;
use rand::{Rng, SeedableRng};
use rand_xoshiro::Xoshiro256PlusPlus;
use std::net::Ipv4Addr;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;
use tokio::task::JoinSet;

/// The first host byte of the clients' own addresses.
pub const CLIENT_HOST: u8 = 200;

/// What the clients do.
#[derive(Clone, Debug)]
pub struct Workload {
    pub clients: usize,
    /// Register keys alive at a time.
    pub keys: usize,
    pub key_lifetime: Duration,
    /// One operation's deadline, retries included: past it the operation is
    /// indeterminate.
    pub op_timeout: Duration,
    /// Upper bound of the pause between two operations of a client.
    pub think: Duration,
    /// Per client.
    pub max_ops: usize,
    /// Of 100 operations, how many are write-once writes.
    pub unique_percent: u32,
}

impl Default for Workload {
    fn default() -> Self {
        Workload {
            clients: 5,
            keys: 4,
            key_lifetime: Duration::from_secs(10),
            op_timeout: Duration::from_millis(1500),
            think: Duration::from_millis(20),
            max_ops: 100_000,
            unique_percent: 10,
        }
    }
}

/// The clients while they run.
pub struct RunningWorkload {
    stop: watch::Sender<bool>,
    tasks: JoinSet<()>,
}

impl Workload {
    /// Starts the clients against `endpoints`; client `c` binds
    /// `subnet_ip(CLIENT_HOST + c)`. Randomness from `seed`.
    pub fn start(
        &self,
        history: Arc<History>,
        endpoints: &[String],
        subnet_ip: impl Fn(u8) -> Ipv4Addr,
        seed: u64,
    ) -> RunningWorkload {
        let (stop, stop_rx) = watch::channel(false);
        let mut tasks = JoinSet::new();
        for c in 0..self.clients {
            let host = CLIENT_HOST + u8::try_from(c).expect("fewer than 50 clients");
            let client = Client::new(
                endpoints,
                ClientOptions {
                    timeout: self.op_timeout,
                    attempt_timeout: self.op_timeout.min(Duration::from_millis(750)),
                    local_ip: Some(subnet_ip(host).into()),
                    ..ClientOptions::default()
                },
            )
            .expect("the harness's own endpoints are valid");
            let worker = ClientWorker {
                id: c as u64,
                clients: self.clients as u64,
                client,
                history: history.clone(),
                workload: self.clone(),
                rng: Xoshiro256PlusPlus::seed_from_u64(seed ^ (0x5eed_0000 + c as u64)),
                process: c as u64,
                next_value: 0,
                last_seen: Default::default(),
            };
            tasks.spawn(worker.run(stop_rx.clone()));
        }
        RunningWorkload { stop, tasks }
    }
}

impl RunningWorkload {
    /// Stops the clients after their current operation and waits for them.
    pub async fn stop(mut self) {
        let _ = self.stop.send(true);
        while let Some(joined) = self.tasks.join_next().await {
            if let Err(e) = joined
                && e.is_panic()
            {
                std::panic::resume_unwind(e.into_panic());
            }
        }
    }
}

/// The register key `k` of the current epoch.
pub fn register_key(epoch: u64, k: usize) -> String {
    format!("r/{epoch}/{k}")
}

struct ClientWorker {
    id: u64,
    clients: u64,
    client: Client,
    history: Arc<History>,
    workload: Workload,
    rng: Xoshiro256PlusPlus,
    process: u64,
    next_value: u64,
    /// The last value this client saw per key: what its CASes expect.
    last_seen: std::collections::HashMap<String, Option<u64>>,
}

impl ClientWorker {
    async fn run(mut self, stop: watch::Receiver<bool>) {
        for _ in 0..self.workload.max_ops {
            if *stop.borrow() {
                break;
            }
            if self.rng.random_range(0..100) < self.workload.unique_percent {
                self.unique_write().await;
            } else {
                self.register_op().await;
            }
            let think = self
                .rng
                .random_range(0..=self.workload.think.as_millis() as u64);
            tokio::time::sleep(Duration::from_millis(think)).await;
        }
    }

    /// A value no other write of the run uses.
    fn fresh_value(&mut self) -> u64 {
        self.next_value += 1;
        self.next_value * self.clients + self.id
    }

    async fn register_op(&mut self) {
        let epoch = self.history.now().as_millis() as u64
            / self.workload.key_lifetime.as_millis().max(1) as u64;
        let key = register_key(epoch, self.rng.random_range(0..self.workload.keys));
        let call = match self.rng.random_range(0..10) {
            0..4 => Call::Get,
            4..7 => Call::Put {
                value: self.fresh_value(),
            },
            _ => Call::Cas {
                expected: self.last_seen.get(&key).copied().flatten(),
                value: self.fresh_value(),
            },
        };
        let invoked = self.history.now();
        let outcome = match &call {
            Call::Get => match self
                .client
                .get(key.as_bytes(), Consistency::Linearizable)
                .await
            {
                Ok(r) => Outcome::Got(decode_value(r.found, &r.value)),
                Err(e) => Outcome::Indeterminate(e.to_string()),
            },
            Call::Put { value } => {
                match self.client.put(key.as_bytes(), &encode_value(*value)).await {
                    Ok(_) => Outcome::Put,
                    Err(e) => Outcome::Indeterminate(e.to_string()),
                }
            }
            Call::Cas { expected, value } => {
                let expected = expected.map(encode_value);
                match self
                    .client
                    .compare_and_swap(key.as_bytes(), expected.as_deref(), &encode_value(*value))
                    .await
                {
                    Ok(r) => Outcome::Cas {
                        swapped: r.swapped,
                        current: match &r.current {
                            Some(c) => decode_value(true, c),
                            None => Observed::Absent,
                        },
                    },
                    Err(e) => Outcome::Indeterminate(e.to_string()),
                }
            }
        };
        let completed = self.history.now();
        match (&call, &outcome) {
            (_, Outcome::Got(Observed::Value(v))) => {
                self.last_seen.insert(key.clone(), Some(*v));
            }
            (_, Outcome::Got(Observed::Absent)) => {
                self.last_seen.insert(key.clone(), None);
            }
            (Call::Put { value }, Outcome::Put)
            | (Call::Cas { value, .. }, Outcome::Cas { swapped: true, .. }) => {
                self.last_seen.insert(key.clone(), Some(*value));
            }
            (
                _,
                Outcome::Cas {
                    current: Observed::Value(v),
                    ..
                },
            ) => {
                self.last_seen.insert(key.clone(), Some(*v));
            }
            _ => {}
        }
        let indeterminate = matches!(outcome, Outcome::Indeterminate(_));
        self.history.record(Op {
            process: self.process,
            key,
            call,
            invoked,
            completed,
            outcome,
        });
        if indeterminate {
            // The operation may still be in flight: a new process goes on.
            self.process += self.clients;
        }
    }

    async fn unique_write(&mut self) {
        let n = self.fresh_value();
        let key = format!("d/{}/{n}", self.id);
        let value = format!("{key}=durable");
        let invoked = self.history.now();
        let acked = self
            .client
            .put(key.as_bytes(), value.as_bytes())
            .await
            .is_ok();
        self.history.record_unique(UniqueWrite {
            key,
            value,
            invoked,
            acked,
        });
    }
}
