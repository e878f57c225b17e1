#!/usr/bin/python3
"""The VM suite's mail clients, run on the lab's bridge (vmlab.sh client ...): real
smtplib, imaplib and an SMTP sink, and the counts the suite prints.

  mailcheck.py send LAB TAG USER HOSTS N [--threads T] [--port P] [--size BYTES] > sent.json
      N messages through each of HOSTS (comma list) at once, T connections per host;
      every message carries X-Body-SHA256 of its body, so a partial copy shows.
  mailcheck.py count LAB USER HOST SENT.json [SENT.json ...]
      reads USER's INBOX over IMAP on HOST and prints
      "sent S / acknowledged A / found F / duplicates D / partials P / lost L";
      exit 1 unless every acknowledged message is there once and whole.
  mailcheck.py digest LAB USER HOST
      one line per message (UID, flags, Message-ID): hosts must agree byte for byte.
  mailcheck.py rcpt HOST USER
      the reply code to RCPT TO:<USER@domain> on HOST's MX port.
  mailcheck.py sink ADDR:PORT OUT [--stall IP [--while FILE]]
      an SMTP server that appends each received Message-ID to OUT; connections from
      --stall IP get no answer after DATA's final dot (a relay stuck mid-delivery), as
      long as FILE exists if --while is given.
  mailcheck.py estale LAB USER READER WRITER ROUNDS
      a session on READER keeps the mailbox selected while WRITER expunges half of it
      (the mbox is rewritten and renamed under the reader); after each round the reader
      must see exactly the survivors, each whole.
"""
import hashlib, imaplib, json, os, re, smtplib, socket, socketserver, sys, threading, time

DOMAIN = "example.test"


def lab(path):
    with open(path) as f:
        info = json.load(f)
    return info


def password(info, user):
    return next(u["password"] for u in info["users"] if u["login"] == user)


def message(mid, size=2000):
    body = "".join(f"{mid} line {i:04d} " + "x" * 40 + "\r\n" for i in range(size // 60 + 1))
    digest = hashlib.sha256(body.replace("\r\n", "\n").encode()).hexdigest()
    return (f"From: vmlab <vmlab@remote.test>\r\nMessage-ID: <{mid}>\r\nSubject: {mid}\r\n"
            f"X-Body-SHA256: {digest}\r\n\r\n{body}").encode()


def whole(raw):
    """Whether a stored message's body matches the digest its header carries."""
    head, _, body = raw.replace(b"\r\n", b"\n").partition(b"\n\n")
    m = re.search(rb"X-Body-SHA256: ([0-9a-f]+)", head)
    return m is not None and hashlib.sha256(body).hexdigest().encode() == m.group(1)


def send(args):
    info, tag, user, hosts, n = lab(args[0]), args[1], args[2], args[3].split(","), int(args[4])
    threads = int(args[args.index("--threads") + 1]) if "--threads" in args else 2
    port = int(args[args.index("--port") + 1]) if "--port" in args else info["hosts"][0]["ports"]["smtp"]
    size = int(args[args.index("--size") + 1]) if "--size" in args else 2000
    acked, refused, lock = [], [], threading.Lock()

    def worker(host, t):
        s = None
        for i in range(t, n, threads):
            mid = f"{tag}.{host}.{i}@vmlab"
            try:
                if s is None:
                    s = smtplib.SMTP(host, port, timeout=300)
                s.sendmail("vmlab@remote.test", [f"{user}@{DOMAIN}"], message(mid, size))
                with lock:
                    acked.append(mid)
            except (smtplib.SMTPException, OSError) as e:
                with lock:
                    refused.append(f"{mid}: {e}")
                s = None
        if s is not None:
            try:
                s.quit()
            except (smtplib.SMTPException, OSError):
                pass

    t0 = time.time()
    ws = [threading.Thread(target=worker, args=(h, t)) for h in hosts for t in range(threads)]
    for w in ws:
        w.start()
    for w in ws:
        w.join()
    json.dump({"tag": tag, "sent": n * len(hosts), "acked": acked, "refused": refused,
               "secs": round(time.time() - t0, 2)}, sys.stdout)


def imap(info, user, host):
    M = imaplib.IMAP4(host, info["hosts"][0]["ports"]["imap"], timeout=300)
    M.login(user, password(info, user))
    typ, _ = M.select("INBOX")
    assert typ == "OK"
    return M


def fetch_all(M, what):
    """[(uid, flags, header-or-body bytes)] for every message."""
    typ, data = M.uid("FETCH", "1:*", f"(UID FLAGS {what})")
    assert typ == "OK", data
    out = []
    for d in data:
        if isinstance(d, tuple):
            uid = int(re.search(rb"UID (\d+)", d[0]).group(1))
            flags = re.search(rb"FLAGS \(([^)]*)\)", d[0])
            flags = b" ".join(sorted(f for f in (flags.group(1).split() if flags else []) if f != b"\\Recent"))
            out.append((uid, flags.decode(), d[1]))
    return out


def mid_of(raw):
    m = re.search(rb"Message-ID: <([^>]*)>", raw, re.I)
    return m.group(1).decode() if m else None


def count(args):
    info, user, host = lab(args[0]), args[1], args[2]
    sent, acked, tags = 0, set(), []
    for p in args[3:]:
        with open(p) as f:
            s = json.load(f)
        sent += s["sent"]
        acked |= set(s["acked"])
        tags.append(s["tag"] + ".")
    M = imap(info, user, host)
    seen, dups, partials = {}, 0, 0
    typ, data = M.select("INBOX")
    if int(data[0]) > 0:
        for uid, _, raw in fetch_all(M, "BODY.PEEK[]"):
            mid = mid_of(raw)
            if not (mid or "").startswith(tuple(tags)):
                continue                      # another scenario's mail
            if mid in seen:
                dups += 1
            seen[mid] = seen.get(mid, 0) + 1
            if not whole(raw):
                partials += 1
    M.logout()
    found = len(acked & set(seen))
    lost = len(acked - set(seen))
    extra = len(set(seen) - acked)
    print(f"sent {sent} / acknowledged {len(acked)} / found {found} / duplicates {dups} / "
          f"partials {partials} / lost {lost}" + (f" / stored but refused {extra}" if extra else ""))
    sys.exit(0 if lost == 0 and dups == 0 and partials == 0 else 1)


def digest(args):
    info, user, host = lab(args[0]), args[1], args[2]
    M = imap(info, user, host)
    typ, data = M.select("INBOX")
    lines = []
    if int(data[0]) > 0:
        for uid, flags, raw in fetch_all(M, "BODY.PEEK[HEADER.FIELDS (MESSAGE-ID)]"):
            lines.append(f"{uid} ({flags}) {mid_of(raw)}")
    M.logout()
    print("\n".join(lines))


def rcpt(args):
    host, user = args[0], args[1]
    try:
        s = smtplib.SMTP(host, 2525, timeout=30)
        s.ehlo("vmlab.test")
        s.mail("vmlab@remote.test")
        code, text = s.rcpt(f"{user}@{DOMAIN}")
        s.close()
        print(code, text.decode(errors="replace"))
    except (smtplib.SMTPException, OSError) as e:
        print("000", e)


def sink(args):
    host, port = args[0].rsplit(":", 1)
    out = args[1]
    stall = args[args.index("--stall") + 1] if "--stall" in args else None
    stall_while = args[args.index("--while") + 1] if "--while" in args else None
    lock = threading.Lock()

    class Handler(socketserver.StreamRequestHandler):
        def handle(self):
            peer = self.client_address[0]
            w = lambda s: self.wfile.write(s.encode() + b"\r\n")
            w("220 sink.remote.test ESMTP")
            data = None
            while True:
                line = self.rfile.readline()
                if not line:
                    return
                if data is not None:
                    if line.rstrip(b"\r\n") == b".":
                        if peer == stall and (stall_while is None or os.path.exists(stall_while)):
                            with lock, open(out + ".stalled", "a") as f:
                                f.write(f"{mid_of(b''.join(data))}\n")
                            while self.rfile.readline():
                                pass          # hold the transaction open, never answer
                            return
                        with lock, open(out, "a") as f:
                            f.write(f"{mid_of(b''.join(data))}\n")
                        data = None
                        w("250 2.0.0 ok")
                    else:
                        data.append(line)
                    continue
                cmd = line[:4].upper()
                if cmd in (b"EHLO", b"HELO"):
                    w("250 sink.remote.test")
                elif cmd == b"DATA":
                    data = []
                    w("354 go ahead")
                elif cmd == b"QUIT":
                    w("221 bye")
                    return
                else:
                    w("250 ok")

    class Server(socketserver.ThreadingTCPServer):
        allow_reuse_address = True
        daemon_threads = True

    Server((host, int(port)), Handler).serve_forever()


def estale(args):
    info, user, reader, writer, rounds = lab(args[0]), args[1], args[2], args[3], int(args[4])
    R = imap(info, user, reader)
    W = imap(info, user, writer)
    checked = 0
    for r in range(rounds):
        for i in range(6):
            typ, _ = W.append("INBOX", None, None, message(f"estale.{r}.{i}@vmlab", 1500))
            assert typ == "OK"
        R.noop()
        before = {mid_of(raw): uid for uid, _, raw in fetch_all(R, "BODY.PEEK[HEADER.FIELDS (MESSAGE-ID)]")}
        # The writer expunges every other message: the mbox is rewritten beside and
        # renamed over the file the reader's host has open.
        doomed = sorted(before.values())[::2]
        W.noop()
        W.uid("STORE", ",".join(map(str, doomed)), "+FLAGS.SILENT", "(\\Deleted)")
        typ, _ = W.expunge()
        assert typ == "OK"
        typ, _ = R.noop()
        assert typ == "OK"
        after = fetch_all(R, "BODY.PEEK[]")
        uids = sorted(u for u, _, _ in after)
        want = sorted(set(before.values()) - set(doomed))
        assert uids == want, ("reader sees", uids, "want", want)
        bad = [u for u, _, raw in after if (mid_of(raw) or "").startswith("estale.") and not whole(raw)]
        assert not bad, ("partial or stale bodies", bad)
        checked += len(after)
    R.logout(); W.logout()
    print(f"ok rounds {rounds} messages checked {checked}")


if __name__ == "__main__":
    {"send": send, "count": count, "digest": digest, "rcpt": rcpt, "sink": sink,
     "estale": estale}[sys.argv[1]](sys.argv[2:])
