//! From a message to a mailbox: the one path that SMTP, the queue runner, `hamail-agent
//! deliver` and IMAP APPEND share.
//!
//! - [`deliver`] (SMTP): local recipients are appended to their INBOX, remote recipients go
//!   into the shared queue, and so do local ones whose mailbox cannot be written right now.
//!   Any host finishes delivery from the queue. `Ok` only when every recipient's copy is
//!   durable in a mailbox or in the queue: that is what lets SMTP answer 250.
//! - [`deliver_local`] (the LDA, the queue runner's local recipients and its bounces, and
//!   [`deliver`]): a `Return-Path:` on top (RFC 5321 §4.4), then appended to each user's
//!   INBOX on its own (each one durable, all-or-nothing, by the storage crate). One result
//!   per user, so the caller decides what a failure means (queue, bounce, exit code).
//! - [`append`] (IMAP APPEND): the client's message, converted from the wire form, stored
//!   as given: no `Return-Path:` added, no header removed, with the client's flags and date.
//!
//! Messages travel in the spool's form ([`hamail_storage::wire`]): LF line endings, no
//! dot-stuffing. Header fields that mailbox software keeps its state in
//! ([`strip_internal_headers`]) are removed where a message comes in from outside: in the
//! SMTP session (before it adds `Received:`) and in the LDA. Queue entries and DSNs are
//! ours, and APPEND stores what the client gave.

use hamail_storage::mbox::{Appended, NewMessage};
use hamail_storage::{wire, Flags, Mailbox, Spool, StorageError};

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

/// Deliver `data` (spool form, internal headers already removed by the SMTP session) from
/// `sender` to the local spool users `users` and the remote addresses `remote`. Local users that cannot be written now are queued as `user@local_domain` so
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
        for (user, result) in users
            .iter()
            .zip(deliver_local(spool, queue_id, sender, users, data))
        {
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

/// Deliver `data` (spool form) from `sender` ("" for the null sender) to the INBOX of each
/// of `users`, with a `Return-Path:` on top; `queue_id` is recorded with the append (crash
/// recovery and logs). One result per user, in order.
pub fn deliver_local(
    spool: &Spool,
    queue_id: &str,
    sender: &str,
    users: &[String],
    data: &[u8],
) -> Vec<Result<Appended, StorageError>> {
    let mut msg = NewMessage::new(sender, local_copy(sender, data));
    msg.queue_id = queue_id.to_string();
    let names: Vec<&str> = users.iter().map(String::as_str).collect();
    spool.deliver(&names, &msg)
}

/// IMAP APPEND: store `literal` (the message as the client sent it, wire form) in
/// `mailbox` with these flags and keywords, and the client's internal date if it gave one.
/// An empty literal is [`StorageError::EmptyMessage`].
pub fn append(
    mailbox: &Mailbox,
    literal: &[u8],
    flags: Flags,
    keywords: Vec<String>,
    date: Option<i64>,
) -> Result<Appended, StorageError> {
    // A zero-length literal has neither header nor body: refused for good, as Dovecot
    // does. Storing it would work, but once its index record is rebuilt from the mbox it
    // reads back as one blank line.
    if literal.is_empty() {
        return Err(StorageError::EmptyMessage);
    }
    let data = wire::to_spool(literal);
    let mut msg = NewMessage::new(&envelope_sender(&data), data);
    msg.flags = flags;
    msg.keywords = keywords;
    if let Some(d) = date {
        msg.date = d;
    }
    mailbox.append(std::slice::from_ref(&msg))
}

/// The copy that goes into a mailbox: `Return-Path:` on top (RFC 5321 §4.4).
fn local_copy(sender: &str, data: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(data.len() + sender.len() + 16);
    out.extend_from_slice(b"Return-Path: <");
    out.extend_from_slice(sender.as_bytes());
    out.extend_from_slice(b">\n");
    out.extend_from_slice(data);
    out
}

/// The sender for the mbox `From ` line of a copied or appended message (spool form): its
/// `Return-Path:`, or "" (written as `MAILER-DAEMON`) when it has none.
pub fn envelope_sender(data: &[u8]) -> String {
    let head_end = memchr::memmem::find(data, b"\n\n").unwrap_or(data.len());
    for line in data[..head_end].split(|b| *b == b'\n') {
        if line.len() > 12 && line[..12].eq_ignore_ascii_case(b"return-path:") {
            let v = String::from_utf8_lossy(&line[12..]);
            return v
                .trim()
                .trim_start_matches('<')
                .trim_end_matches('>')
                .trim()
                .to_string();
        }
    }
    String::new()
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
        std::fs::create_dir_all(spool.inbox("bob").unwrap().mbox_path()).unwrap();
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

    #[test]
    fn deliver_local_adds_return_path_and_answers_per_user() {
        let dir = tempfile::tempdir().unwrap();
        let spool = Spool::open(dir.path(), LockOptions::default()).unwrap();
        let users = ["alice".to_string(), "../bad".to_string(), "bob".to_string()];
        let results = deliver_local(&spool, "Q1", "", &users, b"Subject: dsn\n\nbody\n");
        assert!(results[0].is_ok() && results[2].is_ok());
        assert!(matches!(results[1], Err(StorageError::InvalidName { .. })));
        let read = spool.inbox("bob").unwrap().read().unwrap();
        let meta = read.index().visible().next().unwrap().clone();
        assert_eq!(
            read.read_message(&meta).unwrap(),
            b"Return-Path: <>\nSubject: dsn\n\nbody\n"
        );
    }

    #[test]
    fn append_stores_the_literal_as_given_in_spool_form() {
        let dir = tempfile::tempdir().unwrap();
        let spool = Spool::open(dir.path(), LockOptions::default()).unwrap();
        let inbox = spool.inbox("carol").unwrap();
        let wire = b"Return-Path: <r@x.test>\r\nX-UID: 9\r\nSubject: a\r\n\r\nbody\r\n";
        let a = append(
            &inbox,
            wire,
            Flags::SEEN,
            vec!["$Work".into()],
            Some(1_000_000),
        )
        .unwrap();
        assert_eq!(a.count, 1);
        let read = inbox.read().unwrap();
        let meta = read.index().by_uid(a.first_uid).unwrap().clone();
        // Nothing added or removed: only CRLF became LF, and FETCH gives the literal back.
        let stored = read.read_message(&meta).unwrap();
        assert_eq!(stored, wire::to_spool(wire));
        assert_eq!(wire::to_wire(&stored), wire);
        assert_eq!(meta.crlf_size(), wire.len() as u64);
        assert!(meta.flags.contains(Flags::SEEN));
        assert_eq!(read.index().keywords, ["$Work"]);
        assert_eq!(meta.date, 1_000_000);
        let mbox = std::fs::read(spool.inbox("carol").unwrap().mbox_path()).unwrap();
        assert!(
            mbox.starts_with(b"From r@x.test "),
            "{}",
            String::from_utf8_lossy(&mbox)
        );
    }

    #[test]
    fn an_empty_literal_is_refused_for_good() {
        let dir = tempfile::tempdir().unwrap();
        let spool = Spool::open(dir.path(), LockOptions::default()).unwrap();
        let inbox = spool.inbox("carol").unwrap();
        let e = append(&inbox, b"", Flags::empty(), Vec::new(), None).unwrap_err();
        assert!(matches!(e, StorageError::EmptyMessage), "{e}");
        assert!(!e.is_temporary());
        assert!(!inbox.exists() || inbox.read().unwrap().index().visible().next().is_none());
    }

    #[test]
    fn the_envelope_sender_is_the_return_path_of_the_header() {
        assert_eq!(
            envelope_sender(b"Return-Path: <a@b>\nX: y\n\nbody\n"),
            "a@b"
        );
        assert_eq!(envelope_sender(b"return-path:  x@y \n\n"), "x@y");
        assert_eq!(envelope_sender(b"X: y\n\nReturn-Path: <no@body>\n"), "");
    }
}
