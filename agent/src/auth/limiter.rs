//! [`LoginLimiter`]: slows password guessing by refusing logins after repeated failures,
//! per client address and per user, for a sliding window.
//!
//! Both keys matter: one address guessing many users hits the address limit, a botnet
//! guessing one user hits the user limit. Memory is bounded (an attacker controls both
//! keys), and the state is per agent: a cluster of N hosts allows N times the limits,
//! which is still far below what guessing needs.

use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

/// Limits of a [`LoginLimiter`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LimiterConfig {
    /// Failures allowed per client address (IPv6: per /64) within `window`.
    pub per_ip: usize,
    /// Failures allowed per user within `window`.
    pub per_user: usize,
    pub window: Duration,
    /// Most addresses and users tracked at once; the least recently failed are forgotten.
    pub max_entries: usize,
}

impl Default for LimiterConfig {
    fn default() -> Self {
        LimiterConfig {
            per_ip: 10,
            per_user: 5,
            window: Duration::from_secs(300),
            max_entries: 10_000,
        }
    }
}

/// User keys longer than this are cut: they are attacker-chosen.
const MAX_USER_KEY: usize = 256;

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Key {
    Ip(IpAddr),
    User(String),
}

/// Recent failure times of one key, oldest first; at most the key's limit are kept,
/// since older ones cannot change the answer.
#[derive(Debug, Default)]
struct Failures {
    times: VecDeque<Instant>,
}

impl Failures {
    fn prune(&mut self, now: Instant, window: Duration) {
        while self
            .times
            .front()
            .is_some_and(|t| now.saturating_duration_since(*t) >= window)
        {
            self.times.pop_front();
        }
    }

    fn last(&self) -> Option<Instant> {
        self.times.back().copied()
    }
}

/// Failed-login bookkeeping; share one per agent (it locks internally).
#[derive(Debug)]
pub struct LoginLimiter {
    config: LimiterConfig,
    entries: Mutex<HashMap<Key, Failures>>,
}

impl Default for LoginLimiter {
    fn default() -> Self {
        Self::new()
    }
}

impl LoginLimiter {
    /// With the default limits (10 failures per address, 5 per user, in 5 minutes).
    pub fn new() -> Self {
        Self::with_config(LimiterConfig::default())
    }

    pub fn with_config(config: LimiterConfig) -> Self {
        LoginLimiter {
            config,
            entries: Mutex::new(HashMap::new()),
        }
    }

    pub fn config(&self) -> &LimiterConfig {
        &self.config
    }

    /// Whether a login attempt may proceed now; `Err(wait)` means refuse it (without
    /// checking the password) for about `wait`.
    pub fn check(&self, ip: IpAddr, user: &str) -> Result<(), Duration> {
        self.check_at(ip, user, Instant::now())
    }

    /// Record a failed login.
    pub fn failure(&self, ip: IpAddr, user: &str) {
        self.failure_at(ip, user, Instant::now());
    }

    /// Record a successful login.
    pub fn success(&self, ip: IpAddr, user: &str) {
        self.success_at(ip, user, Instant::now());
    }

    /// [`check`](Self::check) at time `now`.
    pub fn check_at(&self, ip: IpAddr, user: &str, now: Instant) -> Result<(), Duration> {
        let mut entries = self.lock();
        let wait = [
            (ip_key(ip), self.config.per_ip),
            (user_key(user), self.config.per_user),
        ]
        .into_iter()
        .filter_map(|(key, limit)| {
            let f = entries.get_mut(&key)?;
            f.prune(now, self.config.window);
            if f.times.len() < limit.max(1) {
                return None;
            }
            // Refused until enough failures leave the window to get below the limit.
            let freeing = f.times[f.times.len() - limit.max(1)];
            Some((freeing + self.config.window).saturating_duration_since(now))
        })
        .max();
        match wait {
            Some(w) => Err(w.max(Duration::from_secs(1))),
            None => Ok(()),
        }
    }

    /// [`failure`](Self::failure) at time `now`.
    pub fn failure_at(&self, ip: IpAddr, user: &str, now: Instant) {
        let mut entries = self.lock();
        for (key, limit) in [
            (ip_key(ip), self.config.per_ip),
            (user_key(user), self.config.per_user),
        ] {
            if !entries.contains_key(&key) {
                self.make_room(&mut entries, now);
            }
            let f = entries.entry(key).or_default();
            f.prune(now, self.config.window);
            f.times.push_back(now);
            while f.times.len() > limit.max(1) {
                f.times.pop_front();
            }
        }
    }

    /// [`success`](Self::success) at time `now`. Clears the user's failures (the owner
    /// got in) but not the address's: otherwise an attacker holding one valid account
    /// could reset its address counter between guesses at others.
    pub fn success_at(&self, _ip: IpAddr, user: &str, _now: Instant) {
        self.lock().remove(&user_key(user));
    }

    /// Number of tracked addresses and users.
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    pub fn is_empty(&self) -> bool {
        self.lock().is_empty()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<Key, Failures>> {
        // The map is consistent after any panic mid-update (worst case one failure too
        // many or too few), so a poisoned lock is still usable.
        self.entries.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Before adding a key to a full map: drop expired entries, and if that is not
    /// enough, the least recently failed tenth, so a flood of new keys costs one scan per
    /// many insertions rather than one per insertion.
    fn make_room(&self, entries: &mut HashMap<Key, Failures>, now: Instant) {
        let cap = self.config.max_entries.max(1);
        if entries.len() < cap {
            return;
        }
        let window = self.config.window;
        entries.retain(|_, f| {
            f.prune(now, window);
            !f.times.is_empty()
        });
        let target = cap - cap / 10 - 1;
        if entries.len() > target {
            let mut by_age: Vec<(Instant, Key)> = entries
                .iter()
                .filter_map(|(k, f)| Some((f.last()?, k.clone())))
                .collect();
            by_age.sort_unstable_by_key(|(t, _)| *t);
            let excess = entries.len() - target;
            for (_, k) in by_age.into_iter().take(excess) {
                entries.remove(&k);
            }
        }
    }
}

/// IPv6 clients usually control a whole /64, so that is one key.
fn ip_key(ip: IpAddr) -> Key {
    match ip {
        IpAddr::V4(_) => Key::Ip(ip),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => Key::Ip(IpAddr::V4(v4)),
            None => {
                let s = v6.segments();
                Key::Ip(IpAddr::V6(std::net::Ipv6Addr::new(
                    s[0], s[1], s[2], s[3], 0, 0, 0, 0,
                )))
            }
        },
    }
}

fn user_key(user: &str) -> Key {
    let mut u = user.to_lowercase();
    if u.len() > MAX_USER_KEY {
        let mut end = MAX_USER_KEY;
        while !u.is_char_boundary(end) {
            end -= 1;
        }
        u.truncate(end);
    }
    Key::User(u)
}

#[cfg(test)]
mod tests {
    use super::*;

    const IP: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(192, 0, 2, 1));
    const IP2: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(192, 0, 2, 2));

    fn secs(s: u64) -> Duration {
        Duration::from_secs(s)
    }

    #[test]
    fn per_user_limit_refuses_until_the_window_frees() {
        let l = LoginLimiter::default();
        let t0 = Instant::now();
        for i in 0..5 {
            assert_eq!(l.check_at(IP, "alice", t0 + secs(i)), Ok(()));
            // Different addresses: only the user limit applies.
            let ip = IpAddr::V4(std::net::Ipv4Addr::new(10, 0, 0, i as u8));
            l.failure_at(ip, "Alice", t0 + secs(i));
        }
        // The 5th failure was at t0+4s; the first leaves the window at t0+300s.
        assert_eq!(l.check_at(IP, "alice", t0 + secs(10)), Err(secs(290)));
        assert_eq!(l.check_at(IP, "bob", t0 + secs(10)), Ok(()));
        assert_eq!(l.check_at(IP, "alice", t0 + secs(300)), Ok(()));
    }

    #[test]
    fn per_ip_limit_spans_users_and_ipv6_prefixes() {
        let l = LoginLimiter::default();
        let t0 = Instant::now();
        for i in 0..10u64 {
            l.failure_at(IP, &format!("user{i}"), t0);
        }
        assert_eq!(l.check_at(IP, "someone", t0 + secs(1)), Err(secs(299)));
        assert_eq!(l.check_at(IP2, "someone", t0 + secs(1)), Ok(()));

        let a: IpAddr = "2001:db8:1:2::1".parse().unwrap();
        let b: IpAddr = "2001:db8:1:2:ffff::9".parse().unwrap();
        let c: IpAddr = "2001:db8:1:3::1".parse().unwrap();
        for i in 0..10u64 {
            l.failure_at(a, &format!("v6user{i}"), t0);
        }
        assert!(l.check_at(b, "x", t0).is_err(), "same /64");
        assert!(l.check_at(c, "x", t0).is_ok(), "other /64");
    }

    #[test]
    fn success_clears_the_user_but_not_the_address() {
        let l = LoginLimiter::with_config(LimiterConfig {
            per_ip: 6,
            ..LimiterConfig::default()
        });
        let t0 = Instant::now();
        for _ in 0..5 {
            l.failure_at(IP, "alice", t0);
        }
        assert!(l.check_at(IP2, "alice", t0).is_err());
        l.success_at(IP, "alice", t0);
        assert_eq!(l.check_at(IP2, "alice", t0), Ok(()));
        l.failure_at(IP, "bob", t0);
        assert!(l.check_at(IP, "carol", t0).is_err(), "address count kept");
    }

    #[test]
    fn memory_is_bounded_and_oldest_evicted() {
        let l = LoginLimiter::with_config(LimiterConfig {
            max_entries: 100,
            ..LimiterConfig::default()
        });
        let t0 = Instant::now();
        for _ in 0..5 {
            l.failure_at(IP, "victim", t0);
        }
        for i in 0..1000u32 {
            let ip = IpAddr::V4(std::net::Ipv4Addr::from(0x0a00_0000 + i));
            l.failure_at(
                ip,
                &format!("u{i}"),
                t0 + secs(1) + Duration::from_millis(i.into()),
            );
            assert!(l.len() <= 100, "{} entries", l.len());
        }
        // The oldest entries (IP, victim) were evicted first.
        assert_eq!(l.check_at(IP2, "victim", t0 + secs(2)), Ok(()));
        // Long user names are cut, not stored whole.
        l.failure_at(IP, &"é".repeat(1000), t0);
    }
}
