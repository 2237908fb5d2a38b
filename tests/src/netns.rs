//! A network namespace of the test's own, and the firewall inside it.
//!
//! The fault-injection suite cuts links between replicas with `iptables`.
//! It must never touch the machine's own rules, so it first moves itself
//! into a fresh network namespace: a thread calls `unshare(CLONE_NEWNET)`,
//! brings the namespace's loopback up, and every thread of the test's tokio
//! runtime `setns`es into it as it starts ([`run_in`]). Sockets and child
//! processes (the replicas, `iptables`) made from those threads are then in
//! the namespace; nothing of the machine's network is visible or changed.
//! The namespace is anonymous: it disappears with the last thread or
//! process in it, however the test ends.
//!
//! Where the namespace cannot be made (not root, a sandbox without
//! `CAP_SYS_ADMIN`) or `iptables` is missing, [`NetNs::create`] says why and
//! the suite runs every fault but the network ones.
//!
//! Invariant: [`Firewall`] runs `iptables` only after checking that the
//! calling thread is inside the test's namespace.

use std::fs::File;
use std::future::Future;
use std::net::Ipv4Addr;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::fs::MetadataExt;
use std::process::Command;
use std::sync::Arc;

/// A network namespace created for this test.
#[derive(Debug)]
pub struct NetNs {
    fd: OwnedFd,
    /// Device and inode of the namespace, to recognise it.
    id: (u64, u64),
}

impl NetNs {
    /// Creates a namespace with its loopback up and checks that `iptables`
    /// works inside it. `Err` says why it cannot be used.
    pub fn create() -> Result<Arc<NetNs>, String> {
        let ns = std::thread::spawn(|| -> Result<NetNs, String> {
            // SAFETY: unshare(2) changes only this (short-lived) thread.
            if unsafe { libc::unshare(libc::CLONE_NEWNET) } != 0 {
                return Err(format!(
                    "unshare(CLONE_NEWNET) failed: {} (the fault suite needs root or CAP_SYS_ADMIN)",
                    std::io::Error::last_os_error()
                ));
            }
            let file = File::open("/proc/thread-self/ns/net")
                .map_err(|e| format!("cannot open /proc/thread-self/ns/net: {e}"))?;
            let meta = file
                .metadata()
                .map_err(|e| format!("cannot stat the namespace: {e}"))?;
            loopback_up()?;
            let ns = NetNs {
                id: (meta.dev(), meta.ino()),
                fd: file.into(),
            };
            // `iptables` runs as a child of this thread: in the namespace.
            Firewall::check_tool()?;
            Ok(ns)
        })
        .join()
        .map_err(|_| "the thread creating the network namespace panicked".to_string())??;
        Ok(Arc::new(ns))
    }

    /// Moves the calling thread into the namespace.
    pub fn enter(&self) -> std::io::Result<()> {
        // SAFETY: setns(2) on a namespace fd we own; affects this thread.
        if unsafe { libc::setns(self.fd.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
            return Err(std::io::Error::last_os_error());
        }
        Ok(())
    }

    /// Whether the calling thread is inside the namespace.
    pub fn contains_current_thread(&self) -> bool {
        std::fs::metadata("/proc/thread-self/ns/net").is_ok_and(|m| (m.dev(), m.ino()) == self.id)
    }
}

/// Sets `lo` up in the calling thread's namespace (a new namespace has it
/// down, and with it every 127.0.0.0/8 address).
fn loopback_up() -> Result<(), String> {
    // SAFETY: plain socket and ioctl calls on a struct we own and zeroed.
    unsafe {
        let sock = libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0);
        if sock < 0 {
            return Err(format!(
                "cannot open a socket in the namespace: {}",
                std::io::Error::last_os_error()
            ));
        }
        let mut req: libc::ifreq = std::mem::zeroed();
        for (dst, src) in req.ifr_name.iter_mut().zip(b"lo\0") {
            *dst = *src as libc::c_char;
        }
        let mut result = Ok(());
        if libc::ioctl(sock, libc::SIOCGIFFLAGS, &mut req) != 0 {
            result = Err(format!(
                "cannot read the flags of lo: {}",
                std::io::Error::last_os_error()
            ));
        } else {
            req.ifr_ifru.ifru_flags |= libc::IFF_UP as libc::c_short;
            if libc::ioctl(sock, libc::SIOCSIFFLAGS, &req) != 0 {
                result = Err(format!(
                    "cannot set lo up: {}",
                    std::io::Error::last_os_error()
                ));
            }
        }
        libc::close(sock);
        result
    }
}

/// Runs the future `make()` returns on a multi-threaded tokio runtime whose
/// every thread is inside `ns` (an ordinary runtime with `None`), from a
/// thread of its own, and returns its output. A panic of the body is
/// resumed in the caller after the runtime is gone.
pub fn run_in<F, T>(
    ns: Option<Arc<NetNs>>,
    worker_threads: usize,
    make: impl FnOnce() -> F + Send,
) -> T
where
    F: Future<Output = T>,
    T: Send,
{
    std::thread::scope(|scope| {
        let handle = scope.spawn(move || {
            if let Some(ns) = &ns {
                ns.enter().expect("the test thread enters the namespace");
            }
            let mut builder = tokio::runtime::Builder::new_multi_thread();
            builder.worker_threads(worker_threads).enable_all();
            if let Some(ns) = ns.clone() {
                builder.on_thread_start(move || {
                    ns.enter().expect("a runtime thread enters the namespace");
                });
            }
            let runtime = builder.build().expect("a tokio runtime");
            runtime.block_on(make())
        });
        match handle.join() {
            Ok(v) => v,
            Err(panic) => std::panic::resume_unwind(panic),
        }
    })
}

/// Packet filtering between replica addresses, inside a [`NetNs`].
#[derive(Clone, Debug)]
pub struct Firewall {
    ns: Arc<NetNs>,
}

impl Firewall {
    pub fn new(ns: Arc<NetNs>) -> Firewall {
        Firewall { ns }
    }

    /// Whether `iptables` can be run here (in a namespace being created).
    fn check_tool() -> Result<(), String> {
        match Command::new("iptables")
            .args(["-w", "-S", "INPUT"])
            .output()
        {
            Ok(out) if out.status.success() => Ok(()),
            Ok(out) => Err(format!(
                "`iptables -S INPUT` failed in the namespace: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            )),
            Err(e) => Err(format!(
                "cannot run iptables ({e}): install it (`apt-get install -y iptables`)"
            )),
        }
    }

    /// Runs `iptables -w args...` in the namespace.
    fn iptables(&self, args: &[&str]) -> Result<(), String> {
        if !self.ns.contains_current_thread() {
            return Err(
                "refusing to run iptables outside the test's network namespace (call it from \
                 the runtime made by netns::run_in)"
                    .into(),
            );
        }
        let out = Command::new("iptables")
            .arg("-w")
            .args(args)
            .output()
            .map_err(|e| format!("cannot run iptables: {e}"))?;
        if out.status.success() {
            Ok(())
        } else {
            Err(format!(
                "iptables {} failed: {}",
                args.join(" "),
                String::from_utf8_lossy(&out.stderr).trim()
            ))
        }
    }

    /// Drops every packet from `from` to `to` (one direction).
    pub fn drop_one_way(&self, from: Ipv4Addr, to: Ipv4Addr) -> Result<(), String> {
        let (from, to) = (from.to_string(), to.to_string());
        self.iptables(&["-A", "INPUT", "-s", &from, "-d", &to, "-j", "DROP"])
    }

    /// Cuts the link between `a` and `b`, both directions.
    pub fn cut(&self, a: Ipv4Addr, b: Ipv4Addr) -> Result<(), String> {
        self.drop_one_way(a, b)?;
        self.drop_one_way(b, a)
    }

    /// Removes every rule: all links work again.
    pub fn heal(&self) -> Result<(), String> {
        self.iptables(&["-F", "INPUT"])
    }
}
