//! The `file` backend: accounts in a Dovecot passwd-file
//! (`user:{SCHEME}hash:uid:gid:gecos:home:shell:extra`, only the first two fields
//! required), its parser, and password verification for the schemes we accept.
//!
//! User names are case-insensitive and canonically lower-case (they become spool file
//! names, and recipients are matched lower-cased). An entry whose password cannot be
//! checked (unknown scheme, malformed hash, empty field) stays a mail account but never
//! logs in.

use std::collections::HashMap;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use base64::Engine as _;
use sha1::{Digest as _, Sha1};

use super::reload::{Loaded, Reloading, DEFAULT_RECHECK};
use super::{is_local_domain, AuthError, Authenticator};

/// How a stored password is checked.
#[derive(Clone, PartialEq, Eq)]
pub enum Credential {
    /// `$6$...` (`{SHA512-CRYPT}`, `{CRYPT}` or bare).
    Sha512Crypt(String),
    /// `$5$...` (`{SHA256-CRYPT}`, `{CRYPT}` or bare).
    Sha256Crypt(String),
    /// `$y$...` (`{CRYPT}` or bare).
    Yescrypt(String),
    /// `$1$salt$hash` md5-crypt (`{MD5-CRYPT}`, `{CRYPT}` or bare): weak, but still what
    /// many NIS maps hold.
    Md5Crypt {
        salt: String,
        hash: [u8; MD5_CRYPT_HASH_LEN],
    },
    /// `{SSHA}`: SHA-1 of password ‖ salt, then the salt.
    Ssha { digest: [u8; 20], salt: Vec<u8> },
    /// `{SHA}`: unsalted SHA-1.
    Sha([u8; 20]),
    /// `{PLAIN}` / `{CLEARTEXT}`; for tests and labs.
    Plain(String),
    /// Anything else: the account receives mail but cannot log in.
    Disabled,
}

// Hashes stay out of logs.
impl std::fmt::Debug for Credential {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Credential::Sha512Crypt(_) => "Sha512Crypt(..)",
            Credential::Sha256Crypt(_) => "Sha256Crypt(..)",
            Credential::Yescrypt(_) => "Yescrypt(..)",
            Credential::Md5Crypt { .. } => "Md5Crypt(..)",
            Credential::Ssha { .. } => "Ssha(..)",
            Credential::Sha(_) => "Sha(..)",
            Credential::Plain(_) => "Plain(..)",
            Credential::Disabled => "Disabled",
        })
    }
}

impl Credential {
    /// Parse the password field. `Err` carries why the entry cannot log in (for the
    /// load-time warning).
    pub fn parse(field: &str) -> Result<Credential, String> {
        if field.is_empty() {
            return Ok(Credential::Disabled);
        }
        let (scheme, value) = match field.strip_prefix('{') {
            Some(rest) => match rest.split_once('}') {
                Some((s, v)) => (Some(s.to_ascii_uppercase()), v),
                None => return Err("unterminated {SCHEME}".to_string()),
            },
            None => (None, field),
        };
        match scheme.as_deref() {
            None | Some("CRYPT") => crypt(value),
            Some("SHA512-CRYPT") if value.starts_with("$6$") => crypt(value),
            Some("SHA256-CRYPT") if value.starts_with("$5$") => crypt(value),
            Some("MD5-CRYPT") if value.starts_with("$1$") => crypt(value),
            Some("SSHA") => {
                let raw = b64(value)?;
                match raw.split_first_chunk::<20>() {
                    Some((digest, salt)) if !salt.is_empty() => Ok(Credential::Ssha {
                        digest: *digest,
                        salt: salt.to_vec(),
                    }),
                    _ => Err("{SSHA} value too short".to_string()),
                }
            }
            Some("SHA") => {
                let raw = b64(value)?;
                <[u8; 20]>::try_from(raw.as_slice())
                    .map(Credential::Sha)
                    .map_err(|_| "{SHA} value is not 20 bytes".to_string())
            }
            Some("PLAIN" | "CLEARTEXT") => Ok(Credential::Plain(value.to_string())),
            Some(s) => Err(format!("unsupported scheme {{{s}}}")),
        }
    }

    /// Whether `password` matches. CPU-heavy for the crypt schemes (thousands of hash
    /// rounds by design): call from a blocking thread.
    /// An empty password never matches: a `{PLAIN}` entry left empty by mistake must
    /// not open the account to anyone.
    pub fn verify(&self, password: &str) -> bool {
        use sha_crypt::PasswordVerifier as _;
        if password.is_empty() {
            return false;
        }
        let pw = password.as_bytes();
        match self {
            Credential::Sha512Crypt(h) | Credential::Sha256Crypt(h) => {
                sha_crypt::ShaCrypt::default()
                    .verify_password(pw, h.as_str())
                    .is_ok()
            }
            Credential::Yescrypt(h) => {
                use yescrypt::PasswordVerifier as _;
                yescrypt::Yescrypt::default()
                    .verify_password(pw, h.as_str())
                    .is_ok()
            }
            Credential::Md5Crypt { salt, hash } => ct_eq(&md5_crypt(pw, salt.as_bytes()), hash),
            Credential::Ssha { digest, salt } => {
                let mut h = Sha1::new();
                h.update(pw);
                h.update(salt);
                ct_eq(&h.finalize(), digest)
            }
            Credential::Sha(digest) => ct_eq(&Sha1::digest(pw), digest),
            // Compare digests so neither the length nor a common prefix leaks through
            // timing.
            Credential::Plain(p) => ct_eq(
                &sha2::Sha256::digest(pw),
                &sha2::Sha256::digest(p.as_bytes()),
            ),
            Credential::Disabled => false,
        }
    }
}

fn crypt(value: &str) -> Result<Credential, String> {
    if let Some(rest) = value.strip_prefix("$1$") {
        return parse_md5_crypt(rest);
    }
    // Check the Modular Crypt Format now, so a typo is reported at load time rather than
    // looking like a wrong password forever.
    let well_formed = sha_crypt::PasswordHashRef::new(value).is_ok();
    let cred = if value.starts_with("$6$") {
        Credential::Sha512Crypt(value.to_string())
    } else if value.starts_with("$5$") {
        Credential::Sha256Crypt(value.to_string())
    } else if value.starts_with("$y$") {
        Credential::Yescrypt(value.to_string())
    } else {
        return Err("unsupported crypt scheme (only $6$, $5$, $y$, $1$)".to_string());
    };
    if !well_formed {
        return Err("malformed crypt hash".to_string());
    }
    Ok(cred)
}

/// Length of the encoded md5-crypt digest.
const MD5_CRYPT_HASH_LEN: usize = 22;
/// md5-crypt's base64 alphabet (not RFC 4648's order).
const CRYPT_B64: &[u8; 64] = b"./0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

/// `salt$hash` after `$1$`: salt of at most 8 characters, hash of 22 from [`CRYPT_B64`].
fn parse_md5_crypt(rest: &str) -> Result<Credential, String> {
    let malformed = || "malformed md5-crypt hash".to_string();
    let (salt, hash) = rest.split_once('$').ok_or_else(malformed)?;
    if salt.len() > 8 || !salt.bytes().all(|b| CRYPT_B64.contains(&b)) {
        return Err(malformed());
    }
    let hash: [u8; MD5_CRYPT_HASH_LEN] = hash.as_bytes().try_into().map_err(|_| malformed())?;
    if !hash.iter().all(|b| CRYPT_B64.contains(b)) {
        return Err(malformed());
    }
    Ok(Credential::Md5Crypt {
        salt: salt.to_string(),
        hash,
    })
}

/// Poul-Henning Kamp's md5-crypt (FreeBSD's `crypt_md5`, glibc's `$1$`): the encoded
/// 22-character digest of `pw` with `salt`.
fn md5_crypt(pw: &[u8], salt: &[u8]) -> [u8; MD5_CRYPT_HASH_LEN] {
    use md5::{Digest as _, Md5};
    let mut alt = Md5::new();
    alt.update(pw);
    alt.update(salt);
    alt.update(pw);
    let alt = alt.finalize();

    let mut ctx = Md5::new();
    ctx.update(pw);
    ctx.update(b"$1$");
    ctx.update(salt);
    for chunk in pw.chunks(16) {
        ctx.update(&alt[..chunk.len()]);
    }
    // The original's quirk: a NUL byte for each set bit of the length, else the first
    // byte of the password.
    let mut n = pw.len();
    while n > 0 {
        if n & 1 == 1 {
            ctx.update([0u8]);
        } else {
            ctx.update(&pw[..1]);
        }
        n >>= 1;
    }
    let mut fin = ctx.finalize();

    // 1000 rounds, to slow down brute force (by 1994 standards).
    for i in 0..1000 {
        let mut c = Md5::new();
        if i & 1 == 1 {
            c.update(pw);
        } else {
            c.update(fin);
        }
        if i % 3 != 0 {
            c.update(salt);
        }
        if i % 7 != 0 {
            c.update(pw);
        }
        if i & 1 == 1 {
            c.update(fin);
        } else {
            c.update(pw);
        }
        fin = c.finalize();
    }

    let f = fin;
    let mut out = [0u8; MD5_CRYPT_HASH_LEN];
    let groups: [(u32, usize); 6] = [
        (
            (u32::from(f[0]) << 16) | (u32::from(f[6]) << 8) | u32::from(f[12]),
            4,
        ),
        (
            (u32::from(f[1]) << 16) | (u32::from(f[7]) << 8) | u32::from(f[13]),
            4,
        ),
        (
            (u32::from(f[2]) << 16) | (u32::from(f[8]) << 8) | u32::from(f[14]),
            4,
        ),
        (
            (u32::from(f[3]) << 16) | (u32::from(f[9]) << 8) | u32::from(f[15]),
            4,
        ),
        (
            (u32::from(f[4]) << 16) | (u32::from(f[10]) << 8) | u32::from(f[5]),
            4,
        ),
        (u32::from(f[11]), 2),
    ];
    let mut pos = 0;
    for (mut v, n) in groups {
        for _ in 0..n {
            out[pos] = CRYPT_B64[(v & 0x3f) as usize];
            v >>= 6;
            pos += 1;
        }
    }
    out
}

fn b64(value: &str) -> Result<Vec<u8>, String> {
    base64::engine::general_purpose::STANDARD
        .decode(value.trim())
        .map_err(|e| format!("bad base64: {e}"))
}

/// Constant-time equality for equal-length secrets (digests); the length is public.
fn ct_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    let diff = a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y));
    // Keep the optimizer from turning the fold into an early-exit comparison.
    std::hint::black_box(diff) == 0
}

/// A parsed passwd-file.
#[derive(Debug, Default)]
pub struct PasswdTable {
    users: HashMap<String, Credential>,
}

/// The parse result, with one message per skipped or disabled line.
#[derive(Debug, Default)]
pub struct Parsed {
    pub table: PasswdTable,
    pub warnings: Vec<String>,
}

impl PasswdTable {
    /// The entry of canonical user `user`.
    pub fn get(&self, user: &str) -> Option<&Credential> {
        self.users.get(user)
    }

    pub fn len(&self) -> usize {
        self.users.len()
    }

    pub fn is_empty(&self) -> bool {
        self.users.is_empty()
    }

    /// Canonical user names, in no particular order.
    pub fn users(&self) -> impl Iterator<Item = &str> {
        self.users.keys().map(String::as_str)
    }
}

/// Parse passwd-file text. Never fails: bad lines are skipped and reported in
/// `warnings`, so one typo does not lock every user out. A `user@domain` field is
/// accepted when `domain` is one of `local_domains`.
pub fn parse(text: &str, local_domains: &[String]) -> Parsed {
    let mut out = Parsed::default();
    for (i, line) in text.lines().enumerate() {
        let n = i + 1;
        let line = line.trim_end_matches('\r');
        if line.trim().is_empty() || line.trim_start().starts_with('#') {
            continue;
        }
        let mut fields = line.splitn(3, ':');
        let name = fields.next().unwrap_or_default();
        let Some(password) = fields.next() else {
            out.warnings
                .push(format!("line {n}: no ':' after the user name, skipped"));
            continue;
        };
        let user = match canonical_user(name, local_domains) {
            Ok(u) => u,
            Err(e) => {
                out.warnings.push(format!("line {n}: {e}, skipped"));
                continue;
            }
        };
        if out.table.users.contains_key(&user) {
            out.warnings.push(format!(
                "line {n}: duplicate user {user:?}, the first entry wins"
            ));
            continue;
        }
        let cred = Credential::parse(password).unwrap_or_else(|e| {
            out.warnings
                .push(format!("line {n}: user {user:?} cannot log in: {e}"));
            Credential::Disabled
        });
        out.table.users.insert(user, cred);
    }
    out
}

fn canonical_user(name: &str, local_domains: &[String]) -> Result<String, String> {
    let local = match name.rsplit_once('@') {
        Some((l, d)) if is_local_domain(local_domains, d) => l,
        Some(_) => return Err(format!("user {name:?} is not in a local domain")),
        None => name,
    };
    let user = local.to_ascii_lowercase();
    hamail_storage::spool::validate_user(&user).map_err(|e| e.to_string())?;
    Ok(user)
}

/// What a login names: the canonical user, or `None` if it can never match (foreign
/// domain, or not a valid user name).
pub(crate) fn login_user(login: &str, local_domains: &[String]) -> Option<String> {
    let local = match login.rsplit_once('@') {
        Some((l, d)) if is_local_domain(local_domains, d) => l,
        Some(_) => return None,
        None => login,
    };
    let user = local.to_ascii_lowercase();
    hamail_storage::spool::validate_user(&user).ok()?;
    Some(user)
}

/// Accounts from a passwd-file, reloaded when the file changes.
#[derive(Debug, Clone)]
pub struct FileAuthenticator {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    file: Reloading<PasswdTable>,
    domains: Vec<String>,
}

impl FileAuthenticator {
    /// Accounts in `path`; logins may carry one of `local_domains`. The file is read on
    /// first use, not here, so an agent starts even while the file is unreachable.
    pub fn new(path: PathBuf, local_domains: Vec<String>) -> Self {
        Self::with_recheck(path, local_domains, DEFAULT_RECHECK)
    }

    /// Like [`new`](Self::new), checking the file for changes at most every `recheck`.
    pub fn with_recheck(path: PathBuf, local_domains: Vec<String>, recheck: Duration) -> Self {
        let domains = local_domains.clone();
        let file = Reloading::new(path, recheck, move |p| load(p, &domains));
        FileAuthenticator {
            inner: Arc::new(Inner {
                file,
                domains: local_domains,
            }),
        }
    }

    pub fn path(&self) -> &Path {
        self.inner.file.path()
    }

    /// Run `f` on the current table in a blocking thread.
    async fn with_table<R: Send + 'static>(
        &self,
        f: impl FnOnce(&Inner, &PasswdTable) -> R + Send + 'static,
    ) -> Result<R, AuthError> {
        let inner = self.inner.clone();
        crate::blocking::run(move || {
            let table = inner.file.get()?;
            Ok(f(&inner, &table))
        })
        .await?
    }
}

fn load(path: &Path, domains: &[String]) -> io::Result<Loaded<PasswdTable>> {
    let text = std::fs::read_to_string(path)?;
    let parsed = parse(&text, domains);
    for w in &parsed.warnings {
        tracing::warn!(path = %path.display(), "{w}");
    }
    Ok(Loaded {
        value: parsed.table,
        also_watch: Vec::new(),
    })
}

/// Verified against when the user does not exist, so an unknown login costs as much
/// time as a wrong password and timing does not reveal which accounts exist.
/// (`mkpasswd -m sha-512 -S dummysaltdummysa 'not a password'`.)
const DUMMY_HASH: &str = "$6$dummysaltdummysa$Gz043AznvALGVA9n5EmE4fyncZnM.OnSZNNG7gfmjCA3gfxZnfUOw9Ybs5m8awRgMdmANXuQt0FRKWxNsLEQt/";

/// Spend the time of one password check against [`DUMMY_HASH`], for logins that fail
/// before a real hash is reached (unknown or locked account). Blocking, like
/// [`Credential::verify`].
pub(crate) fn burn_dummy_hash(password: &str) {
    let _ = Credential::Sha512Crypt(DUMMY_HASH.to_string()).verify(password);
}

#[async_trait]
impl Authenticator for FileAuthenticator {
    async fn verify(&self, login: &str, password: &str) -> Result<Option<String>, AuthError> {
        let login = login.to_string();
        let password = password.to_string();
        self.with_table(move |inner, table| {
            let user = login_user(&login, &inner.domains);
            match user.as_deref().and_then(|u| table.get(u)) {
                Some(cred) => cred.verify(&password).then_some(user).flatten(),
                None => {
                    burn_dummy_hash(&password);
                    None
                }
            }
        })
        .await
    }

    async fn user_exists(&self, user: &str) -> Result<bool, AuthError> {
        let user = user.to_ascii_lowercase();
        self.with_table(move |_, table| table.get(&user).is_some())
            .await
    }

    async fn check(&self) -> Result<(), AuthError> {
        self.with_table(|_, _| ()).await
    }

    fn name(&self) -> &'static str {
        "file"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // Real hashes of known passwords, made once with:
    //   mkpasswd -m sha-512 -S saltsaltsalt1234 'correct horse'
    //   mkpasswd -m sha-512 -R 5000 -S roundsalt 'tuna'
    //   mkpasswd -m sha-256 -S pepperpepper 's3cret!'
    //   mkpasswd -m yescrypt 'hunter2'
    // (mkpasswd from Debian's `whois` package), and SSHA/SHA with python3:
    //   salt = b'\x01\x02\xfe\xffsalt'
    //   '{SSHA}' + b64encode(sha1(b'open sesame' + salt).digest() + salt)
    //   '{SHA}' + b64encode(sha1(b'plainsha').digest())
    const SHA512: &str = "$6$saltsaltsalt1234$T8bFOoLBZ2RlKJoFOyTfscIPEDYRAM5RpN1TwaM3ewbmdvo/YxH9oVGTIDEwpiSYGV1cxLLjI3.kw1VeQaGc8/";
    const SHA512_ROUNDS: &str = "$6$rounds=5000$roundsalt$52rdJOHQDE.ClzFG5p6W3kyFIyoilAOAaUP4YkB8lhBv4H5zoY2/lxRYm0Kk2rCYBaZLZ2X4N.Kx6JhbB2W081";
    const SHA256: &str = "$5$pepperpepper$PR97XiJMdnjg9En8yK7oNviGRr5/KOL/.iIEDRld6b/";
    const YESCRYPT: &str =
        "$y$j9T$6Ssn4JCUr.etfbU8smfDU0$nSQFtMFwAJO0s2FmlJhqCXCT.wZsmKtH7ks3zBnJ9f4";
    const SSHA: &str = "{SSHA}PVVFUG7ADfrNyLepsjsflkFH7xcBAv7/c2FsdA==";
    const SHA: &str = "{SHA}WO51BSqh38jteqySD2jTmVRjTeI=";

    fn domains() -> Vec<String> {
        vec!["example.test".to_string(), "other.test".to_string()]
    }

    fn check(field: &str, right: &str, wrong: &str) {
        let c = Credential::parse(field).unwrap_or_else(|e| panic!("{field}: {e}"));
        assert!(c.verify(right), "{field}: right password rejected");
        assert!(!c.verify(wrong), "{field}: wrong password accepted");
        assert!(!c.verify(""), "{field}: empty password accepted");
    }

    #[test]
    fn sha512_crypt() {
        check(SHA512, "correct horse", "correct horsE");
        check(&format!("{{SHA512-CRYPT}}{SHA512}"), "correct horse", "x");
        check(&format!("{{CRYPT}}{SHA512}"), "correct horse", "correct");
        check(SHA512_ROUNDS, "tuna", "tunA");
    }

    #[test]
    fn sha256_crypt() {
        check(SHA256, "s3cret!", "s3cret");
        check(&format!("{{sha256-crypt}}{SHA256}"), "s3cret!", "x");
    }

    #[test]
    fn yescrypt() {
        check(YESCRYPT, "hunter2", "hunter3");
        check(&format!("{{CRYPT}}{YESCRYPT}"), "hunter2", "Hunter2");
    }

    // `openssl passwd -1 -salt SALT PASSWORD`.
    #[test]
    fn md5_crypt_vectors() {
        check(
            "$1$saltsalt$NuzA7WTAelpl95xgBGWN60",
            "correct horse",
            "correct hors",
        );
        check(
            "{MD5-CRYPT}$1$ab$zSxXTAOa3MsUL6fbBrrN71",
            "pässword",
            "password",
        );
        check(
            "{crypt}$1$ab$zSxXTAOa3MsUL6fbBrrN71",
            "pässword",
            "pässwore",
        );
        check(
            "$1$x$TO9xePYxZH.xKlTUs6muf.",
            "a very long password that is longer than sixteen bytes for sure",
            "a very long password that is longer than sixteen bytes for sur",
        );
        // The hash of the empty password exists, but empty passwords never log in.
        let c = Credential::parse("$1$12345678$xek.CpjQUVgdf/P2N9KQf/").unwrap();
        assert_eq!(&md5_crypt(b"", b"12345678"), b"xek.CpjQUVgdf/P2N9KQf/");
        assert!(!c.verify(""));
    }

    #[test]
    fn ssha_sha_plain() {
        check(SSHA, "open sesame", "open sesame ");
        check(SHA, "plainsha", "plainsh");
        check("{PLAIN}pässword", "pässword", "password");
        check("{CLEARTEXT}a:b", "a:b", "a");
    }

    #[test]
    fn unusable_fields() {
        for bad in [
            "{MD5-CRYPT}$1$abc$def",
            "$1$abc$0123456789abcdefghijk",
            "$1$abc$0123456789abcdefghijk!",
            "$1$toolongsalt$0123456789abcdefghijkl",
            "$1$0123456789abcdefghijkl",
            "{MD5-CRYPT}$6$abc$0123456789abcdefghijkl",
            "{SHA512-CRYPT}$5$pepperpepper$PR97XiJMdnjg9En8yK7oNviGRr5/KOL/.iIEDRld6b/",
            "plaintext-without-scheme",
            "{SSHA}c2hvcnQ=",
            "{SHA}not base64!",
            "{SHA}c2hvcnQ=",
            "{PLAIN",
            "$6$",
        ] {
            assert!(Credential::parse(bad).is_err(), "{bad} accepted");
        }
        assert_eq!(Credential::parse(""), Ok(Credential::Disabled));
        assert!(!Credential::parse("{PLAIN}").unwrap().verify(""));
        assert!(!Credential::Disabled.verify(""));
        // The Debug form never shows a hash.
        let dbg = format!("{:?}", Credential::parse(SHA512).unwrap());
        assert!(!dbg.contains("saltsalt"), "{dbg}");
    }

    #[test]
    fn constant_time_eq() {
        assert!(ct_eq(b"abc", b"abc"));
        assert!(!ct_eq(b"abc", b"abd"));
        assert!(!ct_eq(b"abc", b"ab"));
        assert!(ct_eq(b"", b""));
    }

    #[test]
    fn parse_file_format() {
        let text = format!(
            "# accounts\n\
             \n\
             alice:{SHA512}:1000:1000:Alice:/home/alice:/bin/sh:userdb_quota=1G\n\
             Bob@Example.Test:{{PLAIN}}pw\r\n\
             carol:{{MD5}}xyz::\n\
             dave:\n\
             eve@foreign.test:{{PLAIN}}x\n\
             ../etc:{{PLAIN}}x\n\
             no-colon-line\n\
             ALICE:{{PLAIN}}second\n"
        );
        let p = parse(&text, &domains());
        let t = &p.table;
        let mut users: Vec<_> = t.users().collect();
        users.sort_unstable();
        assert_eq!(users, ["alice", "bob", "carol", "dave"]);
        assert!(matches!(t.get("alice"), Some(Credential::Sha512Crypt(_))));
        assert_eq!(t.get("bob"), Some(&Credential::Plain("pw".into())));
        assert_eq!(t.get("carol"), Some(&Credential::Disabled));
        assert_eq!(t.get("dave"), Some(&Credential::Disabled));
        // carol's scheme, eve's domain, ../etc, the colon-less line, the duplicate.
        assert_eq!(p.warnings.len(), 5, "{:?}", p.warnings);
        assert!(p.warnings.iter().any(|w| w.contains("first entry wins")));
    }

    fn write(dir: &tempfile::TempDir, text: &str) -> PathBuf {
        let path = dir.path().join("passwd");
        std::fs::write(&path, text).unwrap();
        path
    }

    fn auth(path: PathBuf) -> FileAuthenticator {
        FileAuthenticator::with_recheck(path, domains(), Duration::ZERO)
    }

    #[tokio::test]
    async fn verify_logins() {
        let dir = tempfile::tempdir().unwrap();
        let a = auth(write(
            &dir,
            &format!("alice:{SHA512}\nbob:{YESCRYPT}\nmailonly:\n"),
        ));
        let ok = |u: &str| Ok::<_, ()>(Some(u.to_string()));
        let v = |l: &'static str, p: &'static str| {
            let a = a.clone();
            async move { a.verify(l, p).await.map_err(|_| ()) }
        };
        assert_eq!(v("alice", "correct horse").await, ok("alice"));
        assert_eq!(v("ALICE@example.TEST", "correct horse").await, ok("alice"));
        assert_eq!(v("alice@other.test.", "correct horse").await, ok("alice"));
        assert_eq!(v("alice@foreign.test", "correct horse").await, Ok(None));
        assert_eq!(v("alice", "wrong").await, Ok(None));
        assert_eq!(v("bob", "hunter2").await, ok("bob"));
        assert_eq!(v("bob", "hunter1").await, Ok(None));
        assert_eq!(v("nobody", "correct horse").await, Ok(None));
        assert_eq!(v("mailonly", "").await, Ok(None));
        assert_eq!(v("../x", "").await, Ok(None));

        assert!(a.user_exists("Alice").await.unwrap());
        assert!(a.user_exists("mailonly").await.unwrap());
        assert!(!a.user_exists("nobody").await.unwrap());
        a.check().await.unwrap();
        assert_eq!(a.name(), "file");
    }

    #[tokio::test]
    async fn reloads_when_the_file_changes() {
        let dir = tempfile::tempdir().unwrap();
        let path = write(&dir, "alice:{PLAIN}one\n");
        let a = auth(path.clone());
        assert!(a.verify("alice", "one").await.unwrap().is_some());
        assert!(!a.user_exists("carol").await.unwrap());

        // Replaced by rename, the way editors and config management write files.
        let tmp = dir.path().join("passwd.new");
        std::fs::write(&tmp, "alice:{PLAIN}two\ncarol:{PLAIN}three\n").unwrap();
        std::fs::rename(&tmp, &path).unwrap();
        assert!(a.verify("alice", "one").await.unwrap().is_none());
        assert!(a.verify("alice", "two").await.unwrap().is_some());
        assert!(a.verify("carol", "three").await.unwrap().is_some());
    }

    #[tokio::test]
    async fn default_recheck_waits_a_second() {
        let dir = tempfile::tempdir().unwrap();
        let path = write(&dir, "alice:{PLAIN}one\n");
        let a = FileAuthenticator::new(path.clone(), domains());
        assert!(a.user_exists("alice").await.unwrap());
        std::fs::write(&path, "bob:{PLAIN}one\n").unwrap();
        assert!(
            a.user_exists("alice").await.unwrap(),
            "checked at most once a second"
        );
        tokio::time::sleep(Duration::from_millis(1100)).await;
        assert!(!a.user_exists("alice").await.unwrap());
        assert!(a.user_exists("bob").await.unwrap());
    }

    #[tokio::test]
    async fn missing_file_is_unavailable_never_a_wrong_password() {
        let dir = tempfile::tempdir().unwrap();
        let a = auth(dir.path().join("absent"));
        assert!(matches!(
            a.verify("alice", "x").await,
            Err(AuthError::Unavailable(_))
        ));
        assert!(matches!(
            a.user_exists("alice").await,
            Err(AuthError::Unavailable(_))
        ));
        let err = a.check().await.unwrap_err().to_string();
        assert!(err.contains("absent"), "{err}");

        // Present, then gone again: the old contents are not served.
        let path = write(&dir, "alice:{PLAIN}x\n");
        let a = auth(path.clone());
        assert!(a.verify("alice", "x").await.unwrap().is_some());
        std::fs::remove_file(&path).unwrap();
        assert!(a.verify("alice", "x").await.is_err());
        assert!(a.check().await.is_err());
    }
}
