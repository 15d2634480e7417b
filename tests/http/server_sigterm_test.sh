#!/usr/bin/env bash
# The real binary: starts on an ephemeral port, answers, and on SIGTERM drains
# and exits 0. Usage: server_sigterm_test.sh path/to/payments-server
set -euo pipefail
server=$1
log=$(mktemp)
trap 'rm -f "$log"; kill -9 "$pid" 2>/dev/null || true' EXIT

"$server" --bind 127.0.0.1 --port 0 --threads 2 --log-level info 2> "$log" &
pid=$!

port=""
for _ in $(seq 1 100); do # up to 10 s for the "listening" line
    port=$(grep -o '"msg":"listening".*"port":[0-9]*' "$log" | grep -o '[0-9]*$' || true)
    [ -n "$port" ] && break
    sleep 0.1
done
[ -n "$port" ] || { echo "server did not start"; cat "$log"; exit 1; }

exec 3<> "/dev/tcp/127.0.0.1/$port"
printf 'POST /invoices HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 15\r\nConnection: close\r\n\r\n{"amount":1500}' >&3
answer=$(cat <&3)
exec 3<&-
grep -q '^HTTP/1.1 201' <<< "$answer" || { echo "unexpected answer: $answer"; exit 1; }

kill -TERM "$pid"
status=0
wait "$pid" || status=$?
grep -q '"msg":"stopped"' "$log" || { echo "no stopped line"; cat "$log"; exit 1; }
[ "$status" -eq 0 ] || { echo "exit status $status"; cat "$log"; exit 1; }
echo "payments-server drained and exited 0 on SIGTERM"
