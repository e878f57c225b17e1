//! IMAP transcripts (`tests/transcripts/*.txt`) replayed byte for byte over raw sockets,
//! one or more sessions, each on the host the test names: every line a session receives
//! must match the next `S:` line of that session.
//!
//! The format: `C: ` lines are sent (CRLF added), `S: ` lines are what the server must
//! answer, in order and nothing else. A leading session number (`2 C: `, `2 S: `) picks
//! the session; without one it is session 1. `L: ` lines after a `C:` line ending in `{+}`
//! form a LITERAL+ literal whose length the runner fills in. In `S:` lines `*` matches any
//! run of characters, `$name` matches a token (no space, parenthesis or bracket) and binds
//! it on first use, and must match the same text afterwards; `$!name` matches a token that
//! differs from the bound one; `$$` is a `$`. `$name` in a `C:` line is replaced by its
//! value.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::time::Duration;

use support::*;

/// One piece of an `S:` pattern.
#[derive(Debug, Clone, PartialEq)]
enum Piece {
    Text(String),
    Any,
    Bind(String),
    Differ(String),
}

fn pieces(pattern: &str) -> Vec<Piece> {
    let mut out = Vec::new();
    let mut text = String::new();
    let mut chars = pattern.chars().peekable();
    while let Some(c) = chars.next() {
        let piece = match c {
            '*' => Piece::Any,
            '$' if chars
                .peek()
                .is_some_and(|n| n.is_ascii_alphanumeric() || *n == '!') =>
            {
                let differ = chars.next_if_eq(&'!').is_some();
                let mut name = String::new();
                while let Some(n) = chars.next_if(|n| n.is_ascii_alphanumeric() || *n == '_') {
                    name.push(n);
                }
                if differ {
                    Piece::Differ(name)
                } else {
                    Piece::Bind(name)
                }
            }
            _ => {
                text.push(c);
                continue;
            }
        };
        if !text.is_empty() {
            out.push(Piece::Text(std::mem::take(&mut text)));
        }
        out.push(piece);
    }
    if !text.is_empty() {
        out.push(Piece::Text(text));
    }
    out
}

fn is_token(c: char) -> bool {
    !matches!(c, ' ' | '(' | ')' | '[' | ']')
}

/// Match `text` against `pattern`; the variables bound on the way.
fn matches(
    pattern: &[Piece],
    text: &str,
    vars: &HashMap<String, String>,
) -> Option<HashMap<String, String>> {
    let Some((first, rest)) = pattern.split_first() else {
        return text.is_empty().then(|| vars.clone());
    };
    match first {
        Piece::Text(t) => matches(rest, text.strip_prefix(t.as_str())?, vars),
        Piece::Any => (0..=text.len())
            .filter(|&i| text.is_char_boundary(i))
            .find_map(|i| matches(rest, &text[i..], vars)),
        Piece::Bind(name) if vars.contains_key(name) => {
            matches(rest, text.strip_prefix(vars[name].as_str())?, vars)
        }
        Piece::Bind(name) | Piece::Differ(name) => {
            let end = text.find(|c| !is_token(c)).unwrap_or(text.len());
            (1..=end)
                .rev()
                .filter(|&i| text.is_char_boundary(i))
                .find_map(|i| {
                    let value = &text[..i];
                    if matches!(first, Piece::Differ(_)) {
                        if vars.get(name).is_none_or(|v| v == value) {
                            return None;
                        }
                        return matches(rest, &text[i..], vars);
                    }
                    let mut bound = vars.clone();
                    bound.insert(name.clone(), value.to_string());
                    matches(rest, &text[i..], &bound)
                })
        }
    }
}

fn glob(pattern: &str, text: &str) -> bool {
    matches(&pieces(pattern), text, &HashMap::new()).is_some()
}

#[test]
fn patterns_match() {
    assert!(glob("a*c", "abbbc"));
    assert!(glob("* OK *", "* OK [UNSEEN 1] x"));
    assert!(!glob("a*c", "abd"));
    assert!(glob("exact", "exact"));
    let vars = matches(
        &pieces("* OK [UIDVALIDITY $uv] x"),
        "* OK [UIDVALIDITY 42] x",
        &HashMap::new(),
    )
    .unwrap();
    assert_eq!(vars["uv"], "42");
    assert!(matches(&pieces("(UIDVALIDITY $uv)"), "(UIDVALIDITY 42)", &vars).is_some());
    assert!(matches(&pieces("(UIDVALIDITY $uv)"), "(UIDVALIDITY 43)", &vars).is_none());
    assert!(matches(&pieces("(UIDVALIDITY $!uv)"), "(UIDVALIDITY 43)", &vars).is_some());
    assert!(matches(&pieces("(UIDVALIDITY $!uv)"), "(UIDVALIDITY 42)", &vars).is_none());
    assert!(glob("FLAGS ($$Junk)", "FLAGS ($Junk)"));
    assert_eq!(
        substitute("a UID FETCH $uv:* ($$x)", &vars),
        "a UID FETCH 42:* ($x)"
    );
}

/// One exchange: which session, bytes to send, expected lines.
struct Step {
    line: usize,
    session: usize,
    send: String,
    expect: Vec<String>,
}

fn parse(text: &str) -> Vec<Step> {
    let mut steps: Vec<Step> = Vec::new();
    let mut literal: Option<Vec<String>> = None;
    let flush_literal = |steps: &mut Vec<Step>, lit: &mut Option<Vec<String>>| {
        if let Some(lines) = lit.take() {
            let body: String = lines.iter().map(|l| format!("{l}\r\n")).collect();
            let step = steps.last_mut().unwrap();
            let cmd = std::mem::take(&mut step.send);
            let cmd = cmd
                .trim_end()
                .replace("{+}", &format!("{{{}+}}", body.len()));
            step.send = format!("{cmd}\r\n{body}\r\n");
        }
    };
    for (n, line) in text.lines().enumerate() {
        // An optional session number in front.
        let (session, line) = match line.split_once(' ') {
            Some((num, rest)) if num.parse::<usize>().is_ok() => (num.parse().unwrap(), rest),
            _ => (1, line),
        };
        let field = |prefix: &str| {
            line.strip_prefix(&format!("{prefix}: "))
                .or((line == format!("{prefix}:")).then_some(""))
        };
        if let Some(c) = field("C") {
            flush_literal(&mut steps, &mut literal);
            steps.push(Step {
                line: n + 1,
                session,
                send: format!("{c}\r\n"),
                expect: Vec::new(),
            });
            if c.ends_with("{+}") {
                literal = Some(Vec::new());
            }
        } else if let Some(l) = field("L") {
            literal
                .as_mut()
                .expect("L: without a literal command")
                .push(l.to_string());
        } else if let Some(s) = field("S") {
            flush_literal(&mut steps, &mut literal);
            let step = steps.last_mut().expect("S: before C:");
            assert_eq!(
                step.session,
                session,
                "line {}: S: of another session than its C:",
                n + 1
            );
            step.expect.push(s.to_string());
        }
    }
    flush_literal(&mut steps, &mut literal);
    steps
}

/// A `C:` line with `$name` replaced by its value and `$$` by `$`.
fn substitute(line: &str, vars: &HashMap<String, String>) -> String {
    let mut out = String::new();
    let mut chars = line.chars().peekable();
    while let Some(c) = chars.next() {
        if c != '$' {
            out.push(c);
        } else if chars.next_if_eq(&'$').is_some() {
            out.push('$');
        } else {
            let mut name = String::new();
            while let Some(n) = chars.next_if(|n| n.is_ascii_alphanumeric() || *n == '_') {
                name.push(n);
            }
            out.push_str(
                vars.get(&name)
                    .unwrap_or_else(|| panic!("${name} is not bound")),
            );
        }
    }
    out
}

/// Replay `file`; session N (1-based) connects to host `hosts[N - 1]` of the lab.
fn replay(lab: &Lab, file: &str, hosts: &[usize]) {
    let text = std::fs::read_to_string(format!(
        "{}/tests/transcripts/{file}",
        env!("CARGO_MANIFEST_DIR")
    ))
    .unwrap();
    let mut sessions: HashMap<usize, (TcpStream, BufReader<TcpStream>)> = HashMap::new();
    let mut vars: HashMap<String, String> = HashMap::new();
    for step in parse(&text) {
        let (writer, reader) = sessions.entry(step.session).or_insert_with(|| {
            let host = hosts[step.session - 1];
            let stream = TcpStream::connect(lab.addr(host, IMAP)).unwrap();
            stream
                .set_read_timeout(Some(Duration::from_secs(10)))
                .unwrap();
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut greeting = String::new();
            reader.read_line(&mut greeting).unwrap();
            assert!(greeting.starts_with("* OK "), "{greeting}");
            (stream, reader)
        });
        let send = substitute(&step.send, &vars);
        writer.write_all(send.as_bytes()).unwrap();
        for want in &step.expect {
            let mut got = String::new();
            reader.read_line(&mut got).unwrap();
            let got = got.trim_end_matches("\r\n");
            match matches(&pieces(want), got, &vars) {
                Some(bound) => vars = bound,
                None => panic!(
                    "{file} line {}: after session {}'s {:?}\n  want S: {want}\n  got  S: {got}",
                    step.line,
                    step.session,
                    send.lines().next().unwrap_or("")
                ),
            }
        }
    }
}

/// `hosts` agents on one spool, plaintext login allowed, three messages (Subject m1, m2,
/// m3, from s@remote.test) delivered to alice.
fn lab_with_mail(hosts: usize) -> Lab {
    let mut lab = Lab::new(hosts, "");
    lab.edit_config(
        "allow_plaintext_auth = false",
        "allow_plaintext_auth = true",
    );
    for host in 0..hosts {
        lab.start(host, &[]);
    }
    for tag in ["m1", "m2", "m3"] {
        let (mut raw, _) = Raw::connect(lab.addr(0, SMTP));
        raw.cmd("EHLO t.test");
        raw.cmd("MAIL FROM:<s@remote.test>");
        raw.cmd("RCPT TO:<alice@example.test>");
        raw.cmd("DATA");
        raw.send(format!("From: s@remote.test\r\nSubject: {tag}\r\n\r\nbody of {tag}\r\n..dotted line\r\n.\r\n").as_bytes());
        assert_eq!(raw.reply().0, 250);
    }
    lab
}

#[test]
fn rfc3501_examples() {
    replay(&lab_with_mail(1), "rfc3501.txt", &[0]);
}

#[test]
fn keywords_are_announced_before_use_on_every_host() {
    replay(&lab_with_mail(2), "keywords.txt", &[0, 1]);
}

#[test]
fn flag_changes_after_an_expunge_reach_every_session() {
    replay(&lab_with_mail(2), "expunge-flags.txt", &[0, 1]);
}

#[test]
fn a_recreated_mailbox_never_reuses_a_uidvalidity() {
    replay(&lab_with_mail(2), "uidvalidity.txt", &[0, 1, 1]);
}

#[test]
fn lsub_returns_noselect_parents_and_lost_mailboxes() {
    replay(&lab_with_mail(2), "lsub.txt", &[0, 1]);
}

#[test]
fn search_finds_addresses_in_every_form() {
    replay(&lab_with_mail(2), "search-addresses.txt", &[0]);
}

#[test]
fn nil_is_not_a_keyword() {
    replay(&lab_with_mail(2), "nil.txt", &[0]);
}

#[test]
fn commands_on_a_recreated_mailbox_end_the_session() {
    replay(&lab_with_mail(2), "recreated.txt", &[0, 1, 0, 0, 0]);
}
