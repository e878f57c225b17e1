//! The health controller end to end: a real `dnsctl serve` probing three stand-in mail
//! hosts, queried with `dig`, driven with the `dnsctl` CLI.
//!
//! Timing bounds below are the issue's own ("within interval × fail_after + 1 s", "within
//! 1 s"); they are checked with a deadline poll, never by sleeping and hoping.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::time::{Duration, Instant};

use support::{wait_for, Dnsctl, StandIn};

const HEALTH: &str = "interval_secs = 1\nfail_after = 3\nrecover_after = 3";

fn hosts() -> (StandIn, StandIn, StandIn) {
    (StandIn::start(), StandIn::start(), StandIn::start())
}

#[test]
fn host_death_moves_mx_and_mail_and_recovery_moves_them_back() {
    let (h1, h2, h3) = hosts();
    let mut d = Dnsctl::new(&[&h1, &h2, &h3], HEALTH, "");
    d.start();
    assert_eq!(
        d.mx(),
        [
            "host1.example.test",
            "host2.example.test",
            "host3.example.test"
        ]
    );
    assert_eq!(d.mail(), Some(h1.ip.to_string()));
    let s0 = d.serial().unwrap();

    h1.set_up(false);
    let t0 = Instant::now();
    // Within interval × fail_after + 1 s, as the issue asks (measured: 2.0–2.9 s).
    let moved = wait_for(Duration::from_secs(4), || {
        d.mail() == Some(h2.ip.to_string())
    });
    let took = t0.elapsed();
    assert!(moved, "mail. did not move within 4 s:\n{}", d.log());
    eprintln!("failover took {took:?}");
    // MX, mail. and the serial changed together.
    assert_eq!(
        d.mx(),
        [
            "host2.example.test",
            "host3.example.test",
            "host1.example.test"
        ]
    );
    let s1 = d.serial().unwrap();
    assert!(s1 > s0);

    h1.set_up(true);
    let back = wait_for(Duration::from_secs(5), || {
        d.mail() == Some(h1.ip.to_string())
    });
    assert!(back, "mail. did not move back:\n{}", d.log());
    assert_eq!(d.mx()[0], "host1.example.test");
    assert!(d.serial().unwrap() > s1);

    // Status shows the history.
    let status = d.status();
    let kinds: Vec<&str> = status["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["kind"].as_str().unwrap())
        .collect();
    assert!(kinds.ends_with(&["down", "up"]), "{kinds:?}");
    let log = std::fs::read_to_string(d.root().join("state/events.jsonl")).unwrap();
    assert!(log
        .lines()
        .any(|l| l.contains("\"kind\":\"down\"") && l.contains("host1")));
}

#[test]
fn operator_commands_take_effect_at_once_and_survive_a_restart() {
    let (h1, h2, h3) = hosts();
    let mut d = Dnsctl::new(&[&h1, &h2, &h3], HEALTH, "");
    d.start();

    let out = d.cli(&["failover", "host2"]);
    assert!(out.status.success(), "{out:?}");
    assert!(wait_for(Duration::from_secs(1), || d.mx()[0] == "host2.example.test"));
    assert_eq!(d.mail(), Some(h2.ip.to_string()));

    let out = d.cli(&["failover", "host9"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("unknown host"));

    let out = d.cli(&["drain", "host1"]);
    assert!(out.status.success(), "{out:?}");
    assert!(wait_for(Duration::from_secs(1), || !d
        .mx()
        .contains(&"host1.example.test".to_string())));

    // Both survive a restart of the server.
    let before = d.serial().unwrap();
    d.stop();
    d.start();
    assert!(d.serial().unwrap() > before, "serial grows across restarts");
    assert_eq!(d.mx(), ["host2.example.test", "host3.example.test"]);
    assert_eq!(d.mail(), Some(h2.ip.to_string()));

    assert!(d.cli(&["undrain", "host1"]).status.success());
    assert!(d.cli(&["failback"]).status.success());
    assert!(wait_for(Duration::from_secs(1), || d.mx()
        == [
            "host1.example.test",
            "host2.example.test",
            "host3.example.test"
        ]));

    // A down host is refused unless forced.
    h3.set_up(false);
    assert!(wait_for(Duration::from_secs(6), || d.status()["hosts"][2]
        ["up"]
        == serde_json::Value::Bool(false)));
    let out = d.cli(&["failover", "host3"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--force"));
    assert!(d.cli(&["failover", "host3", "--force"]).status.success());

    // `zone` prints the served zone; `check` reports the dead host.
    let zone = String::from_utf8(d.cli(&["zone"]).stdout).unwrap();
    assert!(zone.contains("$ORIGIN example.test."), "{zone}");
    assert!(zone.contains("IN\tMX\t10 host1.example.test."), "{zone}");
    let check = d.cli(&["check"]);
    assert_eq!(check.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&check.stdout).contains("host3      DOWN"));
}

#[test]
fn a_flapping_host_cannot_flap_the_zone_faster_than_the_hysteresis() {
    let (h1, h2, h3) = hosts();
    let mut d = Dnsctl::new(&[&h1, &h2, &h3], HEALTH, "");
    d.start();
    let mut serials = vec![(Instant::now(), d.serial().unwrap())];
    let start = Instant::now();
    let mut up = true;
    let mut next_flip = Instant::now();
    while start.elapsed() < Duration::from_secs(12) {
        if Instant::now() >= next_flip {
            up = !up;
            h1.set_up(up);
            next_flip += Duration::from_millis(500);
        }
        if let Some(s) = d.serial() {
            let last = serials.last().unwrap().1;
            assert!(s >= last, "serial went back: {last} -> {s}");
            if s != last {
                serials.push((Instant::now(), s));
            }
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    // With a probe per second and 3 in a row needed either way, two changes are at
    // least ~3 s apart (less a probe's jitter).
    for w in serials.windows(2).skip(1) {
        let gap = w[1].0 - w[0].0;
        assert!(
            gap >= Duration::from_millis(2500),
            "zone changed twice within {gap:?}: {serials:?}"
        );
    }
    assert!(serials.len() <= 1 + 12 / 3, "{serials:?}");
}

/// Every change is announced to the secondaries (RFC 1996 NOTIFY, answered here by a
/// UDP socket playing the secondary), and `/metrics` reports the serial and transitions.
#[test]
fn every_change_notifies_the_secondaries_and_shows_in_metrics() {
    use std::net::{SocketAddr, UdpSocket};
    let (h1, h2, h3) = hosts();
    let secondary_ip = support::fresh_ip();
    let sock = UdpSocket::bind((secondary_ip, 5399)).unwrap();
    sock.set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let metrics_ip = support::fresh_ip();
    let extra = format!(
        "secondaries = [\"{secondary_ip}\"]\nnotify_port = 5399\nmetrics_listen = \"{metrics_ip}:9153\"\n"
    );
    let mut d = Dnsctl::new(&[&h1, &h2, &h3], HEALTH, &extra);

    // Collect NOTIFYs (id, opcode, zone) and answer each, as a secondary does.
    let notifies = std::sync::Arc::new(std::sync::Mutex::new(Vec::<(u8, bool, String)>::new()));
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let listener = {
        let (notifies, stop) = (notifies.clone(), stop.clone());
        std::thread::spawn(move || {
            let mut buf = [0u8; 512];
            while !stop.load(std::sync::atomic::Ordering::SeqCst) {
                let Ok((n, from)) = sock.recv_from(&mut buf) else {
                    continue;
                };
                let msg = &buf[..n];
                let opcode = (msg[2] >> 3) & 0x0f;
                let aa = msg[2] & 0x04 != 0;
                // The question name, uncompressed labels from offset 12.
                let mut name = Vec::new();
                let mut i = 12;
                while i < n && msg[i] != 0 {
                    let len = msg[i] as usize;
                    name.push(String::from_utf8_lossy(&msg[i + 1..i + 1 + len]).into_owned());
                    i += 1 + len;
                }
                notifies.lock().unwrap().push((opcode, aa, name.join(".")));
                let mut reply = msg.to_vec();
                reply[2] |= 0x80; // QR
                let _ = sock.send_to(&reply, from);
            }
        })
    };
    d.start();
    let got = |notifies: &std::sync::Mutex<Vec<(u8, bool, String)>>| notifies.lock().unwrap().len();
    assert!(
        wait_for(Duration::from_secs(5), || got(&notifies) >= 1),
        "NOTIFY at start"
    );
    let before = got(&notifies);
    assert!(d.cli(&["failover", "host2"]).status.success());
    assert!(
        wait_for(Duration::from_secs(3), || got(&notifies) > before),
        "NOTIFY after failover"
    );
    let before = got(&notifies);
    h2.set_up(false);
    assert!(
        wait_for(Duration::from_secs(6), || got(&notifies) > before),
        "NOTIFY after host2 went down"
    );
    for (opcode, aa, zone) in notifies.lock().unwrap().iter() {
        assert_eq!((*opcode, *aa, zone.as_str()), (4, true, "example.test"));
    }

    let (code, body) = http_get(SocketAddr::new(metrics_ip.into(), 9153), "/metrics");
    assert_eq!(code, 200);
    let serial = d.serial().unwrap();
    assert!(
        body.contains(&format!("hamail_dns_serial {serial}")),
        "{body}"
    );
    assert!(
        body.contains("hamail_dns_transitions_total{host=\"host2\",kind=\"down\"} 1"),
        "{body}"
    );
    assert!(
        body.contains("hamail_dns_operator_commands_total{kind=\"failover\"} 1"),
        "{body}"
    );
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    listener.join().unwrap();
}

fn http_get(addr: std::net::SocketAddr, path: &str) -> (u16, String) {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    write!(s, "GET {path} HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
    let mut text = String::new();
    s.read_to_string(&mut text).unwrap();
    let code = text[9..12].parse().unwrap();
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    (code, body)
}
