//! Time for trace headers: now, and the RFC 5322 form (shared with the spool's `From `
//! line formatting in the storage crate, always UTC so every host writes the same).

pub use hamail_storage::mbox::format::rfc5322;

/// Current time as Unix seconds.
pub fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}
