//! `dnsctl serve`: wires the controller to its publisher (the bundled DNS server, or an
//! RFC 2136 primary), the probe loop, the control socket and `/metrics`, and stops them
//! all on SIGTERM or SIGINT.

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use hamail_storage::cluster::ClusterConfig;
use tokio::sync::{watch, Mutex};

use crate::controller::{self, Controller, Publisher};
use crate::server::DnsServer;
use crate::zone::Snapshot;

/// The bundled server: swap the zone in, then tell the secondaries.
struct Bundled {
    server: DnsServer,
    secondaries: Vec<SocketAddr>,
}

impl Publisher for Bundled {
    fn publish<'a>(
        &'a self,
        snapshot: &'a Snapshot,
    ) -> Pin<Box<dyn Future<Output = Result<(), String>> + Send + 'a>> {
        Box::pin(async move {
            self.server.publish(snapshot).map_err(|e| e.to_string())?;
            if !self.secondaries.is_empty() {
                // In the background: a slow secondary must not hold up the next probe
                // round; it will also see the new serial at its next refresh.
                let targets = self.secondaries.clone();
                let zones: Vec<String> = snapshot.zones.iter().map(|z| z.origin.clone()).collect();
                let serial = snapshot.serial;
                tokio::spawn(async move {
                    for r in crate::notify::notify(&targets, &zones, serial).await {
                        if r.ok {
                            tracing::debug!(target = %r.target, zone = %r.zone, serial, "NOTIFY acknowledged");
                        } else {
                            tracing::warn!(target = %r.target, zone = %r.zone, serial, detail = %r.detail, "NOTIFY failed");
                        }
                    }
                });
            }
            Ok(())
        })
    }
}

/// RFC 2136 mode: the dynamic records go to an existing primary as signed updates.
struct Remote(crate::rfc2136::Updater);

impl Publisher for Remote {
    fn publish<'a>(
        &'a self,
        snapshot: &'a Snapshot,
    ) -> Pin<Box<dyn Future<Output = Result<(), String>> + Send + 'a>> {
        Box::pin(async move { self.0.apply(snapshot).await.map_err(|e| e.to_string()) })
    }
}

/// Run until SIGTERM/SIGINT.
pub async fn serve(config: ClusterConfig) -> anyhow::Result<()> {
    let dns = config
        .dns
        .clone()
        .context("the config has no [dns] section; dnsctl needs one")?;
    let metrics = match dns.metrics_listen {
        Some(addr) => Some((
            crate::metrics_http::install()?,
            crate::metrics_http::bind(addr).await?,
        )),
        None => None,
    };
    let control = crate::control::bind(&dns.control_socket)
        .await
        .with_context(|| format!("control socket {}", dns.control_socket.display()))?;
    let (stop_tx, stop_rx) = watch::channel(false);

    // The server starts empty-handed and gets the controller's first snapshot, so the
    // first zone ever served already carries the new serial.
    let placeholder = Snapshot {
        serial: 0,
        zones: Vec::new(),
    };
    let (server, publisher): (Option<DnsServer>, Box<dyn Publisher>) = match &dns.rfc2136 {
        Some(remote) => {
            let updater = crate::rfc2136::Updater::new(remote)?;
            tracing::info!(primary = %remote.server, "RFC 2136 mode: updating the primary, not serving");
            (None, Box::new(Remote(updater)))
        }
        None => {
            let server = DnsServer::new(&placeholder, dns.secondaries.clone())?;
            let publisher = Box::new(Bundled {
                server: server.clone(),
                secondaries: dns
                    .secondaries
                    .iter()
                    .map(|ip| SocketAddr::new(*ip, dns.notify_port))
                    .collect(),
            });
            (Some(server), publisher)
        }
    };
    let controller = Controller::start(config.clone(), dns.clone(), publisher).await?;
    let serial = controller.snapshot().serial;
    let controller = Arc::new(Mutex::new(controller));

    let mut dns_stop = stop_rx.clone();
    let listen = dns.listen;
    let dns_task = tokio::spawn(async move {
        let stopped = async move {
            let _ = dns_stop.changed().await;
        };
        match server {
            Some(server) => server.serve(listen, stopped).await,
            None => {
                stopped.await;
                Ok(())
            }
        }
    });
    let control_task = tokio::spawn(crate::control::serve(
        control,
        controller.clone(),
        stop_rx.clone(),
    ));
    let metrics_task = metrics.map(|(handle, listener)| {
        tokio::spawn(crate::metrics_http::serve(
            listener,
            handle,
            stop_rx.clone(),
        ))
    });
    let timeout = Duration::from_millis(dns.probe_timeout_ms);
    let probe_task = tokio::spawn(controller::run(
        controller.clone(),
        config.clone(),
        timeout,
        stop_rx.clone(),
    ));
    tracing::info!(%listen, serial, control = %dns.control_socket.display(), "dnsctl serving");

    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    let dns_result = tokio::select! {
        _ = term.recv() => None,
        _ = tokio::signal::ctrl_c() => None,
        r = dns_task => Some(r),
    };
    let _ = stop_tx.send(true);
    let _ = probe_task.await;
    let _ = control_task.await;
    if let Some(t) = metrics_task {
        let _ = t.await;
    }
    let _ = std::fs::remove_file(&dns.control_socket);
    match dns_result {
        Some(Ok(Ok(()))) | None => {
            tracing::info!("dnsctl stopped");
            Ok(())
        }
        Some(Ok(Err(e))) => Err(anyhow::anyhow!("DNS server on {listen}: {e}")),
        Some(Err(e)) => Err(anyhow::anyhow!("DNS server task: {e}")),
    }
}
