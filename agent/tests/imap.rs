//! IMAP4rev1 with a real client (Python's imaplib) against real agents: every command of
//! RFC 3501 plus IDLE, UIDPLUS, LITERAL+, NAMESPACE, ID, UNSELECT and MOVE, checked
//! against what is on the spool; and several sessions on two hosts seeing one mailbox.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::time::Duration;

use support::*;

/// Deliver `n` numbered messages to `user` over SMTP.
fn deliver(lab: &Lab, host: usize, user: &str, tags: &[&str]) {
    for tag in tags {
        let (mut raw, _) = Raw::connect(lab.addr(host, SMTP));
        raw.cmd("EHLO t.test");
        raw.cmd("MAIL FROM:<s@remote.test>");
        assert_eq!(raw.cmd(&format!("RCPT TO:<{user}@example.test>")).0, 250);
        raw.cmd("DATA");
        raw.send(
            format!(
                "From: Sender <s@remote.test>\r\nTo: {user}@example.test\r\nSubject: {tag}\r\n\
                 Message-ID: <{tag}@remote.test>\r\nDate: Tue, 24 Nov 2026 10:00:00 +0000\r\n\r\n\
                 body of {tag}\r\n..dotted line\r\n.\r\n"
            )
            .as_bytes(),
        );
        assert_eq!(raw.reply().0, 250);
    }
}

const COMMANDS: &str = r#"
import imaplib, ssl, sys, re
host = sys.argv[1]
# imaplib refuses commands it does not know.
imaplib.Commands.setdefault("ID", ("NONAUTH", "AUTH", "SELECTED"))
imaplib.Commands.setdefault("MOVE", ("SELECTED",))
ctx = ssl.create_default_context(); ctx.check_hostname = False; ctx.verify_mode = ssl.CERT_NONE

def ok(r, what=""):
    typ, data = r
    assert typ == "OK", (what, typ, data)
    return data

M = imaplib.IMAP4(host, 2143)
caps = M.capabilities
for c in ["IMAP4REV1", "STARTTLS", "LOGINDISABLED", "IDLE", "UIDPLUS", "LITERAL+", "NAMESPACE", "ID", "UNSELECT", "MOVE"]:
    assert c in caps, (c, caps)
try:
    M.login("alice", "alice-pw")
    raise SystemExit("LOGIN accepted without TLS")
except imaplib.IMAP4.error as e:
    assert "PRIVACYREQUIRED" in str(e), e
ok(M.starttls(ssl_context=ctx))
assert "AUTH=PLAIN" in M.capabilities and "LOGINDISABLED" not in M.capabilities
try:
    M.login("alice", "wrong")
    raise SystemExit("wrong password accepted")
except imaplib.IMAP4.error as e:
    assert "AUTHENTICATIONFAILED" in str(e), e
ok(M.login("alice", "alice-pw"))
ok(M.noop())
typ, data = M._simple_command("ID", '("name" "test")'); assert typ == "OK"
typ, data = M._untagged_response(typ, data, "ID")
assert b'"hamail"' in data[0], data
typ, data = M.namespace(); assert data == [b'(("" "/")) NIL NIL'], data

# SELECT: 3 messages, all recent for this first session.
data = ok(M.select("INBOX"))
assert data == [b"3"], data
assert M.untagged_responses.get("RECENT") == [b"3"], M.untagged_responses
uidvalidity = int(M.untagged_responses["UIDVALIDITY"][0])

# FETCH: flags, sizes, envelope, bodystructure, sections, partial, peek vs \Seen.
data = ok(M.fetch("1:*", "(UID FLAGS RFC822.SIZE INTERNALDATE)"))
assert len(data) == 3 and b"UID 1 " in data[0] and b"\\Recent" in data[0], data
full = ok(M.fetch("1", "(BODY.PEEK[])"))[0][1]
size = int(re.search(rb"RFC822.SIZE (\d+)", data[0]).group(1))
assert len(full) == size, (len(full), size)
assert full.endswith(b"\r\n\r\nbody of m1\r\n.dotted line\r\n"), full
assert b"\\Seen" not in ok(M.fetch("1", "(FLAGS)"))[0]
data = ok(M.fetch("1", "(BODY[HEADER.FIELDS (SUBJECT)])"))
assert data[0][1] == b"Subject: m1\r\n\r\n", data
data = ok(M.fetch("1", "(BODY[TEXT]<0.7>)"))
assert data[0][1] == b"body of", data
assert b"\\Seen" in ok(M.fetch("1", "(FLAGS)"))[0], "BODY[] without PEEK must set \\Seen"
data = ok(M.fetch("2", "(ENVELOPE)"))
assert b'"m2"' in data[0] and b'"Sender" NIL "s" "remote.test"' in data[0], data
data = ok(M.fetch("2", "(BODYSTRUCTURE)"))
assert b'("TEXT" "PLAIN"' in data[0].upper(), data
data = ok(M.fetch("3", "(RFC822.HEADER)"))
assert data[0][1].startswith(b"Return-Path: <s@remote.test>\r\n"), data
data = ok(M.uid("FETCH", "2:*", "(FLAGS)"))
assert len(data) == 2 and b"UID 2" in data[0], data

# STORE and keywords.
data = ok(M.store("2", "+FLAGS", "(\\Flagged $Important)"))
assert b"\\Flagged" in data[0] and b"$Important" in data[0], data
data = ok(M.store("2", "-FLAGS.SILENT", "(\\Flagged)"))
assert data == [None], data
data = ok(M.uid("STORE", "3", "FLAGS", "(\\Answered)"))
assert b"UID 3" in data[0] and b"\\Answered" in data[0], data

# SEARCH.
assert ok(M.search(None, "ALL")) == [b"1 2 3"]
assert ok(M.search(None, "SEEN")) == [b"1"]
assert ok(M.search(None, "UNSEEN")) == [b"2 3"]
assert ok(M.search(None, "KEYWORD", "$Important")) == [b"2"]
assert ok(M.search(None, "SUBJECT", "m3")) == [b"3"]
assert ok(M.search(None, "BODY", '"body of m2"')) == [b"2"]
assert ok(M.search(None, "OR", "ANSWERED", "SEEN")) == [b"1 3"]
assert ok(M.uid("SEARCH", None, "UID", "2:*")) == [b"2 3"]
typ, data = M.search("KOI8-R", "ALL")
assert typ == "NO", (typ, data)

# Folders: CREATE, LIST, LSUB, SUBSCRIBE, RENAME, STATUS, DELETE, modified UTF-7.
ok(M.create("Archive"))
ok(M.create("Work/Projects"))
ok(M.create("Entw&APw-rfe"))
typ, data = M.create("Archive"); assert typ == "NO" and b"ALREADYEXISTS" in data[0], data
names = ok(M.list())
assert any(n.endswith(b'"/" Archive') for n in names), names
assert any(n.endswith(b'"/" Entw&APw-rfe') for n in names), names
assert any(b"\\Noselect" in n and n.endswith(b'"/" Work') for n in names), names
assert any(n.endswith(b'"/" Work/Projects') for n in names), names
assert len(ok(M.list('""', "%"))) == 4, ok(M.list('""', "%"))
ok(M.subscribe("Archive"))
assert ok(M.lsub()) == [b'(\\Noinferiors) "/" Archive'], ok(M.lsub())
ok(M.unsubscribe("Archive"))
assert ok(M.lsub()) == [None]
ok(M.rename("Work/Projects", "Work/Done"))
assert any(n.endswith(b'"/" Work/Done') for n in ok(M.list('""', "Work/*")))
typ, data = M.select("Nope"); assert typ == "NO", data
ok(M.select("INBOX"))

# COPY and MOVE with UIDPLUS, APPEND with flags, date and a literal.
typ, data = M.copy("1:2", "Archive")
assert typ == "OK" and b"COPYUID %d" % 0 not in data[0] and b"COPYUID" in data[0], data
typ, data = M.append("Archive", "(\\Seen $Work)", '"24-Nov-2026 10:00:00 +0000"', b"Subject: appended\r\n\r\nappended body\r\n")
assert typ == "OK" and b"APPENDUID" in data[0], data
appenduid = int(data[0].split()[2].rstrip(b"]"))
assert appenduid == 3, data
data = ok(M.status("Archive", "(MESSAGES UNSEEN UIDNEXT UIDVALIDITY RECENT)"))
assert b"MESSAGES 3" in data[0] and b"UNSEEN 1" in data[0] and b"UIDNEXT 4" in data[0], data
typ, data = M.uid("MOVE", "3", "Entw&APw-rfe")
assert typ == "OK", (typ, data)
assert M.untagged_responses.get("EXPUNGE") == [b"3"], M.untagged_responses
assert ok(M.search(None, "ALL")) == [b"1 2"]
typ, data = M.copy("1", "Missing")
assert typ == "NO" and b"TRYCREATE" in data[0], data

# EXPUNGE, UID EXPUNGE, CLOSE, UNSELECT, EXAMINE is read-only.
ok(M.store("1:2", "+FLAGS", "(\\Deleted)"))
typ, data = M.uid("EXPUNGE", "2")
assert typ == "OK", (typ, data)
assert ok(M.search(None, "ALL")) == [b"1"], "UID EXPUNGE removed only UID 2"
ok(M.expunge())
assert ok(M.search(None, "ALL")) in ([None], [b""])
ok(M.select("Archive"))
typ, data = M._simple_command("UNSELECT"); assert typ == "OK"
ok(M.select("Archive", readonly=True))
typ, data = M.store("1", "+FLAGS", "(\\Deleted)"); assert typ == "NO", data
ok(M.close())
ok(M.delete("Entw&APw-rfe"))
typ, data = M.delete("Work"); assert typ == "NO", "a level with children"
ok(M.delete("Work/Done")); ok(M.delete("Work"))
typ, data = M.delete("INBOX"); assert typ == "NO"
assert M.logout()[0] == "BYE"

# Implicit TLS and AUTHENTICATE PLAIN.
S = imaplib.IMAP4_SSL(host, 2993, ssl_context=ctx)
ok(S.authenticate("PLAIN", lambda _: b"\0bob\0bob-pw"))
ok(S.select())
assert S.logout()[0] == "BYE"
print("ok")
"#;

#[test]
fn every_command_with_imaplib() {
    let mut lab = Lab::new(1, "");
    lab.start(0, &[]);
    deliver(&lab, 0, "alice", &["m1", "m2", "m3"]);
    let out = python(COMMANDS, &[&lab.ips[0].to_string()]);
    assert_eq!(out.trim(), "ok");
    // The spool agrees: INBOX empty, Archive holds m1, m2 and the appended message.
    assert!(lab.messages("alice").is_empty());
    let archive = lab.spool().mailbox("alice", "Archive").unwrap();
    let rs = archive.read().unwrap();
    let subjects: Vec<String> = rs
        .index()
        .visible()
        .map(|m| {
            let t = String::from_utf8(rs.read_message(m).unwrap()).unwrap();
            t.lines()
                .find_map(|l| l.strip_prefix("Subject: "))
                .unwrap()
                .to_string()
        })
        .collect();
    assert_eq!(subjects, ["m1", "m2", "appended"]);
}

const TWO_SESSIONS: &str = r#"
import imaplib, ssl, sys, socket, time
h1, h2 = sys.argv[1], sys.argv[2]
ctx = ssl.create_default_context(); ctx.check_hostname = False; ctx.verify_mode = ssl.CERT_NONE
def login(h):
    M = imaplib.IMAP4_SSL(h, 2993, ssl_context=ctx)
    M.login("bob", "bob-pw")
    return M
A = login(h1); B = login(h2)
assert A.select()[1] == [b"2"]
ra = int(A.untagged_responses["RECENT"][0])
assert B.select()[1] == [b"2"]
rb = int(B.untagged_responses["RECENT"][0])
assert (ra, rb) == (2, 0), ("\\Recent must go to exactly one session", ra, rb)
# A change on host 2 reaches host 1 at its next command.
B.store("1", "+FLAGS", "(\\Flagged)")
B.store("2", "+FLAGS", "(\\Deleted)")
B.expunge()
typ, data = A.noop()
assert A.untagged_responses.get("EXPUNGE") == [b"2"], A.untagged_responses
fetched = A.untagged_responses.get("FETCH", [])
assert any(b"\\Flagged" in f for f in fetched), fetched
# IDLE on host 1 sees a delivery made through host 2 within the poll interval.
A.send(b"a1 IDLE\r\n")
assert A.readline().startswith(b"+")
s = socket.create_connection((h2, 2525)); f = s.makefile("rb")
def cmd(c):
    if c: s.sendall(c)
    while True:
        line = f.readline()
        if line[3:4] != b"-": return line
cmd(None); cmd(b"EHLO x\r\n"); cmd(b"MAIL FROM:<x@remote.test>\r\n"); cmd(b"RCPT TO:<bob@example.test>\r\n"); cmd(b"DATA\r\n")
assert cmd(b"Subject: idle\r\n\r\nwake up\r\n.\r\n").startswith(b"250")
start = time.time()
A.sock.settimeout(10)
line = A.readline()
assert line == b"* 2 EXISTS\r\n", line
assert time.time() - start < 5
A.send(b"DONE\r\n")
while not (l := A.readline()).startswith(b"a1 "): pass
assert l.startswith(b"a1 OK"), l
print("ok")
"#;

#[test]
fn two_hosts_see_one_mailbox_and_idle_reports_new_mail() {
    let mut lab = Lab::new(2, "");
    lab.start(0, &[]);
    lab.start(1, &[]);
    deliver(&lab, 0, "bob", &["b1", "b2"]);
    let out = python(
        TWO_SESSIONS,
        &[&lab.ips[0].to_string(), &lab.ips[1].to_string()],
    );
    assert_eq!(out.trim(), "ok");
    assert!(wait_for(Duration::from_secs(1), || lab
        .messages("bob")
        .len()
        == 2));
}

/// Read IMAP lines until one starts with `prefix`; returns all lines read.
fn read_until(raw: &mut Raw, prefix: &str) -> Vec<String> {
    let mut lines = Vec::new();
    loop {
        let (code, text) = raw.reply();
        if code == 0 && text.is_empty() {
            return lines;
        }
        let done = text.starts_with(prefix);
        lines.push(text);
        if done {
            return lines;
        }
    }
}

#[test]
fn limits_bad_input_and_autologout() {
    let mut lab = Lab::new(
        1,
        "\n[limits]\nmax_message_size = 1000\nimap_idle_timeout_secs = 2\n",
    );
    lab.edit_config(
        "allow_plaintext_auth = false",
        "allow_plaintext_auth = true",
    );
    lab.start(0, &[]);
    let (mut raw, _) = Raw::connect(lab.addr(0, IMAP));
    // Garbage and unknown commands: BAD, and the session goes on.
    raw.send(b"a1 FROBNICATE\r\n");
    assert!(read_until(&mut raw, "a1 ")
        .last()
        .unwrap()
        .starts_with("a1 BAD"));
    raw.send(b"\x00\xff garbage\r\n");
    let last = read_until(&mut raw, "* BAD").pop().unwrap();
    assert!(last.starts_with("* BAD"), "{last}");
    raw.send(b"a2 LOGIN alice alice-pw\r\n");
    assert!(read_until(&mut raw, "a2 ")
        .last()
        .unwrap()
        .starts_with("a2 OK"));
    // A literal over the limit is refused before the client sends it.
    raw.send(b"a3 APPEND INBOX {5000}\r\n");
    let last = read_until(&mut raw, "a3 ").pop().unwrap();
    assert!(last.starts_with("a3 BAD [TOOBIG]"), "{last}");
    // A synchronizing literal within the limit gets its continuation.
    raw.send(b"a4 APPEND INBOX {14}\r\n");
    let (_, cont) = raw.reply();
    assert!(cont.starts_with("+ "), "{cont}");
    raw.send(b"Subject: x\r\n\r\n\r\n");
    assert!(read_until(&mut raw, "a4 ")
        .last()
        .unwrap()
        .starts_with("a4 OK [APPENDUID"));
    assert_eq!(lab.messages("alice").len(), 1);
    // A zero-length literal is no message: NO [CANNOT] (no retry can help), nothing stored.
    raw.send(b"a5 APPEND INBOX {0}\r\n");
    let (_, cont) = raw.reply();
    assert!(cont.starts_with("+ "), "{cont}");
    raw.send(b"\r\n");
    let last = read_until(&mut raw, "a5 ").pop().unwrap();
    assert!(last.starts_with("a5 NO [CANNOT]"), "{last}");
    assert_eq!(lab.messages("alice").len(), 1);
    // A line without end: the connection is closed, memory stays bounded.
    raw.send(&vec![b'x'; 200_000]);
    // The server says BYE and closes; with our unread bytes still in its socket buffer the
    // kernel may turn the close into a reset that swallows the BYE, so either is fine.
    let lines = read_until(&mut raw, "* BYE");
    assert!(
        lines.last().is_none_or(|l| l.contains("TOOBIG")),
        "{lines:?}"
    );
    assert!(raw.closed());
    assert_eq!(
        Raw::connect(lab.addr(0, IMAP)).1,
        0,
        "the agent still serves"
    );
    // Idle for longer than the autologout timer.
    let (mut idle, _) = Raw::connect(lab.addr(0, IMAP));
    std::thread::sleep(Duration::from_millis(2500));
    let (_, text) = idle.reply();
    assert!(text.starts_with("* BYE"), "{text}");
}

#[test]
fn starttls_discards_pipelined_plaintext() {
    let mut lab = Lab::new(1, "");
    lab.start(0, &[]);
    let script = r#"
import socket, ssl, sys
s = socket.create_connection((sys.argv[1], 2143)); f = s.makefile("rb")
assert f.readline().startswith(b"* OK")
s.sendall(b"a1 STARTTLS\r\na2 LOGIN alice alice-pw\r\n")
assert f.readline().startswith(b"a1 OK")
ctx = ssl.create_default_context(); ctx.check_hostname = False; ctx.verify_mode = ssl.CERT_NONE
t = ctx.wrap_socket(s, server_hostname="localhost"); tf = t.makefile("rb")
t.sendall(b"a3 NOOP\r\n")
line = tf.readline()
assert line.startswith(b"a3 OK"), line   # no answer to the injected a2 LOGIN
print("ok")
"#;
    assert_eq!(python(script, &[&lab.ips[0].to_string()]).trim(), "ok");
}

/// The line-length guard counts bytes per command, not per connection: a long session
/// of small commands (here 90 KB of pipelined NOOPs) is never cut off.
#[test]
fn many_small_commands_are_not_a_long_line() {
    let mut lab = Lab::new(1, "");
    lab.edit_config(
        "allow_plaintext_auth = false",
        "allow_plaintext_auth = true",
    );
    lab.start(0, &[]);
    let (mut raw, _) = Raw::connect(lab.addr(0, IMAP));
    let mut batch = String::new();
    for i in 0..8000 {
        batch.push_str(&format!("n{i} NOOP\r\n"));
    }
    assert!(batch.len() > 80_000);
    raw.send(batch.as_bytes());
    let lines = read_until(&mut raw, "n7999 ");
    assert_eq!(lines.len(), 8000, "{:?}", lines.last());
    assert!(lines.iter().all(|l| l.contains(" OK ")));
}

/// Python, plain or TLS: LITERAL+ literals over the limit whose bytes are IMAP commands,
/// before and after login, in APPEND and in a command that takes no literal; none of the
/// embedded commands may run. A literal exactly at the limit is accepted.
const REFUSED_LITERALS: &str = r#"
import socket, ssl, sys
host, port, tls, limit = sys.argv[1], int(sys.argv[2]), sys.argv[3] == "tls", int(sys.argv[4])

def connect():
    s = socket.create_connection((host, port), timeout=20)
    if tls:
        ctx = ssl.create_default_context(); ctx.check_hostname = False; ctx.verify_mode = ssl.CERT_NONE
        s = ctx.wrap_socket(s)
    f = s.makefile("rb")
    assert f.readline().startswith(b"* OK")
    return s, f

def until(f, tag):
    lines = []
    while True:
        line = f.readline()
        if not line:
            return lines
        lines.append(line)
        if line.startswith(tag + b" "):
            return lines

def payload(n):
    p = b"Subject: big\r\n\r\nhello\r\nx1 NOOP\r\nx2 CREATE injected\r\nx3 LOGOUT\r\n"
    while len(p) < n:
        p += b"x4 CREATE injected\r\n"
    return p[:n]

def embedded(lines):
    return [l for l in lines if l[:1] == b"x" or b"injected" in l]

s, f = connect()
s.sendall(b"a LOGIN alice alice-pw\r\n")
assert until(f, b"a")[-1].startswith(b"a OK"), "login"

# APPEND with a literal over the limit, then a NOOP: BAD [TOOBIG], then the NOOP's OK.
s.sendall(b"b APPEND INBOX {%d+}\r\n" % (limit * 60) + payload(limit * 60) + b"\r\nc NOOP\r\n")
lines = until(f, b"c")
assert lines[0].startswith(b"b BAD [TOOBIG]"), lines
assert lines[-1].startswith(b"c OK"), lines
assert not embedded(lines), lines
assert len(lines) == 2, lines

# The same in a command that takes no literal.
s.sendall(b"d NOOP {%d+}\r\n" % (limit + 1) + payload(limit + 1) + b"\r\ne NOOP\r\n")
lines = until(f, b"e")
assert lines[0].startswith(b"d BAD [TOOBIG]") and lines[-1].startswith(b"e OK"), lines
assert not embedded(lines) and len(lines) == 2, lines

# Exactly at the limit: accepted and stored.
s.sendall(b"g APPEND INBOX {%d+}\r\n" % limit + payload(limit) + b"\r\n")
lines = until(f, b"g")
assert lines[-1].startswith(b"g OK [APPENDUID"), lines

s.sendall(b'h LIST "" *\r\n')
lines = until(f, b"h")
assert not embedded(lines), lines
s.close()

# Before login: BYE [TOOBIG] and the connection closes; the embedded LOGIN never runs.
s, f = connect()
s.sendall(b"a LOGIN {99999+}\r\n")
try:
    s.sendall(payload(99999) + b" x\r\nb NOOP\r\n")
except OSError:
    pass  # closed while we were still sending
try:
    rest = f.read()
except OSError:
    rest = b""
assert rest == b"" or rest.startswith(b"* BYE [TOOBIG]"), rest
assert b"x1" not in rest and b"x3" not in rest and b"b OK" not in rest, rest

# A synchronizing literal over the limit before login: BAD, no continuation, no close.
s, f = connect()
s.sendall(b"a LOGIN {99999}\r\n")
assert f.readline().startswith(b"a BAD [TOOBIG]")
s.sendall(b"b NOOP\r\n")
assert f.readline().startswith(b"b OK")

s.sendall(b'c LOGIN alice alice-pw\r\nd LIST "" *\r\n')
lines = until(f, b"d")
assert lines[-1].startswith(b"d OK") and not embedded(lines), lines
print("ok")
"#;

#[test]
fn refused_literals_never_run_as_commands() {
    let mut lab = Lab::new(1, "\n[limits]\nmax_message_size = 1000\n");
    lab.edit_config(
        "allow_plaintext_auth = false",
        "allow_plaintext_auth = true",
    );
    lab.start(0, &[]);
    let host = lab.ips[0].to_string();
    for (port, tls) in [(IMAP, "plain"), (IMAPS, "tls")] {
        let out = python(REFUSED_LITERALS, &[&host, &port.to_string(), tls, "1000"]);
        assert_eq!(out.trim(), "ok", "{tls}");
    }
    assert!(
        !lab.spool()
            .folders("alice")
            .unwrap()
            .exists("injected")
            .unwrap(),
        "a command inside a refused literal ran"
    );
    // Two accepted at-the-limit appends, one per run; nothing else.
    assert_eq!(lab.messages("alice").len(), 2);
    let log = lab.log(0);
    assert!(
        log.contains("refused a literal over the limit") && log.contains("size=60000"),
        "{log}"
    );
}

#[test]
fn a_mailbox_full_of_keywords_says_so() {
    // 64 keywords per mailbox: the 65th is NO [LIMIT] (the client's request, not a store
    // failure), and PERMANENTFLAGS stops offering \* once the mailbox is full.
    let mut lab = Lab::new(1, "");
    lab.edit_config(
        "allow_plaintext_auth = false",
        "allow_plaintext_auth = true",
    );
    lab.start(0, &[]);
    deliver(&lab, 0, "alice", &["k1"]);
    let (mut raw, _) = Raw::connect(lab.addr(0, IMAP));
    raw.send(b"a LOGIN alice alice-pw\r\nb SELECT INBOX\r\n");
    let lines = read_until(&mut raw, "b ");
    assert!(
        lines
            .iter()
            .any(|l| l.contains("PERMANENTFLAGS") && l.contains("\\*")),
        "{lines:?}"
    );
    let all: Vec<String> = (1..=64).map(|i| format!("$k{i}")).collect();
    raw.send(format!("c STORE 1 +FLAGS.SILENT ({})\r\n", all.join(" ")).as_bytes());
    let lines = read_until(&mut raw, "c ");
    assert!(lines.last().unwrap().starts_with("c OK"), "{lines:?}");
    let permanent = lines.iter().find(|l| l.contains("PERMANENTFLAGS")).unwrap();
    assert!(
        permanent.contains("$k64") && !permanent.contains("\\*"),
        "{permanent}"
    );
    raw.send(b"d STORE 1 +FLAGS ($k65)\r\n");
    let last = read_until(&mut raw, "d ").pop().unwrap();
    assert!(last.starts_with("d NO [LIMIT]"), "{last}");
    raw.send(b"e FETCH 1 FLAGS\r\n");
    let lines = read_until(&mut raw, "e ");
    assert!(
        lines[0].contains("$k64") && !lines[0].contains("$k65"),
        "{lines:?}"
    );
}
