#!/bin/bash
# Apply ansible/site.yml for real to three throwaway Debian hosts (qemu VMs with systemd,
# tests/vmlab/vmlab.sh image-systemd), then again (changed=0 required), then smoke-test
# the deployed cluster: SMTP to host1, IMAP on host2, dnsctl status on host3, and host2
# with its spool unmounted (nothing can be written under the bare mount point, the agent
# will not start). Prints the mode it ran in. Needs root, the release binaries and
# ansible-core (ANSIBLE_BIN, default the venv .ci/run makes). Exit 1 on any failed check.
set -uo pipefail
F=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$F/../.." && pwd)
V="$F/vmlab.sh"
D=${VMLAB_DIR:-$ROOT/target/vmlab}
NS=${VMLAB_NS:-hamail-vmlab}
AB=${ANSIBLE_BIN:-$ROOT/target/ansible-venv/bin}
W=$(mktemp -d /tmp/ansible-apply.XXXXXX)
FAILED=0
check() { if [ "$2" = 0 ]; then echo "  ok    $1"; else echo "  FAIL  $1"; FAILED=1; fi; }

echo "ansible apply test: mode = qemu VMs with systemd (kernel NFS server and clients), NFS ${NFSVERS:-4.2}"
"$V" up-systemd || exit 1
[ "${KEEP_UP:-0}" = 1 ] || trap '"$V" down; rm -rf "$W"' EXIT

cat > $W/inventory.ini <<INV
[mail_hosts]
host1 ansible_host=10.0.0.11 hamail_address=10.0.0.11 hamail_mx_priority=10
host2 ansible_host=10.0.0.12 hamail_address=10.0.0.12 hamail_mx_priority=20
host3 ansible_host=10.0.0.13 hamail_address=10.0.0.13 hamail_mx_priority=30

[nfs_server]
host3

[directory]
host3

[dnsctl]
host3

[all:vars]
ansible_user=root
ansible_ssh_private_key_file=$D/ssh/id_ed25519
ansible_ssh_common_args=-o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null
INV
# Extra vars: they override ansible/group_vars (inventory vars would not).
cat > $W/vars.yml <<VARS
hamail_nfs_clients: 10.0.0.0/24
hamail_nfs_version: "${NFSVERS:-4.2}"
hamail_apt_update: false
hamail_bin_dir: $ROOT/target/release
VARS

play() {  # LOG: run the playbook from the bridge side of the lab
  ip netns exec $NS env ANSIBLE_CONFIG=$ROOT/ansible/ansible.cfg ANSIBLE_FORCE_COLOR=0 \
    PATH="$AB:$PATH" ansible-playbook -i $W/inventory.ini -e @$W/vars.yml $ROOT/ansible/site.yml > $1 2>&1
}
recap() { sed -n '/PLAY RECAP/,$p' $1 | grep -E '^host'; }

t0=$SECONDS; play $W/first.log; rc=$?
echo "  first run ($((SECONDS - t0)) s):"; recap $W/first.log | sed 's/^/    /'
check "first run configures all three hosts (exit $rc)" $rc
[ $rc = 0 ] || { grep -E 'fatal|FAILED' -A3 $W/first.log | head -30; exit 1; }
t0=$SECONDS; play $W/second.log; rc=$?
echo "  second run ($((SECONDS - t0)) s):"; recap $W/second.log | sed 's/^/    /'
changed=$(recap $W/second.log | grep -vc 'changed=0 ')
check "second run succeeds and changes nothing (changed=0 on every host)" "$([ $rc = 0 ] && [ "$changed" = 0 ]; echo $?)"

# The deployed services, not the lab binaries: systemd units, standard ports.
for h in 10.0.0.11 10.0.0.12; do
  "$V" ssh $h "systemctl is-active hamail-agent && mountpoint -q /srv/mail && grep -q ' /srv/mail nfs' /proc/mounts" >/dev/null
  check "$h: hamail-agent active under systemd, spool NFS-mounted" $?
done
"$V" ssh 10.0.0.13 "systemctl is-active hamail-agent dnsctl nfs-server" >/dev/null
check "10.0.0.13: hamail-agent, dnsctl and the NFS server active under systemd" $?
out=$(ip netns exec $NS python3 - <<'PY' 2>&1
import imaplib, smtplib, time, uuid
mid = f"{uuid.uuid4().hex}@ansible.test"
s = smtplib.SMTP("10.0.0.11", 25, timeout=30)
s.sendmail("x@remote.test", ["bob@example.test"], f"Message-ID: <{mid}>\r\nSubject: via host1\r\n\r\nhello\r\n".encode())
s.quit()
M = imaplib.IMAP4("10.0.0.12", 143, timeout=30)
M.login("bob", "bob-lab-pw")
M.select("INBOX")
typ, data = M.search(None, "HEADER", "Message-ID", mid)
print("found" if data[0].split() else "missing", mid)
PY
)
echo "  $out"
check "mail sent to host1 (port 25) is read over IMAP on host2 (port 143)" "$([[ "$out" == found* ]]; echo $?)"
st=$("$V" ssh 10.0.0.13 "dnsctl --config /etc/hamail/hamail.toml status" 2>&1)
echo "$st" | sed 's/^/    /' | head -8
check "dnsctl status on host3 answers and sees host1, host2 and host3" "$(for h in host1 host2 host3; do grep -q "$h" <<<"$st" || exit 1; done; echo 0)"
mx=$(ip netns exec $NS dig +short @10.0.0.13 example.test MX | sort -n | head -1)
check "dnsctl serves MX on port 53 (first: $mx)" "$([[ "$mx" == "10 host1."* ]]; echo $?)"

# host2 without its spool mount: no fstab entry (so systemd cannot mount it for the unit),
# the export unmounted. The bare mount point must refuse writes, root's included, and the
# agent must refuse to start; with the mount back, it starts again.
out=$("$V" ssh 10.0.0.12 'set -u
systemctl stop hamail-agent
cp /etc/fstab /root/fstab.saved && sed -i "\| /srv/mail |d" /etc/fstab && systemctl daemon-reload
umount /srv/mail
mountpoint -q /srv/mail && echo still-mounted
touch /srv/mail/probe 2>/dev/null && echo root-wrote
runuser -u hamail -- touch /srv/mail/probe 2>/dev/null && echo hamail-wrote
systemctl start hamail-agent 2>/dev/null && echo agent-started
systemctl is-active hamail-agent >/dev/null && echo agent-active
cp /root/fstab.saved /etc/fstab && systemctl daemon-reload
# The server may refuse a remount right after the unmount for a moment (mountd answered
# "access denied" once in CI): restoring the mount is not what is tested, so retry it.
for try in 1 2 3 4 5 6; do mount /srv/mail 2>/dev/null && break; sleep 5; done
mountpoint -q /srv/mail || mount /srv/mail
systemctl start hamail-agent && systemctl is-active hamail-agent >/dev/null && mountpoint -q /srv/mail && echo restored' 2>&1)
echo "  without the mount: ${out//$'\n'/, }"
check "host2 unmounted: the bare mount point takes no writes (root nor hamail) and the agent refuses to start; remounted, it runs again" "$([ "$out" = restored ]; echo $?)"

[ $FAILED = 0 ] && echo "ansible apply test: all checks passed" || echo "ansible apply test: FAILED"
exit $FAILED
