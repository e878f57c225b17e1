//! Delivery status notifications (RFC 3464) for recipients that failed for good: a
//! `multipart/report; report-type=delivery-status` with a readable explanation, the
//! machine-readable `message/delivery-status`, and the original message's header as
//! `text/rfc822-headers` (not the body: a bounce should not carry a copy of the mail).
//!
//! Built with mail-builder, returned in the spool's form (LF line endings). Whether to
//! send one at all (never for a null sender) is the runner's decision.

use mail_builder::headers::date::Date;
use mail_builder::headers::raw::Raw;
use mail_builder::mime::{make_boundary, MimePart};
use mail_builder::MessageBuilder;

use super::client::Reply;

/// Why a DSN could not be built.
#[derive(Debug, thiserror::Error)]
pub enum DsnError {
    #[error("cannot serialize the DSN: {0}")]
    Write(#[from] std::io::Error),
}

/// One recipient the report is about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FailedRecipient {
    pub address: String,
    /// RFC 3463 status, `x.y.z`.
    pub status: String,
    /// What the remote server said (`Diagnostic-Code: smtp; ...`) or, for a failure
    /// found here, our own explanation.
    pub reply: Reply,
}

impl FailedRecipient {
    /// A recipient settled by `reply`; `status` overrides the reply's own (4.4.7 when the
    /// queue lifetime ran out).
    pub fn new(address: &str, reply: &Reply, status: Option<&str>) -> FailedRecipient {
        FailedRecipient {
            address: address.to_string(),
            status: status.map_or_else(|| reply.status_code(), str::to_string),
            reply: reply.clone(),
        }
    }
}

/// The facts of one report.
#[derive(Debug, Clone, Copy)]
pub struct Report<'a> {
    /// Our host's name (`Reporting-MTA`).
    pub reporting_mta: &'a str,
    /// The primary mail domain (`MAILER-DAEMON@<it>`).
    pub domain: &'a str,
    /// The queue id of the failed message (logged, and part of the Message-ID).
    pub queue_id: &'a str,
    /// The original envelope sender, who gets the report.
    pub sender: &'a str,
    /// When the message was queued, Unix seconds.
    pub arrival: i64,
    /// The original message (spool form); only its header is included.
    pub original: &'a [u8],
    pub failed: &'a [FailedRecipient],
}

/// The DSN message, LF line endings, ready for a mailbox or the queue.
pub fn build(report: &Report<'_>) -> Result<Vec<u8>, DsnError> {
    let message_id = format!(
        "{}.{:016x}.dsn@{}",
        report.queue_id,
        fastrand::u64(..),
        report.reporting_mta
    );
    let expired = report.failed.iter().any(|f| f.status == "4.4.7");
    let parts = vec![
        raw_part("text/plain; charset=utf-8", human_text(report, expired)),
        raw_part("message/delivery-status", delivery_status(report)),
        raw_part("text/rfc822-headers", header_section(report.original)),
    ];
    // Written raw so the parameter reads `report-type=delivery-status`, unquoted, as
    // RFC 3464's examples and simple filters expect; mail-builder takes the boundary
    // from it.
    let content_type = format!(
        "multipart/report; report-type=delivery-status; boundary=\"{}\"",
        make_boundary("_")
    );
    let mut body = MimePart::raw(parts);
    body.headers
        .push(("Content-Type".into(), Raw::new(content_type).into()));
    let out = MessageBuilder::new()
        .from((
            "Mail Delivery System",
            format!("MAILER-DAEMON@{}", report.domain).as_str(),
        ))
        .to(report.sender)
        .subject("Undelivered Mail Returned to Sender")
        .message_id(message_id)
        .header("Auto-Submitted", Raw::new("auto-replied"))
        .body(body)
        .write_to_vec()?;
    // mail-builder writes CRLF; the spool form is LF.
    Ok(hamail_storage::wire::to_spool(&out))
}

/// A leaf part written as given: our texts are already line-structured, and the
/// delivery-status fields must stay greppable rather than quoted-printable.
fn raw_part(content_type: &str, body: Vec<u8>) -> MimePart<'static> {
    let cte = if body.is_ascii() { "7bit" } else { "8bit" };
    MimePart::raw(body)
        .header("Content-Type", Raw::new(content_type.to_string()))
        .header("Content-Transfer-Encoding", Raw::new(cte))
}

fn human_text(report: &Report<'_>, expired: bool) -> Vec<u8> {
    let mut t = format!(
        "This is the mail system at host {}.\n\n\
         I'm sorry to have to inform you that your message could not\n\
         be delivered to one or more recipients.\n",
        report.reporting_mta
    );
    if expired {
        t.push_str("It stayed in the queue too long without being accepted.\n");
    }
    t.push('\n');
    for f in report.failed {
        t.push_str(&format!("<{}>: {}\n", f.address, f.reply.one_line()));
    }
    t.into_bytes()
}

fn delivery_status(report: &Report<'_>) -> Vec<u8> {
    let mut t = format!(
        "Reporting-MTA: dns; {}\nArrival-Date: {}\n",
        report.reporting_mta,
        Date::new(report.arrival).to_rfc822()
    );
    for f in report.failed {
        t.push_str(&format!(
            "\nFinal-Recipient: rfc822; {}\nAction: failed\nStatus: {}\n",
            ascii(&f.address),
            f.status
        ));
        let text = ascii(&f.reply.one_line());
        if f.reply.remote {
            t.push_str(&format!("Diagnostic-Code: smtp; {text}\n"));
        } else {
            t.push_str(&format!("Diagnostic-Code: X-hamail; {text}\n"));
        }
    }
    t.into_bytes()
}

/// `message/delivery-status` is 7-bit: anything else becomes `?`.
fn ascii(s: &str) -> String {
    s.chars()
        .map(|c| {
            if c.is_ascii() && !c.is_ascii_control() {
                c
            } else {
                '?'
            }
        })
        .collect()
}

/// The header section of an LF message, without the blank line.
fn header_section(msg: &[u8]) -> Vec<u8> {
    let mut end = msg.len();
    let mut pos = 0;
    while pos < msg.len() {
        let line_end = memchr::memchr(b'\n', &msg[pos..]).map_or(msg.len(), |i| pos + i + 1);
        if matches!(&msg[pos..line_end], b"\n" | b"\r\n") {
            end = pos;
            break;
        }
        pos = line_end;
    }
    let mut out = msg[..end].to_vec();
    if !out.ends_with(b"\n") {
        out.push(b'\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn report_has_the_rfc3464_parts_and_fields() {
        let reply = Reply {
            code: 550,
            status: [5, 1, 1],
            text: "no such user".into(),
            remote: true,
        };
        let local = Reply::local(451, [4, 4, 1], "connect failed");
        let failed = [
            FailedRecipient::new("x@remote.test", &reply, None),
            FailedRecipient::new("y@remote.test", &local, Some("4.4.7")),
        ];
        let original = b"Subject: hello\nFrom: a@example.test\n\nsecret body\n";
        let dsn = build(&Report {
            reporting_mta: "host1.example.test",
            domain: "example.test",
            queue_id: "Q1",
            sender: "a@example.test",
            arrival: 1_700_000_000,
            original,
            failed: &failed,
        })
        .unwrap();
        let text = String::from_utf8(dsn).unwrap();
        assert!(!text.contains('\r'), "LF form");
        for needle in [
            "From: \"Mail Delivery System\" <MAILER-DAEMON@example.test>",
            "To: <a@example.test>",
            "Content-Type: multipart/report; report-type=delivery-status;",
            "Content-Type: message/delivery-status",
            "Reporting-MTA: dns; host1.example.test",
            "Arrival-Date: ",
            "Final-Recipient: rfc822; x@remote.test\nAction: failed\nStatus: 5.1.1\nDiagnostic-Code: smtp; 550 5.1.1 no such user\n",
            "Final-Recipient: rfc822; y@remote.test\nAction: failed\nStatus: 4.4.7\nDiagnostic-Code: X-hamail; 451 4.4.1 connect failed\n",
            "Content-Type: text/rfc822-headers",
            "Subject: hello\nFrom: a@example.test\n",
            "Message-ID: <Q1.",
            "Auto-Submitted: auto-replied",
        ] {
            assert!(text.contains(needle), "missing {needle:?} in\n{text}");
        }
        assert!(text.contains("multipart/report"));
        assert!(!text.contains("secret body"), "the body is not returned");
    }

    #[test]
    fn header_section_stops_at_the_blank_line() {
        assert_eq!(header_section(b"A: 1\nB: 2\n\nbody\n"), b"A: 1\nB: 2\n");
        assert_eq!(header_section(b"A: 1"), b"A: 1\n");
    }
}
