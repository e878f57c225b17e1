//! [`Directory`]: what the protocol servers ask about accounts. It puts aliases,
//! subaddressing and the postmaster rule on top of an [`Authenticator`] backend, and
//! turns a recipient's local part into spool users and remote addresses.

use std::sync::Arc;

use super::aliases::{AliasFile, AliasTable, AliasTarget};
use super::{is_local_domain, AuthError, Authenticator};

/// Alias expansion stops this deep (sendmail uses a similar bound), so a long chain
/// cannot make one RCPT expensive.
const MAX_DEPTH: usize = 10;

/// Where mail for one recipient goes. Both lists are deduplicated, in first-seen order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Targets {
    /// Spool users (each passed `validate_user`).
    pub users: Vec<String>,
    /// Addresses outside the local domains, for the queue.
    pub remote: Vec<String>,
}

/// Accounts, aliases and local domains.
#[derive(Debug, Clone)]
pub struct Directory {
    backend: Arc<dyn Authenticator>,
    aliases: Option<AliasFile>,
    domains: Vec<String>,
}

impl Directory {
    pub fn new(
        backend: Arc<dyn Authenticator>,
        aliases: Option<AliasFile>,
        local_domains: Vec<String>,
    ) -> Self {
        Directory {
            backend,
            aliases,
            domains: local_domains,
        }
    }

    pub fn backend(&self) -> &Arc<dyn Authenticator> {
        &self.backend
    }

    pub fn local_domains(&self) -> &[String] {
        &self.domains
    }

    /// Check a login against the backend (aliases do not apply to logins).
    pub async fn verify(&self, login: &str, password: &str) -> Result<Option<String>, AuthError> {
        self.backend.verify(login, password).await
    }

    /// Backend and aliases file both answer.
    pub async fn check(&self) -> Result<(), AuthError> {
        self.backend.check().await?;
        if let Some(a) = &self.aliases {
            a.current().await?;
        }
        Ok(())
    }

    /// Resolve the local part of a recipient in a local domain. `Ok(None)`: no such
    /// recipient (including an alias that expands to nothing deliverable). `Err`: the
    /// backend or aliases file cannot answer right now.
    ///
    /// Rules, in order, for each name: an alias wins over a user of the same name (as in
    /// sendmail); then a backend user; then `name+detail` falls back to `name`; and
    /// `postmaster` always resolves (RFC 5321 §4.5.1), to the spool user `postmaster` if
    /// nothing else.
    pub async fn resolve(&self, local_part: &str) -> Result<Option<Targets>, AuthError> {
        let aliases = match &self.aliases {
            Some(a) => Some(a.current().await?),
            None => None,
        };
        let mut r = Resolver {
            dir: self,
            aliases: aliases.as_deref(),
            stack: Vec::new(),
            out: Targets::default(),
        };
        let name = local_part.to_ascii_lowercase();
        if !r.name(&name).await? {
            return Ok(None);
        }
        Ok((!r.out.users.is_empty() || !r.out.remote.is_empty()).then_some(r.out))
    }
}

/// One resolution in progress.
struct Resolver<'a> {
    dir: &'a Directory,
    aliases: Option<&'a AliasTable>,
    /// Names being expanded, outermost first: loop detection and depth.
    stack: Vec<String>,
    out: Targets,
}

impl Resolver<'_> {
    /// Resolve `name` (lower-case) into `self.out`; `false` if it is unknown.
    /// Boxed: the recursion goes through aliases.
    fn name<'s>(
        &'s mut self,
        name: &'s str,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = Result<bool, AuthError>> + Send + 's>>
    {
        Box::pin(async move {
            if self.stack.iter().any(|n| n == name) {
                tracing::warn!(
                    alias = %name,
                    chain = %self.stack.join(" -> "),
                    "alias loop, branch dropped"
                );
                return Ok(true);
            }
            if self.stack.len() >= MAX_DEPTH {
                tracing::warn!(
                    alias = %name,
                    chain = %self.stack.join(" -> "),
                    "aliases nested deeper than {MAX_DEPTH}, branch dropped"
                );
                return Ok(true);
            }
            if let Some(targets) = self.aliases.and_then(|a| a.get(name)) {
                self.stack.push(name.to_string());
                for t in targets {
                    self.target(t).await?;
                }
                self.stack.pop();
                return Ok(true);
            }
            let valid = hamail_storage::spool::validate_user(name).is_ok();
            if valid && self.dir.backend.user_exists(name).await? {
                self.add_user(name);
                return Ok(true);
            }
            if let Some((base, _detail)) = name.split_once('+') {
                if !base.is_empty() && self.name(base).await? {
                    return Ok(true);
                }
            }
            if name == "postmaster" {
                self.add_user(name);
                return Ok(true);
            }
            Ok(false)
        })
    }

    async fn target(&mut self, t: &AliasTarget) -> Result<(), AuthError> {
        let alias = self.stack.last().cloned().unwrap_or_default();
        match t {
            AliasTarget::Local(n) => self.local_target(&alias, n).await?,
            AliasTarget::Mailbox(n) => {
                if hamail_storage::spool::validate_user(n).is_ok() {
                    self.add_user(n);
                } else {
                    tracing::warn!(%alias, target = %n, "alias target is not a valid user name, skipped");
                }
            }
            AliasTarget::Address(a) => match a.rsplit_once('@') {
                Some((local, domain)) if is_local_domain(&self.dir.domains, domain) => {
                    self.local_target(&alias, &local.to_ascii_lowercase())
                        .await?;
                }
                _ => {
                    if !self.out.remote.contains(a) {
                        self.out.remote.push(a.clone());
                    }
                }
            },
        }
        Ok(())
    }

    async fn local_target(&mut self, alias: &str, name: &str) -> Result<(), AuthError> {
        if !self.name(name).await? {
            tracing::warn!(%alias, target = %name, "alias target is no alias or user, skipped");
        }
        Ok(())
    }

    fn add_user(&mut self, user: &str) {
        if hamail_storage::spool::validate_user(user).is_err() {
            tracing::warn!(%user, "not a valid spool user name, skipped");
            return;
        }
        if !self.out.users.iter().any(|u| u == user) {
            self.out.users.push(user.to_string());
        }
    }
}
