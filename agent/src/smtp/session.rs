//! The SMTP session as a state machine without I/O (RFC 5321, with RFC 1870 SIZE,
//! RFC 6152 8BITMIME, RFC 2920 PIPELINING, RFC 2034 ENHANCEDSTATUSCODES, RFC 3207
//! STARTTLS, RFC 4954 AUTH, RFC 6531 SMTPUTF8).
//!
//! The connection loop (`server.rs`) hands it one command line at a time and carries out
//! the [`Action`] it returns: write a reply, start TLS, check a login or a recipient with
//! the directory, read the message, store it. Results come back through the matching
//! method (`auth_result`, `rcpt_result`, `data_result`, `delivered`). Everything a client
//! can do wrong is decided here and answered with the right code, so the rules (no open
//! relay, AUTH only over TLS, limits) are testable without sockets.

use std::net::IpAddr;
use std::sync::Arc;

use base64::Engine;
use hamail_storage::cluster::ClusterConfig;
use hamail_storage::wire::DotError;
use smtp_proto::{Error as ParseError, Request};

use super::reply::Reply;
use crate::auth::Targets;

/// Which port a session came in on; it decides AUTH and relaying.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Port 25: mail for our domains only, no AUTH.
    Mx,
    /// Port 587 (STARTTLS) or 465 (implicit TLS): AUTH required, may relay.
    Submission,
}

impl Kind {
    pub fn name(self) -> &'static str {
        match self {
            Kind::Mx => "smtp",
            Kind::Submission => "submission",
        }
    }
}

/// Per-listener settings shared by its sessions.
#[derive(Debug)]
pub struct Settings {
    pub kind: Kind,
    pub hostname: String,
    /// A certificate is configured, so STARTTLS can be offered.
    pub tls_available: bool,
    pub allow_plaintext_auth: bool,
    pub max_message_size: u64,
    pub max_recipients: usize,
    pub config: Arc<ClusterConfig>,
}

/// What the connection loop must do next.
#[derive(Debug)]
pub enum Action {
    Reply(Reply),
    /// Write the reply, then close the connection.
    Close(Reply),
    /// Write the reply (220), drop any buffered plaintext, run the TLS handshake, then
    /// call [`Session::tls_started`].
    StartTls(Reply),
    /// Check these credentials, then call [`Session::auth_result`].
    Authenticate {
        login: String,
        password: String,
    },
    /// Look up this local recipient, then call [`Session::rcpt_result`].
    CheckRecipient {
        address: String,
        local_part: String,
    },
    /// Write the reply (354) and read the message with a `wire::DotDecoder`, then call
    /// [`Session::data_result`].
    ReadData(Reply),
    /// Store the message durably, then call [`Session::delivered`].
    Deliver(Box<Accepted>),
    /// Read and throw away exactly `bytes` bytes, then write the reply: the chunk of a
    /// BDAT we do not take. Length-announced data is counted, never parsed as commands.
    Discard {
        bytes: u64,
        reply: Reply,
    },
}

/// A complete message ready for the spool.
#[derive(Debug)]
pub struct Accepted {
    pub sender: String,
    /// Every accepted RCPT address (for logs).
    pub recipients: Vec<String>,
    /// Local spool users (aliases resolved, deduplicated).
    pub users: Vec<String>,
    /// Remote addresses to relay.
    pub remote: Vec<String>,
    /// The message in the spool form, with our `Received:` on top.
    pub data: Vec<u8>,
    /// Size on the wire.
    pub size: usize,
}

/// Outcome of a recipient lookup.
#[derive(Debug)]
pub enum Lookup {
    Found(Targets),
    Unknown,
    /// The directory could not answer: 451, never 550.
    Unavailable,
    /// The spool cannot be written right now (the health probe fails): 451, so the sender
    /// keeps the message until this host, or another MX, can store it.
    StoreUnavailable,
    /// The spool is out of space: 452, as RFC 5321 §4.5.3.1.10 and RFC 3463 X.3.1 say.
    StoreFull,
}

/// Outcome of a login check (shared by every protocol).
pub use crate::auth::LoginOutcome as AuthOutcome;

#[derive(Debug)]
enum AuthStep {
    PlainResponse,
    LoginUser,
    LoginPassword { login: String },
}

#[derive(Debug, Default)]
struct Transaction {
    sender: String,
    recipients: Vec<String>,
    users: Vec<String>,
    remote: Vec<String>,
}

/// One client connection's protocol state.
#[derive(Debug)]
pub struct Session {
    settings: Arc<Settings>,
    peer: IpAddr,
    tls: bool,
    /// The EHLO/HELO name; `None` until the client greeted (again after STARTTLS).
    helo: Option<String>,
    esmtp: bool,
    user: Option<String>,
    auth: Option<AuthStep>,
    tx: Option<Transaction>,
    /// Commands that earned a 5xx; too many and the client is cut off.
    errors: u32,
    queue_id: String,
}

/// More errors than this and the session ends (stops dictionary and protocol abuse).
const MAX_ERRORS: u32 = 20;

impl Session {
    pub fn new(settings: Arc<Settings>, peer: IpAddr, tls: bool) -> Session {
        Session {
            settings,
            peer,
            tls,
            helo: None,
            esmtp: false,
            user: None,
            auth: None,
            tx: None,
            errors: 0,
            queue_id: String::new(),
        }
    }

    pub fn greeting(&self) -> Reply {
        Reply::new(220, "", &format!("{} ESMTP hamail", self.settings.hostname))
    }

    pub fn max_message_size(&self) -> u64 {
        self.settings.max_message_size
    }

    pub fn is_tls(&self) -> bool {
        self.tls
    }

    pub fn user(&self) -> Option<&str> {
        self.user.as_deref()
    }

    /// True while a SASL exchange waits for the client's next line.
    pub fn in_auth(&self) -> bool {
        self.auth.is_some()
    }

    fn auth_allowed(&self) -> bool {
        self.settings.kind == Kind::Submission && (self.tls || self.settings.allow_plaintext_auth)
    }

    /// One command line, without its line ending.
    pub fn command(&mut self, line: &[u8]) -> Action {
        if let Some(step) = self.auth.take() {
            return self.auth_line(step, line);
        }
        let mut framed = Vec::with_capacity(line.len() + 2);
        framed.extend_from_slice(line);
        framed.extend_from_slice(b"\r\n");
        // smtp-proto reads a domain-less path as empty; RFC 5321 §4.5.1 requires
        // `RCPT TO:<Postmaster>` to work, so it is recognised here first.
        if line.eq_ignore_ascii_case(b"RCPT TO:<postmaster>") {
            return self.rcpt("postmaster".to_string());
        }
        let request = match Request::parse(&mut framed.iter()) {
            Ok(r) => r,
            // A BDAT whose size cannot be read: its chunk cannot be skipped exactly, and
            // must never be read as commands.
            Err(_) if line.len() >= 4 && line[..4].eq_ignore_ascii_case(b"BDAT") => {
                return Action::Close(Reply::new(
                    554,
                    "5.5.1",
                    "BDAT is not offered here (no CHUNKING); closing",
                ))
            }
            Err(e) => return self.parse_error(e),
        };
        match request {
            Request::Ehlo { host } => self.hello(host.into_owned(), true),
            Request::Helo { host } => self.hello(host.into_owned(), false),
            Request::Lhlo { .. } => self.error(500, "5.5.1", "LHLO is for LMTP"),
            Request::StartTls => self.starttls(),
            Request::Auth {
                mechanism,
                initial_response,
            } => self.auth_start(mechanism, &initial_response),
            Request::Mail { from } => self.mail(from.address.into_owned(), from.size as u64),
            Request::Rcpt { to } if to.address.is_empty() => {
                self.error(501, "5.1.3", "Bad recipient address syntax")
            }
            Request::Rcpt { to } => self.rcpt(to.address.into_owned()),
            Request::Data => self.data(),
            Request::Rset => {
                self.tx = None;
                Action::Reply(Reply::new(250, "2.0.0", "Reset"))
            }
            Request::Noop { .. } => Action::Reply(Reply::new(250, "2.0.0", "OK")),
            Request::Quit => Action::Close(Reply::new(221, "2.0.0", "Bye")),
            Request::Vrfy { .. } => Action::Reply(Reply::new(
                252,
                "2.5.0",
                "VRFY is disabled; send the message and RCPT will tell",
            )),
            Request::Expn { .. } => self.error(502, "5.5.1", "EXPN is disabled"),
            Request::Help { .. } => Action::Reply(Reply::new(
                214,
                "2.0.0",
                "See RFC 5321; commands: EHLO HELO MAIL RCPT DATA RSET NOOP QUIT STARTTLS AUTH",
            )),
            Request::Bdat { chunk_size, .. } => self.bdat(chunk_size as u64),
            Request::Etrn { .. } | Request::Atrn { .. } | Request::Burl { .. } => {
                self.error(502, "5.5.1", "Command not implemented")
            }
        }
    }

    /// BDAT (RFC 3030) is not offered (no CHUNKING in EHLO), but a client may send it
    /// anyway, with its chunk right behind: the chunk is read and thrown away, so no line
    /// of it is ever taken as a command. A chunk above the message size limit is not worth
    /// reading: the connection closes instead.
    fn bdat(&mut self, chunk_size: u64) -> Action {
        if chunk_size > self.settings.max_message_size {
            return Action::Close(Reply::new(
                554,
                "5.5.1",
                "BDAT is not offered here (no CHUNKING); closing",
            ));
        }
        match self.error(
            502,
            "5.5.1",
            "BDAT is not offered here (no CHUNKING); chunk discarded",
        ) {
            Action::Reply(reply) => Action::Discard {
                bytes: chunk_size,
                reply,
            },
            // Too many errors: the connection ends, the chunk is not read.
            other => other,
        }
    }

    fn parse_error(&mut self, e: ParseError) -> Action {
        match e {
            ParseError::UnknownCommand => self.error(500, "5.5.1", "Unknown command"),
            ParseError::InvalidSenderAddress => {
                self.error(501, "5.1.7", "Bad sender address syntax")
            }
            ParseError::InvalidRecipientAddress => {
                self.error(501, "5.1.3", "Bad recipient address syntax")
            }
            ParseError::SyntaxError { syntax } => {
                self.error(501, "5.5.4", &format!("Syntax: {syntax}"))
            }
            ParseError::InvalidParameter { param } => {
                self.error(501, "5.5.4", &format!("Invalid parameter {param}"))
            }
            ParseError::UnsupportedParameter { param } => {
                self.error(555, "5.5.4", &format!("Unsupported parameter {param}"))
            }
            _ => self.error(500, "5.5.2", "Syntax error"),
        }
    }

    /// A 5xx reply that counts towards [`MAX_ERRORS`].
    fn error(&mut self, code: u16, esc: &'static str, text: &str) -> Action {
        self.errors += 1;
        if self.errors > MAX_ERRORS {
            return Action::Close(Reply::new(421, "4.7.0", "Too many errors, closing"));
        }
        Action::Reply(Reply::new(code, esc, text))
    }

    fn hello(&mut self, host: String, esmtp: bool) -> Action {
        if host.is_empty() {
            return self.error(501, "5.5.4", "EHLO needs a domain or address literal");
        }
        self.helo = Some(host.clone());
        self.esmtp = esmtp;
        self.tx = None;
        let first = format!("{} greets {host}", self.settings.hostname);
        if !esmtp {
            return Action::Reply(Reply::new(250, "", &first));
        }
        let size = format!("SIZE {}", self.settings.max_message_size);
        let mut lines = vec![first.as_str(), "PIPELINING", size.as_str(), "8BITMIME"];
        lines.push("ENHANCEDSTATUSCODES");
        if self.settings.tls_available && !self.tls {
            lines.push("STARTTLS");
        }
        if self.auth_allowed() && self.user.is_none() {
            lines.push("AUTH PLAIN LOGIN");
        }
        lines.push("SMTPUTF8");
        Action::Reply(Reply::lines(250, "", &lines))
    }

    fn starttls(&mut self) -> Action {
        if self.tls {
            return self.error(503, "5.5.1", "TLS already active");
        }
        if !self.settings.tls_available {
            return self.error(502, "5.5.1", "STARTTLS not available");
        }
        Action::StartTls(Reply::new(220, "2.0.0", "Ready to start TLS"))
    }

    /// The handshake succeeded: RFC 3207 §4.2, forget everything learned in plaintext.
    pub fn tls_started(&mut self) {
        self.tls = true;
        self.helo = None;
        self.esmtp = false;
        self.user = None;
        self.auth = None;
        self.tx = None;
    }

    fn auth_start(&mut self, mechanism: u64, initial: &str) -> Action {
        if self.settings.kind == Kind::Mx {
            return self.error(
                503,
                "5.5.1",
                "AUTH is not available on this port; use submission",
            );
        }
        if !self.auth_allowed() {
            return self.error(538, "5.7.11", "Encryption required: use STARTTLS first");
        }
        if self.helo.is_none() || !self.esmtp {
            return self.error(503, "5.5.1", "Send EHLO first");
        }
        if self.user.is_some() {
            return self.error(503, "5.5.1", "Already authenticated");
        }
        if self.tx.is_some() {
            return self.error(503, "5.5.1", "AUTH not allowed during a mail transaction");
        }
        match mechanism {
            smtp_proto::AUTH_PLAIN if initial.is_empty() => {
                self.auth = Some(AuthStep::PlainResponse);
                Action::Reply(Reply::new(334, "", ""))
            }
            smtp_proto::AUTH_PLAIN => self.auth_plain(initial.as_bytes()),
            smtp_proto::AUTH_LOGIN if initial.is_empty() => {
                self.auth = Some(AuthStep::LoginUser);
                Action::Reply(Reply::new(334, "", "VXNlcm5hbWU6"))
            }
            smtp_proto::AUTH_LOGIN => self.auth_line(AuthStep::LoginUser, initial.as_bytes()),
            _ => self.error(504, "5.5.4", "Unrecognized authentication mechanism"),
        }
    }

    fn auth_line(&mut self, step: AuthStep, line: &[u8]) -> Action {
        if line == b"*" {
            return self.error(501, "5.7.0", "Authentication cancelled");
        }
        match step {
            AuthStep::PlainResponse => self.auth_plain(line),
            AuthStep::LoginUser => match decode_b64(line) {
                Some(login) => {
                    self.auth = Some(AuthStep::LoginPassword { login });
                    Action::Reply(Reply::new(334, "", "UGFzc3dvcmQ6"))
                }
                None => self.error(501, "5.5.2", "Cannot decode response"),
            },
            AuthStep::LoginPassword { login } => match decode_b64(line) {
                Some(password) => Action::Authenticate { login, password },
                None => self.error(501, "5.5.2", "Cannot decode response"),
            },
        }
    }

    /// RFC 4616: `authzid NUL authcid NUL passwd`; an authzid other than the login is not
    /// allowed (no proxy authorisation).
    fn auth_plain(&mut self, b64: &[u8]) -> Action {
        let Some(text) = decode_b64(b64) else {
            return self.error(501, "5.5.2", "Cannot decode response");
        };
        let mut parts = text.split('\0');
        let (Some(authz), Some(login), Some(password), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return self.error(501, "5.5.2", "Malformed PLAIN response");
        };
        if !authz.is_empty() && authz != login {
            return self.error(535, "5.7.8", "Authentication credentials invalid");
        }
        Action::Authenticate {
            login: login.to_string(),
            password: password.to_string(),
        }
    }

    pub fn auth_result(&mut self, outcome: AuthOutcome) -> Action {
        match outcome {
            AuthOutcome::Ok(user) => {
                self.user = Some(user);
                Action::Reply(Reply::new(235, "2.7.0", "Authentication successful"))
            }
            AuthOutcome::Failed => self.error(535, "5.7.8", "Authentication credentials invalid"),
            AuthOutcome::Limited => Action::Close(Reply::new(
                421,
                "4.7.0",
                "Too many failed logins, try again later",
            )),
            AuthOutcome::Unavailable => {
                Action::Reply(Reply::new(454, "4.7.0", "Temporary authentication failure"))
            }
        }
    }

    fn mail(&mut self, sender: String, declared: u64) -> Action {
        if self.helo.is_none() {
            return self.error(503, "5.5.1", "Send EHLO/HELO first");
        }
        if self.tx.is_some() {
            return self.error(503, "5.5.1", "Nested MAIL command");
        }
        if self.settings.kind == Kind::Submission && self.user.is_none() {
            return self.error(530, "5.7.0", "Authentication required");
        }
        if declared > self.settings.max_message_size {
            return self.error(
                552,
                "5.3.4",
                "Message size exceeds fixed maximum message size",
            );
        }
        if !sender.is_empty() && !plausible_address(&sender) {
            return self.error(553, "5.1.7", "Bad sender address");
        }
        self.queue_id = hamail_storage::queue::new_id();
        self.tx = Some(Transaction {
            sender,
            ..Transaction::default()
        });
        Action::Reply(Reply::new(250, "2.1.0", "Sender OK"))
    }

    fn rcpt(&mut self, address: String) -> Action {
        let Some(tx) = &self.tx else {
            return self.error(503, "5.5.1", "Need MAIL before RCPT");
        };
        if tx.recipients.len() >= self.settings.max_recipients {
            return Action::Reply(Reply::new(452, "4.5.3", "Too many recipients"));
        }
        // RFC 5321 §4.5.1: `<Postmaster>` without a domain must be accepted.
        let (local_part, domain) = match address.rsplit_once('@') {
            Some((l, d)) => (l, d),
            None if address.eq_ignore_ascii_case("postmaster") => (address.as_str(), ""),
            None => return self.error(501, "5.1.3", "Recipient needs a domain"),
        };
        if local_part.is_empty() || domain.contains(['[', ']']) {
            return self.error(550, "5.1.3", "Bad recipient address");
        }
        if domain.is_empty() || self.settings.config.is_local_domain(domain) {
            return Action::CheckRecipient {
                local_part: local_part.to_string(),
                address,
            };
        }
        if self.settings.kind == Kind::Mx || self.user.is_none() {
            return self.error(550, "5.7.1", "Relay access denied");
        }
        if !plausible_address(&address) {
            return self.error(553, "5.1.3", "Bad recipient address");
        }
        let remote = address.clone();
        if let Some(tx) = &mut self.tx {
            if !tx.remote.contains(&remote) {
                tx.remote.push(remote);
            }
            tx.recipients.push(address);
        }
        Action::Reply(Reply::new(250, "2.1.5", "Recipient OK"))
    }

    pub fn rcpt_result(&mut self, address: String, lookup: Lookup) -> Action {
        match lookup {
            Lookup::Found(targets) => {
                let Some(tx) = &mut self.tx else {
                    return self.error(503, "5.5.1", "Need MAIL before RCPT");
                };
                for u in targets.users {
                    if !tx.users.contains(&u) {
                        tx.users.push(u);
                    }
                }
                for r in targets.remote {
                    if !tx.remote.contains(&r) {
                        tx.remote.push(r);
                    }
                }
                tx.recipients.push(address);
                Action::Reply(Reply::new(250, "2.1.5", "Recipient OK"))
            }
            Lookup::Unknown => self.error(550, "5.1.1", "No such user here"),
            Lookup::Unavailable => Action::Reply(Reply::new(
                451,
                "4.3.0",
                "Temporary lookup failure, try again later",
            )),
            Lookup::StoreUnavailable => Action::Reply(Reply::new(
                451,
                "4.3.0",
                "Mail store temporarily unavailable, try again later",
            )),
            Lookup::StoreFull => Action::Reply(Reply::new(
                452,
                "4.3.1",
                "Insufficient system storage, try again later",
            )),
        }
    }

    fn data(&mut self) -> Action {
        match &self.tx {
            None => self.error(503, "5.5.1", "Need MAIL command"),
            Some(tx) if tx.recipients.is_empty() => self.error(554, "5.5.1", "No valid recipients"),
            Some(_) => Action::ReadData(Reply::new(354, "", "End data with <CR><LF>.<CR><LF>")),
        }
    }

    /// The message was read (or refused by the decoder).
    pub fn data_result(&mut self, result: Result<Vec<u8>, DotError>, size: usize) -> Action {
        let Some(tx) = self.tx.take() else {
            return self.error(503, "5.5.1", "Need MAIL command");
        };
        let body = match result {
            Ok(body) => body,
            Err(DotError::TooBig) => {
                return self.error(
                    552,
                    "5.3.4",
                    "Message size exceeds fixed maximum message size",
                )
            }
            Err(DotError::LineTooLong) => {
                return self.error(554, "5.6.0", "Message has a line that is too long")
            }
        };
        let mut data = self.received(&tx).into_bytes();
        data.extend_from_slice(&crate::delivery::strip_internal_headers(&body));
        Action::Deliver(Box::new(Accepted {
            sender: tx.sender,
            recipients: tx.recipients,
            users: tx.users,
            remote: tx.remote,
            data,
            size,
        }))
    }

    /// The queue id of the current (or last) transaction.
    pub fn queue_id(&self) -> &str {
        &self.queue_id
    }

    /// RFC 5321 §4.4 trace field, with the RFC 3848 protocol name.
    fn received(&self, tx: &Transaction) -> String {
        let proto = match (self.esmtp, self.tls, self.user.is_some()) {
            (false, _, _) => "SMTP",
            (true, false, false) => "ESMTP",
            (true, true, false) => "ESMTPS",
            (true, false, true) => "ESMTPA",
            (true, true, true) => "ESMTPSA",
        };
        let helo: String = self
            .helo
            .as_deref()
            .unwrap_or("unknown")
            .chars()
            .filter(|c| c.is_ascii_graphic())
            .take(255)
            .collect();
        let for_clause = match tx.recipients.as_slice() {
            [one] if !one.chars().any(char::is_control) => format!("\n\tfor <{one}>"),
            _ => String::new(),
        };
        format!(
            "Received: from {helo} ([{}])\n\tby {} (hamail) with {proto} id {}{for_clause};\n\t{}\n",
            self.peer,
            self.settings.hostname,
            self.queue_id,
            crate::date::rfc5322(crate::date::now())
        )
    }

    /// The store finished: 250 only now, when the message is durable.
    pub fn delivered(&mut self, result: Result<(), DeliveryFailure>) -> Action {
        match result {
            Ok(()) => Action::Reply(Reply::new(
                250,
                "2.0.0",
                &format!("OK: queued as {}", self.queue_id),
            )),
            Err(DeliveryFailure::NoSpace) => Action::Reply(Reply::new(
                452,
                "4.3.1",
                "Insufficient system storage, try again later",
            )),
            Err(DeliveryFailure::Temporary) => Action::Reply(Reply::new(
                451,
                "4.3.0",
                "Local error in processing, try again later",
            )),
        }
    }
}

/// Why a message could not be stored (all temporary: the sender keeps it and retries).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeliveryFailure {
    NoSpace,
    Temporary,
}

fn decode_b64(b64: &[u8]) -> Option<String> {
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(b64.trim_ascii())
        .ok()?;
    String::from_utf8(bytes).ok()
}

/// `local@domain` with a non-empty local part and a dotted or bracketed domain.
fn plausible_address(addr: &str) -> bool {
    match addr.rsplit_once('@') {
        Some((local, domain)) => {
            !local.is_empty()
                && !domain.is_empty()
                && domain.len() <= 255
                && !addr.chars().any(|c| c.is_control() || c == ' ')
        }
        None => false,
    }
}

#[cfg(test)]
#[path = "session_tests.rs"]
mod tests;
