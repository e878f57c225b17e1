//! The `system` backend: accounts from NSS (`getpwnam_r` / `getspnam_r`), that is from
//! whatever `/etc/nsswitch.conf` lists for `passwd` and `shadow`: local files, or a host
//! already joined to NIS or LDAP through nss-nis, nslcd or sssd.
//!
//! This module owns the two libc calls (each wrapped in one small function, the only
//! unsafe code here), the mapping of their results to "found", "not found" and
//! "unavailable", and the rules for which stored password may log in.
//!
//! Behaviour worth knowing:
//! - NSS modules block, NIS and LDAP ones on the network for as long as their own
//!   timeouts, so every call runs on tokio's blocking thread pool.
//! - A login names a spool user exactly as in the file backend
//!   ([`login_user`]: an optional local domain, lower-cased, a valid spool name), and that
//!   name is what NSS is asked for. NSS accounts whose names have upper-case letters or
//!   characters a spool name cannot hold are therefore never served.
//! - Every NSS account with a valid spool name receives mail, system accounts such as
//!   `root` or `daemon` included: there is no uid rule. Mail for those is normally
//!   redirected with the aliases file; an account nobody reads should not exist in NSS.
//! - The hash comes from `pw_passwd` unless that is a shadow marker (`x`, `*...`, `##...`),
//!   in which case it comes from `sp_pwdp`. Reading shadow passwords from `/etc/shadow`
//!   needs root (or the `shadow` group); without that every login is a temporary failure
//!   with a message saying so, never "wrong password".
//! - Locked accounts (`!` or `*` in front of the hash) and accounts past their shadow
//!   expiry date (`sp_expire`) cannot log in, but still receive mail. Password ageing
//!   (`sp_max`) is ignored: a mail client cannot change the password.
//! - Only crypt hashes (`$6$`, `$5$`, `$y$`) are accepted. sssd never hands hashes to NSS
//!   (it authenticates through PAM), so sssd users receive mail but cannot log in here.

use std::ffi::{CStr, CString};
use std::mem::MaybeUninit;
use std::time::{SystemTime, UNIX_EPOCH};

use async_trait::async_trait;

use super::passwd_file::{burn_dummy_hash, login_user, Credential};
use super::{AuthError, Authenticator};

#[derive(Debug)]
pub struct SystemAuthenticator {
    domains: Vec<String>,
}

impl SystemAuthenticator {
    /// Accounts from NSS; logins may carry one of `local_domains`.
    pub fn new(local_domains: Vec<String>) -> Self {
        SystemAuthenticator {
            domains: local_domains,
        }
    }
}

/// The parts of a `struct passwd` we use.
#[derive(Debug)]
struct PwEntry {
    passwd: String,
}

/// The parts of a `struct spwd` we use.
#[derive(Debug)]
struct SpEntry {
    pwdp: String,
    /// The day (since 1970-01-01) from which the account is expired; -1 if unset.
    expire: libc::c_long,
}

/// First buffer size for the `*_r` calls; enough for almost every entry.
const BUF_START: usize = 1024;
/// Bound for the buffer: an entry larger than this is an error, not a reason to allocate
/// without limit (a misbehaving NSS module could keep answering ERANGE).
const BUF_MAX: usize = 1 << 20;

/// Run a reentrant NSS call with a buffer that doubles while the call answers ERANGE
/// ("buffer too small"), up to [`BUF_MAX`]. `call` returns the call's errno on failure.
fn with_buffer<T>(mut call: impl FnMut(&mut [u8]) -> Result<T, i32>) -> Result<T, i32> {
    let mut size = BUF_START;
    loop {
        let mut buf = vec![0u8; size];
        match call(&mut buf) {
            Err(libc::ERANGE) if size < BUF_MAX => size *= 2,
            other => return other,
        }
    }
}

/// An owned copy of a C string field; a NULL field (some modules leave `pw_passwd` unset)
/// reads as empty. Non-UTF-8 bytes become U+FFFD, which no hash we accept contains.
///
/// # Safety
/// `p` is NULL or points to a NUL-terminated string that stays valid during the call.
unsafe fn owned(p: *const libc::c_char) -> String {
    if p.is_null() {
        return String::new();
    }
    // SAFETY: non-NULL and NUL-terminated, as the caller guarantees.
    unsafe { CStr::from_ptr(p) }.to_string_lossy().into_owned()
}

/// One reentrant `get*nam_r` call with the shape glibc gives them all:
/// `call(entry, buf, buflen, result)` returns 0 and sets `*result` to `entry` or NULL, or
/// returns an errno. `read` copies what we need out of the filled entry, whose string
/// fields point into `buf`. `Ok(None)`: the call succeeded without an entry; `Err(errno)`:
/// it failed (which may still mean "not found", see [`not_found`]).
fn nss_lookup<E, T>(
    call: impl Fn(*mut E, *mut libc::c_char, usize, *mut *mut E) -> libc::c_int,
    read: impl Fn(&E) -> T,
) -> Result<Option<T>, i32> {
    with_buffer(|buf| {
        let mut entry = MaybeUninit::<E>::uninit();
        let mut result: *mut E = std::ptr::null_mut();
        // The pointers handed to `call` are to live, writable locals, and `buf.len()` is
        // the buffer's true length: what the callers' SAFETY comments rely on.
        let rc = call(
            entry.as_mut_ptr(),
            buf.as_mut_ptr().cast(),
            buf.len(),
            &mut result,
        );
        if rc != 0 {
            return Err(rc);
        }
        if result.is_null() {
            return Ok(None);
        }
        // SAFETY: success with a non-NULL result means the call filled `entry` (result
        // points to it). `buf`, which its strings point into, is still borrowed here, so
        // `read` sees them valid and copies them out before it is dropped.
        Ok(Some(read(unsafe { entry.assume_init_ref() })))
    })
}

/// `getpwnam_r(3)` for `name`.
fn getpwnam(name: &CStr) -> Result<Option<PwEntry>, i32> {
    nss_lookup(
        |pwd, buf, len, result| {
            // SAFETY: `name` is NUL-terminated and outlives the call; `nss_lookup` passes
            // valid pointers and the true buffer length, and glibc writes nothing else.
            unsafe { libc::getpwnam_r(name.as_ptr(), pwd, buf, len, result) }
        },
        |pwd: &libc::passwd| PwEntry {
            // SAFETY: `pw_passwd` is NULL or a NUL-terminated string in the live buffer.
            passwd: unsafe { owned(pwd.pw_passwd) },
        },
    )
}

/// `getspnam_r(3)` for `name`.
fn getspnam(name: &CStr) -> Result<Option<SpEntry>, i32> {
    nss_lookup(
        |spwd, buf, len, result| {
            // SAFETY: as in `getpwnam`.
            unsafe { libc::getspnam_r(name.as_ptr(), spwd, buf, len, result) }
        },
        |spwd: &libc::spwd| SpEntry {
            // SAFETY: `sp_pwdp` is NULL or a NUL-terminated string in the live buffer.
            pwdp: unsafe { owned(spwd.sp_pwdp) },
            expire: spwd.sp_expire,
        },
    )
}

/// Whether a failed call's errno means "no such entry": `getpwnam_r(3)` lists "0 or
/// ENOENT or ESRCH or EBADF or EPERM or ..." for that, depending on the module. Anything
/// else (EIO, EAGAIN from an unreachable NIS server, ENOMEM, ...) is a real failure.
fn not_found(errno: i32) -> bool {
    matches!(
        errno,
        libc::ENOENT | libc::ESRCH | libc::EBADF | libc::EPERM
    )
}

fn unavailable(call: &str, user: &str, errno: i32) -> AuthError {
    AuthError::Unavailable(format!(
        "{call}({user:?}): {}",
        std::io::Error::from_raw_os_error(errno)
    ))
}

/// Not a valid C string (a NUL inside): no NSS entry can have that name.
fn c_name(user: &str) -> Option<CString> {
    CString::new(user).ok()
}

/// The passwd entry of `user`, `None` if NSS has none.
fn passwd_entry(user: &str) -> Result<Option<PwEntry>, AuthError> {
    let Some(name) = c_name(user) else {
        return Ok(None);
    };
    match getpwnam(&name) {
        Ok(entry) => Ok(entry),
        Err(e) if not_found(e) => Ok(None),
        Err(e) => Err(unavailable("getpwnam_r", user, e)),
    }
}

const SHADOW_DENIED: &str = "cannot read shadow passwords: run as root or in the \
    group that can read /etc/shadow (usually `shadow`), or use another backend";

/// The shadow entry of `user`, `None` if NSS has none.
fn shadow_entry(user: &str) -> Result<Option<SpEntry>, AuthError> {
    let Some(name) = c_name(user) else {
        return Ok(None);
    };
    match getspnam(&name) {
        Ok(Some(entry)) => Ok(Some(entry)),
        Err(libc::EACCES) => Err(AuthError::Unavailable(SHADOW_DENIED.into())),
        // glibc moves on to the next module after `files` fails with EACCES (e.g.
        // `shadow: files systemd`), so the permission problem usually arrives as "not
        // found". Tell the two apart by trying the file ourselves.
        Ok(None) => match std::fs::File::open("/etc/shadow") {
            Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied => {
                Err(AuthError::Unavailable(SHADOW_DENIED.into()))
            }
            _ => Ok(None),
        },
        Err(e) if not_found(e) => Ok(None),
        Err(e) => Err(unavailable("getspnam_r", user, e)),
    }
}

/// Whether a `pw_passwd` value only says "the hash is in shadow": `x` (Linux), `*` or
/// `*NP*` (a shadow-only NIS map), `##user` (old SunOS shadow reference).
fn is_shadow_marker(field: &str) -> bool {
    field == "x" || field.starts_with('*') || field.starts_with("##")
}

/// Whether a hash is locked: `passwd -l` puts `!` in front, `*` means "no password".
fn is_locked(hash: &str) -> bool {
    hash.starts_with('!') || hash.starts_with('*')
}

/// Whether a shadow `sp_expire` (days since the epoch; -1, or 0 which shadow(5) says not
/// to use, when unset) lies in the past, as shadow-utils' `isexpired` decides it.
fn is_expired(expire: libc::c_long, now: SystemTime) -> bool {
    let today = now
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() / 86_400)
        .unwrap_or(0);
    expire > 0 && u64::try_from(expire).is_ok_and(|e| today >= e)
}

/// The hash `user` logs in with, `None` if the account cannot log in (locked, expired, no
/// shadow entry).
fn password_hash(user: &str, pw: PwEntry) -> Result<Option<String>, AuthError> {
    if !is_shadow_marker(&pw.passwd) {
        // A hash in the passwd entry itself, as NIS passwd.byname usually carries it.
        return Ok((!is_locked(&pw.passwd)).then_some(pw.passwd));
    }
    let Some(sp) = shadow_entry(user)? else {
        tracing::debug!(user, "no shadow entry: cannot log in");
        return Ok(None);
    };
    if is_locked(&sp.pwdp) || is_expired(sp.expire, SystemTime::now()) {
        return Ok(None);
    }
    Ok(Some(sp.pwdp))
}

/// The credential for a system hash. Only crypt formats: crypt(3), and thus `login`, would
/// never accept the `{SCHEME}` forms the file backend knows, and a system database that
/// happens to hold `{PLAIN}...` must not become a cleartext password here.
fn credential(user: &str, hash: &str) -> Option<Credential> {
    if hash.starts_with('{') {
        tracing::warn!(user, "system password is not a crypt hash: cannot log in");
        return None;
    }
    match Credential::parse(hash) {
        Ok(c) => Some(c),
        Err(e) => {
            tracing::warn!(user, "system password cannot be checked: {e}");
            None
        }
    }
}

/// Run NSS work on the blocking pool.
async fn blocking<R: Send + 'static>(
    f: impl FnOnce() -> Result<R, AuthError> + Send + 'static,
) -> Result<R, AuthError> {
    crate::blocking::run(f).await?
}

#[async_trait]
impl Authenticator for SystemAuthenticator {
    async fn verify(&self, login: &str, password: &str) -> Result<Option<String>, AuthError> {
        // Invalid names never reach NSS: `*`, `../x` or a 2000-byte login are not
        // something to hand to a network directory.
        let Some(user) = login_user(login, &self.domains) else {
            return Ok(None);
        };
        if password.is_empty() {
            return Ok(None);
        }
        let password = password.to_string();
        blocking(move || {
            let cred = match passwd_entry(&user)? {
                Some(pw) => password_hash(&user, pw)?.and_then(|h| credential(&user, &h)),
                None => None,
            };
            match cred {
                Some(c) => Ok(c.verify(&password).then_some(user)),
                None => {
                    // Cost as much as a wrong password, so timing does not tell which
                    // accounts exist or are locked.
                    burn_dummy_hash(&password);
                    Ok(None)
                }
            }
        })
        .await
    }

    async fn user_exists(&self, user: &str) -> Result<bool, AuthError> {
        let user = user.to_ascii_lowercase();
        if hamail_storage::spool::validate_user(&user).is_err() {
            return Ok(false);
        }
        blocking(move || Ok(passwd_entry(&user)?.is_some())).await
    }

    async fn check(&self) -> Result<(), AuthError> {
        // Every NSS setup has root; not finding it means the passwd database is broken.
        blocking(|| match passwd_entry("root")? {
            Some(_) => Ok(()),
            None => Err(AuthError::Unavailable(
                "NSS has no passwd entry for root".into(),
            )),
        })
        .await
    }

    fn name(&self) -> &'static str {
        "system"
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn auth() -> SystemAuthenticator {
        SystemAuthenticator::new(vec!["example.test".to_string()])
    }

    #[tokio::test]
    async fn root_exists_and_nonsense_does_not() {
        let a = auth();
        assert!(a.user_exists("root").await.unwrap());
        assert!(a.user_exists("ROOT").await.unwrap());
        assert!(!a.user_exists("no-such-user-q7x9z").await.unwrap());
        assert!(!a.user_exists("../etc").await.unwrap());
        assert!(!a.user_exists("a\0b").await.unwrap());
        a.check().await.unwrap();
        assert_eq!(a.name(), "system");
    }

    #[tokio::test]
    async fn wrong_passwords_never_log_in() {
        let a = auth();
        // Ok(None) as root; without root, shadow is unreadable: Unavailable. Never Some.
        for login in ["root", "root@example.test"] {
            let r = a.verify(login, "certainly not the password").await;
            assert!(!matches!(r, Ok(Some(_))), "{login}: {r:?}");
            match &r {
                Ok(_) => {}
                // Not root (nor in the shadow group): say so, not "wrong password".
                Err(e) => assert!(e.to_string().contains("cannot read shadow"), "{e}"),
            }
            if nix::unistd::geteuid().is_root() {
                assert!(matches!(r, Ok(None)), "{login}: {r:?}");
            }
        }
        for login in [
            "",
            "*",
            "../etc",
            "a\0b",
            "root@foreign.test",
            "no-such-user-q7x9z",
        ] {
            assert!(matches!(a.verify(login, "x").await, Ok(None)), "{login:?}");
        }
        assert!(matches!(a.verify(&"a".repeat(2000), "x").await, Ok(None)));
        assert!(matches!(a.verify("root", "").await, Ok(None)));
    }

    #[test]
    fn hash_field_rules() {
        for marker in ["x", "*", "*NP*", "##alice"] {
            assert!(is_shadow_marker(marker), "{marker}");
        }
        assert!(!is_shadow_marker("$6$salt$hash"));
        assert!(!is_shadow_marker(""));
        assert!(is_locked("!$6$salt$hash"));
        assert!(is_locked("!"));
        assert!(is_locked("*"));
        assert!(!is_locked("$y$j9T$salt$hash"));
        assert!(credential("u", "{PLAIN}pw").is_none());
        assert!(credential("u", "$1$md5$hash").is_none());
        // A non-shadow passwd hash that is locked never reaches shadow.
        let pw = PwEntry {
            passwd: "!$6$saltsalt$x".into(),
        };
        assert!(password_hash("u", pw).unwrap().is_none());
    }

    #[test]
    fn shadow_expiry() {
        let day = |d: u64| UNIX_EPOCH + Duration::from_secs(d * 86_400 + 3600);
        assert!(!is_expired(-1, day(20_000)));
        assert!(!is_expired(0, day(20_000)));
        assert!(!is_expired(20_001, day(20_000)));
        assert!(is_expired(20_000, day(20_000)));
        assert!(is_expired(1, day(20_000)));
    }

    #[test]
    fn buffer_grows_on_erange_up_to_a_bound() {
        let mut sizes = Vec::new();
        let r: Result<(), i32> = with_buffer(|buf| {
            sizes.push(buf.len());
            Err(libc::ERANGE)
        });
        assert_eq!(r, Err(libc::ERANGE));
        assert_eq!(sizes.first(), Some(&BUF_START));
        assert_eq!(sizes.last(), Some(&BUF_MAX));
        let mut calls = 0;
        let r = with_buffer(|buf| {
            calls += 1;
            if buf.len() < 4096 {
                Err(libc::ERANGE)
            } else {
                Ok(buf.len())
            }
        });
        assert_eq!((r, calls), (Ok(4096), 3));
    }
}
