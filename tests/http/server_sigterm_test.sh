#!/usr/bin/env bash
# The real binary: starts on an ephemeral port, answers, and on SIGTERM drains
# and exits 0, promptly even with an idle keep-alive client and a half-sent
# request open (issue 12, item 5). Usage: server_sigterm_test.sh path/to/payments-server
set -euo pipefail
server=$1
log=$(mktemp)
trap 'rm -f "$log"; kill -9 "$pid" 2>/dev/null || true' EXIT

"$server" --bind 127.0.0.1 --port=0 --threads 2 --log-level info --drain-read-timeout-ms 200 2> "$log" &
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

# An idle keep-alive client (served once) and a half-sent request.
exec 4<> "/dev/tcp/127.0.0.1/$port"
printf 'GET /health HTTP/1.1\r\nHost: x\r\n\r\n' >&4
read -r -t 5 line <&4 && grep -q '^HTTP/1.1 200' <<< "$line" || { echo "no answer on the keep-alive connection"; exit 1; }
exec 5<> "/dev/tcp/127.0.0.1/$port"
printf 'POST /invoices HTTP/1.1\r\nHost: x\r\nContent-Length: 15\r\n' >&5

started=$(date +%s%N)
kill -TERM "$pid"
status=0
wait "$pid" || status=$?
took_ms=$(( ($(date +%s%N) - started) / 1000000 ))
exec 4<&- 5<&-
echo "SIGTERM to exit: ${took_ms} ms with one idle and one half-sent client"
[ "$took_ms" -lt 3000 ] || { echo "took ${took_ms} ms: the drain waited for idle or half-sent clients"; cat "$log"; exit 1; }
grep -q '"connections_drained":"yes"' "$log" || { echo "connections not drained"; cat "$log"; exit 1; }
grep -q '"msg":"stopped"' "$log" || { echo "no stopped line"; cat "$log"; exit 1; }
[ "$status" -eq 0 ] || { echo "exit status $status"; cat "$log"; exit 1; }
echo "payments-server drained and exited 0 on SIGTERM"
