//! The IMAP framer never lets a byte of a refused literal be read as a command. A
//! simulated honest client sends commands whose literals are a few bytes either side of
//! the limit (synchronizing ones only after `+`, LITERAL+ ones at once), in chunks of
//! fuzzed sizes, before or after login; every literal is full of command lines tagged
//! `INJ`. Checked: no `INJ` tag is ever decoded or refused, every command gets exactly one
//! answer in order (decoded, or refused), the answer is the one the limit calls for, and
//! a LITERAL+ over the limit before login closes the connection.
#![no_main]
use hamail_agent::imap::framing::{Event, Framer};
use imap_codec::CommandCodec;
use libfuzzer_sys::fuzz_target;

const LIMIT: u32 = 64;

/// What the framer said about one command.
#[derive(Debug, PartialEq, Eq)]
enum Answer {
    Decoded,
    Refused,
}

struct Client<'a> {
    framer: Framer,
    authenticated: bool,
    chunks: &'a [u8],
    next_chunk: usize,
    answers: Vec<(usize, Answer)>,
    continues: usize,
    closed: bool,
}

impl Client<'_> {
    fn tag_number(tag: Option<String>) -> usize {
        let tag = tag.expect("every command here has a readable tag");
        assert!(!tag.starts_with("INJ"), "literal bytes were parsed: {tag}");
        tag.strip_prefix('T')
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("unknown tag {tag}"))
    }

    /// Feed `bytes` in fuzzed chunk sizes, collecting what the framer does.
    fn send(&mut self, bytes: &[u8]) {
        let mut rest = bytes;
        while !rest.is_empty() && !self.closed {
            let size = self
                .chunks
                .get(self.next_chunk % self.chunks.len().max(1))
                .map_or(7, |b| usize::from(b % 16) + 1);
            self.next_chunk += 1;
            let (now, later) = rest.split_at(size.min(rest.len()));
            self.framer
                .enqueue(now)
                .expect("nothing here is longer than announced");
            rest = later;
            self.drain();
        }
    }

    fn drain(&mut self) {
        loop {
            match self.framer.next(self.authenticated) {
                Event::NeedMore => return,
                Event::Continue => self.continues += 1,
                Event::Message => {
                    let tag = match self.framer.decode(&CommandCodec::default()) {
                        Ok(cmd) => Some(cmd.tag.inner().to_string()),
                        Err(_) => self.framer.tag().map(|t| t.inner().to_string()),
                    };
                    self.answers.push((Self::tag_number(tag), Answer::Decoded));
                }
                Event::Refused { tag, .. } => {
                    let n = Self::tag_number(tag.map(|t| t.inner().to_string()));
                    self.answers.push((n, Answer::Refused));
                }
                Event::Close { .. } => {
                    self.closed = true;
                    return;
                }
            }
        }
    }
}

fn payload(n: u32) -> Vec<u8> {
    let mut p = Vec::new();
    while p.len() < n as usize {
        p.extend_from_slice(b"INJ NOOP\r\nINJ2 CREATE x\r\n");
    }
    p.truncate(n as usize);
    p
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let (script, chunks) = rest.split_at(rest.len() / 2);
    let mut client = Client {
        framer: Framer::new(LIMIT),
        authenticated: mode & 1 != 0,
        chunks,
        next_chunk: 0,
        answers: Vec::new(),
        continues: 0,
        closed: false,
    };
    let mut expected = Vec::new();
    for (i, pair) in script.chunks(2).enumerate() {
        if client.closed {
            break;
        }
        let (kind, delta) = (pair[0], pair.get(1).copied().unwrap_or(0));
        // Lengths a few bytes either side of the limit, and now and then far above it.
        let length = if delta & 0x80 != 0 {
            LIMIT * 50
        } else {
            (LIMIT + u32::from(delta & 0x0f)).saturating_sub(8)
        };
        let sync = kind & 1 != 0;
        let verb = if kind & 2 != 0 {
            "APPEND INBOX"
        } else {
            "NOOP"
        };
        let announce = if sync {
            format!("T{i} {verb} {{{length}}}\r\n")
        } else {
            format!("T{i} {verb} {{{length}+}}\r\n")
        };
        let over = length > LIMIT;
        if kind & 4 != 0 {
            // A plain command in between.
            client.send(format!("T{i} NOOP\r\n").as_bytes());
            expected.push((i, Answer::Decoded));
            continue;
        }
        let continues = client.continues;
        client.send(announce.as_bytes());
        if sync {
            // An honest client waits for `+` or the refusal; the line is complete, so
            // the framer must have decided.
            if over {
                assert_eq!(client.answers.last(), Some(&(i, Answer::Refused)));
                expected.push((i, Answer::Refused));
                continue;
            }
            assert_eq!(
                client.continues,
                continues + 1,
                "no + for an accepted literal"
            );
        } else if over && !client.authenticated {
            assert!(
                client.closed,
                "LITERAL+ over the limit before login must close"
            );
            break;
        }
        let mut rest = payload(length);
        rest.extend_from_slice(b"\r\n");
        client.send(&rest);
        expected.push((
            i,
            if over {
                Answer::Refused
            } else {
                Answer::Decoded
            },
        ));
    }
    if !client.closed {
        assert_eq!(client.answers, expected);
    }
});
