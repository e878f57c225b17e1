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
set -uo pipefail
F=$(cd "$(dirname "$0")" && pwd)
V="$F/vmlab.sh"
N=${SUITE_COUNT:-40}          # messages per writer process
FAILED=0
ctl() { "$V" ctl "$@"; }
S="hamail-spool --spool /srv/mail"
check() {  # NAME CONDITION-TEXT RESULT(0/1)
  if [ "$3" = 0 ]; then echo "  ok    $1: $2"; else echo "  FAIL  $1: $2"; FAILED=1; fi
}
now() { date +%s.%N; }
secs() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", b - a }'; }

[ "${SUITE_UP:-0}" = 1 ] && { "$V" up || exit 1; trap '"$V" down' EXIT; }

echo "vmlab NFS suite: $(ctl host1 "grep ' /srv/mail ' /proc/mounts | awk '{print \$3, \$4}' | cut -c1-80")"

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
  ctl host1 "$S append-gen --user bob --writer t1 --count $((2 * N)) --size 4000 >/dev/null" &
  ctl host2 "$S append-gen --user bob --writer t2 --count $((2 * N)) --size 4000 >/dev/null" &
  wait
  t1=$(now)
  local got; got=$(ctl store "$S verify --user bob")
  local rate; rate=$(awk -v n=$((4 * N)) -v a="$t0" -v b="$t1" 'BEGIN { printf "%.1f", n / (b - a) }')
  echo "  $((4 * N)) messages in $(secs $t0 $t1) s = $rate msg/s over NFS from two hosts (TCG guests, cache=unsafe disks)"
  check throughput "all present ($got)" "$([ "$got" = "ok $((4 * N))" ]; echo $?)"
}

handoff() {
  echo "== handoff: host1 holds alice's locks for 6 s, host2 appends meanwhile"
  ctl host1 "nohup sh -c '$S hold-lock --user alice --seconds 6 | while read l; do echo \$l \$(date +%s.%N); done > /tmp/hold.out' >/dev/null 2>&1 &"
  ctl host1 "for i in \$(seq 100); do grep -q locked /tmp/hold.out 2>/dev/null && break; sleep 0.1; done"
  # Start and end on host2's own clock: how long host2 waited.
  local out; out=$(ctl host2 "s=\$(date +%s.%N); printf 'Subject: h\\n\\nx\\n' | $S append --user alice >/dev/null && echo \$s \$(date +%s.%N)")
  local rel; rel=$(ctl host1 "for i in \$(seq 100); do grep -q released /tmp/hold.out && break; sleep 0.1; done; awk '/released/{print \$2}' /tmp/hold.out")
  local waited; waited=$(secs ${out% *} ${out#* })
  echo "  host2 waited $waited s; lock handoff host1 -> host2: $(secs "$rel" "${out#* }") s after release (across guest clocks, which differ by fractions of a second)"
  check handoff "host2 waited for host1's lock (at least 2 s of the 6 s hold)" "$(awk -v w="$waited" 'BEGIN { exit !(w >= 2) }'; echo $?)"
}

killlock() {  # STALE: dotlock stale time for the waiter
  local stale=$1
  echo "== killlock: host1 killed (qemu SIGKILL) while holding alice's locks; dotlock stale after $stale s"
  ctl host1 "nohup $S hold-lock --user alice --seconds 600 > /tmp/hold2.out 2>&1 &"
  ctl host1 "for i in \$(seq 100); do grep -q locked /tmp/hold2.out && break; sleep 0.1; done"
  "$V" kill host1
  local out; out=$(CTL_TIMEOUT=300 ctl host2 "s=\$(date +%s.%N); printf 'Subject: k\\n\\nx\\n' | $S --timeout 120 --stale-after $stale append --user alice >/dev/null && e=\$(date +%s.%N) && awk -v a=\$s -v b=\$e 'BEGIN { printf \"%.2f\", b - a }'")
  echo "  host2 had the mailbox $out s after host1 died (NFSv4 lease ${LEASE:-10} s; dotlock stale $stale s)"
  check killlock "host2 got the mailbox after host1 died holding it" "$([ -n "$out" ]; echo $?)"
  local l2 l3; l2=$(ctl host2 "$S list --user alice | md5sum"); l3=$(ctl store "$S list --user alice | md5sum")
  check killlock "mailbox reads the same on host2 and store afterwards" "$([ "$l2" = "$l3" ] && [ -n "$l2" ]; echo $?)"
  "$V" start host1 >/dev/null
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
  "$V" start store >/dev/null
  local t0; t0=$(now)
  for h in host1 host2; do
    CTL_TIMEOUT=600 ctl $h "for i in \$(seq 3000); do [ -f /tmp/sr.rc ] && break; sleep 0.2; done; cat /tmp/sr.rc" > /tmp/vmlab-sr-$h.rc
  done
  local rc1 rc2; rc1=$(cat /tmp/vmlab-sr-host1.rc); rc2=$(cat /tmp/vmlab-sr-host2.rc)
  local got; got=$(ctl store "$S verify --user carol")
  echo "  writers exited $rc1 and $rc2 ($(secs $t0 "$(now)") s after the server came back); verify: '$got' of $((2 * N))"
  check serverrestart "both writers finished (hard mount: they stalled, then went on)" "$([ "$rc1" = 0 ] && [ "$rc2" = 0 ]; echo $?)"
  check serverrestart "every acknowledged message present once and intact" "$([ "$got" = "ok $((2 * N))" ]; echo $?)"
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
}

# A short stale time leaves only the fcntl lock: that measures NFSv4 lease recovery.
killlease() { killlock 2; }
# The configured dotlock stale time then dominates.
killstale() { killlock 15; }

for s in ${SUITE_SCENARIOS:-multihost throughput handoff killlease killstale serverrestart diskfull}; do $s; done
[ $FAILED = 0 ] && echo "vmlab NFS suite: all checks passed" || echo "vmlab NFS suite: FAILED"
exit $FAILED
