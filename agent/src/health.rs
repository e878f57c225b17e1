//! The health and metrics endpoint: `GET /healthz` (what dnsctl probes) and
//! `GET /metrics` (Prometheus text format), on a small hand-written HTTP/1.1 server —
//! two fixed GET routes do not justify an HTTP framework in the agent.
//!
//! `/healthz` answers 200 with JSON when every check passes, else 503 with the same JSON
//! (`"status": "fail"` and the failing check marked `"ok": false`):
//!
//! ```json
//! {"status":"ok","host":"host1","checks":{
//!   "spool":{"ok":true,"ms":3},
//!   "auth":{"ok":true,"backend":"file"},
//!   "listeners":{"ok":true,"smtp":true,"submission":true,"submissions":true},
//!   "queue":{"ok":true,"depth":0},
//!   "shutdown":{"ok":true}}}
//! ```

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hamail_storage::Spool;
use metrics_exporter_prometheus::PrometheusHandle;
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use crate::auth::Directory;
use crate::shutdown::Shutdown;

/// What `/healthz` looks at.
#[derive(Debug)]
pub struct HealthContext {
    pub host: String,
    pub spool: Spool,
    pub directory: Arc<Directory>,
    pub spool_deadline: Duration,
    pub metrics: Option<PrometheusHandle>,
    pub shutdown: Shutdown,
    /// Listener name → bound and serving.
    listeners: Mutex<BTreeMap<&'static str, bool>>,
    /// A spool probe is still running (a hung NFS server must not pile them up).
    probing: Arc<AtomicBool>,
    /// One probe at a time: `/healthz` and the background watch wait for each other
    /// instead of reporting the other's probe as a hang.
    probe_turn: tokio::sync::Mutex<()>,
    /// The last probe's verdict, for the protocols (SMTP refuses mail with 451 while the
    /// spool cannot be written).
    status: SpoolStatus,
}

/// The last spool probe's verdict. Shared with the SMTP sessions, which answer RCPT with
/// a 4xx instead of accepting mail they could not store (a host cut off from the NFS
/// server would otherwise block each message forever on its hard mount).
#[derive(Debug, Clone, Default)]
pub struct SpoolStatus(Arc<AtomicU8>);

/// What the protocols need to know about the spool.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SpoolState {
    Writable = 0,
    /// Out of space (ENOSPC/EDQUOT): `452 4.3.1`.
    Full = 1,
    /// Failing or hanging: `451 4.3.0`.
    Unavailable = 2,
}

impl SpoolStatus {
    pub fn state(&self) -> SpoolState {
        match self.0.load(Ordering::SeqCst) {
            0 => SpoolState::Writable,
            1 => SpoolState::Full,
            _ => SpoolState::Unavailable,
        }
    }

    fn set(&self, state: SpoolState) {
        let old = self.0.swap(state as u8, Ordering::SeqCst);
        if old != state as u8 {
            match state {
                SpoolState::Writable => tracing::info!("spool writable again"),
                SpoolState::Full => {
                    tracing::warn!("spool full: refusing mail with 452 until space is freed")
                }
                SpoolState::Unavailable => {
                    tracing::warn!("spool probe failed: refusing mail with 451 until it recovers")
                }
            }
        }
    }
}

impl HealthContext {
    pub fn new(
        host: String,
        spool: Spool,
        directory: Arc<Directory>,
        spool_deadline: Duration,
        metrics: Option<PrometheusHandle>,
        shutdown: Shutdown,
    ) -> HealthContext {
        HealthContext {
            host,
            spool,
            directory,
            spool_deadline,
            metrics,
            shutdown,
            listeners: Mutex::new(BTreeMap::new()),
            probing: Arc::new(AtomicBool::new(false)),
            probe_turn: tokio::sync::Mutex::new(()),
            status: SpoolStatus::default(),
        }
    }

    /// The spool verdict the protocols consult.
    pub fn spool_status(&self) -> SpoolStatus {
        self.status.clone()
    }

    /// Probe the spool every `every` until shutdown, so the verdict stays current even
    /// when nobody asks `/healthz`.
    pub async fn watch_spool(self: Arc<Self>, every: Duration) {
        let mut shutdown = self.shutdown.clone();
        loop {
            self.check_spool().await;
            tokio::select! {
                _ = tokio::time::sleep(every) => {}
                _ = shutdown.wait() => return,
            }
        }
    }

    pub fn set_listener(&self, name: &'static str, up: bool) {
        self.listeners
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(name, up);
    }

    /// Run every check; `(healthy, json)`.
    pub async fn check(&self) -> (bool, Value) {
        let spool = self.check_spool().await;
        let auth = match tokio::time::timeout(self.spool_deadline, self.directory.backend().check())
            .await
        {
            Ok(Ok(())) => json!({"ok": true, "backend": self.directory.backend().name()}),
            Ok(Err(e)) => {
                json!({"ok": false, "backend": self.directory.backend().name(), "error": e.to_string()})
            }
            Err(_) => {
                json!({"ok": false, "backend": self.directory.backend().name(), "error": "timeout"})
            }
        };
        let mut listeners = serde_json::Map::new();
        let mut all_up = true;
        for (name, up) in self
            .listeners
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
        {
            all_up &= *up;
            listeners.insert((*name).to_string(), json!(up));
        }
        listeners.insert("ok".to_string(), json!(all_up));
        let queue = self.spool.queue();
        let depth = tokio::time::timeout(
            self.spool_deadline,
            crate::blocking::spool(move || queue.list().map(|l| l.len())),
        )
        .await;
        let queue = match depth {
            Ok(Ok(n)) => {
                metrics::gauge!("hamail_queue_depth").set(n as f64);
                json!({"ok": true, "depth": n})
            }
            _ => json!({"ok": false, "error": "cannot list the queue"}),
        };
        let stopping = self.shutdown.is_set();
        let checks = json!({
            "spool": spool,
            "auth": auth,
            "listeners": Value::Object(listeners),
            "queue": queue,
            "shutdown": {"ok": !stopping},
        });
        let healthy = checks
            .as_object()
            .is_some_and(|m| m.values().all(|c| c["ok"] == json!(true)));
        let status = if healthy { "ok" } else { "fail" };
        (
            healthy,
            json!({"status": status, "host": self.host, "checks": checks}),
        )
    }

    /// Write and fsync a probe file on the spool within the deadline.
    async fn check_spool(&self) -> Value {
        let started = Instant::now();
        let (state, v) = self.probe_spool(started).await;
        self.status.set(state);
        v
    }

    async fn probe_spool(&self, started: Instant) -> (SpoolState, Value) {
        use SpoolState::{Full, Unavailable, Writable};
        let deadline = format!("no fsync within {} ms", self.spool_deadline.as_millis());
        let Ok(_turn) = tokio::time::timeout(self.spool_deadline, self.probe_turn.lock()).await
        else {
            return (Unavailable, json!({"ok": false, "error": deadline}));
        };
        if self.probing.swap(true, Ordering::SeqCst) {
            return (
                Unavailable,
                json!({"ok": false, "error": "previous spool probe still running"}),
            );
        }
        let (spool, host) = (self.spool.clone(), self.host.clone());
        let probing = self.probing.clone();
        let task = crate::blocking::spool(move || {
            let result = spool.write_probe(&host, &crate::date::now().to_string());
            probing.store(false, Ordering::SeqCst);
            result
        });
        let left = self.spool_deadline.saturating_sub(started.elapsed());
        match tokio::time::timeout(left, task).await {
            // Rewriting the probe reuses the block it just freed, so on a full filesystem
            // the write keeps succeeding: the free space decides too.
            Ok(Ok(free)) if free < MIN_FREE_BYTES => {
                let error = format!(
                    "{free} bytes free on the spool filesystem (less than {MIN_FREE_BYTES})"
                );
                (Full, json!({"ok": false, "error": error}))
            }
            Ok(Ok(_)) => (
                Writable,
                json!({"ok": true, "ms": started.elapsed().as_millis() as u64}),
            ),
            Ok(Err(e)) => {
                let full = matches!(e, hamail_storage::StorageError::NoSpace { .. });
                let state = if full { Full } else { Unavailable };
                (state, json!({"ok": false, "error": e.to_string()}))
            }
            Err(_) => (Unavailable, json!({"ok": false, "error": deadline})),
        }
    }
}

/// Below this much space for unprivileged writers the spool counts as full (452 at RCPT),
/// as Postfix's `queue_minfree` does: nearly full is better refused up front than failed
/// after DATA.
const MIN_FREE_BYTES: u64 = 1 << 20;

/// Serve HTTP until shutdown. Health stays up during shutdown (it answers 503) until the
/// listener task is dropped.
pub async fn serve(listener: TcpListener, ctx: Arc<HealthContext>) {
    loop {
        let Ok((socket, _)) = listener.accept().await else {
            tokio::time::sleep(Duration::from_millis(100)).await;
            continue;
        };
        let ctx = ctx.clone();
        tokio::spawn(async move {
            let _ = tokio::time::timeout(Duration::from_secs(10), respond(socket, &ctx)).await;
        });
    }
}

async fn respond(mut socket: TcpStream, ctx: &HealthContext) -> std::io::Result<()> {
    let mut buf = Vec::with_capacity(1024);
    while !buf.windows(4).any(|w| w == b"\r\n\r\n") && !buf.windows(2).any(|w| w == b"\n\n") {
        if buf.len() > 8192 || socket.read_buf(&mut buf).await? == 0 {
            break;
        }
    }
    let request = String::from_utf8_lossy(&buf);
    let mut parts = request.split_whitespace();
    let (method, path) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    let (status, ctype, body) = match (method, path) {
        ("GET", "/healthz") => {
            let (ok, v) = ctx.check().await;
            let status = if ok {
                "200 OK"
            } else {
                "503 Service Unavailable"
            };
            (status, "application/json", format!("{v}\n"))
        }
        ("GET", "/metrics") => match &ctx.metrics {
            Some(h) => {
                let (n, waited) = hamail_storage::lock::stats::write_lock_waits();
                metrics::counter!("hamail_lock_acquisitions_total").absolute(n);
                metrics::gauge!("hamail_lock_wait_seconds_total").set(waited.as_secs_f64());
                ("200 OK", "text/plain; version=0.0.4", h.render())
            }
            None => (
                "404 Not Found",
                "text/plain",
                "metrics disabled\n".to_string(),
            ),
        },
        ("GET", _) => ("404 Not Found", "text/plain", "not found\n".to_string()),
        _ => (
            "405 Method Not Allowed",
            "text/plain",
            "GET only\n".to_string(),
        ),
    };
    let head = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {ctype}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    socket.write_all(head.as_bytes()).await?;
    socket.write_all(body.as_bytes()).await?;
    socket.shutdown().await
}
