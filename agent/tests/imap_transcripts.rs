//! RFC 3501 example transcripts (`tests/transcripts/*.txt`) replayed byte for byte over a
//! raw socket: every line the server sends must match the next `S:` line.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::time::Duration;

use support::*;

/// `*` in `pattern` matches any run of characters.
fn glob(pattern: &str, text: &str) -> bool {
    let parts: Vec<&str> = pattern.split('*').collect();
    if parts.len() == 1 {
        return pattern == text;
    }
    let mut rest = text;
    for (i, part) in parts.iter().enumerate() {
        if i == 0 {
            let Some(r) = rest.strip_prefix(part) else {
                return false;
            };
            rest = r;
        } else if i == parts.len() - 1 {
            return rest.ends_with(part);
        } else {
            let Some(at) = rest.find(part) else {
                return false;
            };
            rest = &rest[at + part.len()..];
        }
    }
    true
}

#[test]
fn glob_matches() {
    assert!(glob("a*c", "abbbc"));
    assert!(glob("* OK *", "* OK [UNSEEN 1] x"));
    assert!(!glob("a*c", "abd"));
    assert!(glob("exact", "exact"));
}

/// One exchange: bytes to send, expected lines.
struct Step {
    line: usize,
    send: Vec<u8>,
    expect: Vec<String>,
}

fn parse(text: &str) -> Vec<Step> {
    let mut steps: Vec<Step> = Vec::new();
    let mut literal: Option<Vec<String>> = None;
    let flush_literal = |steps: &mut Vec<Step>, lit: &mut Option<Vec<String>>| {
        if let Some(lines) = lit.take() {
            let body: String = lines.iter().map(|l| format!("{l}\r\n")).collect();
            let step = steps.last_mut().unwrap();
            let cmd = String::from_utf8(std::mem::take(&mut step.send)).unwrap();
            let cmd = cmd
                .trim_end()
                .replace("{+}", &format!("{{{}+}}", body.len()));
            step.send = format!("{cmd}\r\n{body}\r\n").into_bytes();
        }
    };
    for (n, line) in text.lines().enumerate() {
        if let Some(c) = line.strip_prefix("C: ") {
            flush_literal(&mut steps, &mut literal);
            steps.push(Step {
                line: n + 1,
                send: format!("{c}\r\n").into_bytes(),
                expect: Vec::new(),
            });
            if c.ends_with("{+}") {
                literal = Some(Vec::new());
            }
        } else if let Some(l) =
            line.strip_prefix("L: ")
                .or(if line == "L:" { Some("") } else { None })
        {
            literal
                .as_mut()
                .expect("L: without a literal command")
                .push(l.to_string());
        } else if let Some(s) =
            line.strip_prefix("S: ")
                .or(if line == "S:" { Some("") } else { None })
        {
            flush_literal(&mut steps, &mut literal);
            steps
                .last_mut()
                .expect("S: before C:")
                .expect
                .push(s.to_string());
        }
    }
    flush_literal(&mut steps, &mut literal);
    steps
}

fn replay(lab: &Lab, file: &str) {
    let text = std::fs::read_to_string(format!(
        "{}/tests/transcripts/{file}",
        env!("CARGO_MANIFEST_DIR")
    ))
    .unwrap();
    let stream = TcpStream::connect(lab.addr(0, IMAP)).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut writer = stream.try_clone().unwrap();
    let mut reader = BufReader::new(stream);
    let mut greeting = String::new();
    reader.read_line(&mut greeting).unwrap();
    assert!(greeting.starts_with("* OK "), "{greeting}");
    for step in parse(&text) {
        writer.write_all(&step.send).unwrap();
        for want in &step.expect {
            let mut got = String::new();
            reader.read_line(&mut got).unwrap();
            let got = got.trim_end_matches("\r\n");
            assert!(
                glob(want, got),
                "{file} line {}: after {:?}\n  want S: {want}\n  got  S: {got}",
                step.line,
                String::from_utf8_lossy(&step.send)
                    .lines()
                    .next()
                    .unwrap_or("")
            );
        }
    }
}

#[test]
fn rfc3501_examples() {
    let mut lab = Lab::new(1, "");
    lab.edit_config(
        "allow_plaintext_auth = false",
        "allow_plaintext_auth = true",
    );
    lab.start(0, &[]);
    for tag in ["m1", "m2", "m3"] {
        let (mut raw, _) = Raw::connect(lab.addr(0, SMTP));
        raw.cmd("EHLO t.test");
        raw.cmd("MAIL FROM:<s@remote.test>");
        raw.cmd("RCPT TO:<alice@example.test>");
        raw.cmd("DATA");
        raw.send(format!("From: s@remote.test\r\nSubject: {tag}\r\n\r\nbody of {tag}\r\n..dotted line\r\n.\r\n").as_bytes());
        assert_eq!(raw.reply().0, 250);
    }
    replay(&lab, "rfc3501.txt");
}
