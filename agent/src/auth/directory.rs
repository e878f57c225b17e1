//! [`Directory`]: what the protocol servers ask about accounts. It puts aliases,
//! subaddressing and the postmaster rule on top of an [`Authenticator`] backend, and
//! turns a recipient's local part into spool users and remote addresses.

use std::collections::HashMap;
use std::sync::Arc;

use super::aliases::{AliasFile, AliasTable, AliasTarget};
use super::{is_local_domain, AuthError, Authenticator};

/// Alias expansion stops this deep (sendmail uses a similar bound), so a long chain
/// cannot make one RCPT expensive.
const MAX_DEPTH: usize = 10;

/// At most this many names are looked at per resolution. Names are expanded once each
/// (see `Resolver::done`), but not inside branches cut by the depth limit, where fan-out
/// could still multiply; this bounds the work whatever the alias graph.
const MAX_EXPANSIONS: usize = 1000;

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
        self.resolve_in(local_part, "").await
    }

    /// [`Directory::resolve`] for `local_part@domain` (`domain` one of ours; empty means
    /// the primary domain): the domain matters to backends that map whole addresses to accounts (LDAP `mail`).
    ///
    /// After the aliases file and backend users, a name is looked up as an address
    /// (`name@domain`); `+detail` and `postmaster` come last.
    pub async fn resolve_in(
        &self,
        local_part: &str,
        domain: &str,
    ) -> Result<Option<Targets>, AuthError> {
        let aliases = match &self.aliases {
            Some(a) => Some(a.current().await?),
            None => None,
        };
        let mut r = Resolver {
            dir: self,
            aliases: aliases.as_deref(),
            stack: Vec::new(),
            done: HashMap::new(),
            depth_cuts: 0,
            expansions: 0,
            out: Targets::default(),
        };
        let name = local_part.to_ascii_lowercase();
        let domain = match domain.trim_end_matches('.') {
            "" => self.domains.first().cloned().unwrap_or_default(),
            d => d.to_ascii_lowercase(),
        };
        if !r.name(&name, &domain).await? {
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
    /// Names already resolved, and whether they were known. Their targets are in `out`
    /// already, so a name reached again (alias graphs are often diamonds) is not expanded
    /// again: without this, a few levels of fan-out would cost exponentially many lookups.
    done: HashMap<String, bool>,
    /// How many branches the depth or work limit cut so far.
    depth_cuts: usize,
    /// Names looked at so far, for `MAX_EXPANSIONS`.
    expansions: usize,
    out: Targets,
}

impl Resolver<'_> {
    /// Resolve `name` (lower-case) into `self.out`; `false` if it is unknown. Boxed:
    /// the recursion goes through aliases.
    /// `domain` is the (lower-case, local) domain `name` was written with, for the
    /// address lookup.
    fn name<'s>(
        &'s mut self,
        name: &'s str,
        domain: &'s str,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = Result<bool, AuthError>> + Send + 's>>
    {
        Box::pin(async move {
            let key = format!("{name}@{domain}");
            if let Some(known) = self.done.get(&key) {
                return Ok(*known);
            }
            let cuts = self.depth_cuts;
            let known = self.expand(name, domain).await?;
            // An expansion cut by the depth limit is not final: reached again on a
            // shorter path it may expand further. (Loop cuts are final: the name cut off
            // is an ancestor, being expanded anyway.)
            if self.depth_cuts == cuts && !self.stack.iter().any(|n| n == name) {
                self.done.insert(key, known);
            }
            Ok(known)
        })
    }

    /// One name, uncached.
    async fn expand(&mut self, name: &str, domain: &str) -> Result<bool, AuthError> {
        if self.stack.iter().any(|n| n == name) {
            tracing::warn!(
                alias = %name,
                chain = %self.stack.join(" -> "),
                "alias loop, branch dropped"
            );
            return Ok(true);
        }
        if self.expansions >= MAX_EXPANSIONS {
            self.depth_cuts += 1;
            if self.expansions == MAX_EXPANSIONS {
                self.expansions += 1;
                tracing::warn!(
                    alias = %name,
                    "alias expansion looked at {MAX_EXPANSIONS} names, rest dropped"
                );
            }
            return Ok(true);
        }
        self.expansions += 1;
        if self.stack.len() >= MAX_DEPTH {
            self.depth_cuts += 1;
            tracing::warn!(
                alias = %name,
                chain = %self.stack.join(" -> "),
                "aliases nested deeper than {MAX_DEPTH}, branch dropped"
            );
            return Ok(true);
        }
        let file_alias = self.aliases.and_then(|a| a.get(name));
        let backend_alias = match file_alias {
            Some(_) => None,
            None => self.dir.backend.alias(name).await?,
        };
        if let Some(targets) = file_alias.or(backend_alias.as_deref()) {
            self.stack.push(name.to_string());
            for t in targets {
                self.target(t, domain).await?;
            }
            self.stack.pop();
            return Ok(true);
        }
        let valid = hamail_storage::spool::validate_user(name).is_ok();
        if valid && self.dir.backend.user_exists(name).await? {
            self.add_user(name);
            return Ok(true);
        }
        if let Some(user) = self
            .dir
            .backend
            .find_address(&format!("{name}@{domain}"))
            .await?
        {
            self.add_user(&user);
            return Ok(true);
        }
        if let Some((base, _detail)) = name.split_once('+') {
            if !base.is_empty() && self.name(base, domain).await? {
                return Ok(true);
            }
        }
        if name == "postmaster" {
            self.add_user(name);
            return Ok(true);
        }
        Ok(false)
    }

    async fn target(&mut self, t: &AliasTarget, domain: &str) -> Result<(), AuthError> {
        let alias = self.stack.last().cloned().unwrap_or_default();
        match t {
            AliasTarget::Local(n) => self.local_target(&alias, n, domain).await?,
            AliasTarget::Mailbox(n) => {
                if hamail_storage::spool::validate_user(n).is_ok() {
                    self.add_user(n);
                } else {
                    tracing::warn!(%alias, target = %n, "alias target is not a valid user name, skipped");
                }
            }
            AliasTarget::Address(a) => match a.rsplit_once('@') {
                Some((local, d)) if is_local_domain(&self.dir.domains, d) => {
                    let d = d.trim_end_matches('.').to_ascii_lowercase();
                    self.local_target(&alias, &local.to_ascii_lowercase(), &d)
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

    async fn local_target(
        &mut self,
        alias: &str,
        name: &str,
        domain: &str,
    ) -> Result<(), AuthError> {
        if !self.name(name, domain).await? {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::FileAuthenticator;
    use std::path::Path;
    use std::time::Duration;

    fn domains() -> Vec<String> {
        vec!["example.test".to_string(), "other.test".to_string()]
    }

    const USERS: &str =
        "alice:{PLAIN}a\nbob:{PLAIN}b\ncarol:{PLAIN}c\nbob+x:{PLAIN}bx\nstaff:{PLAIN}s\n";

    fn dir_with(tmp: &Path, users: &str, aliases: Option<&str>) -> Directory {
        let passwd = tmp.join("passwd");
        std::fs::write(&passwd, users).unwrap();
        let backend = FileAuthenticator::with_recheck(passwd, domains(), Duration::ZERO);
        let aliases = aliases.map(|text| {
            let path = tmp.join("aliases");
            std::fs::write(&path, text).unwrap();
            AliasFile::with_recheck(path, Duration::ZERO)
        });
        Directory::new(Arc::new(backend), aliases, domains())
    }

    fn targets(users: &[&str], remote: &[&str]) -> Option<Targets> {
        Some(Targets {
            users: users.iter().map(|s| s.to_string()).collect(),
            remote: remote.iter().map(|s| s.to_string()).collect(),
        })
    }

    #[tokio::test]
    async fn users_and_unknown_names() {
        let tmp = tempfile::tempdir().unwrap();
        let d = dir_with(tmp.path(), USERS, None);
        assert_eq!(d.resolve("alice").await.unwrap(), targets(&["alice"], &[]));
        assert_eq!(d.resolve("ALICE").await.unwrap(), targets(&["alice"], &[]));
        assert_eq!(d.resolve("nobody").await.unwrap(), None);
        assert_eq!(d.resolve("../etc").await.unwrap(), None);
        assert_eq!(d.resolve("").await.unwrap(), None);
        assert_eq!(
            d.verify("alice@example.test", "a").await.unwrap(),
            Some("alice".into())
        );
        assert_eq!(d.backend().name(), "file");
        d.check().await.unwrap();
    }

    #[tokio::test]
    async fn aliases_expand_recursively_deduplicated_in_order() {
        let tmp = tempfile::tempdir().unwrap();
        let d = dir_with(
            tmp.path(),
            USERS,
            Some(
                "team: alice, devs, Carol@Example.Test, friend@example.org\n\
                 devs: bob, alice, friend@example.org, dana@other.test\n\
                 dana: \\carol\n\
                 staff: bob\n",
            ),
        );
        assert_eq!(
            d.resolve("Team").await.unwrap(),
            targets(&["alice", "bob", "carol"], &["friend@example.org"])
        );
        // An alias wins over the user of the same name.
        assert_eq!(d.resolve("staff").await.unwrap(), targets(&["bob"], &[]));
    }

    #[tokio::test]
    async fn loops_and_depth_are_bounded() {
        let tmp = tempfile::tempdir().unwrap();
        let mut chain = String::new();
        for i in 0..11 {
            chain.push_str(&format!("deep{i}: deep{}\n", i + 1));
        }
        chain.push_str("deep11: alice\n");
        let d = dir_with(
            tmp.path(),
            USERS,
            Some(&format!(
                "a: b, carol\nb: a, alice@example.test\nself: self\nshallow: deep5\n{chain}"
            )),
        );
        assert_eq!(
            d.resolve("a").await.unwrap(),
            // Depth first: a -> b -> (a: loop, dropped), alice; then carol.
            targets(&["alice", "carol"], &[])
        );
        assert_eq!(d.resolve("self").await.unwrap(), None);
        // deep0 .. deep11 is 12 levels: cut; deep5 .. deep11 is 7: fine.
        assert_eq!(d.resolve("deep0").await.unwrap(), None);
        assert_eq!(
            d.resolve("shallow").await.unwrap(),
            targets(&["alice"], &[])
        );
    }

    #[tokio::test]
    async fn diamonds_are_expanded_once() {
        // Each level names the next one 6 times over: 6^9 paths, resolved in linear
        // time, and the part cut by the depth limit by the work limit.
        let tmp = tempfile::tempdir().unwrap();
        let mut text = String::new();
        for i in 0..9 {
            let n = i + 1;
            text.push_str(&format!("d{i}: a{i}, b{i}, c{i}, e{i}, f{i}, g{i}\n"));
            for v in ["a", "b", "c", "e", "f", "g"] {
                text.push_str(&format!("{v}{i}: d{n}\n"));
            }
        }
        text.push_str("d9: alice, ext@example.org\n");
        let d = dir_with(tmp.path(), USERS, Some(&text));
        let t = tokio::time::timeout(Duration::from_secs(5), d.resolve("d0"))
            .await
            .expect("no exponential blow-up")
            .unwrap();
        // d0 .. d9 is 19 levels: cut by the depth limit.
        assert_eq!(t, None);
        assert_eq!(
            d.resolve("d5").await.unwrap(),
            targets(&["alice"], &["ext@example.org"])
        );
    }

    #[tokio::test]
    async fn a_depth_cut_is_not_remembered() {
        // `x` is first reached 9 levels deep (its expansion cut), then directly.
        let tmp = tempfile::tempdir().unwrap();
        let mut text = String::from("top: c1, x\nx: y\ny: bob\n");
        for i in 1..9 {
            text.push_str(&format!("c{i}: c{}\n", i + 1));
        }
        text.push_str("c9: x\n");
        let d = dir_with(tmp.path(), USERS, Some(&text));
        assert_eq!(d.resolve("top").await.unwrap(), targets(&["bob"], &[]));
    }

    #[tokio::test]
    async fn subaddress_falls_back_to_the_base_name() {
        let tmp = tempfile::tempdir().unwrap();
        let d = dir_with(tmp.path(), USERS, Some("list: alice, bob\n"));
        assert_eq!(
            d.resolve("alice+news").await.unwrap(),
            targets(&["alice"], &[])
        );
        assert_eq!(
            d.resolve("list+anything").await.unwrap(),
            targets(&["alice", "bob"], &[])
        );
        // A user whose name has a '+' is itself.
        assert_eq!(d.resolve("bob+x").await.unwrap(), targets(&["bob+x"], &[]));
        assert_eq!(d.resolve("nobody+x").await.unwrap(), None);
        assert_eq!(d.resolve("+x").await.unwrap(), None);
    }

    #[tokio::test]
    async fn postmaster_always_resolves() {
        let tmp = tempfile::tempdir().unwrap();
        let d = dir_with(tmp.path(), USERS, None);
        assert_eq!(
            d.resolve("PostMaster").await.unwrap(),
            targets(&["postmaster"], &[])
        );
        assert_eq!(
            d.resolve("postmaster+dmarc").await.unwrap(),
            targets(&["postmaster"], &[])
        );
        let tmp = tempfile::tempdir().unwrap();
        let d = dir_with(
            tmp.path(),
            USERS,
            Some("postmaster: alice, ops@example.org\n"),
        );
        assert_eq!(
            d.resolve("postmaster").await.unwrap(),
            targets(&["alice"], &["ops@example.org"])
        );
        // As an alias target in a local domain it resolves the same way.
        let tmp = tempfile::tempdir().unwrap();
        let d = dir_with(tmp.path(), USERS, Some("abuse: postmaster@example.test\n"));
        assert_eq!(
            d.resolve("abuse").await.unwrap(),
            targets(&["postmaster"], &[])
        );
    }

    #[tokio::test]
    async fn invalid_or_unknown_targets_are_skipped() {
        let tmp = tempfile::tempdir().unwrap();
        let d = dir_with(
            tmp.path(),
            USERS,
            Some("x: \\..hidden, .dot, ghost, alice\nnone: \\-ok, \\a..b/c\nempty: |cmd\n"),
        );
        assert_eq!(d.resolve("x").await.unwrap(), targets(&["alice"], &[]));
        // `\name` delivers to that spool name without asking the backend.
        assert_eq!(d.resolve("none").await.unwrap(), targets(&["-ok"], &[]));
        assert_eq!(d.resolve("empty").await.unwrap(), None);
    }

    #[tokio::test]
    async fn includes_through_the_directory() {
        let tmp = tempfile::tempdir().unwrap();
        let list = tmp.path().join("team.list");
        std::fs::write(&list, "# team\nalice\nbob, carol@example.test\n").unwrap();
        let d = dir_with(
            tmp.path(),
            USERS,
            Some(&format!("team: :include:{}\n", list.display())),
        );
        assert_eq!(
            d.resolve("team").await.unwrap(),
            targets(&["alice", "bob", "carol"], &[])
        );
        std::fs::write(&list, "dave@example.org\n").unwrap();
        assert_eq!(
            d.resolve("team").await.unwrap(),
            targets(&[], &["dave@example.org"])
        );
    }

    #[tokio::test]
    async fn unavailable_sources_are_errors() {
        let tmp = tempfile::tempdir().unwrap();
        let d = dir_with(tmp.path(), USERS, Some("team: alice\n"));
        std::fs::remove_file(tmp.path().join("aliases")).unwrap();
        assert!(matches!(
            d.resolve("alice").await,
            Err(AuthError::Unavailable(_))
        ));
        assert!(d.check().await.is_err());

        let tmp = tempfile::tempdir().unwrap();
        let d = dir_with(tmp.path(), USERS, None);
        std::fs::remove_file(tmp.path().join("passwd")).unwrap();
        assert!(d.resolve("alice").await.is_err());
        // Even postmaster: the backend is asked first and cannot answer.
        assert!(d.resolve("postmaster").await.is_err());
        assert!(d.check().await.is_err());
    }

    /// A backend that knows addresses and aliases itself, as LDAP and NIS do.
    #[derive(Debug)]
    struct AddressBook;

    #[async_trait::async_trait]
    impl Authenticator for AddressBook {
        async fn verify(&self, _: &str, _: &str) -> Result<Option<String>, AuthError> {
            Ok(None)
        }
        async fn user_exists(&self, user: &str) -> Result<bool, AuthError> {
            Ok(["alice", "bob"].contains(&user))
        }
        async fn find_address(&self, address: &str) -> Result<Option<String>, AuthError> {
            Ok(match address {
                "a.smith@example.test" | "sales@other.test" => Some("alice".into()),
                "down@example.test" => return Err(AuthError::Unavailable("test".into())),
                _ => None,
            })
        }
        async fn alias(&self, name: &str) -> Result<Option<Vec<AliasTarget>>, AuthError> {
            Ok((name == "staff").then(|| {
                vec![
                    AliasTarget::Local("bob".into()),
                    AliasTarget::Address("a.smith@example.test".into()),
                ]
            }))
        }
        async fn check(&self) -> Result<(), AuthError> {
            Ok(())
        }
        fn name(&self) -> &'static str {
            "book"
        }
    }

    #[tokio::test]
    async fn backend_addresses_and_aliases_resolve_per_domain() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("aliases");
        std::fs::write(&path, "bob: carol@remote.test\n").unwrap();
        let file = AliasFile::with_recheck(path, Duration::ZERO);
        let d = Directory::new(Arc::new(AddressBook), Some(file), domains());
        // The address lookup uses the recipient's own domain.
        assert_eq!(
            d.resolve_in("A.Smith", "Example.Test").await.unwrap(),
            targets(&["alice"], &[])
        );
        assert_eq!(d.resolve_in("a.smith", "other.test").await.unwrap(), None);
        assert_eq!(
            d.resolve_in("sales", "other.test").await.unwrap(),
            targets(&["alice"], &[])
        );
        assert_eq!(
            d.resolve_in("sales+x", "other.test").await.unwrap(),
            targets(&["alice"], &[])
        );
        // Empty domain: the primary one.
        assert_eq!(
            d.resolve_in("a.smith", "").await.unwrap(),
            targets(&["alice"], &[])
        );
        // Backend aliases expand; the aliases file wins over backend users.
        assert_eq!(
            d.resolve("staff").await.unwrap(),
            targets(&[], &["carol@remote.test"]).map(|mut t| {
                t.users.push("alice".into());
                t
            })
        );
        assert!(d.resolve_in("down", "example.test").await.is_err());
    }
}
