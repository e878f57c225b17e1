//! The `system` auth backend end to end, through glibc's real NSS `files` module: the
//! agent runs in a private mount namespace (`unshare -m`) where copies of /etc/passwd and
//! /etc/shadow with extra test users are bind-mounted over the real ones, so the
//! machine's own account files are never written and the test users exist only inside
//! the agent's namespace. Needs root (for the namespace and to read shadow); fails
//! otherwise.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::path::{Path, PathBuf};
use std::process::Command;

use support::accounts::{accepted, logins, rcpt, rejected};
use support::Lab;

const SHA: (&str, &str) = ("hmsys-sha", "sha-Pass 1");
/// yescrypt if `mkpasswd` can make it, else SHA-256 crypt.
const OTHER: (&str, &str) = ("hmsys-other", "other-Pass 2");
const LOCKED: (&str, &str) = ("hmsys-locked", "locked-Pass 3");
const EXPIRED: (&str, &str) = ("hmsys-expired", "expired-Pass 4");

const EXTRA: &str = "[auth]\nbackend = \"system\"\n\n\
    [limits]\nlogin_failures_per_ip = 1000\nlogin_failures_per_user = 1000\n";

/// Stdout of a command that must succeed.
fn output(program: &str, args: &[&str]) -> Option<String> {
    let out = Command::new(program).args(args).output().ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
}

fn can_unshare() -> bool {
    output("unshare", &["-m", "--propagation", "private", "true"]).is_some()
}

/// A crypt hash of `password`: `$6$` from openssl, or the other scheme.
fn hash(password: &str, sha512: bool) -> String {
    if sha512 {
        return output("openssl", &["passwd", "-6", password]).expect("openssl passwd -6");
    }
    output("mkpasswd", &["-m", "yescrypt", password])
        .filter(|h| h.starts_with("$y$"))
        .or_else(|| output("openssl", &["passwd", "-5", password]))
        .expect("mkpasswd -m yescrypt or openssl passwd -5")
}

fn shell_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

/// Whether the `passwd` and `shadow` lines of an nsswitch.conf consult `files`.
fn nsswitch_uses_files(text: &str) -> bool {
    ["passwd:", "shadow:"].iter().all(|db| {
        text.lines().any(|l| {
            l.trim_start()
                .strip_prefix(db)
                .is_some_and(|rest| rest.split_whitespace().any(|s| s == "files"))
        })
    })
}

/// Private account files in `dir`, and the `(source, target)` bind mounts that put them
/// in place.
fn private_files(dir: &Path) -> Vec<(PathBuf, &'static str)> {
    let users = [
        (SHA, hash(SHA.1, true), ""),
        (OTHER, hash(OTHER.1, false), ""),
        (LOCKED, format!("!{}", hash(LOCKED.1, true)), ""),
        (EXPIRED, hash(EXPIRED.1, true), "1"),
    ];
    let mut passwd = std::fs::read_to_string("/etc/passwd").unwrap();
    let mut shadow = std::fs::read_to_string("/etc/shadow").unwrap();
    for (i, ((name, _), hash, expire)) in users.iter().enumerate() {
        let id = 64_100 + i;
        passwd.push_str(&format!(
            "{name}:x:{id}:{id}:hamail test:/nonexistent:/usr/sbin/nologin\n"
        ));
        shadow.push_str(&format!("{name}:{hash}:19000:0:99999:7::{expire}:\n"));
    }
    let mut mounts = Vec::new();
    for (name, text, target) in [
        ("passwd", passwd, "/etc/passwd"),
        ("shadow", shadow, "/etc/shadow"),
    ] {
        let path = dir.join(name);
        std::fs::write(&path, text).unwrap();
        mounts.push((path, target));
    }
    let nsswitch = std::fs::read_to_string("/etc/nsswitch.conf").unwrap_or_default();
    if !nsswitch_uses_files(&nsswitch) {
        let path = dir.join("nsswitch.conf");
        std::fs::write(
            &path,
            "passwd: files\nshadow: files\ngroup: files\nhosts: files dns\n",
        )
        .unwrap();
        mounts.push((path, "/etc/nsswitch.conf"));
    }
    // A running nscd would answer from the real files; hide its socket.
    if Path::new("/var/run/nscd").is_dir() {
        let empty = dir.join("no-nscd");
        std::fs::create_dir(&empty).unwrap();
        mounts.push((empty, "/var/run/nscd"));
    }
    mounts
}

#[test]
fn system_backend_with_the_real_nss_files_module() {
    // Not a silent skip: CI runs as root, and a pass must mean the backend was tested.
    assert!(
        can_unshare(),
        "this test needs root for a private mount namespace (unshare -m)"
    );
    let before = (
        std::fs::read("/etc/passwd").unwrap(),
        std::fs::read("/etc/shadow").unwrap(),
    );
    let mut lab = Lab::new(1, EXTRA);
    let mounts = private_files(lab.root());
    let script = mounts
        .iter()
        .map(|(from, to)| {
            format!(
                "mount --bind {} {} && ",
                shell_quote(&from.display().to_string()),
                shell_quote(to)
            )
        })
        .collect::<String>()
        + "exec \"$0\" \"$@\"";
    lab.start_wrapped(
        0,
        &[],
        &[
            "unshare",
            "-m",
            "--propagation",
            "private",
            "sh",
            "-c",
            &script,
        ],
    );

    // Right passwords, with and without a local domain.
    for (login, pw) in [
        SHA.0.to_string(),
        format!("{}@example.test", SHA.0),
        OTHER.0.to_string(),
    ]
    .iter()
    .zip([SHA.1, SHA.1, OTHER.1])
    {
        let r = logins(&lab, 0, login, pw);
        assert!(accepted(&r), "{login}: {r:?}\n{}", lab.log(0));
    }

    // Wrong password, unknown, locked, expired, and names that must never reach NSS.
    let long = "a".repeat(2000);
    for (login, pw) in [
        (SHA.0, "sha-Pass 2"),
        (SHA.0, "SHA-PASS 1"),
        (OTHER.0, SHA.1),
        ("hmsys-nosuch", SHA.1),
        (LOCKED.0, LOCKED.1),
        (EXPIRED.0, EXPIRED.1),
        ("root", "root"),
        ("*", SHA.1),
        ("../etc", SHA.1),
        ("hmsys-sha\0x", SHA.1),
        (long.as_str(), SHA.1),
    ] {
        let r = logins(&lab, 0, login, pw);
        assert!(rejected(&r), "{login:?}: {r:?}\n{}", lab.log(0));
    }

    // Recipients: any NSS account receives mail, locked ones too.
    for user in [SHA.0, OTHER.0, LOCKED.0, "root"] {
        let r = rcpt(&lab, 0, &format!("{user}@example.test"));
        assert!(r.starts_with("250"), "{user}: {r}");
    }
    let r = rcpt(&lab, 0, "hmsys-nosuch@example.test");
    assert!(r.starts_with("550"), "{r}");

    // The machine's own account files are untouched and the test users invisible here.
    let after = (
        std::fs::read("/etc/passwd").unwrap(),
        std::fs::read("/etc/shadow").unwrap(),
    );
    assert!(before == after, "/etc/passwd or /etc/shadow changed");
    for (user, _) in [SHA, OTHER, LOCKED, EXPIRED] {
        assert!(
            output("getent", &["passwd", user]).is_none(),
            "{user} visible outside the agent's namespace"
        );
    }
}

#[test]
fn nsswitch_files_detection() {
    assert!(nsswitch_uses_files(
        "passwd: files systemd\nshadow:   files\n"
    ));
    assert!(!nsswitch_uses_files("passwd: sss\nshadow: files\n"));
    assert!(!nsswitch_uses_files("passwd: files\n# shadow: files\n"));
    assert!(!nsswitch_uses_files("passwd: compat\nshadow: compat\n"));
}
