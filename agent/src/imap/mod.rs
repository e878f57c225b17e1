//! IMAP4rev1 (RFC 3501) over the shared spool, with IDLE, UIDPLUS, LITERAL+, NAMESPACE,
//! ID, UNSELECT and MOVE.
//!
//! - `framing`: the byte stream cut into commands, and the literal limits (sans-IO);
//! - `server`: listeners and the connection loop (STARTTLS, IDLE, timeouts);
//! - `session`: the protocol states and the commands;
//! - `view`: what a session has told its client about the selected mailbox, and the
//!   untagged updates that bring it up to date with the spool (other sessions, other hosts);
//! - `fetch`: FETCH data items; `mime`: ENVELOPE, BODYSTRUCTURE, body sections;
//! - `search`: SEARCH keys; `names`: mailbox names (modified UTF-7) and LIST patterns;

pub mod fetch;
pub mod framing;
pub mod mime;
pub mod names;
pub mod search;
pub mod server;
pub mod session;
pub mod view;
