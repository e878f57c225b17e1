#!/bin/bash
# hamail's VM lab: three Debian VMs under qemu (TCG) on a bridge in a private network
# namespace. `store` runs the kernel NFS server exporting /srv/mail (and is the
# last-resort mail host); `host1` and `host2` mount it at /srv/mail (NFSv4.2, or v3 with
# NFSVERS=3). The guests carry this checkout's freshly built hamail binaries.
#
#   tests/vmlab/vmlab.sh deps     qemu + kernel (extracted .debs; cached in $VMLAB_DIR)
#   tests/vmlab/vmlab.sh image    Debian rootfs (cached) + hamail binaries -> base.img
#   tests/vmlab/vmlab.sh up       netns + bridge + three VMs, NFS mounted
#   tests/vmlab/vmlab.sh services write a cluster config (hamail-lab config) into every
#                                 VM and start hamail-agent on each, dnsctl on store
#   tests/vmlab/vmlab.sh ctl VM 'cmd'   run a command in a VM (virtio-serial agent)
#   tests/vmlab/vmlab.sh client 'cmd'   run a command on the lab's bridge (10.0.0.254),
#                                 the mail clients' side
#   tests/vmlab/vmlab.sh kill VM | start VM | partition VM | heal VM
#                                 (start boots a killed VM on its disk within BOOT_SECS,
#                                 default 120, power-cycling it once more if it misses)
#   tests/vmlab/vmlab.sh down
#
# Needs root (netns, bridge, taps). No route leaves the namespace. Based on the verified
# recipe in shared/lab-recipes/vm-nfs-lab.
set -euo pipefail
F=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$F/../.." && pwd)
D=${VMLAB_DIR:-$ROOT/target/vmlab}
NS=${VMLAB_NS:-hamail-vmlab}
QROOT=$D/qemu-root
ACCEL=${ACCEL:-tcg}           # /dev/kvm here is PVM, which stock kernels cannot use
LEASE=${LEASE:-10}            # NFSv4 lease and grace, seconds
NFSVERS=${NFSVERS:-4.2}
PROFILE=${PROFILE:-release}   # which target/<profile> binaries go into the image
# name:role:address:mail host:extra addresses:mac. store is the NFS server (10.0.0.1),
# host3 (10.0.0.13) and the DNS server (10.0.0.10, dnsctl's address in the config).
VMS="store:store:10.0.0.1/24:host3:10.0.0.10/24,10.0.0.13/24:52:54:00:00:00:01
host1:client:10.0.0.11/24:host1::52:54:00:00:00:11
host2:client:10.0.0.12/24:host2::52:54:00:00:00:12"
ETC=$D/run/etc                # the cluster config the guests get (hamail-lab config)
SSH_OPTS="-i $D/ssh/id_ed25519 -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null -o LogLevel=ERROR -o ConnectTimeout=3 -o BatchMode=yes"
mkdir -p "$D"

deps() {
  if [ -x $QROOT/usr/bin/qemu-system-x86_64 ] && ls $D/kernel/boot/vmlinuz-* >/dev/null 2>&1; then
    return 0
  fi
  apt-get update -q >/dev/null
  apt-get install -y -q --no-install-recommends debootstrap \
     libcapstone4 libfdt1 libpmem1 librdmacm1 libibverbs1 libslirp0 libvdeplug2 >/dev/null
  command -v qemu-img >/dev/null || apt-get install -y -q --no-install-recommends qemu-utils >/dev/null
  mkdir -p $D/debs && cd $D/debs
  KPKG=$(apt-cache depends linux-image-cloud-amd64 | awk '/Depends: linux-image-[0-9]/{print $2; exit}')
  # Extracted, not installed: the preinstalled backports qemu-utils breaks bookworm's
  # qemu-system-common.
  apt-get download qemu-system-x86 qemu-system-common qemu-system-data seabios "$KPKG" 2>/dev/null
  rm -rf $QROOT $D/kernel && mkdir -p $QROOT $D/kernel
  for p in qemu-system-x86 qemu-system-data seabios; do dpkg-deb -x ${p}_*.deb $QROOT; done
  mkdir -p $D/tmpx && dpkg-deb -x qemu-system-common_*.deb $D/tmpx
  mkdir -p $QROOT/usr/lib/x86_64-linux-gnu/qemu
  cp $D/tmpx/usr/lib/x86_64-linux-gnu/qemu/accel-tcg-x86_64.so $QROOT/usr/lib/x86_64-linux-gnu/qemu/
  rm -rf $D/tmpx
  dpkg-deb -x ${KPKG}_*.deb $D/kernel
}

image() {
  local KV R=$D/rootfs
  KV=$(basename $D/kernel/lib/modules/*)
  if [ ! -x $R/usr/sbin/rpc.nfsd ]; then      # the Debian part is cached
    command -v debootstrap >/dev/null || apt-get install -y -q --no-install-recommends debootstrap >/dev/null
    rm -rf $R
    debootstrap --variant=minbase \
      --include=nfs-kernel-server,nfs-common,rpcbind,python3,iproute2,kmod,procps,iputils-ping \
      bookworm $R http://deb.debian.org/debian >$D/debootstrap.log
    rm -rf $R/var/cache/apt/*.bin $R/var/cache/apt/archives/*.deb $R/var/lib/apt/lists/* \
           $R/usr/share/doc/* $R/usr/share/man/* $R/usr/share/locale/*
  fi
  mkdir -p $R/lib/modules && rm -rf $R/lib/modules/$KV && cp -a $D/kernel/lib/modules/$KV $R/lib/modules/
  chroot $R depmod $KV
  install -m755 $F/vmlab-init $R/sbin/vmlab-init
  install -m755 $F/vmlab-agent $R/usr/local/sbin/vmlab-agent
  install -m755 $F/vmlab-services $R/usr/local/sbin/vmlab-services
  # hamail-spool is what the suite drives; the daemons go in when they have been built.
  install -m755 "$ROOT/target/$PROFILE/hamail-spool" $R/usr/local/bin/hamail-spool
  for b in hamail-agent dnsctl; do
    [ -x "$ROOT/target/$PROFILE/$b" ] && install -m755 "$ROOT/target/$PROFILE/$b" $R/usr/local/bin/$b
  done
  printf '127.0.0.1 localhost\n10.0.0.1 store\n10.0.0.11 host1\n10.0.0.12 host2\n' > $R/etc/hosts
  echo '/srv/mail 10.0.0.0/24(rw,sync,no_subtree_check,no_root_squash)' > $R/etc/exports
  : > $R/etc/fstab; mkdir -p $R/srv/mail
  rm -f $D/base.img
  mkfs.ext4 -q -F -L vmroot -d $R $D/base.img 1G
}

# A plain Debian host for the Ansible test: systemd as init, sshd with the lab's key for
# root, systemd-networkd giving each VM (by MAC) its address: store is host3, 10.0.0.13.
# The packages the roles install are already in (the VMs have no route to a mirror).
image_systemd() {
  local KV R=$D/rootfs-systemd K=$D/ssh m
  KV=$(basename $D/kernel/lib/modules/*)
  if [ ! -x $R/usr/sbin/sshd ]; then
    command -v debootstrap >/dev/null || apt-get install -y -q --no-install-recommends debootstrap >/dev/null
    rm -rf $R
    debootstrap --variant=minbase \
      --include=systemd-sysv,udev,dbus,openssh-server,sudo,python3,python3-apt,iproute2,kmod,procps,netbase,nfs-kernel-server,nfs-common,rpcbind,e2fsprogs,openssl \
      bookworm $R http://deb.debian.org/debian >$D/debootstrap-systemd.log
    rm -rf $R/var/cache/apt/*.bin $R/var/cache/apt/archives/*.deb \
           $R/usr/share/doc/* $R/usr/share/man/* $R/usr/share/locale/*
  fi
  mkdir -p $R/lib/modules && rm -rf $R/lib/modules/$KV && cp -a $D/kernel/lib/modules/$KV $R/lib/modules/
  chroot $R depmod $KV
  mkdir -p $K && { [ -f $K/id_ed25519 ] || ssh-keygen -q -t ed25519 -N '' -f $K/id_ed25519; }
  install -d -m700 $R/root/.ssh && install -m600 $K/id_ed25519.pub $R/root/.ssh/authorized_keys
  for m in 01:13 11:11 12:12; do
    printf '[Match]\nMACAddress=52:54:00:00:00:%s\n\n[Network]\nAddress=10.0.0.%s/24\n' "${m%:*}" "${m#*:}" \
      > $R/etc/systemd/network/10-vmlab-${m%:*}.network
  done
  ln -sf /lib/systemd/system/systemd-networkd.service $R/etc/systemd/system/multi-user.target.wants/systemd-networkd.service
  ln -sf /lib/systemd/system/serial-getty@.service $R/etc/systemd/system/getty.target.wants/serial-getty@ttyS0.service
  printf '127.0.0.1 localhost\n10.0.0.11 host1\n10.0.0.12 host2\n10.0.0.13 host3 store\n' > $R/etc/hosts
  : > $R/etc/fstab; : > $R/etc/resolv.conf
  rm -f $D/base-systemd.img
  mkfs.ext4 -q -F -L vmroot -d $R $D/base-systemd.img 2G
}

net_up() {
  ip netns add $NS 2>/dev/null || true
  ip netns exec $NS sh -e -c '
    ip link set lo up
    ip link show br0 >/dev/null 2>&1 || ip link add br0 type bridge
    ip link set br0 up
    ip addr replace 10.0.0.254/24 dev br0
    for t in tap-store tap-host1 tap-host2; do
      ip link show $t >/dev/null 2>&1 || ip tuntap add dev $t mode tap
      ip link set $t master br0; ip link set $t up
    done'
}

vm_start() {   # NAME ; KEEP=1 keeps the disk overlay (a restart, not a fresh VM)
  local NAME=$1 RUN=$D/run ROLE IP MAC KV v MH EXTRA
  for v in $VMS; do
    IFS=: read -r n r ip mh extra mac <<<"$v"
    [ "$n" = "$NAME" ] && ROLE=$r IP=$ip MAC=$mac MH=$mh EXTRA=$extra
  done
  KV=$(basename $D/kernel/lib/modules/*)
  mkdir -p $RUN
  rm -f $RUN/$NAME.console $RUN/$NAME.sock $RUN/$NAME.pid
  # IMAGE=systemd: a plain Debian host with systemd and sshd (the Ansible test), booted
  # by its own init; otherwise the NFS lab's vmlab-init.
  local BOOT="init=/sbin/vmlab-init vmlab.role=$ROLE vmlab.name=$NAME vmlab.ip=$IP vmlab.lease=$LEASE vmlab.nfs=$NFSVERS vmlab.mailhost=$MH vmlab.extra=$EXTRA"
  local BASE=$D/base.img
  [ "${IMAGE:-}" = systemd ] && { BOOT="systemd.hostname=$NAME"; BASE=$D/base-systemd.img; }
  [ "${KEEP:-0}" = 1 ] && [ -f $RUN/$NAME.qcow2 ] || \
    qemu-img create -q -f qcow2 -b $BASE -F raw $RUN/$NAME.qcow2
  QEMU_MODULE_DIR=$QROOT/usr/lib/x86_64-linux-gnu/qemu \
  ip netns exec $NS $QROOT/usr/bin/qemu-system-x86_64 \
    -name $NAME -machine pc -accel $ACCEL -cpu max -m 512 -smp 1 \
    -nodefaults -no-user-config -display none -monitor none \
    -L $QROOT/usr/share/qemu -L $QROOT/usr/share/seabios \
    -kernel $D/kernel/boot/vmlinuz-$KV \
    -append "console=ttyS0 root=/dev/nvme0n1 rw $BOOT nfs.nfs4_unique_id=$NAME lockd.nlm_grace_period=10 panic=-1" \
    -drive file=$RUN/$NAME.qcow2,if=none,id=root,format=qcow2,cache=unsafe \
    -device nvme,drive=root,serial=$NAME \
    -netdev tap,id=n0,ifname=tap-$NAME,script=no,downscript=no \
    -device virtio-net-pci,netdev=n0,mac=$MAC,romfile= \
    -device virtio-serial-pci \
    -chardev socket,id=ctl,path=$RUN/$NAME.sock,server=on,wait=off \
    -device virtserialport,chardev=ctl,name=vmlab.ctl \
    -serial file:$RUN/$NAME.console \
    -daemonize -pidfile $RUN/$NAME.pid
}

wait_ready() {  # NAME [timeout]
  local i; for i in $(seq 1 $((${2:-180}*10))); do
    grep -q VMLAB-READY $D/run/$1.console 2>/dev/null && return 0; sleep 0.1; done
  echo "$1 not ready; console tail:" >&2; tail -20 $D/run/$1.console >&2; return 1
}

# Boot a killed VM again on its own disk. Under TCG an emulated disk now and then stalls
# during boot (guest: "nvme ... timeout, reset controller"); that is the lab's emulator, not
# what is under test, so such a VM is power-cycled once more, and the log says so.
restart() {
  local try
  for try in 1 2; do
    KEEP=1 vm_start "$1"
    wait_ready "$1" ${BOOT_SECS:-120} && return 0
    [ $try = 2 ] && return 1
    echo "vmlab: $1 did not boot within ${BOOT_SECS:-120} s; power-cycling it once more" >&2
    kill_vm "$1"; sleep 2
  done
}

ctl() { local vm=$1; shift; "$F/vmctl" $D/run/$vm.sock --timeout ${CTL_TIMEOUT:-600} "$*"; }

up() {
  local t0=$SECONDS
  net_up
  for v in store host1 host2; do vm_start $v & done; wait
  for v in store host1 host2; do wait_ready $v 240; done
  for h in host1 host2; do ctl $h "grep -q ' /srv/mail nfs' /proc/mounts"; done
  echo "vmlab: store + host1 + host2 up, NFS $NFSVERS at /srv/mail, in $((SECONDS - t0)) s"
}

# The three plain hosts of the Ansible test (image-systemd), ready once sshd answers.
up_systemd() {
  local t0=$SECONDS v ip i
  net_up
  for v in store host1 host2; do IMAGE=systemd vm_start $v & done; wait
  for ip in 10.0.0.13 10.0.0.11 10.0.0.12; do
    for i in $(seq 1200); do
      ip netns exec $NS ssh $SSH_OPTS root@$ip true 2>/dev/null && break
      sleep 0.25
    done
    ip netns exec $NS ssh $SSH_OPTS root@$ip true || { echo "$ip: no ssh" >&2; return 1; }
  done
  echo "vmlab: three systemd hosts up (host1 .11, host2 .12, host3 .13), ssh as root, in $((SECONDS - t0)) s"
}

# The cluster config for the guests: hosts on 10.0.0.11-13, dnsctl on 10.0.0.10, the
# spool at /srv/mail; lab.json (users, passwords, ports) stays here for the clients.
services() {
  local bin=$ROOT/target/$PROFILE/hamail-lab tgz v
  [ -x "$bin" ] || bin=$ROOT/target/debug/hamail-lab
  rm -rf "$ETC"
  "$bin" config --dir "$ETC" --base 10.0.0.10 --install-dir /etc/hamail --spool /srv/mail >/dev/null
  rm -rf "$ETC/spool" "$ETC/logs"
  [ -n "${SERVICES_EXTRA:-}" ] && printf '%s\n' "$SERVICES_EXTRA" >> "$ETC/hamail.toml"
  tgz=$(tar -C "$ETC" -cz . | base64 -w0)
  for v in store host1 host2; do
    ctl $v "vmlab-services stop; rm -rf /etc/hamail && mkdir -p /etc/hamail && echo $tgz | base64 -d | tar --warning=no-timestamp -xz -C /etc/hamail && sync && vmlab-services start"
  done
  # Every agent healthy and dnsctl answering, or say which is not.
  for v in host1:10.0.0.11 host2:10.0.0.12 store:10.0.0.13; do
    healthy ${v#*:} 60 || { echo "${v%%:*} agent not healthy" >&2; ctl ${v%%:*} "tail -20 /var/log/hamail/agent.log" >&2; return 1; }
  done
  client "for i in \$(seq 150); do dig +short +time=1 +tries=1 -p 5353 @10.0.0.10 mail.example.test A | grep -q . && exit 0; sleep 0.2; done; exit 1" \
    || { ctl store "tail -20 /var/log/hamail/dnsctl.log" >&2; return 1; }
}

# Wait up to SECS (default 150) until the agent at ADDR answers /healthz with 200.
healthy() {
  client "for i in \$(seq $((${2:-150} * 4))); do python3 -c 'import urllib.request; urllib.request.urlopen(\"http://$1:2080/healthz\", timeout=2)' 2>/dev/null && exit 0; sleep 0.25; done; exit 1"
}

# A command on the bridge side (the mail clients' network), inside the namespace.
client() { ip netns exec $NS bash -c "$*"; }

# SIGKILL the VM's qemu (a power cut) and wait until it is gone, so that a restart never
# meets the old process still holding the disk image.
kill_vm() {
  local pid i st
  [ -f $D/run/$1.pid ] || return 0
  pid=$(cat $D/run/$1.pid); rm -f $D/run/$1.pid
  kill -9 "$pid" 2>/dev/null || return 0
  for i in $(seq 100); do   # gone, or a zombie nobody has reaped yet
    st=$(ps -o stat= -p "$pid" 2>/dev/null); [ -z "$st" ] || [[ "$st" == Z* ]] && return 0
    sleep 0.1
  done
}

# Cut a VM off the bridge (both directions) / put it back.
partition() { ip netns exec $NS ip link set tap-$1 nomaster; }
heal() { ip netns exec $NS ip link set tap-$1 master br0; }

down() {
  for v in store host1 host2; do kill_vm $v; done
  sleep 1; ip netns del $NS 2>/dev/null || true
}

cmd=${1:-}; shift || true
case "$cmd" in
  deps) deps;; image) image;; image-systemd) image_systemd;; up) up;; down) down;;
  up-systemd) up_systemd;;
  ssh) h=$1; shift; ip netns exec $NS ssh $SSH_OPTS root@$h "$@";;
  ctl) ctl "$@";;
  client) client "$@";;
  healthy) healthy "$@";;
  services) services;;
  kill) kill_vm "$1";;
  start) restart "$1";;
  partition) partition "$1";; heal) heal "$1";;
  *) echo "usage: $0 deps|image|up|down|services|ctl VM CMD|client CMD|healthy ADDR [SECS]|ssh ADDR CMD|image-systemd|up-systemd|kill VM|start VM|partition VM|heal VM"; exit 2;;
esac
