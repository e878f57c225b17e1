//! Interoperability of hamail's mailbox locking with the other programs that write the same
//! mbox files: liblockfile's `dotlockfile` and Postfix (`local(8)` and `postlock(1)`).
//!
//! hamail takes the dotlock `<mbox>.lock` and then an fcntl write lock on the mbox (see
//! `src/lock/mod.rs`). These tests run the real `hamail-spool` binary and the real tools
//! as separate processes on one spool and prove, by timing and by the mailbox contents:
//!
//! - a dotlock held by `dotlockfile` makes a hamail append wait, and the append completes
//!   once it is removed;
//! - a lock held by hamail makes `dotlockfile` fail (`-r 0`) or wait until hamail releases it
//!   (liblockfile reads hamail's lock file as valid, also when checking the pid with `-p`);
//! - Postfix `local(8)` (`mailbox_delivery_lock = fcntl, dotlock`) does not write into the
//!   mbox while hamail holds the lock, delivers after the release, and hamail then indexes
//!   the foreign message with the next UID without disturbing its own UIDs or UIDVALIDITY;
//! - a mailbox locked by `postlock` (both locks, only fcntl, only the dotlock) makes a hamail
//!   append wait until postlock has let go.
//!
//! Each would fail if either lock were skipped or taken on a different file. Missing tools
//! (`liblockfile-bin`, `postfix`) or a non-root user make the tests fail, not skip: an
//! interoperability claim that silently went untested is worse than a red test. The Postfix
//! instance is private (storage/tests/support/postfix.sh) and always stopped, even on panic.
//!
//! Run with: `cargo test -p hamail-storage --test interop -- --test-threads=1`

// A test's job is to panic with a clear message when something is off.
#![allow(clippy::expect_used, clippy::unwrap_used)]

use std::fs;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_hamail-spool");
const POSTFIX_SH: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/support/postfix.sh");
const USER: &str = "alice";

// ---------------------------------------------------------------------------------------
// Environment checks
// ---------------------------------------------------------------------------------------

/// The full path of an executable, searched in PATH and the sbin directories (which a
/// non-login root shell may lack).
fn find_tool(name: &str) -> Option<PathBuf> {
    let path = std::env::var("PATH").unwrap_or_default();
    let found = path
        .split(':')
        .chain(["/usr/sbin", "/sbin", "/usr/bin", "/bin"])
        .filter(|d| !d.is_empty())
        .map(|d| Path::new(d).join(name))
        .find(|p| {
            fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        });
    found
}

/// Fail (never skip) when a tool the test needs is not installed.
fn require_tool(name: &str, package: &str) -> PathBuf {
    find_tool(name).unwrap_or_else(|| {
        panic!(
            "`{name}` is not installed, so this interoperability test cannot run. \
             Install it with: apt-get install {package}"
        )
    })
}

fn require_root() {
    let out = Command::new("id").arg("-u").output().expect("run `id -u`");
    let uid = String::from_utf8_lossy(&out.stdout).trim().to_string();
    assert_eq!(
        uid, "0",
        "this test must run as root: Postfix drops privileges to the recipient, and the test \
         creates the system user `{USER}` (uid is {uid})"
    );
}

// ---------------------------------------------------------------------------------------
// Scratch directories
// ---------------------------------------------------------------------------------------

/// A unique scratch directory (removed on drop) that the postfix user can traverse.
struct Scratch {
    dir: tempfile::TempDir,
}

impl Scratch {
    fn new(tag: &str) -> Scratch {
        let dir = tempfile::Builder::new()
            .prefix(&format!("hamail-interop-{tag}-"))
            .tempdir()
            .expect("create temp dir");
        // tempdirs are 0700; Postfix daemons and local(8) (running as alice) must get in.
        fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o755)).expect("chmod");
        let s = Scratch { dir };
        fs::create_dir_all(s.mail_dir()).expect("create spool/mail");
        fs::set_permissions(s.spool(), fs::Permissions::from_mode(0o755)).expect("chmod");
        s
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    fn spool(&self) -> PathBuf {
        self.path().join("spool")
    }

    fn mail_dir(&self) -> PathBuf {
        self.spool().join("mail")
    }

    fn mbox(&self) -> PathBuf {
        self.mail_dir().join(USER)
    }

    fn dotlock(&self) -> PathBuf {
        self.mail_dir().join(format!("{USER}.lock"))
    }

    fn mbox_len(&self) -> u64 {
        fs::metadata(self.mbox()).map_or(0, |m| m.len())
    }

    fn mbox_text(&self) -> String {
        String::from_utf8_lossy(&fs::read(self.mbox()).unwrap_or_default()).into_owned()
    }
}

// ---------------------------------------------------------------------------------------
// Child processes
// ---------------------------------------------------------------------------------------

/// A spawned child that is killed and reaped if the test ends (or panics) before it exits.
/// Its stdout lines arrive, time-stamped, through a channel.
struct Proc {
    name: String,
    child: Child,
    lines: Receiver<(String, Instant)>,
    seen: Vec<(String, Instant)>,
    exited: Option<(ExitStatus, Instant)>,
    stderr: Option<String>,
}

impl Proc {
    fn spawn(name: &str, cmd: &mut Command, stdin: Option<&[u8]>) -> Proc {
        cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
        cmd.stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        });
        let mut child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {name} ({cmd:?}): {e}"));
        if let Some(data) = stdin {
            let mut pipe = child.stdin.take().expect("stdin pipe");
            pipe.write_all(data).expect("write stdin");
            // Dropping the pipe closes it: the child sees EOF.
        }
        let stdout = child.stdout.take().expect("stdout pipe");
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send((line, Instant::now())).is_err() {
                    break;
                }
            }
        });
        Proc {
            name: name.to_string(),
            child,
            lines: rx,
            seen: Vec::new(),
            exited: None,
            stderr: None,
        }
    }

    fn drain(&mut self) {
        while let Ok(l) = self.lines.try_recv() {
            self.seen.push(l);
        }
    }

    /// When the child printed `want` (waiting up to `timeout` for it).
    fn wait_line(&mut self, want: &str, timeout: Duration) -> Instant {
        let deadline = Instant::now() + timeout;
        loop {
            self.drain();
            if let Some((_, at)) = self.seen.iter().find(|(l, _)| l == want) {
                return *at;
            }
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left.min(Duration::from_millis(50))) {
                Ok(l) => self.seen.push(l),
                Err(RecvTimeoutError::Timeout) if Instant::now() < deadline => {}
                Err(_) => panic!(
                    "did not print {want:?} within {timeout:?}: {}",
                    self.report()
                ),
            }
        }
    }

    /// Whether (and when) the child printed `want` so far.
    fn printed(&mut self, want: &str) -> Option<Instant> {
        self.drain();
        self.seen.iter().find(|(l, _)| l == want).map(|(_, at)| *at)
    }

    fn stdout(&mut self) -> Vec<String> {
        self.drain();
        self.seen.iter().map(|(l, _)| l.clone()).collect()
    }

    /// Non-blocking: the exit status and when it was first observed.
    fn try_exit(&mut self) -> Option<(ExitStatus, Instant)> {
        if self.exited.is_none() {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                self.exited = Some((status, Instant::now()));
            }
        }
        self.exited
    }

    fn is_running(&mut self) -> bool {
        self.try_exit().is_none()
    }

    /// Wait for the child to exit, polling every 5 ms so the observed exit time is close to
    /// the real one. Panics (and the drop kills the child) after `timeout`.
    fn wait_exit(&mut self, timeout: Duration) -> (ExitStatus, Instant) {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(e) = self.try_exit() {
                // Give the reader thread a moment to deliver the last lines.
                std::thread::sleep(Duration::from_millis(20));
                self.drain();
                return e;
            }
            if Instant::now() >= deadline {
                panic!("still running after {timeout:?}: {}", self.report());
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// Name, exit status, stdout and (once it exited) stderr, for failure messages.
    fn report(&mut self) -> String {
        let exit = self.try_exit();
        if exit.is_some() && self.stderr.is_none() {
            let mut err = String::new();
            if let Some(mut pipe) = self.child.stderr.take() {
                let _ = pipe.read_to_string(&mut err);
            }
            self.stderr = Some(err);
        }
        let stdout = self.stdout();
        format!(
            "{}: exit {:?}, stdout {stdout:?}, stderr {:?}",
            self.name,
            exit.map(|e| e.0),
            self.stderr.as_deref().unwrap_or("<still running>")
        )
    }

    /// Wait for exit and require success.
    fn expect_success(&mut self, timeout: Duration) -> Instant {
        let (status, at) = self.wait_exit(timeout);
        if !status.success() {
            panic!("failed: {}", self.report());
        }
        at
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if self.try_exit().is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

fn run(cmd: &mut Command) -> Output {
    cmd.output()
        .unwrap_or_else(|e| panic!("could not run {cmd:?}: {e}"))
}

fn describe(out: &Output) -> String {
    format!(
        "{}; stdout {:?}; stderr {:?}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

// ---------------------------------------------------------------------------------------
// hamail-spool
// ---------------------------------------------------------------------------------------

fn hamail(s: &Scratch) -> Command {
    let mut c = Command::new(BIN);
    c.arg("--spool").arg(s.spool()).args(["--timeout", "30"]);
    c
}

/// Parse the "uid V U" line of `hamail-spool append`.
fn parse_uid_line(stdout: &str) -> (u32, u32) {
    let words: Vec<&str> = stdout.split_whitespace().collect();
    match words.as_slice() {
        ["uid", v, u] => (v.parse().expect("uidvalidity"), u.parse().expect("uid")),
        _ => panic!("unexpected append output {stdout:?}"),
    }
}

/// Append `msg` to alice's INBOX and wait for it; returns (UIDVALIDITY, UID).
fn append(s: &Scratch, msg: &[u8]) -> (u32, u32) {
    let mut p = spawn_append(s, msg);
    p.expect_success(Duration::from_secs(40));
    parse_uid_line(&p.stdout().join("\n"))
}

fn spawn_append(s: &Scratch, msg: &[u8]) -> Proc {
    let mut c = hamail(s);
    c.args(["append", "--user", USER, "--sender", "hamail@interop.test"]);
    Proc::spawn("hamail-spool append", &mut c, Some(msg))
}

/// `hamail-spool hold-lock`, returned once it printed "locked" (with that time).
fn hold_lock(s: &Scratch, seconds: u32) -> (Proc, Instant) {
    let mut c = hamail(s);
    c.args([
        "hold-lock",
        "--user",
        USER,
        "--seconds",
        &seconds.to_string(),
    ]);
    let mut p = Proc::spawn("hamail-spool hold-lock", &mut c, None);
    let at = p.wait_line("locked", Duration::from_secs(30));
    (p, at)
}

#[derive(Debug, PartialEq, Eq)]
struct Listing {
    uidvalidity: u32,
    uidnext: u32,
    /// (UID, FLAGS, SIZE)
    messages: Vec<(u32, String, u64)>,
}

fn list(s: &Scratch) -> Listing {
    let out = run(hamail(s).args(["list", "--user", USER]));
    assert!(
        out.status.success(),
        "hamail-spool list: {}",
        describe(&out)
    );
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let mut lines = text.lines();
    let head: Vec<&str> = lines.next().unwrap_or("").split_whitespace().collect();
    let (uidvalidity, uidnext, count) = match head.as_slice() {
        ["uidvalidity", v, "uidnext", n, "count", c] => (
            v.parse().expect("uidvalidity"),
            n.parse().expect("uidnext"),
            c.parse::<usize>().expect("count"),
        ),
        _ => panic!("unexpected list output {text:?}"),
    };
    let messages: Vec<(u32, String, u64)> = lines
        .map(|l| {
            let w: Vec<&str> = l.split_whitespace().collect();
            assert!(w.len() >= 3, "unexpected list line {l:?} in {text:?}");
            (
                w[0].parse().expect("uid"),
                w[1].to_string(),
                w[2].parse().expect("size"),
            )
        })
        .collect();
    assert_eq!(
        messages.len(),
        count,
        "count header disagrees with lines: {text:?}"
    );
    Listing {
        uidvalidity,
        uidnext,
        messages,
    }
}

fn cat(s: &Scratch, uid: u32) -> Vec<u8> {
    let out = run(hamail(s).args(["cat", "--user", USER, "--uid", &uid.to_string()]));
    assert!(
        out.status.success(),
        "hamail-spool cat --uid {uid}: {}",
        describe(&out)
    );
    out.stdout
}

fn uids(l: &Listing) -> Vec<u32> {
    l.messages.iter().map(|m| m.0).collect()
}

/// A message with a token no other test or run uses.
fn message(tag: &str) -> (String, Vec<u8>) {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    let token = format!("interop-{tag}-{}-{nanos}", std::process::id());
    let msg = format!(
        "From: hamail@interop.test\nTo: {USER}@interop.test\nSubject: {token}\n\n\
         body of {token}\nFrom the start of a line\n"
    );
    (token, msg.into_bytes())
}

// ---------------------------------------------------------------------------------------
// Postfix
// ---------------------------------------------------------------------------------------

/// A private Postfix instance under `<scratch>/pf`, stopped on drop (also on panic).
struct Postfix {
    dir: PathBuf,
    port: u16,
    running: bool,
}

impl Postfix {
    fn require_installed() {
        for tool in ["postfix", "postconf", "postlock"] {
            require_tool(tool, "postfix");
        }
    }

    /// Write the configuration and start the daemons.
    fn up(s: &Scratch) -> Postfix {
        Postfix::setup(s, "up")
    }

    /// Only write the configuration (enough for `postlock -c`).
    fn config(s: &Scratch) -> Postfix {
        Postfix::setup(s, "config")
    }

    fn setup(s: &Scratch, verb: &str) -> Postfix {
        Postfix::require_installed();
        let pf = Postfix {
            dir: s.path().join("pf"),
            port: free_port(),
            running: verb == "up",
        };
        let out = run(Command::new("bash")
            .arg(POSTFIX_SH)
            .arg(verb)
            .arg(&pf.dir)
            .arg(s.mail_dir())
            .arg(pf.port.to_string()));
        assert!(
            out.status.success(),
            "{POSTFIX_SH} {verb} failed: {}\nmaillog:\n{}",
            describe(&out),
            pf.maillog()
        );
        pf
    }

    fn etc(&self) -> PathBuf {
        self.dir.join("etc")
    }

    fn maillog(&self) -> String {
        fs::read_to_string(self.dir.join("log/maillog")).unwrap_or_default()
    }

    /// Send one message over SMTP; returns the Postfix queue id.
    fn send(&self, from: &str, to: &str, data: &[u8]) -> String {
        let stream = TcpStream::connect(("127.0.0.1", self.port)).expect("connect to postfix");
        stream
            .set_read_timeout(Some(Duration::from_secs(30)))
            .expect("timeout");
        let mut w = stream.try_clone().expect("clone stream");
        let mut r = BufReader::new(stream);
        let mut reply = |expect: &str| -> String {
            let mut all = String::new();
            loop {
                let mut line = String::new();
                r.read_line(&mut line).expect("read SMTP reply");
                all.push_str(&line);
                // "250-..." continues, "250 ..." ends a reply.
                if line.len() < 4 || line.as_bytes()[3] != b'-' {
                    break;
                }
            }
            assert!(
                all.starts_with(expect),
                "SMTP: expected {expect}, got {all:?}"
            );
            all
        };
        reply("220");
        let mut cmd = |line: String, expect: &str| -> String {
            w.write_all(line.as_bytes()).expect("write SMTP");
            reply(expect)
        };
        cmd("EHLO client.interop.test\r\n".into(), "250");
        cmd(format!("MAIL FROM:<{from}>\r\n"), "250");
        cmd(format!("RCPT TO:<{to}>\r\n"), "250");
        cmd("DATA\r\n".into(), "354");
        let mut body = String::new();
        for line in String::from_utf8_lossy(data).lines() {
            if line.starts_with('.') {
                body.push('.');
            }
            body.push_str(line);
            body.push_str("\r\n");
        }
        body.push_str(".\r\n");
        let done = cmd(body, "250");
        cmd("QUIT\r\n".into(), "221");
        // "250 2.0.0 Ok: queued as 4ABCDEF"
        done.trim()
            .rsplit(' ')
            .next()
            .expect("queue id")
            .to_string()
    }

    /// Wait until the maillog has a line with all of `needles`; returns it.
    fn wait_log(&self, needles: &[&str], timeout: Duration) -> String {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(line) = self.find_log(needles) {
                return line;
            }
            assert!(
                Instant::now() < deadline,
                "no maillog line with {needles:?} within {timeout:?}; maillog:\n{}",
                self.maillog()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn find_log(&self, needles: &[&str]) -> Option<String> {
        self.maillog()
            .lines()
            .find(|l| needles.iter().all(|n| l.contains(n)))
            .map(str::to_string)
    }
}

impl Drop for Postfix {
    fn drop(&mut self) {
        if self.running {
            let out = Command::new("bash")
                .arg(POSTFIX_SH)
                .arg("down")
                .arg(&self.dir)
                .output();
            if let Ok(out) = out {
                if !out.status.success() {
                    eprintln!("postfix.sh down {}: {}", self.dir.display(), describe(&out));
                }
            }
        }
    }
}

/// A TCP port on 127.0.0.1 that nothing listens on right now.
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("bind 127.0.0.1:0")
        .port()
}

// ---------------------------------------------------------------------------------------
// The tests
// ---------------------------------------------------------------------------------------

/// `dotlockfile -l -p` holds alice.lock: a hamail append must wait (not write into the mbox)
/// until `dotlockfile -u` removes it, then complete with the next UID.
#[test]
fn dotlockfile_holding_the_lock_makes_hamail_wait() {
    let dotlockfile = require_tool("dotlockfile", "liblockfile-bin");
    let s = Scratch::new("dlf-holds");
    let (_, first) = message("first");
    let (v, uid) = append(&s, &first);
    assert_eq!(uid, 1);
    let len_before = s.mbox_len();

    // -p writes the pid of the calling process (this test, alive) into the lock.
    let out = run(Command::new(&dotlockfile)
        .args(["-l", "-p", "-r", "0"])
        .arg(s.dotlock()));
    assert!(out.status.success(), "dotlockfile -l: {}", describe(&out));
    assert!(
        s.dotlock().exists(),
        "dotlockfile reported success but no lock file"
    );

    let (token, msg) = message("waits-for-dotlockfile");
    let mut appender = spawn_append(&s, &msg);
    std::thread::sleep(Duration::from_millis(1500));
    assert!(
        appender.is_running(),
        "hamail append finished while dotlockfile held {}: {}",
        s.dotlock().display(),
        appender.report()
    );
    assert_eq!(
        s.mbox_len(),
        len_before,
        "hamail wrote to the mbox under dotlockfile's lock"
    );
    assert!(!s.mbox_text().contains(&token));
    let during = list(&s);
    assert_eq!(
        uids(&during),
        vec![1],
        "no new message may be visible yet: {during:?}"
    );

    let out = run(Command::new(&dotlockfile).arg("-u").arg(s.dotlock()));
    assert!(out.status.success(), "dotlockfile -u: {}", describe(&out));

    appender.expect_success(Duration::from_secs(20));
    assert_eq!(parse_uid_line(&appender.stdout().join("\n")), (v, 2));
    let after = list(&s);
    assert_eq!(after.uidvalidity, v);
    assert_eq!((uids(&after), after.uidnext), (vec![1, 2], 3), "{after:?}");
    assert_eq!(cat(&s, 2), msg);
    assert_eq!(cat(&s, 1), first);
    assert!(!s.dotlock().exists(), "hamail left its dotlock behind");
}

/// hamail holds the lock: `dotlockfile -r 0` must fail at once (with and without the pid
/// check), and a retrying `dotlockfile` must get the lock only after hamail released it.
#[test]
fn hamail_holding_the_lock_makes_dotlockfile_wait() {
    let dotlockfile = require_tool("dotlockfile", "liblockfile-bin");
    let s = Scratch::new("hamail-holds");
    const HOLD: u32 = 3;
    let (mut holder, locked_at) = hold_lock(&s, HOLD);
    let hamail_lock = fs::read_to_string(s.dotlock()).expect("hamail's dotlock exists");

    for extra in [&[][..], &["-p"][..]] {
        let out = run(Command::new(&dotlockfile)
            .args(["-l", "-r", "0"])
            .args(extra)
            .arg(s.dotlock()));
        assert!(
            !out.status.success(),
            "dotlockfile -r 0 {extra:?} got the lock hamail holds: {}",
            describe(&out)
        );
        assert_eq!(
            fs::read_to_string(s.dotlock()).ok().as_deref(),
            Some(hamail_lock.as_str()),
            "dotlockfile {extra:?} replaced or removed hamail's lock file"
        );
    }
    assert!(
        holder.is_running(),
        "hold-lock ended before the checks were done"
    );

    // Retry once a second (-i 1), up to 10 times.
    let mut c = Command::new(&dotlockfile);
    c.args(["-l", "-r", "10", "-i", "1"]).arg(s.dotlock());
    let mut waiter = Proc::spawn("dotlockfile -r 10", &mut c, None);
    let got_at = waiter.expect_success(Duration::from_secs(30));
    let held_for = got_at.duration_since(locked_at);

    // hamail sleeps HOLD s after printing "locked" before it lets go.
    assert!(
        held_for >= Duration::from_secs(HOLD.into()) - Duration::from_millis(100),
        "dotlockfile got the lock {held_for:?} after hamail took it, before hamail's \
         {HOLD} s hold ended"
    );
    let released_at = holder.wait_line("released", Duration::from_secs(10));
    holder.expect_success(Duration::from_secs(10));
    // dotlockfile polls once a second, so it cannot have won a race with the "released"
    // line by more than scheduling noise; and it did get the lock soon after the release.
    assert!(
        got_at + Duration::from_millis(250) >= released_at,
        "dotlockfile returned {:?} before hamail printed \"released\"",
        released_at - got_at
    );
    assert!(
        got_at <= released_at + Duration::from_secs(3),
        "dotlockfile took {:?} after the release to get the lock",
        got_at - released_at
    );
    let now = fs::read_to_string(s.dotlock()).expect("dotlockfile's lock exists");
    assert_ne!(now, hamail_lock, "the lock file is still hamail's");

    let out = run(Command::new(&dotlockfile).arg("-u").arg(s.dotlock()));
    assert!(out.status.success(), "dotlockfile -u: {}", describe(&out));
    assert!(!s.dotlock().exists());
}

/// Postfix local(8) delivers into the mbox hamail uses: while hamail holds the lock the
/// delivery waits (the mbox does not change although Postfix is delivering), afterwards the
/// message arrives, and hamail indexes it as UID 2 after its own UID 1, same UIDVALIDITY.
#[test]
fn postfix_local_waits_for_hamail_lock_and_hamail_indexes_its_mail() {
    require_root();
    let s = Scratch::new("postfix-local");
    let postfix = Postfix::up(&s);

    let (_, first) = message("before-postfix");
    let (v, uid) = append(&s, &first);
    assert_eq!(uid, 1);
    let before = list(&s);
    assert_eq!(uids(&before), vec![1]);

    const HOLD: u32 = 6;
    let (mut holder, locked_at) = hold_lock(&s, HOLD);
    let len_held = s.mbox_len();

    let (token, pf_msg) = message("via-postfix");
    let sent_at = Instant::now();
    let qid = postfix.send("bob@remote.test", &format!("{USER}@interop.test"), &pf_msg);
    // qmgr moved it to the active queue: local(8) is now trying to deliver it.
    postfix.wait_log(
        &[&format!("{qid}: from=<bob@remote.test>"), "queue active"],
        Duration::from_secs(5),
    );

    // Watch the mbox until shortly before hamail lets go (it sleeps HOLD s after "locked").
    let watch_until = locked_at + Duration::from_secs(HOLD.into()) - Duration::from_millis(300);
    assert!(
        watch_until >= sent_at + Duration::from_secs(3),
        "setup took too long: only {:?} of the hold left to watch",
        watch_until.saturating_duration_since(sent_at)
    );
    while Instant::now() < watch_until {
        assert_eq!(
            s.mbox_len(),
            len_held,
            "the mbox changed while hamail held the lock; maillog:\n{}",
            postfix.maillog()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(
        holder.printed("released").is_none(),
        "hold-lock released too early"
    );
    assert!(
        !s.mbox_text().contains(&token),
        "Postfix delivered under hamail's lock"
    );
    assert!(
        postfix.find_log(&[&qid, "status=sent"]).is_none(),
        "Postfix reports delivery while hamail held the lock:\n{}",
        postfix.maillog()
    );

    let released_at = holder.wait_line("released", Duration::from_secs(10));
    holder.expect_success(Duration::from_secs(10));

    // Postfix retries the lock about once a second (deliver_lock_delay).
    let deadline = released_at + Duration::from_secs(30);
    while !s.mbox_text().contains(&token) {
        assert!(
            Instant::now() < deadline,
            "the Postfix message did not arrive within 30 s of the release; maillog:\n{}",
            postfix.maillog()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let sent = postfix.wait_log(&[&qid, "status=sent"], Duration::from_secs(10));
    assert!(
        sent.contains("delivered to mailbox"),
        "unexpected delivery: {sent}"
    );

    let after = list(&s);
    assert_eq!(
        after.uidvalidity, v,
        "UIDVALIDITY changed: {before:?} -> {after:?}"
    );
    assert_eq!((uids(&after), after.uidnext), (vec![1, 2], 3), "{after:?}");
    assert_eq!(
        after.messages[0], before.messages[0],
        "hamail's message changed"
    );
    assert_eq!(cat(&s, 1), first);
    let pf = String::from_utf8_lossy(&cat(&s, 2)).into_owned();
    assert!(
        pf.contains(&format!("Subject: {token}")),
        "UID 2 is not the Postfix message: {pf:?}"
    );
    assert!(pf.contains("Delivered-To: alice@interop.test"), "{pf:?}");
    // local(8) quotes body lines starting with "From "; hamail must not unquote them into a
    // new message (the count above) and must keep the rest of the body.
    assert!(pf.contains(&format!("body of {token}")), "{pf:?}");

    // The index is consistent from now on: the next hamail append gets UID 3.
    let (_, third) = message("after-postfix");
    assert_eq!(append(&s, &third), (v, 3));
    let last = list(&s);
    assert_eq!((uids(&last), last.uidnext), (vec![1, 2, 3], 4), "{last:?}");
    assert_eq!(
        last.messages[1], after.messages[1],
        "the Postfix message changed"
    );
    assert_eq!(cat(&s, 3), third);
}

/// `postlock` holds the mailbox (with the configured "fcntl, dotlock", then each lock alone):
/// a hamail append started meanwhile must not complete until postlock's command ended.
#[test]
fn postlock_holding_the_mailbox_makes_hamail_wait() {
    require_root();
    let s = Scratch::new("postlock");
    let postfix = Postfix::config(&s);
    let postlock = require_tool("postlock", "postfix");

    let (_, first) = message("before-postlock");
    let (v, uid) = append(&s, &first);
    assert_eq!(uid, 1);

    const HOLD: u64 = 3;
    // None: mailbox_delivery_lock from main.cf ("fcntl, dotlock").
    for (expected_uid, style) in (2..).zip([None, Some("fcntl"), Some("dotlock")]) {
        let mut c = Command::new(&postlock);
        c.arg("-c").arg(postfix.etc());
        if let Some(style) = style {
            c.args(["-l", style]);
        }
        // postlock runs the command directly; the shell only tells us when the lock is held.
        c.arg(s.mbox())
            .args(["sh", "-c", &format!("echo locked; exec sleep {HOLD}")]);
        let mut locker = Proc::spawn(&format!("postlock {style:?}"), &mut c, None);
        let locked_at = locker.wait_line("locked", Duration::from_secs(10));
        if style != Some("fcntl") {
            assert!(s.dotlock().exists(), "postlock {style:?} holds no dotlock");
        }
        let len_held = s.mbox_len();

        let (token, msg) = message("waits-for-postlock");
        let mut appender = spawn_append(&s, &msg);
        std::thread::sleep(Duration::from_millis(1500));
        assert!(
            appender.is_running(),
            "hamail append finished while postlock {style:?} held the mailbox: {}",
            appender.report()
        );
        assert_eq!(
            s.mbox_len(),
            len_held,
            "hamail wrote under postlock {style:?}"
        );
        assert!(!s.mbox_text().contains(&token));

        let postlock_done = locker.expect_success(Duration::from_secs(20));
        let append_done = appender.expect_success(Duration::from_secs(30));
        assert!(
            append_done.duration_since(locked_at)
                >= Duration::from_secs(HOLD) - Duration::from_millis(100),
            "hamail append (postlock {style:?}) finished {:?} after the lock was taken, \
             inside the {HOLD} s hold",
            append_done.duration_since(locked_at)
        );
        assert!(
            append_done + Duration::from_millis(100) >= postlock_done,
            "hamail append finished {:?} before postlock {style:?} exited",
            postlock_done - append_done
        );
        assert_eq!(
            parse_uid_line(&appender.stdout().join("\n")),
            (v, expected_uid),
            "postlock {style:?}"
        );
        assert_eq!(cat(&s, expected_uid), msg);
    }
    let l = list(&s);
    assert_eq!(l.uidvalidity, v);
    assert_eq!(uids(&l), vec![1, 2, 3, 4], "{l:?}");
    assert_eq!(cat(&s, 1), first);
    assert!(!s.dotlock().exists(), "a dotlock was left behind");
}
