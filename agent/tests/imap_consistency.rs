//! The imaptest "checkpoint" idea across hosts: four IMAP sessions on two agents (one
//! spool) do random APPEND, STORE, EXPUNGE and COPY on one mailbox while SMTP delivers new
//! mail through both hosts. At every checkpoint each session runs NOOP and then must
//! report the same message count, UID list and flags as every other session; at the end
//! the mailbox holds exactly the messages that were delivered or appended and not
//! deliberately expunged, each once.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use support::*;

const SCRIPT: &str = include_str!("support/imap_checkpoint.py");

#[test]
fn four_sessions_on_two_hosts_agree_at_every_checkpoint() {
    let mut lab = Lab::new(2, "");
    lab.edit_config(
        "allow_plaintext_auth = false",
        "allow_plaintext_auth = true",
    );
    lab.start(0, &[]);
    lab.start(1, &[]);
    let seed = std::process::id().to_string();
    let out = python(
        SCRIPT,
        &[
            &lab.ips[0].to_string(),
            &lab.ips[1].to_string(),
            &seed,
            "carol",
            "carol-pw",
            "2143",
            "2525",
        ],
    );
    assert!(out.starts_with("ok "), "{out}");
}
