//! A loopback subnet `127.0.<n>.0/24` of one test's own.
//!
//! All of 127.0.0.0/8 reaches the loopback interface on Linux, so giving
//! each replica its own address lets every replica use the same ports, and
//! giving each test its own subnet lets tests run in parallel, in one test
//! process or several. A subnet is claimed by listening on
//! `127.0.<n>.254:CLAIM_PORT` for as long as the [`Subnet`] lives: the
//! kernel makes the claim atomic across processes and releases it when the
//! process dies, however it dies.

use crate::error::HarnessError;
use std::net::{Ipv4Addr, SocketAddrV4, TcpListener};
use std::sync::atomic::{AtomicU32, Ordering};

/// The subnets handed out: 127.0.FIRST.0 to 127.0.LAST.0.
const FIRST: u8 = 10;
const LAST: u8 = 250;
/// The host and port whose listener marks a subnet as taken.
const CLAIM_HOST: u8 = 254;
const CLAIM_PORT: u16 = 3263;

/// Where the next claim in this process starts looking, so that a subnet
/// just released (its replicas' sockets perhaps still closing) is not the
/// first one tried again.
static NEXT: AtomicU32 = AtomicU32::new(u32::MAX);

/// A claimed subnet; dropping it releases the claim.
#[derive(Debug)]
pub struct Subnet {
    n: u8,
    _claim: TcpListener,
}

impl Subnet {
    /// Claims a free subnet.
    pub fn claim() -> Result<Subnet, HarnessError> {
        let span = u32::from(LAST - FIRST) + 1;
        // Processes start at different places (by pid) to rarely collide.
        let _ = NEXT.compare_exchange(
            u32::MAX,
            std::process::id() % span,
            Ordering::Relaxed,
            Ordering::Relaxed,
        );
        for _ in 0..span {
            let offset = NEXT.fetch_add(1, Ordering::Relaxed) % span;
            let n = FIRST + offset as u8;
            let claim = SocketAddrV4::new(Ipv4Addr::new(127, 0, n, CLAIM_HOST), CLAIM_PORT);
            if let Ok(listener) = TcpListener::bind(claim) {
                return Ok(Subnet {
                    n,
                    _claim: listener,
                });
            }
        }
        Err(HarnessError::NoSubnet {
            first: FIRST,
            last: LAST,
        })
    }

    /// The third byte of the subnet's addresses.
    pub fn number(&self) -> u8 {
        self.n
    }

    /// `127.0.<subnet>.<host>` (`host` 1 to 253).
    pub fn ip(&self, host: u8) -> Ipv4Addr {
        assert!(
            (1..CLAIM_HOST).contains(&host),
            "host {host} outside 1..=253"
        );
        Ipv4Addr::new(127, 0, self.n, host)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn claims_are_exclusive_while_held() {
        let a = Subnet::claim().expect("a subnet");
        let b = Subnet::claim().expect("another");
        assert_ne!(
            a.number(),
            b.number(),
            "two live claims never share a subnet"
        );
        let taken = SocketAddrV4::new(a.ip(CLAIM_HOST - 1), 0);
        assert_eq!(taken.ip().octets()[2], a.number());
        let claim = SocketAddrV4::new(Ipv4Addr::new(127, 0, a.number(), CLAIM_HOST), CLAIM_PORT);
        assert!(
            TcpListener::bind(claim).is_err(),
            "the claim is held by a listener"
        );
        drop(a);
        assert!(
            TcpListener::bind(claim).is_ok(),
            "and released with the Subnet"
        );
    }
}
