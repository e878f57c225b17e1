//! The MIME entity tree under ENVELOPE, BODYSTRUCTURE and `BODY[section]`: header/body
//! split, header fields, Content-Type and friends, multipart splitting. Everything here
//! borrows slices of the message so sections come out byte-exact, and nothing fails:
//! malformed input degrades to the RFC 2045/2046 defaults instead of an error.

/// Deeper nesting than this is shown as an opaque `application/octet-stream` leaf. Real
/// mail rarely goes past 5; the cap keeps recursion (and the response) bounded.
pub(super) const MAX_DEPTH: usize = 20;

/// One header field as it sits in the message.
#[derive(Debug, Clone, Copy)]
pub(super) struct Field<'a> {
    /// Name before the colon, trailing whitespace removed; empty for a line without a colon.
    pub name: &'a [u8],
    /// The whole field: name, value and continuation lines with their line endings.
    pub raw: &'a [u8],
    /// Everything after the colon, still folded.
    pub value: &'a [u8],
}

/// Splits an entity into header (including the blank line that ends it) and body. Without
/// a blank line everything is header, which is how Dovecot reads such a message too.
pub(super) fn split(entity: &[u8]) -> (&[u8], &[u8]) {
    let mut pos = 0;
    while pos < entity.len() {
        let end = line_end(entity, pos);
        let line = &entity[pos..end];
        if line == b"\r\n" || line == b"\n" {
            return entity.split_at(end);
        }
        pos = end;
    }
    (entity, &[])
}

/// Index just past the LF ending the line that starts at `pos` (or the end of the data).
fn line_end(data: &[u8], pos: usize) -> usize {
    match memchr::memchr(b'\n', &data[pos..]) {
        Some(i) => pos + i + 1,
        None => data.len(),
    }
}

/// The fields of a header block, in order. The terminating blank line is not a field.
pub(super) fn fields(header: &[u8]) -> Vec<Field<'_>> {
    let mut out: Vec<Field<'_>> = Vec::new();
    let mut pos = 0;
    // Start of the field being collected; continuation lines just extend it.
    let mut start: Option<usize> = None;
    while pos < header.len() {
        let end = line_end(header, pos);
        let line = &header[pos..end];
        if line == b"\r\n" || line == b"\n" {
            break;
        }
        let continuation = matches!(line.first(), Some(b' ' | b'\t'));
        if !continuation {
            if let Some(s) = start {
                out.push(make_field(&header[s..pos]));
            }
            start = Some(pos);
        } else if start.is_none() {
            // A header that opens with a continuation line: keep it as a nameless field
            // so HEADER.FIELDS.NOT still returns it.
            start = Some(pos);
        }
        pos = end;
    }
    if let Some(s) = start {
        out.push(make_field(&header[s..pos]));
    }
    out
}

fn make_field(raw: &[u8]) -> Field<'_> {
    match memchr::memchr(b':', raw) {
        // A colon after the first line ending does not make a name.
        Some(i) if !raw[..i].contains(&b'\n') => Field {
            name: trim_end(&raw[..i]),
            raw,
            value: &raw[i + 1..],
        },
        _ => Field {
            name: b"",
            raw,
            value: raw,
        },
    }
}

/// The first field called `name` (case-insensitive), as in RFC 3501's ENVELOPE and
/// Dovecot's BODYSTRUCTURE.
pub(super) fn first<'a>(fields: &[Field<'a>], name: &str) -> Option<&'a [u8]> {
    fields
        .iter()
        .find(|f| f.name.eq_ignore_ascii_case(name.as_bytes()))
        .map(|f| f.value)
}

/// Unfolds a field value (drops every CR and LF; a fold leaves its whitespace) and trims
/// it. NULs are dropped as well: no IMAP string can carry them.
pub(super) fn unfold(value: &[u8]) -> Vec<u8> {
    let v: Vec<u8> = value
        .iter()
        .copied()
        .filter(|&b| b != b'\r' && b != b'\n' && b != 0)
        .collect();
    trim(&v).to_vec()
}

pub(super) fn trim(v: &[u8]) -> &[u8] {
    trim_end(trim_start(v))
}

fn trim_start(v: &[u8]) -> &[u8] {
    let n = v.iter().take_while(|b| is_ws(**b)).count();
    &v[n..]
}

fn trim_end(v: &[u8]) -> &[u8] {
    let n = v.iter().rev().take_while(|b| is_ws(**b)).count();
    &v[..v.len() - n]
}

pub(super) fn is_ws(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\r' | b'\n')
}

/// RFC 2045 `tspecials`, plus whitespace and controls: what ends a token.
fn is_tspecial(b: u8) -> bool {
    matches!(
        b,
        b'(' | b')'
            | b'<'
            | b'>'
            | b'@'
            | b','
            | b';'
            | b':'
            | b'\\'
            | b'"'
            | b'/'
            | b'['
            | b']'
            | b'?'
            | b'='
    ) || b <= b' '
        || b == 0x7f
}

/// Media type and subtype as written (subtype empty for Content-Disposition).
pub(super) type Media = (Vec<u8>, Vec<u8>);

/// A value with parameters: Content-Type (`type/subtype`) or Content-Disposition (`type`).
#[derive(Debug, Clone, Default)]
pub(super) struct Params {
    pub params: Vec<(Vec<u8>, Vec<u8>)>,
}

/// A tiny cursor over a structured header value (RFC 2045 §5.1 grammar, leniently).
struct Cursor<'a> {
    s: &'a [u8],
    i: usize,
}

impl<'a> Cursor<'a> {
    fn peek(&self) -> Option<u8> {
        self.s.get(self.i).copied()
    }

    /// Skips whitespace and (nested) comments.
    fn skip_cfws(&mut self) {
        while let Some(b) = self.peek() {
            if is_ws(b) {
                self.i += 1;
            } else if b == b'(' {
                let mut depth = 0usize;
                while let Some(c) = self.peek() {
                    self.i += 1;
                    match c {
                        // Skip the escaped byte, if there is one.
                        b'\\' => self.i = (self.i + 1).min(self.s.len()),
                        b'(' => depth += 1,
                        b')' => {
                            depth = depth.saturating_sub(1);
                            if depth == 0 {
                                break;
                            }
                        }
                        _ => {}
                    }
                }
            } else {
                break;
            }
        }
    }

    fn token(&mut self) -> &'a [u8] {
        self.i = self.i.min(self.s.len());
        let start = self.i;
        while self.peek().is_some_and(|b| !is_tspecial(b)) {
            self.i += 1;
        }
        &self.s[start..self.i]
    }

    /// A quoted string with its escapes removed; an unterminated one runs to the end.
    fn quoted(&mut self) -> Vec<u8> {
        let mut out = Vec::new();
        self.i += 1; // opening quote
        while let Some(b) = self.peek() {
            self.i += 1;
            match b {
                b'"' => break,
                b'\\' => {
                    if let Some(c) = self.peek() {
                        out.push(c);
                        self.i += 1;
                    }
                }
                b'\r' | b'\n' => {}
                _ => out.push(b),
            }
        }
        out
    }

    /// A parameter value: a quoted string, or anything up to the next `;` (more lenient
    /// than a token: `name=foo bar.txt` is common in the wild).
    fn value(&mut self) -> Vec<u8> {
        if self.peek() == Some(b'"') {
            return self.quoted();
        }
        let start = self.i;
        let token = self.token();
        let after = self.i;
        self.skip_cfws();
        if !token.is_empty() && matches!(self.peek(), None | Some(b';')) {
            return token.to_vec();
        }
        self.i = after;
        while self.peek().is_some_and(|b| b != b';') {
            self.i += 1;
        }
        unfold(&self.s[start..self.i])
    }
}

/// Parses `type[/subtype] *(; attr=value)`. Returns `None` as the type when the value does
/// not start with a token (then the caller applies the RFC 2045 default).
pub(super) fn parse_params(value: &[u8], with_subtype: bool) -> (Option<Media>, Params) {
    let mut c = Cursor { s: value, i: 0 };
    c.skip_cfws();
    let ty = c.token().to_vec();
    c.skip_cfws();
    let mut head = None;
    if with_subtype {
        if c.peek() == Some(b'/') {
            c.i += 1;
            c.skip_cfws();
            let sub = c.token().to_vec();
            if !ty.is_empty() && !sub.is_empty() {
                head = Some((ty, sub));
            }
        }
    } else if !ty.is_empty() {
        head = Some((ty, Vec::new()));
    }
    let mut raw = Vec::new();
    loop {
        // Find the next `;`; junk between parameters is skipped.
        while c.peek().is_some_and(|b| b != b';') {
            if c.peek() == Some(b'"') {
                c.quoted();
            } else {
                c.i += 1;
            }
        }
        if c.peek().is_none() {
            break;
        }
        c.i += 1;
        c.skip_cfws();
        let name = c.token().to_vec();
        c.skip_cfws();
        if c.peek() != Some(b'=') || name.is_empty() {
            continue;
        }
        c.i += 1;
        c.skip_cfws();
        let v = c.value();
        raw.push((name, v));
    }
    (
        head,
        Params {
            params: rfc2231(raw),
        },
    )
}

/// Joins RFC 2231 continuations (`name*0`, `name*1*`, ...) into one parameter the way
/// Dovecot does: `name` if no segment is charset-encoded, otherwise `name*` holding the
/// encoded form with the plain segments percent-escaped. Other parameters pass unchanged.
fn rfc2231(raw: Vec<(Vec<u8>, Vec<u8>)>) -> Vec<(Vec<u8>, Vec<u8>)> {
    struct Seg {
        n: u32,
        extended: bool,
        value: Vec<u8>,
    }
    let mut out: Vec<(Vec<u8>, Vec<u8>)> = Vec::new();
    let mut groups: Vec<(Vec<u8>, Vec<Seg>)> = Vec::new();
    for (name, value) in raw {
        let (stem, extended) = match name.strip_suffix(b"*") {
            Some(s) => (s, true),
            None => (&name[..], false),
        };
        let split = stem.iter().rposition(|&b| b == b'*').and_then(|star| {
            let digits = &stem[star + 1..];
            let n = std::str::from_utf8(digits).ok()?.parse::<u32>().ok()?;
            (!digits.is_empty() && digits.iter().all(u8::is_ascii_digit)).then_some((star, n))
        });
        match split {
            Some((star, n)) => {
                let base = stem[..star].to_vec();
                let seg = Seg { n, extended, value };
                match groups
                    .iter_mut()
                    .find(|(b, _)| b.eq_ignore_ascii_case(&base))
                {
                    Some((_, segs)) => segs.push(seg),
                    None => groups.push((base, vec![seg])),
                }
            }
            None => out.push((name, value)),
        }
    }
    for (base, mut segs) in groups {
        segs.sort_by_key(|s| s.n);
        segs.dedup_by_key(|s| s.n);
        let any_ext = segs.iter().any(|s| s.extended);
        let mut value = Vec::new();
        for s in &segs {
            if !any_ext || s.extended {
                value.extend_from_slice(&s.value);
            } else {
                for &b in &s.value {
                    if b.is_ascii_graphic() && !is_tspecial(b) && !matches!(b, b'*' | b'\'' | b'%')
                    {
                        value.push(b);
                    } else {
                        value.extend_from_slice(format!("%{b:02X}").as_bytes());
                    }
                }
            }
        }
        let mut name = base;
        if any_ext {
            name.push(b'*');
        }
        out.push((name, value));
    }
    out
}

/// What an entity contains, as far as navigation is concerned.
#[derive(Debug)]
pub(super) enum Kind<'a> {
    Leaf,
    /// Children in order; may be empty when no boundary was found.
    Multipart(Vec<Entity<'a>>),
    /// message/rfc822: the encapsulated message is the whole body.
    Message(Box<Entity<'a>>),
}

/// One MIME entity: a message (top level or encapsulated) or a body part.
#[derive(Debug)]
pub(super) struct Entity<'a> {
    /// Header including its terminating blank line (the MIME header of a body part, the
    /// RFC 5322 header of a message).
    pub header: &'a [u8],
    pub body: &'a [u8],
    pub fields: Vec<Field<'a>>,
    /// Media type and subtype as written (defaults applied), and the parameters.
    pub media: Media,
    pub params: Params,
    /// True when no usable Content-Type was present (the default `charset=us-ascii`
    /// parameter is then reported, as RFC 2045 §5.2 says).
    pub defaulted: bool,
    pub kind: Kind<'a>,
}

impl<'a> Entity<'a> {
    /// Parses `data` (header + body). `digest` says the parent is multipart/digest, whose
    /// default child type is message/rfc822 (RFC 2046 §5.1.5).
    pub fn parse(data: &'a [u8], digest: bool, depth: usize) -> Self {
        let (header, body) = split(data);
        let fields = fields(header);
        let (head, mut params) = match first(&fields, "Content-Type") {
            Some(v) => parse_params(v, true),
            None => (None, Params::default()),
        };
        let (mut media, defaulted) = match head {
            Some(h) => (h, false),
            None if digest => ((b"message".to_vec(), b"rfc822".to_vec()), false),
            None => {
                params = Params::default();
                ((b"TEXT".to_vec(), b"PLAIN".to_vec()), true)
            }
        };
        let is_multipart = media.0.eq_ignore_ascii_case(b"multipart");
        let is_message =
            media.0.eq_ignore_ascii_case(b"message") && media.1.eq_ignore_ascii_case(b"rfc822");
        let boundary = params
            .params
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(b"boundary"))
            .map(|(_, v)| v.clone())
            .filter(|b| !b.is_empty());
        let mut defaulted = defaulted;
        let kind = if (is_multipart || is_message) && depth >= MAX_DEPTH {
            // Too deep: an opaque leaf. The type must change too, or clients would expect
            // children or an envelope that is not there.
            media = (b"APPLICATION".to_vec(), b"OCTET-STREAM".to_vec());
            Kind::Leaf
        } else if is_multipart {
            match boundary {
                Some(b) => {
                    let digest = media.1.eq_ignore_ascii_case(b"digest");
                    Kind::Multipart(
                        split_multipart(body, &b)
                            .into_iter()
                            .map(|p| Entity::parse(p, digest, depth + 1))
                            .collect(),
                    )
                }
                None => {
                    // multipart without a boundary cannot be split: read it as the RFC 2045
                    // default so its text stays reachable as part 1.
                    media = (b"TEXT".to_vec(), b"PLAIN".to_vec());
                    params = Params::default();
                    defaulted = true;
                    Kind::Leaf
                }
            }
        } else if is_message {
            Kind::Message(Box::new(Entity::parse(body, false, depth + 1)))
        } else {
            Kind::Leaf
        };
        Entity {
            header,
            body,
            fields,
            media,
            params,
            defaulted,
            kind,
        }
    }
}

/// Splits a multipart body into its parts (RFC 2046 §5.1.1). A delimiter is a line that
/// is `--boundary`, optionally `--` (close) and trailing whitespace; the line break before
/// it belongs to the delimiter, not to the part. Preamble and epilogue are dropped. With no
/// close delimiter the last part runs to the end of the body.
fn split_multipart<'a>(body: &'a [u8], boundary: &[u8]) -> Vec<&'a [u8]> {
    let mut parts = Vec::new();
    // Start of the current part's content, once the first delimiter was seen.
    let mut open: Option<usize> = None;
    let mut pos = 0;
    while pos < body.len() {
        let end = line_end(body, pos);
        let line = &body[pos..end];
        if let Some(close) = delimiter(line, boundary) {
            if let Some(start) = open {
                // Drop the CRLF (or LF) that precedes the delimiter line.
                let mut stop = pos;
                if stop > start && body[stop - 1] == b'\n' {
                    stop -= 1;
                    if stop > start && body[stop - 1] == b'\r' {
                        stop -= 1;
                    }
                }
                parts.push(&body[start..stop]);
            }
            if close {
                return parts;
            }
            open = Some(end);
        }
        pos = end;
    }
    if let Some(start) = open {
        parts.push(&body[start.min(body.len())..]);
    }
    parts
}

/// `Some(is_close)` if `line` is a delimiter line for `boundary`.
fn delimiter(line: &[u8], boundary: &[u8]) -> Option<bool> {
    let rest = line.strip_prefix(b"--")?.strip_prefix(boundary)?;
    let (close, rest) = match rest.strip_prefix(b"--") {
        Some(r) => (true, r),
        None => (false, rest),
    };
    rest.iter().all(|&b| is_ws(b)).then_some(close)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split_header_body() {
        assert_eq!(
            split(b"A: b\r\n\r\nbody"),
            (&b"A: b\r\n\r\n"[..], &b"body"[..])
        );
        assert_eq!(split(b"\r\nbody"), (&b"\r\n"[..], &b"body"[..]));
        assert_eq!(
            split(b"A: b\r\nno blank"),
            (&b"A: b\r\nno blank"[..], &b""[..])
        );
        assert_eq!(split(b""), (&b""[..], &b""[..]));
    }

    #[test]
    fn fields_with_continuations() {
        let f = fields(b" lead\r\nA: 1\r\n 2\r\nbogus line\r\nB : x\r\n\r\nC: body\r\n");
        let names: Vec<&[u8]> = f.iter().map(|f| f.name).collect();
        assert_eq!(names, [&b""[..], b"A", b"", b"B"]);
        assert_eq!(f[1].raw, b"A: 1\r\n 2\r\n");
        assert_eq!(unfold(f[1].value), b"1 2");
        assert_eq!(f[3].value, b" x\r\n");
    }

    #[test]
    fn content_type_params() {
        let (h, p) = parse_params(
            b" text/plain (comment); charset=\"utf-8\"; format = flowed;;junk; name=a b.txt",
            true,
        );
        assert_eq!(h, Some((b"text".to_vec(), b"plain".to_vec())));
        assert_eq!(
            p.params,
            vec![
                (b"charset".to_vec(), b"utf-8".to_vec()),
                (b"format".to_vec(), b"flowed".to_vec()),
                (b"name".to_vec(), b"a b.txt".to_vec()),
            ]
        );
        assert_eq!(parse_params(b"text", true).0, None);
        assert_eq!(parse_params(b"", true).0, None);
        // A backslash ending an unterminated comment (found by the fuzzer).
        assert_eq!(parse_params(b"(\\", true).0, None);
        assert_eq!(
            parse_params(b"a/b; x=(\\", true).1.params,
            vec![(b"x".to_vec(), Vec::new())]
        );
    }

    #[test]
    fn rfc2231_continuations() {
        let (_, p) = parse_params(b"attachment; filename*1=\"b c\"; filename*0=a; x=1", false);
        assert_eq!(
            p.params,
            vec![
                (b"x".to_vec(), b"1".to_vec()),
                (b"filename".to_vec(), b"ab c".to_vec())
            ]
        );
        let (_, p) = parse_params(b"attachment; name*0*=utf-8''%C3%A4; name*1=\" x\"", false);
        assert_eq!(
            p.params,
            vec![(b"name*".to_vec(), b"utf-8''%C3%A4%20x".to_vec())]
        );
    }

    #[test]
    fn multipart_split() {
        let body = b"pre\r\n--b\r\none\r\n--b \r\n\r\ntwo\r\n\r\n--bx\r\n--b--\r\nepi";
        assert_eq!(
            split_multipart(body, b"b"),
            vec![&b"one"[..], b"\r\ntwo\r\n\r\n--bx"]
        );
        // Empty part and no close delimiter.
        assert_eq!(
            split_multipart(b"--b\r\n--b\r\nlast\r\n", b"b"),
            vec![&b""[..], b"last\r\n"]
        );
        assert!(split_multipart(b"no delimiters", b"b").is_empty());
    }
}
