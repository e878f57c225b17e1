//! Helpers shared by the integration tests: run `hamail-spool` as a separate process (a
//! "host" of its own, named by `HAMAIL_HOSTNAME`), and parse what it prints.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};

/// The host name the helpers act as (processes on one host can tell a dead holder
/// from a live one by its pid; other hosts wait for the lock to go stale).
pub const HOST: &str = "testhost";

pub const BIN: &str = env!("CARGO_BIN_EXE_hamail-spool");

/// A `hamail-spool` command for `spool` acting as `host`.
pub fn spool_cmd(spool: &Path, host: &str) -> Command {
    let mut c = Command::new(BIN);
    c.env("HAMAIL_HOSTNAME", host)
        .env_remove("HAMAIL_CRASH_AT")
        .arg("--spool")
        .arg(spool)
        .arg("--timeout")
        .arg("120")
        // A lock left by a process killed on another "host" is broken after 2 s.
        .arg("--stale-after")
        .arg("2");
    c
}

/// Run and return stdout; panics with stderr on failure.
pub fn run_ok(cmd: &mut Command) -> String {
    let out = cmd.output().expect("spawn hamail-spool");
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("utf-8 output")
}

pub fn run(cmd: &mut Command) -> Output {
    cmd.output().expect("spawn hamail-spool")
}

/// Append `data` as one message; returns (uidvalidity, uid).
pub fn append(spool: &Path, user: &str, data: &[u8]) -> (u32, u32) {
    use std::io::Write;
    let mut child: Child = spool_cmd(spool, HOST)
        .args(["append", "--user", user])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("spawn");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(data)
        .expect("write");
    let out = child.wait_with_output().expect("wait");
    assert!(out.status.success(), "append failed: {}", out.status);
    let text = String::from_utf8_lossy(&out.stdout);
    let w: Vec<&str> = text.split_whitespace().collect();
    (w[1].parse().expect("uv"), w[2].parse().expect("uid"))
}

/// One message as `list` prints it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listed {
    pub uid: u32,
    pub flags: String,
    pub size: u64,
}

/// (uidvalidity, uidnext, messages)
pub fn list(spool: &Path, user: &str) -> (u32, u32, Vec<Listed>) {
    let text = run_ok(spool_cmd(spool, HOST).args(["list", "--user", user]));
    let mut lines = text.lines();
    let head: Vec<&str> = lines.next().expect("header").split_whitespace().collect();
    let msgs = lines
        .map(|l| {
            let w: Vec<&str> = l.split_whitespace().collect();
            Listed {
                uid: w[0].parse().expect("uid"),
                flags: w[1].to_string(),
                size: w[2].parse().expect("size"),
            }
        })
        .collect();
    (
        head[1].parse().expect("uv"),
        head[3].parse().expect("next"),
        msgs,
    )
}

pub fn cat(spool: &Path, user: &str, uid: u32) -> Vec<u8> {
    let out = run(spool_cmd(spool, HOST).args(["cat", "--user", user, "--uid", &uid.to_string()]));
    assert!(
        out.status.success(),
        "cat {uid}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

/// `verify`: Ok(count of generated messages) or Err(problems).
pub fn verify(spool: &Path, user: &str) -> Result<usize, String> {
    let out = run(spool_cmd(spool, HOST).args(["verify", "--user", user]));
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    if out.status.success() {
        Ok(text
            .trim()
            .strip_prefix("ok ")
            .and_then(|n| n.parse().ok())
            .unwrap_or(usize::MAX))
    } else {
        Err(format!("{text}{}", String::from_utf8_lossy(&out.stderr)))
    }
}

pub fn mbox_path(spool: &Path, user: &str) -> PathBuf {
    spool.join("mail").join(user)
}

/// A plain message with a recognisable subject.
pub fn message(subject: &str) -> Vec<u8> {
    format!("From: a@example.test\r\nSubject: {subject}\r\n\r\nFrom the body of {subject}\r\n")
        .into_bytes()
}
