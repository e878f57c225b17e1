#!/bin/bash
# A private Postfix instance for the mbox locking interoperability tests (storage/tests/interop.rs).
#
#   postfix.sh up DIR SPOOL_MAIL_DIR PORT   start it: SMTP on 127.0.0.1:PORT for domain interop.test,
#                                           local(8) delivers to SPOOL_MAIL_DIR/<user> (mbox) with
#                                           mailbox_delivery_lock = fcntl, dotlock
#   postfix.sh config DIR SPOOL_MAIL_DIR PORT   only write the configuration (enough for postlock -c)
#   postfix.sh down DIR                     stop it
#
# Layout: DIR/etc (config, a copy of /etc/postfix), DIR/queue, DIR/data, DIR/log/maillog.
# Needs root: installs postfix if missing, creates the system user "alice" (local(8) delivers
# only to existing users), and Postfix itself drops privileges. local(8) runs as the recipient,
# so SPOOL_MAIL_DIR is made 1777 (it must create alice.lock there) and alice's mbox is
# pre-created owned by alice (strict_mailbox_ownership). Every parent of DIR and
# SPOOL_MAIL_DIR must be traversable by the postfix user (chmod 755).
set -euo pipefail
export DEBIAN_FRONTEND=noninteractive
USERS=(alice)

die() { echo "postfix.sh: $*" >&2; exit 1; }

install_postfix() {
  command -v postfix >/dev/null 2>&1 && [ -x /usr/sbin/postlock ] && return
  echo 'postfix postfix/main_mailer_type select No configuration' | debconf-set-selections
  apt-get install -y -q postfix >/dev/null || die "could not install postfix (apt-get install postfix)"
}

ensure_users() {
  local u
  for u in "${USERS[@]}"; do
    id "$u" >/dev/null 2>&1 || useradd -M -N -d /nonexistent -s /usr/sbin/nologin "$u"
  done
}

configure() {
  local dir=$1 spool=$2 port=$3 u
  [ "$(id -u)" = 0 ] || die "must run as root"
  install_postfix
  ensure_users
  mkdir -p "$dir" "$spool"
  chmod 755 "$dir"
  chmod 1777 "$spool"                     # local(8), running as the recipient, creates <user>.lock
  for u in "${USERS[@]}"; do
    [ -e "$spool/$u" ] || install -m 600 /dev/null "$spool/$u"
    chown "$u" "$spool/$u"                # strict_mailbox_ownership = yes
  done
  rm -rf "$dir/etc" "$dir/queue" "$dir/data" "$dir/log"
  cp -a /etc/postfix "$dir/etc"
  mkdir -p "$dir/queue" "$dir/data" "$dir/log"
  # The main.cf of a fresh "No configuration" install may be missing; postconf -e creates it.
  [ -e "$dir/etc/main.cf" ] || : > "$dir/etc/main.cf"
  postconf -c "$dir/etc" -e compatibility_level=3.6 \
    queue_directory="$dir/queue" data_directory="$dir/data" \
    myhostname=mail.interop.test mydomain=interop.test myorigin=interop.test \
    mydestination=interop.test inet_interfaces=127.0.0.1 inet_protocols=ipv4 \
    mynetworks=127.0.0.0/8 "smtpd_relay_restrictions=permit_mynetworks reject_unauth_destination" \
    alias_maps= alias_database= mailbox_command= home_mailbox= mailbox_transport= \
    mail_spool_directory="$spool" "mailbox_delivery_lock=fcntl, dotlock" mailbox_size_limit=0 \
    deliver_lock_attempts=20 deliver_lock_delay=1s stale_lock_time=500s \
    default_transport=error relay_transport=error biff=no \
    queue_run_delay=1s minimal_backoff_time=1s maximal_backoff_time=2s \
    maillog_file="$dir/log/maillog" maillog_file_prefixes="$dir"
  postconf -c "$dir/etc" -MX smtp/inet 2>/dev/null || true
  postconf -c "$dir/etc" -M "127.0.0.1:$port/inet = 127.0.0.1:$port inet n - n - - smtpd"
  postconf -c "$dir/etc" -F '*/*/chroot = n'
  chown postfix:postfix "$dir/data"; chmod 700 "$dir/data"   # else: master.lock Permission denied
  postfix -c "$dir/etc" set-permissions >/dev/null 2>&1 || true
}

up() {
  local dir=$1 spool=$2 port=$3
  down "$dir"                             # a leftover instance from an earlier run
  configure "$dir" "$spool" "$port"
  postfix -c "$dir/etc" start >/dev/null 2>&1 || die "postfix -c $dir/etc start failed; see $dir/log/maillog"
  for _ in $(seq 100); do
    if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
      echo "postfix on 127.0.0.1:$port, spool $spool, log $dir/log/maillog"
      return
    fi
    sleep 0.1
  done
  die "postfix did not start listening on 127.0.0.1:$port; see $dir/log/maillog"
}

down() {
  local dir=$1
  [ -d "$dir/etc" ] || return 0
  postfix -c "$dir/etc" stop >/dev/null 2>&1 || true
}

case "${1:-}" in
  up) [ $# -eq 4 ] || die "usage: $0 up DIR SPOOL_MAIL_DIR PORT"; up "$2" "$3" "$4" ;;
  config) [ $# -eq 4 ] || die "usage: $0 config DIR SPOOL_MAIL_DIR PORT"; configure "$2" "$3" "$4" ;;
  down) [ $# -eq 2 ] || die "usage: $0 down DIR"; down "$2" ;;
  *) die "usage: $0 up DIR SPOOL_MAIL_DIR PORT | config DIR SPOOL_MAIL_DIR PORT | down DIR" ;;
esac
