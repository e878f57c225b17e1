//! Accounts: who may log in, which recipients exist, and where aliases point.
//!
//! Backends implement [`Authenticator`]; the protocol servers only see that trait (and
//! [`Directory`], which adds aliases on top of it), so LDAP and NIS (issue 5) plug in
//! without touching SMTP, IMAP or POP3.

pub mod aliases;
pub mod cache;
pub mod directory;
pub mod ldap;
pub mod limiter;
pub mod nis;
pub mod passwd_file;
mod reload;
pub mod system;

pub use aliases::{AliasFile, AliasTarget};
pub use directory::{Directory, Targets};
pub use ldap::LdapAuthenticator;
pub use limiter::{LimiterConfig, LoginLimiter};
pub use nis::NisAuthenticator;
pub use passwd_file::FileAuthenticator;
pub use system::SystemAuthenticator;

use std::sync::Arc;

use async_trait::async_trait;
use hamail_storage::cluster::{AuthBackend, ClusterConfig};

/// Why an account question could not be answered. Every variant is temporary: the
/// protocols map it to 454 / 451 / `NO [UNAVAILABLE]`, never to "wrong password" or
/// "unknown user".
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AuthError {
    #[error("account directory unavailable: {0}")]
    Unavailable(String),
}

impl From<crate::blocking::TaskFailed> for AuthError {
    fn from(e: crate::blocking::TaskFailed) -> AuthError {
        AuthError::Unavailable(e.to_string())
    }
}

/// An account source.
#[async_trait]
pub trait Authenticator: Send + Sync + std::fmt::Debug {
    /// Check a login. `Ok(Some(user))` gives the canonical spool user name (the login may
    /// be an alias of it, e.g. an address); `Ok(None)` means wrong login or password.
    async fn verify(&self, login: &str, password: &str) -> Result<Option<String>, AuthError>;
    /// Whether `user` (a spool user name) is an account that receives mail.
    async fn user_exists(&self, user: &str) -> Result<bool, AuthError>;
    /// The spool user that receives mail for `address` (`local@domain`, domain one of
    /// ours), for backends that map addresses to accounts, such as LDAP's `mail`
    /// attributes. `Ok(None)`: no such address (the default).
    async fn find_address(&self, _address: &str) -> Result<Option<String>, AuthError> {
        Ok(None)
    }
    /// Targets of alias `name` (lower-case) kept by the backend itself, such as NIS
    /// `mail.aliases`. `Ok(None)`: not an alias (the default). The aliases file, if
    /// configured, is consulted first.
    async fn alias(&self, _name: &str) -> Result<Option<Vec<AliasTarget>>, AuthError> {
        Ok(None)
    }
    /// Cheap liveness probe for `/healthz`.
    async fn check(&self) -> Result<(), AuthError>;
    /// Short name for logs and `/healthz` ("file", "ldap", ...).
    fn name(&self) -> &'static str;
}

/// Why the account layer could not be set up from the config (a permanent, startup-time
/// problem, unlike [`AuthError`]).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AuthSetupError {
    #[error("auth backend \"file\" needs auth.passwd_file")]
    MissingPasswdFile,
    #[error("auth backend \"{0}\" needs an [auth.{0}] section")]
    Missing(&'static str),
    /// A file named by the config (CA, bind password) is unusable.
    #[error("auth: {0}")]
    File(String),
}

/// The [`Directory`] described by `config.auth`. Files are not read here but on first
/// use (and re-read on change), so an agent starts while they are briefly unreachable;
/// `Directory::check` tells whether they are.
pub fn from_config(config: &ClusterConfig) -> Result<Directory, AuthSetupError> {
    let domains = config.cluster.domains.clone();
    let backend: Arc<dyn Authenticator> = match config.auth.backend {
        AuthBackend::File => {
            let path = config
                .auth
                .passwd_file
                .clone()
                .ok_or(AuthSetupError::MissingPasswdFile)?;
            Arc::new(FileAuthenticator::new(path, domains.clone()))
        }
        AuthBackend::Ldap => {
            let ldap = config
                .auth
                .ldap
                .clone()
                .ok_or(AuthSetupError::Missing("ldap"))?;
            Arc::new(LdapAuthenticator::new(ldap, domains.clone())?)
        }
        AuthBackend::Nis => {
            let nis = config
                .auth
                .nis
                .clone()
                .ok_or(AuthSetupError::Missing("nis"))?;
            Arc::new(NisAuthenticator::new(nis, domains.clone()))
        }
        AuthBackend::System => Arc::new(SystemAuthenticator::new(domains.clone())),
    };
    let aliases = config.auth.aliases_file.clone().map(AliasFile::new);
    Ok(Directory::new(backend, aliases, domains))
}

/// Whether `domain` is one of `domains` (case-insensitive, a trailing dot allowed), the
/// same rule as `ClusterConfig::is_local_domain`.
pub(crate) fn is_local_domain(domains: &[String], domain: &str) -> bool {
    let domain = domain.trim_end_matches('.');
    domains.iter().any(|d| d.eq_ignore_ascii_case(domain))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(auth: &str) -> ClusterConfig {
        ClusterConfig::builder("/srv/mail")
            .hosts(["10.0.0.11"])
            .section("auth", auth)
            .build()
            .unwrap()
    }

    #[tokio::test]
    async fn from_config_builds_the_file_backend() {
        let tmp = tempfile::tempdir().unwrap();
        let passwd = tmp.path().join("passwd");
        let aliases = tmp.path().join("aliases");
        std::fs::write(&passwd, "alice:{PLAIN}pw\n").unwrap();
        std::fs::write(&aliases, "info: alice\n").unwrap();
        let c = config(&format!(
            "backend = \"file\"\npasswd_file = {:?}\naliases_file = {:?}",
            passwd.display().to_string(),
            aliases.display().to_string()
        ));
        let d = from_config(&c).unwrap();
        assert_eq!(d.backend().name(), "file");
        assert_eq!(d.local_domains(), ["example.test"]);
        assert_eq!(
            d.verify("alice@example.test", "pw").await.unwrap(),
            Some("alice".into())
        );
        assert_eq!(d.resolve("info").await.unwrap().unwrap().users, ["alice"]);
    }

    #[test]
    fn local_domain_matching() {
        let d = vec!["example.test".to_string()];
        assert!(is_local_domain(&d, "EXAMPLE.test."));
        assert!(!is_local_domain(&d, "sub.example.test"));
        assert!(!is_local_domain(&d, ""));
    }
}

/// The outcome of a login attempt, the same for SMTP AUTH, IMAP and POP3.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LoginOutcome {
    /// The canonical user name.
    Ok(String),
    Failed,
    /// Too many failures from this client or for this user.
    Limited,
    /// The directory could not answer: a temporary failure, never "wrong password".
    Unavailable,
}

/// Check a login through the rate limiter and the directory, with logs and metrics.
pub async fn login(
    directory: &Directory,
    limiter: &LoginLimiter,
    peer: std::net::SocketAddr,
    protocol: &'static str,
    login: &str,
    password: &str,
) -> LoginOutcome {
    if limiter.check(peer.ip(), login).is_err() {
        metrics::counter!("hamail_auth_failures_total", "reason" => "rate_limited").increment(1);
        tracing::warn!(%peer, protocol, login, "login refused: too many failures");
        return LoginOutcome::Limited;
    }
    match directory.verify(login, password).await {
        Ok(Some(user)) => {
            limiter.success(peer.ip(), login);
            tracing::info!(%peer, protocol, login, user = %user, "authenticated");
            LoginOutcome::Ok(user)
        }
        Ok(None) => {
            limiter.failure(peer.ip(), login);
            metrics::counter!("hamail_auth_failures_total", "reason" => "invalid").increment(1);
            tracing::warn!(%peer, protocol, login, "authentication failed");
            LoginOutcome::Failed
        }
        Err(e) => {
            metrics::counter!("hamail_auth_failures_total", "reason" => "unavailable").increment(1);
            tracing::warn!(%peer, protocol, login, error = %e, "authentication backend unavailable");
            LoginOutcome::Unavailable
        }
    }
}
