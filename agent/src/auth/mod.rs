//! Accounts: who may log in, which recipients exist, and where aliases point.
//!
//! Backends implement [`Authenticator`]; the protocol servers only see that trait (and
//! [`Directory`], which adds aliases on top of it), so LDAP and NIS (issue 5) plug in
//! without touching SMTP, IMAP or POP3.

use async_trait::async_trait;

/// Why an account question could not be answered. Every variant is temporary: the
/// protocols map it to 454 / 451 / `NO [UNAVAILABLE]`, never to "wrong password" or
/// "unknown user".
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AuthError {
    #[error("account directory unavailable: {0}")]
    Unavailable(String),
}

/// An account source.
#[async_trait]
pub trait Authenticator: Send + Sync + std::fmt::Debug {
    /// Check a login. `Ok(Some(user))` gives the canonical spool user name (the login may
    /// be an alias of it, e.g. an address); `Ok(None)` means wrong login or password.
    async fn verify(&self, login: &str, password: &str) -> Result<Option<String>, AuthError>;
    /// Whether `user` (a spool user name) is an account that receives mail.
    async fn user_exists(&self, user: &str) -> Result<bool, AuthError>;
    /// Cheap liveness probe for `/healthz`.
    async fn check(&self) -> Result<(), AuthError>;
    /// Short name for logs and `/healthz` ("file", "ldap", ...).
    fn name(&self) -> &'static str;
}

pub mod directory;
pub mod limiter;

pub use directory::{Directory, Targets};
pub use limiter::LoginLimiter;

/// TEMPORARY stub (replaced on merge): `{PLAIN}` passwd-file only.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct AuthSetupError(String);

#[derive(Debug)]
struct PlainFile(std::path::PathBuf);

#[async_trait]
impl Authenticator for PlainFile {
    async fn verify(&self, login: &str, password: &str) -> Result<Option<String>, AuthError> {
        let text =
            std::fs::read_to_string(&self.0).map_err(|e| AuthError::Unavailable(e.to_string()))?;
        Ok(text.lines().find_map(|l| {
            let mut f = l.split(':');
            (f.next() == Some(login) && f.next() == Some(&format!("{{PLAIN}}{password}")))
                .then(|| login.to_string())
        }))
    }
    async fn user_exists(&self, user: &str) -> Result<bool, AuthError> {
        let text =
            std::fs::read_to_string(&self.0).map_err(|e| AuthError::Unavailable(e.to_string()))?;
        Ok(text.lines().any(|l| l.split(':').next() == Some(user)))
    }
    async fn check(&self) -> Result<(), AuthError> {
        std::fs::metadata(&self.0)
            .map(|_| ())
            .map_err(|e| AuthError::Unavailable(e.to_string()))
    }
    fn name(&self) -> &'static str {
        "file"
    }
}

pub fn from_config(
    config: &hamail_storage::cluster::ClusterConfig,
) -> Result<Directory, AuthSetupError> {
    let path = config
        .auth
        .passwd_file
        .clone()
        .ok_or_else(|| AuthSetupError("no passwd_file".into()))?;
    Ok(Directory::new(std::sync::Arc::new(PlainFile(path))))
}
