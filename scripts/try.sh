#!/usr/bin/env bash
# A first look without installing anything: builds addrmunge, makes a key and
# a config in a temporary folder, and walks through munging, decoding and
# expiring an address. Pass a folder to keep the files: scripts/try.sh DIR
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --quiet
bin=$PWD/target/release/addrmunge
dir=${1:-$(mktemp -d)}
mkdir -p "$dir"
[[ -f $dir/addrmunge.key ]] || "$bin" keygen --out "$dir/addrmunge.key" >/dev/null
cat > "$dir/addrmunge.toml" <<TOML
key_file = "addrmunge.key"
state = "state.sqlite"

[[protect]]
domain = "plover.com"
exempt = ["*-subscribe", "*-unsubscribe"]
TOML
export ADDRMUNGE_CONFIG=$dir/addrmunge.toml
run() { printf '\n$ addrmunge %s\n' "$*"; "$bin" "$@"; }
run check-config
a=$("$bin" encode --ip 203.0.113.9 guitar-perl-diff@plover.com)
run encode --ip 203.0.113.9 guitar-perl-diff@plover.com
b=$("$bin" encode --ip 198.51.100.7 guitar-perl-diff@plover.com)
run encode --ip 198.51.100.7 guitar-perl-diff@plover.com
run decode "$a" "$b"
run expire --ip 203.0.113.9 --day "$(date -u +%F)" --reason "spam from a harvester"
run decode "$a" "$b" || true
run rules
run mint guitar-perl-diff@plover.com --label shop
printf '\nFiles are in %s; try: ADDRMUNGE_CONFIG=%s %s decode --json ADDRESS\n' "$dir" "$ADDRMUNGE_CONFIG" "$bin"
