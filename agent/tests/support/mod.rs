//! Test harness: a real `hamail-agent` process (or several, on one spool) with its own
//! loopback address, config, certificate, passwd and aliases files, plus a raw SMTP client
//! and mailbox readers. Each lab gets a distinct 127.x.y.z so tests run in parallel on the
//! fixed ports below.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

/// Logins and RCPT checks through Python's client libraries.
pub mod accounts;
/// Test doubles for the relay tests: an authoritative DNS responder and an SMTP sink.
pub mod dns;
pub mod sink;
/// A real OpenLDAP server (slapd) with its own config, on loopback.
pub mod slapd;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use hamail_storage::cluster::ClusterConfig;
use hamail_storage::{LockOptions, Spool};

pub const SMTP: u16 = 2525;
pub const SUBMISSION: u16 = 2587;
pub const SUBMISSIONS: u16 = 2465;
pub const HEALTH: u16 = 2080;
pub const IMAP: u16 = 2143;
pub const IMAPS: u16 = 2993;
pub const POP3: u16 = 2110;
pub const POP3S: u16 = 2995;

pub const USERS: &[(&str, &str)] = &[
    ("alice", "alice-pw"),
    ("bob", "bob-pw"),
    ("carol", "carol-pw"),
];

/// A loopback address no other lab or server of this test process uses.
pub fn fresh_ip() -> Ipv4Addr {
    next_ip()
}

/// A fresh loopback address per host of per lab.
fn next_ip() -> Ipv4Addr {
    static N: AtomicU32 = AtomicU32::new(1);
    let n = N.fetch_add(1, Ordering::SeqCst);
    let pid = std::process::id();
    Ipv4Addr::new(
        127,
        100 + (pid % 150) as u8,
        ((pid / 150) % 250) as u8,
        n as u8,
    )
}

pub struct Lab {
    pub dir: tempfile::TempDir,
    pub config: PathBuf,
    pub spool: PathBuf,
    pub ips: Vec<IpAddr>,
    agents: Vec<Option<Child>>,
}

impl Lab {
    /// `hosts` agents' config (not started); `extra` is appended to hamail.toml. If
    /// `extra` has an `[auth]` section, it replaces the default `file` backend.
    pub fn new(hosts: usize, extra: &str) -> Lab {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        let spool = root.join("spool");
        let ips: Vec<IpAddr> = (0..hosts).map(|_| IpAddr::V4(next_ip())).collect();
        let cert = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap();
        std::fs::write(root.join("cert.pem"), cert.cert.pem()).unwrap();
        std::fs::write(root.join("key.pem"), cert.signing_key.serialize_pem()).unwrap();
        let passwd: String = USERS
            .iter()
            .map(|(u, p)| format!("{u}:{{PLAIN}}{p}:1000:1000::/home/{u}:/bin/false\n"))
            .collect();
        std::fs::write(root.join("passwd"), passwd).unwrap();
        std::fs::write(
            root.join("aliases"),
            "sales: alice, bob\nfriend: carol@example.test\nforward: someone@remote.test, alice\n",
        )
        .unwrap();
        let r = root.display();
        let mut config = ClusterConfig::builder(&spool)
            .domains(&["example.test", "example.org"])
            .hosts(&ips)
            .section(
                "auth",
                &format!(
                    "backend = \"file\"\npasswd_file = \"{r}/passwd\"\n\
                     aliases_file = \"{r}/aliases\""
                ),
            )
            .section(
                "tls",
                &format!(
                    "cert = \"{r}/cert.pem\"\nkey = \"{r}/key.pem\"\nallow_plaintext_auth = false"
                ),
            )
            .section("locking", "timeout_secs = 10\nstale_after_secs = 30")
            .section(
                "listeners",
                &format!(
                    "smtp = {SMTP}\nsubmission = {SUBMISSION}\nsubmissions = {SUBMISSIONS}\n\
                     health = {HEALTH}\nimap = {IMAP}\nimaps = {IMAPS}\npop3 = {POP3}\n\
                     pop3s = {POP3S}"
                ),
            );
        // An `[auth]` or `[listeners]` in `extra` replaces the one here.
        for table in ["auth", "listeners"] {
            if extra.contains(&format!("[{table}]")) {
                config = config.without(table);
            }
        }
        let text = config.toml() + extra;
        let config = root.join("hamail.toml");
        std::fs::write(&config, text).unwrap();
        Lab {
            config,
            spool,
            ips,
            agents: (0..hosts).map(|_| None).collect(),
            dir,
        }
    }

    /// Replace text in hamail.toml (before starting agents).
    pub fn edit_config(&self, from: &str, to: &str) {
        let text = std::fs::read_to_string(&self.config).unwrap();
        assert!(text.contains(from), "{from:?} not in config");
        std::fs::write(&self.config, text.replace(from, to)).unwrap();
    }

    pub fn root(&self) -> &Path {
        self.dir.path()
    }

    pub fn addr(&self, host: usize, port: u16) -> SocketAddr {
        SocketAddr::new(self.ips[host], port)
    }

    /// Start host `host` (0-based) with extra environment; waits until `/healthz` is 200.
    pub fn start(&mut self, host: usize, env: &[(&str, &str)]) {
        self.start_wrapped(host, env, &[]);
    }

    /// Like [`start`](Self::start), with the agent's command line appended to `prefix`
    /// (a program that ends by exec-ing its arguments, such as `unshare -m sh -c '...;
    /// exec "$0" "$@"'`), so a test can give the agent a private view of the system.
    /// The wrapper must exec, not fork: the lab signals and kills the process it started.
    pub fn start_wrapped(&mut self, host: usize, env: &[(&str, &str)], prefix: &[&str]) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.root().join(format!("host{}.log", host + 1)))
            .unwrap();
        let agent = env!("CARGO_BIN_EXE_hamail-agent");
        let mut cmd = match prefix.split_first() {
            Some((program, args)) => {
                let mut c = Command::new(program);
                c.args(args).arg(agent);
                c
            }
            None => Command::new(agent),
        };
        cmd.arg("--config")
            .arg(&self.config)
            .arg("--host")
            .arg(format!("host{}", host + 1))
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log);
        for (k, v) in env {
            cmd.env(k, v);
        }
        let child = cmd.spawn().unwrap();
        self.agents[host] = Some(child);
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(status) = self.agents[host].as_mut().unwrap().try_wait().unwrap() {
                panic!("agent exited early: {status}\n{}", self.log(host));
            }
            if http_get(self.addr(host, HEALTH), "/healthz").is_some_and(|(code, _)| code == 200) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "agent did not become healthy\n{}",
                self.log(host)
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn log(&self, host: usize) -> String {
        std::fs::read_to_string(self.root().join(format!("host{}.log", host + 1)))
            .unwrap_or_default()
    }

    pub fn pid(&self, host: usize) -> u32 {
        self.agents[host].as_ref().unwrap().id()
    }

    pub fn signal(&mut self, host: usize, sig: i32) {
        let pid = self.pid(host) as i32;
        unsafe { libc::kill(pid, sig) };
    }

    /// SIGKILL and reap.
    pub fn kill(&mut self, host: usize) {
        if let Some(mut c) = self.agents[host].take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Wait for the agent to exit on its own; returns its exit status.
    pub fn wait_exit(&mut self, host: usize, timeout: Duration) -> std::process::ExitStatus {
        let deadline = Instant::now() + timeout;
        let child = self.agents[host].as_mut().unwrap();
        loop {
            if let Some(status) = child.try_wait().unwrap() {
                self.agents[host] = None;
                return status;
            }
            assert!(Instant::now() < deadline, "agent did not exit");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn spool(&self) -> Spool {
        Spool::open(&self.spool, LockOptions::default()).unwrap()
    }

    /// Every message in `user`'s INBOX, in order.
    pub fn messages(&self, user: &str) -> Vec<Vec<u8>> {
        let mbox = self.spool().inbox(user).unwrap();
        if !mbox.exists() {
            return Vec::new();
        }
        let read = mbox.read().unwrap();
        let metas: Vec<_> = read.index().visible().cloned().collect();
        metas
            .iter()
            .map(|m| read.read_message(m).unwrap())
            .collect()
    }

    /// Number of queue entries.
    pub fn queued(&self) -> usize {
        self.spool().queue().list().unwrap().len()
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        for i in 0..self.agents.len() {
            self.kill(i);
        }
    }
}

/// One HTTP GET; `(status, body)`.
pub fn http_get(addr: SocketAddr, path: &str) -> Option<(u16, String)> {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_millis(500)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(s, "GET {path} HTTP/1.1\r\nHost: x\r\n\r\n").ok()?;
    let mut text = String::new();
    s.read_to_string(&mut text).ok()?;
    let code = text.split_whitespace().nth(1)?.parse().ok()?;
    let body = text.split_once("\r\n\r\n").map(|(_, b)| b.to_string())?;
    Some((code, body))
}

/// A raw SMTP client: bytes in, complete replies out.
pub struct Raw {
    reader: BufReader<TcpStream>,
    pub stream: TcpStream,
}

impl Raw {
    /// Connect and read the greeting.
    pub fn connect(addr: SocketAddr) -> (Raw, u16) {
        let stream = TcpStream::connect(addr).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(20)))
            .unwrap();
        let mut raw = Raw {
            reader: BufReader::new(stream.try_clone().unwrap()),
            stream,
        };
        let (code, _) = raw.reply();
        (raw, code)
    }

    pub fn send(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).unwrap();
    }

    /// Read one complete (possibly multi-line) reply; code 0 if the server closed.
    pub fn reply(&mut self) -> (u16, String) {
        let mut all = String::new();
        loop {
            let mut line = String::new();
            match self.reader.read_line(&mut line) {
                Ok(0) | Err(_) => return (0, all),
                Ok(_) => {}
            }
            all.push_str(&line);
            if line.len() < 4 || line.as_bytes()[3] != b'-' {
                let code = line.get(..3).and_then(|c| c.parse().ok()).unwrap_or(0);
                return (code, all);
            }
        }
    }

    /// Send a command line (CRLF added) and read its reply.
    pub fn cmd(&mut self, line: &str) -> (u16, String) {
        self.send(format!("{line}\r\n").as_bytes());
        self.reply()
    }

    /// True if the server closed the connection (EOF on read).
    pub fn closed(&mut self) -> bool {
        let mut buf = [0u8; 1];
        matches!(self.reader.read(&mut buf), Ok(0) | Err(_))
    }
}

/// Run a Python script with arguments; returns stdout, panics with stderr on failure.
pub fn python(script: &str, args: &[&str]) -> String {
    let out = Command::new("python3")
        .arg("-c")
        .arg(script)
        .args(args)
        .output()
        .expect("python3");
    assert!(
        out.status.success(),
        "python failed: {}\nstdout:\n{}\nstderr:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Poll `f` until it is true or `timeout` passes.
pub fn wait_for(timeout: Duration, mut f: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if f() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    f()
}

/// Body text of a stored message (after the first blank line).
pub fn body(msg: &[u8]) -> String {
    let text = String::from_utf8_lossy(msg);
    text.split_once("\n\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default()
}
