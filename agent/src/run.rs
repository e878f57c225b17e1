//! `hamail-agent run`: wire the parts together for this host, serve until SIGTERM, then
//! shut down gracefully.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use hamail_storage::cluster::ClusterConfig;
use hamail_storage::Spool;
use tokio::net::TcpListener;
use tracing::{info, warn};

use crate::auth::{LimiterConfig, LoginLimiter};
use crate::health::HealthContext;
use crate::limits::{ConnLimits, UserSessions};
use crate::pop3::server::Pop3Context;
use crate::smtp::server::SmtpContext;
use crate::smtp::{Kind, Settings};

/// How often an IDLE session looks at the spool: the latency with which a change made on
/// another host (or by SMTP) reaches an idling client.
pub const IDLE_POLL: Duration = Duration::from_secs(1);

/// How long in-flight transactions may take to finish after SIGTERM.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(30);

pub async fn run(config: Arc<ClusterConfig>, host_name: &str) -> anyhow::Result<()> {
    let host = config.host(host_name)?.clone();
    let fqdn = config.fqdn(&host);
    let spool = Spool::open(&config.cluster.spool, config.lock_options(&host))
        .with_context(|| format!("opening the spool {}", config.cluster.spool.display()))?;
    let directory = Arc::new(crate::auth::from_config(&config)?);
    let tls = match &config.tls {
        Some(t) => Some(crate::tls::acceptor(&t.cert, &t.key)?),
        None => None,
    };
    let limits = ConnLimits::new(
        config.limits.max_connections,
        config.limits.max_connections_per_ip,
    );
    let (trigger, shutdown) = crate::shutdown::channel();
    let prometheus = metrics_exporter_prometheus::PrometheusBuilder::new()
        .install_recorder()
        .map_err(|e| warn!(error = %e, "metrics disabled"))
        .ok();

    let health = Arc::new(HealthContext::new(
        host.name.clone(),
        spool.clone(),
        directory.clone(),
        Duration::from_millis(config.health.spool_deadline_ms),
        prometheus,
        shutdown.clone(),
    ));
    let (relay, relay_task) = crate::relay::spawn(
        config.clone(),
        host.clone(),
        spool.clone(),
        shutdown.clone(),
    );
    // One failed-login limiter for every protocol: guessing over POP3 counts for SMTP too.
    let limiter = Arc::new(LoginLimiter::with_config(LimiterConfig {
        per_ip: config.limits.login_failures_per_ip as usize,
        per_user: config.limits.login_failures_per_user as usize,
        window: Duration::from_secs(config.limits.login_failure_window_secs),
        ..LimiterConfig::default()
    }));
    let user_sessions = UserSessions::new(config.limits.max_sessions_per_user);
    let allow_plaintext_auth = config.tls.as_ref().is_none_or(|t| t.allow_plaintext_auth);
    let services = Arc::new(crate::service::Services {
        spool: spool.clone(),
        directory: directory.clone(),
        limiter,
        tls,
        limits: limits.clone(),
        user_sessions,
        allow_plaintext_auth,
        hostname: fqdn.clone(),
    });
    let ctx = Arc::new(SmtpContext {
        services: services.clone(),
        primary_domain: config.cluster.domains.first().cloned().unwrap_or_default(),
        command_timeout: Duration::from_secs(config.limits.command_timeout_secs),
        data_timeout: Duration::from_secs(config.limits.data_timeout_secs),
        on_queued: Box::new(move || relay.kick()),
        spool_status: health.spool_status(),
    });
    tokio::spawn(
        health
            .clone()
            .watch_spool(Duration::from_secs(config.health.interval_secs.max(1))),
    );

    let l = &config.listeners;
    for (name, port, kind, implicit_tls) in [
        ("smtp", l.smtp, Kind::Mx, false),
        ("submission", l.submission, Kind::Submission, false),
        ("submissions", l.submissions, Kind::Submission, true),
    ] {
        if port == 0 {
            continue;
        }
        let listener = bind(&health, name, SocketAddr::new(host.address, port)).await?;
        let settings = Arc::new(Settings {
            kind,
            hostname: fqdn.clone(),
            tls_available: services.tls.is_some(),
            allow_plaintext_auth,
            max_message_size: config.limits.max_message_size,
            max_recipients: config.limits.max_recipients as usize,
            config: config.clone(),
        });
        tokio::spawn(crate::smtp::server::serve(
            listener,
            settings,
            ctx.clone(),
            implicit_tls,
            shutdown.clone(),
        ));
    }
    let imap_ctx = Arc::new(crate::imap::session::ImapContext {
        services: services.clone(),
        idle_timeout: Duration::from_secs(config.limits.imap_idle_timeout_secs),
        max_literal: u32::try_from(config.limits.max_message_size).unwrap_or(u32::MAX),
        idle_poll: IDLE_POLL,
    });
    for (name, port, implicit_tls) in [("imap", l.imap, false), ("imaps", l.imaps, true)] {
        if port == 0 {
            continue;
        }
        let listener = bind(&health, name, SocketAddr::new(host.address, port)).await?;
        tokio::spawn(crate::imap::server::serve(
            listener,
            imap_ctx.clone(),
            implicit_tls,
            shutdown.clone(),
        ));
    }
    let pop3 = Arc::new(Pop3Context {
        services: services.clone(),
        idle_timeout: Duration::from_secs(config.limits.pop3_idle_timeout_secs),
    });
    for (name, port, implicit_tls) in [("pop3", l.pop3, false), ("pop3s", l.pop3s, true)] {
        if port == 0 {
            continue;
        }
        let listener = bind(&health, name, SocketAddr::new(host.address, port)).await?;
        let settings = Arc::new(crate::pop3::Settings {
            hostname: fqdn.clone(),
            tls_available: services.tls.is_some(),
            allow_plaintext_auth,
        });
        tokio::spawn(crate::pop3::server::serve(
            listener,
            settings,
            pop3.clone(),
            implicit_tls,
            shutdown.clone(),
        ));
    }
    let health_addr = config
        .health
        .listen
        .unwrap_or(SocketAddr::new(host.address, l.health));
    if health_addr.port() != 0 {
        let listener = TcpListener::bind(health_addr)
            .await
            .with_context(|| format!("binding health on {health_addr}"))?;
        info!(listener = "health", addr = %health_addr, "listening");
        tokio::spawn(crate::health::serve(listener, health.clone()));
    }

    notify_systemd(sd_notify::NotifyState::Ready);
    info!(host = %host.name, fqdn = %fqdn, spool = %config.cluster.spool.display(), "hamail-agent ready");
    wait_for_signal().await;

    info!("shutting down: no new connections, finishing transactions in flight");
    notify_systemd(sd_notify::NotifyState::Stopping);
    trigger.trigger();
    let clean = limits.drained(SHUTDOWN_GRACE).await;
    let _ = tokio::time::timeout(SHUTDOWN_GRACE, relay_task).await;
    if clean {
        info!("all sessions finished");
    } else {
        warn!(
            active = limits.active(),
            "grace period over, closing remaining sessions"
        );
    }
    Ok(())
}

/// Bind a protocol listener and mark it up for `/healthz`.
async fn bind(
    health: &HealthContext,
    name: &'static str,
    addr: SocketAddr,
) -> anyhow::Result<TcpListener> {
    let listener = TcpListener::bind(addr)
        .await
        .with_context(|| format!("binding {name} on {addr}"))?;
    health.set_listener(name, true);
    info!(listener = name, %addr, "listening");
    Ok(listener)
}

fn notify_systemd(state: sd_notify::NotifyState) {
    if std::env::var_os("NOTIFY_SOCKET").is_some() {
        if let Err(e) = sd_notify::notify(false, &[state]) {
            warn!(error = %e, "sd_notify failed");
        }
    }
}

async fn wait_for_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let (Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        // Without signal handlers we can only run until killed.
        std::future::pending::<()>().await;
        return;
    };
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
}
