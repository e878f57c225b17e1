//! The `nis` backend: accounts from a NIS (YP) `passwd.byname` map and aliases from
//! `mail.aliases`, asked over ONC RPC/UDP straight from the configured servers (no
//! ypbind, no NSS), with password hashes verified locally.
//!
//! Only the map lookups live here; the wire format is in [`xdr`] and server selection,
//! resends and the portmapper in [`client`]. Any answer that says "the directory is
//! broken right now" (no server, domain not served, passwd map missing, database error)
//! is [`AuthError::Unavailable`], so clients get a temporary failure, never "wrong
//! password" or "no such user". Shadow and adjunct maps (`passwd.adjunct.byname`,
//! `shadow.byname`) are not read: ypserv only serves them to privileged source ports,
//! which an unprivileged agent does not have, so accounts whose hash lives there
//! (`x`, `##name`) cannot log in.

pub mod client;
pub mod xdr;

use std::collections::HashSet;
use std::sync::Mutex;
use std::time::Duration;

use async_trait::async_trait;
use hamail_storage::cluster::NisConfig;

use super::aliases::{parse_str, AliasTarget};
use super::passwd_file::{login_user, Credential};
use super::{AuthError, Authenticator};
use client::YpClient;
use xdr::YpStat;

/// How many users' "cannot log in" warnings are remembered, so a flood of logins for
/// distinct disabled accounts cannot grow memory without bound.
const MAX_WARNED: usize = 10_000;

#[derive(Debug)]
pub struct NisAuthenticator {
    config: NisConfig,
    domains: Vec<String>,
    client: YpClient,
    /// Users already warned about (their entry cannot log in).
    warned: Mutex<HashSet<String>>,
}

/// The answer to a map lookup that is not a failure.
#[derive(Debug, PartialEq, Eq)]
enum Lookup {
    Found(Vec<u8>),
    NoKey,
    NoMap,
}

impl NisAuthenticator {
    pub fn new(config: NisConfig, local_domains: Vec<String>) -> Self {
        let client = YpClient::new(
            config.domain.clone(),
            config.servers.clone(),
            Duration::from_millis(config.timeout_ms),
            config.attempts,
        );
        NisAuthenticator {
            config,
            domains: local_domains,
            client,
            warned: Mutex::new(HashSet::new()),
        }
    }

    /// Look `key` up in `map`. Some makedbm maps store keys with their C string NUL,
    /// so a missing key is tried once more with one.
    async fn lookup(&self, map: &str, key: &str) -> Result<Lookup, AuthError> {
        let first = self.client.ypmatch(map, key.as_bytes()).await?;
        let r = match first.stat {
            YpStat::NoKey => {
                let mut k = key.as_bytes().to_vec();
                k.push(0);
                self.client.ypmatch(map, &k).await?
            }
            _ => first,
        };
        match r.stat {
            YpStat::True => {
                let mut v = r.val;
                // Values stored C-style end in NUL.
                while v.last() == Some(&0) {
                    v.pop();
                }
                Ok(Lookup::Found(v))
            }
            YpStat::NoKey => Ok(Lookup::NoKey),
            YpStat::NoMap => Ok(Lookup::NoMap),
            other => Err(AuthError::Unavailable(format!(
                "nis: lookup in map {map:?} failed: {}",
                describe(other)
            ))),
        }
    }

    /// The passwd entry of `user`, or `None` if there is none.
    async fn passwd_entry(&self, user: &str) -> Result<Option<Vec<u8>>, AuthError> {
        let map = &self.config.passwd_map;
        match self.lookup(map, user).await? {
            Lookup::Found(v) => Ok(Some(v)),
            Lookup::NoKey => Ok(None),
            // Without the passwd map no login can be checked: a broken server, not a
            // wrong password.
            Lookup::NoMap => Err(AuthError::Unavailable(format!(
                "nis: map {map:?} not found in domain {:?}",
                self.config.domain
            ))),
        }
    }

    /// Log once per user why their entry cannot log in.
    fn warn_once(&self, user: &str, why: &str) {
        let mut w = self.warned.lock().unwrap_or_else(|p| p.into_inner());
        if w.len() >= MAX_WARNED {
            w.clear();
        }
        if w.insert(user.to_string()) {
            tracing::warn!(user, map = %self.config.passwd_map, "nis account cannot log in: {why}");
        }
    }
}

/// The password hash of a `name:hash:uid:gid:gecos:home:shell` entry for `user`, or why
/// it cannot be used.
fn entry_credential(user: &str, entry: &[u8]) -> Result<Credential, String> {
    let entry = std::str::from_utf8(entry).map_err(|_| "entry is not UTF-8".to_string())?;
    let mut fields = entry.split(':');
    let name = fields.next().unwrap_or_default();
    if name != user {
        // The server answered for another key: never use someone else's hash.
        return Err(format!("entry is for {name:?}"));
    }
    let hash = fields
        .next()
        .ok_or_else(|| "entry has no password field".to_string())?;
    if hash == "x" || hash.starts_with("##") {
        return Err("password is in a shadow or adjunct map, which is not supported".into());
    }
    if hash.is_empty() || hash.starts_with('*') || hash.starts_with('!') {
        return Err("account is locked or has no password".into());
    }
    match Credential::parse(hash)? {
        Credential::Disabled => Err("account has no usable password".into()),
        c => Ok(c),
    }
}

fn describe(stat: YpStat) -> &'static str {
    match stat {
        YpStat::True => "success",
        YpStat::NoMore => "no more records",
        YpStat::False => "false",
        YpStat::NoMap => "no such map",
        YpStat::NoDom => "domain not served",
        YpStat::NoKey => "no such key",
        YpStat::BadOp => "bad operation",
        YpStat::BadDb => "server database is bad",
        YpStat::YpErr => "server error",
        YpStat::BadArgs => "bad arguments",
        YpStat::Vers => "version mismatch",
    }
}

#[async_trait]
impl Authenticator for NisAuthenticator {
    async fn verify(&self, login: &str, password: &str) -> Result<Option<String>, AuthError> {
        if password.is_empty() {
            return Ok(None);
        }
        // Anything that is not a valid user name never reaches the server (no wildcards
        // or odd bytes in keys). No dummy hash for unknown users, unlike the file
        // backend: NIS passwd maps are readable by anyone who can ask, so timing hides
        // nothing.
        let Some(user) = login_user(login, &self.domains) else {
            return Ok(None);
        };
        let Some(entry) = self.passwd_entry(&user).await? else {
            return Ok(None);
        };
        let cred = match entry_credential(&user, &entry) {
            Ok(c) => c,
            Err(why) => {
                self.warn_once(&user, &why);
                return Ok(None);
            }
        };
        let password = password.to_string();
        // The crypt schemes are thousands of hash rounds: keep them off the runtime.
        let ok = crate::blocking::run(move || cred.verify(&password)).await?;
        Ok(ok.then_some(user))
    }

    async fn user_exists(&self, user: &str) -> Result<bool, AuthError> {
        let user = user.to_ascii_lowercase();
        if hamail_storage::spool::validate_user(&user).is_err() {
            return Ok(false);
        }
        Ok(self.passwd_entry(&user).await?.is_some())
    }

    async fn alias(&self, name: &str) -> Result<Option<Vec<AliasTarget>>, AuthError> {
        // Keys are names, not arbitrary bytes: no control characters, no ':' (which
        // would change the meaning of the line parsed below), within the YP limits.
        if name.is_empty()
            || name.len() >= xdr::YPMAXRECORD
            || name.contains(|c: char| c.is_control() || c.is_whitespace() || c == ':')
        {
            return Ok(None);
        }
        let value = match self.lookup(&self.config.aliases_map, name).await? {
            Lookup::Found(v) => v,
            // No aliases map is a normal setup.
            Lookup::NoKey | Lookup::NoMap => return Ok(None),
        };
        let value = String::from_utf8_lossy(&value);
        // One logical line: a value with newlines would otherwise start new entries.
        let value = value.replace(['\r', '\n'], " ");
        let parsed = parse_str(&format!("{name}: {value}"));
        for w in &parsed.warnings {
            tracing::warn!(alias = name, map = %self.config.aliases_map, "{w}");
        }
        Ok(parsed.table.get(name).map(<[AliasTarget]>::to_vec))
    }

    async fn check(&self) -> Result<(), AuthError> {
        self.client.check_domain().await
    }

    fn name(&self) -> &'static str {
        "nis"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries() {
        let ok = |e: &str| entry_credential("alice", e.as_bytes());
        assert!(matches!(
            ok("alice:$1$saltsalt$NuzA7WTAelpl95xgBGWN60:1:1::/:/bin/sh"),
            Ok(Credential::Md5Crypt { .. })
        ));
        assert!(matches!(
            ok("alice:$5$pepperpepper$PR97XiJMdnjg9En8yK7oNviGRr5/KOL/.iIEDRld6b/"),
            Ok(Credential::Sha256Crypt(_))
        ));
        for bad in [
            "alice:x:1:1::/:/bin/sh",
            "alice:##alice:1:1::/:/bin/sh",
            "alice:*:1:1",
            "alice:!$1$saltsalt$NuzA7WTAelpl95xgBGWN60:1:1",
            "alice::1:1",
            "alice",
            "bob:$1$saltsalt$NuzA7WTAelpl95xgBGWN60:1:1",
            "Alice:$1$saltsalt$NuzA7WTAelpl95xgBGWN60:1:1",
            "alice:$1$short$x:1:1",
        ] {
            assert!(ok(bad).is_err(), "{bad}");
        }
        assert!(entry_credential("alice", b"alice:\xff:1").is_err());
    }

    fn config() -> NisConfig {
        NisConfig {
            domain: "dom".into(),
            servers: vec![],
            timeout_ms: 10,
            attempts: 1,
            passwd_map: "passwd.byname".into(),
            aliases_map: "mail.aliases".into(),
        }
    }

    #[tokio::test]
    async fn invalid_logins_never_ask() {
        // No servers: any query would be Unavailable, so Ok(None) proves none was made.
        let a = NisAuthenticator::new(config(), vec!["example.test".into()]);
        for login in ["*", ")(uid=*", "a\0b", "../etc", "x@foreign.test", ""] {
            assert_eq!(a.verify(login, "pw").await.unwrap(), None, "{login:?}");
        }
        assert_eq!(a.verify(&"a".repeat(2000), "pw").await.unwrap(), None);
        assert_eq!(a.verify("alice", "").await.unwrap(), None);
        assert!(!a.user_exists("../x").await.unwrap());
        assert_eq!(a.alias("a b").await.unwrap(), None);
        assert_eq!(a.alias("a:b").await.unwrap(), None);
        assert!(matches!(
            a.verify("alice", "pw").await,
            Err(AuthError::Unavailable(_))
        ));
        assert!(a.check().await.is_err());
        assert_eq!(a.name(), "nis");
    }

    const MD5: &str = "$1$saltsalt$NuzA7WTAelpl95xgBGWN60"; // "correct horse"

    #[tokio::test]
    async fn lookups_against_a_fake_server() {
        let entry = |name: &str, hash: &str| format!("{name}:{hash}:1:1::/home/{name}:/bin/sh");
        let mut table = client::fake::Table::new();
        let mut put = |map: &str, key: &[u8], stat: i32, val: String| {
            table.insert((map.to_string(), key.to_vec()), (stat, val.into_bytes()));
        };
        let pw = "passwd.byname";
        // A C-style value, a C-style key, an entry for someone else, a shadowed one.
        put(pw, b"alice", 1, entry("alice", MD5) + "\0");
        put(pw, b"bob\0", 1, entry("bob", MD5));
        put(pw, b"mallory", 1, entry("alice", MD5));
        put(pw, b"shadow", 1, entry("shadow", "x"));
        put(pw, b"broken", -5, String::new());
        put(pw, b"gone", -1, String::new());
        put(pw, b"otherdom", -2, String::new());
        put("mail.aliases", b"staff\0", 1, "alice, \\bob\0".into());
        put("mail.aliases", b"nomap", -1, String::new());
        put("mail.aliases", b"baddb", -5, String::new());
        let (addr, _) = client::fake::server("127.0.0.1", 1, table).await;
        let mut a = NisAuthenticator::new(
            NisConfig {
                servers: vec![addr.ip()],
                timeout_ms: 300,
                ..config()
            },
            vec!["example.test".into()],
        );
        a.client.pmap_port = addr.port();

        let ok = Some("alice".to_string());
        assert_eq!(a.verify("alice", "correct horse").await.unwrap(), ok);
        assert_eq!(
            a.verify("ALICE@example.test", "correct horse")
                .await
                .unwrap(),
            ok
        );
        assert_eq!(a.verify("alice", "correct horsE").await.unwrap(), None);
        assert_eq!(
            a.verify("bob", "correct horse").await.unwrap(),
            Some("bob".into())
        );
        assert_eq!(a.verify("mallory", "correct horse").await.unwrap(), None);
        assert_eq!(a.verify("shadow", "x").await.unwrap(), None);
        assert_eq!(a.verify("nobody", "correct horse").await.unwrap(), None);
        for broken in ["broken", "gone", "otherdom"] {
            let err = a.verify(broken, "pw").await.unwrap_err().to_string();
            assert!(err.contains("nis"), "{err}");
            assert!(a.user_exists(broken).await.is_err(), "{broken}");
        }
        assert!(a.user_exists("alice").await.unwrap());
        assert!(a.user_exists("bob").await.unwrap());
        assert!(!a.user_exists("nobody").await.unwrap());

        assert_eq!(
            a.alias("staff").await.unwrap(),
            Some(vec![
                AliasTarget::Local("alice".into()),
                AliasTarget::Mailbox("bob".into())
            ])
        );
        assert_eq!(a.alias("nobody").await.unwrap(), None);
        assert_eq!(a.alias("nomap").await.unwrap(), None);
        assert!(a.alias("baddb").await.is_err());
        a.check().await.unwrap();
    }
}
