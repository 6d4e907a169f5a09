#!/usr/bin/env bash
# `make bench`: measures the gateway against its references in one run and
# writes BENCHMARKS.md. Everything runs on loopback, on private ports, with a
# private redis-server; every process started here is stopped by its PID.
#
#  1. raw XADD:      redis-benchmark, 64 connections, on the bench Redis
#  2. /send:         wrk, 64 connections, against `gateway api` on the same Redis
#  3. worker drain:  one `gateway worker` draining what step 2 queued, against
#                    `gateway sandbox` with its limits off
set -euo pipefail
cd "$(dirname "$0")/.."

DURATION=${BENCH_SECONDS:-10}
CONNECTIONS=64
scripts/ensure-redis-server.sh
if ! command -v wrk >/dev/null 2>&1; then
  if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null 2>&1; then
    apt-get install -y -qq wrk >/dev/null 2>&1 || { apt-get update -qq && apt-get install -y -qq wrk >/dev/null; }
  fi
  command -v wrk >/dev/null 2>&1 || { echo "wrk is needed: sudo apt-get install -y wrk" >&2; exit 1; }
fi

cargo build --release -p gateway --quiet
BIN=target/release/gateway
WORK=$(mktemp -d)
PIDS=()
cleanup() {
  for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
  for pid in "${PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
  rm -rf "$WORK"
}
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_http() { for _ in $(seq 1 200); do curl -sf "$1" >/dev/null && return 0; sleep 0.05; done; echo "no answer from $1" >&2; return 1; }

REDIS_PORT=$(free_port); API_PORT=$(free_port); SANDBOX_PORT=$(free_port); WORKER_PORT=$(free_port)
redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --dir "$WORK" --save "" --appendonly no >/dev/null &
PIDS+=($!)
for _ in $(seq 1 100); do redis-cli -p "$REDIS_PORT" ping >/dev/null 2>&1 && break; sleep 0.05; done

cat > "$WORK/gateway.toml" <<TOML
[api]
listen = "127.0.0.1:$API_PORT"
[worker]
listen = "127.0.0.1:$WORKER_PORT"
[redis]
url = "redis://127.0.0.1:$REDIS_PORT"
[graph]
base_url = "http://127.0.0.1:$SANDBOX_PORT"
[sandbox]
listen = "127.0.0.1:$SANDBOX_PORT"
[[senders]]
name = "bench"
phone_number_id = "100000000001"
waba_id = "200000000001"
access_token_env = "BENCH_TOKEN"
[[clients]]
name = "bench"
key_env = "BENCH_KEY"
senders = ["bench"]
TOML
export BENCH_TOKEN=bench-token BENCH_KEY=bench-key RUST_LOG=warn

echo "== raw XADD (redis-benchmark, $CONNECTIONS connections)"
XADD_RPS=$(redis-benchmark -p "$REDIS_PORT" -c "$CONNECTIONS" -n 400000 -q \
  XADD bench:raw '*' id 100000000001-01JD3F6Q8Z1XK9V7M2T4R5N6PA body '{"type":"template"}' \
  | tr '\r' '\n' | grep -oE '[0-9.]+ requests per second' | tail -1 | cut -d' ' -f1)
redis-cli -p "$REDIS_PORT" del bench:raw >/dev/null
echo "   $XADD_RPS XADD/s"

"$BIN" --config "$WORK/gateway.toml" sandbox >"$WORK/sandbox.log" 2>&1 &
PIDS+=($!)
"$BIN" --config "$WORK/gateway.toml" api >"$WORK/api.log" 2>&1 &
PIDS+=($!)
wait_http "http://127.0.0.1:$API_PORT/readyz"
wait_http "http://127.0.0.1:$SANDBOX_PORT/admin/stats"
curl -sf -X PUT "http://127.0.0.1:$SANDBOX_PORT/admin/rules" -H 'content-type: application/json' \
  -d '{"tokens": true, "validation": true, "throughput": false, "pair": false, "window": false, "templates": true, "users": false}' >/dev/null

cat > "$WORK/send.lua" <<'LUA'
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer bench-key"
wrk.body = '{"from":"bench","to":"+16505551234","type":"template","template":{"name":"hello_world","language":{"code":"en_US"}},"metadata":{"campaign":"bench"}}'
done = function(summary, latency, requests)
  io.write(string.format("RESULT %d %d %d %.3f %.3f\n", summary.requests, summary.errors.status,
    summary.errors.connect + summary.errors.read + summary.errors.write + summary.errors.timeout,
    latency:percentile(50) / 1000, latency:percentile(99) / 1000))
end
LUA
echo "== POST /send (wrk, $CONNECTIONS connections, ${DURATION}s)"
RESULT=$(wrk -t2 -c"$CONNECTIONS" -d"${DURATION}s" -s "$WORK/send.lua" "http://127.0.0.1:$API_PORT/send" | grep '^RESULT')
read -r _ SEND_REQUESTS SEND_NON2XX SEND_SOCKET_ERRORS SEND_P50 SEND_P99 <<<"$RESULT"
SEND_RPS=$(python3 -c "print(round($SEND_REQUESTS / $DURATION))")
QUEUED=$(redis-cli -p "$REDIS_PORT" xlen 'gw:{100000000001}:queue')
echo "   $SEND_RPS /send/s, non-2xx $SEND_NON2XX, socket errors $SEND_SOCKET_ERRORS, queued $QUEUED"
SEND_RATIO=$(python3 -c "print(f'{$SEND_RPS / $XADD_RPS:.2f}')")

echo "== worker drain ($QUEUED messages, sandbox limits off)"
START=$(date +%s.%N)
"$BIN" --config "$WORK/gateway.toml" worker >"$WORK/worker.log" 2>&1 &
WORKER_PID=$!
PIDS+=($WORKER_PID)
PEAK_RSS=0
while :; do
  LEFT=$(redis-cli -p "$REDIS_PORT" xlen 'gw:{100000000001}:queue')
  RSS=$(awk '/VmRSS/ {print $2}' "/proc/$WORKER_PID/status" 2>/dev/null || echo 0)
  [ "$RSS" -gt "$PEAK_RSS" ] && PEAK_RSS=$RSS
  [ "$LEFT" -eq 0 ] && break
  kill -0 "$WORKER_PID" 2>/dev/null || { echo "worker died"; cat "$WORK/worker.log"; exit 1; }
  sleep 0.1
done
END=$(date +%s.%N)
DRAIN_RPS=$(python3 -c "print(round($QUEUED / ($END - $START)))")
SENT=$(curl -sf "http://127.0.0.1:$WORKER_PORT/metrics" | awk '/^gateway_messages_sent_total/ {s+=$2} END {print s+0}')
echo "   $DRAIN_RPS messages/s drained, $SENT sent, peak RSS $((PEAK_RSS / 1024)) MiB"

CPU=$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //')
cat > BENCHMARKS.md <<MD
# Benchmarks

Written by \`make bench\` (scripts/bench.sh) on $(date -u +%Y-%m-%d): $(nproc) cores ($CPU),
$(free -g | awk '/Mem:/ {print $2}') GiB, $(redis-server --version | grep -oE 'v=[0-9.]+'), load generators
on the same machine. Every figure of one table comes from the same run, so
ratios hold even though this machine is noisy.

## Accepting: \`POST /send\` against raw XADD

| what | command | result |
| --- | --- | --- |
| raw XADD on the bench Redis | \`redis-benchmark -c $CONNECTIONS -n 400000 XADD bench:raw * id … body …\` | $XADD_RPS per second |
| \`POST /send\` (auth, validation, one Lua script: stream entry + record) | \`wrk -t2 -c$CONNECTIONS -d${DURATION}s -s send.lua /send\` | $SEND_RPS per second (p50 $SEND_P50 ms, p99 $SEND_P99 ms; non-2xx $SEND_NON2XX) |
| ratio | | **$SEND_RATIO** of raw XADD (goal ≥ 0.5) |

## Draining: one worker against the sandbox, limits off

| what | result |
| --- | --- |
| messages queued by the run above | $QUEUED |
| drained by one \`gateway worker\` (read, POST to the sandbox, record wamid + ack in one script) | $DRAIN_RPS per second |
| worker peak resident memory while draining | $((PEAK_RSS / 1024)) MiB |

The sandbox, Redis and the worker share the machine's cores, so the drain
rate is a floor for what a worker does against Meta.
MD
echo "wrote BENCHMARKS.md"
