//! Framing of the client's byte stream into commands, sans-IO: the connection loop feeds
//! the bytes it reads into a [`Framer`] and acts on the [`Event`]s it returns. Built on
//! imap-codec's fragmentizer, which splits the stream into lines and the literals they
//! announce; this module decides about each literal *before* any of its bytes is read, and
//! holds to that decision for every byte the client announced.
//!
//! Literals (RFC 3501 §4.3, §7.5; RFC 7888):
//!
//! - A synchronizing literal (`{n}`) within the limit gets its `+` continuation. Over the
//!   limit it is answered `BAD [TOOBIG]` and gets no `+`, so the client does not send it
//!   and the next bytes are a new command.
//! - A non-synchronizing literal (`{n+}`, LITERAL+) comes whether we like it or not. Over
//!   the limit after login, the command is answered `BAD [TOOBIG]` at once and then the
//!   announced bytes, and the rest of that command, are read and thrown away: the session
//!   goes on, so a client that uploaded a message too large gets a clear error and keeps
//!   its connection (RFC 7888 §4 allows this or a BYE). Before login it is answered
//!   `* BYE [TOOBIG]` and the connection closes: nothing before login needs a large
//!   literal ([`MAX_LITERAL_BEFORE_LOGIN`]), and reading megabytes for a stranger buys
//!   nothing.
//!
//! Either way no byte inside a refused literal is ever parsed as a command: the
//! fragmentizer keeps counting the announced length (the command is "poisoned", never
//! decoded), and memory stays bounded by the fragmentizer's message limit.

use imap_codec::decode::Decoder;
use imap_codec::fragmentizer::{
    DecodeMessageError, FragmentInfo, Fragmentizer, LiteralAnnouncement,
};
use imap_types::core::{LiteralMode, Tag};
use imap_types::IntoStatic;

/// Bytes of command text around literals (a command line is never this long legitimately).
pub const MAX_COMMAND_TEXT: u32 = 64 * 1024;

/// The largest literal accepted before login (a user name or password).
pub const MAX_LITERAL_BEFORE_LOGIN: u32 = 8 * 1024;

/// What the connection loop must do next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// Read more bytes and [`Framer::enqueue`] them.
    NeedMore,
    /// Send `+ Ready for literal data`: a synchronizing literal was accepted.
    Continue,
    /// A whole command is buffered: [`Framer::decode`] it.
    Message,
    /// Answer `BAD [TOOBIG] <text>` (tagged when the tag could be read) and go on reading.
    Refused {
        tag: Option<Tag<'static>>,
        text: &'static str,
        /// The announced literal length, if a literal was refused.
        literal: Option<u32>,
    },
    /// Answer `* BYE [TOOBIG] <text>` and close the connection.
    Close {
        text: &'static str,
        literal: Option<u32>,
    },
}

/// One connection's framing state.
#[derive(Debug)]
pub struct Framer {
    frag: Fragmentizer,
    max_literal: u32,
    /// Bytes received since the fragmentizer last completed a fragment, and how many may
    /// come before one must complete: a command line, or an announced literal plus the
    /// rest of its line. Keeps a client that never sends CRLF from filling memory.
    pending: usize,
    allowance: usize,
    /// The current command was already answered (refused); its remaining fragments are
    /// read and dropped, never decoded.
    discarding: bool,
}

impl Framer {
    /// `max_literal`: the largest literal accepted after login (the message size limit).
    pub fn new(max_literal: u32) -> Framer {
        Framer {
            frag: Fragmentizer::new(max_literal.saturating_add(MAX_COMMAND_TEXT)),
            max_literal,
            pending: 0,
            allowance: MAX_COMMAND_TEXT as usize,
            discarding: false,
        }
    }

    /// Start afresh (after STARTTLS): nothing received so far counts.
    pub fn reset(&mut self) {
        *self = Framer::new(self.max_literal);
    }

    /// Add bytes read from the client. `Err` when the current line or literal has run
    /// past what was announced for it: the connection must be closed.
    pub fn enqueue(&mut self, bytes: &[u8]) -> Result<(), LineTooLong> {
        self.pending = self.pending.saturating_add(bytes.len());
        if self.pending > self.allowance {
            return Err(LineTooLong {
                pending: self.pending,
                allowance: self.allowance,
            });
        }
        self.frag.enqueue_bytes(bytes);
        Ok(())
    }

    /// Advance through the buffered bytes until something must be done.
    /// `authenticated` selects the literal limit.
    pub fn next(&mut self, authenticated: bool) -> Event {
        let limit = if authenticated {
            self.max_literal
        } else {
            self.max_literal.min(MAX_LITERAL_BEFORE_LOGIN)
        };
        loop {
            let Some(info) = self.frag.progress() else {
                return Event::NeedMore;
            };
            self.pending = 0;
            self.allowance = MAX_COMMAND_TEXT as usize;
            match info {
                FragmentInfo::Line {
                    announcement: Some(LiteralAnnouncement { mode, length }),
                    ..
                } => {
                    self.allowance = (length as usize).saturating_add(MAX_COMMAND_TEXT as usize);
                    if length <= limit {
                        if mode == LiteralMode::Sync {
                            // Also inside a refused command: the client waits for the `+`
                            // and then sends bytes that are thrown away with the rest.
                            return Event::Continue;
                        }
                        continue;
                    }
                    if mode == LiteralMode::Sync {
                        // Without `+` the client does not send it: the next bytes are a
                        // new command.
                        match self.skip("Literal too large", Some(length)) {
                            Some(refused) => return refused,
                            None => continue,
                        }
                    }
                    if self.discarding {
                        // Already answered; the allowance above covers its bytes.
                        continue;
                    }
                    if !authenticated {
                        return Event::Close {
                            text: "Literal too large before login",
                            literal: Some(length),
                        };
                    }
                    let tag = self.tag();
                    self.frag.poison_message();
                    self.discarding = true;
                    return Event::Refused {
                        tag,
                        text: "Literal too large",
                        literal: Some(length),
                    };
                }
                FragmentInfo::Line { start, end, .. }
                    if end - start > MAX_COMMAND_TEXT as usize =>
                {
                    // A command line (not a literal) this long is an attack or a bug. It
                    // ends its command (no literal follows), which is dropped.
                    match self.skip("Command line too long", None) {
                        Some(refused) => return refused,
                        None => continue,
                    }
                }
                _ => {
                    if !self.frag.is_message_complete() {
                        continue;
                    }
                    if std::mem::take(&mut self.discarding) {
                        continue;
                    }
                    if self.frag.is_max_message_size_exceeded() {
                        return Event::Refused {
                            tag: self.tag(),
                            text: "Command too long",
                            literal: None,
                        };
                    }
                    return Event::Message;
                }
            }
        }
    }

    /// End the current command here (the client sends nothing more of it); the refusal
    /// to answer, unless it was answered already.
    fn skip(&mut self, text: &'static str, literal: Option<u32>) -> Option<Event> {
        let tag = self.tag();
        self.frag.skip_message();
        if std::mem::take(&mut self.discarding) {
            return None;
        }
        Some(Event::Refused { tag, text, literal })
    }

    /// Decode the command that [`Event::Message`] announced.
    pub fn decode<'a, C: Decoder>(
        &'a self,
        codec: &C,
    ) -> Result<C::Message<'a>, DecodeMessageError<'a, C>> {
        self.frag.decode_message(codec)
    }

    /// The tag of the current command, if it can be read.
    pub fn tag(&self) -> Option<Tag<'static>> {
        self.frag.decode_tag().map(IntoStatic::into_static)
    }
}

/// A line or literal ran past its allowance.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LineTooLong {
    pub pending: usize,
    pub allowance: usize,
}

#[cfg(test)]
mod tests {
    use super::*;
    use imap_codec::CommandCodec;

    /// What the framer did with `chunks`, fed one after the other: `msg TAG` for a decoded
    /// command, `refused TAG`, `+`, `bye`.
    fn drive(framer: &mut Framer, chunks: &[&[u8]], authenticated: bool) -> Vec<String> {
        let mut out = Vec::new();
        for chunk in chunks {
            framer.enqueue(chunk).unwrap();
            loop {
                match framer.next(authenticated) {
                    Event::NeedMore => break,
                    Event::Continue => out.push("+".to_string()),
                    Event::Message => {
                        let cmd = framer.decode(&CommandCodec::default()).unwrap();
                        out.push(format!("msg {}", cmd.tag.inner()));
                    }
                    Event::Refused { tag, .. } => out.push(format!(
                        "refused {}",
                        tag.map_or("-".to_string(), |t| t.inner().to_string())
                    )),
                    Event::Close { .. } => {
                        out.push("bye".to_string());
                        return out;
                    }
                }
            }
        }
        out
    }

    /// A literal of `n` bytes whose lines are IMAP commands an attacker hopes to run.
    fn payload(n: usize) -> Vec<u8> {
        let mut p = b"Subject: big\r\n\r\nhello\r\nx1 NOOP\r\nx2 CREATE injected\r\n".to_vec();
        while p.len() < n {
            p.extend_from_slice(b"x3 DELETE INBOX\r\n");
        }
        p.truncate(n);
        p
    }

    fn stream(parts: &[&[u8]]) -> Vec<u8> {
        parts.concat()
    }

    #[test]
    fn non_synchronizing_literal_over_the_limit_is_discarded_after_login() {
        let lit = payload(300);
        let bytes = stream(&[b"a APPEND INBOX {300+}\r\n", &lit, b"\r\nb NOOP\r\n"]);
        // In one write, and byte by byte.
        let mut f = Framer::new(100);
        assert_eq!(drive(&mut f, &[&bytes], true), ["refused a", "msg b"]);
        let mut f = Framer::new(100);
        let bytewise: Vec<&[u8]> = bytes.chunks(1).collect();
        assert_eq!(drive(&mut f, &bytewise, true), ["refused a", "msg b"]);
    }

    #[test]
    fn non_synchronizing_literal_over_the_limit_before_login_closes() {
        let lit = payload(20_000);
        let bytes = stream(&[b"a LOGIN {20000+}\r\n", &lit, b" x\r\nb NOOP\r\n"]);
        let mut f = Framer::new(1 << 20);
        assert_eq!(drive(&mut f, &[&bytes], false), ["bye"]);
        // The same literal after login is within the limit.
        let mut f = Framer::new(1 << 20);
        assert_eq!(drive(&mut f, &[&bytes], true), ["msg a", "msg b"]);
    }

    #[test]
    fn synchronizing_literal_over_the_limit_gets_no_continuation() {
        // The client waits for `+`; without it, its next line is a new command.
        let mut f = Framer::new(100);
        assert_eq!(
            drive(&mut f, &[b"a APPEND INBOX {300}\r\n", b"b NOOP\r\n"], true),
            ["refused a", "msg b"]
        );
    }

    #[test]
    fn literal_at_the_limit_is_accepted() {
        let lit = payload(100);
        let mut f = Framer::new(100);
        let bytes = stream(&[b"a APPEND INBOX {100+}\r\n", &lit, b"\r\n"]);
        assert_eq!(drive(&mut f, &[&bytes], true), ["msg a"]);
        let mut f = Framer::new(100);
        assert_eq!(
            drive(&mut f, &[b"a APPEND INBOX {100}\r\n", &lit, b"\r\n"], true),
            ["+", "msg a"]
        );
        let lit = payload(101);
        let mut f = Framer::new(100);
        let bytes = stream(&[b"a APPEND INBOX {101+}\r\n", &lit, b"\r\nb NOOP\r\n"]);
        assert_eq!(drive(&mut f, &[&bytes], true), ["refused a", "msg b"]);
    }

    #[test]
    fn a_refused_command_is_dropped_to_its_end() {
        // Further literals of the refused command are read and thrown away too: a
        // non-synchronizing one at once, a synchronizing one after its `+`.
        let big = payload(300);
        let small = payload(50);
        let bytes = stream(&[
            b"a LOGIN {300+}\r\n",
            &big,
            b" {50+}\r\n",
            &small,
            b" {50}\r\n",
        ]);
        let mut f = Framer::new(100);
        assert_eq!(drive(&mut f, &[&bytes], true), ["refused a", "+"]);
        assert_eq!(drive(&mut f, &[&small, b"\r\nb NOOP\r\n"], true), ["msg b"]);
    }

    #[test]
    fn a_command_that_takes_no_literal_is_refused_the_same_way() {
        let lit = payload(300);
        let bytes = stream(&[b"a NOOP {300+}\r\n", &lit, b"\r\nb NOOP\r\n"]);
        let mut f = Framer::new(100);
        assert_eq!(drive(&mut f, &[&bytes], true), ["refused a", "msg b"]);
    }

    #[test]
    fn a_line_that_never_ends_is_cut_off() {
        let mut f = Framer::new(100);
        let junk = vec![b'x'; MAX_COMMAND_TEXT as usize + 1];
        assert!(f.enqueue(&junk).is_err());
        // An announced literal raises the allowance for its own bytes only.
        let mut f = Framer::new(1 << 20);
        f.enqueue(b"a APPEND INBOX {200000+}\r\n").unwrap();
        assert_eq!(f.next(true), Event::NeedMore);
        assert!(f.enqueue(&vec![b'x'; 200_000]).is_ok());
    }
}
