//! From an accepted message to durable storage: the one path that SMTP, the queue runner
//! and `hamail-agent deliver` share.
//!
//! Messages travel in the spool's form ([`hamail_storage::wire`]): LF line endings, no dot-stuffing, with our
//! `Received:` already on top. Local recipients get a `Return-Path:` and are appended to
//! their INBOX (each one durable, all-or-nothing, by the storage crate); remote recipients,
//! and local ones whose mailbox could not be written right now, go into the shared queue,
//! from which any host finishes delivery. [`deliver`] returns `Ok` only when every
//! recipient's copy is durable in a mailbox or in the queue: that is what lets SMTP answer
//! 250.

use hamail_storage::mbox::NewMessage;
use hamail_storage::{Spool, StorageError};

/// Header fields that mailbox software keeps its own state in (Dovecot, UW-IMAP, mutt) or
/// that only the final delivery may set. A sender must not be able to plant them: the
/// index import trusts `X-UID`/`X-IMAPbase`, and `Status: RO` would mark mail read.
const INTERNAL_HEADERS: &[&str] = &[
    "return-path",
    "x-imapbase",
    "x-imap",
    "x-uid",
    "status",
    "x-status",
    "x-keywords",
    "content-length",
];

/// What happened to one message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivered {
    /// The queue id (logged; also the id of the queue entry, if one was written).
    pub queue_id: String,
    /// Recipients whose INBOX now holds the message.
    pub local: usize,
    /// Recipients left in the queue (remote ones, or local ones to retry).
    pub queued: usize,
}

/// Deliver `data` from `sender` to the local spool users `users` and the remote addresses
/// `remote`. Local users that cannot be written now are queued as `user@local_domain` so
/// the queue runner retries them.
///
/// On `Err`, no mailbox holds the message unless a later step failed after some local
/// appends succeeded (then the error says so in the logs and the sender's retry may
/// duplicate those copies: the RFC 5321 §6.1 trade-off, never a loss).
pub fn deliver(
    spool: &Spool,
    local_domain: &str,
    queue_id: &str,
    sender: &str,
    users: &[String],
    remote: &[String],
    data: &[u8],
) -> Result<Delivered, StorageError> {
    let queue = spool.queue();
    let mut queued = 0;
    // Remote copies first: if the queue cannot take them, nothing has been written yet
    // and a plain 4xx is exact.
    if !remote.is_empty() {
        queue.enqueue_with_id(queue_id, sender, remote, data.to_vec())?;
        queued += remote.len();
    }
    let mut local = 0;
    let mut retry = Vec::new();
    let mut last_error = None;
    if !users.is_empty() {
        let mut msg = NewMessage::new(sender, local_copy(sender, data));
        msg.queue_id = queue_id.to_string();
        let names: Vec<&str> = users.iter().map(String::as_str).collect();
        for (user, result) in users.iter().zip(spool.deliver(&names, &msg)) {
            match result {
                Ok(_) => local += 1,
                Err(e) => {
                    tracing::warn!(queue_id = %queue_id, user = %user, error = %e, "local delivery failed, queueing");
                    retry.push(format!("{user}@{local_domain}"));
                    last_error = Some(e);
                }
            }
        }
    }
    if !retry.is_empty() {
        // A second entry of the same transaction: its own id, recognisably related.
        let retry_id = format!("{queue_id}L");
        if let Err(e) = queue.enqueue_with_id(&retry_id, sender, &retry, data.to_vec()) {
            if local > 0 || queued > 0 {
                tracing::error!(queue_id = %queue_id, error = %e, delivered = local,
                    "could not queue the failed recipients after others were delivered; the sender's retry may duplicate");
            }
            return Err(match last_error {
                // The append's own error is the better explanation (disk full, lock).
                Some(first) if local == 0 => first,
                _ => e,
            });
        }
        queued += retry.len();
    }
    Ok(Delivered {
        queue_id: queue_id.to_string(),
        local,
        queued,
    })
}

/// The copy that goes into a mailbox: `Return-Path:` on top (RFC 5321 §4.4).
pub fn local_copy(sender: &str, data: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(data.len() + sender.len() + 16);
    out.extend_from_slice(b"Return-Path: <");
    out.extend_from_slice(sender.as_bytes());
    out.extend_from_slice(b">\n");
    out.extend_from_slice(data);
    out
}

/// Remove [`INTERNAL_HEADERS`] (with their continuation lines) from the header section of
/// an LF-terminated message; the body is untouched.
pub fn strip_internal_headers(data: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(data.len());
    let mut pos = 0;
    let mut dropping = false;
    while pos < data.len() {
        let end = memchr::memchr(b'\n', &data[pos..]).map_or(data.len(), |i| pos + i + 1);
        let line = &data[pos..end];
        if line == b"\n" || line == b"\r\n" {
            break; // end of the header section
        }
        let continuation = matches!(line.first(), Some(b' ' | b'\t'));
        if !continuation {
            dropping = header_name(line).is_some_and(|name| {
                INTERNAL_HEADERS
                    .iter()
                    .any(|h| h.as_bytes().eq_ignore_ascii_case(name))
            });
        }
        if !dropping {
            out.extend_from_slice(line);
        }
        pos = end;
    }
    out.extend_from_slice(&data[pos..]);
    out
}

fn header_name(line: &[u8]) -> Option<&[u8]> {
    let colon = memchr::memchr(b':', line)?;
    let name = &line[..colon];
    (!name.is_empty() && name.iter().all(|b| b.is_ascii_graphic())).then_some(name)
}

#[cfg(test)]
mod tests {
    use super::*;
    use hamail_storage::LockOptions;

    #[test]
    fn internal_headers_are_stripped_only_from_the_header_section() {
        let msg = b"X-UID: 7\nSubject: hi\nStatus: RO\nX-Keywords: a\n  b\nFrom: a@b\n\nStatus: body line\n";
        let out = strip_internal_headers(msg);
        assert_eq!(out, b"Subject: hi\nFrom: a@b\n\nStatus: body line\n");
        // Without a body, or with a header that is not a field at all.
        assert_eq!(
            strip_internal_headers(b"x-imapbase: 1 2\nA: b\n"),
            b"A: b\n"
        );
        assert_eq!(
            strip_internal_headers(b"no colon here\n"),
            b"no colon here\n"
        );
    }

    #[test]
    fn local_and_remote_recipients_and_a_failing_mailbox() {
        let dir = tempfile::tempdir().unwrap();
        let spool = Spool::open(dir.path(), LockOptions::default()).unwrap();
        // bob's INBOX path is a directory: his append fails and he is queued for retry.
        std::fs::create_dir_all(dir.path().join("mail/bob")).unwrap();
        let d = deliver(
            &spool,
            "example.test",
            "T1",
            "s@x.test",
            &["alice".to_string(), "bob".to_string()],
            &["r@remote.test".to_string()],
            b"Subject: t\n\nbody\n",
        )
        .unwrap();
        assert_eq!((d.local, d.queued), (1, 2));
        let read = spool.inbox("alice").unwrap().read().unwrap();
        let meta = read.index().visible().next().unwrap().clone();
        let text = read.read_message(&meta).unwrap();
        assert!(text.starts_with(b"Return-Path: <s@x.test>\nSubject: t\n"));
        let queue = spool.queue();
        let mut rcpts: Vec<String> = queue
            .list()
            .unwrap()
            .iter()
            .flat_map(|id| queue.claim(id).unwrap().unwrap().entry.recipients.clone())
            .collect();
        rcpts.sort();
        assert_eq!(rcpts, ["bob@example.test", "r@remote.test"]);
    }
}
