//! Free loopback TCP ports below 32768 (out of the kernel's ephemeral range), never one twice.

use std::collections::BTreeSet;
use std::net::TcpListener;
use std::sync::Mutex;

use rand::Rng;

/// Ports this process handed out already: a port picked here is free only until someone binds
/// it, so two picks in one test must never be the same port.
static GIVEN: Mutex<BTreeSet<u16>> = Mutex::new(BTreeSet::new());

/// Below 32768: the kernel gives ports from 32768 up to outgoing connections, which could take
/// a port a test means to bind again later (a restarted etcd, a restarted cluster).
const RANGE: std::ops::Range<u16> = 16_000..32_000;

fn free(port: u16) -> bool {
    TcpListener::bind(("127.0.0.1", port)).is_ok()
}

/// `count` distinct loopback ports that are free right now.
pub fn free_ports(count: usize) -> Vec<u16> {
    let mut given = GIVEN.lock().unwrap_or_else(|e| e.into_inner());
    let mut rng = rand::thread_rng();
    let mut ports = Vec::with_capacity(count);
    for _ in 0..10_000 {
        if ports.len() == count {
            return ports;
        }
        let p = rng.gen_range(RANGE);
        if !given.contains(&p) && free(p) {
            given.insert(p);
            ports.push(p);
        }
    }
    panic!("no {count} free loopback ports in {RANGE:?}");
}

/// One free loopback port.
pub fn free_port() -> u16 {
    free_ports(1)[0]
}

/// A base port such that `base..base + len` are all free right now.
pub fn free_port_range(len: u16) -> u16 {
    let mut given = GIVEN.lock().unwrap_or_else(|e| e.into_inner());
    let mut rng = rand::thread_rng();
    for _ in 0..200 {
        let base = rng.gen_range(RANGE.start..RANGE.end - len);
        let range = base..base + len;
        if range.clone().all(|p| !given.contains(&p) && free(p)) {
            given.extend(range);
            return base;
        }
    }
    panic!("no {len} consecutive free loopback ports in {RANGE:?}");
}
