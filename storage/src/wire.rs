//! The wire form and the spool form of a message, and the only code that converts between
//! them.
//!
//! - **Wire form**: what SMTP DATA, IMAP literals (APPEND, FETCH) and POP3 RETR/TOP carry.
//!   Lines end in CRLF (RFC 5322 §2.1, RFC 5321 §2.3.8).
//! - **Spool form**: what mailboxes and queue files hold. Lines end in LF, as in every mbox
//!   that Postfix local(8), procmail and mutt write to the same files. Every other byte is
//!   kept as it is (CR, NUL, 8-bit).
//!
//! # The rules
//!
//! | function | used by | rule |
//! |---|---|---|
//! | [`to_spool`] | IMAP APPEND, `hamail-agent deliver`, DSNs built by mail-builder | every CRLF becomes LF; a lone CR and a lone LF stay |
//! | [`to_wire`], [`write_wire`] | IMAP FETCH and SEARCH | every LF that has no CR before it becomes CRLF; an existing CRLF and a lone CR stay |
//! | [`to_wire_dot_stuffed`], [`write_dot_stuffed`] | POP3 RETR/TOP and multi-line replies, SMTP DATA sent by the relay | an LF is added if the text does not end in one, then as [`to_wire`], a line starting with `.` gets a second `.` (RFC 5321 §4.5.2, RFC 1939 §3), then the closing `.` CRLF; optionally only the header and the first n body lines (TOP) |
//! | [`DotDecoder`] | SMTP DATA received | the end is `CRLF . CRLF` and nothing else; dots are removed again; CRLF, a bare CR and a bare LF all become LF |
//!
//! [`to_wire`] makes `spool.len() + index::count_bare_lf(spool)` bytes, the size the index
//! keeps for every message ([`crate::MessageMeta::crlf_size`]): IMAP's RFC822.SIZE and
//! POP3's LIST octets are what FETCH and RETR then send (RETR adds up to two bytes for a
//! message without a final line end, because a POP3 line must end before the `.`).
//!
//! # An LF that already has a CR before it stays as it is
//!
//! [`to_wire`] could instead turn *every* LF into CRLF. Then the round trip would be exact
//! for every byte string (spool `a\r\n` → wire `a\r\r\n` → spool `a\r\n`). We don't do that:
//!
//! - Mailboxes written by other software hold CRLF lines (a CRLF message that procmail or
//!   mutt stored as it came; a mailbox copied over from Windows). We serve those as the
//!   CRLF text they are. Turning every LF into CRLF would send `\r\r\n`: broken MIME
//!   boundaries, broken signatures, a blank line after every line in some clients.
//! - The index stores one count per message, the LFs without a CR before them. That count
//!   is RFC822.SIZE, POP3 LIST and POP3's check that it still has the same message. The
//!   index is on disk, on every host, for every existing mailbox. The other rule would
//!   need a new index format and a rebuild of every index.
//!
//! What this costs: a CR right before a CRLF on the wire (`a\r\r\n`, a bare CR, which RFC
//! 5322 §2.3 forbids) is stored as `a\r\n` and comes back as `a\r\n`. So the round trips
//! are exact on these domains, which the property tests below check:
//!
//! - for every spool text with no CR right before an LF, `to_spool(to_wire(s)) == s`;
//! - for every wire text in which every LF has a CR before it and no CR comes right before
//!   a CRLF, `to_wire(to_spool(w)) == w`;
//! - for every spool text with no CR right before a CRLF (foreign CRLF mailboxes
//!   included), `to_wire(to_spool(to_wire(s))) == to_wire(s)`: a message that is fetched,
//!   appended again and fetched again gives the same bytes both times.
//!
//! # A bare LF on the wire becomes CRLF
//!
//! RFC 5322 forbids a bare LF in a message, but clients send them. [`to_spool`] keeps it:
//! it is an LF, the spool's line end. On the way out it becomes CRLF like every other line
//! end, so `a\nb` appended over IMAP is fetched as `a\r\nb`. No other rule is possible with
//! an LF spool. The spool has one way to write a line end. To keep the two apart it would
//! have to store CRLF, and then it would no longer be the mbox that the other programs on
//! the same files read and write.
//!
//! # Dot-stuffed streams are decoded more strictly
//!
//! [`to_spool`] keeps a lone CR because APPEND stores what the client gave. SMTP DATA is
//! framed by its line ends, so [`DotDecoder`] treats a bare CR and a bare LF as line breaks
//! inside the message: a line after one of them is never the terminator and never loses a
//! dot. It stores them as LF, so the spool never holds a bare CR from SMTP. Then whatever we
//! relay later is plain CRLF text that no other server can end at a different place (SMTP
//! smuggling, 2023).

/// Wire form to spool form: every CRLF becomes LF; a lone CR and a lone LF are kept.
pub fn to_spool(wire: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(wire.len());
    let mut rest = wire;
    while let Some(i) = memchr::memchr(b'\r', rest) {
        out.extend_from_slice(&rest[..i]);
        // Only the CR of a CRLF goes; the LF is written with the next piece.
        if rest.get(i + 1) != Some(&b'\n') {
            out.push(b'\r');
        }
        rest = &rest[i + 1..];
    }
    out.extend_from_slice(rest);
    out
}

/// Spool form to wire form: every LF that has no CR before it becomes CRLF (see the module
/// documentation for why an existing CRLF stays). The result has
/// `spool.len() + index::count_bare_lf(spool)` bytes.
pub fn to_wire(spool: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    write_wire(spool, &mut out);
    out
}

/// [`to_wire`], appended to `out` (for building a response without another copy).
pub fn write_wire(spool: &[u8], out: &mut Vec<u8>) {
    out.reserve(spool.len() + spool.len() / 32 + 2);
    let mut start = 0;
    for i in memchr::memchr_iter(b'\n', spool) {
        if i == 0 || spool[i - 1] != b'\r' {
            out.extend_from_slice(&spool[start..i]);
            out.extend_from_slice(b"\r\n");
            start = i + 1;
        }
    }
    out.extend_from_slice(&spool[start..]);
}

/// Spool form to a dot-stuffed wire body, terminator included: what POP3 sends after `+OK`
/// and the relay after `354`. See [`write_dot_stuffed`].
pub fn to_wire_dot_stuffed(spool: &[u8], body_lines: Option<usize>) -> Vec<u8> {
    let mut out = Vec::new();
    write_dot_stuffed(spool, body_lines, &mut out);
    out
}

/// Append the dot-stuffed wire form of `spool` to `out`. An LF is added if the text does not
/// end in one, line ends are converted as in [`to_wire`], a line starting with `.` gets a
/// second one, and the closing `.` CRLF follows. With `body_lines` (POP3 TOP), only the
/// header, the blank line and at most that many body lines are written.
pub fn write_dot_stuffed(spool: &[u8], body_lines: Option<usize>, out: &mut Vec<u8>) {
    out.reserve(spool.len() + spool.len() / 32 + 8);
    let mut in_body = false;
    let mut sent = 0usize;
    let mut rest = spool;
    while !rest.is_empty() {
        let (line, next) = match memchr::memchr(b'\n', rest) {
            Some(i) => (&rest[..i], &rest[i + 1..]),
            // The last line has no LF: it ends here as if it had one.
            None => (rest, &rest[rest.len()..]),
        };
        rest = next;
        // A CR before the LF is part of the CRLF that is written below, as in `to_wire`.
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if in_body {
            if body_lines.is_some_and(|k| sent >= k) {
                break;
            }
            sent += 1;
        } else if line.is_empty() {
            in_body = true;
        }
        if line.first() == Some(&b'.') {
            out.push(b'.');
        }
        out.extend_from_slice(line);
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b".\r\n");
}

/// Why a dot-stuffed message is refused once it is complete. The decoder still reads it to
/// the terminator, so the session stays in step with the client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DotError {
    /// More wire bytes than the size limit (SMTP replies 552 after the data, RFC 1870).
    TooBig,
    /// A line longer than the line limit.
    LineTooLong,
}

/// Progress after feeding bytes to a [`DotDecoder`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Progress {
    /// All bytes were consumed and the terminator has not come yet.
    More,
    /// The terminator ended this many bytes into the input. The rest belongs to the next
    /// command (PIPELINING).
    Done(usize),
}

/// Decodes a dot-stuffed CRLF stream (SMTP DATA after `354`) to the spool form and finds
/// its end. It does no I/O: feed it bytes in chunks of any size.
///
/// SMTP smuggling (2023) works when two servers disagree on where DATA ends. Here the end is
/// exactly `CRLF . CRLF` and nothing else. A bare LF or a bare CR is a line break *inside*
/// the message and is stored as LF. A line that follows one never counts as the
/// terminator. So `\n.\n`, `\n.\r\n`, `\r\n.\n` and `\r.\r` are all message content.
#[derive(Debug)]
pub struct DotDecoder {
    out: Vec<u8>,
    max_size: usize,
    max_line: usize,
    /// Wire bytes seen so far (the size that SMTP SIZE talks about).
    wire: usize,
    line_len: usize,
    /// The current line began right after a real CRLF, or at the start of the data. Only
    /// such a line can be the terminator or have a stuffed dot.
    after_crlf: bool,
    /// A leading `.` on such a line, held until the next byte says what it is.
    dot_held: bool,
    /// A CR was seen; the next byte decides between CRLF and a bare CR.
    cr_held: bool,
    error: Option<DotError>,
}

impl DotDecoder {
    /// A decoder that refuses more than `max_size` wire bytes or a line of more than
    /// `max_line` bytes.
    pub fn new(max_size: usize, max_line: usize) -> DotDecoder {
        DotDecoder {
            out: Vec::with_capacity(8192),
            max_size,
            max_line,
            wire: 0,
            line_len: 0,
            after_crlf: true,
            dot_held: false,
            cr_held: false,
            error: None,
        }
    }

    /// Feed bytes; see [`Progress`].
    pub fn feed(&mut self, input: &[u8]) -> Progress {
        let mut i = 0;
        while i < input.len() {
            if self.cr_held {
                self.cr_held = false;
                if input[i] == b'\n' {
                    i += 1;
                    self.wire += 1;
                    if self.dot_held {
                        return Progress::Done(i); // CRLF . CRLF
                    }
                    self.line_break(true);
                } else {
                    // A bare CR: a line break inside the message.
                    self.flush_dot();
                    self.line_break(false);
                }
                continue;
            }
            let b = input[i];
            if self.line_len == 0 && self.after_crlf && !self.dot_held && b == b'.' {
                self.dot_held = true;
                self.wire += 1;
                i += 1;
                continue;
            }
            match b {
                b'\r' => {
                    self.cr_held = true;
                    self.wire += 1;
                    i += 1;
                }
                b'\n' => {
                    // A bare LF: a line break, but never part of a terminator.
                    self.flush_dot();
                    self.wire += 1;
                    i += 1;
                    self.line_break(false);
                }
                _ => {
                    if self.dot_held {
                        // A stuffed dot (RFC 5321 §4.5.2): drop it.
                        self.dot_held = false;
                        self.line_len += 1;
                    }
                    let end =
                        memchr::memchr2(b'\r', b'\n', &input[i..]).map_or(input.len(), |n| i + n);
                    self.wire += end - i;
                    self.push(&input[i..end]);
                    i = end;
                }
            }
        }
        Progress::More
    }

    /// A `.` held at the start of a line that ended without CRLF is content.
    fn flush_dot(&mut self) {
        if self.dot_held {
            self.dot_held = false;
            self.push(b".");
        }
    }

    fn push(&mut self, bytes: &[u8]) {
        self.line_len += bytes.len();
        if self.line_len > self.max_line {
            self.fail(DotError::LineTooLong);
        }
        self.append(bytes);
    }

    fn append(&mut self, bytes: &[u8]) {
        if self.wire > self.max_size {
            self.fail(DotError::TooBig);
        }
        if self.error.is_none() {
            self.out.extend_from_slice(bytes);
        }
    }

    fn fail(&mut self, e: DotError) {
        if self.error.is_none() {
            self.error = Some(e);
            // Nothing more is kept: a refused message costs no memory.
            self.out = Vec::new();
        }
    }

    fn line_break(&mut self, crlf: bool) {
        self.append(b"\n");
        self.line_len = 0;
        self.after_crlf = crlf;
    }

    /// The message in the spool form (LF line ends, dots removed), or why it is refused.
    pub fn finish(self) -> Result<Vec<u8>, DotError> {
        match self.error {
            Some(e) => Err(e),
            None => Ok(self.out),
        }
    }

    /// Wire bytes consumed so far.
    pub fn wire_size(&self) -> usize {
        self.wire
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::index::count_bare_lf;
    use proptest::prelude::*;

    #[test]
    fn crlf_becomes_lf_and_lone_cr_and_lf_stay() {
        assert_eq!(to_spool(b"a\r\nb\rc\n\r"), b"a\nb\rc\n\r");
        assert_eq!(to_spool(b"\r\r\n"), b"\r\n");
        assert_eq!(to_spool(b""), b"");
    }

    #[test]
    fn bare_lf_becomes_crlf_and_crlf_and_lone_cr_stay() {
        assert_eq!(to_wire(b"a\nb\r\nc\n"), b"a\r\nb\r\nc\r\n");
        assert_eq!(to_wire(b"\n\n"), b"\r\n\r\n");
        assert_eq!(to_wire(b"a\rb"), b"a\rb");
        assert_eq!(to_wire(b"no line end"), b"no line end");
        let mut out = b"* 1 FETCH ".to_vec();
        write_wire(b"x\n", &mut out);
        assert_eq!(out, b"* 1 FETCH x\r\n");
    }

    #[test]
    fn the_documented_losses() {
        // A bare LF on the wire comes back as CRLF.
        assert_eq!(to_wire(&to_spool(b"a\nb")), b"a\r\nb");
        // A CR right before a CRLF does not come back.
        assert_eq!(to_wire(&to_spool(b"a\r\r\n")), b"a\r\n");
    }

    #[test]
    fn dot_stuffing_and_the_terminator() {
        assert_eq!(
            to_wire_dot_stuffed(b"Subject: x\n\n.hidden\nplain\n..two\n", None),
            b"Subject: x\r\n\r\n..hidden\r\nplain\r\n...two\r\n.\r\n"
        );
        assert_eq!(
            to_wire_dot_stuffed(b"a\r\n.\nb", None),
            b"a\r\n..\r\nb\r\n.\r\n"
        );
        assert_eq!(to_wire_dot_stuffed(b"", None), b".\r\n");
        assert_eq!(to_wire_dot_stuffed(b"a", None), b"a\r\n.\r\n");
        assert_eq!(to_wire_dot_stuffed(b"a\r", None), b"a\r\n.\r\n");
        assert_eq!(to_wire_dot_stuffed(b".\n", None), b"..\r\n.\r\n");
        let mut out = b"+OK\r\n".to_vec();
        write_dot_stuffed(b"x\n", None, &mut out);
        assert_eq!(out, b"+OK\r\nx\r\n.\r\n");
    }

    #[test]
    fn top_sends_the_header_and_n_body_lines() {
        let msg = b"H: v\nI: w\n\nx\n.y\nz\n";
        assert_eq!(
            to_wire_dot_stuffed(msg, Some(0)),
            b"H: v\r\nI: w\r\n\r\n.\r\n"
        );
        assert_eq!(
            to_wire_dot_stuffed(msg, Some(2)),
            b"H: v\r\nI: w\r\n\r\nx\r\n..y\r\n.\r\n"
        );
        assert_eq!(
            to_wire_dot_stuffed(msg, Some(9)),
            to_wire_dot_stuffed(msg, None)
        );
        // The blank line may be CRLF in a foreign mailbox; no blank line: all header.
        assert_eq!(
            to_wire_dot_stuffed(b"H: v\r\n\r\nx\r\n", Some(0)),
            b"H: v\r\n\r\n.\r\n"
        );
        assert_eq!(to_wire_dot_stuffed(b"H: v\n", Some(0)), b"H: v\r\n.\r\n");
    }

    /// A decoded message (or why not) and the bytes after its terminator.
    type Decoded = (Result<Vec<u8>, DotError>, Vec<u8>);

    /// Decode `input` fed in chunks of `chunk` bytes; returns (message, rest).
    fn decode(input: &[u8], chunk: usize) -> Option<Decoded> {
        let mut d = DotDecoder::new(1 << 20, 1000);
        let mut pos = 0;
        while pos < input.len() {
            let end = (pos + chunk).min(input.len());
            if let Progress::Done(n) = d.feed(&input[pos..end]) {
                let rest = input[pos + n..].to_vec();
                return Some((d.finish(), rest));
            }
            pos = end;
        }
        None
    }

    fn all_chunkings(input: &[u8]) -> Option<(Vec<u8>, Vec<u8>)> {
        let first = decode(input, input.len().max(1));
        for chunk in 1..8 {
            assert_eq!(decode(input, chunk), first, "chunk size {chunk} disagrees");
        }
        first.map(|(msg, rest)| (msg.unwrap(), rest))
    }

    #[test]
    fn crlf_dot_crlf_ends_and_the_rest_is_the_next_command() {
        let (msg, rest) = all_chunkings(b"Subject: a\r\n\r\nbody\r\n.\r\nQUIT\r\n").unwrap();
        assert_eq!(msg, b"Subject: a\n\nbody\n");
        assert_eq!(rest, b"QUIT\r\n");
        // An empty message.
        assert_eq!(all_chunkings(b".\r\n").unwrap().0, b"");
    }

    #[test]
    fn dots_are_unstuffed_only_after_crlf() {
        let (msg, _) = all_chunkings(b"..leading\r\n...\r\n.x\r\na\n.b\r\n.\r\n").unwrap();
        assert_eq!(msg, b".leading\n..\nx\na\n.b\n");
    }

    #[test]
    fn smuggling_variants_never_end_the_message() {
        for (variant, stored) in [
            (&b"\n.\n"[..], &b"\n.\n"[..]),
            (b"\n.\r\n", b"\n.\n"),
            (b"\r\n.\n", b"\n.\n"),
            (b"\r.\r", b"\n.\n"),
            (b"\r.\r\n", b"\n.\n"),
            (b"\r\n.\r", b"\n.\n"),
        ] {
            let mut input = b"A: b\r\n\r\nbefore".to_vec();
            input.extend_from_slice(variant);
            input.extend_from_slice(b"MAIL FROM:<evil@x>\r\n.\r\n");
            let (msg, rest) =
                all_chunkings(&input).unwrap_or_else(|| panic!("{variant:?}: never ended"));
            let mut want = b"A: b\n\nbefore".to_vec();
            want.extend_from_slice(stored);
            want.extend_from_slice(b"MAIL FROM:<evil@x>\n");
            assert_eq!(msg, want, "{variant:?}");
            assert!(rest.is_empty(), "{variant:?}: smuggled {rest:?}");
        }
    }

    #[test]
    fn size_and_line_limits_are_reported_after_the_terminator() {
        let mut d = DotDecoder::new(10, 1000);
        assert_eq!(
            d.feed(b"0123456789abc\r\n.\r\nNOOP\r\n"),
            Progress::Done(18)
        );
        assert_eq!(d.finish(), Err(DotError::TooBig));
        let mut d = DotDecoder::new(1 << 20, 5);
        assert_eq!(d.feed(b"123456\r\n.\r\n"), Progress::Done(11));
        assert_eq!(d.finish(), Err(DotError::LineTooLong));
        let mut d = DotDecoder::new(1 << 20, 5);
        assert_eq!(d.feed(b"12345\r\n.\r\n"), Progress::Done(10));
        assert_eq!(d.finish(), Ok(b"12345\n".to_vec()));
    }

    #[test]
    fn eight_bit_and_nul_bytes_pass_through() {
        let (msg, _) = all_chunkings("Grüße\0\r\n.\r\n".as_bytes()).unwrap();
        assert_eq!(msg, "Grüße\0\n".as_bytes());
        assert_eq!(to_spool("Grüße\0\r\n".as_bytes()), "Grüße\0\n".as_bytes());
        assert_eq!(to_wire("Grüße\0\n".as_bytes()), "Grüße\0\r\n".as_bytes());
    }

    /// Byte strings rich in the bytes that matter here.
    fn texts() -> impl Strategy<Value = Vec<u8>> {
        proptest::collection::vec(
            prop_oneof![
                Just(b"\n".to_vec()),
                Just(b"\r".to_vec()),
                Just(b"\r\n".to_vec()),
                Just(b".".to_vec()),
                Just(b"\n.\n".to_vec()),
                Just(b"\r\n.\r\n".to_vec()),
                Just(b"\n\n".to_vec()),
                proptest::collection::vec(any::<u8>(), 0..8),
            ],
            0..40,
        )
        .prop_map(|parts| parts.concat())
    }

    /// `t` without a CR right before any LF: the spool texts whose round trip is exact.
    fn without_cr_before_lf(t: Vec<u8>) -> Vec<u8> {
        let mut out = Vec::with_capacity(t.len());
        for b in t {
            if b == b'\n' {
                while out.last() == Some(&b'\r') {
                    out.pop();
                }
            }
            out.push(b);
        }
        out
    }

    /// `t` without a CR right before a CRLF.
    fn without_cr_before_crlf(t: Vec<u8>) -> Vec<u8> {
        let mut out: Vec<u8> = Vec::with_capacity(t.len());
        for b in t {
            if b == b'\n' {
                while out.ends_with(b"\r\r") {
                    out.pop();
                }
            }
            out.push(b);
        }
        out
    }

    /// A valid wire text: every LF has a CR before it (and no CR before that CR).
    fn wire_texts() -> impl Strategy<Value = Vec<u8>> {
        texts().prop_map(|t| {
            let mut out = Vec::with_capacity(t.len() * 2);
            for b in without_cr_before_lf(t) {
                if b == b'\n' {
                    out.push(b'\r');
                }
                out.push(b);
            }
            out
        })
    }

    /// The plain inverse of dot-stuffing any POP3 or SMTP client does: drop the terminator
    /// line and the first dot of every line that starts with one.
    fn unstuff(stuffed: &[u8]) -> Option<Vec<u8>> {
        let body = stuffed.strip_suffix(b".\r\n")?;
        let mut out = Vec::with_capacity(body.len());
        for line in body.split_inclusive(|b| *b == b'\n') {
            out.extend_from_slice(line.strip_prefix(b".").unwrap_or(line));
        }
        Some(out)
    }

    fn with_final_lf(s: &[u8]) -> Vec<u8> {
        let mut t = s.to_vec();
        if !t.is_empty() && !t.ends_with(b"\n") {
            t.push(b'\n');
        }
        t
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]

        // (a) Wire to spool undoes spool to wire, for every spool text that has no CR right
        // before an LF (the other ones are the documented loss).
        #[test]
        fn spool_round_trip(s in texts().prop_map(without_cr_before_lf)) {
            prop_assert_eq!(to_spool(&to_wire(&s)), s);
        }

        // For every byte string, the wire form is valid (every LF has a CR before it) and
        // has the size the index records.
        #[test]
        fn wire_form_is_valid_and_sized_as_indexed(s in texts()) {
            let w = to_wire(&s);
            prop_assert_eq!(w.len(), s.len() + count_bare_lf(&s) as usize);
            prop_assert!(w.iter().enumerate().all(|(i, b)| *b != b'\n' || (i > 0 && w[i - 1] == b'\r')));
        }

        // Serving, storing what was served and serving again gives the same bytes, for every
        // spool text without a CR right before a CRLF.
        #[test]
        fn wire_form_is_stable(s in texts().prop_map(without_cr_before_crlf)) {
            let w = to_wire(&s);
            prop_assert_eq!(to_wire(&to_spool(&w)), w);
        }

        // (b) Spool to wire undoes wire to spool, for every valid wire text without a CR
        // right before a CRLF.
        #[test]
        fn wire_round_trip(w in wire_texts()) {
            prop_assert_eq!(to_wire(&to_spool(&w)), w);
        }

        #[test]
        fn arbitrary_bytes(s in proptest::collection::vec(any::<u8>(), 0..300)) {
            let w = to_wire(&s);
            prop_assert_eq!(w.len(), s.len() + count_bare_lf(&s) as usize);
            if !s.windows(3).any(|x| x == b"\r\r\n") {
                prop_assert_eq!(to_wire(&to_spool(&w)), w);
            }
            if !s.windows(2).any(|x| x == b"\r\n") {
                prop_assert_eq!(to_spool(&to_wire(&s)), s);
            }
        }

        // (c) Dot-stuffing: a reader that drops the stuffed dots gets exactly `to_wire` of
        // the text (with its final line end), and our SMTP decoder, fed in any chunks, ends
        // exactly at the terminator and gets the text back with every line end as LF.
        #[test]
        fn dot_stuffing_round_trips(s in texts(), chunk in 1usize..9) {
            let stuffed = to_wire_dot_stuffed(&s, None);
            prop_assert_eq!(unstuff(&stuffed), Some(to_wire(&with_final_lf(&s))));
            let mut d = DotDecoder::new(usize::MAX, usize::MAX);
            let mut done = None;
            for (k, piece) in stuffed.chunks(chunk).enumerate() {
                if let Progress::Done(n) = d.feed(piece) {
                    done = Some(k * chunk + n);
                    break;
                }
            }
            prop_assert_eq!(done, Some(stuffed.len()));
            // CRLF first, then what is left of CR and LF: all line breaks.
            let want: Vec<u8> = to_spool(&with_final_lf(&s))
                .into_iter()
                .map(|b| if b == b'\r' { b'\n' } else { b })
                .collect();
            prop_assert_eq!(d.finish(), Ok(want));
        }

        // Without CRs (what SMTP stores) the decoder gives back exactly what was stuffed.
        #[test]
        fn smtp_text_round_trips_exactly(s in texts()) {
            let s: Vec<u8> = s.into_iter().filter(|b| *b != b'\r').collect();
            let mut d = DotDecoder::new(usize::MAX, usize::MAX);
            let stuffed = to_wire_dot_stuffed(&s, None);
            prop_assert_eq!(d.feed(&stuffed), Progress::Done(stuffed.len()));
            prop_assert_eq!(d.finish(), Ok(with_final_lf(&s)));
        }

        // TOP is a prefix of RETR, line for line.
        #[test]
        fn top_is_a_prefix_of_retr(s in texts(), n in 0usize..5) {
            let all = to_wire_dot_stuffed(&s, None);
            let top = to_wire_dot_stuffed(&s, Some(n));
            let (all, top) = (&all[..all.len() - 3], &top[..top.len() - 3]);
            prop_assert!(all.starts_with(top));
        }
    }
}
