//! Host health: one probe (TCP connect + SMTP `220` banner, then the agent's `/healthz`
//! answering 200), and the hysteresis that turns a stream of probe results into up/down
//! transitions.
//!
//! Hysteresis is why a flapping host cannot flap the zone: a host only goes down after
//! `fail_after` failures in a row and only comes back after `recover_after` successes in
//! a row, so with a probe every interval the zone changes at most once per
//! `min(fail_after, recover_after)` intervals for that host.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// The result of one probe of one host.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Probe {
    pub ok: bool,
    /// What failed, or `"ok"`.
    pub detail: String,
    pub latency_ms: u64,
}

/// A state change decided by a [`Tracker`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transition {
    Down,
    Up,
}

/// Consecutive-result counting for one host.
#[derive(Debug, Clone)]
pub struct Tracker {
    up: bool,
    /// Results in a row that disagree with `up`.
    streak: u32,
    pub last: Option<Probe>,
}

impl Tracker {
    pub fn new(up: bool) -> Self {
        Tracker {
            up,
            streak: 0,
            last: None,
        }
    }

    pub fn is_up(&self) -> bool {
        self.up
    }

    /// Feed one probe result; returns the transition it completes, if any.
    pub fn record(
        &mut self,
        probe: Probe,
        fail_after: u32,
        recover_after: u32,
    ) -> Option<Transition> {
        let ok = probe.ok;
        self.last = Some(probe);
        if ok == self.up {
            self.streak = 0;
            return None;
        }
        self.streak += 1;
        let needed = if self.up { fail_after } else { recover_after };
        if self.streak < needed.max(1) {
            return None;
        }
        self.up = ok;
        self.streak = 0;
        Some(if ok { Transition::Up } else { Transition::Down })
    }
}

/// Where to probe one host.
#[derive(Debug, Clone)]
pub struct Target {
    pub smtp: SocketAddr,
    pub health: SocketAddr,
}

/// Probe one host: the SMTP banner must start with `220` and `/healthz` must answer
/// 200, both within `timeout` in total.
pub async fn probe(target: &Target, timeout: Duration) -> Probe {
    let start = Instant::now();
    let result = tokio::time::timeout(timeout, async {
        smtp_banner(target.smtp).await?;
        healthz(target.health).await
    })
    .await;
    let latency_ms = u64::try_from(start.elapsed().as_millis()).unwrap_or(u64::MAX);
    let (ok, detail) = match result {
        Ok(Ok(())) => (true, "ok".to_string()),
        Ok(Err(e)) => (false, e),
        Err(_) => (
            false,
            format!("no answer within {} ms", timeout.as_millis()),
        ),
    };
    Probe {
        ok,
        detail,
        latency_ms,
    }
}

async fn smtp_banner(addr: SocketAddr) -> Result<(), String> {
    let mut s = TcpStream::connect(addr)
        .await
        .map_err(|e| format!("smtp {addr}: connect: {e}"))?;
    let mut buf = [0u8; 512];
    let mut got = Vec::new();
    // The greeting may arrive in pieces; the first line decides.
    while !got.contains(&b'\n') && got.len() < 512 {
        let n = s
            .read(&mut buf)
            .await
            .map_err(|e| format!("smtp {addr}: read: {e}"))?;
        if n == 0 {
            break;
        }
        got.extend_from_slice(&buf[..n]);
    }
    // Polite close; the agent logs a QUIT-less disconnect as nothing worse.
    let _ = s.write_all(b"QUIT\r\n").await;
    if got.starts_with(b"220") {
        Ok(())
    } else {
        let line = String::from_utf8_lossy(&got);
        Err(format!("smtp {addr}: banner {:?}", line.trim_end()))
    }
}

async fn healthz(addr: SocketAddr) -> Result<(), String> {
    let mut s = TcpStream::connect(addr)
        .await
        .map_err(|e| format!("healthz {addr}: connect: {e}"))?;
    s.write_all(b"GET /healthz HTTP/1.1\r\nHost: hamail\r\nConnection: close\r\n\r\n")
        .await
        .map_err(|e| format!("healthz {addr}: write: {e}"))?;
    let mut head = [0u8; 64];
    let mut n = 0;
    while n < 12 {
        let k = s
            .read(&mut head[n..])
            .await
            .map_err(|e| format!("healthz {addr}: read: {e}"))?;
        if k == 0 {
            break;
        }
        n += k;
    }
    let status = String::from_utf8_lossy(&head[..n]);
    if status.starts_with("HTTP/1.1 200") || status.starts_with("HTTP/1.0 200") {
        Ok(())
    } else {
        Err(format!(
            "healthz {addr}: {:?}",
            status.lines().next().unwrap_or("")
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(ok: bool) -> Probe {
        Probe {
            ok,
            detail: String::new(),
            latency_ms: 1,
        }
    }

    #[test]
    fn down_after_fail_after_in_a_row_and_up_after_recover_after() {
        let mut t = Tracker::new(true);
        assert_eq!(t.record(p(false), 3, 2), None);
        assert_eq!(t.record(p(false), 3, 2), None);
        assert_eq!(t.record(p(false), 3, 2), Some(Transition::Down));
        assert!(!t.is_up());
        assert_eq!(t.record(p(false), 3, 2), None);
        assert_eq!(t.record(p(true), 3, 2), None);
        assert_eq!(t.record(p(true), 3, 2), Some(Transition::Up));
        assert!(t.is_up());
    }

    #[test]
    fn flapping_never_completes_a_streak() {
        let mut t = Tracker::new(true);
        for i in 0..200 {
            assert_eq!(t.record(p(i % 2 == 0), 3, 3), None, "probe {i}");
        }
        assert!(t.is_up());
        // Two failures, one success, two failures: still up.
        for ok in [true, false, false, true, false, false] {
            assert_eq!(t.record(p(ok), 3, 3), None);
        }
        assert!(t.is_up());
    }
}
