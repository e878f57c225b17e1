#!/bin/bash
# The NFS suite: runs on the VM lab (vmlab.sh up first, or SUITE_UP=1 to bring it up and
# down around the run) and prints, per scenario, the counts it checked. Exit 1 on any
# failed check.
#
# Scenarios:
#   multihost   writers on host1, host2 and store into one mailbox at once (over NFS
#               and, on store, on the exported filesystem itself), a reader verifying
#               every message and an expunger removing junk meanwhile; afterwards every
#               message exactly once, intact, and the same UIDs/flags on every host
#   throughput  appends from host1 and host2 at once: messages/s over NFS
#   handoff     host1 holds a mailbox's locks, host2 waits: time from release to host2's
#               append completing
#   killlease   host1 is killed (qemu SIGKILL) while holding the locks: time until host2
#               can append with a 2 s dotlock stale time (the NFSv4 lease decides)
#   killstale   the same with a 15 s stale time (the dotlock decides)
#   serverrestart  the NFS server VM is killed and restarted while two hosts append
#   diskfull    the export fills up: temporary failure, intact mailbox, then recovery
# With the mail services running (hamail-agent on host1, host2 and store as host3,
# dnsctl on store; clients on the lab's bridge):
#   smtp        SMTP deliveries through all three hosts at once; counted over IMAP
#   smtpfull    the export full: RCPT gets 452 4.3.1 on host1 and host2; nearly full
#               (3 MB free, 1 MB messages from both): every refusal is 452 4.3.1, at
#               RCPT or after DATA; the mailbox stays whole; freed, mail flows again
#   checkpoint  four IMAP sessions on host1 and host2 change one mailbox while SMTP
#               delivers; at every checkpoint all sessions agree (imap_checkpoint.py)
#   estale      a session on host2 keeps the mailbox selected while host1 expunges
#               (the mbox is renamed under it): host2 sees exactly the survivors, whole
#   takeover    host1 dies in the middle of relaying its queue: another host finishes
#               the entries once host1's claim is stale, each delivered once
#   partition   host1 loses the NFS server: /healthz fails, dnsctl moves MX and mail.
#               away, host1 answers RCPT with 451; after healing it serves again
set -uo pipefail
F=$(cd "$(dirname "$0")" && pwd)
V="$F/vmlab.sh"
N=${SUITE_COUNT:-40}          # messages per writer process
FAILED=0
ctl() { "$V" ctl "$@"; }
S="hamail-spool --spool /srv/mail"
client() { "$V" client "$@"; }
VD=${VMLAB_DIR:-$F/../../target/vmlab}
LAB=$VD/run/etc/lab.json      # written by vmlab.sh services: users, passwords, ports
MC="python3 $F/mailcheck.py"
W=$(mktemp -d /tmp/vmlab-suite.XXXXXX)
RUN=$(date +%s)               # in Message-IDs: a rerun on the same spool counts only its own
check() {  # NAME CONDITION-TEXT RESULT(0/1)
  if [ "$3" = 0 ]; then echo "  ok    $1: $2"; else echo "  FAIL  $1: $2"; FAILED=1; fi
}
now() { date +%s.%N; }
# A VM that does not come back leaves no lab to test on: stop here, loudly, rather than
# wait out every later scenario's timeouts.
abort() { echo "  FAIL  $1"; echo "vmlab NFS suite: FAILED (stopped: $1)"; exit 1; }
boot() { "$V" start "$1" >/dev/null || abort "$1 did not boot again"; }
secs() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", b - a }'; }

[ "${SUITE_UP:-0}" = 1 ] && { "$V" up || exit 1; trap '"$V" down' EXIT; }

echo "vmlab NFS suite: $(ctl host1 "grep ' /srv/mail ' /proc/mounts | awk '{print \$3, \$4}' | cut -c1-80")"

spool_counts() {  # NAME USER SENT ACKED: count on the store's own filesystem
  local c rc _f found _d dups _p parts; c=$(ctl store "$S verify --user $2 --counts"); rc=$?
  read -r _f found _d dups _p parts <<<"$c"
  echo "  sent $3 / acknowledged $4 / found $found / duplicates $dups / partials $parts"
  check $1 "every acknowledged message found once and whole, nothing else" "$([ $rc = 0 ] && [ "$found" = "$4" ]; echo $?)"
}
acked_lines() {  # FILE-GLOB on host1 host2 store: acknowledged appends (one line each)
  local n=0 h; for h in host1 host2 store; do n=$((n + $(ctl $h "cat $1 2>/dev/null | wc -l"))); done; echo $n
}

multihost() {
  echo "== multihost: 3 hosts x 2 writers x $N messages into one mailbox, reader + expunger"
  ctl store "rm -rf /srv/mail/*"
  # Reader (host1): verify every pass; expunger (host2): junk in, flagged, expunged.
  ctl host1 "cat > /tmp/reader.sh <<'X'
p=0; rm -f /tmp/reader.bad
while :; do
  # Before the first delivery the mailbox does not exist yet; that is not a problem.
  $S verify --user alice >/tmp/verify.out 2>&1 || grep -v 'no such mailbox' /tmp/verify.out >> /tmp/reader.bad
  p=\$((p+1)); echo \$p > /tmp/reader.passes
done
X
nohup sh /tmp/reader.sh >/dev/null 2>&1 &"
  ctl host2 "cat > /tmp/expunger.sh <<'X'
r=0
while :; do
  printf 'Subject: junk\\n\\nx\\n' | $S append --user alice --flags '\\Deleted' >/dev/null && $S expunge --user alice >/dev/null
  r=\$((r+1)); echo \$r > /tmp/expunger.rounds
done
X
nohup sh /tmp/expunger.sh >/dev/null 2>&1 &"
  local t0; t0=$(now)
  for h in host1 host2 store; do
    ctl $h "for w in 1 2; do nohup $S append-gen --user alice --writer $h-\$w --count $N --size 2000 > /tmp/gen-\$w.out 2>&1 & done; wait" &
  done
  wait
  local t1; t1=$(now)
  # Stop them between operations' ends: a killed verify holds only a read lock, a killed
  # expunger leaves at most a junk message, which the storage layer recovers anyway.
  ctl host1 "pkill -f /tmp/reader.sh; pkill -f 'hamail-spool.*verify'; true"
  ctl host2 "pkill -f /tmp/expunger.sh; sleep 1; pkill -f 'hamail-spool.*(append|expunge)'; true"
  local want=$((3 * 2 * N))
  local got; got=$(ctl store "$S verify --user alice")
  local bad; bad=$(ctl host1 "cat /tmp/reader.bad 2>/dev/null | head -5")
  local passes rounds; passes=$(ctl host1 "cat /tmp/reader.passes"); rounds=$(ctl host2 "cat /tmp/expunger.rounds")
  echo "  sent $want, verify says '$got', reader passes $passes, expunge rounds $rounds, $(secs $t0 $t1) s"
  spool_counts multihost alice $want "$(acked_lines '/tmp/gen-*.out')"
  check multihost "every acknowledged message present once, intact (verify: ok $want)" "$([ "$got" = "ok $want" ]; echo $?)"
  check multihost "the reader never saw a bad or duplicate message" "$([ -z "$bad" ]; echo $?)"
  check multihost "reader and expunger ran meanwhile" "$([ "${passes:-0}" -gt 0 ] && [ "${rounds:-0}" -gt 0 ]; echo $?)"
  local l1 l2 l3
  l1=$(ctl host1 "$S list --user alice | md5sum"); l2=$(ctl host2 "$S list --user alice | md5sum"); l3=$(ctl store "$S list --user alice | md5sum")
  check multihost "UIDs, flags and sizes agree on host1, host2 and store" "$([ "$l1" = "$l2" ] && [ "$l2" = "$l3" ]; echo $?)"
  [ -n "$bad" ] && echo "  reader saw: $bad"
}

throughput() {
  echo "== throughput: host1 and host2 append at once (4 KB, $((2 * N)) each)"
  ctl store "rm -rf /srv/mail/*"
  local t0 t1
  t0=$(now)
  ctl host1 "$S append-gen --user bob --writer t1 --count $((2 * N)) --size 4000 >/tmp/tp.out" &
  ctl host2 "$S append-gen --user bob --writer t2 --count $((2 * N)) --size 4000 >/tmp/tp.out" &
  wait
  t1=$(now)
  local got; got=$(ctl store "$S verify --user bob")
  local rate; rate=$(awk -v n=$((4 * N)) -v a="$t0" -v b="$t1" 'BEGIN { printf "%.1f", n / (b - a) }')
  echo "  $((4 * N)) messages in $(secs $t0 $t1) s = $rate msg/s over NFS from two hosts (TCG guests, cache=unsafe disks)"
  local acked; acked=$(acked_lines /tmp/tp.out)
  spool_counts throughput bob $((4 * N)) $acked
  check throughput "every append acknowledged (no fault here: a temporary failure is a bug)" "$([ "$acked" = $((4 * N)) ]; echo $?)"
}

handoff() {
  echo "== handoff: host1 holds alice's locks for 6 s, host2 appends meanwhile"
  # Both ends are stamped by the NFS server's clock: `touch` on NFS sets the server's time.
  ctl store "rm -f /srv/mail/handoff.*"
  ctl host1 "nohup sh -c '$S hold-lock --user alice --seconds 6 | while read l; do echo \$l > /tmp/hold.state; [ \$l = released ] && touch /srv/mail/handoff.released; done' >/dev/null 2>&1 &"
  ctl host1 "for i in \$(seq 100); do grep -q locked /tmp/hold.state 2>/dev/null && break; sleep 0.1; done"
  # Start and end on host2's own clock: how long host2 waited.
  local out; out=$(ctl host2 "s=\$(date +%s.%N); printf 'Subject: h\\n\\nx\\n' | $S append --user alice >/dev/null && touch /srv/mail/handoff.appended && echo \$s \$(date +%s.%N)")
  local waited; waited=$(secs ${out% *} ${out#* })
  local st; st=$(ctl store "for i in \$(seq 100); do [ -f /srv/mail/handoff.released ] && break; sleep 0.1; done; stat -c %.9Y /srv/mail/handoff.released /srv/mail/handoff.appended | tr '\n' ' '")
  read -r rel app <<<"$st"
  echo "  host2 waited $waited s; lock handoff host1 -> host2 (release to host2's append done, server clock): $(secs "$rel" "$app") s"
  check handoff "host2 waited for host1's lock (at least 2 s of the 6 s hold)" "$(awk -v w="$waited" 'BEGIN { exit !(w >= 2) }'; echo $?)"
}

killlock() {  # STALE: dotlock stale time for the waiter
  local stale=$1
  echo "== killlock: host1 killed (qemu SIGKILL) while holding alice's locks; dotlock stale after $stale s"
  ctl host1 "nohup $S hold-lock --user alice --seconds 600 > /tmp/hold2.out 2>&1 &"
  ctl host1 "for i in \$(seq 100); do grep -q locked /tmp/hold2.out && break; sleep 0.1; done"
  "$V" kill host1
  # NFSv3 has no lease: the server keeps a dead client's NLM lock until that client
  # reboots and its statd sends SM_NOTIFY. So on v3 host1 comes back at once, as a
  # rebooted host would; on v4 it stays down until the lease expires.
  local v3="" bootpid; [ "${NFSVERS:-4.2}" = 3 ] && { v3=1; boot host1 & bootpid=$!; }
  local out; out=$(CTL_TIMEOUT=300 ctl host2 "s=\$(date +%s.%N); printf 'Subject: k\\n\\nx\\n' | $S --timeout 120 --stale-after $stale append --user alice >/dev/null && e=\$(date +%s.%N) && awk -v a=\$s -v b=\$e 'BEGIN { printf \"%.2f\", b - a }'")
  if [ -n "$v3" ]; then
    wait $bootpid || exit 1
    echo "  host2 had the mailbox $out s after host1 died (NFSv3: host1 rebooted, SM_NOTIFY freed its NLM lock; dotlock stale $stale s)"
  else
    echo "  host2 had the mailbox $out s after host1 died (NFSv4 lease ${LEASE:-10} s; dotlock stale $stale s)"
  fi
  check killlock "host2 got the mailbox after host1 died holding it" "$([ -n "$out" ]; echo $?)"
  local l2 l3; l2=$(ctl host2 "$S list --user alice | md5sum"); l3=$(ctl store "$S list --user alice | md5sum")
  check killlock "mailbox reads the same on host2 and store afterwards" "$([ "$l2" = "$l3" ] && [ -n "$l2" ]; echo $?)"
  [ -n "$v3" ] || boot host1
}
serverrestart() {
  echo "== serverrestart: the NFS server is killed and restarted while host1 and host2 append"
  ctl store "rm -rf /srv/mail/*"
  for h in host1 host2; do
    ctl $h "rm -f /tmp/sr.*; nohup sh -c '$S --timeout 300 append-gen --user carol --writer sr-$h --count $N --size 2000 > /tmp/sr.out 2>&1; echo \$? > /tmp/sr.rc' >/dev/null 2>&1 &"
  done
  ctl host1 "for i in \$(seq 600); do [ -s /srv/mail/mail/carol ] && break; sleep 0.1; done"
  "$V" kill store
  sleep 3
  boot store
  local t0; t0=$(now)
  for h in host1 host2; do
    CTL_TIMEOUT=600 ctl $h "for i in \$(seq 3000); do [ -f /tmp/sr.rc ] && break; sleep 0.2; done; cat /tmp/sr.rc" > /tmp/vmlab-sr-$h.rc
  done
  local rc1 rc2; rc1=$(cat /tmp/vmlab-sr-host1.rc); rc2=$(cat /tmp/vmlab-sr-host2.rc)
  local got; got=$(ctl store "$S verify --user carol")
  echo "  writers exited $rc1 and $rc2 ($(secs $t0 "$(now)") s after the server came back); verify: '$got' of $((2 * N))"
  check serverrestart "both writers finished (hard mount: they stalled, then went on)" "$([ "$rc1" = 0 ] && [ "$rc2" = 0 ]; echo $?)"
  check serverrestart "every acknowledged message present once and intact" "$([ "$got" = "ok $((2 * N))" ]; echo $?)"
  spool_counts serverrestart carol $((2 * N)) "$(acked_lines /tmp/sr.out)"
}

diskfull() {
  echo "== diskfull: the export's filesystem fills up during appends"
  ctl store "rm -rf /srv/mail/* /srv/filler; $S append-gen --user dave --writer before --count 5 --size 2000 >/dev/null"
  # Fill the export completely (as root, so ext4's reserved blocks too: the clients
  # write as root with no_root_squash), then free 3 MB: less than the 5 MB about to come.
  ctl store "dd if=/dev/zero of=/srv/filler bs=1M >/dev/null 2>&1; truncate -s -3M /srv/filler; sync; df -k /srv/mail | tail -1"
  local rc; rc=$(ctl host1 "$S append-gen --user dave --writer full --count 100 --size 50000 >/tmp/full.out 2>&1; echo \$?")
  local err; err=$(ctl host1 "tail -1 /tmp/full.out")
  local acked; acked=$(ctl host1 "grep -c '^full ' /tmp/full.out")
  local mid; mid=$(ctl store "$S verify --user dave")
  ctl store "rm -f /srv/filler"
  local after; after=$(ctl host1 "printf 'Subject: after\\n\\nx\\n' | $S append --user dave >/dev/null; echo \$?")
  local end; end=$(ctl store "$S verify --user dave")
  echo "  append-gen on a full export exited $rc after $acked acknowledged ('$err'); verify while full: '$mid'; after freeing: append $after, verify '$end'"
  check diskfull "a full export is a temporary failure (exit 75), not a crash" "$([ "$rc" = 75 ]; echo $?)"
  check diskfull "exactly the 5 + $acked acknowledged messages, intact, while full ($mid)" "$([ "$mid" = "ok $((5 + acked))" ]; echo $?)"
  check diskfull "delivery resumes once space is freed" "$([ "$after" = 0 ] && [ "$end" = "ok $((5 + acked))" ]; echo $?)"
  spool_counts diskfull dave $((5 + 100)) $((5 + acked))
}

services_up() {
  [ -f "$W/services" ] && return 0
  ctl store "rm -rf /srv/mail/*"    # the storage scenarios' mailboxes are not the clients'
  SERVICES_EXTRA=$'[relay]\nsmarthost = "10.0.0.254:2526"\nscan_interval_secs = 2' "$V" services || { check services "agents and dnsctl started in the VMs" 1; return 1; }
  touch "$W/services"
}
H3="10.0.0.11,10.0.0.12,10.0.0.13"
digests_agree() {  # USER: UIDs, flags and Message-IDs read the same over IMAP on every host
  local d1 d2 d3
  d1=$(client "$MC digest $LAB $1 10.0.0.11 | md5sum"); d2=$(client "$MC digest $LAB $1 10.0.0.12 | md5sum")
  d3=$(client "$MC digest $LAB $1 10.0.0.13 | md5sum")
  [ -n "$d1" ] && [ "$d1" = "$d2" ] && [ "$d2" = "$d3" ]
}
counted() {  # NAME HOST USER SENT.json...: print the counts line, check it
  local name=$1 host=$2 user=$3; shift 3
  local c rc; c=$(client "$MC count $LAB $user $host $*"); rc=$?
  echo "  $c"
  check $name "no acknowledged message lost, none duplicated, none partial (read on $host)" $rc
}

smtp() {
  services_up || return
  echo "== smtp: $N messages through each of host1, host2 and host3 at once (2 connections each)"
  client "$MC send $LAB smtp-$RUN alice $H3 $N" > $W/smtp.json
  echo "  $(python3 -c "import json; s=json.load(open('$W/smtp.json')); print(len(s['acked']), 'acknowledged of', s['sent'], 'in', s['secs'], 's; refused:', s['refused'][:3])")"
  check smtp "every message acknowledged" "$(python3 -c "import json; s=json.load(open('$W/smtp.json')); exit(len(s['acked']) != s['sent'])"; echo $?)"
  counted smtp 10.0.0.12 alice $W/smtp.json
  check smtp "UIDs, flags and Message-IDs agree on host1, host2 and host3" "$(digests_agree alice; echo $?)"
}

checkpoint() {
  services_up || return
  echo "== checkpoint: 4 IMAP sessions on host1 + host2, random APPEND/STORE/EXPUNGE/COPY, SMTP meanwhile"
  local pw; pw=$(python3 -c "import json; print(next(u['password'] for u in json.load(open('$LAB'))['users'] if u['login'] == 'bob'))")
  local out; out=$(client "python3 $F/../../agent/tests/support/imap_checkpoint.py 10.0.0.11 10.0.0.12 $RANDOM bob $pw 2143 2525" 2>&1 | tail -3)
  echo "  $out"
  check checkpoint "all sessions agreed at every checkpoint; exactly the expected messages, once ('ok KEPT COPIES')" "$([[ "$out" == ok* ]]; echo $?)"
  check checkpoint "UIDs, flags and Message-IDs agree on host1, host2 and host3" "$(digests_agree bob; echo $?)"
}

estale() {
  services_up || return
  echo "== estale: host2's session keeps INBOX selected while host1 expunges (mbox renamed under it)"
  local out; out=$(client "$MC estale $LAB alice 10.0.0.12 10.0.0.11 5" 2>&1 | tail -3)
  echo "  $out"
  check estale "host2 saw exactly the survivors after each expunge, every body whole" "$([[ "$out" == ok* ]]; echo $?)"
  check estale "UIDs, flags and Message-IDs agree on host1, host2 and host3" "$(digests_agree alice; echo $?)"
}

takeover() {
  services_up || return
  local k=6
  echo "== takeover: host1 dies while relaying its queue ($k messages); the others finish it"
  rm -f $W/sink.out $W/sink.out.stalled; touch $W/stall
  client "nohup $MC sink 10.0.0.254:2526 $W/sink.out --stall 10.0.0.11 --while $W/stall >$W/sink.log 2>&1 & echo \$! > $W/sink.pid"
  local pw; pw=$(python3 -c "import json; print(next(u['password'] for u in json.load(open('$LAB'))['users'] if u['login'] == 'alice'))")
  client "python3 - <<'X'
import smtplib, json
acked = []
for i in range($k):
    mid = 'takeover-$RUN.%d@vmlab' % i
    s = smtplib.SMTP('10.0.0.11', 2587, timeout=120)
    s.login('alice', '$pw')
    s.sendmail('alice@example.test', ['someone@remote.test'], ('Message-ID: <%s>\r\nSubject: %s\r\n\r\nrelay me\r\n' % (mid, mid)).encode())
    s.quit()
    acked.append(mid)
json.dump(acked, open('$W/takeover.acked', 'w'))
X"
  # host1's runner is stuck mid-transaction with the sink, holding its claim.
  for i in $(seq 300); do [ -s $W/sink.out.stalled ] && break; sleep 0.2; done
  local stalled; stalled=$(head -1 $W/sink.out.stalled 2>/dev/null)
  check takeover "host1 was relaying ($stalled) when it died" "$([ -n "$stalled" ]; echo $?)"
  "$V" kill host1
  local t0; t0=$(now)
  # NFSv3 has no lease: the NLM locks of a dead host are held until it boots again and
  # its statd sends SM_NOTIFY. So on v3 host1 reboots at once (and the sink stops
  # stalling it: whichever host takes the entries over, each must arrive once).
  local v3="" bootpid; [ "${NFSVERS:-4.2}" = 3 ] && { v3=1; rm -f $W/stall; boot host1 & bootpid=$!; }
  for i in $(seq 600); do
    [ "$(sort -u $W/sink.out 2>/dev/null | wc -l)" -ge $k ] && break; sleep 0.2
  done
  local t1; t1=$(now)
  local want got dups; want=$(python3 -c "import json; print(' '.join(sorted(json.load(open('$W/takeover.acked')))))")
  touch $W/sink.out
  got=$(sort -u $W/sink.out | tr '\n' ' ' | sed 's/ $//'); dups=$(($(wc -l < $W/sink.out) - $(sort -u $W/sink.out | wc -l)))
  echo "  sent $k / acknowledged $(echo $want | wc -w) / delivered $(echo $got | wc -w) / duplicates $dups; host1's entry delivered $(secs $t0 $t1) s after it died (claims go stale after 30 s${v3:+; v3: host1 rebooted})"
  check takeover "every acknowledged message relayed exactly once, host1's too" "$([ "$want" = "$got" ] && [ $dups = 0 ] && grep -qx "$stalled" $W/sink.out; echo $?)"
  client "kill \$(cat $W/sink.pid)"
  if [ -n "$v3" ]; then wait $bootpid || exit 1; else boot host1; fi
  "$V" healthy 10.0.0.11 150
  check takeover "host1 serves again after its reboot" $?
}

smtpfull() {
  services_up || return
  echo "== smtpfull: SMTP to host1 and host2 while the export is full, nearly full, then freed"
  client "$MC send $LAB fullpre-$RUN alice 10.0.0.11 5" > $W/fullpre.json
  # No reserved blocks for this one: the lab's agents write as root (no_root_squash), so
  # only then do "free for users" (what the probe reads) and "free for root" agree.
  ctl store "tune2fs -m 0 \$(findmnt -no SOURCE /) >/dev/null; dd if=/dev/zero of=/srv/filler bs=1M >/dev/null 2>&1; sync"
  local r1 r2; for i in $(seq 60); do
    r1=$(client "$MC rcpt 10.0.0.11 alice"); r2=$(client "$MC rcpt 10.0.0.12 alice")
    [[ "$r1" == 452* ]] && [[ "$r2" == 452* ]] && break; sleep 0.5; done
  client "$MC send $LAB full-$RUN alice 10.0.0.11,10.0.0.12 3" > $W/full.json
  # Nearly full: 3 MB free, then 1 MB messages from both hosts at once. RCPT passes
  # until the probe sees the space go; the rest must fail after DATA, also with 452.
  ctl store "truncate -s -3M /srv/filler; sync"
  for i in $(seq 60); do [[ "$(client "$MC rcpt 10.0.0.11 alice")" == 250* ]] && break; sleep 0.5; done
  client "$MC send $LAB nearfull-$RUN alice 10.0.0.11,10.0.0.12 6 --size 1000000" > $W/nearfull.json
  ctl store "rm -f /srv/filler; tune2fs -m 5 \$(findmnt -no SOURCE /) >/dev/null"
  local back=""; for i in $(seq 60); do
    [[ "$(client "$MC rcpt 10.0.0.11 alice")" == 250* ]] && [[ "$(client "$MC rcpt 10.0.0.12 alice")" == 250* ]] && { back=1; break; }
    sleep 0.5; done
  client "$MC send $LAB fullpost-$RUN alice 10.0.0.11,10.0.0.12 5" > $W/fullpost.json
  local summary='import json, sys
s = json.load(open(sys.argv[1]))
r = s["refused"]
print(len(s["acked"]), "of", s["sent"], "acknowledged;", len(r), "refused,", sum("452" in x and "4.3.1" in x for x in r),
      "with 452 4.3.1,", sum(x.split(": ", 1)[-1].startswith("(452") for x in r), "of them after DATA")'
  echo "  full: RCPT on host1 '${r1:0:30}', host2 '${r2:0:30}'; $(python3 -c "$summary" $W/full.json)"
  echo "  3 MB free, 1 MB messages: $(python3 -c "$summary" $W/nearfull.json)"
  check smtpfull "host1 and host2 answer RCPT with 452 4.3.1 while the export is full" "$([[ "$r1" == "452 4.3.1"* ]] && [[ "$r2" == "452 4.3.1"* ]]; echo $?)"
  check smtpfull "every message refused for want of space got 452 4.3.1 (at RCPT or after DATA), some were refused" "$(python3 -c 'import json, sys
r = json.load(open(sys.argv[1]))["refused"] + json.load(open(sys.argv[2]))["refused"]
sys.exit(not r or any("452" not in x or "4.3.1" not in x for x in r))' $W/full.json $W/nearfull.json; echo $?)"
  check smtpfull "host1 and host2 take mail again once space is freed, every message then acknowledged" "$([ -n "$back" ] && python3 -c "import json; s=json.load(open('$W/fullpost.json')); exit(len(s['acked']) != s['sent'])"; echo $?)"
  counted smtpfull 10.0.0.12 alice $W/fullpre.json $W/full.json $W/nearfull.json $W/fullpost.json
  check smtpfull "UIDs, flags and Message-IDs agree on host1, host2 and host3" "$(digests_agree alice; echo $?)"
}

healthz() { client "python3 -c 'import urllib.request,sys
try: urllib.request.urlopen(\"http://$1:2080/healthz\", timeout=3); print(200)
except urllib.error.HTTPError as e: print(e.code)
except Exception: print(0)'"; }
mail_a() { client "dig +short +time=1 +tries=1 -p 5353 @10.0.0.10 mail.example.test A" | tr '\n' ' '; }
first_mx() { client "dig +short +time=1 +tries=1 -p 5353 @10.0.0.10 example.test MX" | sort -n | head -1 | awk '{print $2}'; }

partition() {
  services_up || return
  echo "== partition: host1 cut off from the NFS server (its packets to 10.0.0.1 dropped)"
  # Start from a zone that has host1 first (it may just have rebooted).
  for i in $(seq 120); do [[ "$(mail_a)" == *10.0.0.11* ]] && break; sleep 0.5; done
  local a0 mx0; a0=$(mail_a); mx0=$(first_mx)
  # dnsctl probes from 10.0.0.10, so it still reaches host1 and sees its /healthz.
  ctl store "ip route replace 10.0.0.11/32 dev eth0 src 10.0.0.10"
  # Dropped silently, as a real partition does (a blackhole route would hand the NFS
  # client EINVAL, which it takes as fatal for its lease).
  ctl host1 "tc qdisc add dev eth0 root handle 1: prio && tc filter add dev eth0 parent 1: protocol ip prio 1 u32 match ip dst 10.0.0.1/32 action drop"
  local t0 th tr td; t0=$(now)
  for i in $(seq 300); do [ -z "${th:-}" ] && [ "$(healthz 10.0.0.11)" = 503 ] && th=$(now)
    [ -z "${tr:-}" ] && [[ "$(client "$MC rcpt 10.0.0.11 alice")" == 451* ]] && tr=$(now)
    [ -z "${td:-}" ] && [[ "$(mail_a)" != *10.0.0.11* ]] && [[ "$(first_mx)" != host1.* ]] && td=$(now)
    [ -n "${th:-}" ] && [ -n "${tr:-}" ] && [ -n "${td:-}" ] && break; sleep 0.5; done
  local rc; rc=$(client "$MC rcpt 10.0.0.11 alice")
  echo "  before: mail. = $a0, first MX $mx0; /healthz 503 after $(secs $t0 ${th:-$t0}) s, RCPT '$rc' after $(secs $t0 ${tr:-$t0}) s, mail. = $(mail_a)/ first MX $(first_mx) after $(secs $t0 ${td:-$t0}) s"
  check partition "host1's /healthz fails" "$([ -n "${th:-}" ]; echo $?)"
  check partition "host1 answers RCPT with 451 4.3.0 instead of taking mail it cannot store" "$([[ "$rc" == "451 4.3.0"* ]]; echo $?)"
  check partition "dnsctl moved MX and mail. away from host1" "$([ -n "${td:-}" ]; echo $?)"
  client "$MC send $LAB part-$RUN alice 10.0.0.12,10.0.0.13 $((N / 2))" > $W/part.json
  ctl host1 "tc qdisc del dev eth0 root"
  ctl store "ip route del 10.0.0.11/32 dev eth0 src 10.0.0.10"
  t0=$(now); local tb=""
  for i in $(seq 600); do [ "$(healthz 10.0.0.11)" = 200 ] && [[ "$(client "$MC rcpt 10.0.0.11 alice")" == 250* ]] && [[ "$(mail_a)" == *10.0.0.11* ]] && { tb=$(now); break; }; sleep 0.5; done
  echo "  healed: host1 healthy, taking mail and back in mail. after $(secs $t0 ${tb:-$t0}) s"
  check partition "host1 serves again after healing" "$([ -n "$tb" ]; echo $?)"
  client "$MC send $LAB part2-$RUN alice 10.0.0.11 $((N / 2))" > $W/part2.json
  counted partition 10.0.0.11 alice $W/part.json $W/part2.json
  check partition "UIDs, flags and Message-IDs agree on host1, host2 and host3" "$(digests_agree alice; echo $?)"
}

# A short stale time leaves only the fcntl lock: that measures NFSv4 lease recovery.
killlease() { killlock 2; }
# The configured dotlock stale time then dominates.
killstale() { killlock 15; }

for s in ${SUITE_SCENARIOS:-multihost throughput handoff killlease killstale serverrestart diskfull smtp smtpfull checkpoint estale takeover partition}; do $s; done
rm -rf "$W"
[ $FAILED = 0 ] && echo "vmlab NFS suite: all checks passed" || echo "vmlab NFS suite: FAILED"
exit $FAILED
