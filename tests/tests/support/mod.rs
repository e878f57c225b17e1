//! Shared by the end-to-end tests: a lab brought up with `hamail_lab::up` on loopback
//! addresses unique to this test, taken down (by pid) when dropped, and real clients
//! (Python's smtplib, imaplib, poplib) to talk to it.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::net::Ipv4Addr;
use std::process::Command;
use std::sync::atomic::{AtomicU8, Ordering};
use std::time::{Duration, Instant};

use hamail_lab::{dns, LabInfo, Options, PORTS};

/// A running lab; `down` on drop, pass or fail.
pub struct Running {
    pub info: LabInfo,
    pub dir: tempfile::TempDir,
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = hamail_lab::down(self.dir.path());
    }
}

/// A base address no other lab of this test run uses: 127.P.N.10, P from the pid.
pub fn base() -> Ipv4Addr {
    static N: AtomicU8 = AtomicU8::new(1);
    let pid = std::process::id();
    Ipv4Addr::new(
        127,
        60 + (pid % 150) as u8,
        N.fetch_add(1, Ordering::SeqCst),
        10,
    )
}

pub fn lab(hosts: usize) -> Running {
    let dir = tempfile::tempdir().unwrap();
    let info = hamail_lab::up(&Options {
        dir: dir.path().to_path_buf(),
        hosts,
        base: base(),
        ..Options::default()
    })
    .unwrap_or_else(|e| panic!("hamail-lab up: {e:#}"));
    Running { info, dir }
}

impl Running {
    pub fn host_ip(&self, host: usize) -> String {
        self.info.hosts[host].address.to_string()
    }

    pub fn user(&self, i: usize) -> (String, String) {
        let u = &self.info.users[i];
        (u.login.clone(), u.password.clone())
    }

    /// MX targets best first (`host2.example.test`), from dnsctl.
    pub fn mx(&self) -> Vec<String> {
        dns::query(self.info.dns_addr(), "example.test", dns::MX)
            .unwrap_or_default()
            .into_iter()
            .filter_map(|l| l.split_once(' ').map(|(_, h)| h.to_string()))
            .collect()
    }

    /// `mail.example.test` A, from dnsctl.
    pub fn mail(&self) -> Option<String> {
        dns::query(self.info.dns_addr(), "mail.example.test", dns::A)?
            .into_iter()
            .next()
    }

    /// Run `dnsctl --config <lab config> args`.
    pub fn dnsctl(&self, args: &[&str]) -> std::process::Output {
        let bins = hamail_lab::procs::Binaries::find().unwrap();
        Command::new(bins.dnsctl)
            .arg("--config")
            .arg(&self.info.config)
            .args(args)
            .output()
            .unwrap()
    }

    /// Send one message through `host`'s port 25 with smtplib; the SMTP reply code.
    pub fn send(&self, host: usize, to: &str, subject: &str, body: &str) -> u16 {
        let out = python(
            r#"
import smtplib, sys
host, port, to, subject, body = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4], sys.argv[5]
msg = ("From: tester@example.org\r\nTo: %s\r\nSubject: %s\r\nMessage-ID: <%s@test>\r\n\r\n%s\r\n" % (to, subject, subject, body)).encode()
try:
    s = smtplib.SMTP(host, port, timeout=30)
    s.sendmail("tester@example.org", [to], msg)
    s.quit()
    print(250)
except smtplib.SMTPResponseException as e:
    print(e.smtp_code)
except smtplib.SMTPRecipientsRefused as e:
    print(list(e.recipients.values())[0][0])
"#,
            &[
                &self.host_ip(host),
                &PORTS.smtp.to_string(),
                to,
                subject,
                body,
            ],
        );
        out.trim().parse().unwrap()
    }

    /// Every message in `user`'s INBOX over IMAP on `host`: (UID, BODY[] bytes as hex).
    pub fn imap_messages(&self, host: usize, user: usize) -> Vec<(u32, Vec<u8>)> {
        let (login, password) = self.user(user);
        let out = python(
            r#"
import imaplib, sys, re
m = imaplib.IMAP4(sys.argv[1], int(sys.argv[2]))
m.login(sys.argv[3], sys.argv[4])
m.select("INBOX", readonly=True)
typ, data = m.uid("FETCH", "1:*", "(UID BODY.PEEK[])")
for item in data:
    if isinstance(item, tuple):
        uid = re.search(rb"UID (\d+)", item[0]).group(1).decode()
        print(uid, item[1].hex())
m.logout()
"#,
            &[
                &self.host_ip(host),
                &PORTS.imap.to_string(),
                &login,
                &password,
            ],
        );
        parse_listing(&out)
    }

    /// Every message over POP3 on `host`: (UIDL, message bytes).
    pub fn pop3_messages(&self, host: usize, user: usize) -> Vec<(String, Vec<u8>)> {
        let (login, password) = self.user(user);
        let out = python(
            r#"
import poplib, sys
p = poplib.POP3(sys.argv[1], int(sys.argv[2]))
p.user(sys.argv[3]); p.pass_(sys.argv[4])
uidls = dict(l.decode().split() for l in p.uidl()[1])
for n in sorted(uidls, key=int):
    lines = p.retr(int(n))[1]
    print(uidls[n], b"".join(l + b"\r\n" for l in lines).hex())
p.quit()
"#,
            &[
                &self.host_ip(host),
                &PORTS.pop3.to_string(),
                &login,
                &password,
            ],
        );
        out.lines()
            .filter_map(|l| {
                let (u, h) = l.split_once(' ')?;
                Some((u.to_string(), hex(h)))
            })
            .collect()
    }
}

fn parse_listing(out: &str) -> Vec<(u32, Vec<u8>)> {
    out.lines()
        .filter_map(|l| {
            let (u, h) = l.split_once(' ')?;
            Some((u.parse().ok()?, hex(h)))
        })
        .collect()
}

fn hex(h: &str) -> Vec<u8> {
    (0..h.len())
        .step_by(2)
        .filter_map(|i| u8::from_str_radix(h.get(i..i + 2)?, 16).ok())
        .collect()
}

/// Run a Python script; stdout. Panics with stderr on failure.
pub fn python(script: &str, args: &[&str]) -> String {
    let out = Command::new("python3")
        .arg("-c")
        .arg(script)
        .args(args)
        .output()
        .expect("python3");
    assert!(
        out.status.success(),
        "python failed: {}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Poll `f` until true or `timeout`; how long it took, if it became true.
pub fn within(timeout: Duration, mut f: impl FnMut() -> bool) -> Option<Duration> {
    let start = Instant::now();
    loop {
        if f() {
            return Some(start.elapsed());
        }
        if start.elapsed() >= timeout {
            return None;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}
