//! The relay runner end to end, as a library: a tempdir spool, a DNS responder that
//! knows `remote.test`, and a scripted SMTP sink standing in for its MX.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::sync::Arc;
use std::time::{Duration, Instant};

use hamail_agent::relay::{self, RelayHandle};
use hamail_agent::shutdown::{self, Trigger};
use hamail_storage::cluster::ClusterConfig;
use hamail_storage::Spool;
use support::sink::{self, Script, Sink, Stage};

const MESSAGE: &[u8] = b"Received: from client by host1.example.test\n\
Subject: relay test\n\
From: alice@example.test\n\
\n\
first line\n\
.a line that begins with a dot\n\
..two dots\n\
last line\n";

const MESSAGE_ON_THE_WIRE: &[u8] = b"Received: from client by host1.example.test\r\n\
Subject: relay test\r\n\
From: alice@example.test\r\n\
\r\n\
first line\r\n\
..a line that begins with a dot\r\n\
...two dots\r\n\
last line\r\n";

struct Lab {
    _dir: tempfile::TempDir,
    spool: Spool,
    sink: Sink,
    handle: RelayHandle,
    trigger: Trigger,
    runner: tokio::task::JoinHandle<()>,
}

struct Settings {
    lifetime: u64,
    retry_max: u64,
    script: Script,
    tls: bool,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            lifetime: 3600,
            retry_max: 60,
            script: Arc::new(|_, _| None),
            tls: false,
        }
    }
}

async fn lab(settings: Settings, before_start: impl FnOnce(&Spool)) -> Lab {
    let dir = tempfile::tempdir().unwrap();
    let dns = support::dns::start(support::dns::Zone::remote_test()).await;
    let tls = settings.tls.then(sink::tls_acceptor);
    let sink = sink::start(settings.script, tls).await;
    let config = ClusterConfig::builder(dir.path())
        .hosts(["127.0.0.1"])
        .section("auth", "backend = \"system\"")
        .section("locking", "timeout_secs = 1\nstale_after_secs = 2")
        .section(
            "queue",
            &format!(
                "lifetime_secs = {}\nretry_min_secs = 1\nretry_max_secs = {}",
                settings.lifetime, settings.retry_max
            ),
        )
        .section(
            "relay",
            &format!(
                "resolver = \"{dns}\"\nport = {}\nscan_interval_secs = 1\n\
                 connect_timeout_secs = 5\ncommand_timeout_secs = 10",
                sink.port
            ),
        )
        .build()
        .unwrap();
    let config = Arc::new(config);
    let host = config.host("host1").unwrap().clone();
    let spool = Spool::open(dir.path(), config.lock_options(&host)).unwrap();
    before_start(&spool);
    let (trigger, shutdown) = shutdown::channel();
    let (handle, runner) = relay::spawn(config, host, spool.clone(), shutdown);
    Lab {
        _dir: dir,
        spool,
        sink,
        handle,
        trigger,
        runner,
    }
}

impl Lab {
    fn enqueue(&self, sender: &str, rcpts: &[&str]) -> String {
        let rcpts: Vec<String> = rcpts.iter().map(|r| r.to_string()).collect();
        let id = self
            .spool
            .queue()
            .enqueue(sender, &rcpts, MESSAGE.to_vec())
            .unwrap();
        self.handle.kick();
        id
    }

    fn queue_len(&self) -> usize {
        self.spool.queue().list().unwrap().len()
    }

    /// The messages in `user`'s INBOX (none if it does not exist yet).
    fn inbox(&self, user: &str) -> Vec<String> {
        let Ok(read) = self.spool.inbox(user).unwrap().read() else {
            return Vec::new();
        };
        let metas: Vec<_> = read.index().visible().cloned().collect();
        metas
            .iter()
            .map(|m| String::from_utf8(read.read_message(m).unwrap()).unwrap())
            .collect()
    }

    async fn stop(self) {
        self.trigger.trigger();
        tokio::time::timeout(Duration::from_secs(10), self.runner)
            .await
            .expect("runner stops on shutdown")
            .unwrap();
    }
}

/// Poll `check` until it holds, failing the test after `secs`.
async fn until(what: &str, secs: u64, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while !check() {
        assert!(Instant::now() < deadline, "timed out waiting for: {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn assert_dsn(dsn: &str, rcpt: &str, status_prefix: &str) {
    for needle in [
        "Return-Path: <>\n",
        "From: \"Mail Delivery System\" <MAILER-DAEMON@example.test>",
        "multipart/report; report-type=delivery-status",
        "Content-Type: message/delivery-status",
        "Reporting-MTA: dns; host1.example.test",
        "Action: failed",
        "Content-Type: text/rfc822-headers",
        "Subject: relay test",
    ] {
        assert!(dsn.contains(needle), "DSN lacks {needle:?}:\n{dsn}");
    }
    assert!(
        dsn.contains(&format!("Final-Recipient: rfc822; {rcpt}\n")),
        "DSN lacks the recipient:\n{dsn}"
    );
    let status = dsn
        .lines()
        .find_map(|l| l.strip_prefix("Status: "))
        .expect("Status field");
    assert!(
        status.starts_with(status_prefix),
        "status {status}, wanted {status_prefix}*:\n{dsn}"
    );
    assert!(!dsn.contains('\r'), "DSN is stored in LF form");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_queued_message_is_delivered_byte_exact_and_leaves_the_queue() {
    let lab = lab(Settings::default(), |_| {}).await;
    lab.enqueue("alice@example.test", &["x@remote.test", "y@remote.test"]);
    until("delivery", 15, || !lab.sink.received().is_empty()).await;
    until("the entry is completed", 15, || lab.queue_len() == 0).await;
    let got = lab.sink.received();
    assert_eq!(got.len(), 1, "one transaction for both recipients");
    assert_eq!(got[0].mail_from, "alice@example.test");
    assert_eq!(got[0].rcpts, ["x@remote.test", "y@remote.test"]);
    assert_eq!(
        String::from_utf8_lossy(&got[0].data),
        String::from_utf8_lossy(MESSAGE_ON_THE_WIRE)
    );
    assert!(!got[0].tls, "the sink offered no STARTTLS");
    assert!(
        lab.inbox("alice").is_empty(),
        "no DSN for a delivered message"
    );
    lab.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn starttls_is_used_when_offered_even_with_a_self_signed_certificate() {
    let settings = Settings {
        tls: true,
        ..Settings::default()
    };
    let lab = lab(settings, |_| {}).await;
    lab.enqueue("alice@example.test", &["x@remote.test"]);
    until("delivery", 15, || !lab.sink.received().is_empty()).await;
    until("the entry is completed", 15, || lab.queue_len() == 0).await;
    let got = lab.sink.received();
    assert!(got[0].tls, "the message went over TLS");
    assert_eq!(got[0].data, MESSAGE_ON_THE_WIRE);
    lab.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_temporary_failure_is_retried_and_then_delivered() {
    let script: Script = Arc::new(|stage, conn| {
        (conn == 0 && matches!(stage, Stage::Rcpt(_))).then(|| "451 4.3.0 try again".to_string())
    });
    let lab = lab(
        Settings {
            script,
            ..Settings::default()
        },
        |_| {},
    )
    .await;
    lab.enqueue("alice@example.test", &["x@remote.test"]);
    until("the first, refused attempt", 15, || {
        lab.sink.connections() >= 1
    })
    .await;
    until("delivery on retry", 20, || !lab.sink.received().is_empty()).await;
    until("the entry is completed", 15, || lab.queue_len() == 0).await;
    assert!(lab.sink.connections() >= 2);
    let got = lab.sink.received();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].data, MESSAGE_ON_THE_WIRE);
    assert!(lab.inbox("alice").is_empty(), "no DSN");
    lab.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_that_outlives_the_queue_lifetime_is_bounced_with_4_4_7() {
    let script: Script = Arc::new(|stage, _| {
        matches!(stage, Stage::Rcpt(_)).then(|| "451 4.3.0 greylisted".to_string())
    });
    let settings = Settings {
        lifetime: 3,
        retry_max: 2,
        script,
        ..Settings::default()
    };
    let lab = lab(settings, |_| {}).await;
    let started = Instant::now();
    lab.enqueue("alice@example.test", &["x@remote.test"]);
    until("the DSN in alice's INBOX", 20, || {
        !lab.inbox("alice").is_empty()
    })
    .await;
    assert!(
        started.elapsed() >= Duration::from_secs(2),
        "not bounced before the lifetime ran out"
    );
    until("the entry is completed", 10, || lab.queue_len() == 0).await;
    assert!(lab.sink.connections() >= 2, "retried before giving up");
    assert!(lab.sink.received().is_empty());
    let inbox = lab.inbox("alice");
    assert_eq!(inbox.len(), 1);
    assert_dsn(&inbox[0], "x@remote.test", "4.4.7");
    assert!(
        inbox[0].contains("Diagnostic-Code: smtp; 451 4.3.0 greylisted"),
        "{}",
        inbox[0]
    );
    lab.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_permanent_failure_bounces_at_once_and_others_are_delivered() {
    let script: Script = Arc::new(|stage, _| match stage {
        Stage::Rcpt(r) if r == "x@remote.test" => Some("550 5.1.1 no such user".to_string()),
        _ => None,
    });
    let lab = lab(
        Settings {
            script,
            ..Settings::default()
        },
        |_| {},
    )
    .await;
    lab.enqueue("alice@example.test", &["x@remote.test", "y@remote.test"]);
    until("the DSN in alice's INBOX", 15, || {
        !lab.inbox("alice").is_empty()
    })
    .await;
    until("the entry is completed", 10, || lab.queue_len() == 0).await;
    assert_eq!(lab.sink.connections(), 1, "no retry after a 5xx");
    let got = lab.sink.received();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].rcpts, ["y@remote.test"]);
    let inbox = lab.inbox("alice");
    assert_dsn(&inbox[0], "x@remote.test", "5.1.1");
    assert!(inbox[0].contains("Diagnostic-Code: smtp; 550 5.1.1 no such user"));
    assert!(!inbox[0].contains("y@remote.test"), "only the failed one");
    lab.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_remote_senders_bounce_is_relayed_with_the_null_sender() {
    let script: Script = Arc::new(|stage, _| match stage {
        Stage::Rcpt(r) if r == "x@remote.test" => Some("550 5.1.1 no such user".to_string()),
        _ => None,
    });
    let lab = lab(
        Settings {
            script,
            ..Settings::default()
        },
        |_| {},
    )
    .await;
    lab.enqueue("bob@remote.test", &["x@remote.test"]);
    until("the DSN relayed to bob", 15, || {
        !lab.sink.received().is_empty()
    })
    .await;
    until("the queue is empty", 10, || lab.queue_len() == 0).await;
    let got = lab.sink.received();
    assert_eq!(got[0].mail_from, "", "a DSN is sent with the null sender");
    assert_eq!(got[0].rcpts, ["bob@remote.test"]);
    let text = String::from_utf8_lossy(&got[0].data);
    assert!(
        text.contains("Final-Recipient: rfc822; x@remote.test\r\n"),
        "{text}"
    );
    lab.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_domain_that_does_not_exist_bounces() {
    let lab = lab(Settings::default(), |_| {}).await;
    lab.enqueue("alice@example.test", &["y@nowhere.test"]);
    until("the DSN in alice's INBOX", 15, || {
        !lab.inbox("alice").is_empty()
    })
    .await;
    until("the entry is completed", 10, || lab.queue_len() == 0).await;
    assert_eq!(lab.sink.connections(), 0);
    let inbox = lab.inbox("alice");
    assert_dsn(&inbox[0], "y@nowhere.test", "5.1.2");
    lab.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn local_recipients_in_the_queue_go_to_their_inbox() {
    let lab = lab(Settings::default(), |_| {}).await;
    lab.enqueue("someone@remote.test", &["carol@example.test"]);
    until("carol's INBOX", 15, || !lab.inbox("carol").is_empty()).await;
    until("the entry is completed", 10, || lab.queue_len() == 0).await;
    let inbox = lab.inbox("carol");
    assert!(inbox[0].starts_with("Return-Path: <someone@remote.test>\nReceived: "));
    assert_eq!(lab.sink.connections(), 0);
    lab.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_hosts_claim_is_taken_over_once_stale() {
    let mut lock_written = None;
    let mut id = String::new();
    let lab = lab(Settings::default(), |spool| {
        id = spool
            .queue()
            .enqueue(
                "alice@example.test",
                &["x@remote.test".to_string()],
                MESSAGE.to_vec(),
            )
            .unwrap();
        // host2 claimed the entry and died: its dotlock stays behind, fresh.
        let lock = spool.queue().claim_lock_path(&id).unwrap();
        std::fs::write(&lock, "4242\nhost2\n").unwrap();
        lock_written = Some(Instant::now());
    })
    .await;
    let lock_written = lock_written.unwrap();
    lab.handle.kick();
    until("takeover and delivery", 20, || {
        !lab.sink.received().is_empty()
    })
    .await;
    until("the entry is completed", 10, || lab.queue_len() == 0).await;
    let got = lab.sink.received();
    assert_eq!(got.len(), 1);
    assert!(
        got[0].at.duration_since(lock_written) >= Duration::from_secs(2),
        "the claim was respected until it went stale (stale_after_secs = 2)"
    );
    // The claim (now ours) is released right after the entry is removed.
    let lock = lab.spool.queue().claim_lock_path(&id).unwrap();
    until("the dead host's lock is gone", 5, || !lock.exists()).await;
    lab.stop().await;
}
