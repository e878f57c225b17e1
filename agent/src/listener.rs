//! The accept loop every protocol shares: accept until shutdown, back off on accept
//! errors (EMFILE), count connections, apply the total and per-IP limits (refused clients
//! get the protocol's "too many connections" line, except on implicit-TLS ports where
//! plaintext would only confuse them), and run each admitted connection in its own task
//! holding its permit.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};
use tracing::warn;

use crate::conn::{Connection, Stream};
use crate::limits::{ConnLimits, Refused};
use crate::shutdown::Shutdown;

/// How one listener refuses and serves.
#[derive(Debug, Clone, Copy)]
pub struct Listener {
    /// Metrics label and log name ("smtp", "imaps", ...).
    pub name: &'static str,
    pub implicit_tls: bool,
    /// The line sent to a refused client: (total limit, per-IP limit), with CRLF.
    pub refusal: (&'static str, &'static str),
}

/// Serve `listener` until `shutdown`; `handle(socket, peer)` runs each connection.
pub async fn accept_loop<F, Fut>(
    listener: TcpListener,
    this: Listener,
    limits: Arc<ConnLimits>,
    mut shutdown: Shutdown,
    handle: F,
) where
    F: Fn(TcpStream, SocketAddr) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    loop {
        let accepted = tokio::select! {
            r = listener.accept() => r,
            _ = shutdown.wait() => break,
        };
        let (socket, peer) = match accepted {
            Ok(a) => a,
            Err(e) => {
                // EMFILE and friends: back off instead of spinning.
                warn!(listener = this.name, error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        metrics::counter!("hamail_connections_total", "listener" => this.name).increment(1);
        let permit = match limits.admit(peer.ip()) {
            Ok(p) => p,
            Err(why) => {
                metrics::counter!("hamail_connections_refused_total", "listener" => this.name)
                    .increment(1);
                refuse(socket, peer, why, this);
                continue;
            }
        };
        let _ = socket.set_nodelay(true);
        let session = handle(socket, peer);
        tokio::spawn(async move {
            let _permit = permit;
            session.await;
        });
    }
}

fn refuse(socket: TcpStream, peer: SocketAddr, why: Refused, this: Listener) {
    warn!(listener = this.name, %peer, ?why, "connection refused: limit reached");
    if this.implicit_tls {
        return;
    }
    tokio::spawn(async move {
        let mut conn = Connection::new(Stream::Plain(socket));
        let line = match why {
            Refused::Total => this.refusal.0,
            Refused::PerIp => this.refusal.1,
        };
        conn.queue(line.as_bytes());
        conn.shutdown().await;
    });
}
