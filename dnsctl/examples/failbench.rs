//! How long from a host's death to the new zone being served: a real `dnsctl serve`
//! (interval 1 s, fail_after 3, recover_after 3) probing three stand-in hosts; host1
//! stops answering, and `dig` is polled every 20 ms until `mail.<domain>` names host2.
//! Repeated over 20 trials (host1 recovers in between); prints min/median/max.
//!
//! `cargo build --release -p dnsctl && cargo run --release -p dnsctl --example failbench [TRIALS]`
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "../tests/support/mod.rs"]
mod support;

use std::time::{Duration, Instant};

use support::{wait_for, Dnsctl, StandIn};

fn main() {
    let trials: usize = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(20);
    let (h1, h2, h3) = (StandIn::start(), StandIn::start(), StandIn::start());
    let mut d = Dnsctl::new(
        &[&h1, &h2, &h3],
        "interval_secs = 1\nfail_after = 3\nrecover_after = 3",
        "",
    );
    d.start();
    let mut times = Vec::new();
    for trial in 0..trials {
        assert!(wait_for(Duration::from_secs(10), || d.mail()
            == Some(h1.ip.to_string())));
        // Start at a random point of the probe cycle, as a real failure would.
        std::thread::sleep(Duration::from_millis(clock_ms()));
        h1.set_up(false);
        let t0 = Instant::now();
        let mut moved = false;
        while t0.elapsed() < Duration::from_secs(15) {
            if d.mail() == Some(h2.ip.to_string()) {
                moved = true;
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let took = t0.elapsed();
        assert!(moved, "trial {trial}: no failover\n{}", d.log());
        times.push(took);
        eprintln!("trial {:>2}: {:.2} s", trial + 1, took.as_secs_f64());
        h1.set_up(true);
    }
    times.sort();
    let secs = |d: Duration| d.as_secs_f64();
    println!(
        "host death -> new zone served, {} trials (interval 1 s, fail_after 3): min {:.2} s, median {:.2} s, max {:.2} s",
        times.len(),
        secs(times[0]),
        secs(times[times.len() / 2]),
        secs(times[times.len() - 1])
    );
}

/// 0..1000 ms from the clock: a random phase without a rand dependency.
fn clock_ms() -> u64 {
    u64::from(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .subsec_nanos(),
    ) % 1000
}
