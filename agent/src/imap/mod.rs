//! IMAP4rev1 (RFC 3501) over the shared spool.

pub mod mime;
