//! The `ldap` backend: find the user with the service account and an escaped filter,
//! then bind as the found DN to check the password (the directory's own password
//! policy applies, and `userPassword` is never read unless `compare_hashes` is set).
//! Recipients are found by their `mail` attributes.
//!
//! Every value a client sends is checked (length, control characters) and escaped
//! (RFC 4515) before it goes into a filter, so `*` or `)(uid=*` match nothing but
//! themselves. An empty password is refused before any bind: LDAP treats a bind with a
//! DN and no password as an anonymous bind that "succeeds" (RFC 4513 §5.1.2).

mod pool;

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use hamail_storage::cluster::LdapConfig;
use ldap3::{ldap_escape, LdapConnSettings, LdapError, Scope, SearchEntry, SearchOptions};

use super::cache::{PasswordCache, TtlCache};
use super::passwd_file::Credential;
use super::{AuthError, AuthSetupError, Authenticator};
use pool::{unavailable, Conn, Pool, ServiceBind};

/// Logins and addresses longer than this are refused without a query (RFC 5321 allows
/// 254-byte paths; nothing legitimate is longer).
const MAX_NAME: usize = 256;

/// Passwords longer than this are refused without a bind.
const MAX_PASSWORD: usize = 1024;

/// A user entry found by a search.
#[derive(Debug, Clone)]
struct Found {
    dn: String,
    /// The spool user name: `user_attr`, lower-cased.
    user: String,
}

pub struct LdapAuthenticator {
    config: LdapConfig,
    pool: Pool,
    /// Login or user name (lower-case) → entry.
    users: TtlCache<String, Found>,
    /// Address (lower-case) → spool user.
    addresses: TtlCache<String, String>,
    passwords: PasswordCache,
}

impl std::fmt::Debug for LdapAuthenticator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LdapAuthenticator")
            .field("pool", &self.pool)
            .field("base_dn", &self.config.base_dn)
            .finish_non_exhaustive()
    }
}

impl LdapAuthenticator {
    /// Reads the bind password file and the CA file now: a broken path is a startup
    /// error, not a login failure hours later.
    pub fn new(config: LdapConfig, _local_domains: Vec<String>) -> Result<Self, AuthSetupError> {
        for url in &config.urls {
            let host = url
                .split_once("://")
                .map(|(_, rest)| rest.split('/').next().unwrap_or(""))
                .unwrap_or("");
            if host.is_empty() || host.starts_with(':') {
                return Err(AuthSetupError::File(format!(
                    "auth.ldap.urls: {url:?} has no host"
                )));
            }
            let loopback = host.starts_with("127.")
                || host.starts_with("localhost")
                || host.starts_with("[::1]");
            if url.starts_with("ldap://") && !config.starttls && !loopback {
                tracing::warn!(%url, "ldap:// without starttls: passwords cross the network in clear");
            }
        }
        let password = match (&config.bind_password, &config.bind_password_file) {
            (Some(p), _) => Some(p.clone()),
            (None, Some(path)) => Some(
                std::fs::read_to_string(path)
                    .map_err(|e| {
                        AuthSetupError::File(format!(
                            "auth.ldap.bind_password_file {}: {e}",
                            path.display()
                        ))
                    })?
                    .trim_end_matches(['\r', '\n'])
                    .to_string(),
            ),
            (None, None) => None,
        };
        let service = config.bind_dn.clone().map(|dn| ServiceBind {
            dn,
            password: password.unwrap_or_default(),
        });
        let mut settings = LdapConnSettings::new()
            .set_conn_timeout(Duration::from_secs(config.connect_timeout_secs.max(1)))
            .set_starttls(config.starttls);
        if let Some(ca) = &config.ca_file {
            settings = settings.set_config(Arc::new(client_config(ca)?));
        }
        let timeout = Duration::from_secs(config.timeout_secs.max(1));
        let ttl = Duration::from_secs(config.cache_secs);
        Ok(LdapAuthenticator {
            pool: Pool::new(
                config.urls.clone(),
                settings,
                service,
                timeout,
                config.pool_size,
            ),
            users: TtlCache::new(ttl),
            addresses: TtlCache::new(ttl),
            passwords: PasswordCache::new(ttl),
            config,
        })
    }

    /// Run `op` on a pooled connection, retrying once on a fresh connection if the
    /// pooled one has died (its server restarted or went away; the retry fails over to
    /// the next server).
    async fn run(&self, op: Op<'_>) -> Result<Answer, AuthError> {
        let mut conn = self.pool.service().await?;
        let result = match self.run_on(&mut conn, &op).await {
            Err(Failure::Connection(e)) => {
                tracing::debug!(error = %e, "ldap connection lost, retrying on a new one");
                conn = self.pool.fresh().await?;
                self.run_on(&mut conn, &op).await
            }
            other => other,
        };
        match result {
            Ok(answer) => {
                self.pool.put(conn);
                Ok(answer)
            }
            Err(e) => Err(e.into_auth(match op {
                Op::Search { .. } => "search",
                Op::Bind { .. } => "bind",
            })),
        }
    }

    async fn run_on(&self, conn: &mut Conn, op: &Op<'_>) -> Result<Answer, Failure> {
        match *op {
            Op::Search {
                base,
                scope,
                filter,
                attrs,
            } => self
                .search_on(conn, base, scope, filter, attrs)
                .await
                .map(Answer::Entries),
            Op::Bind { dn, password } => self.bind_on(conn, dn, password).await.map(Answer::Bound),
        }
    }

    /// Search as the service account.
    async fn search(
        &self,
        base: &str,
        scope: Scope,
        filter: &str,
        attrs: &[&str],
    ) -> Result<Vec<SearchEntry>, AuthError> {
        let op = Op::Search {
            base,
            scope,
            filter,
            attrs,
        };
        match self.run(op).await? {
            Answer::Entries(entries) => Ok(entries),
            Answer::Bound(_) => Err(AuthError::Unavailable("ldap: unexpected answer".into())),
        }
    }

    async fn search_on(
        &self,
        conn: &mut Conn,
        base: &str,
        scope: Scope,
        filter: &str,
        attrs: &[&str],
    ) -> Result<Vec<SearchEntry>, Failure> {
        // Two entries are enough to tell "ambiguous"; a filter mistake must not pull in
        // the whole directory.
        let result = conn
            .ldap
            .with_timeout(self.pool.timeout())
            .with_search_options(SearchOptions::new().sizelimit(2))
            .search(base, scope, filter, attrs.to_vec())
            .await
            .map_err(Failure::from)?;
        let (entries, res) = (result.0, result.1);
        // 4 = sizeLimitExceeded: more than two matches, reported as ambiguous below.
        if res.rc != 0 && res.rc != 4 {
            return Err(Failure::Server(format!(
                "search {filter:?} failed: rc={} {}",
                res.rc, res.text
            )));
        }
        entries
            .into_iter()
            .map(|e| {
                // `construct` panics on malformed BER from the server; a bad answer must
                // be an error, not a crashed task.
                std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| SearchEntry::construct(e)))
                    .map_err(|_| Failure::Server("malformed search entry".to_string()))
            })
            .collect()
    }

    /// Whether `password` is right for `dn`, by binding as it.
    async fn bind_user(&self, dn: &str, password: &str) -> Result<bool, AuthError> {
        match self.run(Op::Bind { dn, password }).await? {
            Answer::Bound(ok) => Ok(ok),
            Answer::Entries(_) => Err(AuthError::Unavailable("ldap: unexpected answer".into())),
        }
    }

    async fn bind_on(&self, conn: &mut Conn, dn: &str, password: &str) -> Result<bool, Failure> {
        Pool::mark_user_bound(conn);
        let res = conn
            .ldap
            .with_timeout(self.pool.timeout())
            .simple_bind(dn, password)
            .await
            .map_err(Failure::from)?;
        match res.rc {
            0 => Ok(true),
            // invalidCredentials, inappropriateAuthentication, insufficientAccessRights,
            // unwillingToPerform (locked by password policy), constraintViolation
            // (expired): the directory says no.
            49 | 48 | 50 | 53 | 19 => {
                tracing::debug!(%dn, rc = res.rc, text = %res.text, "ldap bind refused");
                Ok(false)
            }
            // busy, unavailable, other: the directory cannot say.
            rc => Err(Failure::Server(format!(
                "bind failed: rc={rc} {}",
                res.text
            ))),
        }
    }

    /// The one entry `user_filter` finds for `name`; `None` for none or several
    /// (ambiguous logins must not pick one).
    async fn find_user(&self, name: &str) -> Result<Option<Found>, AuthError> {
        let key = name.to_ascii_lowercase();
        if let Some(found) = self.users.get(&key) {
            return Ok(Some(found));
        }
        let filter = expand_filter(&self.config.user_filter, name);
        let Some(found) = self.search_user(&filter).await? else {
            return Ok(None);
        };
        self.users.insert(key, found.clone());
        Ok(Some(found))
    }

    /// The one user entry `filter` finds below `base_dn`.
    async fn search_user(&self, filter: &str) -> Result<Option<Found>, AuthError> {
        let attr = self.config.user_attr.as_str();
        let entries = self
            .search(&self.config.base_dn, Scope::Subtree, filter, &[attr])
            .await?;
        Ok(self.one_user(entries, filter))
    }

    fn one_user(&self, entries: Vec<SearchEntry>, filter: &str) -> Option<Found> {
        if entries.len() > 1 {
            tracing::warn!(%filter, "ldap filter matches several entries; refused as ambiguous");
            return None;
        }
        let entry = entries.into_iter().next()?;
        let Some(value) = attr(&entry, &self.config.user_attr) else {
            tracing::warn!(dn = %entry.dn, attr = %self.config.user_attr, "ldap entry has no user attribute");
            return None;
        };
        let user = value.to_ascii_lowercase();
        if let Err(e) = hamail_storage::spool::validate_user(&user) {
            tracing::warn!(dn = %entry.dn, %user, error = %e, "ldap user is not a valid spool user name");
            return None;
        }
        Some(Found { dn: entry.dn, user })
    }

    /// `compare_hashes`: read `userPassword` and verify it here.
    async fn compare_hash(&self, dn: &str, password: &str) -> Result<bool, AuthError> {
        let entries = self
            .search(dn, Scope::Base, "(objectClass=*)", &["userPassword"])
            .await?;
        let hashes: Vec<String> = entries
            .first()
            .and_then(|e| attr_values(e, "userPassword"))
            .cloned()
            .unwrap_or_default();
        let password = password.to_string();
        Ok(crate::blocking::run(move || {
            hashes.iter().any(|h| {
                Credential::parse(h)
                    .map(|c| c.verify(&password))
                    .unwrap_or(false)
            })
        })
        .await?)
    }
}

/// The two things done on a connection.
enum Op<'a> {
    Search {
        base: &'a str,
        scope: Scope,
        filter: &'a str,
        attrs: &'a [&'a str],
    },
    Bind {
        dn: &'a str,
        password: &'a str,
    },
}

enum Answer {
    Entries(Vec<SearchEntry>),
    Bound(bool),
}

/// A failed operation: connection-level (worth one retry on a new connection) or an
/// answer from the server that retrying will not change.
enum Failure {
    Connection(LdapError),
    Server(String),
}

impl From<LdapError> for Failure {
    fn from(e: LdapError) -> Self {
        Failure::Connection(e)
    }
}

impl Failure {
    fn into_auth(self, what: &str) -> AuthError {
        match self {
            Failure::Connection(e) => unavailable(what, &e),
            Failure::Server(s) => AuthError::Unavailable(format!("ldap: {what}: {s}")),
        }
    }
}

#[async_trait]
impl Authenticator for LdapAuthenticator {
    async fn verify(&self, login: &str, password: &str) -> Result<Option<String>, AuthError> {
        if !acceptable_name(login) || password.is_empty() || password.len() > MAX_PASSWORD {
            return Ok(None);
        }
        let key = login.to_ascii_lowercase();
        if let Some(user) = self.passwords.get(&key, password) {
            return Ok(Some(user));
        }
        let Some(found) = self.find_user(login).await? else {
            return Ok(None);
        };
        let ok = if self.config.compare_hashes {
            self.compare_hash(&found.dn, password).await?
        } else {
            self.bind_user(&found.dn, password).await?
        };
        if ok {
            self.passwords.insert(&key, password, &found.user);
            Ok(Some(found.user))
        } else {
            self.passwords.remove(&key);
            Ok(None)
        }
    }

    async fn user_exists(&self, user: &str) -> Result<bool, AuthError> {
        if !acceptable_name(user) {
            return Ok(false);
        }
        let found = self.find_user(user).await?;
        Ok(found.is_some_and(|f| f.user.eq_ignore_ascii_case(user)))
    }

    async fn find_address(&self, address: &str) -> Result<Option<String>, AuthError> {
        if !acceptable_name(address) || self.config.mail_attrs.is_empty() {
            return Ok(None);
        }
        let key = address.to_ascii_lowercase();
        if let Some(user) = self.addresses.get(&key) {
            return Ok(Some(user));
        }
        let value = ldap_escape(address);
        let terms: String = self
            .config
            .mail_attrs
            .iter()
            .map(|a| format!("({a}={value})"))
            .collect();
        let filter = format!("(|{terms})");
        let Some(found) = self.search_user(&filter).await? else {
            return Ok(None);
        };
        self.addresses.insert(key, found.user.clone());
        Ok(Some(found.user))
    }

    async fn check(&self) -> Result<(), AuthError> {
        self.search(
            &self.config.base_dn,
            Scope::Base,
            "(objectClass=*)",
            &["1.1"],
        )
        .await
        .map(|_| ())
    }

    fn name(&self) -> &'static str {
        "ldap"
    }
}

/// Whether a client-supplied name may be looked up at all: not empty, not huge, no
/// control characters (NUL would end a C string in the server or a log line).
fn acceptable_name(name: &str) -> bool {
    !name.is_empty() && name.len() <= MAX_NAME && !name.chars().any(char::is_control)
}

/// `template` with `%u` (the login), `%n` (its local part), `%d` (its domain) and `%%`
/// replaced, every value escaped per RFC 4515.
pub fn expand_filter(template: &str, login: &str) -> String {
    let (local, domain) = login.rsplit_once('@').unwrap_or((login, ""));
    let mut out = String::with_capacity(template.len() + 2 * login.len());
    let mut chars = template.chars();
    while let Some(c) = chars.next() {
        if c != '%' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('u') => out.push_str(&ldap_escape(login)),
            Some('n') => out.push_str(&ldap_escape(local)),
            Some('d') => out.push_str(&ldap_escape(domain)),
            Some('%') => out.push('%'),
            Some(other) => {
                out.push('%');
                out.push(other);
            }
            None => out.push('%'),
        }
    }
    out
}

/// The values of attribute `name` (attribute names are case-insensitive).
fn attr_values<'e>(entry: &'e SearchEntry, name: &str) -> Option<&'e Vec<String>> {
    entry
        .attrs
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(name))
        .map(|(_, v)| v)
}

fn attr<'e>(entry: &'e SearchEntry, name: &str) -> Option<&'e str> {
    attr_values(entry, name)?.first().map(String::as_str)
}

/// TLS client settings trusting only the CAs in `ca` (a private directory CA).
fn client_config(ca: &std::path::Path) -> Result<rustls::ClientConfig, AuthSetupError> {
    use rustls::pki_types::pem::PemObject as _;
    use rustls::pki_types::CertificateDer;
    let err = |e: String| AuthSetupError::File(format!("auth.ldap.ca_file {}: {e}", ca.display()));
    let mut roots = rustls::RootCertStore::empty();
    let certs = CertificateDer::pem_file_iter(ca)
        .map_err(|e| err(e.to_string()))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| err(e.to_string()))?;
    if certs.is_empty() {
        return Err(err("no certificates".to_string()));
    }
    for cert in certs {
        roots.add(cert).map_err(|e| err(e.to_string()))?;
    }
    rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .map_err(|e| err(e.to_string()))
        .map(|b| b.with_root_certificates(roots).with_no_client_auth())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filters_escape_every_value() {
        let t = "(&(objectClass=posixAccount)(|(uid=%u)(mail=%u)))";
        assert_eq!(
            expand_filter(t, "alice"),
            "(&(objectClass=posixAccount)(|(uid=alice)(mail=alice)))"
        );
        assert_eq!(
            expand_filter(t, "*"),
            "(&(objectClass=posixAccount)(|(uid=\\2a)(mail=\\2a)))"
        );
        assert_eq!(
            expand_filter("(uid=%u)", ")(uid=*"),
            "(uid=\\29\\28uid=\\2a)"
        );
        assert_eq!(expand_filter("(uid=%u)", "a\\b"), "(uid=a\\5cb)");
        assert_eq!(
            expand_filter("(&(uid=%n)(dc=%d)(x=%%)(y=%q))", "bob@Ex.test"),
            "(&(uid=bob)(dc=Ex.test)(x=%)(y=%q))"
        );
    }

    #[test]
    fn names_with_control_characters_or_huge_are_refused() {
        assert!(acceptable_name("alice@example.test"));
        assert!(!acceptable_name(""));
        assert!(!acceptable_name("a\0b"));
        assert!(!acceptable_name("a\r\nb"));
        assert!(!acceptable_name(&"a".repeat(MAX_NAME + 1)));
    }
}
