//! Operating the agent: `check-config`, `/healthz` and `/metrics`, and the local delivery
//! agent mode with its sysexits codes.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::io::Write;
use std::process::{Command, Stdio};
use std::time::Duration;

use support::*;

fn agent() -> Command {
    Command::new(env!("CARGO_BIN_EXE_hamail-agent"))
}

#[test]
fn check_config_accepts_a_good_file_and_names_the_line_of_an_unknown_key() {
    let lab = Lab::new(2, "");
    let out = agent()
        .args(["--config"])
        .arg(&lab.config)
        .args(["check-config", "--host", "host2"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("OK (2 host(s): host1, host2"));

    let out = agent()
        .arg("--config")
        .arg(&lab.config)
        .args(["check-config", "--host", "host9"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(78));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no host named \"host9\""));

    let text = std::fs::read_to_string(&lab.config).unwrap();
    let bad = text.replace("[locking]\n", "[locking]\ntimeout_sec = 3\n");
    std::fs::write(&lab.config, &bad).unwrap();
    let line = bad.lines().position(|l| l == "timeout_sec = 3").unwrap() + 1;
    let out = agent()
        .arg("--config")
        .arg(&lab.config)
        .arg("check-config")
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(78), "{err}");
    assert!(
        err.contains("unknown field `timeout_sec`") && err.contains(&format!("line {line}")),
        "{err}"
    );
}

#[test]
fn healthz_reports_checks_and_fails_when_the_spool_is_unwritable() {
    let mut lab = Lab::new(1, "");
    lab.start(0, &[]);
    let (code, body) = http_get(lab.addr(0, HEALTH), "/healthz").unwrap();
    assert_eq!(code, 200, "{body}");
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["status"], "ok");
    assert_eq!(v["host"], "host1");
    for check in ["spool", "auth", "listeners", "queue"] {
        assert_eq!(v["checks"][check]["ok"], true, "{check}: {body}");
    }
    assert_eq!(v["checks"]["listeners"]["submissions"], true);
    assert_eq!(v["checks"]["queue"]["depth"], 0);

    // Deliver one message, then the counters show it.
    let (mut raw, _) = Raw::connect(lab.addr(0, SMTP));
    raw.cmd("EHLO m.test");
    raw.cmd("MAIL FROM:<a@remote.test>");
    raw.cmd("RCPT TO:<nobody@example.test>");
    raw.cmd("RCPT TO:<alice@example.test>");
    raw.cmd("DATA");
    raw.send(b"Subject: m\r\n\r\nx\r\n.\r\n");
    assert_eq!(raw.reply().0, 250);
    let (code, metrics) = http_get(lab.addr(0, HEALTH), "/metrics").unwrap();
    assert_eq!(code, 200);
    assert!(
        metrics.contains("hamail_messages_total{result=\"accepted\"} 1"),
        "{metrics}"
    );
    assert!(
        metrics.contains("hamail_smtp_rejects_total{reason=\"5.1.1\"} 1"),
        "{metrics}"
    );
    assert!(metrics.contains("hamail_delivery_seconds"), "{metrics}");
    assert!(
        metrics.contains("hamail_lock_acquisitions_total 1"),
        "{metrics}"
    );
    assert!(
        metrics.contains("hamail_lock_wait_seconds_total"),
        "{metrics}"
    );

    // The probe file's directory replaced by a file: the spool check fails → 503.
    let health_dir = lab.spool().probe_dir();
    std::fs::remove_dir_all(&health_dir).unwrap();
    std::fs::write(&health_dir, b"not a directory").unwrap();
    let (code, body) = http_get(lab.addr(0, HEALTH), "/healthz").unwrap();
    assert_eq!(code, 503, "{body}");
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["status"], "fail");
    assert_eq!(v["checks"]["spool"]["ok"], false);
    assert_eq!(v["checks"]["auth"]["ok"], true);
    assert_eq!(http_get(lab.addr(0, HEALTH), "/nope").unwrap().0, 404);

    // While the spool fails, SMTP takes no mail it could not store: RCPT answers 451
    // (the background probe notices within its 1 s interval even without /healthz).
    let rcpt = || {
        let (mut raw, _) = Raw::connect(lab.addr(0, SMTP));
        raw.cmd("EHLO m.test");
        raw.cmd("MAIL FROM:<a@remote.test>");
        raw.cmd("RCPT TO:<alice@example.test>")
    };
    let mut last = (0, String::new());
    let refused = wait_for(Duration::from_secs(5), || {
        last = rcpt();
        last.0 == 451
    });
    assert!(refused, "RCPT while the spool fails: {last:?}");
    assert!(
        last.1.contains("4.3.0") && last.1.contains("store"),
        "{last:?}"
    );
    std::fs::remove_file(&health_dir).unwrap();
    let accepted = wait_for(Duration::from_secs(5), || {
        last = rcpt();
        last.0 == 250
    });
    assert!(accepted, "RCPT once the spool works again: {last:?}");

    // Out of space (a full tmpfs under the probe; needs root, like CI): 452 4.3.1. The
    // probe file is written there first, so that, as on a real spool that fills up, the
    // probe rewrites an existing file (which reuses its own freed block and succeeds).
    std::fs::create_dir_all(&health_dir).unwrap();
    let mount = |args: &[&str]| Command::new(args[0]).args(&args[1..]).status().unwrap();
    let dir = health_dir.to_str().unwrap();
    assert!(mount(&["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", dir]).success());
    let probed = wait_for(Duration::from_secs(5), || {
        std::fs::read_dir(&health_dir).is_ok_and(|mut d| d.next().is_some())
    });
    assert!(probed, "the probe wrote no file into the fresh tmpfs");
    let filled = std::fs::write(health_dir.join("filler"), vec![0u8; 1 << 20]);
    assert!(filled.is_err(), "the 64k tmpfs took 1 MiB");
    let full = wait_for(Duration::from_secs(5), || {
        last = rcpt();
        last.0 == 452
    });
    let _ = mount(&["umount", dir]);
    assert!(full, "RCPT while the spool is full: {last:?}");
    assert!(last.1.contains("4.3.1"), "{last:?}");
    let accepted = wait_for(Duration::from_secs(5), || {
        last = rcpt();
        last.0 == 250
    });
    assert!(accepted, "RCPT once there is space again: {last:?}");
}

fn deliver(lab: &Lab, args: &[&str], input: &[u8]) -> (i32, String) {
    let mut child = agent()
        .arg("--config")
        .arg(&lab.config)
        .args(["--host", "host1", "deliver"])
        .args(args)
        .stdin(Stdio::piped())
        .stderr(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    // The agent may exit (usage error, unknown user) before reading all of stdin.
    let _ = child.stdin.take().unwrap().write_all(input);
    let out = child.wait_with_output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn deliver_mode_exit_codes_follow_sysexits() {
    let lab = Lab::new(1, "");
    let msg =
        b"From sender@x.test Tue Nov 24 10:00:00 2026\nX-UID: 5\nSubject: lda\r\n\r\nbody\r\n";
    let (code, err) = deliver(&lab, &["-f", "sender@x.test", "alice", "bob"], msg);
    assert_eq!(code, 0, "{err}");
    for user in ["alice", "bob"] {
        let m = lab.messages(user);
        assert_eq!(m.len(), 1);
        assert_eq!(
            m[0],
            b"Return-Path: <sender@x.test>\nSubject: lda\n\nbody\n"
        );
    }
    let (code, err) = deliver(&lab, &["nosuchuser"], msg);
    assert_eq!(code, 67, "{err}");
    let (code, _) = deliver(&lab, &[], msg);
    assert_eq!(code, 64);
    // The spool root is not a directory: temporary failure, the MTA keeps the message.
    let text = std::fs::read_to_string(&lab.config).unwrap();
    let file = lab.root().join("not-a-dir");
    std::fs::write(&file, b"").unwrap();
    std::fs::write(
        &lab.config,
        text.replace(
            &lab.spool.display().to_string(),
            &file.display().to_string(),
        ),
    )
    .unwrap();
    let (code, err) = deliver(&lab, &["alice"], msg);
    assert_eq!(code, 75, "{err}");
    assert_eq!(lab.messages("alice").len(), 1);
}

#[test]
fn systemd_readiness_and_stopping_are_notified() {
    use std::os::unix::net::UnixDatagram;
    let mut lab = Lab::new(1, "");
    let path = lab.root().join("notify.sock");
    let socket = UnixDatagram::bind(&path).unwrap();
    socket
        .set_read_timeout(Some(std::time::Duration::from_secs(20)))
        .unwrap();
    lab.start(0, &[("NOTIFY_SOCKET", path.to_str().unwrap())]);
    let mut buf = [0u8; 256];
    let n = socket.recv(&mut buf).unwrap();
    assert!(String::from_utf8_lossy(&buf[..n]).contains("READY=1"));
    lab.signal(0, libc::SIGTERM);
    let n = socket.recv(&mut buf).unwrap();
    assert!(String::from_utf8_lossy(&buf[..n]).contains("STOPPING=1"));
    assert!(lab
        .wait_exit(0, std::time::Duration::from_secs(20))
        .success());
}
