//! The DATA decoder (sans-IO): turns the dot-stuffed CRLF stream after `354` into the
//! spool's LF form and finds the end of the message.
//!
//! SMTP smuggling (2023) works when two servers disagree on where DATA ends. Here the end
//! is exactly `CRLF . CRLF` and nothing else: a bare LF or a bare CR is a line break
//! *inside* the message (normalised to LF), and a line that follows one never counts as
//! the terminator, so `\n.\n`, `\n.\r\n`, `\r\n.\n` and `\r.\r` all stay message content.
//! Because bare CR and LF become ordinary line breaks, whatever we later relay is plain
//! CRLF text that no other server can split differently.

/// Why a message is refused once its data is complete (the decoder still consumes it to
/// the terminator, so the session stays in sync).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DataError {
    /// More than the size limit (RFC 1870 says reply 552 after the data).
    TooBig,
    /// A line longer than the line limit.
    LineTooLong,
}

/// Progress after feeding bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Progress {
    /// All bytes consumed; the terminator has not been seen yet.
    More,
    /// The terminator ended at this many bytes into the input; the rest belongs to the
    /// next command (PIPELINING).
    Done(usize),
}

/// Decoder state for one message.
#[derive(Debug)]
pub struct DataDecoder {
    out: Vec<u8>,
    max_size: usize,
    max_line: usize,
    /// Wire bytes seen so far (the size that SIZE talks about).
    wire: usize,
    line_len: usize,
    /// The current line began right after a real CRLF (or at the start of the data):
    /// only such a line can be the terminator or carry a stuffed dot.
    after_crlf: bool,
    /// A leading `.` on such a line, held until the next byte says what it is.
    dot_held: bool,
    /// A CR was seen; the next byte decides between CRLF and a bare CR.
    cr_held: bool,
    error: Option<DataError>,
}

impl DataDecoder {
    pub fn new(max_size: usize, max_line: usize) -> DataDecoder {
        DataDecoder {
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
            self.fail(DataError::LineTooLong);
        }
        self.append(bytes);
    }

    fn append(&mut self, bytes: &[u8]) {
        if self.wire > self.max_size {
            self.fail(DataError::TooBig);
        }
        if self.error.is_none() {
            self.out.extend_from_slice(bytes);
        }
    }

    fn fail(&mut self, e: DataError) {
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

    /// The message (LF line endings, dots unstuffed) or why it is refused.
    pub fn finish(self) -> Result<Vec<u8>, DataError> {
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

    /// Decode `input` fed in chunks of `chunk` bytes; returns (message, rest).
    fn decode(input: &[u8], chunk: usize) -> Option<(Vec<u8>, Vec<u8>)> {
        let mut d = DataDecoder::new(1 << 20, 1000);
        let mut pos = 0;
        while pos < input.len() {
            let end = (pos + chunk).min(input.len());
            if let Progress::Done(n) = d.feed(&input[pos..end]) {
                let rest = input[pos + n..].to_vec();
                return Some((d.finish().unwrap(), rest));
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
        first
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
        let mut d = DataDecoder::new(10, 1000);
        assert_eq!(
            d.feed(b"0123456789abc\r\n.\r\nNOOP\r\n"),
            Progress::Done(18)
        );
        assert_eq!(d.finish(), Err(DataError::TooBig));
        let mut d = DataDecoder::new(1 << 20, 5);
        assert_eq!(d.feed(b"123456\r\n.\r\n"), Progress::Done(11));
        assert_eq!(d.finish(), Err(DataError::LineTooLong));
        let mut d = DataDecoder::new(1 << 20, 5);
        assert_eq!(d.feed(b"12345\r\n.\r\n"), Progress::Done(10));
        assert_eq!(d.finish(), Ok(b"12345\n".to_vec()));
    }

    #[test]
    fn eight_bit_and_nul_bytes_pass_through() {
        let (msg, _) = all_chunkings("Grüße\0\r\n.\r\n".as_bytes()).unwrap();
        assert_eq!(msg, "Grüße\0\n".as_bytes());
    }
}
