//! The POP3 listeners and the per-connection loop that drives a [`Session`]: reading
//! command lines with the idle timeout, answering pipelined commands in one write,
//! upgrading to TLS (STLS or port 995), checking logins, and the spool work (snapshot at
//! login, message reads, the expunge at QUIT) on the blocking pool.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use hamail_storage::index::Flags;
use hamail_storage::{Spool, StorageError};
use tokio::net::{TcpListener, TcpStream};
use tracing::{debug, info, warn};

use super::session::{
    command_label, Action, AuthOutcome, CommitError, Fetch, FetchError, Maildrop, MaildropError,
    Session, Settings,
};
use crate::auth::LoginOutcome;
use crate::conn::{Connection, ReadError};
use crate::limits::UserPermit;
use crate::service::Services;
use crate::shutdown::Shutdown;

/// RFC 2449 §4 allows 255 octets per command; real clients send longer AUTH lines, so
/// allow more, but never buffer without bound.
pub const MAX_COMMAND_LINE: usize = 1024;
use crate::conn::TLS_HANDSHAKE_TIMEOUT;

/// Everything the POP3 sessions of one agent share.
pub struct Pop3Context {
    pub services: Arc<Services>,
    /// RFC 1939 §3: the autologout timer, at least 10 minutes in production.
    pub idle_timeout: Duration,
}

impl std::fmt::Debug for Pop3Context {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pop3Context")
            .field("services", &self.services)
            .finish_non_exhaustive()
    }
}

/// Accept connections until shutdown. `implicit_tls` is port 995.
pub async fn serve(
    listener: TcpListener,
    settings: Arc<Settings>,
    ctx: Arc<Pop3Context>,
    implicit_tls: bool,
    shutdown: Shutdown,
) {
    let this = crate::listener::Listener {
        name: if implicit_tls { "pop3s" } else { "pop3" },
        implicit_tls,
        refusal: (
            "-ERR [SYS/TEMP] too many connections, try again later\r\n",
            "-ERR [SYS/TEMP] too many connections from your address\r\n",
        ),
    };
    let limits = ctx.services.limits.clone();
    crate::listener::accept_loop(
        listener,
        this,
        limits,
        shutdown.clone(),
        move |socket, peer| {
            metrics::counter!("hamail_pop3_sessions_total", "listener" => this.name).increment(1);
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
    ctx: Arc<Pop3Context>,
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
    let session = Session::new(settings, conn.is_tls());
    if let Err(e) = run(&mut conn, session, &ctx, peer, shutdown).await {
        // A dropped connection deletes nothing (RFC 1939 §6: no UPDATE without QUIT).
        debug!(%peer, error = %e, "POP3 connection ended");
    }
    conn.shutdown().await;
}

async fn run(
    conn: &mut Connection,
    mut session: Session,
    ctx: &Pop3Context,
    peer: SocketAddr,
    mut shutdown: Shutdown,
) -> Result<(), ReadError> {
    // Held from a successful login until the session ends.
    let mut user_permit: Option<UserPermit> = None;
    conn.queue(session.greeting().wire());
    loop {
        if !conn.has_line() {
            conn.flush().await?;
        }
        let line = tokio::select! {
            biased;
            r = conn.read_line(MAX_COMMAND_LINE, ctx.idle_timeout) => r,
            // Waiting for a command: nothing in flight, so end now (deleting nothing).
            _ = shutdown.wait(), if !conn.has_line() => {
                conn.queue(session.end("server shutting down").wire());
                return Ok(());
            }
        };
        let mut action = match line {
            Ok(line) => {
                let label = if session.in_auth() {
                    "AUTH"
                } else {
                    command_label(&line)
                };
                metrics::counter!("hamail_pop3_commands_total", "command" => label).increment(1);
                session.command(&line)
            }
            Err(ReadError::TooLong(_)) => session.line_too_long(),
            Err(ReadError::Timeout) => {
                info!(%peer, user = session.user(), "POP3 idle timeout");
                conn.queue(session.end("idle timeout, closing").wire());
                return Ok(());
            }
            Err(e) => return Err(e),
        };
        loop {
            action = match action {
                Action::Reply(r) => {
                    let big = r.wire().len() > 64 * 1024;
                    conn.queue(&r.into_wire());
                    if big {
                        // A message body: send it now rather than buffer several.
                        conn.flush().await?;
                    }
                    break;
                }
                Action::Close(r) => {
                    conn.queue(r.wire());
                    return Ok(());
                }
                Action::StartTls(r) => {
                    conn.queue(r.wire());
                    conn.flush().await?;
                    let dropped = conn.discard_input();
                    if dropped > 0 {
                        warn!(%peer, bytes = dropped, "discarded plaintext pipelined after STLS");
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
                    let outcome = match outcome {
                        (o, Some(permit)) => {
                            // The slot lives as long as the login (dropped below).
                            let _ = user_permit.replace(permit);
                            o
                        }
                        (o, None) => o,
                    };
                    session.auth_result(outcome)
                }
                Action::OpenMaildrop { user } => {
                    let result = open_maildrop(&ctx.services.spool, &user).await;
                    if result.is_err() {
                        drop(user_permit.take());
                    }
                    match &result {
                        Ok(m) => {
                            info!(%peer, user = %user, messages = m.messages.len(), "POP3 login")
                        }
                        Err(e) => {
                            warn!(%peer, user = %user, error = ?e, "POP3 maildrop unavailable")
                        }
                    }
                    session.maildrop_result(user, result)
                }
                Action::Fetch(fetch) => {
                    let user = session.user().unwrap_or_default().to_string();
                    let result = fetch_message(&ctx.services.spool, &user, fetch).await;
                    session.fetch_result(result)
                }
                Action::Commit {
                    user,
                    uidvalidity,
                    uids,
                } => {
                    // Not raced against shutdown: a QUIT in progress finishes.
                    let result = commit(&ctx.services.spool, &user, uidvalidity, uids).await;
                    match &result {
                        Ok(n) => info!(%peer, user = %user, deleted = n, "POP3 QUIT"),
                        Err(e) => {
                            warn!(%peer, user = %user, error = ?e, "POP3 QUIT: nothing deleted")
                        }
                    }
                    session.commit_result(result)
                }
            };
        }
        if session.user().is_none() {
            drop(user_permit.take());
        }
    }
}

/// The shared login check, then the per-user session slot.
async fn authenticate(
    ctx: &Pop3Context,
    peer: SocketAddr,
    login: &str,
    password: &str,
) -> (AuthOutcome, Option<UserPermit>) {
    match crate::auth::login(
        &ctx.services.directory,
        &ctx.services.limiter,
        peer,
        "pop3",
        login,
        password,
    )
    .await
    {
        LoginOutcome::Ok(user) => match ctx.services.user_sessions.admit(&user) {
            Some(permit) => (AuthOutcome::Ok(user), Some(permit)),
            None => {
                warn!(%peer, user = %user, "POP3 login refused: too many sessions");
                (AuthOutcome::TooManySessions, None)
            }
        },
        LoginOutcome::Failed => (AuthOutcome::Failed, None),
        LoginOutcome::Limited => (AuthOutcome::Limited, None),
        LoginOutcome::Unavailable => (AuthOutcome::Unavailable, None),
    }
}

/// The snapshot: UIDs and CRLF sizes of the INBOX under a read lock (no message reads).
pub async fn open_maildrop(spool: &Spool, user: &str) -> Result<Maildrop, MaildropError> {
    let (s, u) = (spool.clone(), user.to_string());
    let result = crate::blocking::spool(move || {
        let mailbox = s.inbox(&u)?;
        if !mailbox.exists() {
            return Ok(Maildrop::default());
        }
        let read = match mailbox.read() {
            Ok(r) => r,
            // Removed between the check and the lock: empty as well.
            Err(StorageError::NoSuchMailbox { .. }) => return Ok(Maildrop::default()),
            Err(e) => return Err(e),
        };
        let index = read.index();
        Ok(Maildrop {
            uidvalidity: index.uidvalidity,
            messages: index.visible().map(|m| (m.uid, m.crlf_size())).collect(),
        })
    })
    .await;
    result.map_err(|e| match e {
        StorageError::InvalidName { .. } => MaildropError::Permanent,
        _ => MaildropError::Temporary,
    })
}

/// One message by UID from a fresh read session; `Gone` unless it is still the message
/// the snapshot numbered (same UIDVALIDITY, same UID, same size).
pub async fn fetch_message(spool: &Spool, user: &str, fetch: Fetch) -> Result<Vec<u8>, FetchError> {
    let (s, u) = (spool.clone(), user.to_string());
    let result = crate::blocking::spool(move || {
        let mailbox = s.inbox(&u)?;
        let read = match mailbox.read() {
            Ok(r) => r,
            Err(StorageError::NoSuchMailbox { .. }) => return Ok(None),
            Err(e) => return Err(e),
        };
        let index = read.index();
        if index.uidvalidity != fetch.uidvalidity {
            return Ok(None);
        }
        // By binary search (large maildrops); a hidden pseudo message is never served.
        let found = match index.by_uid(fetch.uid) {
            Some(m) if !m.flags.contains(Flags::HIDDEN) && m.crlf_size() == fetch.size => {
                read.read_message(m).map(Some)
            }
            _ => Ok(None),
        };
        found
    })
    .await;
    match result {
        Ok(Some(msg)) => Ok(msg),
        Ok(None) | Err(StorageError::NoSuchMessage { .. }) => Err(FetchError::Gone),
        Err(_) => Err(FetchError::Temporary),
    }
}

/// QUIT: under the write lock, expunge those of `uids` that still exist (through the same
/// crash-safe path as IMAP EXPUNGE). Returns how many were removed.
pub async fn commit(
    spool: &Spool,
    user: &str,
    uidvalidity: u32,
    uids: Vec<u32>,
) -> Result<usize, CommitError> {
    let (s, u) = (spool.clone(), user.to_string());
    let result = crate::blocking::spool(move || {
        let mailbox = s.inbox(&u)?;
        if !mailbox.exists() {
            return Ok(Some(0));
        }
        let mut write = mailbox.write()?;
        if write.index().uidvalidity != uidvalidity {
            return Ok(None);
        }
        write.expunge(&uids).map(|removed| Some(removed.len()))
    })
    .await;
    match result {
        Ok(Some(n)) => Ok(n),
        Ok(None) => Err(CommitError::Changed),
        Err(_) => Err(CommitError::Temporary),
    }
}
