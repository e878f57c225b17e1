//! POP3 (RFC 1939) on port 110 with STLS and on port 995 with implicit TLS, over the
//! shared spool. `session` is the protocol state machine, `server` the tokio loop that
//! drives it and does the spool work.

pub mod server;
pub mod session;

pub use session::{Reply, Session, Settings};
