//! IMAP4rev1 (RFC 3501) over the shared spool, with IDLE, UIDPLUS, LITERAL+, NAMESPACE,
//! ID, UNSELECT and MOVE.
//!
//! - `framing`: the byte stream cut into commands, and the literal limits (sans-IO);
//! - `server`: listeners and the connection loop (reads, writes, hands commands over);
//! - `cmd`: the commands, one file per group, and the one dispatch table (`cmd/mod.rs`);
//! - `session`: the protocol state a session keeps between commands;
//! - `reply`: what a command answers, and spool errors mapped to `NO`/`BYE`;
//! - `view`: what a session has told its client about the selected mailbox, and the
//!   untagged updates that bring it up to date with the spool (other sessions, other hosts);
//! - `mime`: ENVELOPE, BODYSTRUCTURE, body sections;
//! - `search`: the SEARCH keys and their evaluation; `names`: mailbox names (modified
//!   UTF-7) and LIST patterns.

pub mod cmd;
pub mod framing;
pub mod mime;
pub mod names;
pub mod reply;
pub mod search;
pub mod server;
pub mod session;
pub mod view;
