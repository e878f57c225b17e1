//! SMTP: inbound MX (port 25), authenticated submission (587 with STARTTLS, 465 with
//! implicit TLS). `session` is the protocol state machine, `server` the tokio loop that
//! drives it; DATA is decoded by `hamail_storage::wire::DotDecoder`, which owns the
//! dot-stuffed wire form (and the SMTP smuggling rules) in both directions.

pub mod reply;
pub mod server;
pub mod session;

pub use reply::Reply;
pub use session::{Kind, Session, Settings};
