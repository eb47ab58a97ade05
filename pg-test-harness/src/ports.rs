//! Free TCP ports on 127.0.0.1 for the servers the harness starts.
//!
//! Ports are drawn at random from 15000..32000, below Linux's ephemeral range (32768+) so that
//! outgoing connections do not take them, and each port is handed out once per process. Another
//! process may still grab a port between the check and the server's bind; callers retry with
//! new ports when a server reports "address already in use".

use std::collections::BTreeSet;
use std::net::TcpListener;
use std::sync::Mutex;

const LOW: u16 = 15000;
const HIGH: u16 = 32000;

static HANDED_OUT: Mutex<BTreeSet<u16>> = Mutex::new(BTreeSet::new());

/// A port on 127.0.0.1 that nothing listens on right now and that this process has not handed
/// out before.
pub fn free_port() -> u16 {
    free_port_with(|_| true)
}

/// A free port `p` such that `p + offset` is free too (for servers that derive a second port).
pub fn free_port_pair(offset: u16) -> (u16, u16) {
    let p = free_port_with(|p| {
        let q = p.saturating_add(offset);
        q != p && is_free(q) && !handed_out(q)
    });
    let q = p + offset;
    lock().insert(q);
    (p, q)
}

fn free_port_with(extra: impl Fn(u16) -> bool) -> u16 {
    for _ in 0..10_000 {
        let p = rand::random_range(LOW..HIGH);
        if handed_out(p) || !is_free(p) || !extra(p) {
            continue;
        }
        if lock().insert(p) {
            return p;
        }
    }
    panic!("no free TCP port found on 127.0.0.1 in {LOW}..{HIGH}");
}

/// True when a listener can bind 127.0.0.1:`port` now.
pub fn is_free(port: u16) -> bool {
    TcpListener::bind(("127.0.0.1", port)).is_ok()
}

fn handed_out(p: u16) -> bool {
    lock().contains(&p)
}

fn lock() -> std::sync::MutexGuard<'static, BTreeSet<u16>> {
    HANDED_OUT
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ports_are_distinct_and_free() {
        let a = free_port();
        let b = free_port();
        assert_ne!(a, b);
        assert!(is_free(a) && is_free(b));
        let (p, q) = free_port_pair(10_000);
        assert_eq!(q, p + 10_000);
        assert!((LOW..HIGH).contains(&p));
    }
}
