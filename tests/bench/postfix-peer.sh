#!/bin/bash
# A private Postfix instance on loopback, the reference peer for `hamail-lab bench smtp`:
#   smtpd on 127.0.0.1:PORT -> local(8) -> one mbox per user in SPOOL (mail_spool_directory),
#   locking "fcntl, dotlock", mail for USER@bench.test; everything else is refused.
#
# usage: postfix-peer.sh up   DIR SPOOL [PORT] [USER]   # PORT 12626, USER pbench by default
#        postfix-peer.sh down DIR
#
# DIR holds the instance (config, queue, data, log); SPOOL is made world-writable and sticky
# (local(8) delivers as the recipient, like /var/mail). Needs root: Postfix drops privileges,
# and USER must be a real Unix user (created with useradd -r if missing). Installs the postfix
# package non-interactively ("Local only") if smtp-source is missing.
set -euo pipefail
export DEBIAN_FRONTEND=noninteractive

install_postfix() {
  [ -x /usr/sbin/postfix ] && [ -x /usr/sbin/smtp-source ] && return
  echo 'postfix postfix/main_mailer_type select Local only' | debconf-set-selections
  apt-get install -y -qq postfix >/dev/null
}

ensure_user() {
  id "$1" >/dev/null 2>&1 || useradd -r -M -d /nonexistent -s /usr/sbin/nologin "$1"
}

up() {
  local dir=$1 spool=$2 port=${3:-12626} user=${4:-pbench}
  install_postfix
  ensure_user "$user"
  mkdir -p "$dir" "$spool"
  chmod 755 "$dir"                     # postfix daemons must traverse it
  chmod 1777 "$spool"
  rm -rf "$dir/pf"
  cp -a /etc/postfix "$dir/pf"
  touch "$dir/pf/main.cf"              # "No configuration" installs leave none
  mkdir -p "$dir/queue" "$dir/data" "$dir/log"
  postconf -c "$dir/pf" -e compatibility_level=3.6 queue_directory="$dir/queue" \
    data_directory="$dir/data" myhostname=bench.test mydomain=bench.test myorigin=bench.test \
    mydestination=bench.test inet_interfaces=127.0.0.1 inet_protocols=ipv4 mynetworks=127.0.0.0/8 \
    "smtpd_relay_restrictions=permit_mynetworks reject_unauth_destination" alias_maps= alias_database= \
    mail_spool_directory="$spool" "mailbox_delivery_lock=fcntl, dotlock" mailbox_size_limit=0 \
    message_size_limit=0 default_transport=error relay_transport=error biff=no \
    maillog_file="$dir/log/maillog" maillog_file_prefixes="$dir"
  postconf -c "$dir/pf" -MX smtp/inet
  postconf -c "$dir/pf" -M "127.0.0.1:$port/inet = 127.0.0.1:$port inet n - n - - smtpd"
  postconf -c "$dir/pf" -F '*/*/chroot = n'
  chown postfix:postfix "$dir/data"; chmod 700 "$dir/data"   # else: master.lock Permission denied
  postfix -c "$dir/pf" set-permissions >/dev/null 2>&1 || true
  postfix -c "$dir/pf" start 2>>"$dir/log/start.log"
  for _ in $(seq 100); do
    if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
      echo "postfix on 127.0.0.1:$port, mail for $user@bench.test in $spool/$user"
      return
    fi
    sleep 0.1
  done
  echo "postfix did not start; see $dir/log/maillog and $dir/log/start.log" >&2
  exit 1
}

down() {
  local dir=$1
  [ -d "$dir/pf" ] || return 0
  postfix -c "$dir/pf" stop 2>/dev/null || true
}

case "${1:-}" in
  up) shift; [ $# -ge 2 ] || { echo "usage: $0 up DIR SPOOL [PORT] [USER]" >&2; exit 2; }; up "$@";;
  down) shift; [ $# -ge 1 ] || { echo "usage: $0 down DIR" >&2; exit 2; }; down "$1";;
  *) echo "usage: $0 up DIR SPOOL [PORT] [USER] | down DIR" >&2; exit 2;;
esac
