//! The health controller: probes every host each interval, feeds the hysteresis, applies
//! operator commands, and when the plan changes publishes the new zone in one step.
//!
//! One change is: compute the plan, bump the serial, build the snapshot (MX, `mail.` and
//! SOA serial together), save the state durably, then publish. Saving before publishing
//! means a crash right after can only re-publish the same serial's content, never an
//! older one. A failed publish (an RFC 2136 primary that is down) is retried every round
//! until it succeeds.

use std::collections::BTreeMap;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use hamail_storage::cluster::{ClusterConfig, DnsConfig};
use serde::Serialize;
use tokio::sync::Mutex;

use crate::events::{Event, EventLog};
use crate::health::{self, Probe, Target, Tracker, Transition};
use crate::policy::{self, Plan};
use crate::state::{HostRecord, State, StateError};
use crate::zone::{self, Snapshot};

/// Where a snapshot goes: the bundled server, or an RFC 2136 primary.
pub trait Publisher: Send + Sync + 'static {
    fn publish<'a>(
        &'a self,
        snapshot: &'a Snapshot,
    ) -> Pin<Box<dyn Future<Output = Result<(), String>> + Send + 'a>>;
}

/// A refused operator command (the CLI prints it and exits non-zero).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CommandError {
    #[error("unknown host {0:?} (hosts: {1})")]
    UnknownHost(String, String),
    #[error("host {0:?} is down; use --force to make it primary anyway")]
    HostDown(String),
    #[error("cannot save the state: {0}")]
    State(#[from] StateError),
}

/// Per-host view for `dnsctl status`.
#[derive(Debug, Clone, Serialize)]
pub struct HostStatus {
    pub name: String,
    pub address: String,
    pub up: bool,
    /// RFC 3339 time of the last transition.
    pub since: String,
    pub last_probe: Option<Probe>,
    /// Published MX preference now (`None`: not published, i.e. drained).
    pub mx_preference: Option<u16>,
    pub drained: bool,
    pub primary_override: bool,
}

#[derive(Debug, Clone, Serialize)]
pub struct Status {
    pub serial: u32,
    pub active: Option<String>,
    pub primary_override: Option<String>,
    pub hosts: Vec<HostStatus>,
    pub events: Vec<Event>,
    /// The last publish failed and is being retried.
    pub publish_pending: bool,
}

pub struct Controller {
    config: ClusterConfig,
    dns: DnsConfig,
    state: State,
    trackers: BTreeMap<String, Tracker>,
    events: EventLog,
    plan: Plan,
    snapshot: Arc<Snapshot>,
    publisher: Box<dyn Publisher>,
    /// The current snapshot has not reached the publisher yet.
    pending: bool,
}

impl std::fmt::Debug for Controller {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Controller")
            .field("serial", &self.state.serial)
            .field("plan", &self.plan)
            .finish_non_exhaustive()
    }
}

fn now_unix() -> i64 {
    chrono::Utc::now().timestamp()
}

fn rfc3339(unix: i64) -> String {
    chrono::DateTime::from_timestamp(unix, 0)
        .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
        .unwrap_or_default()
}

/// The probe targets: each host's address with the cluster's SMTP and health ports.
pub fn targets(config: &ClusterConfig) -> Vec<(String, Target)> {
    config
        .hosts
        .iter()
        .map(|h| {
            (
                h.name.clone(),
                Target {
                    smtp: SocketAddr::new(h.address, config.listeners.smtp),
                    health: SocketAddr::new(h.address, config.listeners.health),
                },
            )
        })
        .collect()
}

/// Probe every host once, concurrently.
pub async fn probe_all(config: &ClusterConfig, timeout: Duration) -> Vec<(String, Probe)> {
    let mut set = tokio::task::JoinSet::new();
    for (i, (name, target)) in targets(config).into_iter().enumerate() {
        set.spawn(async move { (i, name, health::probe(&target, timeout).await) });
    }
    let mut out = Vec::new();
    while let Some(r) = set.join_next().await {
        if let Ok(r) = r {
            out.push(r);
        }
    }
    out.sort_by_key(|(i, _, _)| *i);
    out.into_iter().map(|(_, n, p)| (n, p)).collect()
}

impl Controller {
    /// Restore the saved state (hosts start as they were; new hosts start up), publish
    /// the resulting zone under a new serial, and record a `start` event.
    pub async fn start(
        config: ClusterConfig,
        dns: DnsConfig,
        publisher: Box<dyn Publisher>,
    ) -> Result<Controller, StateError> {
        let mut state = State::load(&dns.state_dir)?;
        let now = now_unix();
        // Forget hosts no longer in the config, and overrides naming them.
        state
            .hosts
            .retain(|name, _| config.hosts.iter().any(|h| &h.name == name));
        if let Some(p) = &state.primary {
            if !config.hosts.iter().any(|h| &h.name == p) {
                state.primary = None;
            }
        }
        state
            .drained
            .retain(|name| config.hosts.iter().any(|h| &h.name == name));
        let mut trackers = BTreeMap::new();
        for h in &config.hosts {
            let rec = state.hosts.entry(h.name.clone()).or_insert(HostRecord {
                up: true,
                since: now,
            });
            trackers.insert(h.name.clone(), Tracker::new(rec.up));
        }
        let events = EventLog::new(&dns.state_dir);
        let mut c = Controller {
            plan: Plan { mx: Vec::new() },
            snapshot: Arc::new(Snapshot {
                serial: state.serial,
                zones: Vec::new(),
            }),
            config,
            dns,
            state,
            trackers,
            events,
            publisher,
            pending: false,
        };
        c.commit()?;
        c.events
            .record("start", None, "dnsctl serve started", c.state.serial);
        c.publish().await;
        Ok(c)
    }

    /// The snapshot being served.
    pub fn snapshot(&self) -> Arc<Snapshot> {
        self.snapshot.clone()
    }

    fn compute_plan(&self) -> Plan {
        policy::plan(
            &self.config.hosts,
            |h| self.trackers.get(h).is_some_and(Tracker::is_up),
            &self.state.drained,
            self.state.primary.as_deref(),
        )
    }

    /// New serial, snapshot and durable state for the current plan.
    fn commit(&mut self) -> Result<(), StateError> {
        self.plan = self.compute_plan();
        let serial = self.state.bump_serial(now_unix());
        self.snapshot = Arc::new(zone::build(&self.config, &self.dns, &self.plan, serial));
        self.state.save(&self.dns.state_dir)?;
        self.pending = true;
        metrics::gauge!("hamail_dns_serial").set(f64::from(serial));
        Ok(())
    }

    /// Re-plan; if the published order changes, commit a new serial. Returns whether it
    /// changed. State is saved either way (host records, overrides).
    fn replan(&mut self) -> Result<bool, StateError> {
        if self.compute_plan() != self.plan {
            self.commit()?;
            Ok(true)
        } else {
            self.state.save(&self.dns.state_dir)?;
            Ok(false)
        }
    }

    async fn publish(&mut self) {
        if !self.pending {
            return;
        }
        match self.publisher.publish(&self.snapshot).await {
            Ok(()) => self.pending = false,
            Err(e) => {
                metrics::counter!("hamail_dns_publish_failures_total").increment(1);
                tracing::warn!(serial = self.snapshot.serial, error = %e, "publishing the zone failed; retrying next round");
            }
        }
    }

    /// Feed one round of probe results and apply any transitions.
    pub async fn apply_probes(&mut self, results: Vec<(String, Probe)>) {
        let (fail_after, recover_after) = (
            self.config.health.fail_after,
            self.config.health.recover_after,
        );
        let mut changed = Vec::new();
        for (host, probe) in results {
            let Some(t) = self.trackers.get_mut(&host) else {
                continue;
            };
            metrics::histogram!("hamail_dns_probe_latency_seconds", "host" => host.clone())
                .record(probe.latency_ms as f64 / 1000.0);
            metrics::gauge!("hamail_dns_probe_ok", "host" => host.clone()).set(if probe.ok {
                1.0
            } else {
                0.0
            });
            let detail = probe.detail.clone();
            if let Some(tr) = t.record(probe, fail_after, recover_after) {
                let up = tr == Transition::Up;
                self.state.hosts.insert(
                    host.clone(),
                    HostRecord {
                        up,
                        since: now_unix(),
                    },
                );
                metrics::gauge!("hamail_dns_host_up", "host" => host.clone()).set(if up {
                    1.0
                } else {
                    0.0
                });
                changed.push((host, tr, detail));
            }
        }
        if !changed.is_empty() {
            if let Err(e) = self.replan() {
                tracing::error!(error = %e, "cannot save the dnsctl state");
            }
            for (host, tr, detail) in changed {
                let kind = if tr == Transition::Up { "up" } else { "down" };
                metrics::counter!("hamail_dns_transitions_total", "host" => host.clone(), "kind" => kind)
                    .increment(1);
                let reason = if tr == Transition::Up {
                    format!(
                        "{} probes in a row succeeded",
                        self.config.health.recover_after
                    )
                } else {
                    format!(
                        "{} probes in a row failed, last: {detail}",
                        self.config.health.fail_after
                    )
                };
                self.events
                    .record(kind, Some(&host), &reason, self.state.serial);
            }
        }
        self.publish().await;
    }

    fn known(&self, host: &str) -> Result<(), CommandError> {
        if self.config.hosts.iter().any(|h| h.name == host) {
            Ok(())
        } else {
            let names: Vec<&str> = self.config.hosts.iter().map(|h| h.name.as_str()).collect();
            Err(CommandError::UnknownHost(
                host.to_string(),
                names.join(", "),
            ))
        }
    }

    async fn operator(&mut self, kind: &str, host: Option<&str>) -> Result<Event, CommandError> {
        self.replan()?;
        let reason = format!(
            "operator: dnsctl {kind}{}",
            host.map(|h| format!(" {h}")).unwrap_or_default()
        );
        metrics::counter!("hamail_dns_operator_commands_total", "kind" => kind.to_string())
            .increment(1);
        let event = self.events.record(kind, host, &reason, self.state.serial);
        self.publish().await;
        Ok(event)
    }

    /// `dnsctl failover HOST [--force]`.
    pub async fn failover(&mut self, host: &str, force: bool) -> Result<Event, CommandError> {
        self.known(host)?;
        let up = self.trackers.get(host).is_some_and(Tracker::is_up);
        if !up && !force {
            return Err(CommandError::HostDown(host.to_string()));
        }
        self.state.primary = Some(host.to_string());
        self.state.drained.remove(host);
        self.operator("failover", Some(host)).await
    }

    /// `dnsctl failback`.
    pub async fn failback(&mut self) -> Result<Event, CommandError> {
        let host = self.state.primary.take();
        self.operator("failback", host.as_deref()).await
    }

    /// `dnsctl drain HOST`.
    pub async fn drain(&mut self, host: &str) -> Result<Event, CommandError> {
        self.known(host)?;
        self.state.drained.insert(host.to_string());
        if self.state.primary.as_deref() == Some(host) {
            self.state.primary = None;
        }
        self.operator("drain", Some(host)).await
    }

    /// `dnsctl undrain HOST`.
    pub async fn undrain(&mut self, host: &str) -> Result<Event, CommandError> {
        self.known(host)?;
        self.state.drained.remove(host);
        self.operator("undrain", Some(host)).await
    }

    pub fn status(&self) -> Status {
        Status {
            serial: self.state.serial,
            active: self.plan.active().map(str::to_string),
            primary_override: self.state.primary.clone(),
            hosts: self
                .config
                .hosts
                .iter()
                .map(|h| {
                    let rec = self.state.hosts.get(&h.name);
                    HostStatus {
                        name: h.name.clone(),
                        address: h.address.to_string(),
                        up: self.trackers.get(&h.name).is_some_and(Tracker::is_up),
                        since: rec.map(|r| rfc3339(r.since)).unwrap_or_default(),
                        last_probe: self.trackers.get(&h.name).and_then(|t| t.last.clone()),
                        mx_preference: self.plan.preference(&h.name),
                        drained: self.state.drained.contains(&h.name),
                        primary_override: self.state.primary.as_deref() == Some(&h.name),
                    }
                })
                .collect(),
            events: self.events.recent(),
            publish_pending: self.pending,
        }
    }
}

/// Probe every interval until `shutdown` resolves.
pub async fn run(
    controller: Arc<Mutex<Controller>>,
    config: ClusterConfig,
    timeout: Duration,
    mut shutdown: tokio::sync::watch::Receiver<bool>,
) {
    let interval = Duration::from_secs(config.health.interval_secs.max(1));
    let mut ticker = tokio::time::interval(interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = ticker.tick() => {}
            _ = shutdown.changed() => return,
        }
        let results = probe_all(&config, timeout).await;
        controller.lock().await.apply_probes(results).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;
    use std::sync::atomic::{AtomicBool, Ordering};

    /// Records what was published; can be told to fail.
    #[derive(Clone, Default)]
    struct Recorder {
        published: Arc<std::sync::Mutex<Vec<Snapshot>>>,
        fail: Arc<AtomicBool>,
    }

    impl Publisher for Recorder {
        fn publish<'a>(
            &'a self,
            snapshot: &'a Snapshot,
        ) -> Pin<Box<dyn Future<Output = Result<(), String>> + Send + 'a>> {
            Box::pin(async move {
                if self.fail.load(Ordering::SeqCst) {
                    return Err("primary unreachable".into());
                }
                self.published.lock().unwrap().push(snapshot.clone());
                Ok(())
            })
        }
    }

    impl Recorder {
        fn last(&self) -> Snapshot {
            self.published.lock().unwrap().last().cloned().unwrap()
        }
        fn count(&self) -> usize {
            self.published.lock().unwrap().len()
        }
    }

    fn config(state_dir: &Path) -> ClusterConfig {
        ClusterConfig::builder("/srv/mail")
            .hosts(["10.0.0.11", "10.0.0.12", "10.0.0.13"])
            .section(
                "dns",
                &format!(
                    "listen = \"10.0.0.14:53\"\nstate_dir = \"{}\"",
                    state_dir.display()
                ),
            )
            .build()
            .unwrap()
    }

    fn mx_order(s: &Snapshot) -> Vec<String> {
        s.zones[0]
            .records
            .iter()
            .filter(|r| r.rtype == "MX")
            .map(|r| r.value.clone())
            .collect()
    }

    fn round(down: &[&str]) -> Vec<(String, Probe)> {
        ["host1", "host2", "host3"]
            .iter()
            .map(|h| {
                let ok = !down.contains(h);
                (
                    h.to_string(),
                    Probe {
                        ok,
                        detail: if ok { "ok".into() } else { "refused".into() },
                        latency_ms: 1,
                    },
                )
            })
            .collect()
    }

    async fn start(dir: &Path, rec: &Recorder) -> Controller {
        let c = config(dir);
        let dns = c.dns.clone().unwrap();
        Controller::start(c, dns, Box::new(rec.clone()))
            .await
            .unwrap()
    }

    #[tokio::test]
    async fn a_host_failing_fail_after_rounds_moves_mx_and_mail_in_one_serial() {
        let dir = tempfile::tempdir().unwrap();
        let rec = Recorder::default();
        let mut c = start(dir.path(), &rec).await;
        let first = rec.last();
        assert_eq!(mx_order(&first)[0], "10 host1.example.test.");
        for _ in 0..2 {
            c.apply_probes(round(&["host1"])).await;
        }
        assert_eq!(rec.count(), 1, "no change before fail_after failures");
        c.apply_probes(round(&["host1"])).await;
        let moved = rec.last();
        assert!(moved.serial > first.serial);
        assert_eq!(
            mx_order(&moved),
            [
                "10 host2.example.test.",
                "20 host3.example.test.",
                "30 host1.example.test."
            ]
        );
        let mail = moved.zones[0]
            .records
            .iter()
            .find(|r| r.name == "mail.example.test")
            .unwrap();
        assert_eq!(mail.value, "10.0.0.12");
        assert!(moved.zones[0].records[0]
            .value
            .contains(&format!(" {} ", moved.serial)));
        let status = c.status();
        assert!(!status.hosts[0].up);
        assert_eq!(status.hosts[0].mx_preference, Some(30));
        assert_eq!(status.events.last().unwrap().kind, "down");
        // Back after recover_after successes.
        for _ in 0..3 {
            c.apply_probes(round(&[])).await;
        }
        assert_eq!(mx_order(&rec.last())[0], "10 host1.example.test.");
        assert!(rec.last().serial > moved.serial);
    }

    #[tokio::test]
    async fn operator_commands_are_checked_and_survive_a_restart() {
        let dir = tempfile::tempdir().unwrap();
        let rec = Recorder::default();
        let mut c = start(dir.path(), &rec).await;
        assert!(matches!(
            c.failover("host9", false).await,
            Err(CommandError::UnknownHost(..))
        ));
        for _ in 0..3 {
            c.apply_probes(round(&["host3"])).await;
        }
        assert!(matches!(
            c.failover("host3", false).await,
            Err(CommandError::HostDown(_))
        ));
        c.failover("host2", false).await.unwrap();
        assert_eq!(mx_order(&rec.last())[0], "10 host2.example.test.");
        c.drain("host1").await.unwrap();
        assert_eq!(
            mx_order(&rec.last()),
            ["10 host2.example.test.", "20 host3.example.test."]
        );
        let serial = rec.last().serial;
        drop(c);

        let rec2 = Recorder::default();
        let mut c = start(dir.path(), &rec2).await;
        assert!(rec2.last().serial > serial, "serial grows across restarts");
        assert_eq!(
            mx_order(&rec2.last()),
            ["10 host2.example.test.", "20 host3.example.test."],
            "override, drain and host3 down all restored"
        );
        c.undrain("host1").await.unwrap();
        c.failback().await.unwrap();
        assert_eq!(mx_order(&rec2.last())[0], "10 host1.example.test.");
        let kinds: Vec<String> = c.status().events.iter().map(|e| e.kind.clone()).collect();
        assert!(kinds.ends_with(&["start".into(), "undrain".into(), "failback".into()]));
    }

    #[tokio::test]
    async fn a_failed_publish_is_retried_next_round() {
        let dir = tempfile::tempdir().unwrap();
        let rec = Recorder::default();
        let mut c = start(dir.path(), &rec).await;
        rec.fail.store(true, Ordering::SeqCst);
        c.failover("host3", false).await.unwrap();
        assert!(c.status().publish_pending);
        rec.fail.store(false, Ordering::SeqCst);
        c.apply_probes(round(&[])).await;
        assert!(!c.status().publish_pending);
        assert_eq!(mx_order(&rec.last())[0], "10 host3.example.test.");
    }
}
