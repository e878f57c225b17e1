//! Relay out: the queue runner that every host runs over the shared queue.
//!
//! - [`runner`]: scans the queue, claims due entries and settles each recipient;
//! - [`mx`]: where a domain's mail goes (MX, implicit MX, null MX, smarthost);
//! - [`client`]: one outbound SMTP connection;
//! - [`dsn`]: the RFC 3464 bounce for recipients that failed for good.

pub mod client;
pub mod dsn;
pub mod mx;
pub mod runner;

pub use runner::{spawn, RelayHandle};
