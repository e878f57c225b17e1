//! hamail-agent: the daemon that runs identically on every mail host. It serves SMTP
//! (MX on 25, submission on 587/465) and POP3 (110 with STLS, 995) out of the shared
//! spool, relays authenticated mail through the shared queue, and reports its health to
//! dnsctl over HTTP.
//!
//! The crate is a library so the integration tests and the bench can reach its parts; the
//! binary (`main.rs`) only parses the command line.

pub mod auth;
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
pub mod shutdown;
pub mod smtp;
pub mod tls;
