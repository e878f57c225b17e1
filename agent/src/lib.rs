//! hamail-agent: the daemon that runs, identically, on every mail host. It serves SMTP
//! (MX, submission), IMAP4rev1 (+IMAPS) and POP3 (+POP3S) out of the shared spool, relays
//! mail through the shared queue, authenticates against a passwd-file, the system (NSS),
//! LDAP or NIS, reports health and metrics, and has a local delivery agent (`deliver`).
//!
//! - [`run`]: wiring for one host: listeners, queue runner, health, signals, sd_notify.
//! - [`service`]: what every protocol server shares (spool, directory, limiter, TLS,
//!   limits); each protocol's context adds its own settings.
//! - [`listener`], [`limits`], [`shutdown`]: the shared accept loop, total and per-IP
//!   connection limits, graceful shutdown.
//! - [`conn`], [`tls`]: line framing over a plain or TLS stream; the rustls config.
//! - [`smtp`]: the SMTP session state machine, DATA decoder, replies and server loop.
//! - [`imap`]: IMAP4rev1: framing and literal limits, the server loop, the session and its
//!   commands, the client's view, FETCH, MIME, SEARCH, mailbox names, folders.
//! - [`pop3`]: the POP3 session state machine and server loop.
//! - [`delivery`]: the one path from an accepted message to the spool or the queue.
//! - [`relay`]: the queue runner, MX lookup, SMTP client and DSN bounces.
//! - [`auth`]: the `Authenticator` trait, its backends, the recipient directory, aliases,
//!   caches and the failed-login limiter.
//! - [`health`]: `/healthz`, `/metrics` and the background spool probe.
//! - [`lda`]: `hamail-agent deliver`, the local delivery agent.
//! - [`date`]: RFC 5322 dates for trace headers.
//! - [`blocking`]: the one way async code runs blocking (spool) work.
//!
//! ## Blocking work
//!
//! Every spool operation can block for as long as the NFS server does, so none runs on a
//! runtime worker: a protocol's spool work is one closure handed to [`blocking::run`] (or
//! [`blocking::spool`]), which returns [`blocking::TaskFailed`] instead of a `JoinError` to
//! handle. The protocol state machines are sans-IO (SMTP and POP3 sessions, the IMAP
//! framer) and the loops around them are thin; an IMAP command runs as a whole on the
//! blocking pool (one hop per command, not one per lock), as does the LDA.
//!
//! The crate is a library so the integration tests and the benches can reach its parts; the
//! binary (`main.rs`) only parses the command line. Protocols, limits and operations are
//! described in `agent/README.md`.

pub mod auth;
pub mod blocking;
pub mod conn;
pub mod date;
pub mod delivery;
pub mod health;
pub mod imap;
pub mod lda;
pub mod limits;
pub mod listener;
pub mod pop3;
pub mod relay;
pub mod run;
pub mod service;
pub mod shutdown;
pub mod smtp;
pub mod tls;
