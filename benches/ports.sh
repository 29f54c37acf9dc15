# Loopback ports for the benchmark scripts (load.sh, instructions.sh), which
# source this file: one way to find a free port and to wait for a server.

# A port nothing listens on now.
free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])' 2>/dev/null \
    || ruby -e 'require "socket"; puts TCPServer.new("127.0.0.1",0).addr[1]' 2>/dev/null \
    || echo $((20000 + RANDOM % 20000))
}

# Waits until something accepts connections on port $1 (up to 60 s: a
# server under valgrind starts slowly); exits the script if nothing does.
wait_port() {
  for _ in $(seq 300); do
    (exec 3<>/dev/tcp/127.0.0.1/"$1") 2>/dev/null && return
    sleep 0.2
  done
  echo "port $1 never opened" >&2
  exit 1
}
