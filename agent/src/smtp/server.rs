//! The SMTP listeners and the per-connection loop that drives a [`Session`]: reading
//! lines and message data with timeouts, answering pipelined commands in one write,
//! upgrading to TLS, and calling the directory and the spool.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use hamail_storage::wire::{DotDecoder, Progress};
use hamail_storage::StorageError;
use tokio::net::{TcpListener, TcpStream};
use tracing::{debug, info, warn};

use super::reply::Reply;
use super::session::{Accepted, Action, AuthOutcome, DeliveryFailure, Lookup, Session, Settings};
use crate::conn::{Connection, ReadError};
use crate::service::Services;
use crate::shutdown::Shutdown;

/// RFC 5321 §4.5.3.1.4/5: command lines up to 512 octets, but AUTH (RFC 4954 §4) and
/// extensions need more; anything longer is refused, never buffered without bound.
pub const MAX_COMMAND_LINE: usize = 4096;
/// Longest message line kept (RFC 5322 says 998; real mail has longer HTML lines).
pub const MAX_DATA_LINE: usize = 64 * 1024;
use crate::conn::TLS_HANDSHAKE_TIMEOUT;

/// Everything the SMTP sessions of one agent share.
pub struct SmtpContext {
    pub services: Arc<Services>,
    /// Local recipients that fail now are queued as `user@primary_domain`.
    pub primary_domain: String,
    pub command_timeout: Duration,
    pub data_timeout: Duration,
    /// Called after a message was put into the queue (wakes the relay runner).
    pub on_queued: Box<dyn Fn() + Send + Sync>,
    /// The health probe's spool verdict: recipients get 451 while it is failing.
    pub spool_status: crate::health::SpoolStatus,
}

impl std::fmt::Debug for SmtpContext {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SmtpContext")
            .field("services", &self.services)
            .finish_non_exhaustive()
    }
}

/// Accept connections until shutdown. `implicit_tls` is port 465.
pub async fn serve(
    listener: TcpListener,
    settings: Arc<Settings>,
    ctx: Arc<SmtpContext>,
    implicit_tls: bool,
    shutdown: Shutdown,
) {
    let this = crate::listener::Listener {
        name: if implicit_tls {
            "submissions"
        } else {
            settings.kind.name()
        },
        implicit_tls,
        refusal: (
            "421 4.7.0 Too many connections, try again later\r\n",
            "421 4.7.0 Too many connections from your address\r\n",
        ),
    };
    let limits = ctx.services.limits.clone();
    crate::listener::accept_loop(
        listener,
        this,
        limits,
        shutdown.clone(),
        move |socket, peer| {
            handle(
                socket,
                peer,
                settings.clone(),
                ctx.clone(),
                implicit_tls,
                shutdown.clone(),
            )
        },
    )
    .await;
}

async fn handle(
    socket: TcpStream,
    peer: SocketAddr,
    settings: Arc<Settings>,
    ctx: Arc<SmtpContext>,
    implicit_tls: bool,
    shutdown: Shutdown,
) {
    let tls = if implicit_tls {
        let Some(acceptor) = &ctx.services.tls else {
            return;
        };
        Some(acceptor)
    } else {
        None
    };
    let Some(mut conn) = Connection::open(socket, peer, tls).await else {
        return;
    };
    let session = Session::new(settings, peer.ip(), conn.is_tls());
    if let Err(e) = run(&mut conn, session, &ctx, peer, shutdown).await {
        debug!(%peer, error = %e, "connection ended");
    }
    conn.shutdown().await;
}

async fn run(
    conn: &mut Connection,
    mut session: Session,
    ctx: &SmtpContext,
    peer: SocketAddr,
    mut shutdown: Shutdown,
) -> Result<(), ReadError> {
    conn.queue(session.greeting().wire());
    loop {
        if !conn.has_line() {
            conn.flush().await?;
        }
        let line = tokio::select! {
            biased;
            r = conn.read_line(MAX_COMMAND_LINE, ctx.command_timeout) => r,
            // Between transactions a shutdown ends the session politely.
            _ = shutdown.wait(), if !conn.has_line() => {
                conn.queue(Reply::new(421, "4.3.2", "Service shutting down, try again later").wire());
                return Ok(());
            }
        };
        let line = match line {
            Ok(l) => l,
            Err(ReadError::TooLong(_)) => {
                reject_metric("5.5.2");
                conn.queue(Reply::new(500, "5.5.2", "Line too long").wire());
                continue;
            }
            Err(ReadError::Timeout) => {
                conn.queue(Reply::new(421, "4.4.2", "Timeout, closing connection").wire());
                return Ok(());
            }
            Err(e) => return Err(e),
        };
        let mut action = session.command(&line);
        loop {
            action = match action {
                Action::Reply(r) => {
                    count_reply(&r);
                    conn.queue(r.wire());
                    break;
                }
                Action::Close(r) => {
                    count_reply(&r);
                    conn.queue(r.wire());
                    return Ok(());
                }
                Action::StartTls(r) => {
                    conn.queue(r.wire());
                    conn.flush().await?;
                    let dropped = conn.discard_input();
                    if dropped > 0 {
                        warn!(%peer, bytes = dropped, "discarded plaintext pipelined after STARTTLS");
                    }
                    let Some(acceptor) = &ctx.services.tls else {
                        return Ok(());
                    };
                    conn.upgrade(acceptor, TLS_HANDSHAKE_TIMEOUT).await?;
                    session.tls_started();
                    break;
                }
                Action::Authenticate { login, password } => {
                    let outcome = authenticate(ctx, peer, &login, &password).await;
                    session.auth_result(outcome)
                }
                Action::CheckRecipient {
                    address,
                    local_part,
                } => {
                    let domain = address.rsplit_once('@').map_or("", |(_, d)| d);
                    use crate::health::SpoolState;
                    let lookup = match ctx.spool_status.state() {
                        SpoolState::Full => Lookup::StoreFull,
                        SpoolState::Unavailable => Lookup::StoreUnavailable,
                        SpoolState::Writable => {
                            match ctx.services.directory.resolve_in(&local_part, domain).await {
                                Ok(Some(t)) => Lookup::Found(t),
                                Ok(None) => Lookup::Unknown,
                                Err(e) => {
                                    warn!(%peer, error = %e, "recipient lookup failed");
                                    Lookup::Unavailable
                                }
                            }
                        }
                    };
                    session.rcpt_result(address, lookup)
                }
                Action::ReadData(r) => {
                    conn.queue(r.wire());
                    conn.flush().await?;
                    let max = usize::try_from(session.max_message_size()).unwrap_or(usize::MAX);
                    let mut decoder = DotDecoder::new(max, MAX_DATA_LINE);
                    conn.read_with(ctx.data_timeout, |bytes| match decoder.feed(bytes) {
                        Progress::Done(n) => Some(n),
                        Progress::More => None,
                    })
                    .await
                    .inspect_err(|e| {
                        if matches!(e, ReadError::Timeout) {
                            info!(%peer, queue_id = session.queue_id(), "timeout during DATA, nothing stored");
                        }
                    })?;
                    let size = decoder.wire_size();
                    session.data_result(decoder.finish(), size)
                }
                Action::Discard { bytes, reply } => {
                    let mut left = bytes;
                    conn.read_with(ctx.data_timeout, |buf| {
                        let take = buf.len().min(usize::try_from(left).unwrap_or(usize::MAX));
                        left -= take as u64;
                        (left == 0).then_some(take)
                    })
                    .await?;
                    warn!(%peer, bytes, "discarded a BDAT chunk (CHUNKING is not offered)");
                    Action::Reply(reply)
                }
                Action::Deliver(accepted) => {
                    let result =
                        store(ctx, session.queue_id(), *accepted, peer, session.user()).await;
                    session.delivered(result)
                }
            };
        }
    }
}

async fn authenticate(
    ctx: &SmtpContext,
    peer: SocketAddr,
    login: &str,
    password: &str,
) -> AuthOutcome {
    crate::auth::login(
        &ctx.services.directory,
        &ctx.services.limiter,
        peer,
        "smtp",
        login,
        password,
    )
    .await
}

/// Put the message on the spool (blocking file I/O, so on the blocking pool) and log the
/// transaction in one line.
async fn store(
    ctx: &SmtpContext,
    queue_id: &str,
    msg: Accepted,
    peer: SocketAddr,
    user: Option<&str>,
) -> Result<(), DeliveryFailure> {
    let started = Instant::now();
    let spool = ctx.services.spool.clone();
    let domain = ctx.primary_domain.clone();
    let id = queue_id.to_string();
    let data_len = msg.data.len();
    let (sender, recipients) = (msg.sender.clone(), msg.recipients.clone());
    let result = crate::blocking::spool(move || {
        crate::delivery::deliver(
            &spool,
            &domain,
            &id,
            &msg.sender,
            &msg.users,
            &msg.remote,
            &msg.data,
        )
    })
    .await;
    let elapsed = started.elapsed();
    metrics::histogram!("hamail_delivery_seconds").record(elapsed.as_secs_f64());
    match result {
        Ok(d) => {
            metrics::counter!("hamail_messages_total", "result" => "accepted").increment(1);
            info!(queue_id, %peer, user, from = %sender, rcpts = recipients.len(),
                local = d.local, queued = d.queued, size = data_len, ms = elapsed.as_millis() as u64,
                result = "250", "message accepted");
            if d.queued > 0 {
                (ctx.on_queued)();
            }
            Ok(())
        }
        Err(e) => {
            let failure = if matches!(e, StorageError::NoSpace { .. }) {
                DeliveryFailure::NoSpace
            } else {
                DeliveryFailure::Temporary
            };
            metrics::counter!("hamail_messages_total", "result" => "deferred").increment(1);
            warn!(queue_id, %peer, user, from = %sender, rcpts = recipients.len(), size = data_len,
                ms = elapsed.as_millis() as u64, error = %e, result = "4xx", "message not stored");
            Err(failure)
        }
    }
}

fn count_reply(r: &Reply) {
    if r.code() >= 400 {
        reject_metric(r.enhanced());
    }
}

/// Rejections by enhanced status code (a small, fixed set of label values).
fn reject_metric(reason: &'static str) {
    metrics::counter!("hamail_smtp_rejects_total", "reason" => reason).increment(1);
}
