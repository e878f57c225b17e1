//! The sidecar index of one mailbox: UIDVALIDITY, UIDNEXT and, per message, UID, flags,
//! keywords, byte offset, length, exact size, internal date and a fingerprint.
//!
//! It lives on the spool beside the mailboxes (`<spool>/index/<user>/<name>.idx`), so all
//! hosts see the same UIDs and flags, and it is written only under the mailbox write lock.
//! On every open it is validated against the mbox ([`sync`]): kept when the mbox is as
//! recorded, extended when mail was only appended (by us or by Postfix), rebuilt when the
//! mbox changed otherwise, keeping UIDs of unchanged messages where it can.

mod file;
mod flags;
mod headers;
pub mod sync;
pub mod validity;

pub use file::{beside as file_beside, Index, INDEX_SUFFIX, MAX_KEYWORDS};
pub use flags::Flags;
pub use headers::{parse as headers_parse, ImportedMessage, ImportedState};
pub use sync::{MboxStat, Validity};

/// What the index knows about one message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MessageMeta {
    pub uid: u32,
    pub flags: Flags,
    /// Bit i set: the mailbox's i-th keyword ([`Index::keywords`]) is set.
    pub keywords: u64,
    /// Offset of the message's `From ` line in the mbox.
    pub offset: u64,
    /// Length of the `From ` line including its LF.
    pub from_len: u32,
    /// Bytes from the `From ` line through the blank separator line.
    pub len: u64,
    /// Exact length of the message as delivered (after mboxrd unquoting).
    pub size: u64,
    /// Internal date, Unix seconds.
    pub date: i64,
    /// CRC-32 of the message's bytes in the mbox (used to recognise it after edits).
    pub fp: u32,
    /// Line feeds not preceded by CR: what IMAP and POP3 turn into CRLF on the wire.
    pub bare_lf: u32,
}

/// Line feeds in `data` not preceded by a CR.
pub fn count_bare_lf(data: &[u8]) -> u32 {
    let lf = memchr::memchr_iter(b'\n', data).count();
    let crlf = memchr::memmem::find_iter(data, b"\r\n").count();
    u32::try_from(lf - crlf).unwrap_or(u32::MAX)
}

impl MessageMeta {
    /// Size of the message with CRLF line endings (RFC822.SIZE, POP3 LIST octets).
    pub fn crlf_size(&self) -> u64 {
        self.size + u64::from(self.bare_lf)
    }

    /// Offset just past this message.
    pub fn end(&self) -> u64 {
        self.offset + self.len
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn bare_lf_counts_only_lone_line_feeds() {
        assert_eq!(super::count_bare_lf(b"a\nb\r\nc\n\r\n\n"), 3);
        assert_eq!(super::count_bare_lf(b""), 0);
    }
}
