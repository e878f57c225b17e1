//! The one way async code runs blocking work: spool operations (locks and file I/O on NFS,
//! which can stall for as long as the server does), password hashing, directory files.
//!
//! [`run`] moves the closure to tokio's blocking pool, so a stalled NFS call holds up one
//! pool thread instead of a runtime worker and every connection scheduled on it. A panic
//! in the closure comes back as [`TaskFailed`], which callers answer like any temporary
//! failure (4xx, `NO [UNAVAILABLE]`, `-ERR [SYS/TEMP]`). Code that is already on the
//! blocking pool (a whole IMAP command, the LDA) calls the storage crate directly.

/// The blocking task panicked (or was cancelled at shutdown); its work may or may not
/// have happened, exactly as with a lost connection to the server.
#[derive(Debug, Clone, Copy, thiserror::Error)]
#[error("internal error: a blocking task failed")]
pub struct TaskFailed;

/// Run `f` on the blocking pool and wait for it.
pub async fn run<T, F>(f: F) -> Result<T, TaskFailed>
where
    F: FnOnce() -> T + Send + 'static,
    T: Send + 'static,
{
    tokio::task::spawn_blocking(f).await.map_err(|e| {
        tracing::error!(error = %e, "blocking task failed");
        TaskFailed
    })
}

/// [`run`] for spool work: a failed task is a temporary storage error, so callers have
/// one error type to map.
pub async fn spool<T, F>(f: F) -> Result<T, hamail_storage::StorageError>
where
    F: FnOnce() -> Result<T, hamail_storage::StorageError> + Send + 'static,
    T: Send + 'static,
{
    run(f).await.map_err(|e| hamail_storage::StorageError::Io {
        path: std::path::PathBuf::new(),
        source: std::io::Error::other(e),
    })?
}
