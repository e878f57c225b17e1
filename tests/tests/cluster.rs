//! The cluster as a newcomer sees it: `hamail-lab up` with three hosts, real clients.
//!
//! - mail sent to host1 is readable over IMAP on host2 and POP3 on host3, byte for byte,
//!   with the same UIDs on every host;
//! - SIGKILL of host1: MX and `mail.` move to host2 within interval × fail_after + 1 s,
//!   mail sent to host2 meanwhile arrives, earlier mail stays readable on host2 and host3,
//!   and after `start-host host1` the zone returns and host1 serves the mail received
//!   during its outage (the patent's central claim);
//! - `dnsctl failover host2` / `failback` move MX and `mail.` within 1 s.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::time::Duration;

use support::{lab, within};

#[test]
fn mail_sent_to_one_host_is_the_same_on_every_host() {
    let lab = lab(3);
    for i in 0..3 {
        assert_eq!(
            lab.send(
                0,
                "alice@example.test",
                &format!("cross-{i}"),
                "hello from host1"
            ),
            250
        );
    }
    let on2 = lab.imap_messages(1, 0);
    assert_eq!(on2.len(), 3);
    assert!(String::from_utf8_lossy(&on2[0].1).contains("Subject: cross-0"));
    assert!(String::from_utf8_lossy(&on2[2].1).contains("hello from host1"));
    // Same UIDs and bytes over IMAP on every host.
    for host in [0, 2] {
        assert_eq!(lab.imap_messages(host, 0), on2, "IMAP on host{}", host + 1);
    }
    // POP3 on host3 returns the same bytes.
    let pop = lab.pop3_messages(2, 0);
    assert_eq!(pop.len(), 3);
    for ((_, imap), (_, pop)) in on2.iter().zip(&pop) {
        assert_eq!(imap, pop);
    }
    // Same UIDLs from every host.
    assert_eq!(lab.pop3_messages(0, 0), pop);
}

#[test]
fn a_dead_host_loses_no_mail_and_gets_its_traffic_back() {
    let lab = lab(3);
    assert_eq!(lab.mail(), Some(lab.host_ip(0)));
    assert_eq!(
        lab.send(0, "alice@example.test", "before", "sent before the failure"),
        250
    );

    hamail_lab::stop_host(lab.dir.path(), "host1", true).unwrap();
    // interval 1 s × fail_after 3 + 1 s.
    let took = within(Duration::from_secs(4), || {
        lab.mail() == Some(lab.host_ip(1))
            && lab.mx().first().map(String::as_str) == Some("host2.example.test")
    });
    assert!(
        took.is_some(),
        "MX/mail. did not move to host2: mx {:?} mail {:?}",
        lab.mx(),
        lab.mail()
    );
    eprintln!("failover took {took:?}");

    assert_eq!(
        lab.send(1, "alice@example.test", "during", "sent during the outage"),
        250
    );
    for host in [1, 2] {
        let subjects: Vec<String> = lab
            .imap_messages(host, 0)
            .iter()
            .map(|(_, m)| String::from_utf8_lossy(m).into_owned())
            .collect();
        assert_eq!(subjects.len(), 2, "host{}", host + 1);
        assert!(subjects[0].contains("Subject: before"));
        assert!(subjects[1].contains("Subject: during"));
    }

    hamail_lab::start_host(lab.dir.path(), "host1").unwrap();
    // recover_after 3 successes, plus one interval.
    let back = within(Duration::from_secs(5), || {
        lab.mail() == Some(lab.host_ip(0))
    });
    assert!(back.is_some(), "mail. did not return to host1");
    assert_eq!(lab.mx()[0], "host1.example.test");
    let on1 = lab.imap_messages(0, 0);
    assert_eq!(
        on1,
        lab.imap_messages(1, 0),
        "host1 serves what arrived while it was dead"
    );
    assert!(String::from_utf8_lossy(&on1[1].1).contains("sent during the outage"));
}

#[test]
fn operator_failover_and_failback_take_effect_within_a_second() {
    let lab = lab(3);
    let out = lab.dnsctl(&["failover", "host2"]);
    assert!(out.status.success(), "{out:?}");
    assert!(within(Duration::from_secs(1), || lab.mail()
        == Some(lab.host_ip(1))
        && lab.mx()[0] == "host2.example.test")
    .is_some());
    let out = lab.dnsctl(&["failback"]);
    assert!(out.status.success(), "{out:?}");
    assert!(within(Duration::from_secs(1), || lab.mail()
        == Some(lab.host_ip(0))
        && lab.mx()[0] == "host1.example.test")
    .is_some());
    let status = lab.dnsctl(&["status", "--json"]);
    let v: serde_json::Value = serde_json::from_slice(&status.stdout).unwrap();
    assert_eq!(v["hosts"].as_array().unwrap().len(), 3);
}
