#!/usr/bin/env bash
# The test command (README): installs what the tests need on a fresh Debian
# machine, then runs every test. Safe to run again; installs only what is missing.
set -euo pipefail
cd "$(dirname "$0")/.."
export DEBIAN_FRONTEND=noninteractive

# Debian packages the integration tests start for real, by the command that
# proves each is present.
declare -A needs=([postfix]=postfix [postmap]=postfix [swaks]=swaks [nginx]=nginx [chromium]=chromium [curl]=curl [faketime]=faketime [systemd-analyze]=systemd [openssl]=openssl [systemd-socket-activate]=systemd [apache2]=apache2 [nc]=netcat-openbsd [haproxy]=haproxy [slowhttptest]=slowhttptest [h2load]=nghttp2-client [mkfifo]=coreutils [psql]=postgresql-client [dnsmasq]=dnsmasq-base [pebble]=pebble)

missing=()
for cmd in "${!needs[@]}"; do
  command -v "$cmd" >/dev/null 2>&1 || missing+=("${needs[$cmd]}")
done
# A PostgreSQL server for tests/store.rs and tests/several_hosts.rs (each
# test makes a private cluster with initdb; the package's own is not used).
compgen -G "/usr/lib/postgresql/*/bin/initdb" >/dev/null || missing+=(postgresql)
# Real pages for tests/corpus.rs: Debian's Python documentation.
compgen -G "/usr/share/doc/python3*/html/library/urllib.request.html" >/dev/null || missing+=(python3-doc)
if ((${#missing[@]})); then
  if [[ $(id -u) -ne 0 ]]; then
    echo "scripts/test.sh: missing ${missing[*]}; run as root or: sudo apt-get install -y ${missing[*]}" >&2
    exit 1
  fi
  echo "postfix postfix/main_mailer_type select No configuration" | debconf-set-selections
  apt-get update -q
  apt-get install -y -q --no-install-recommends "${missing[@]}"
fi

# The other MTAs for tests/exim.rs, tests/sendmail.rs and tests/opensmtpd.rs.
# Debian's MTA packages conflict (installing exim4, sendmail or opensmtpd
# removes postfix), so each one's packages are unpacked into a folder of its
# own under /opt/addrmunge-test-mta and run from there with the test's
# config; only their libraries (and system users) are installed.
# unpack_mta NAME ROOT "LIBRARY PACKAGES" PACKAGE...
unpack_mta() {
  local name=$1 root=$2 libs=() lib debs deb
  if [[ $(id -u) -ne 0 ]]; then
    echo "scripts/test.sh: $name for its tests is missing; run as root once" >&2
    exit 1
  fi
  for lib in $3; do
    dpkg -s "$lib" >/dev/null 2>&1 || libs+=("$lib")
  done
  shift 3
  apt-get update -q
  if ((${#libs[@]})); then apt-get install -y -q --no-install-recommends "${libs[@]}"; fi
  debs=$(mktemp -d)
  chmod 777 "$debs"   # apt-get download runs as _apt
  (cd "$debs" && apt-get download -q "$@")
  mkdir -p "$root"
  for deb in "$debs"/*.deb; do dpkg-deb -x "$deb" "$root"; done
  rm -rf "$debs"
}

# system_user NAME HOME
system_user() {
  getent passwd "$1" >/dev/null ||
    useradd --system --user-group --no-create-home --home-dir "$2" --shell /usr/sbin/nologin "$1"
}

mta=/opt/addrmunge-test-mta
if [[ ! -x $mta/exim/usr/sbin/exim4 ]] || ! getent passwd Debian-exim >/dev/null; then
  unpack_mta Exim "$mta/exim" "libidn12 libgnutls-dane0 libgnutls30 libdb5.3 libnsl2 libpcre2-8-0 libidn2-0 libcrypt1" \
    exim4-base exim4-config exim4-daemon-light
  system_user Debian-exim /nonexistent
fi
# m4 makes Sendmail's sendmail.cf from the test's .mc.
if [[ ! -x $mta/sendmail/usr/libexec/sendmail/sendmail ]] || ! command -v m4 >/dev/null; then
  unpack_mta Sendmail "$mta/sendmail" "m4 libwrap0 libldap-2.5-0 libsasl2-2 libdb5.3 libssl3 libnsl2" \
    sendmail-bin sendmail-base sendmail-cf
fi
# OpenSMTPD's spool, control socket and helpers are at fixed paths: the test
# mounts its own folders over them in a mount namespace, so the mount points
# must exist; the daemon wants its two users and its chroot folder.
if [[ ! -x $mta/opensmtpd/usr/sbin/smtpd ]] || ! getent passwd opensmtpq >/dev/null || [[ ! -d /usr/libexec/opensmtpd ]]; then
  unpack_mta OpenSMTPD "$mta/opensmtpd" "libevent-2.1-7 libssl3 libdb5.3 libpam0g libcrypt1 zlib1g" opensmtpd
  system_user opensmtpd /var/spool/smtpd
  system_user opensmtpq /var/spool/smtpd
  mkdir -p /var/spool/smtpd /usr/libexec/opensmtpd /var/lib/opensmtpd/empty
fi

cargo test --locked "$@"

# The README's install command, into a throwaway root: the release build
# installs, runs, and makes its man page and completions. Skipped when
# arguments pick some tests only.
if (($# == 0)); then
  root=$(mktemp -d)
  trap 'rm -rf "$root"' EXIT
  cargo install --quiet --locked --path . --root "$root"
  "$root/bin/addrmunge" --version
  "$root/bin/addrmunge" manpage | grep '^\.TH addrmunge 1' >/dev/null
  "$root/bin/addrmunge" completions bash | grep 'complete -F' >/dev/null
  echo "scripts/test.sh: cargo install --path . works"
  # Every fuzz target for a bounded time (FUZZ_SECONDS, 60 by default).
  bash scripts/fuzz.sh
fi
