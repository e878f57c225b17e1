//! Mailbox locking, NFS-safe, in the one order used everywhere (invariant 1 of the design):
//!
//! 1. the dotlock `<mbox>.lock` ([`dotlock`]), which Postfix local(8), procmail, mutt and
//!    liblockfile's `dotlockfile` also honour;
//! 2. then the mailbox file is opened (so NFS close-to-open consistency gives us fresh
//!    attributes and data);
//! 3. then an fcntl write lock on it ([`fcntl`]).
//!
//! Readers take only an fcntl read lock. The second lock is never waited for longer than
//! [`LockOptions::fcntl_wait`] while the first is held: the writer backs off, releases the
//! dotlock and starts over, so two programs that take the locks in different orders cannot
//! deadlock. Every held lock is an RAII guard.

pub mod dotlock;
pub mod fcntl;

/// Process-wide totals of the time spent waiting for mailbox write locks (for appends: until
/// the lock was ours or a group commit had written our messages), for the agent's metrics
/// (the storage crate itself has no metrics dependency).
pub mod stats {
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::time::Duration;

    static WAITS: AtomicU64 = AtomicU64::new(0);
    static WAIT_NANOS: AtomicU64 = AtomicU64::new(0);

    pub(crate) fn record(waited: Duration) {
        WAITS.fetch_add(1, Ordering::Relaxed);
        WAIT_NANOS.fetch_add(
            waited.as_nanos().min(u64::MAX as u128) as u64,
            Ordering::Relaxed,
        );
    }

    /// `(acquisitions, total time waited)` since the process started.
    pub fn write_lock_waits() -> (u64, Duration) {
        (
            WAITS.load(Ordering::Relaxed),
            Duration::from_nanos(WAIT_NANOS.load(Ordering::Relaxed)),
        )
    }
}

use std::fs::File;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::error::{IoContext, Result, StorageError};
pub use dotlock::DotLock;
pub use fcntl::{FcntlGuard, LockKind};

/// Timing and identity settings for locks.
#[derive(Debug, Clone)]
pub struct LockOptions {
    /// Give up (temporary failure) if the locks are not held by then.
    pub timeout: Duration,
    /// A dotlock whose mtime (server time) is older than this is stale and may be broken.
    /// Holders refresh the mtime well within it. Postfix uses 500 s, liblockfile 300 s.
    pub stale_after: Duration,
    /// Break at once a dotlock that names this host and a process that no longer exists.
    pub break_dead_local: bool,
    /// How long to wait for the fcntl lock while holding the dotlock before backing off.
    pub fcntl_wait: Duration,
    /// First retry delay; doubles up to `max_backoff`, each with ±50 % jitter.
    pub min_backoff: Duration,
    pub max_backoff: Duration,
    /// The name written into lock files; must differ between hosts sharing a spool.
    pub hostname: String,
}

impl Default for LockOptions {
    fn default() -> Self {
        LockOptions {
            timeout: Duration::from_secs(30),
            stale_after: Duration::from_secs(300),
            break_dead_local: true,
            fcntl_wait: Duration::from_secs(2),
            min_backoff: Duration::from_micros(500),
            max_backoff: Duration::from_millis(100),
            hostname: local_hostname(),
        }
    }
}

/// This host's name as lock files record it. `HAMAIL_HOSTNAME` overrides it (several
/// simulated hosts on one machine in tests).
pub fn local_hostname() -> String {
    if let Ok(h) = std::env::var("HAMAIL_HOSTNAME") {
        if !h.is_empty() {
            return h;
        }
    }
    nix::unistd::gethostname()
        .ok()
        .and_then(|h| h.into_string().ok())
        .unwrap_or_else(|| "localhost".to_string())
}

/// Jittered exponential backoff bounded by a deadline.
#[derive(Debug)]
pub(crate) struct Backoff {
    next: Duration,
    max: Duration,
    deadline: Instant,
}

impl Backoff {
    pub(crate) fn new(opts: &LockOptions, deadline: Instant) -> Self {
        Backoff {
            next: opts.min_backoff,
            max: opts.max_backoff,
            deadline,
        }
    }

    /// Sleep for the next interval; false when the deadline has passed.
    pub(crate) fn wait(&mut self) -> bool {
        let now = Instant::now();
        if now >= self.deadline {
            return false;
        }
        let base = self.next.as_micros() as u64;
        let jittered = Duration::from_micros(base / 2 + fastrand::u64(0..=base.max(1)));
        std::thread::sleep(jittered.min(self.deadline - now));
        self.next = (self.next * 2).min(self.max);
        true
    }
}

/// A mailbox held for writing: dotlock, open read-write file, fcntl write lock. Dropping
/// it releases the fcntl lock (closing the file), then removes the dotlock.
#[derive(Debug)]
pub struct WriteLock {
    // Field order is drop order: the fcntl guard and file go before the dotlock.
    fcntl: FcntlGuard,
    dotlock: DotLock,
    path: PathBuf,
}

impl WriteLock {
    /// Take both locks on `mbox`, creating the mailbox file (0600) if it does not exist.
    pub fn acquire(mbox: &Path, opts: &LockOptions) -> Result<WriteLock> {
        let started = Instant::now();
        let result = Self::acquire_inner(mbox, opts);
        stats::record(started.elapsed());
        result
    }

    fn acquire_inner(mbox: &Path, opts: &LockOptions) -> Result<WriteLock> {
        let deadline = Instant::now() + opts.timeout;
        let mut backoff = Backoff::new(opts, deadline);
        loop {
            let dotlock = DotLock::acquire(&dotlock::lock_path(mbox), opts, deadline)?;
            let file = open_rw(mbox)?;
            let fcntl_deadline = deadline.min(Instant::now() + opts.fcntl_wait);
            if let Some(fcntl) = FcntlGuard::lock(file, LockKind::Write, opts, fcntl_deadline)? {
                return Ok(WriteLock {
                    fcntl,
                    dotlock,
                    path: mbox.to_path_buf(),
                });
            }
            // Somebody holds the fcntl lock without the dotlock (or with it, in another
            // order): let go of everything so they can finish, then start over.
            drop(dotlock);
            if !backoff.wait() {
                return Err(StorageError::LockTimeout {
                    path: mbox.to_path_buf(),
                });
            }
        }
    }

    /// One attempt without waiting for other holders. `None` if the mailbox is busy.
    pub fn try_acquire(mbox: &Path, opts: &LockOptions) -> Result<Option<WriteLock>> {
        let Some(dotlock) = DotLock::try_acquire(&dotlock::lock_path(mbox), opts)? else {
            return Ok(None);
        };
        let file = open_rw(mbox)?;
        Ok(
            FcntlGuard::lock(file, LockKind::Write, opts, Instant::now())?.map(|fcntl| WriteLock {
                fcntl,
                dotlock,
                path: mbox.to_path_buf(),
            }),
        )
    }

    /// Swap in a new file (already fcntl-locked) after the mailbox was replaced by
    /// rename, as expunge does. The dotlock stays held throughout.
    pub fn replace_file(&mut self, fcntl: FcntlGuard) {
        self.fcntl = fcntl;
    }

    /// The locked mailbox file, open read-write.
    pub fn file(&self) -> &File {
        self.fcntl.file()
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Touch the dotlock so it is not taken for stale during a long operation; fails if
    /// the lock was broken by somebody else meanwhile (the caller must then abort).
    pub fn refresh(&self) -> Result<()> {
        self.dotlock.refresh()
    }
}

fn open_rw(mbox: &Path) -> Result<File> {
    if let Some(dir) = mbox.parent() {
        std::fs::create_dir_all(dir).at(dir)?;
    }
    crate::fsutil::open_or_create(mbox)
}

/// ENOENT or ESTALE: the file was replaced by a rename on another host.
fn is_renamed_under_us(e: &std::io::Error) -> bool {
    e.kind() == std::io::ErrorKind::NotFound || e.raw_os_error() == Some(libc::ESTALE)
}

/// A mailbox held for reading: an open read-only file with an fcntl read lock.
#[derive(Debug)]
pub struct ReadLock {
    fcntl: FcntlGuard,
}

impl ReadLock {
    /// Open `mbox` read-only and take a shared fcntl lock. `NoSuchMailbox` if absent.
    ///
    /// Readers take no dotlock, so an expunge on another host may rename a new file over
    /// the mailbox while we open or wait: on NFS the open can then fail with ENOENT or
    /// ESTALE for a moment, or we lock the old, now deleted file. So after locking we check
    /// that the name still leads to the file we hold, and start over if not.
    pub fn acquire(mbox: &Path, opts: &LockOptions) -> Result<ReadLock> {
        let deadline = Instant::now() + opts.timeout;
        let mut backoff = Backoff::new(opts, deadline);
        let mut missing = 0;
        loop {
            let file = match File::open(mbox) {
                Ok(f) => f,
                Err(e) if is_renamed_under_us(&e) => {
                    missing += 1;
                    // Really absent, not just being replaced.
                    if missing > 3 && e.kind() == std::io::ErrorKind::NotFound {
                        return Err(StorageError::NoSuchMailbox {
                            path: mbox.to_path_buf(),
                        });
                    }
                    std::thread::sleep(Duration::from_millis(10));
                    continue;
                }
                Err(e) => return Err(StorageError::io(mbox, e)),
            };
            let fcntl = match FcntlGuard::lock(file, LockKind::Read, opts, deadline) {
                Ok(Some(fcntl)) => fcntl,
                Ok(None) => {
                    return Err(StorageError::LockTimeout {
                        path: mbox.to_path_buf(),
                    })
                }
                // NFSv3: the file we opened was deleted on the server meanwhile.
                Err(e) if e.is_stale_handle() && Instant::now() < deadline => continue,
                Err(e) => return Err(e),
            };
            let held = fcntl.file().metadata();
            let named = std::fs::metadata(mbox);
            match (held, named) {
                (Ok(h), Ok(n)) if h.dev() == n.dev() && h.ino() == n.ino() => {
                    return Ok(ReadLock { fcntl })
                }
                (Err(e), _) | (_, Err(e)) if !is_renamed_under_us(&e) => {
                    return Err(StorageError::io(mbox, e))
                }
                _ => {}
            }
            if !backoff.wait() {
                return Err(StorageError::LockTimeout {
                    path: mbox.to_path_buf(),
                });
            }
        }
    }

    pub fn file(&self) -> &File {
        self.fcntl.file()
    }
}
