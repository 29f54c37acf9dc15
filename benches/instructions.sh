#!/usr/bin/env bash
# Instructions per request of the proxy, counted by callgrind: the measure
# that a shared, noisy machine does not move (requests/s and CPU time move
# by +-15% from one run to the next; this by well under 1%), for telling
# whether a change to the request path or the scanner made it cheaper.
#
# An nginx serves the load benchmark's pages; the proxy runs under
# valgrind's callgrind in front of it, with its access log on (the
# default, written to a file); wrk warms it up, callgrind's counters are
# zeroed, wrk sends requests for SECONDS, and the user-space instructions
# the proxy executed in that time are divided by the requests answered.
# Kernel time (sockets, files) is not counted.
#
# Then the same count for the resolver and for the netstring echo server
# the load benchmark compares it with: socketmap lookups (a valid, an
# expired and a forged address in turn) over 4 connections, as a few busy
# smtpd processes make them.
#
# Usage: bash benches/instructions.sh [SECONDS]   (default 10)
# Prints one line per page: name, requests, instructions per request;
# then one for the resolver and one for the echo server, per lookup.
# Compare two builds by running it on each (BIN=path/to/addrmunge).
# Loopback only; bounded in time.
set -euo pipefail
cd "$(dirname "$0")/.."
export DEBIAN_FRONTEND=noninteractive
secs=${1:-10}

need=()
command -v wrk >/dev/null || need+=(wrk)
command -v nginx >/dev/null || need+=(nginx)
command -v valgrind >/dev/null || need+=(valgrind)
command -v curl >/dev/null || need+=(curl)
if ((${#need[@]})); then
  [[ $(id -u) -eq 0 ]] || { echo "benches/instructions.sh: missing ${need[*]}; run as root or apt-get install ${need[*]}" >&2; exit 1; }
  apt-get update -q && apt-get install -y -q --no-install-recommends "${need[@]}"
fi

if [[ -z ${BIN:-} ]]; then
  cargo build --release --quiet
  BIN=$PWD/target/release/addrmunge
fi
cargo bench --bench load --no-run --quiet 2>/dev/null
loadbin=$(ls -t target/release/deps/load-* | grep -v '\.d$' | head -1)

work=$(mktemp -d)
chmod 755 "$work"   # nginx workers run as nobody
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

source benches/ports.sh
wait_url() { for _ in $(seq 300); do curl -sf -o /dev/null "$1" && return; sleep 0.2; done; echo "$1 never answered" >&2; exit 1; }

mkdir -p "$work/root"
"$loadbin" page 45000 10 > "$work/root/page.html"   # lorem ipsum, 10 addresses
"$loadbin" site 45000 10 > "$work/root/site.html"   # English words and links, 10 addresses
cp "$work/root/page.html" "$work/root/page.bin"      # a type the proxy does not rewrite

ngx=$(free_port)
# The origin: one nginx worker serving the pages, temp files in $work.
temps=""
for t in client_body proxy fastcgi uwsgi scgi; do temps+="${t}_temp_path $work/$t; "; done
printf '%s\n' "worker_processes 1; error_log $work/error.log; pid $work/nginx.pid;" \
  "events { worker_connections 1024; }" \
  "http { access_log off; $temps" \
  "  types { text/html html; application/octet-stream bin; }" \
  "  server { listen 127.0.0.1:$ngx; root $work/root; } }" > "$work/nginx.conf"
nginx -p "$work" -c "$work/nginx.conf" -g "daemon off; master_process on;" &
pids+=($!)
wait_url "http://127.0.0.1:$ngx/page.html"

"$BIN" keygen --out "$work/addrmunge.key" >/dev/null
port=$(free_port)
# The proxy: the defaults (access log on), one protected domain.
printf '%s\n' 'key_file = "addrmunge.key"' 'state = "state.sqlite"' \
  '[[protect]]' 'domain = "plover.com"' \
  '[proxy]' "listen = [\"127.0.0.1:$port\"]" "upstream = \"http://127.0.0.1:$ngx\"" > "$work/proxy.toml"
ADDRMUNGE_LOG=info valgrind --tool=callgrind --callgrind-out-file="$work/callgrind.out" \
  "$BIN" --config "$work/proxy.toml" proxy 2>>"$work/proxy.log" &
proxy=$!
pids+=($proxy)
wait_url "http://127.0.0.1:$port/page.bin"

for page in page.html site.html page.bin; do
  url=http://127.0.0.1:$port/$page
  wrk -t1 -c4 -d2s "$url" >/dev/null
  callgrind_control -z >/dev/null 2>&1
  out=$(wrk -t1 -c4 -d"${secs}s" "$url")
  rm -f "$work"/callgrind.out.*
  callgrind_control -d >/dev/null 2>&1
  n=$(awk '/requests in/ {print $1}' <<<"$out")
  dump=$(ls -t "$work"/callgrind.out.* | head -1)
  ins=$(callgrind_annotate "$dump" 2>/dev/null | awk '/PROGRAM TOTALS/ {gsub(",", "", $1); print $1}')
  echo "$page requests=$n instructions/request=$((ins / n))"
done
kill "$proxy"

# The resolver and the echo server, each under callgrind.
map=$(free_port)
echo_port=$(free_port)
printf '%s\n' 'key_file = "addrmunge.key"' 'state = "state-resolver.sqlite"' \
  '[[protect]]' 'domain = "plover.com"' \
  '[resolver]' "socketmap = [\"inet:127.0.0.1:$map\"]" > "$work/resolver.toml"
valid=$("$BIN" --config "$work/resolver.toml" encode --ip 203.0.113.9 mjd@plover.com)
expired=$("$BIN" --config "$work/resolver.toml" encode --ip 203.0.113.10 mjd@plover.com)
"$BIN" --config "$work/resolver.toml" expire --ip 203.0.113.10 >/dev/null 2>&1
forged=${valid%@*}
forged=${forged%?}x@plover.com
ADDRMUNGE_LOG=warn valgrind --tool=callgrind --callgrind-out-file="$work/resolver.out" \
  "$BIN" --config "$work/resolver.toml" resolver 2>>"$work/resolver.log" &
resolver=$!
pids+=($resolver)
valgrind --tool=callgrind --callgrind-out-file="$work/echo.out" "$loadbin" echo-server "$echo_port" 2>/dev/null &
echo_pid=$!
pids+=($echo_pid)
wait_port "$map"
wait_port "$echo_port"
for server in resolver echo; do
  if [[ $server == resolver ]]; then p=$map pid=$resolver; else p=$echo_port pid=$echo_pid; fi
  "$loadbin" lookups "$p" 2 4 "$valid" "$expired" "$forged" >/dev/null
  callgrind_control -z "$pid" >/dev/null 2>&1
  out=$("$loadbin" lookups "$p" "$secs" 4 "$valid" "$expired" "$forged")
  callgrind_control -d "$pid" >/dev/null 2>&1
  n=$(awk -v s="$secs" '{printf "%d", $2 * s}' <<<"$out")
  dump=$(ls -t "$work/$server".out.* | head -1)
  ins=$(callgrind_annotate "$dump" 2>/dev/null | awk '/PROGRAM TOTALS/ {gsub(",", "", $1); print $1}')
  echo "$server lookups=$n instructions/lookup=$((ins / n))"
done
