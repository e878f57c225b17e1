//! Accounts: who may log in, which recipients exist, and where aliases point.
//!
//! Backends implement [`Authenticator`]; the protocol servers only see that trait (and
//! [`Directory`], which adds aliases on top of it), so LDAP and NIS (issue 5) plug in
//! without touching SMTP, IMAP or POP3.

pub mod aliases;
pub mod directory;
pub mod limiter;
pub mod passwd_file;
mod reload;

pub use aliases::AliasFile;
pub use directory::{Directory, Targets};
pub use limiter::{LimiterConfig, LoginLimiter};
pub use passwd_file::FileAuthenticator;

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

/// Why the account layer could not be set up from the config (a permanent, startup-time
/// problem, unlike [`AuthError`]).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AuthSetupError {
    #[error("auth backend \"{0}\" is not supported yet (issue 5)")]
    Unsupported(&'static str),
    #[error("auth backend \"file\" needs auth.passwd_file")]
    MissingPasswdFile,
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
        AuthBackend::Ldap => return Err(AuthSetupError::Unsupported("ldap")),
        AuthBackend::Nis => return Err(AuthSetupError::Unsupported("nis")),
        AuthBackend::System => return Err(AuthSetupError::Unsupported("system")),
    };
    let aliases = config.auth.aliases_file.clone().map(AliasFile::new);
    Ok(Directory::new(backend, aliases, domains))
}

/// Outcome of [`login`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LoginOutcome {
    /// The canonical spool user name.
    Ok(String),
    /// Wrong login or password.
    Failed,
    /// Refused without checking: too many recent failures from this client or user.
    Limited,
    /// The directory could not answer.
    Unavailable,
}

/// Check a login the way every protocol does: the failed-login limiter first, then the
/// directory; records the outcome in the limiter, the log and
/// `hamail_auth_failures_total{reason}`.
pub async fn login(
    directory: &Directory,
    limiter: &LoginLimiter,
    peer: std::net::IpAddr,
    login: &str,
    password: &str,
) -> LoginOutcome {
    if limiter.check(peer, login).is_err() {
        metrics::counter!("hamail_auth_failures_total", "reason" => "rate_limited").increment(1);
        tracing::warn!(%peer, login, "login refused: too many failures");
        return LoginOutcome::Limited;
    }
    match directory.verify(login, password).await {
        Ok(Some(user)) => {
            limiter.success(peer, login);
            tracing::info!(%peer, login, user = %user, "authenticated");
            LoginOutcome::Ok(user)
        }
        Ok(None) => {
            limiter.failure(peer, login);
            metrics::counter!("hamail_auth_failures_total", "reason" => "invalid").increment(1);
            tracing::warn!(%peer, login, "authentication failed");
            LoginOutcome::Failed
        }
        Err(e) => {
            metrics::counter!("hamail_auth_failures_total", "reason" => "unavailable").increment(1);
            tracing::warn!(%peer, login, error = %e, "authentication backend unavailable");
            LoginOutcome::Unavailable
        }
    }
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
    use std::path::Path;

    fn config(auth: &str) -> ClusterConfig {
        let text = format!(
            "[cluster]\ndomains = [\"example.test\"]\nspool = \"/srv/mail\"\n\n\
             [[host]]\nname = \"host1\"\naddress = \"10.0.0.11\"\nmx_priority = 10\n\n\
             [tls]\ncert = \"/c.pem\"\nkey = \"/k.pem\"\n\n\
             [auth]\n{auth}\n"
        );
        ClusterConfig::parse(&text, Path::new("hamail.toml")).unwrap()
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
    fn other_backends_are_not_supported_yet() {
        for b in ["ldap", "nis", "system"] {
            let err = from_config(&config(&format!("backend = \"{b}\"")))
                .unwrap_err()
                .to_string();
            assert!(err.contains(b) && err.contains("issue 5"), "{err}");
        }
    }

    #[test]
    fn local_domain_matching() {
        let d = vec!["example.test".to_string()];
        assert!(is_local_domain(&d, "EXAMPLE.test."));
        assert!(!is_local_domain(&d, "sub.example.test"));
        assert!(!is_local_domain(&d, ""));
    }
}
