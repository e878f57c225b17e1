//! The IMAP listeners and the connection loop: the [`Framer`] (`framing.rs`) turns the
//! byte stream into commands and decides about every literal (so a refused command is
//! skipped exactly, literal data is never mistaken for commands, and memory is bounded by
//! the literal limit); this loop reads, writes, and hands each command to
//! `cmd::dispatch`, which runs it on the connection or, for spool work, on the session on
//! the blocking pool ([`Loop::on_spool`]).

use std::net::SocketAddr;
use std::sync::Arc;

use imap_codec::encode::Encoder;
use imap_codec::{CommandCodec, GreetingCodec};
use imap_types::response::{Code, Greeting, GreetingKind, Response};
use imap_types::IntoStatic;
use tokio::net::{TcpListener, TcpStream};
use tracing::{debug, warn};

use super::framing::{Event, Framer, MAX_LITERAL_BEFORE_LOGIN};
use super::reply::{code, encode, status, Kind, Reply};
use super::session::{ImapContext, Session};
use crate::conn::{Connection, ReadError};
use crate::shutdown::Shutdown;

/// Accept connections until shutdown. `implicit_tls` is port 993.
pub async fn serve(
    listener: TcpListener,
    ctx: Arc<ImapContext>,
    implicit_tls: bool,
    shutdown: Shutdown,
) {
    let this = crate::listener::Listener {
        name: if implicit_tls { "imaps" } else { "imap" },
        implicit_tls,
        refusal: (
            "* BYE [UNAVAILABLE] Too many connections, try again later\r\n",
            "* BYE [UNAVAILABLE] Too many connections from your address\r\n",
        ),
    };
    let limits = ctx.services.limits.clone();
    crate::listener::accept_loop(
        listener,
        this,
        limits,
        shutdown.clone(),
        move |socket, peer| handle(socket, peer, ctx.clone(), implicit_tls, shutdown.clone()),
    )
    .await;
}

async fn handle(
    socket: TcpStream,
    peer: SocketAddr,
    ctx: Arc<ImapContext>,
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
    let Some(conn) = Connection::open(socket, peer, tls).await else {
        return;
    };
    let session = Session::new(ctx.clone(), conn.is_tls());
    if let Err(e) = Loop::new(conn, session, ctx, peer, shutdown).run().await {
        debug!(%peer, error = %e, "IMAP connection ended");
    }
}

/// One connection. The session is `None` only while a command runs on the blocking pool.
pub(super) struct Loop {
    pub(super) conn: Connection,
    pub(super) framer: Framer,
    pub(super) session: Option<Session>,
    pub(super) ctx: Arc<ImapContext>,
    pub(super) peer: SocketAddr,
    pub(super) shutdown: Shutdown,
}

/// What the framer produced next.
pub(super) enum Next {
    Message,
    Closed,
}

impl Loop {
    fn new(
        conn: Connection,
        session: Session,
        ctx: Arc<ImapContext>,
        peer: SocketAddr,
        shutdown: Shutdown,
    ) -> Loop {
        Loop {
            conn,
            framer: Framer::new(ctx.max_literal),
            session: Some(session),
            ctx,
            peer,
            shutdown,
        }
    }

    pub(super) fn session(&mut self) -> Result<&mut Session, ReadError> {
        self.session.as_mut().ok_or(ReadError::Closed)
    }

    pub(super) fn send(&mut self, r: &Response<'_>) {
        self.conn.queue(&encode(r));
    }

    pub(super) fn send_all(&mut self, reply: &Reply) {
        self.conn.queue(&reply.raw);
        for r in &reply.responses {
            self.conn.queue(&encode(r));
        }
    }

    /// A command that needs no spool: run on the session here. False ends the connection.
    pub(super) fn answer(
        &mut self,
        f: impl FnOnce(&mut Session) -> Reply,
    ) -> Result<bool, ReadError> {
        let reply = f(self.session()?);
        self.send_all(&reply);
        Ok(!reply.close)
    }

    /// A command that works on the spool: run on the session on the blocking pool (see
    /// `crate::blocking`). False ends the connection.
    pub(super) async fn on_spool(
        &mut self,
        f: impl FnOnce(&mut Session) -> Reply + Send + 'static,
    ) -> Result<bool, ReadError> {
        let Some(reply) = self.with_session(f).await? else {
            self.conn.queue(b"* BYE [SERVERBUG] Internal error\r\n");
            return Ok(false);
        };
        self.send_all(&reply);
        if reply.close {
            debug!(peer = %self.peer, "session closed by the command");
        }
        Ok(!reply.close)
    }

    /// Run `f` with the session on the blocking pool; `None` if the task failed (the
    /// session went with it, so the connection must end).
    pub(super) async fn with_session<R: Send + 'static>(
        &mut self,
        f: impl FnOnce(&mut Session) -> R + Send + 'static,
    ) -> Result<Option<R>, ReadError> {
        let mut session = self.session.take().ok_or(ReadError::Closed)?;
        let Ok((session, r)) = crate::blocking::run(move || {
            let r = f(&mut session);
            (session, r)
        })
        .await
        else {
            warn!(peer = %self.peer, "IMAP command task failed");
            return Ok(None);
        };
        self.session = Some(session);
        Ok(Some(r))
    }

    async fn run(mut self) -> Result<(), ReadError> {
        let greeting = Greeting::new(GreetingKind::Ok, None, "hamail IMAP4rev1 ready")
            .unwrap_or_else(|_| Greeting {
                kind: GreetingKind::Ok,
                code: None,
                text: imap_types::core::Text::unvalidated("ready"),
            });
        self.conn
            .queue(&GreetingCodec::default().encode(&greeting).dump());
        loop {
            match self.next_message(true).await? {
                Next::Closed => {
                    self.conn.shutdown().await;
                    return Ok(());
                }
                Next::Message => {}
            }
            let decoded = self.framer.decode(&CommandCodec::default());
            let command = match decoded {
                Ok(cmd) => cmd.into_static(),
                Err(e) => {
                    debug!(peer = %self.peer, error = ?e, "unparsable IMAP command");
                    let tag = self.framer.tag();
                    self.send(&status(
                        tag.as_ref(),
                        Kind::Bad,
                        Some(Code::Parse),
                        "Could not parse command",
                    ));
                    continue;
                }
            };
            metrics::counter!("hamail_imap_commands_total", "command" => command.body.name())
                .increment(1);
            if !self.dispatch(command).await? {
                self.conn.shutdown().await;
                return Ok(());
            }
        }
    }

    /// Read until the framer holds a complete command; answers literal announcements and
    /// refusals on the way. `idle_ok`: a shutdown may end the wait.
    pub(super) async fn next_message(&mut self, idle_ok: bool) -> Result<Next, ReadError> {
        loop {
            let event = self.framer.next(self.authenticated());
            match event {
                Event::Message => return Ok(Next::Message),
                Event::NeedMore => {
                    self.conn.flush().await?;
                    let timeout = self.ctx.idle_timeout;
                    let chunk = if idle_ok {
                        let mut shutdown = self.shutdown.clone();
                        tokio::select! {
                            r = self.conn.read_chunk(timeout) => r,
                            _ = shutdown.wait() => {
                                self.conn.queue(b"* BYE Server shutting down, reconnect later\r\n");
                                return Ok(Next::Closed);
                            }
                        }
                    } else {
                        self.conn.read_chunk(timeout).await
                    };
                    match chunk {
                        Ok(bytes) => {
                            if !self.enqueue(&bytes) {
                                return Ok(Next::Closed);
                            }
                        }
                        Err(ReadError::Timeout) => {
                            self.conn.queue(b"* BYE Autologout; idle for too long\r\n");
                            return Ok(Next::Closed);
                        }
                        Err(e) => return Err(e),
                    }
                }
                other => {
                    if !self.act(other).await? {
                        return Ok(Next::Closed);
                    }
                }
            }
        }
    }

    fn authenticated(&self) -> bool {
        self.session.as_ref().is_some_and(|s| s.is_authenticated())
    }

    /// Hand bytes to the framer; false ends the connection (a line or literal ran longer
    /// than announced: memory stays bounded).
    pub(super) fn enqueue(&mut self, bytes: &[u8]) -> bool {
        match self.framer.enqueue(bytes) {
            Ok(()) => true,
            Err(e) => {
                debug!(peer = %self.peer, pending = e.pending, allowance = e.allowance, "line too long, closing");
                self.conn.queue(b"* BYE [TOOBIG] Line too long\r\n");
                false
            }
        }
    }

    /// Carry out a framing event other than a command or a need for bytes; false ends
    /// the connection.
    pub(super) async fn act(&mut self, event: Event) -> Result<bool, ReadError> {
        match event {
            Event::Continue => {
                self.conn.queue(b"+ Ready for literal data\r\n");
                self.conn.flush().await?;
            }
            Event::Refused { tag, text, literal } => {
                if let Some(size) = literal {
                    let user = self.session.as_ref().and_then(|s| s.user.as_deref());
                    let limit = if user.is_some() {
                        self.ctx.max_literal
                    } else {
                        self.ctx.max_literal.min(MAX_LITERAL_BEFORE_LOGIN)
                    };
                    warn!(peer = %self.peer, user, size, limit, "refused a literal over the limit (BAD TOOBIG); no byte of it is read as a command");
                }
                self.send(&status(tag.as_ref(), Kind::Bad, Some(code("TOOBIG")), text));
            }
            Event::Close { text, literal } => {
                warn!(peer = %self.peer, size = literal, "refused a literal over the limit before login; closing");
                self.conn
                    .queue(format!("* BYE [TOOBIG] {text}\r\n").as_bytes());
                return Ok(false);
            }
            Event::Message | Event::NeedMore => {}
        }
        Ok(true)
    }
}
