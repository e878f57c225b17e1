//! Connection limits shared by every listener of the agent: a total cap and a per-client
//! IP cap. A connection holds a [`Permit`] for its lifetime; the permits also tell the
//! graceful shutdown when the last session has finished.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

#[derive(Debug)]
pub struct ConnLimits {
    total: Arc<Semaphore>,
    max_total: u32,
    per_ip: Mutex<HashMap<IpAddr, u32>>,
    max_per_ip: u32,
}

/// Why a connection was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    Total,
    PerIp,
}

/// One admitted connection; dropping it frees the slot.
#[derive(Debug)]
pub struct Permit {
    limits: Arc<ConnLimits>,
    ip: IpAddr,
    _total: OwnedSemaphorePermit,
}

impl ConnLimits {
    pub fn new(max_total: u32, max_per_ip: u32) -> Arc<ConnLimits> {
        Arc::new(ConnLimits {
            total: Arc::new(Semaphore::new(max_total as usize)),
            max_total,
            per_ip: Mutex::new(HashMap::new()),
            max_per_ip,
        })
    }

    pub fn admit(self: &Arc<Self>, ip: IpAddr) -> Result<Permit, Refused> {
        let total = self
            .total
            .clone()
            .try_acquire_owned()
            .map_err(|_| Refused::Total)?;
        let mut per_ip = self.per_ip.lock().unwrap_or_else(|p| p.into_inner());
        let n = per_ip.entry(ip).or_insert(0);
        if *n >= self.max_per_ip {
            return Err(Refused::PerIp);
        }
        *n += 1;
        Ok(Permit {
            limits: self.clone(),
            ip,
            _total: total,
        })
    }

    /// Connections open now.
    pub fn active(&self) -> usize {
        self.max_total as usize - self.total.available_permits()
    }

    /// Wait until every connection has ended, or `deadline` passed; true if all ended.
    pub async fn drained(&self, deadline: Duration) -> bool {
        tokio::time::timeout(deadline, self.total.acquire_many(self.max_total))
            .await
            .is_ok_and(|r| r.is_ok())
    }
}

impl Drop for Permit {
    fn drop(&mut self) {
        let mut per_ip = self.limits.per_ip.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(n) = per_ip.get_mut(&self.ip) {
            *n -= 1;
            if *n == 0 {
                per_ip.remove(&self.ip);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn total_and_per_ip_caps() {
        let limits = ConnLimits::new(3, 2);
        let a: IpAddr = "10.0.0.1".parse().unwrap();
        let b: IpAddr = "10.0.0.2".parse().unwrap();
        let p1 = limits.admit(a).unwrap();
        let _p2 = limits.admit(a).unwrap();
        assert_eq!(limits.admit(a).unwrap_err(), Refused::PerIp);
        let _p3 = limits.admit(b).unwrap();
        assert_eq!(limits.admit(b).unwrap_err(), Refused::Total);
        assert_eq!(limits.active(), 3);
        drop(p1);
        let _p4 = limits.admit(a).unwrap();
        assert!(!limits.drained(Duration::from_millis(10)).await);
    }
}

/// Sessions per user (IMAP and POP3 together): a client that opens connections in a loop
/// must not exhaust the host for everyone.
#[derive(Debug)]
pub struct UserSessions {
    max: u32,
    counts: Mutex<HashMap<String, u32>>,
}

/// One logged-in session; dropping it frees the slot.
#[derive(Debug)]
pub struct UserPermit {
    owner: Arc<UserSessions>,
    user: String,
}

impl UserSessions {
    pub fn new(max: u32) -> Arc<UserSessions> {
        Arc::new(UserSessions {
            max,
            counts: Mutex::new(HashMap::new()),
        })
    }

    /// `None` if the user already has the maximum number of sessions.
    pub fn admit(self: &Arc<Self>, user: &str) -> Option<UserPermit> {
        let mut counts = self.counts.lock().unwrap_or_else(|p| p.into_inner());
        let n = counts.entry(user.to_string()).or_insert(0);
        if *n >= self.max {
            return None;
        }
        *n += 1;
        Some(UserPermit {
            owner: self.clone(),
            user: user.to_string(),
        })
    }
}

impl Drop for UserPermit {
    fn drop(&mut self) {
        let mut counts = self.owner.counts.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(n) = counts.get_mut(&self.user) {
            *n -= 1;
            if *n == 0 {
                counts.remove(&self.user);
            }
        }
    }
}

#[cfg(test)]
mod user_tests {
    use super::*;

    #[test]
    fn per_user_cap() {
        let s = UserSessions::new(2);
        let a = s.admit("alice").unwrap();
        let _b = s.admit("alice").unwrap();
        assert!(s.admit("alice").is_none());
        assert!(s.admit("bob").is_some());
        drop(a);
        assert!(s.admit("alice").is_some());
    }
}
