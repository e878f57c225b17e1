//! A parsed file that follows its source: re-read when the file (or a file it pulls in,
//! like an alias `:include:`) changes, so admins edit accounts without restarting agents.
//!
//! Changes are detected by (device, inode, size, mtime, ctime): a rename-into-place gives
//! a new inode, an in-place edit a new mtime/ctime. The check costs one `stat` per watched
//! file and runs at most once per `recheck` interval, whatever the login rate. All of it
//! is blocking I/O (the spool's NFS mount may be slow): call [`Reloading::get`] from
//! `crate::blocking::run`.

use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use super::AuthError;

/// How often a file is checked for changes by default.
pub(crate) const DEFAULT_RECHECK: Duration = Duration::from_secs(1);

/// What a loader produced: the value, and further files whose change must reload it.
#[derive(Debug)]
pub(crate) struct Loaded<T> {
    pub value: T,
    pub also_watch: Vec<PathBuf>,
}

type Loader<T> = Box<dyn Fn(&Path) -> io::Result<Loaded<T>> + Send + Sync>;

/// Identity and version of one file; `None` for a watched file that does not exist (an
/// `:include:` target may appear later).
#[derive(Debug, Clone, PartialEq, Eq)]
struct Stamp {
    dev: u64,
    ino: u64,
    len: u64,
    mtime: (i64, i64),
    ctime: (i64, i64),
}

fn stamp(path: &Path) -> io::Result<Stamp> {
    let m = std::fs::metadata(path)?;
    Ok(Stamp {
        dev: m.dev(),
        ino: m.ino(),
        len: m.len(),
        mtime: (m.mtime(), m.mtime_nsec()),
        ctime: (m.ctime(), m.ctime_nsec()),
    })
}

#[derive(Debug)]
struct Current<T> {
    main: Stamp,
    deps: Vec<(PathBuf, Option<Stamp>)>,
    value: Arc<T>,
}

#[derive(Debug)]
struct State<T> {
    current: Option<Current<T>>,
    /// The last failure, repeated until the next check so a missing file is not stat'ed
    /// on every login.
    error: Option<String>,
    checked_at: Option<Instant>,
}

/// A file parsed into `T`, reloaded on change.
pub(crate) struct Reloading<T> {
    path: PathBuf,
    recheck: Duration,
    load: Loader<T>,
    state: Mutex<State<T>>,
}

impl<T> std::fmt::Debug for Reloading<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Reloading")
            .field("path", &self.path)
            .field("recheck", &self.recheck)
            .finish_non_exhaustive()
    }
}

impl<T> Reloading<T> {
    pub(crate) fn new(
        path: PathBuf,
        recheck: Duration,
        load: impl Fn(&Path) -> io::Result<Loaded<T>> + Send + Sync + 'static,
    ) -> Self {
        Reloading {
            path,
            recheck,
            load: Box::new(load),
            state: Mutex::new(State {
                current: None,
                error: None,
                checked_at: None,
            }),
        }
    }

    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    /// The current contents, reloading first if the file changed. A file that cannot be
    /// stat'ed or read is `Unavailable`: the previous contents are dropped rather than
    /// served, since a vanished passwd file must not keep old passwords working.
    pub(crate) fn get(&self) -> Result<Arc<T>, AuthError> {
        // Holding the lock across the reload is deliberate: concurrent callers need the
        // new contents anyway, and this keeps one reader per file per agent.
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        let now = Instant::now();
        if let Some(at) = state.checked_at {
            if now.saturating_duration_since(at) < self.recheck {
                return match (&state.current, &state.error) {
                    (_, Some(e)) => Err(AuthError::Unavailable(e.clone())),
                    (Some(c), None) => Ok(c.value.clone()),
                    (None, None) => Err(self.unavailable("not loaded")),
                };
            }
        }
        state.checked_at = Some(now);
        match self.refresh(&mut state) {
            Ok(value) => {
                state.error = None;
                Ok(value)
            }
            Err(e) => {
                state.current = None;
                let msg = format!("{}: {e}", self.path.display());
                state.error = Some(msg.clone());
                Err(AuthError::Unavailable(msg))
            }
        }
    }

    fn unavailable(&self, why: &str) -> AuthError {
        AuthError::Unavailable(format!("{}: {why}", self.path.display()))
    }

    fn refresh(&self, state: &mut State<T>) -> io::Result<Arc<T>> {
        // Stat before reading: if the file changes in between, the recorded stamp is the
        // old one and the next check reloads again; the other order could miss a change.
        let main = stamp(&self.path)?;
        if let Some(cur) = &state.current {
            let deps_same = cur
                .deps
                .iter()
                .all(|(p, s)| stamp(p).ok().as_ref() == s.as_ref());
            if cur.main == main && deps_same {
                return Ok(cur.value.clone());
            }
        }
        let loaded = (self.load)(&self.path)?;
        let deps = loaded
            .also_watch
            .into_iter()
            .map(|p| {
                let s = stamp(&p).ok();
                (p, s)
            })
            .collect();
        let value = Arc::new(loaded.value);
        state.current = Some(Current {
            main,
            deps,
            value: value.clone(),
        });
        tracing::info!(path = %self.path.display(), "loaded");
        Ok(value)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    fn counting(path: &Path, recheck: Duration, loads: Arc<AtomicUsize>) -> Reloading<String> {
        Reloading::new(path.to_path_buf(), recheck, move |p| {
            loads.fetch_add(1, Ordering::SeqCst);
            Ok(Loaded {
                value: std::fs::read_to_string(p)?,
                also_watch: vec![p.with_extension("dep")],
            })
        })
    }

    #[test]
    fn reloads_only_on_change_and_fails_when_missing() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f.txt");
        std::fs::write(&path, "one").unwrap();
        let loads = Arc::new(AtomicUsize::new(0));
        let r = counting(&path, Duration::ZERO, loads.clone());

        assert_eq!(*r.get().unwrap(), "one");
        assert_eq!(*r.get().unwrap(), "one");
        assert_eq!(
            loads.load(Ordering::SeqCst),
            1,
            "unchanged file is not re-read"
        );

        std::fs::write(&path, "two!").unwrap();
        assert_eq!(*r.get().unwrap(), "two!");

        // A watched dependency appearing triggers a reload too.
        std::fs::write(path.with_extension("dep"), "x").unwrap();
        r.get().unwrap();
        assert_eq!(loads.load(Ordering::SeqCst), 3);

        std::fs::remove_file(&path).unwrap();
        assert!(matches!(r.get(), Err(AuthError::Unavailable(_))));
        std::fs::write(&path, "back").unwrap();
        assert_eq!(*r.get().unwrap(), "back");
    }

    #[test]
    fn recheck_interval_caches_results() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f.txt");
        std::fs::write(&path, "one").unwrap();
        let r = counting(
            &path,
            Duration::from_secs(3600),
            Arc::new(AtomicUsize::new(0)),
        );
        assert_eq!(*r.get().unwrap(), "one");
        std::fs::write(&path, "two!").unwrap();
        assert_eq!(
            *r.get().unwrap(),
            "one",
            "not checked again within the interval"
        );
    }
}
