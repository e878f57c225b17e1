//! hamail-storage: the shared mail spool every hamail host reads and writes over NFS, and
//! the cluster description. The only code that knows the spool's layout.
//!
//! - [`spool`]: the directory layout, name validation, `RESERVED_SUFFIXES`; [`Spool`].
//! - [`folders`]: a user's mailboxes: list, create, delete and rename with their
//!   sidecars (crash-safe), subscriptions.
//! - [`lock`]: dotlock + fcntl locking in one order, interoperable with Postfix and mutt.
//! - [`mbox`]: one mailbox: read/write sessions, durable group-committed append with
//!   crash repair, crash-safe expunge, the `\Recent` watermark.
//! - [`index`]: the per-mailbox sidecar (UIDVALIDITY, UIDs, flags, keywords, offsets),
//!   validated against the mbox, extended or rebuilt; fresh UIDVALIDITY values.
//! - [`queue`]: durable queue entries, claimed by lock.
//! - [`wire`]: the wire form (CRLF, dot-stuffed) of a message and the spool form (LF),
//!   and the only conversion between them.
//! - [`record`]: the checksummed framing of every file we write besides mboxes.
//! - [`fsutil`]: the few ways files are created, written, renamed and fsynced.
//! - [`cluster`]: the `hamail.toml` schema, its only parser.
//! - [`error`]: [`StorageError`], temporary (4xx) or permanent (5xx).
//! - [`fault`]: fault injection for the crash tests (`HAMAIL_CRASH_AT`).
//!
//! The on-disk layout, the invariants this crate upholds, running on NFS and the
//! configuration reference are in `storage/README.md`; how the crates fit together in
//! `ARCHITECTURE.md` at the repository root.

pub mod cluster;
pub mod error;
pub mod fault;
pub mod folders;
pub mod fsutil;
pub mod index;
pub mod lock;
pub mod mbox;
pub mod queue;
pub mod record;
pub mod spool;
pub mod wire;

pub use error::{Result, StorageError};
pub use folders::{FolderError, Folders};
pub use index::{Flags, MessageMeta};
pub use lock::LockOptions;
pub use mbox::{IndexCache, Mailbox, NewMessage};
pub use queue::{Queue, QueueEntry};
pub use spool::Spool;
