//! Reading the IMAP state that Dovecot and UW-IMAP leave in mbox headers, so a mailbox
//! migrated to hamail keeps its UIDs and flags:
//!
//! - `X-IMAPbase: <uidvalidity> <uidnext> [keywords…]` (Dovecot, first message) and
//!   `X-IMAP:` (UW-IMAP, in a pseudo message "DON'T DELETE THIS MESSAGE");
//! - `X-UID: <uid>`; `Status: RO` (R = \Seen); `X-Status: ADFT` (\Answered \Deleted
//!   \Flagged \Draft); `X-Keywords: kw1 kw2`.

use super::Flags;

/// Mailbox-level state found in the first message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImportedState {
    pub uidvalidity: u32,
    pub uidnext: u32,
    pub keywords: Vec<String>,
}

/// What one message's headers say.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct ImportedMessage {
    pub uid: Option<u32>,
    pub flags: Flags,
    pub keywords: Vec<String>,
    pub base: Option<ImportedState>,
    /// A UW-IMAP/Dovecot "FOLDER INTERNAL DATA" pseudo message.
    pub pseudo: bool,
}

/// Only this much of a message is searched for its header block.
pub const HEADER_LIMIT: usize = 64 * 1024;

/// Parse the header block at the start of `msg` (the bytes after the `From ` line).
pub fn parse(msg: &[u8]) -> ImportedMessage {
    let head = &msg[..msg.len().min(HEADER_LIMIT)];
    let mut out = ImportedMessage::default();
    let mut subject_internal = false;
    let mut has_ximap = false;
    for (name, value) in header_fields(head) {
        let value = value.trim();
        match name.to_ascii_lowercase().as_str() {
            "x-imapbase" | "x-imap" => {
                has_ximap = true;
                let mut words = value.split_ascii_whitespace();
                let uv = words.next().and_then(|w| w.parse().ok());
                let un = words.next().and_then(|w| w.parse().ok());
                if let (Some(uidvalidity), Some(uidnext)) = (uv, un) {
                    out.base = Some(ImportedState {
                        uidvalidity,
                        uidnext,
                        keywords: words.map(str::to_string).collect(),
                    });
                }
            }
            "x-uid" => out.uid = value.parse().ok().filter(|u| *u > 0),
            "status" if value.contains('R') => out.flags.insert(Flags::SEEN),
            "x-status" => {
                for (c, f) in [
                    ('A', Flags::ANSWERED),
                    ('D', Flags::DELETED),
                    ('F', Flags::FLAGGED),
                    ('T', Flags::DRAFT),
                ] {
                    if value.contains(c) {
                        out.flags.insert(f);
                    }
                }
            }
            "x-keywords" => {
                out.keywords = value
                    .split(|c: char| c.is_ascii_whitespace() || c == ',')
                    .filter(|k| !k.is_empty())
                    .map(str::to_string)
                    .collect()
            }
            "subject" => subject_internal = value.starts_with("DON'T DELETE THIS MESSAGE"),
            _ => {}
        }
    }
    out.pseudo = subject_internal && has_ximap;
    out
}

/// The names we look for; other fields are skipped without allocating (a cold index
/// build parses the headers of every message of a possibly huge mailbox).
const WANTED: [&[u8]; 6] = [
    b"x-imapbase",
    b"x-imap",
    b"x-uid",
    b"status",
    b"x-status",
    b"x-keywords",
];

fn wanted(name: &[u8]) -> bool {
    name.eq_ignore_ascii_case(b"subject") || WANTED.iter().any(|w| name.eq_ignore_ascii_case(w))
}

/// Unfolded `(name, value)` pairs of the wanted fields of the header block (which ends at
/// the first empty line).
fn header_fields(head: &[u8]) -> Vec<(String, String)> {
    let mut fields: Vec<(String, String)> = Vec::new();
    let mut in_wanted = false;
    for raw in head.split(|&b| b == b'\n') {
        let line = raw.strip_suffix(b"\r").unwrap_or(raw);
        if line.is_empty() {
            break;
        }
        if line[0] == b' ' || line[0] == b'\t' {
            if in_wanted {
                if let Some(last) = fields.last_mut() {
                    last.1.push(' ');
                    last.1.push_str(String::from_utf8_lossy(line).trim());
                }
            }
            continue;
        }
        in_wanted = false;
        let Some(colon) = memchr::memchr(b':', line) else {
            continue;
        };
        let name = line[..colon].trim_ascii();
        if wanted(name) {
            in_wanted = true;
            fields.push((
                String::from_utf8_lossy(name).into_owned(),
                String::from_utf8_lossy(&line[colon + 1..]).into_owned(),
            ));
        }
    }
    fields
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dovecot_headers() {
        let m = parse(
            b"X-IMAPbase: 1700000000 0000000043 $Junk work\nX-UID: 41\nStatus: RO\n\
              X-Status: AF\nX-Keywords: work\nSubject: hi\n\nbody X-UID: 99\n",
        );
        assert_eq!(m.uid, Some(41));
        assert_eq!(m.flags, Flags::SEEN | Flags::ANSWERED | Flags::FLAGGED);
        assert_eq!(m.keywords, vec!["work"]);
        assert_eq!(
            m.base,
            Some(ImportedState {
                uidvalidity: 1_700_000_000,
                uidnext: 43,
                keywords: vec!["$Junk".into(), "work".into()]
            })
        );
        assert!(!m.pseudo);
    }

    #[test]
    fn uw_pseudo_message_and_crlf() {
        let m = parse(
            b"Date: x\r\nSubject: DON'T DELETE THIS MESSAGE -- FOLDER INTERNAL DATA\r\n\
              X-IMAP: 1234 0000000010\r\nStatus: RO\r\n\r\nThis text is part of the internal format\r\n",
        );
        assert!(m.pseudo);
        assert_eq!(m.base.map(|b| (b.uidvalidity, b.uidnext)), Some((1234, 10)));
        assert_eq!(m.flags, Flags::SEEN);
    }

    #[test]
    fn unread_message_has_no_flags() {
        let m = parse(b"Status: O\nX-Status: \n\nStatus: R\n");
        assert_eq!(m.flags, Flags::empty());
        assert_eq!(m.uid, None);
    }
}
