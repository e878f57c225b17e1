//! SMTP: inbound MX (port 25), authenticated submission (587 with STARTTLS, 465 with
//! implicit TLS). `session` is the protocol state machine, `data` the DATA decoder,
//! `server` the tokio loop that drives them.

pub mod data;
pub mod reply;
pub mod server;
pub mod session;

pub use reply::Reply;
pub use session::{Kind, Session, Settings};
