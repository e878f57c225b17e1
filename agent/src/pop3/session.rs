//! The POP3 session as a state machine without I/O (RFC 1939, with RFC 2449 CAPA and
//! response codes, RFC 2595 STLS, RFC 5034 SASL AUTH PLAIN, RFC 3206 `[AUTH]`/`[SYS/*]`).
//!
//! The connection loop (`server.rs`) hands it one command line at a time and carries out
//! the [`Action`] it returns: write a response, start TLS, check a login, take the
//! maildrop snapshot, read one message, expunge the marked messages at QUIT. Results come
//! back through the matching method (`auth_result`, `maildrop_result`, `fetch_result`,
//! `commit_result`).
//!
//! Several sessions, on several hosts, may have the same maildrop open: the message
//! numbers of a session refer to the snapshot taken at login (UID and CRLF size), a
//! message is read by UID (and refused if it is gone or is not what the snapshot
//! recorded), and QUIT expunges the marked UIDs that still exist. No session locks the
//! maildrop for its lifetime.

use std::fmt;
use std::sync::Arc;

use base64::Engine;

/// Per-listener settings shared by its sessions.
#[derive(Debug)]
pub struct Settings {
    pub hostname: String,
    /// A certificate is configured, so STLS can be offered.
    pub tls_available: bool,
    /// `tls.allow_plaintext_auth`: USER/PASS and AUTH also without TLS (labs only).
    pub allow_plaintext_auth: bool,
}

/// One complete response: `+OK`/`-ERR` status line, for multi-line responses followed by
/// the byte-stuffed body and the terminating `.` line.
#[derive(Clone, PartialEq, Eq)]
pub struct Reply {
    ok: bool,
    wire: Vec<u8>,
}

impl Reply {
    pub fn ok(text: &str) -> Reply {
        Reply::status(true, text)
    }

    pub fn err(text: &str) -> Reply {
        Reply::status(false, text)
    }

    fn status(ok: bool, text: &str) -> Reply {
        let mut wire = Vec::with_capacity(text.len() + 8);
        wire.extend_from_slice(if ok { b"+OK" } else { b"-ERR" });
        if !text.is_empty() {
            wire.push(b' ');
            // Text can carry client input (a login name): never let a CR or LF in.
            wire.extend(
                text.bytes()
                    .map(|b| if b == b'\r' || b == b'\n' { b' ' } else { b }),
            );
        }
        wire.extend_from_slice(b"\r\n");
        Reply { ok, wire }
    }

    /// `+OK text`, then the lines (byte-stuffed), then `.`.
    pub fn multi<S: AsRef<str>>(text: &str, lines: &[S]) -> Reply {
        let mut body = Vec::new();
        for l in lines {
            body.extend_from_slice(l.as_ref().as_bytes());
            body.push(b'\n');
        }
        Reply::multi_spool(text, &body, None)
    }

    /// `+OK text`, then `body` (spool form: LF lines) byte-stuffed with CRLF lines, then
    /// `.`; with `top`, only the header and that many body lines (RFC 1939 TOP).
    fn multi_spool(text: &str, body: &[u8], top: Option<usize>) -> Reply {
        let mut r = Reply::ok(text);
        hamail_storage::wire::write_dot_stuffed(body, top, &mut r.wire);
        r
    }

    /// The RFC 5034 server challenge: `+ ` and an empty challenge.
    fn continuation() -> Reply {
        Reply {
            ok: true,
            wire: b"+ \r\n".to_vec(),
        }
    }

    pub fn is_ok(&self) -> bool {
        self.ok
    }

    pub fn wire(&self) -> &[u8] {
        &self.wire
    }

    pub fn into_wire(self) -> Vec<u8> {
        self.wire
    }
}

impl fmt::Debug for Reply {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The status line only: a message body can be megabytes.
        let end = memchr::memchr(b'\n', &self.wire).unwrap_or(self.wire.len());
        f.write_str(String::from_utf8_lossy(&self.wire[..end]).trim_end())
    }
}

impl fmt::Display for Reply {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self, f)
    }
}

/// What the connection loop must do next.
#[derive(Debug)]
pub enum Action {
    Reply(Reply),
    /// Write the reply, then close the connection.
    Close(Reply),
    /// Write the reply, drop any buffered plaintext, run the TLS handshake, then call
    /// [`Session::tls_started`].
    StartTls(Reply),
    /// Check these credentials (and the user's session limit), then call
    /// [`Session::auth_result`].
    Authenticate {
        login: String,
        password: String,
    },
    /// Take the snapshot of `user`'s INBOX, then call [`Session::maildrop_result`].
    OpenMaildrop {
        user: String,
    },
    /// Read the message with this UID from a fresh read session, check it is the one of
    /// the snapshot, then call [`Session::fetch_result`] with its bytes.
    Fetch(Fetch),
    /// QUIT in TRANSACTION state: under the write lock, if the mailbox still has this
    /// UIDVALIDITY, expunge those of `uids` that still exist; then call
    /// [`Session::commit_result`] (whose reply closes the session).
    Commit {
        user: String,
        uidvalidity: u32,
        uids: Vec<u32>,
    },
}

/// A message to read for RETR or TOP.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fetch {
    pub uidvalidity: u32,
    pub uid: u32,
    /// The CRLF size the snapshot recorded: a message with the UID but another size is
    /// not the message the client numbered.
    pub size: u64,
    /// TOP: body lines wanted; `None` for RETR.
    pub top: Option<usize>,
}

/// Outcome of a login check.
#[derive(Debug)]
pub enum AuthOutcome {
    /// The canonical user name (a per-user session slot is already held).
    Ok(String),
    Failed,
    /// Too many failures from this client or for this user.
    Limited,
    /// The directory could not answer.
    Unavailable,
    /// The user has `max_sessions_per_user` sessions on this host already.
    TooManySessions,
}

/// The INBOX as the session numbers it: taken once at login.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Maildrop {
    /// 0 when the user has no mailbox yet.
    pub uidvalidity: u32,
    /// `(uid, crlf_size)` in mailbox order; message number n is index n - 1.
    pub messages: Vec<(u32, u64)>,
}

/// Why the maildrop could not be opened.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MaildropError {
    /// Lock timeout, NFS trouble: try again later.
    Temporary,
    /// The user name cannot be a spool user.
    Permanent,
}

/// Why RETR/TOP could not read the message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FetchError {
    /// Expunged (or replaced) by another session since the snapshot.
    Gone,
    Temporary,
}

/// Why QUIT deleted nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CommitError {
    /// Lock timeout, disk full, I/O: nothing was deleted.
    Temporary,
    /// The mailbox was recreated (new UIDVALIDITY): the UIDs mean other messages now.
    Changed,
}

#[derive(Debug)]
enum State {
    Authorization {
        /// Name given with USER, waiting for PASS.
        user: Option<String>,
        /// AUTH PLAIN sent without initial response: the next line is the response.
        sasl: bool,
    },
    Transaction {
        user: String,
        maildrop: Maildrop,
        deleted: Vec<bool>,
    },
    /// QUIT was answered or the session must end; nothing more is accepted.
    Done,
}

/// One client connection's protocol state.
#[derive(Debug)]
pub struct Session {
    settings: Arc<Settings>,
    tls: bool,
    state: State,
    /// Commands answered `-ERR` because of the client; too many and it is cut off.
    errors: u32,
    /// The RETR/TOP in flight, so the result can be encoded.
    fetching: Option<Fetch>,
}

/// This many bad commands end the session (stops protocol abuse and guessing).
pub const MAX_ERRORS: u32 = 10;

/// Every command name for metrics labels (a fixed set; anything else is "unknown").
const COMMANDS: &[&str] = &[
    "USER", "PASS", "AUTH", "STLS", "CAPA", "STAT", "LIST", "RETR", "DELE", "RSET", "TOP", "UIDL",
    "NOOP", "QUIT", "APOP",
];

/// The metrics label of a command line: its verb if known, else "unknown".
pub fn command_label(line: &[u8]) -> &'static str {
    let verb = line.split(|b| *b == b' ').next().unwrap_or_default();
    COMMANDS
        .iter()
        .find(|c| c.as_bytes().eq_ignore_ascii_case(verb))
        .copied()
        .unwrap_or("unknown")
}

/// UIDL of a message: UIDVALIDITY and UID in fixed-width hex, so every host and session
/// gives the same string, and a recreated mailbox gives new ones (RFC 1939 §7: a
/// unique-id is never reused for another message).
pub fn unique_id(uidvalidity: u32, uid: u32) -> String {
    format!("{uidvalidity:08x}{uid:08x}")
}

impl Session {
    pub fn new(settings: Arc<Settings>, tls: bool) -> Session {
        Session {
            settings,
            tls,
            state: State::Authorization {
                user: None,
                sasl: false,
            },
            errors: 0,
            fetching: None,
        }
    }

    pub fn greeting(&self) -> Reply {
        Reply::ok(&format!("{} hamail POP3 ready", self.settings.hostname))
    }

    pub fn is_tls(&self) -> bool {
        self.tls
    }

    /// The logged-in user (TRANSACTION state).
    pub fn user(&self) -> Option<&str> {
        match &self.state {
            State::Transaction { user, .. } => Some(user),
            _ => None,
        }
    }

    /// True while an AUTH exchange waits for the client's response line.
    pub fn in_auth(&self) -> bool {
        matches!(self.state, State::Authorization { sasl: true, .. })
    }

    fn auth_allowed(&self) -> bool {
        self.tls || self.settings.allow_plaintext_auth
    }

    /// One command line, without its line ending.
    pub fn command(&mut self, line: &[u8]) -> Action {
        if let State::Authorization { sasl: true, .. } = self.state {
            self.set_sasl(false);
            if line == b"*" {
                return self.error("[AUTH] authentication cancelled");
            }
            return self.auth_plain(line);
        }
        if matches!(self.state, State::Done) {
            return Action::Close(Reply::err("session is over"));
        }
        let (verb, args) = match memchr::memchr(b' ', line) {
            Some(i) => (&line[..i], &line[i + 1..]),
            None => (line, &line[line.len()..]),
        };
        let verb = verb.to_ascii_uppercase();
        match verb.as_slice() {
            b"CAPA" => self.capa(),
            b"QUIT" => self.quit(),
            b"USER" => self.user_cmd(args),
            b"PASS" => self.pass(args),
            b"AUTH" => self.auth(args),
            b"STLS" => self.stls(),
            b"APOP" => self.error("APOP is not supported; use USER/PASS or AUTH PLAIN"),
            b"STAT" | b"LIST" | b"RETR" | b"DELE" | b"RSET" | b"TOP" | b"UIDL" | b"NOOP" => {
                if self.user().is_none() {
                    return self.error("not logged in");
                }
                let Ok(args) = std::str::from_utf8(args) else {
                    return self.error("invalid argument");
                };
                let args: Vec<&str> = if args.is_empty() {
                    Vec::new()
                } else {
                    args.split(' ').collect()
                };
                self.transaction(&verb, &args)
            }
            _ => self.error("unknown command"),
        }
    }

    /// A `-ERR` caused by the client; counts towards [`MAX_ERRORS`].
    fn error(&mut self, text: &str) -> Action {
        self.errors += 1;
        if self.errors >= MAX_ERRORS {
            self.state = State::Done;
            return Action::Close(Reply::err("too many bad commands, closing"));
        }
        Action::Reply(Reply::err(text))
    }

    /// A line longer than the limit was skipped.
    pub fn line_too_long(&mut self) -> Action {
        // Also ends a SASL exchange: the next line must not be taken as its response.
        self.set_sasl(false);
        self.error("line too long")
    }

    fn set_sasl(&mut self, on: bool) {
        if let State::Authorization { sasl, .. } = &mut self.state {
            *sasl = on;
        }
    }

    fn capa(&self) -> Action {
        let mut lines = vec!["TOP", "UIDL"];
        let authorization = matches!(self.state, State::Authorization { .. });
        if authorization && self.auth_allowed() {
            lines.push("USER");
        }
        lines.extend(["RESP-CODES", "AUTH-RESP-CODE", "PIPELINING"]);
        if authorization && self.auth_allowed() {
            lines.push("SASL PLAIN");
        }
        if authorization && self.settings.tls_available && !self.tls {
            lines.push("STLS");
        }
        lines.push("IMPLEMENTATION hamail");
        Action::Reply(Reply::multi("Capability list follows", &lines))
    }

    fn quit(&mut self) -> Action {
        match std::mem::replace(&mut self.state, State::Done) {
            State::Transaction {
                user,
                maildrop,
                deleted,
            } => {
                let uids: Vec<u32> = maildrop
                    .messages
                    .iter()
                    .zip(&deleted)
                    .filter(|(_, d)| **d)
                    .map(|((uid, _), _)| *uid)
                    .collect();
                if uids.is_empty() {
                    return Action::Close(Reply::ok("hamail POP3 signing off"));
                }
                Action::Commit {
                    user,
                    uidvalidity: maildrop.uidvalidity,
                    uids,
                }
            }
            _ => Action::Close(Reply::ok("hamail POP3 signing off")),
        }
    }

    /// The QUIT expunge finished: `Ok(n)` messages were removed (fewer than marked if
    /// other sessions removed some first).
    pub fn commit_result(&mut self, result: Result<usize, CommitError>) -> Action {
        self.state = State::Done;
        Action::Close(match result {
            Ok(n) => Reply::ok(&format!("hamail POP3 signing off ({n} messages deleted)")),
            Err(CommitError::Temporary) => Reply::err(
                "[SYS/TEMP] could not delete the messages, none were deleted; try again later",
            ),
            Err(CommitError::Changed) => {
                Reply::err("[SYS/PERM] the maildrop was recreated meanwhile, nothing deleted")
            }
        })
    }

    fn stls(&mut self) -> Action {
        if !matches!(self.state, State::Authorization { .. }) {
            return self.error("STLS only before login");
        }
        if self.tls {
            return self.error("TLS already active");
        }
        if !self.settings.tls_available {
            return self.error("STLS not available");
        }
        Action::StartTls(Reply::ok("begin TLS negotiation"))
    }

    /// The handshake succeeded: RFC 2595 §4, forget what was said in plaintext.
    pub fn tls_started(&mut self) {
        self.tls = true;
        self.state = State::Authorization {
            user: None,
            sasl: false,
        };
    }

    /// Checks common to USER, PASS and AUTH; `Some` is the refusal.
    fn login_refused(&mut self) -> Option<Action> {
        if !matches!(self.state, State::Authorization { .. }) {
            return Some(self.error("already logged in"));
        }
        if !self.auth_allowed() {
            return Some(self.error("[AUTH] TLS required: use STLS (or port 995) first"));
        }
        None
    }

    fn user_cmd(&mut self, args: &[u8]) -> Action {
        if let Some(refused) = self.login_refused() {
            return refused;
        }
        let name = match std::str::from_utf8(args) {
            Ok(n) if !n.is_empty() => n.to_string(),
            _ => return self.error("USER needs a name"),
        };
        // Same answer whether the user exists or not (no account probing).
        self.state = State::Authorization {
            user: Some(name),
            sasl: false,
        };
        Action::Reply(Reply::ok("send PASS"))
    }

    fn pass(&mut self, args: &[u8]) -> Action {
        if let Some(refused) = self.login_refused() {
            return refused;
        }
        let user = match &mut self.state {
            State::Authorization { user, .. } => user.take(),
            _ => None,
        };
        let Some(login) = user else {
            return self.error("send USER first");
        };
        // The password is the rest of the line, spaces included.
        let Ok(password) = std::str::from_utf8(args) else {
            return self.error("[AUTH] authentication failed");
        };
        Action::Authenticate {
            login,
            password: password.to_string(),
        }
    }

    fn auth(&mut self, args: &[u8]) -> Action {
        if args.is_empty() && matches!(self.state, State::Authorization { .. }) {
            // Older clients (RFC 1734 style) send a bare AUTH to list mechanisms.
            let mechs: &[&str] = if self.auth_allowed() { &["PLAIN"] } else { &[] };
            return Action::Reply(Reply::multi("SASL mechanisms follow", mechs));
        }
        if let Some(refused) = self.login_refused() {
            return refused;
        }
        let (mech, initial) = match memchr::memchr(b' ', args) {
            Some(i) => (&args[..i], Some(&args[i + 1..])),
            None => (args, None),
        };
        if !mech.eq_ignore_ascii_case(b"PLAIN") {
            return self.error("unsupported SASL mechanism");
        }
        match initial {
            // RFC 5034 §4: `=` is an empty initial response.
            Some(b"=") => self.auth_plain(b""),
            Some(r) => self.auth_plain(r),
            None => {
                self.state = State::Authorization {
                    user: None,
                    sasl: true,
                };
                Action::Reply(Reply::continuation())
            }
        }
    }

    /// RFC 4616: `authzid NUL authcid NUL passwd`; an authzid other than the login is not
    /// allowed (no proxy authorisation).
    fn auth_plain(&mut self, b64: &[u8]) -> Action {
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(b64.trim_ascii())
            .ok()
            .and_then(|b| String::from_utf8(b).ok());
        let Some(text) = decoded else {
            return self.error("invalid base64 in SASL response");
        };
        let mut parts = text.split('\0');
        let (Some(authz), Some(login), Some(password), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return self.error("malformed PLAIN response");
        };
        if login.is_empty() || (!authz.is_empty() && authz != login) {
            return self.error("[AUTH] authentication failed");
        }
        Action::Authenticate {
            login: login.to_string(),
            password: password.to_string(),
        }
    }

    pub fn auth_result(&mut self, outcome: AuthOutcome) -> Action {
        match outcome {
            AuthOutcome::Ok(user) => Action::OpenMaildrop { user },
            AuthOutcome::Failed => self.error("[AUTH] authentication failed"),
            AuthOutcome::Limited => {
                self.state = State::Done;
                Action::Close(Reply::err("[AUTH] too many failed logins, try again later"))
            }
            AuthOutcome::Unavailable => Action::Reply(Reply::err(
                "[SYS/TEMP] authentication temporarily unavailable, try again later",
            )),
            AuthOutcome::TooManySessions => Action::Reply(Reply::err(
                "[SYS/TEMP] too many sessions for this user, try again later",
            )),
        }
    }

    /// The snapshot for `user` (login succeeded) or why it could not be taken (the
    /// session stays in AUTHORIZATION, RFC 1939 §4).
    pub fn maildrop_result(
        &mut self,
        user: String,
        result: Result<Maildrop, MaildropError>,
    ) -> Action {
        match result {
            Ok(maildrop) => {
                let n = maildrop.messages.len();
                let octets: u64 = maildrop.messages.iter().map(|m| m.1).sum();
                self.state = State::Transaction {
                    user,
                    deleted: vec![false; n],
                    maildrop,
                };
                Action::Reply(Reply::ok(&format!(
                    "maildrop has {n} messages ({octets} octets)"
                )))
            }
            Err(MaildropError::Temporary) => Action::Reply(Reply::err(
                "[SYS/TEMP] maildrop unavailable, try again later",
            )),
            Err(MaildropError::Permanent) => {
                Action::Reply(Reply::err("[SYS/PERM] maildrop cannot be opened"))
            }
        }
    }

    fn transaction(&mut self, verb: &[u8], args: &[&str]) -> Action {
        match (verb, args) {
            (b"STAT", []) => {
                let (n, octets) = self.totals();
                Action::Reply(Reply::ok(&format!("{n} {octets}")))
            }
            (b"LIST", []) => {
                let lines = self.listing(|_, size| size.to_string());
                let (n, octets) = self.totals();
                Action::Reply(Reply::multi(
                    &format!("{n} messages ({octets} octets)"),
                    &lines,
                ))
            }
            (b"LIST", [n]) => match self.message(n) {
                Ok((_, _, size)) => Action::Reply(Reply::ok(&format!("{n} {size}"))),
                Err(a) => a,
            },
            (b"UIDL", []) => {
                let uv = self.uidvalidity();
                let lines = self.listing(|uid, _| unique_id(uv, uid));
                Action::Reply(Reply::multi("unique-id listing follows", &lines))
            }
            (b"UIDL", [n]) => match self.message(n) {
                Ok((_, uid, _)) => Action::Reply(Reply::ok(&format!(
                    "{n} {}",
                    unique_id(self.uidvalidity(), uid)
                ))),
                Err(a) => a,
            },
            (b"RETR", [n]) => self.fetch(n, None),
            (b"TOP", [n, k]) => match parse_number(k) {
                Some(k) => self.fetch(n, Some(k)),
                None => self.error("invalid line count"),
            },
            (b"DELE", [n]) => match self.message(n) {
                Ok((i, _, _)) => {
                    if let State::Transaction { deleted, .. } = &mut self.state {
                        deleted[i] = true;
                    }
                    Action::Reply(Reply::ok(&format!("message {n} deleted")))
                }
                Err(a) => a,
            },
            (b"RSET", []) => {
                if let State::Transaction { deleted, .. } = &mut self.state {
                    deleted.iter_mut().for_each(|d| *d = false);
                }
                let (n, octets) = self.totals();
                Action::Reply(Reply::ok(&format!(
                    "maildrop has {n} messages ({octets} octets)"
                )))
            }
            (b"NOOP", []) => Action::Reply(Reply::ok("")),
            _ => self.error("syntax error"),
        }
    }

    fn uidvalidity(&self) -> u32 {
        match &self.state {
            State::Transaction { maildrop, .. } => maildrop.uidvalidity,
            _ => 0,
        }
    }

    /// Messages not marked deleted, and their octets.
    fn totals(&self) -> (usize, u64) {
        match &self.state {
            State::Transaction {
                maildrop, deleted, ..
            } => maildrop
                .messages
                .iter()
                .zip(deleted)
                .filter(|(_, d)| !**d)
                .fold((0, 0), |(n, o), ((_, size), _)| (n + 1, o + size)),
            _ => (0, 0),
        }
    }

    /// `number text` lines of the messages not marked deleted.
    fn listing(&self, text: impl Fn(u32, u64) -> String) -> Vec<String> {
        match &self.state {
            State::Transaction {
                maildrop, deleted, ..
            } => maildrop
                .messages
                .iter()
                .zip(deleted)
                .enumerate()
                .filter(|(_, (_, d))| !**d)
                .map(|(i, ((uid, size), _))| format!("{} {}", i + 1, text(*uid, *size)))
                .collect(),
            _ => Vec::new(),
        }
    }

    /// The message a client's number refers to: `(index, uid, size)`, or the `-ERR`.
    fn message(&mut self, arg: &str) -> Result<(usize, u32, u64), Action> {
        let found = match (&self.state, parse_number(arg)) {
            (_, None) => Err("invalid message number"),
            (
                State::Transaction {
                    maildrop, deleted, ..
                },
                Some(n),
            ) => match n
                .checked_sub(1)
                .and_then(|i| Some((i, maildrop.messages.get(i)?)))
            {
                None => Err("no such message"),
                Some((i, _)) if deleted[i] => Err("message already deleted"),
                Some((i, (uid, size))) => Ok((i, *uid, *size)),
            },
            _ => Err("not logged in"),
        };
        found.map_err(|text| self.error(text))
    }

    fn fetch(&mut self, n: &str, top: Option<usize>) -> Action {
        match self.message(n) {
            Ok((_, uid, size)) => {
                let fetch = Fetch {
                    uidvalidity: self.uidvalidity(),
                    uid,
                    size,
                    top,
                };
                self.fetching = Some(fetch.clone());
                Action::Fetch(fetch)
            }
            Err(a) => a,
        }
    }

    /// The message bytes for the RETR/TOP in flight.
    pub fn fetch_result(&mut self, result: Result<Vec<u8>, FetchError>) -> Action {
        let Some(fetch) = self.fetching.take() else {
            return Action::Reply(Reply::err("no retrieval in progress"));
        };
        match result {
            Ok(msg) => {
                let text = match fetch.top {
                    None => format!("{} octets", fetch.size),
                    Some(_) => "top of message follows".to_string(),
                };
                // The octets are `crlf_size`, the size of `wire::to_wire(msg)`, which is what
                // is sent before stuffing (plus a line end if the message lacks a final one).
                Action::Reply(Reply::multi_spool(&text, &msg, fetch.top))
            }
            Err(FetchError::Gone) => Action::Reply(Reply::err(
                "[SYS/PERM] message was deleted by another session",
            )),
            Err(FetchError::Temporary) => Action::Reply(Reply::err(
                "[SYS/TEMP] maildrop unavailable, try again later",
            )),
        }
    }

    /// Shutdown or idle timeout while waiting for a command.
    pub fn end(&mut self, text: &str) -> Reply {
        self.state = State::Done;
        Reply::err(text)
    }
}

/// A message number or line count: decimal digits only, no sign, no overflow.
fn parse_number(s: &str) -> Option<usize> {
    if s.is_empty() || s.len() > 10 || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

#[cfg(test)]
#[path = "session_tests.rs"]
mod tests;
