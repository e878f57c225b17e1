//! Relay end to end through the agent process: an authenticated submission to a remote
//! domain is answered 250 once queued, and the agent's queue runner delivers it to the
//! domain's MX (found through a local DNS server) after a temporary failure; a message to
//! a domain whose MX refuses it comes back to the local sender as a DSN.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::sync::Arc;
use std::time::Duration;

use support::sink::{self, Stage};
use support::*;

const SUBMIT: &str = r#"
import smtplib, ssl, sys
ctx = ssl.create_default_context(); ctx.check_hostname = False; ctx.verify_mode = ssl.CERT_NONE
s = smtplib.SMTP(sys.argv[1], 2587)
s.starttls(context=ctx)
s.login("alice", "alice-pw")
s.sendmail("alice@example.test", ["friend@remote.test"], b"Subject: out\r\n\r\nline\r\n.leading dot\r\n")
s.sendmail("alice@example.test", ["rejected@remote.test"], b"Subject: doomed\r\n\r\nbounce me\r\n")
s.quit()
print("ok")
"#;

#[test]
fn submitted_mail_is_relayed_after_a_retry_and_a_refusal_bounces() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let dns = rt.block_on(support::dns::start(support::dns::Zone::remote_test()));
    // friend@: 451 on the first connection, then accepted; rejected@: always 550.
    let script: sink::Script = Arc::new(|stage, conn| match stage {
        Stage::Rcpt(r) if r.contains("rejected") => Some("550 5.1.1 no such user".into()),
        Stage::Rcpt(_) if conn == 0 => Some("451 4.3.0 try later".into()),
        _ => None,
    });
    let sink = rt.block_on(sink::start(script, Some(sink::tls_acceptor())));
    let mut lab = Lab::new(
        1,
        &format!(
            "\n[queue]\nretry_min_secs = 1\nretry_max_secs = 2\nlifetime_secs = 600\n\
             [relay]\nresolver = \"{dns}\"\nport = {}\nscan_interval_secs = 1\n",
            sink.port
        ),
    );
    lab.start(0, &[]);
    assert_eq!(python(SUBMIT, &[&lab.ips[0].to_string()]).trim(), "ok");
    assert!(
        wait_for(Duration::from_secs(20), || sink.received().iter().any(
            |r| r.rcpts == ["<friend@remote.test>"] || r.rcpts == ["friend@remote.test"]
        )),
        "not relayed; log:\n{}",
        lab.log(0)
    );
    let got = sink.received();
    let out = got
        .iter()
        .find(|r| r.rcpts.iter().any(|x| x.contains("friend")))
        .unwrap();
    assert!(out.tls, "STARTTLS was offered but not used");
    let data = String::from_utf8_lossy(&out.data);
    assert!(data.contains("with ESMTPSA id"), "{data}");
    assert!(
        data.ends_with("Subject: out\r\n\r\nline\r\n..leading dot\r\n"),
        "{data:?}"
    );
    assert!(sink.connections() >= 2, "no retry happened");
    // The refused one comes back to alice as a DSN, and the queue empties.
    assert!(wait_for(Duration::from_secs(20), || lab
        .messages("alice")
        .len()
        == 1
        && lab.queued() == 0));
    let dsn = String::from_utf8(lab.messages("alice").remove(0)).unwrap();
    assert!(dsn.contains("report-type=delivery-status"), "{dsn}");
    assert!(
        dsn.contains("Final-Recipient: rfc822; rejected@remote.test"),
        "{dsn}"
    );
    assert!(dsn.contains("Status: 5.1.1"), "{dsn}");
    drop(rt);
}
