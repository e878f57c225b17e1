# The imaptest "checkpoint" idea across hosts (see agent/tests/imap_consistency.rs, and the
# VM suite, which runs it on real NFS): four IMAP sessions on two hosts do random APPEND,
# STORE, EXPUNGE and COPY on one mailbox while SMTP delivers through both; at every
# checkpoint all sessions must agree on count, UIDs and flags; at the end exactly the
# delivered or appended and not expunged messages are there, once each. Like imaptest's
# state tracker, every line each session receives is checked as it arrives: a keyword is
# used only after a FLAGS response listed it (RFC 3501 §7.2.6), EXISTS never shrinks the
# mailbox, EXPUNGE and FETCH name messages that exist, and a FETCH's UID is the one that
# sequence number had (so no FETCH for a message already expunged).
# Usage: imap_checkpoint.py HOST1 HOST2 SEED USER PASSWORD IMAP_PORT SMTP_PORT [ROUNDS]
import imaplib, random, re, smtplib, sys, threading, time
hosts = sys.argv[1:3]
random.seed(int(sys.argv[3]))
user, password = sys.argv[4], sys.argv[5]
imap_port, smtp_port = int(sys.argv[6]), int(sys.argv[7])
rounds = int(sys.argv[8]) if len(sys.argv) > 8 else 60
imaplib.Commands.setdefault("MOVE", ("SELECTED",))

class Tracked(imaplib.IMAP4):
    """An imaplib session that checks every untagged response against what it was told."""
    def __init__(self, host, port, name):
        self.name, self.keywords, self.uids, self.violations = name, None, [], []
        super().__init__(host, port)

    def bad(self, why, line):
        self.violations.append(f"{self.name}: {why}: {line!r}")

    def _get_line(self):
        line = super()._get_line()
        self.observe(line)
        return line

    def observe(self, line):
        m = re.match(rb"\* FLAGS \(([^)]*)\)", line)
        if m:
            self.keywords = {f.lower() for f in m.group(1).split() if not f.startswith(b"\\")}
            return
        m = re.match(rb"\* (\d+) (EXISTS|EXPUNGE|FETCH)\b", line)
        if not m:
            return
        n, what = int(m.group(1)), m.group(2)
        if what == b"EXISTS":
            if n < len(self.uids):
                self.bad(f"EXISTS {n} below {len(self.uids)} without EXPUNGE", line)
            self.uids += [None] * (n - len(self.uids))
        elif not 1 <= n <= len(self.uids):
            self.bad(f"{what.decode()} of message {n} of {len(self.uids)}", line)
        elif what == b"EXPUNGE":
            del self.uids[n - 1]
        else:
            uid = re.search(rb"\bUID (\d+)", line)
            if uid:
                uid = int(uid.group(1))
                if self.uids[n - 1] not in (None, uid):
                    self.bad(f"message {n} was UID {self.uids[n - 1]}", line)
                self.uids[n - 1] = uid
            flags = re.search(rb"\bFLAGS \(([^)]*)\)", line)
            for f in flags.group(1).split() if flags else []:
                if not f.startswith(b"\\") and (self.keywords is None or f.lower() not in self.keywords):
                    self.bad(f"keyword {f.decode()} used before a FLAGS response listed it", line)

def tracked_ok(S):
    assert not S.violations, S.violations[:5]

sessions = []
for i in range(4):
    M = Tracked(hosts[i % 2], imap_port, f"session {i + 1} on host{i % 2 + 1}")
    M.login(user, password)
    assert M.select("INBOX")[0] == "OK"
    sessions.append(M)
assert sessions[0].create("Other")[0] == "OK"

expected = set()      # Message-IDs that must be in INBOX at the end
removed = set()       # deliberately expunged
copies = 0
lock = threading.Lock()
pause = threading.Event(); pause.set()
stop = threading.Event()

def deliverer():
    n = 0
    while not stop.is_set():
        pause.wait()
        mid = f"smtp{n}@test"
        s = smtplib.SMTP(hosts[n % 2], smtp_port)
        s.sendmail("x@remote.test", [f"{user}@example.test"], f"Message-ID: <{mid}>\r\nSubject: {mid}\r\n\r\nvia smtp\r\n".encode())
        s.quit()
        with lock:
            expected.add(mid)
        n += 1
        time.sleep(0.02)
t = threading.Thread(target=deliverer, daemon=True); t.start()

def uids_flags(M):
    typ, data = M.uid("FETCH", "1:*", "(FLAGS)")
    assert typ == "OK", data
    out = {}
    for d in data:
        if d is None: continue
        d = d if isinstance(d, bytes) else d[0]
        m = re.search(rb"UID (\d+)", d)
        if m is None: continue   # an earlier unsolicited FLAGS update, not our answer
        uid = int(m.group(1))
        flags = sorted(f for f in re.search(rb"FLAGS \(([^)]*)\)", d).group(1).split() if f != b"\\Recent")
        out[uid] = flags
    return out

def mids(M, uids):
    if not uids: return {}
    typ, data = M.uid("FETCH", ",".join(map(str, uids)), "(BODY.PEEK[HEADER.FIELDS (MESSAGE-ID)])")
    out = {}
    for d in data:
        if isinstance(d, tuple) and re.search(rb"UID (\d+)", d[0]):
            uid = int(re.search(rb"UID (\d+)", d[0]).group(1))
            out[uid] = re.search(rb"<([^>]*)>", d[1]).group(1).decode()
    return out

for round in range(rounds):
    M = random.choice(sessions)
    op = random.random()
    typ, data = M.search(None, "ALL")
    seqs = data[0].split() if data[0] else []
    if op < 0.3:
        mid = f"app{round}@test"
        typ, _ = M.append("INBOX", None, None, f"Message-ID: <{mid}>\r\nSubject: {mid}\r\n\r\nappended\r\n".encode())
        assert typ == "OK"
        expected.add(mid)
    elif op < 0.6 and seqs:
        # Keywords new to the mailbox now and then: every session must be told first.
        M.store(random.choice(seqs), random.choice(["+FLAGS", "-FLAGS"]), random.choice(["(\\Seen)", "(\\Flagged)", "($Label1)", f"($Label{round % 9})", f"(\\Seen $Kw{round})", "(\\Answered \\Draft)"]))
    elif op < 0.8 and seqs:
        seq = random.choice(seqs)
        typ, data = M.fetch(seq, "(UID BODY.PEEK[HEADER.FIELDS (MESSAGE-ID)])")
        if typ == "OK" and isinstance(data[0], tuple):
            mid = re.search(rb"<([^>]*)>", data[0][1]).group(1).decode()
            M.store(seq, "+FLAGS", "(\\Deleted)")
            typ, _ = M.expunge()
            assert typ == "OK"
            removed.add(mid)
    elif seqs:
        typ, data = M.copy(random.choice(seqs), "Other")
        assert typ == "OK", data
        copies += 1
    if round % 10 == 9:
        # Checkpoint: quiesce SMTP, everyone catches up, everyone agrees.
        pause.clear(); time.sleep(0.2)
        views = []
        for S in sessions:
            assert S.noop()[0] == "OK"
            typ, data = S.search(None, "ALL")
            count = len(data[0].split()) if data[0] else 0
            uf = uids_flags(S)
            assert count == len(uf), (count, len(uf))
            views.append(uf)
        for v in views[1:]:
            assert v == views[0], ("sessions disagree", round, views[0], v)
        for S in sessions:
            tracked_ok(S)
        pause.set()

stop.set(); t.join()
time.sleep(0.2)
for S in sessions: S.noop()
final = uids_flags(sessions[0])
got = mids(sessions[0], sorted(final))
values = list(got.values())
assert len(values) == len(set(values)), "duplicated messages"
want = expected - removed
assert set(values) == want, ("lost or unexpected", want - set(values), set(values) - want)
typ, data = sessions[1].status("Other", "(MESSAGES)")
assert f"MESSAGES {copies}".encode() in data[0], (data, copies)
for S in sessions:
    tracked_ok(S)
    S.logout()
print("ok", len(values), copies)
