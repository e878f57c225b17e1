#!/bin/bash
# A private Dovecot 2.3 instance on loopback, the reference peer for `hamail-lab bench imap`:
#   IMAP on 127.0.0.1:PORT (plain LOGIN allowed, no TLS), mbox storage with
#   `mbox_write_locks = dotlock fcntl`; the INBOX of user U is MBOXDIR/U.
#
# usage: dovecot-peer.sh up   DIR MBOXDIR [PORT] [MAILUSER]  # PORT 14243, MAILUSER dvbench
#        dovecot-peer.sh down DIR
#
# Every file already in MBOXDIR becomes a user (its name) with the password "benchpass";
# MBOXDIR and its files are chowned to MAILUSER, a real Unix user (created with useradd -r
# if missing) that Dovecot runs the mail processes as. DIR holds the config, the runtime
# directory, the logs and the users' homes (where Dovecot keeps its mbox indexes).
# Needs root. Installs dovecot-imapd non-interactively if it is missing; the system's own
# Dovecot service is not touched.
set -euo pipefail
export DEBIAN_FRONTEND=noninteractive

install_dovecot() {
  [ -x /usr/sbin/dovecot ] && [ -x /usr/lib/dovecot/imap ] && return
  apt-get install -y -qq dovecot-imapd >/dev/null 2>&1 || {
    apt-get update -qq >/dev/null && apt-get install -y -qq dovecot-imapd >/dev/null
  }
}

ensure_user() {
  id "$1" >/dev/null 2>&1 || useradd -r -M -d /nonexistent -s /usr/sbin/nologin "$1"
}

up() {
  local dir=$1 mboxdir=$2 port=${3:-14243} user=${4:-dvbench}
  install_dovecot
  ensure_user "$user"
  mkdir -p "$dir" "$mboxdir"
  dir=$(cd "$dir" && pwd); mboxdir=$(cd "$mboxdir" && pwd)
  chmod 755 "$dir"
  rm -rf "$dir/run" "$dir/state" "$dir/log" "$dir/home"
  mkdir -p "$dir/run" "$dir/state" "$dir/log" "$dir/home"
  chown -R "$user": "$mboxdir" "$dir/home"   # dotlocks need a writable MBOXDIR
  : > "$dir/users"
  for f in "$mboxdir"/*; do
    [ -f "$f" ] || continue
    case $f in *.lock) continue;; esac
    echo "$(basename "$f"):{PLAIN}benchpass::::::" >> "$dir/users"
  done
  cat > "$dir/dovecot.conf" <<EOF
instance_name = imapbench-dovecot
base_dir = $dir/run
state_dir = $dir/state
protocols = imap
listen = 127.0.0.1
log_path = $dir/log/dovecot.log
info_log_path = $dir/log/dovecot-info.log
ssl = no
disable_plaintext_auth = no
auth_mechanisms = plain login
mail_location = mbox:~/mail:INBOX=$mboxdir/%u
mbox_write_locks = dotlock fcntl
mail_uid = $user
mail_gid = $user
first_valid_uid = 1
first_valid_gid = 1
mail_privileged_group =
passdb {
  driver = passwd-file
  args = scheme=PLAIN username_format=%u $dir/users
}
userdb {
  driver = passwd-file
  args = username_format=%u $dir/users
  default_fields = uid=$user gid=$user home=$dir/home/%u
}
service imap-login {
  inet_listener imap {
    address = 127.0.0.1
    port = $port
  }
  inet_listener imaps {
    port = 0
  }
}
protocol imap {
  mail_max_userip_connections = 200
}
EOF
  dovecot -c "$dir/dovecot.conf"
  for _ in $(seq 100); do
    if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
      echo "dovecot $(dovecot --version | cut -d' ' -f1) imap on 127.0.0.1:$port, mbox INBOX=$mboxdir/%u"
      return
    fi
    sleep 0.1
  done
  echo "dovecot did not start; see $dir/log/dovecot.log" >&2
  exit 1
}

down() {
  local dir=$1 pid
  [ -f "$dir/run/master.pid" ] || return 0
  pid=$(cat "$dir/run/master.pid")
  kill "$pid" 2>/dev/null || return 0
  for _ in $(seq 100); do
    kill -0 "$pid" 2>/dev/null || return 0
    sleep 0.1
  done
  kill -9 "$pid" 2>/dev/null || true
}

case "${1:-}" in
  up) shift; [ $# -ge 2 ] || { echo "usage: $0 up DIR MBOXDIR [PORT] [MAILUSER]" >&2; exit 2; }; up "$@";;
  down) shift; [ $# -ge 1 ] || { echo "usage: $0 down DIR" >&2; exit 2; }; down "$1";;
  *) echo "usage: $0 up DIR MBOXDIR [PORT] [MAILUSER] | down DIR" >&2; exit 2;;
esac
