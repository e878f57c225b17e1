//! hamail-storage: the shared mail spool every hamail host reads and writes over NFS.
//!
//! - [`lock`]: dotlock + fcntl locking in one order, interoperable with Postfix and mutt;
//! - [`mbox`]: mboxrd format, durable group-committed append with crash repair, expunge;
//! - [`index`]: the per-mailbox sidecar with UIDVALIDITY, UIDs, flags and offsets;
//! - [`queue`]: durable queue files claimed by lock;
//! - [`spool`]: the directory layout and name validation;
//! - [`cluster`]: the `hamail.toml` cluster description (its only parser);
//! - [`record`]: the checksummed framing used by every file we write besides mboxes;
//! - [`wire`]: the wire form (CRLF, dot-stuffed) of a message and the spool form (LF), and
//!   the only conversion between them.
//!
//! See `shared/design.md` ("The shared spool") for the invariants this crate upholds.

pub mod cluster;
pub mod error;
pub mod fault;
pub mod fsutil;
pub mod index;
pub mod lock;
pub mod mbox;
pub mod queue;
pub mod record;
pub mod spool;
pub mod wire;

pub use error::{Result, StorageError};
pub use index::{Flags, MessageMeta};
pub use lock::LockOptions;
pub use mbox::{IndexCache, Mailbox, NewMessage};
pub use queue::{Queue, QueueEntry};
pub use spool::Spool;
