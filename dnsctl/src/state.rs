//! What dnsctl must remember across restarts: the SOA serial, each host's health and
//! since when, the operator's override and drains. Saved with an atomic replace (write a
//! temp file, fsync, rename, fsync the directory) so a crash leaves the old or the new
//! state, never half of one.
//!
//! The serial only grows: each change takes `max(previous + 1, now in Unix seconds)`, so
//! it also grows across a restart that lost the state file (the clock has moved on), and
//! secondaries always see a newer zone (RFC 1982 comparison, valid until 2106).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// File name inside `dns.state_dir`.
pub const STATE_FILE: &str = "state.json";

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HostRecord {
    pub up: bool,
    /// Unix seconds of the last transition (or of the first probe).
    pub since: i64,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct State {
    pub serial: u32,
    #[serde(default)]
    pub hosts: BTreeMap<String, HostRecord>,
    /// `dnsctl failover HOST`, until `dnsctl failback`.
    #[serde(default)]
    pub primary: Option<String>,
    /// `dnsctl drain HOST`, until `dnsctl undrain HOST`.
    #[serde(default)]
    pub drained: BTreeSet<String>,
}

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StateError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: corrupt state file: {source}")]
    Corrupt {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> StateError + '_ {
    move |source| StateError::Io {
        path: path.to_path_buf(),
        source,
    }
}

impl State {
    /// The saved state, or a fresh one (serial 0) if there is none yet. A corrupt file
    /// is an error: starting over silently could publish an older serial.
    pub fn load(dir: &Path) -> Result<State, StateError> {
        let path = dir.join(STATE_FILE);
        match std::fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes).map_err(|source| StateError::Corrupt {
                path: path.clone(),
                source,
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(State::default()),
            Err(e) => Err(io(&path)(e)),
        }
    }

    /// Replace the saved state atomically and durably.
    pub fn save(&self, dir: &Path) -> Result<(), StateError> {
        std::fs::create_dir_all(dir).map_err(io(dir))?;
        let path = dir.join(STATE_FILE);
        let tmp = dir.join(format!("{STATE_FILE}.tmp"));
        let mut text = serde_json::to_vec_pretty(self).map_err(|source| StateError::Corrupt {
            path: path.clone(),
            source,
        })?;
        text.push(b'\n');
        hamail_storage::fsutil::write_synced(&tmp, &text).map_err(|e| StateError::Io {
            path: tmp.clone(),
            source: std::io::Error::other(e.to_string()),
        })?;
        std::fs::rename(&tmp, &path).map_err(io(&path))?;
        hamail_storage::fsutil::fsync_dir(&path).map_err(|e| StateError::Io {
            path: dir.to_path_buf(),
            source: std::io::Error::other(e.to_string()),
        })
    }

    /// Move to the next serial (see the module doc) and return it.
    pub fn bump_serial(&mut self, now_unix: i64) -> u32 {
        let now = u32::try_from(now_unix.max(0)).unwrap_or(u32::MAX);
        self.serial = self.serial.wrapping_add(1).max(now);
        self.serial
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serial_strictly_increases_within_a_second_and_after_a_lost_state() {
        let mut s = State::default();
        let a = s.bump_serial(1_800_000_000);
        let b = s.bump_serial(1_800_000_000);
        let c = s.bump_serial(1_799_999_000); // clock stepped back
        assert_eq!(a, 1_800_000_000);
        assert!(a < b && b < c, "{a} {b} {c}");
        // State lost, clock later than the old serial: still newer.
        let mut fresh = State::default();
        assert!(fresh.bump_serial(1_800_000_100) > c);
    }

    #[test]
    fn save_and_load_round_trip_atomically() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(State::load(dir.path()).unwrap(), State::default());
        let mut s = State::default();
        s.bump_serial(1_800_000_000);
        s.primary = Some("host2".into());
        s.drained.insert("host3".into());
        s.hosts.insert(
            "host1".into(),
            HostRecord {
                up: false,
                since: 1_800_000_000,
            },
        );
        s.save(dir.path()).unwrap();
        assert_eq!(State::load(dir.path()).unwrap(), s);
        assert!(!dir.path().join("state.json.tmp").exists());
        std::fs::write(dir.path().join(STATE_FILE), b"{\"serial\": ").unwrap();
        assert!(matches!(
            State::load(dir.path()),
            Err(StateError::Corrupt { .. })
        ));
    }
}
