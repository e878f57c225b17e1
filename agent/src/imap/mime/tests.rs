//! Whole-message tests: ENVELOPE / BODYSTRUCTURE as they go on the wire (encoded with
//! imap-codec, so the strings are what a client reads) and every section kind.

use std::num::NonZeroU32;

use imap_codec::{encode::Encoder, ResponseCodec};
use imap_types::{
    core::{AString, IString, Vec1},
    fetch::{MessageDataItem, Part, Section},
    response::{Data, Response},
};

use super::*;

fn wire(item: MessageDataItem<'static>) -> String {
    let resp = Response::Data(Data::Fetch {
        seq: NonZeroU32::new(1).unwrap(),
        items: Vec1::from(item),
    });
    String::from_utf8_lossy(&ResponseCodec::default().encode(&resp).dump()).into_owned()
}

fn bs(msg: &[u8], extended: bool) -> String {
    let item = if extended {
        MessageDataItem::BodyStructure(body_structure(msg, true))
    } else {
        MessageDataItem::Body(body_structure(msg, false))
    };
    wire(item)
}

fn env(msg: &[u8]) -> String {
    wire(MessageDataItem::Envelope(envelope(msg)))
}

fn part(path: &[u32]) -> Part {
    Part(
        Vec1::try_from(
            path.iter()
                .map(|&n| NonZeroU32::new(n).unwrap())
                .collect::<Vec<_>>(),
        )
        .unwrap(),
    )
}

fn names(n: &[&'static str]) -> Vec1<AString<'static>> {
    Vec1::try_from(
        n.iter()
            .map(|&s| AString::try_from(s).unwrap())
            .collect::<Vec<_>>(),
    )
    .unwrap()
}

fn sec(msg: &[u8], s: Section<'_>) -> Option<String> {
    section(msg, Some(&s)).map(|v| String::from_utf8(v).unwrap())
}

const SIMPLE: &[u8] = b"From: Alice <alice@example.org>\r\n\
To: bob@example.net\r\n\
Subject: Hi\r\n\
Date: Mon, 7 Feb 1994 21:52:25 -0800\r\n\
Message-ID: <1@example.org>\r\n\
\r\n\
Hello\r\n\
World\r\n";

#[test]
fn simple_text() {
    assert_eq!(
        env(SIMPLE),
        "* 1 FETCH (ENVELOPE (\"Mon, 7 Feb 1994 21:52:25 -0800\" \"Hi\" \
         ((\"Alice\" NIL \"alice\" \"example.org\")) ((\"Alice\" NIL \"alice\" \"example.org\")) \
         ((\"Alice\" NIL \"alice\" \"example.org\")) ((NIL NIL \"bob\" \"example.net\")) NIL NIL NIL \
         \"<1@example.org>\"))\r\n"
    );
    assert_eq!(
        bs(SIMPLE, true),
        "* 1 FETCH (BODYSTRUCTURE (\"TEXT\" \"PLAIN\" (\"CHARSET\" \"US-ASCII\") NIL NIL \"7BIT\" 14 2 NIL NIL NIL NIL))\r\n"
    );
    assert_eq!(
        bs(SIMPLE, false),
        "* 1 FETCH (BODY (\"TEXT\" \"PLAIN\" (\"CHARSET\" \"US-ASCII\") NIL NIL \"7BIT\" 14 2))\r\n"
    );
}

#[test]
fn simple_sections() {
    let (header, body) = SIMPLE.split_at(SIMPLE.len() - 14);
    let s = |x: &[u8]| Some(String::from_utf8(x.to_vec()).unwrap());
    assert_eq!(section(SIMPLE, None).as_deref(), Some(SIMPLE));
    assert_eq!(sec(SIMPLE, Section::Header(None)), s(header));
    assert_eq!(sec(SIMPLE, Section::Text(None)), s(body));
    // A non-multipart message has exactly one part: its body, with the message header
    // as its MIME header.
    assert_eq!(sec(SIMPLE, Section::Part(part(&[1]))), s(body));
    assert_eq!(sec(SIMPLE, Section::Mime(part(&[1]))), s(header));
    assert_eq!(sec(SIMPLE, Section::Part(part(&[2]))), None);
    assert_eq!(sec(SIMPLE, Section::Part(part(&[1, 1]))), None);
    assert_eq!(sec(SIMPLE, Section::Header(Some(part(&[1])))), None);
    assert_eq!(sec(SIMPLE, Section::Text(Some(part(&[1])))), None);
    assert_eq!(
        sec(
            SIMPLE,
            Section::HeaderFields(None, names(&["SUBJECT", "from", "x-none"]))
        )
        .unwrap(),
        "From: Alice <alice@example.org>\r\nSubject: Hi\r\n\r\n"
    );
    assert_eq!(
        sec(
            SIMPLE,
            Section::HeaderFieldsNot(None, names(&["subject", "FROM", "date"]))
        )
        .unwrap(),
        "To: bob@example.net\r\nMessage-ID: <1@example.org>\r\n\r\n"
    );
    assert_eq!(
        sec(SIMPLE, Section::HeaderFields(None, names(&["x-none"]))).unwrap(),
        "\r\n"
    );
}

/// Lines of `n` bytes each (CRLF included) except the last, which has no line break (it
/// belongs to the boundary), adding up to `size` octets in `lines` lines.
fn filler(size: usize, lines: usize) -> String {
    let per = size / lines;
    let mut out = String::new();
    for _ in 0..lines - 1 {
        out.push_str(&"x".repeat(per - 2));
        out.push_str("\r\n");
    }
    out.push_str(&"y".repeat(size - out.len()));
    out
}

/// The BODYSTRUCTURE example of RFC 3501 §7.4.2, reproduced from a message built to match.
#[test]
fn rfc3501_example() {
    let msg = format!(
        "From: x@y\r\nMIME-Version: 1.0\r\nContent-Type: MULTIPART/MIXED; BOUNDARY=\"b1\"\r\n\r\n\
         --b1\r\nContent-Type: TEXT/PLAIN; CHARSET=US-ASCII\r\n\r\n{}\r\n\
         --b1\r\nContent-Type: TEXT/PLAIN; CHARSET=US-ASCII; NAME=cc.diff\r\n\
         Content-ID: <960723163407.20117h@cac.washington.edu>\r\nContent-Description: Compiler diff\r\n\
         Content-Transfer-Encoding: BASE64\r\n\r\n{}\r\n--b1--\r\n",
        filler(1152, 23),
        filler(4554, 73)
    );
    assert_eq!(
        bs(msg.as_bytes(), false),
        "* 1 FETCH (BODY ((\"TEXT\" \"PLAIN\" (\"CHARSET\" \"US-ASCII\") NIL NIL \"7BIT\" 1152 23)\
         (\"TEXT\" \"PLAIN\" (\"CHARSET\" \"US-ASCII\" \"NAME\" \"cc.diff\") \
         \"<960723163407.20117h@cac.washington.edu>\" \"Compiler diff\" \"BASE64\" 4554 73) \"MIXED\"))\r\n"
    );
    assert_eq!(
        bs(msg.as_bytes(), true),
        "* 1 FETCH (BODYSTRUCTURE ((\"TEXT\" \"PLAIN\" (\"CHARSET\" \"US-ASCII\") NIL NIL \"7BIT\" 1152 23 \
         NIL NIL NIL NIL)\
         (\"TEXT\" \"PLAIN\" (\"CHARSET\" \"US-ASCII\" \"NAME\" \"cc.diff\") \
         \"<960723163407.20117h@cac.washington.edu>\" \"Compiler diff\" \"BASE64\" 4554 73 NIL NIL NIL NIL) \
         \"MIXED\" (\"BOUNDARY\" \"b1\") NIL NIL NIL))\r\n"
    );
}

#[test]
fn multipart_alternative() {
    let msg = b"From: a@b\r\nContent-Type: multipart/alternative;\r\n boundary=\"=_alt\"\r\n\
Content-Language: en, de (German)\r\n\r\n\
--=_alt\r\nContent-Type: text/plain; charset=utf-8; format=flowed\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n\
caf=C3=A9\r\n\
--=_alt\r\nContent-Type: text/html; charset=utf-8\r\nContent-Location: http://x.example/a\r\n\r\n\
<p>caf\xc3\xa9</p>\r\n\r\n\
--=_alt--\r\n";
    assert_eq!(
        bs(msg, true),
        "* 1 FETCH (BODYSTRUCTURE (\
         (\"TEXT\" \"plain\" (\"charset\" \"utf-8\" \"format\" \"flowed\") NIL NIL \"quoted-printable\" 9 1 NIL NIL NIL NIL)\
         (\"TEXT\" \"html\" (\"charset\" \"utf-8\") NIL NIL \"7BIT\" 14 1 NIL NIL NIL \"http://x.example/a\") \
         \"alternative\" (\"boundary\" \"=_alt\") NIL (\"en\" \"de\") NIL))\r\n"
    );
    assert_eq!(sec(msg, Section::Part(part(&[1]))).unwrap(), "caf=C3=A9");
    assert_eq!(
        section(msg, Some(&Section::Part(part(&[2])))).unwrap(),
        b"<p>caf\xc3\xa9</p>\r\n"
    );
    assert_eq!(sec(msg, Section::Part(part(&[3]))), None);
}

const MIXED: &[u8] = b"From: a@b\r\n\
Subject: mixed\r\n\
MIME-Version: 1.0\r\n\
Content-Type: multipart/mixed; boundary=\"outer\"\r\n\
\r\n\
preamble\r\n\
--outer\r\n\
Content-Type: text/plain; charset=utf-8\r\n\
\r\n\
body text\r\n\
--outer\r\n\
Content-Type: application/pdf; name=\"x.pdf\"\r\n\
Content-Transfer-Encoding: base64\r\n\
Content-Disposition: attachment; filename=\"x.pdf\"\r\n\
\r\n\
AAAA\r\n\
BBBB\r\n\
--outer\r\n\
Content-Type: message/rfc822\r\n\
Content-Description: fwd\r\n\
\r\n\
From: c@d\r\n\
Subject: inner\r\n\
Content-Type: multipart/alternative; boundary=inner\r\n\
\r\n\
--inner\r\n\
Content-Type: text/plain\r\n\
\r\n\
plain\r\n\
--inner\r\n\
Content-Type: text/html\r\n\
\r\n\
<p>html</p>\r\n\
--inner--\r\n\
--outer--\r\n\
epilogue\r\n";

const INNER: &str = "From: c@d\r\nSubject: inner\r\nContent-Type: multipart/alternative; boundary=inner\r\n\r\n\
--inner\r\nContent-Type: text/plain\r\n\r\nplain\r\n--inner\r\nContent-Type: text/html\r\n\r\n<p>html</p>\r\n--inner--";

#[test]
fn mixed_with_attachment_and_message() {
    let inner_env = "(NIL \"inner\" ((NIL NIL \"c\" \"d\")) ((NIL NIL \"c\" \"d\")) ((NIL NIL \"c\" \"d\")) NIL NIL NIL NIL NIL)";
    assert_eq!(
        bs(MIXED, true),
        format!(
            "* 1 FETCH (BODYSTRUCTURE (\
             (\"TEXT\" \"plain\" (\"charset\" \"utf-8\") NIL NIL \"7BIT\" 9 1 NIL NIL NIL NIL)\
             (\"application\" \"pdf\" (\"name\" \"x.pdf\") NIL NIL \"base64\" 10 NIL (\"attachment\" (\"filename\" \"x.pdf\")) NIL NIL)\
             (\"MESSAGE\" \"RFC822\" NIL NIL \"fwd\" \"7BIT\" 184 {inner_env} \
             ((\"TEXT\" \"plain\" NIL NIL NIL \"7BIT\" 5 1 NIL NIL NIL NIL)\
             (\"TEXT\" \"html\" NIL NIL NIL \"7BIT\" 11 1 NIL NIL NIL NIL) \"alternative\" (\"boundary\" \"inner\") NIL NIL NIL) \
             13 NIL NIL NIL NIL) \
             \"mixed\" (\"boundary\" \"outer\") NIL NIL NIL))\r\n"
        )
    );
    assert_eq!(
        bs(MIXED, false),
        format!(
            "* 1 FETCH (BODY (\
             (\"TEXT\" \"plain\" (\"charset\" \"utf-8\") NIL NIL \"7BIT\" 9 1)\
             (\"application\" \"pdf\" (\"name\" \"x.pdf\") NIL NIL \"base64\" 10)\
             (\"MESSAGE\" \"RFC822\" NIL NIL \"fwd\" \"7BIT\" 184 {inner_env} \
             ((\"TEXT\" \"plain\" NIL NIL NIL \"7BIT\" 5 1)(\"TEXT\" \"html\" NIL NIL NIL \"7BIT\" 11 1) \"alternative\") \
             13) \"mixed\"))\r\n"
        )
    );
    assert_eq!(INNER.len(), 184);
}

#[test]
fn mixed_sections() {
    let m = MIXED;
    let text = std::str::from_utf8(m).unwrap();
    let (header, body) = text.split_at(text.find("preamble").unwrap());
    assert_eq!(sec(m, Section::Header(None)).unwrap(), header);
    assert_eq!(sec(m, Section::Text(None)).unwrap(), body);
    assert_eq!(sec(m, Section::Part(part(&[1]))).unwrap(), "body text");
    assert_eq!(
        sec(m, Section::Mime(part(&[1]))).unwrap(),
        "Content-Type: text/plain; charset=utf-8\r\n\r\n"
    );
    assert_eq!(sec(m, Section::Part(part(&[2]))).unwrap(), "AAAA\r\nBBBB");
    assert_eq!(
        sec(m, Section::Mime(part(&[2]))).unwrap(),
        "Content-Type: application/pdf; name=\"x.pdf\"\r\nContent-Transfer-Encoding: base64\r\n\
         Content-Disposition: attachment; filename=\"x.pdf\"\r\n\r\n"
    );
    // message/rfc822: the part is the whole encapsulated message; HEADER/TEXT/numbers go inside.
    assert_eq!(sec(m, Section::Part(part(&[3]))).unwrap(), INNER);
    assert_eq!(
        sec(m, Section::Mime(part(&[3]))).unwrap(),
        "Content-Type: message/rfc822\r\nContent-Description: fwd\r\n\r\n"
    );
    let (ih, ib) = INNER.split_at(INNER.find("--inner").unwrap());
    assert_eq!(sec(m, Section::Header(Some(part(&[3])))).unwrap(), ih);
    assert_eq!(sec(m, Section::Text(Some(part(&[3])))).unwrap(), ib);
    assert_eq!(
        sec(
            m,
            Section::HeaderFields(Some(part(&[3])), names(&["Subject"]))
        )
        .unwrap(),
        "Subject: inner\r\n\r\n"
    );
    assert_eq!(
        sec(
            m,
            Section::HeaderFieldsNot(Some(part(&[3])), names(&["Subject", "content-type"]))
        )
        .unwrap(),
        "From: c@d\r\n\r\n"
    );
    assert_eq!(sec(m, Section::Part(part(&[3, 1]))).unwrap(), "plain");
    assert_eq!(sec(m, Section::Part(part(&[3, 2]))).unwrap(), "<p>html</p>");
    assert_eq!(
        sec(m, Section::Mime(part(&[3, 2]))).unwrap(),
        "Content-Type: text/html\r\n\r\n"
    );
    // Not there.
    assert_eq!(sec(m, Section::Part(part(&[4]))), None);
    assert_eq!(sec(m, Section::Part(part(&[3, 3]))), None);
    assert_eq!(sec(m, Section::Part(part(&[1, 1]))), None);
    assert_eq!(sec(m, Section::Header(Some(part(&[2])))), None);
    assert_eq!(sec(m, Section::Text(Some(part(&[3, 1])))), None);
    assert_eq!(
        sec(m, Section::HeaderFields(Some(part(&[1])), names(&["a"]))),
        None
    );
    assert_eq!(sec(m, Section::Part(part(&[u32::MAX]))), None);
}

#[test]
fn header_fields_keep_folding_and_order() {
    let msg = b"Subject: a\r\n b\r\nX-A: 1\r\nsubject: second\r\nX-B: 2\r\n\tmore\r\n\r\nbody";
    assert_eq!(
        sec(msg, Section::HeaderFields(None, names(&["x-b", "SUBJECT"]))).unwrap(),
        "Subject: a\r\n b\r\nsubject: second\r\nX-B: 2\r\n\tmore\r\n\r\n"
    );
    assert_eq!(
        sec(msg, Section::HeaderFieldsNot(None, names(&["subject"]))).unwrap(),
        "X-A: 1\r\nX-B: 2\r\n\tmore\r\n\r\n"
    );
    // The envelope uses the first Subject, unfolded but otherwise raw.
    assert_eq!(envelope(msg).subject, nstring(b"a b".to_vec()));
}

#[test]
fn groups_and_encoded_words() {
    let msg = b"From: =?utf-8?q?J=C3=B6rg?= <j@x.example>\r\n\
Sender: s@x.example\r\n\
Reply-To: \r\n\
To: A Group: a@b, Ann <c@d>;, e@f\r\n\
Cc: undisclosed-recipients:;\r\n\
Subject: =?utf-8?B?w6lsw6g=?=\r\n =?utf-8?q?_x?=\r\n\
In-Reply-To: <0@x>\r\n\
\r\n";
    assert_eq!(
        env(msg),
        "* 1 FETCH (ENVELOPE (NIL \"=?utf-8?B?w6lsw6g=?= =?utf-8?q?_x?=\" \
         ((\"=?utf-8?q?J=C3=B6rg?=\" NIL \"j\" \"x.example\")) ((NIL NIL \"s\" \"x.example\")) \
         ((\"=?utf-8?q?J=C3=B6rg?=\" NIL \"j\" \"x.example\")) \
         ((NIL NIL \"A Group\" NIL)(NIL NIL \"a\" \"b\")(\"Ann\" NIL \"c\" \"d\")(NIL NIL NIL NIL)(NIL NIL \"e\" \"f\")) \
         ((NIL NIL \"undisclosed-recipients\" NIL)(NIL NIL NIL NIL)) NIL \"<0@x>\" NIL))\r\n"
    );
}

#[test]
fn missing_headers() {
    for msg in [&b""[..], b"\r\nbody\r\n", b"X-Other: 1\r\n\r\n"] {
        assert_eq!(
            env(msg),
            "* 1 FETCH (ENVELOPE (NIL NIL NIL NIL NIL NIL NIL NIL NIL NIL))\r\n"
        );
    }
    assert_eq!(
        bs(b"\r\nbody\r\n", false),
        "* 1 FETCH (BODY (\"TEXT\" \"PLAIN\" (\"CHARSET\" \"US-ASCII\") NIL NIL \"7BIT\" 6 1))\r\n"
    );
    assert_eq!(
        bs(b"", false),
        "* 1 FETCH (BODY (\"TEXT\" \"PLAIN\" (\"CHARSET\" \"US-ASCII\") NIL NIL \"7BIT\" 0 0))\r\n"
    );
    assert_eq!(section(b"", None), Some(Vec::new()));
    assert_eq!(sec(b"", Section::Part(part(&[1]))).unwrap(), "");
    assert_eq!(sec(b"", Section::Header(None)).unwrap(), "");
}

#[test]
fn eight_bit_and_nul_headers() {
    let e = envelope(b"Subject: caf\xc3\xa9\x00!\r\nDate: \x00\r\n\r\n");
    // 8-bit cannot be quoted: a literal. The NUL is gone (no IMAP string can hold it).
    assert!(matches!(&e.subject.0, Some(IString::Literal(l)) if l.data() == "café!".as_bytes()));
    assert_eq!(e.date, imap_types::core::NString::NIL);
    let b = body_structure(b"Content-Type: text/x-\xff\x00; n=\"\x00\r\n\r\n", true);
    let _ = wire(MessageDataItem::BodyStructure(b));
}

#[test]
fn no_closing_boundary() {
    let msg =
        b"Content-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\n\r\none\r\n--b\r\n\r\ntwo\r\n";
    assert_eq!(
        bs(msg, false),
        "* 1 FETCH (BODY ((\"TEXT\" \"PLAIN\" (\"CHARSET\" \"US-ASCII\") NIL NIL \"7BIT\" 3 1)\
         (\"TEXT\" \"PLAIN\" (\"CHARSET\" \"US-ASCII\") NIL NIL \"7BIT\" 5 1) \"mixed\"))\r\n"
    );
    assert_eq!(sec(msg, Section::Part(part(&[2]))).unwrap(), "two\r\n");
    // An inner multipart missing its close delimiter ends at the outer one.
    let nested = b"Content-Type: multipart/mixed; boundary=o\r\n\r\n--o\r\n\
Content-Type: multipart/alternative; boundary=i\r\n\r\n--i\r\n\r\nx\r\n--o\r\n\r\ny\r\n--o--\r\n";
    assert_eq!(sec(nested, Section::Part(part(&[1, 1]))).unwrap(), "x");
    assert_eq!(sec(nested, Section::Part(part(&[2]))).unwrap(), "y");
}

#[test]
fn multipart_without_parts_or_boundary() {
    // Boundary never used: one empty text/plain stands in (IMAP needs at least one part).
    let msg = b"Content-Type: multipart/mixed; boundary=nope\r\n\r\njust text\r\n";
    assert_eq!(
        bs(msg, false),
        "* 1 FETCH (BODY ((\"TEXT\" \"PLAIN\" (\"CHARSET\" \"US-ASCII\") NIL NIL \"7BIT\" 0 0) \"mixed\"))\r\n"
    );
    assert_eq!(sec(msg, Section::Part(part(&[1]))), None);
    // No boundary parameter: read as text/plain so the text stays reachable.
    let msg = b"Content-Type: multipart/mixed\r\n\r\njust text\r\n";
    assert_eq!(
        bs(msg, false),
        "* 1 FETCH (BODY (\"TEXT\" \"PLAIN\" (\"CHARSET\" \"US-ASCII\") NIL NIL \"7BIT\" 11 1))\r\n"
    );
    assert_eq!(
        sec(msg, Section::Part(part(&[1]))).unwrap(),
        "just text\r\n"
    );
}

#[test]
fn no_header_body_separator() {
    let msg = b"Subject: x\r\nFrom: a@b";
    let e = envelope(msg);
    assert_eq!(e.subject, nstring(b"x".to_vec()));
    assert_eq!(e.from.len(), 1);
    assert_eq!(
        sec(msg, Section::Header(None)).unwrap(),
        "Subject: x\r\nFrom: a@b"
    );
    assert_eq!(sec(msg, Section::Text(None)).unwrap(), "");
    assert_eq!(
        sec(msg, Section::HeaderFields(None, names(&["from"]))).unwrap(),
        "From: a@b\r\n\r\n"
    );
    assert_eq!(
        bs(msg, false),
        "* 1 FETCH (BODY (\"TEXT\" \"PLAIN\" (\"CHARSET\" \"US-ASCII\") NIL NIL \"7BIT\" 0 0))\r\n"
    );
}

#[test]
fn digest_children_default_to_message() {
    let msg = b"Content-Type: multipart/digest; boundary=d\r\n\r\n--d\r\n\r\nSubject: in\r\n\r\nhi\r\n--d--\r\n";
    assert!(bs(msg, false).starts_with(
        "* 1 FETCH (BODY ((\"MESSAGE\" \"RFC822\" NIL NIL NIL \"7BIT\" 17 (NIL \"in\" "
    ));
    assert_eq!(
        sec(msg, Section::Header(Some(part(&[1])))).unwrap(),
        "Subject: in\r\n\r\n"
    );
    assert_eq!(sec(msg, Section::Part(part(&[1, 1]))).unwrap(), "hi");
}

fn depth(b: &BodyStructure<'_>) -> usize {
    use imap_types::body::SpecificFields;
    match b {
        BodyStructure::Multi { bodies, .. } => {
            1 + bodies.as_ref().iter().map(depth).max().unwrap_or(0)
        }
        BodyStructure::Single { body, .. } => match &body.specific {
            SpecificFields::Message { body_structure, .. } => 1 + depth(body_structure),
            _ => 1,
        },
    }
}

#[test]
fn deep_nesting_is_capped() {
    let mut msg = b"leaf".to_vec();
    for i in 0..200 {
        let head = if i % 2 == 0 {
            b"Content-Type: message/rfc822\r\n\r\n".to_vec()
        } else {
            format!("Content-Type: multipart/mixed; boundary=b{i}\r\n\r\n--b{i}\r\n").into_bytes()
        };
        msg = [head, msg].concat();
    }
    let b = body_structure(&msg, true);
    assert!(depth(&b) <= parse::MAX_DEPTH + 1, "depth {}", depth(&b));
    let _ = wire(MessageDataItem::BodyStructure(b));
    let deep = vec![NonZeroU32::new(1).unwrap(); 300];
    let _ = section(
        &msg,
        Some(&Section::Part(Part(Vec1::try_from(deep).unwrap()))),
    );
}

#[test]
fn bare_lf_input_is_tolerated() {
    // The caller sends CRLF; LF-only input still parses (sizes are of the bytes given).
    let msg = b"Subject: lf\nContent-Type: multipart/mixed; boundary=b\n\n--b\n\nx\n--b--\n";
    assert_eq!(envelope(msg).subject, nstring(b"lf".to_vec()));
    assert_eq!(sec(msg, Section::Part(part(&[1]))).unwrap(), "x");
}

#[test]
fn partials() {
    let d = b"0123456789";
    assert_eq!(partial(d, 0, 10), d);
    assert_eq!(partial(d, 2, 3), b"234");
    assert_eq!(partial(d, 8, 10), b"89");
    assert_eq!(partial(d, 0, 0), b"");
    assert_eq!(partial(d, 10, 1), b"");
    assert_eq!(partial(d, 11, 1), b"");
    assert_eq!(partial(d, u32::MAX, u32::MAX), b"");
    let body = section(MIXED, Some(&Section::Part(part(&[2])))).unwrap();
    assert_eq!(partial(&body, 4, 4), b"\r\nBB");
}
