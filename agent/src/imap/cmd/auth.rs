//! STARTTLS (RFC 3501 §6.2.1), LOGIN (§6.2.3) and AUTHENTICATE PLAIN (§6.2.2, RFC 4616):
//! they run on the connection, not the session, because they need the TLS handshake and
//! the async account directory.

use imap_codec::AuthenticateDataCodec;
use imap_types::auth::{AuthMechanism, AuthenticateData};
use imap_types::core::Tag;
use imap_types::response::Code;
use tracing::warn;

use crate::auth::LoginOutcome;
use crate::conn::{ReadError, TLS_HANDSHAKE_TIMEOUT};
use crate::imap::framing::Event;
use crate::imap::reply::{code, status, Kind};
use crate::imap::server::{Loop, Next};
use crate::imap::session::State;

impl Loop {
    pub(super) async fn starttls(&mut self, tag: &Tag<'static>) -> Result<bool, ReadError> {
        let tls = self.session()?.tls;
        let Some(acceptor) = self.ctx.services.tls.clone().filter(|_| !tls) else {
            self.send(&status(
                Some(tag),
                Kind::Bad,
                None,
                "STARTTLS not available",
            ));
            return Ok(true);
        };
        if !matches!(self.session()?.state, State::NotAuthenticated) {
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

    pub(super) async fn login(&mut self, tag: &Tag<'static>, user: &str, password: &str) {
        let Some(session) = self.session.as_ref() else {
            return;
        };
        if !matches!(session.state, State::NotAuthenticated) {
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
            &self.ctx.services.directory,
            &self.ctx.services.limiter,
            self.peer,
            "imap",
            user,
            password,
        )
        .await;
        let reply = match outcome {
            LoginOutcome::Ok(user) => match self.ctx.services.user_sessions.admit(&user) {
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

    pub(super) async fn authenticate(
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
}
