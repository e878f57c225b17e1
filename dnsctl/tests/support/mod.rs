//! Test harness for dnsctl: stand-in mail hosts (an SMTP banner and `/healthz` on a
//! loopback address each, switchable up and down), a `dnsctl serve` process with its own
//! config and state directory, the CLI, and `dig` for queries.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::io::{Read, Write};
use std::net::{Ipv4Addr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use hamail_storage::cluster::ClusterConfig;

pub const SMTP: u16 = 2525;
pub const HEALTH: u16 = 2080;
pub const DNS: u16 = 5353;

/// The `dnsctl` binary: cargo's for tests; for the bench examples, the one next to
/// the examples directory (`cargo build --release -p dnsctl` first).
pub fn dnsctl_bin() -> PathBuf {
    if let Some(p) = option_env!("CARGO_BIN_EXE_dnsctl") {
        return PathBuf::from(p);
    }
    let exe = std::env::current_exe().unwrap();
    exe.parent()
        .and_then(Path::parent)
        .map(|d| d.join("dnsctl"))
        .unwrap()
}

/// A loopback address unique to this test process and call.
pub fn fresh_ip() -> Ipv4Addr {
    static N: AtomicU32 = AtomicU32::new(1);
    let n = N.fetch_add(1, Ordering::SeqCst);
    let pid = std::process::id();
    Ipv4Addr::new(
        127,
        10 + (pid % 80) as u8,
        ((pid / 80) % 250) as u8,
        n as u8,
    )
}

/// A mail host stand-in: while up, port 2525 greets with `220` and port 2080 answers
/// `/healthz` with 200; while down, both ports refuse connections (as a dead host's do).
pub struct StandIn {
    pub ip: Ipv4Addr,
    up: Arc<AtomicBool>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl StandIn {
    pub fn start() -> StandIn {
        let ip = fresh_ip();
        let up = Arc::new(AtomicBool::new(true));
        let stop = Arc::new(AtomicBool::new(false));
        let (u, s) = (up.clone(), stop.clone());
        let thread = std::thread::spawn(move || serve(ip, u, s));
        let h = StandIn {
            ip,
            up,
            stop,
            thread: Some(thread),
        };
        assert!(wait_for(Duration::from_secs(5), || h.listening()));
        h
    }

    fn listening(&self) -> bool {
        std::net::TcpStream::connect((self.ip, SMTP)).is_ok()
    }

    pub fn set_up(&self, up: bool) {
        self.up.store(up, Ordering::SeqCst);
        // Wait until the listeners follow, so the test's clock starts at the change.
        assert!(wait_for(Duration::from_secs(5), || self.listening() == up));
    }
}

impl Drop for StandIn {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn serve(ip: Ipv4Addr, up: Arc<AtomicBool>, stop: Arc<AtomicBool>) {
    let mut listeners: Option<(TcpListener, TcpListener)> = None;
    while !stop.load(Ordering::SeqCst) {
        let want = up.load(Ordering::SeqCst);
        if want && listeners.is_none() {
            let smtp = TcpListener::bind((ip, SMTP)).unwrap();
            let http = TcpListener::bind((ip, HEALTH)).unwrap();
            smtp.set_nonblocking(true).unwrap();
            http.set_nonblocking(true).unwrap();
            listeners = Some((smtp, http));
        } else if !want {
            listeners = None;
        }
        if let Some((smtp, http)) = &listeners {
            if let Ok((mut s, _)) = smtp.accept() {
                let _ = s.write_all(b"220 standin ESMTP\r\n");
            }
            if let Ok((mut s, _)) = http.accept() {
                let _ = s.set_nonblocking(false);
                let _ = s.set_read_timeout(Some(Duration::from_secs(1)));
                let mut buf = [0u8; 512];
                let _ = s.read(&mut buf);
                let _ = s.write_all(
                    b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 16\r\nConnection: close\r\n\r\n{\"status\":\"ok\"}\n",
                );
            }
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Poll `f` until it is true or `timeout` passes.
pub fn wait_for(timeout: Duration, mut f: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if f() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A `dnsctl serve` on its own address, state directory and control socket, for the
/// given stand-in hosts (host1, host2, ... in order of priority).
pub struct Dnsctl {
    pub dir: tempfile::TempDir,
    pub config: PathBuf,
    pub ip: Ipv4Addr,
    child: Option<Child>,
}

impl Dnsctl {
    /// Write the config: `health` is the body of `[health]`, `dns_extra` more keys (or a
    /// `[dns.rfc2136]` table) for `[dns]`.
    pub fn new(hosts: &[&StandIn], health: &str, dns_extra: &str) -> Dnsctl {
        let dir = tempfile::tempdir().unwrap();
        let ip = fresh_ip();
        let root = dir.path().display();
        let text = ClusterConfig::builder(dir.path().join("spool"))
            .hosts(hosts.iter().map(|h| h.ip))
            .section(
                "auth",
                &format!("backend = \"file\"\npasswd_file = \"{root}/passwd\""),
            )
            .section(
                "listeners",
                &format!(
                    "smtp = {SMTP}\nhealth = {HEALTH}\nsubmission = 0\nsubmissions = 0\n\
                     imap = 0\nimaps = 0\npop3 = 0\npop3s = 0"
                ),
            )
            .section("health", health)
            .section(
                "dns",
                &format!(
                    "listen = \"{ip}:{DNS}\"\nstate_dir = \"{root}/state\"\n\
                     control_socket = \"{root}/dnsctl.sock\"\nprobe_timeout_ms = 500\n\
                     {dns_extra}"
                ),
            )
            .toml();
        let config = dir.path().join("hamail.toml");
        std::fs::write(&config, text).unwrap();
        Dnsctl {
            dir,
            config,
            ip,
            child: None,
        }
    }

    pub fn root(&self) -> &Path {
        self.dir.path()
    }

    /// Start `dnsctl serve` and wait until it answers SOA queries.
    pub fn start(&mut self) {
        self.start_until(|d| d.serial().is_some());
    }

    /// Start `dnsctl serve` in RFC 2136 mode (it serves nothing itself) and wait until
    /// its control socket answers.
    pub fn start_remote(&mut self) {
        self.start_until(|d| d.cli(&["status", "--json"]).status.success());
    }

    fn start_until(&mut self, ready: impl Fn(&Dnsctl) -> bool) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.root().join("dnsctl.log"))
            .unwrap();
        let child = Command::new(dnsctl_bin())
            .arg("--config")
            .arg(&self.config)
            .arg("serve")
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap();
        self.child = Some(child);
        let up = wait_for(Duration::from_secs(20), || ready(self));
        assert!(up, "dnsctl did not start:\n{}", self.log());
    }

    /// SIGTERM and wait.
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            unsafe { libc::kill(c.id() as i32, libc::SIGTERM) };
            let _ = c.wait();
        }
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.root().join("dnsctl.log")).unwrap_or_default()
    }

    /// Run the CLI with this config.
    pub fn cli(&self, args: &[&str]) -> Output {
        Command::new(dnsctl_bin())
            .arg("--config")
            .arg(&self.config)
            .args(args)
            .output()
            .unwrap()
    }

    /// `dnsctl status --json`, parsed.
    pub fn status(&self) -> serde_json::Value {
        let out = self.cli(&["status", "--json"]);
        assert!(out.status.success(), "{out:?}");
        serde_json::from_slice(&out.stdout).unwrap()
    }

    /// `dig +short` answer lines for `name type`.
    pub fn dig(&self, name: &str, rtype: &str) -> Vec<String> {
        dig(self.ip, &[name, rtype, "+short"])
            .lines()
            .map(str::to_string)
            .collect()
    }

    /// The SOA serial served, if the server answers.
    pub fn serial(&self) -> Option<u32> {
        self.dig("example.test", "SOA")
            .first()
            .and_then(|l| l.split_whitespace().nth(2))
            .and_then(|s| s.parse().ok())
    }

    /// MX targets, best first.
    pub fn mx(&self) -> Vec<String> {
        let mut v: Vec<(u32, String)> = self
            .dig("example.test", "MX")
            .iter()
            .filter_map(|l| {
                let (p, t) = l.split_once(' ')?;
                Some((p.parse().ok()?, t.trim_end_matches('.').to_string()))
            })
            .collect();
        v.sort();
        v.into_iter().map(|(_, t)| t).collect()
    }

    /// `mail.example.test` A.
    pub fn mail(&self) -> Option<String> {
        self.dig("mail.example.test", "A").first().cloned()
    }
}

impl Drop for Dnsctl {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Run `dig @ip -p DNS +norec +time=1 +tries=1 args...`; stdout.
pub fn dig(ip: Ipv4Addr, args: &[&str]) -> String {
    let out = Command::new("dig")
        .arg(format!("@{ip}"))
        .args(["-p", &DNS.to_string(), "+norec", "+time=1", "+tries=1"])
        .args(args)
        .output()
        .expect("dig (bind9-dnsutils) must be installed");
    String::from_utf8_lossy(&out.stdout).into_owned()
}
