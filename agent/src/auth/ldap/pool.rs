//! Connections to the LDAP servers: the URLs in order with failover, a small pool of
//! idle connections, and the service bind.
//!
//! A server that fails to connect is skipped for [`DOWN_FOR`] so that every login does
//! not wait out a connect timeout on a dead first server; when every server is marked
//! down, all are tried again in order (a directory that came back must be found at once).

use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use ldap3::{Ldap, LdapConnAsync, LdapConnSettings, LdapError};

use crate::auth::AuthError;

/// How long a server that refused or timed out is passed over.
const DOWN_FOR: Duration = Duration::from_secs(30);

/// How a connection is currently bound: searches need the service identity, and a
/// connection used to check a user's password is bound as that user afterwards.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Identity {
    Service,
    User,
}

/// One connection, checked out of the [`Pool`].
#[derive(Debug)]
pub struct Conn {
    pub ldap: Ldap,
    identity: Identity,
    server: usize,
}

/// The service account for searches (`None`: anonymous).
#[derive(Clone)]
pub struct ServiceBind {
    pub dn: String,
    pub password: String,
}

// The password stays out of logs.
impl std::fmt::Debug for ServiceBind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServiceBind").field("dn", &self.dn).finish()
    }
}

pub struct Pool {
    urls: Vec<String>,
    settings: LdapConnSettings,
    service: Option<ServiceBind>,
    timeout: Duration,
    max_idle: usize,
    idle: Mutex<Vec<Conn>>,
    down_until: Mutex<Vec<Option<Instant>>>,
}

impl std::fmt::Debug for Pool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pool")
            .field("urls", &self.urls)
            .field("service", &self.service)
            .finish_non_exhaustive()
    }
}

/// What went wrong talking to a server, as far as the caller cares.
pub fn unavailable(what: &str, e: &LdapError) -> AuthError {
    AuthError::Unavailable(format!("ldap: {what}: {e}"))
}

impl Pool {
    pub fn new(
        urls: Vec<String>,
        settings: LdapConnSettings,
        service: Option<ServiceBind>,
        timeout: Duration,
        max_idle: usize,
    ) -> Pool {
        let n = urls.len();
        Pool {
            urls,
            settings,
            service,
            timeout,
            max_idle,
            idle: Mutex::new(Vec::new()),
            down_until: Mutex::new(vec![None; n]),
        }
    }

    /// A connection bound as the service account: an idle one if there is one, else a
    /// new one to the first server that answers.
    pub async fn service(&self) -> Result<Conn, AuthError> {
        let idle = self
            .idle
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .pop();
        if let Some(mut conn) = idle {
            // A connection last bound as a user is rebound as the service account; one
            // that died (server restart) or cannot be rebound is dropped.
            let usable = !conn.ldap.is_closed()
                && (conn.identity == Identity::Service
                    || self.bind_service(&mut conn).await.is_ok());
            if usable {
                return Ok(conn);
            }
        }
        self.connect().await
    }

    /// A fresh connection (never an idle one): for a retry after a pooled connection
    /// turned out dead, which usually means its server restarted or went away.
    pub async fn fresh(&self) -> Result<Conn, AuthError> {
        self.idle
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clear();
        self.connect().await
    }

    /// Give a connection back for reuse.
    pub fn put(&self, conn: Conn) {
        let mut idle = self.idle.lock().unwrap_or_else(PoisonError::into_inner);
        if idle.len() < self.max_idle {
            idle.push(conn);
        }
    }

    /// The connection is now bound as a user (after a password check).
    pub fn mark_user_bound(conn: &mut Conn) {
        conn.identity = Identity::User;
    }

    /// The per-operation timeout.
    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// Try the servers in order, passing over those marked down unless all are.
    async fn connect(&self) -> Result<Conn, AuthError> {
        let now = Instant::now();
        let order: Vec<usize> = {
            let down = self
                .down_until
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            let up: Vec<usize> = (0..self.urls.len())
                .filter(|&i| down[i].is_none_or(|t| t <= now))
                .collect();
            if up.is_empty() {
                (0..self.urls.len()).collect()
            } else {
                up
            }
        };
        let mut errors = Vec::new();
        for i in order {
            let url = &self.urls[i];
            match self.open(i).await {
                Ok(conn) => {
                    self.set_down(i, None);
                    return Ok(conn);
                }
                Err(e) => {
                    tracing::warn!(%url, error = %e, "ldap server unavailable, trying the next");
                    self.set_down(i, Some(Instant::now() + DOWN_FOR));
                    errors.push(format!("{url}: {e}"));
                }
            }
        }
        Err(AuthError::Unavailable(format!(
            "ldap: no server answered ({})",
            errors.join("; ")
        )))
    }

    fn set_down(&self, server: usize, until: Option<Instant>) {
        if let Some(slot) = self
            .down_until
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get_mut(server)
        {
            *slot = until;
        }
    }

    async fn open(&self, server: usize) -> Result<Conn, String> {
        let url = &self.urls[server];
        let (driver, ldap) = LdapConnAsync::with_settings(self.settings.clone(), url)
            .await
            .map_err(|e| e.to_string())?;
        let url_owned = url.clone();
        tokio::spawn(async move {
            if let Err(e) = driver.drive().await {
                tracing::debug!(url = %url_owned, error = %e, "ldap connection closed");
            }
        });
        let mut conn = Conn {
            ldap,
            identity: Identity::User,
            server,
        };
        self.bind_service(&mut conn)
            .await
            .map_err(|e| e.to_string())?;
        Ok(conn)
    }

    /// Bind as the service account (or anonymously, which needs no bind on a new
    /// connection but does after a user bind).
    async fn bind_service(&self, conn: &mut Conn) -> Result<(), AuthError> {
        let (dn, pw) = match &self.service {
            Some(s) => (s.dn.as_str(), s.password.as_str()),
            None => ("", ""),
        };
        let url = &self.urls[conn.server];
        let res = conn
            .ldap
            .with_timeout(self.timeout)
            .simple_bind(dn, pw)
            .await
            .map_err(|e| unavailable(&format!("{url}: service bind"), &e))?;
        if res.rc != 0 {
            // A rejected service bind is a configuration problem, but still not the
            // user's fault: temporary, with the server's reason in the log.
            return Err(AuthError::Unavailable(format!(
                "ldap: {url}: service bind as {dn:?} refused: rc={} {}",
                res.rc, res.text
            )));
        }
        conn.identity = Identity::Service;
        Ok(())
    }
}
