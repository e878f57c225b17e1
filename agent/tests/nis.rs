//! The `nis` backend against a real ypserv: logins over SMTP AUTH, IMAP and POP3 for
//! every hash kind, recipients and `mail.aliases`, two agents on one directory, and the
//! temporary failures once ypserv is gone.
//!
//! rpcbind must own port 111 and ypserv needs a NIS domainname, neither of which a test
//! may impose on the machine, so both run in a private network + UTS + mount namespace
//! (`hmnis<pid>`) reached over a veth pair with a /30 of its own. Needs root, `ip`,
//! `unshare`, rpcbind and ypserv (the `nis` package).

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use support::accounts::{accepted, logins, rcpt, rejected, unavailable};
use support::*;

const DOMAIN: &str = "hamailtest";

/// (user, passwd field, password); the password of the shadowed user is never usable.
fn users() -> Vec<(&'static str, String, &'static str)> {
    let hash = |kind: &str, salt: &str, pw: &str| {
        let out = Command::new("openssl")
            .args(["passwd", kind, "-salt", salt, pw])
            .output()
            .expect("openssl");
        assert!(out.status.success());
        String::from_utf8(out.stdout).unwrap().trim().to_string()
    };
    vec![
        ("nisuser1", hash("-6", "sixsalt", "six-pw"), "six-pw"),
        ("nisuser2", hash("-5", "fivesalt", "five-pw"), "five-pw"),
        ("nisuser3", hash("-1", "onesalt", "one-pw"), "one-pw"),
        ("nisshadow", "x".to_string(), "shadow-pw"),
    ]
}

fn run(cmd: &mut Command) {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?}: {}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
}

/// rpcbind + ypserv in their own namespaces; torn down (by pid, then the netns) on drop.
struct NisServer {
    dir: tempfile::TempDir,
    netns: String,
    veth: String,
    ip: String,
    ypserv: Option<Child>,
    rpcbind: Option<i32>,
}

impl NisServer {
    fn start() -> NisServer {
        let pid = std::process::id();
        let dir = tempfile::tempdir().unwrap();
        let netns = format!("hmnis{pid}");
        let veth = format!("hmn{pid}a");
        // A /30 per test process: 10.233.x.(4k+1) here, 10.233.x.(4k+2) in the netns.
        let (x, base) = ((pid >> 6) & 0xff, (pid & 0x3f) << 2);
        let host_ip = format!("10.233.{x}.{}", base + 1);
        let ip = format!("10.233.{x}.{}", base + 2);
        // Leftovers of an earlier run with the same pid.
        let _ = Command::new("ip").args(["netns", "del", &netns]).output();
        let _ = Command::new("ip").args(["link", "del", &veth]).output();
        let mut server = NisServer {
            dir,
            netns: netns.clone(),
            veth: veth.clone(),
            ip: ip.clone(),
            ypserv: None,
            rpcbind: None,
        };
        let peer = format!("hmn{pid}b");
        let ipns = |args: &[&str]| {
            let mut c = Command::new("ip");
            c.arg("-n").arg(&netns).args(args);
            run(&mut c);
        };
        run(Command::new("ip").args(["netns", "add", &netns]));
        run(Command::new("ip").args(["link", "add", &veth, "type", "veth", "peer", "name", &peer]));
        run(Command::new("ip").args(["link", "set", &peer, "netns", &netns]));
        run(Command::new("ip").args(["addr", "add", &format!("{host_ip}/30"), "dev", &veth]));
        run(Command::new("ip").args(["link", "set", &veth, "up"]));
        ipns(&["addr", "add", &format!("{ip}/30"), "dev", &peer]);
        ipns(&["link", "set", &peer, "up"]);
        ipns(&["link", "set", "lo", "up"]);

        server.build_maps();
        let root = server.dir.path().to_path_buf();
        // rpcbind first (ypserv registers with it on start), its pid in a file; then
        // the shell becomes ypserv, so the child's pid is ypserv's. `-d`: debug mode,
        // which stays in the foreground and logs to stderr. Both share the shell's
        // private /run and domainname.
        let script = format!(
            "set -e\n\
             mount -t tmpfs none /run\n\
             mkdir -p /run/rpcbind\n\
             domainname {DOMAIN}\n\
             rpcbind -f -w >{root}/rpcbind.log 2>&1 &\n\
             echo $! >{root}/rpcbind.pid\n\
             for i in $(seq 100); do rpcinfo -p 127.0.0.1 >/dev/null 2>&1 && break; sleep 0.05; done\n\
             exec ypserv -d {root}/yp\n",
            root = root.display()
        );
        let log = std::fs::File::create(root.join("ypserv.log")).unwrap();
        let child = Command::new("ip")
            .args(["netns", "exec", &netns, "unshare", "-m", "-u"])
            .args(["--propagation", "private", "sh", "-c", &script])
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap();
        server.ypserv = Some(child);
        let ready = wait_for(Duration::from_secs(15), || {
            if server.rpcbind.is_none() {
                server.rpcbind = std::fs::read_to_string(root.join("rpcbind.pid"))
                    .ok()
                    .and_then(|s| s.trim().parse().ok());
            }
            Command::new("ypcat")
                .args(["-d", DOMAIN, "-h", &ip, "passwd.byname"])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .is_ok_and(|s| s.success())
        });
        assert!(ready, "ypserv did not come up:\n{}", server.logs());
        server
    }

    fn build_maps(&self) {
        let root = self.dir.path();
        let maps = root.join("yp").join(DOMAIN);
        std::fs::create_dir_all(&maps).unwrap();
        let passwd: String = users()
            .iter()
            .enumerate()
            .map(|(i, (u, h, _))| format!("{u}\t{u}:{h}:{}:5000:{u}:/home/{u}:/bin/sh\n", 5001 + i))
            .collect();
        makedbm(&[], &passwd, &maps.join("passwd.byname"));
        // `-a`: the aliases format of /var/yp/Makefile (`name: targets`).
        makedbm(
            &["-a"],
            "staff: nisuser1, nisuser2\nfriends: \\nisuser3, staff\n",
            &maps.join("mail.aliases"),
        );
    }

    /// Stop ypserv (rpcbind stays, still naming ypserv's old port).
    fn stop_ypserv(&mut self) {
        if let Some(mut c) = self.ypserv.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    fn logs(&self) -> String {
        let read = |f: &str| std::fs::read_to_string(self.dir.path().join(f)).unwrap_or_default();
        format!(
            "ypserv:\n{}\nrpcbind:\n{}",
            read("ypserv.log"),
            read("rpcbind.log")
        )
    }
}

fn makedbm(flags: &[&str], input: &str, out: &Path) {
    use std::io::Write;
    let mut child = Command::new("/usr/lib/yp/makedbm")
        .args(flags)
        .args(["-m", "master", "-"])
        .arg(out)
        .stdin(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(input.as_bytes())
        .unwrap();
    assert!(child.wait().unwrap().success(), "makedbm {out:?}");
}

impl Drop for NisServer {
    fn drop(&mut self) {
        self.stop_ypserv();
        if let Some(pid) = self.rpcbind.take() {
            // SAFETY: plain kill(2) of the pid we recorded for our rpcbind.
            unsafe { libc::kill(pid, libc::SIGKILL) };
        }
        let _ = Command::new("ip")
            .args(["netns", "del", &self.netns])
            .output();
        let _ = Command::new("ip")
            .args(["link", "del", &self.veth])
            .output();
    }
}

fn extra(server: &NisServer) -> String {
    format!(
        "[auth]\nbackend = \"nis\"\n[auth.nis]\ndomain = \"{DOMAIN}\"\nservers = [\"{}\"]\n\
         timeout_ms = 300\nattempts = 2\n\n\
         [limits]\nlogin_failures_per_ip = 1000\nlogin_failures_per_user = 1000\n",
        server.ip
    )
}

#[test]
fn nis_logins_recipients_aliases_and_outage() {
    let mut nis = NisServer::start();
    let mut lab = Lab::new(2, &extra(&nis));
    lab.start(0, &[]);
    lab.start(1, &[]);

    // Every hash kind, on both agents; wrong passwords fail as bad credentials.
    for (user, _, pw) in users().into_iter().filter(|(u, _, _)| *u != "nisshadow") {
        for host in [0, 1] {
            let r = logins(&lab, host, user, pw);
            assert!(accepted(&r), "{user} on host{}: {r:?}", host + 1);
        }
        let r = logins(&lab, 0, user, &format!("{pw}x"));
        assert!(rejected(&r), "{user} wrong password: {r:?}");
    }
    let r = logins(&lab, 0, "NISuser1@example.test", "six-pw");
    assert!(accepted(&r), "login with the domain: {r:?}");
    let r = logins(&lab, 0, "nobody", "six-pw");
    assert!(rejected(&r), "unknown user: {r:?}");
    let r = logins(&lab, 0, "nisshadow", "shadow-pw");
    assert!(rejected(&r), "shadowed user: {r:?}");
    let r = logins(&lab, 0, "nisshadow", "x");
    assert!(rejected(&r), "shadowed user, password 'x': {r:?}");
    let long = "n".repeat(2000);
    for login in ["*", ")(uid=*", "nisuser1\0", "nis\0user1", &long, "../etc"] {
        let r = logins(&lab, 0, login, "six-pw");
        assert!(rejected(&r), "{login:?}: {r:?}");
    }

    // Recipients on port 25: users, aliases from mail.aliases, unknown names.
    for (addr, code) in [
        ("nisuser1@example.test", "250"),
        ("nisshadow@example.test", "250"),
        ("staff@example.test", "250"),
        ("friends@example.org", "250"),
        ("nobody@example.test", "550"),
    ] {
        let r = rcpt(&lab, 0, addr);
        assert!(r.starts_with(code), "{addr}: {r}");
    }
    let (mut raw, _) = Raw::connect(lab.addr(0, SMTP));
    assert_eq!(raw.cmd("EHLO client.test").0, 250);
    assert_eq!(raw.cmd("MAIL FROM:<x@remote.test>").0, 250);
    assert_eq!(raw.cmd("RCPT TO:<friends@example.test>").0, 250);
    assert_eq!(raw.cmd("DATA").0, 354);
    raw.send(b"Subject: nis alias\r\n\r\nhello staff\r\n.\r\n");
    let (code, text) = raw.reply();
    assert_eq!(code, 250, "{text}");
    for user in ["nisuser1", "nisuser2", "nisuser3"] {
        let msgs = lab.messages(user);
        assert_eq!(msgs.len(), 1, "{user}");
        assert_eq!(body(&msgs[0]), "hello staff\n");
    }

    // ypserv gone: temporary failures everywhere, never "wrong password" or 550.
    nis.stop_ypserv();
    let r = logins(&lab, 0, "nisuser1", "six-pw");
    assert!(unavailable(&r), "logins without ypserv: {r:?}");
    let r = logins(&lab, 1, "nisuser2", "wrong");
    assert!(unavailable(&r), "wrong password without ypserv: {r:?}");
    for addr in ["nisuser1@example.test", "nobody@example.test"] {
        let r = rcpt(&lab, 0, addr);
        assert!(r.starts_with("451"), "{addr} without ypserv: {r}");
    }
    let (code, body) = http_get(lab.addr(0, HEALTH), "/healthz").unwrap();
    assert_eq!(code, 503, "{body}");
    let json: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(json["checks"]["auth"]["ok"], false, "{body}");
    assert_eq!(json["checks"]["auth"]["backend"], "nis", "{body}");
    let err = json["checks"]["auth"]["error"].as_str().unwrap_or_default();
    assert!(err.contains(&nis.ip), "{body}");
}
