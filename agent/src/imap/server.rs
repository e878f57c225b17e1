//! The IMAP listeners and the connection loop: the [`Framer`] (`framing.rs`) turns the
//! byte stream into commands and decides about every literal (so a refused command is
//! skipped exactly, literal data is never mistaken for commands, and memory is bounded by
//! the literal limit); this loop reads, writes and runs the session's commands on the
//! blocking pool. LOGIN, AUTHENTICATE, STARTTLS and IDLE are handled here because they need the
//! network or the async directory.

use std::net::SocketAddr;
use std::sync::Arc;

use imap_codec::encode::Encoder;
use imap_codec::{AuthenticateDataCodec, CommandCodec, GreetingCodec, IdleDoneCodec};
use imap_types::auth::{AuthMechanism, AuthenticateData};
use imap_types::command::{Command, CommandBody};
use imap_types::core::Tag;
use imap_types::response::{Code, Greeting, GreetingKind, Response};
use imap_types::IntoStatic;
use tokio::net::{TcpListener, TcpStream};
use tracing::{debug, warn};

use super::framing::{Event, Framer, MAX_LITERAL_BEFORE_LOGIN};
use super::session::{code, encode, status, ImapContext, Kind, Reply, Session};
use crate::auth::LoginOutcome;
use crate::conn::{Connection, ReadError};
use crate::shutdown::Shutdown;

use crate::conn::TLS_HANDSHAKE_TIMEOUT;

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
    let limits = ctx.limits.clone();
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
        let Some(acceptor) = &ctx.tls else { return };
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

/// One connection.
struct Loop {
    conn: Connection,
    framer: Framer,
    session: Option<Session>,
    ctx: Arc<ImapContext>,
    peer: SocketAddr,
    shutdown: Shutdown,
}

/// What the fragmentizer produced next.
enum Next {
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

    fn session(&mut self) -> Result<&mut Session, ReadError> {
        self.session.as_mut().ok_or(ReadError::Closed)
    }

    fn send(&mut self, r: &Response<'_>) {
        self.conn.queue(&encode(r));
    }

    fn send_all(&mut self, reply: &Reply) {
        self.conn.queue(&reply.raw);
        for r in &reply.responses {
            self.conn.queue(&encode(r));
        }
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
    async fn next_message(&mut self, idle_ok: bool) -> Result<Next, ReadError> {
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
        self.session
            .as_ref()
            .is_some_and(|s| !matches!(s.state, super::session::State::NotAuthenticated))
    }

    /// Hand bytes to the framer; false ends the connection (a line or literal ran longer
    /// than announced: memory stays bounded).
    fn enqueue(&mut self, bytes: &[u8]) -> bool {
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
    async fn act(&mut self, event: Event) -> Result<bool, ReadError> {
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

    /// Run one command; false ends the connection.
    async fn dispatch(&mut self, cmd: Command<'static>) -> Result<bool, ReadError> {
        let tag = cmd.tag.clone();
        match cmd.body {
            CommandBody::StartTLS => return self.starttls(&tag).await,
            CommandBody::Login { username, password } => {
                let user = String::from_utf8_lossy(username.as_ref()).into_owned();
                let pass = String::from_utf8_lossy(password.declassify().as_ref()).into_owned();
                self.login(&tag, &user, &pass).await;
                return Ok(true);
            }
            CommandBody::Authenticate {
                mechanism,
                initial_response,
            } => {
                return self
                    .authenticate(
                        &tag,
                        mechanism,
                        initial_response.map(|r| r.declassify().to_vec()),
                    )
                    .await;
            }
            CommandBody::Idle => return self.idle(&tag).await,
            _ => {}
        }
        let mut session = self.session.take().ok_or(ReadError::Closed)?;
        let joined = tokio::task::spawn_blocking(move || {
            let reply = session.handle(cmd);
            (session, reply)
        })
        .await;
        let Ok((session, reply)) = joined else {
            warn!(peer = %self.peer, "IMAP command task failed");
            self.send(&status(
                Some(&tag),
                Kind::No,
                Some(code("SERVERBUG")),
                "Internal error",
            ));
            return Ok(false);
        };
        self.session = Some(session);
        self.send_all(&reply);
        if reply.close {
            debug!(peer = %self.peer, "session closed by the command");
        }
        Ok(!reply.close)
    }

    async fn starttls(&mut self, tag: &Tag<'static>) -> Result<bool, ReadError> {
        let tls = self.session()?.tls;
        let Some(acceptor) = self.ctx.tls.clone().filter(|_| !tls) else {
            self.send(&status(
                Some(tag),
                Kind::Bad,
                None,
                "STARTTLS not available",
            ));
            return Ok(true);
        };
        if !matches!(
            self.session()?.state,
            super::session::State::NotAuthenticated
        ) {
            self.send(&status(Some(tag), Kind::Bad, None, "Already authenticated"));
            return Ok(true);
        }
        self.send(&status(
            Some(tag),
            Kind::Ok,
            None,
            "Begin TLS negotiation now",
        ));
        self.conn.flush().await?;
        // Nothing the client sent before the handshake may be read as a command after it.
        let pipelined = self.framer.next(false) != Event::NeedMore;
        let dropped = self.conn.discard_input();
        if pipelined || dropped > 0 {
            warn!(peer = %self.peer, bytes = dropped, "discarded plaintext pipelined after STARTTLS");
        }
        self.framer.reset();
        self.conn.upgrade(&acceptor, TLS_HANDSHAKE_TIMEOUT).await?;
        self.session()?.tls = true;
        Ok(true)
    }

    async fn login(&mut self, tag: &Tag<'static>, user: &str, password: &str) {
        let Some(session) = self.session.as_ref() else {
            return;
        };
        if !matches!(session.state, super::session::State::NotAuthenticated) {
            self.send(&status(Some(tag), Kind::Bad, None, "Already authenticated"));
            return;
        }
        if !session.login_allowed() {
            self.send(&status(
                Some(tag),
                Kind::No,
                Some(code("PRIVACYREQUIRED")),
                "Use STARTTLS before logging in",
            ));
            return;
        }
        let outcome = crate::auth::login(
            &self.ctx.directory,
            &self.ctx.limiter,
            self.peer,
            "imap",
            user,
            password,
        )
        .await;
        let reply = match outcome {
            LoginOutcome::Ok(user) => match self.ctx.user_sessions.admit(&user) {
                Some(permit) => {
                    let Some(session) = self.session.as_mut() else {
                        return;
                    };
                    session.logged_in(user, permit);
                    let caps = session.capabilities();
                    status(
                        Some(tag),
                        Kind::Ok,
                        Some(Code::Capability(caps)),
                        "Logged in",
                    )
                }
                None => status(
                    Some(tag),
                    Kind::No,
                    Some(code("LIMIT")),
                    "Too many sessions for this user",
                ),
            },
            LoginOutcome::Failed => status(
                Some(tag),
                Kind::No,
                Some(code("AUTHENTICATIONFAILED")),
                "Authentication failed",
            ),
            LoginOutcome::Limited => status(
                Some(tag),
                Kind::No,
                Some(code("AUTHENTICATIONFAILED")),
                "Too many failed logins, try later",
            ),
            LoginOutcome::Unavailable => status(
                Some(tag),
                Kind::No,
                Some(code("UNAVAILABLE")),
                "Authentication temporarily unavailable",
            ),
        };
        self.send(&reply);
    }

    async fn authenticate(
        &mut self,
        tag: &Tag<'static>,
        mechanism: AuthMechanism<'static>,
        initial: Option<Vec<u8>>,
    ) -> Result<bool, ReadError> {
        if mechanism != AuthMechanism::Plain {
            self.send(&status(Some(tag), Kind::No, None, "Unsupported mechanism"));
            return Ok(true);
        }
        let data = match initial {
            Some(d) => d,
            None => {
                self.conn.queue(b"+ \r\n");
                match self.next_message(false).await? {
                    Next::Closed => return Ok(false),
                    Next::Message => {}
                }
                match self.framer.decode(&AuthenticateDataCodec::default()) {
                    Ok(AuthenticateData::Continue(d)) => d.declassify().to_vec(),
                    Ok(AuthenticateData::Cancel) => {
                        self.send(&status(
                            Some(tag),
                            Kind::Bad,
                            None,
                            "Authentication cancelled",
                        ));
                        return Ok(true);
                    }
                    Err(_) => {
                        self.send(&status(
                            Some(tag),
                            Kind::Bad,
                            None,
                            "Cannot decode response",
                        ));
                        return Ok(true);
                    }
                }
            }
        };
        let text = String::from_utf8_lossy(&data).into_owned();
        let mut parts = text.split('\0');
        match (parts.next(), parts.next(), parts.next(), parts.next()) {
            (Some(authz), Some(login), Some(password), None)
                if authz.is_empty() || authz == login =>
            {
                let (login, password) = (login.to_string(), password.to_string());
                self.login(tag, &login, &password).await;
            }
            _ => self.send(&status(
                Some(tag),
                Kind::No,
                Some(code("AUTHENTICATIONFAILED")),
                "Authentication failed",
            )),
        }
        Ok(true)
    }

    /// RFC 2177: report changes as they happen (polling the spool) until DONE.
    async fn idle(&mut self, tag: &Tag<'static>) -> Result<bool, ReadError> {
        if !self.session()?.is_selected()
            && matches!(
                self.session()?.state,
                super::session::State::NotAuthenticated
            )
        {
            self.send(&status(Some(tag), Kind::Bad, None, "Log in first"));
            return Ok(true);
        }
        self.conn.queue(b"+ idling\r\n");
        self.conn.flush().await?;
        let mut tick = tokio::time::interval(self.ctx.idle_poll);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let deadline = tokio::time::Instant::now() + self.ctx.idle_timeout;
        loop {
            // DONE may already be buffered.
            loop {
                match self.framer.next(true) {
                    Event::NeedMore => break,
                    Event::Message => {
                        let done = self.framer.decode(&IdleDoneCodec::default()).is_ok();
                        if done {
                            self.send(&status(Some(tag), Kind::Ok, None, "IDLE terminated"));
                        } else {
                            self.send(&status(Some(tag), Kind::Bad, None, "Expected DONE"));
                        }
                        return Ok(true);
                    }
                    other => {
                        if !self.act(other).await? {
                            return Ok(false);
                        }
                    }
                }
            }
            let mut shutdown = self.shutdown.clone();
            tokio::select! {
                r = self.conn.read_chunk(self.ctx.idle_timeout) => {
                    match r {
                        Ok(bytes) => {
                            if !self.enqueue(&bytes) {
                                return Ok(false);
                            }
                        }
                        Err(ReadError::Timeout) => {
                            self.conn.queue(b"* BYE Autologout; idle for too long\r\n");
                            return Ok(false);
                        }
                        Err(e) => return Err(e),
                    }
                }
                _ = tick.tick() => {
                    if tokio::time::Instant::now() > deadline {
                        self.conn.queue(b"* BYE Autologout; idle for too long\r\n");
                        return Ok(false);
                    }
                    let mut session = self.session.take().ok_or(ReadError::Closed)?;
                    let Ok((session, reply)) = tokio::task::spawn_blocking(move || {
                        let reply = session.poll();
                        (session, reply)
                    }).await else {
                        return Ok(false);
                    };
                    self.session = Some(session);
                    self.send_all(&reply);
                    self.conn.flush().await?;
                    if reply.close {
                        return Ok(false);
                    }
                }
                _ = shutdown.wait() => {
                    self.conn.queue(b"* BYE Server shutting down, reconnect later\r\n");
                    return Ok(false);
                }
            }
        }
    }
}
