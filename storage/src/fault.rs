//! Fault injection for crash tests, compiled only with the `fault-injection` cargo
//! feature (turned on for test builds by the dev-dependencies of hamail-storage and
//! hamail-agent; never in `cargo build --release`). With the feature, when the
//! environment variable `HAMAIL_CRASH_AT` names a step (e.g. `append:after-write`), the
//! process kills itself with SIGKILL on reaching that step, exactly like a power cut for
//! the process (the page cache survives; the locks' owners vanish); with the variable
//! unset this is one cached lookup. Without the feature [`point`], [`armed`] and
//! [`pause`] are empty inlined functions (`armed` is `false`), so no environment variable
//! can make a production binary kill itself or sleep.

/// Whether this build honours `HAMAIL_CRASH_AT` / `HAMAIL_PAUSE_AT`.
pub const ENABLED: bool = cfg!(feature = "fault-injection");

#[cfg(feature = "fault-injection")]
pub use imp::{armed, pause, point};

#[cfg(feature = "fault-injection")]
mod imp {
    use std::sync::OnceLock;

    static CRASH_AT: OnceLock<Option<String>> = OnceLock::new();

    /// Die here if `HAMAIL_CRASH_AT` names this step. `HAMAIL_CRASH_AT=step@N` dies on
    /// the N-th time the step is reached (1-based) instead of the first.
    pub fn point(step: &str) {
        let target = CRASH_AT.get_or_init(|| std::env::var("HAMAIL_CRASH_AT").ok());
        let Some(target) = target else { return };
        let (name, nth) = match target.split_once('@') {
            Some((n, k)) => (n, k.parse::<u64>().unwrap_or(1)),
            None => (target.as_str(), 1),
        };
        if name != step {
            return;
        }
        static HITS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let hit = HITS.fetch_add(1, std::sync::atomic::Ordering::SeqCst) + 1;
        if hit == nth {
            let _ = nix::sys::signal::raise(nix::sys::signal::Signal::SIGKILL);
        }
    }

    /// Whether `HAMAIL_CRASH_AT` names `step` (for steps that must change what they do
    /// to stop in the middle, such as a half-written append).
    pub fn armed(step: &str) -> bool {
        let target = CRASH_AT.get_or_init(|| std::env::var("HAMAIL_CRASH_AT").ok());
        target
            .as_deref()
            .is_some_and(|t| t.split('@').next() == Some(step))
    }

    static PAUSE_AT: OnceLock<Option<(String, u64)>> = OnceLock::new();

    /// Sleep here if `HAMAIL_PAUSE_AT=step:millis` names this step (lets tests line up
    /// other processes behind a lock holder at a known point).
    pub fn pause(step: &str) {
        let target = PAUSE_AT.get_or_init(|| {
            let v = std::env::var("HAMAIL_PAUSE_AT").ok()?;
            let (name, ms) = v.rsplit_once(':')?;
            Some((name.to_string(), ms.parse().ok()?))
        });
        if let Some((name, ms)) = target {
            if name == step {
                std::thread::sleep(std::time::Duration::from_millis(*ms));
            }
        }
    }
}

/// A crash point; does nothing in a build without the `fault-injection` feature.
#[cfg(not(feature = "fault-injection"))]
#[inline(always)]
pub fn point(_step: &str) {}

/// Always `false` in a build without the `fault-injection` feature.
#[cfg(not(feature = "fault-injection"))]
#[inline(always)]
pub fn armed(_step: &str) -> bool {
    false
}

/// A pause point; does nothing in a build without the `fault-injection` feature.
#[cfg(not(feature = "fault-injection"))]
#[inline(always)]
pub fn pause(_step: &str) {}
