//! The event log: every transition (down, up, failover, failback, drain, undrain) as one
//! JSON line appended to `events.jsonl` in the state directory, the same line to
//! `tracing`, and the last [`RECENT`] kept in memory for `dnsctl status`.

use std::collections::VecDeque;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use serde::{Deserialize, Serialize};

/// File name inside `dns.state_dir`.
pub const EVENTS_FILE: &str = "events.jsonl";

/// Events `dnsctl status` shows.
pub const RECENT: usize = 20;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Event {
    /// RFC 3339, UTC.
    pub time: String,
    /// `down`, `up`, `failover`, `failback`, `drain`, `undrain`, `start`.
    pub kind: String,
    pub host: Option<String>,
    pub reason: String,
    /// The serial published with this change (the current one if nothing changed).
    pub serial: u32,
}

#[derive(Debug)]
pub struct EventLog {
    path: PathBuf,
    recent: Mutex<VecDeque<Event>>,
}

impl EventLog {
    /// Opens nothing yet; recent events are read back from the file's tail so `status`
    /// shows history across restarts.
    pub fn new(dir: &Path) -> Self {
        let path = dir.join(EVENTS_FILE);
        let mut recent = VecDeque::new();
        if let Ok(text) = std::fs::read_to_string(&path) {
            for line in text.lines().rev().take(RECENT) {
                if let Ok(e) = serde_json::from_str::<Event>(line) {
                    recent.push_front(e);
                }
            }
        }
        EventLog {
            path,
            recent: Mutex::new(recent),
        }
    }

    /// Record an event. A failed append is logged, not fatal: the zone matters more
    /// than its history.
    pub fn record(&self, kind: &str, host: Option<&str>, reason: &str, serial: u32) -> Event {
        let event = Event {
            time: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
            kind: kind.to_string(),
            host: host.map(str::to_string),
            reason: reason.to_string(),
            serial,
        };
        tracing::info!(
            event = %event.kind,
            host = event.host.as_deref().unwrap_or("-"),
            reason = %event.reason,
            serial = event.serial,
            "zone event"
        );
        if let Err(e) = self.append(&event) {
            tracing::warn!(path = %self.path.display(), error = %e, "cannot append to the event log");
        }
        let mut recent = self
            .recent
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if recent.len() == RECENT {
            recent.pop_front();
        }
        recent.push_back(event.clone());
        event
    }

    fn append(&self, event: &Event) -> std::io::Result<()> {
        if let Some(dir) = self.path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        let mut line = serde_json::to_vec(event).map_err(std::io::Error::other)?;
        line.push(b'\n');
        // One write of one line with O_APPEND: lines never interleave.
        std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.path)?
            .write_all(&line)
    }

    /// The last [`RECENT`] events, oldest first.
    pub fn recent(&self) -> Vec<Event> {
        self.recent
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .iter()
            .cloned()
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_are_appended_as_json_lines_and_survive_a_restart() {
        let dir = tempfile::tempdir().unwrap();
        let log = EventLog::new(dir.path());
        for i in 0..25 {
            log.record("down", Some("host1"), &format!("probe {i}"), i);
        }
        assert_eq!(log.recent().len(), RECENT);
        assert_eq!(log.recent()[0].reason, "probe 5");
        let text = std::fs::read_to_string(dir.path().join(EVENTS_FILE)).unwrap();
        assert_eq!(text.lines().count(), 25);
        let again = EventLog::new(dir.path());
        assert_eq!(again.recent(), log.recent());
    }
}
