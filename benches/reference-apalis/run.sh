#!/usr/bin/env bash
# Measures the apalis reference worker draining a full queue.
#
#   run.sh REDIS_PORT SANDBOX_URL TOKEN PHONE_NUMBER_ID COUNT
#
# REDIS_PORT: a running Redis on 127.0.0.1 that the caller owns; this script
#   uses (and first empties) only its database $REFERENCE_REDIS_DB (default 9).
# SANDBOX_URL: the Cloud API sandbox, e.g. http://127.0.0.1:18090; its
#   throughput/pair/window/users limits are switched off here.
# REFERENCE_WORKER_ARGS: extra flags for `reference-worker work`, e.g.
#   "--lock-tasks" or "--concurrency 128" (see --help).
# Prints one line:
#   REFERENCE drained=N seconds=S per_second=R sent_seconds=T sent_per_second=Q
#             cpu_ms_per_message=C peak_rss_mib=M
# seconds/per_second: from the worker's start until every job is acknowledged;
# sent_seconds/sent_per_second: until the sandbox accepted the last send
# (polled every 0.1 s), which is how the gateway's drain is timed.
set -euo pipefail

if [ $# -ne 5 ]; then
    echo "usage: $0 REDIS_PORT SANDBOX_URL TOKEN PHONE_NUMBER_ID COUNT" >&2
    exit 2
fi
REDIS_PORT=$1 SANDBOX_URL=${2%/} TOKEN=$3 PHONE_NUMBER_ID=$4 COUNT=$5
DB=${REFERENCE_REDIS_DB:-9}
REDIS_URL="redis://127.0.0.1:$REDIS_PORT/$DB"
QUEUE=outbound # the queue name in src/bin/reference-worker.rs
DEADLINE_SECONDS=$((60 + COUNT / 1000))

cd "$(dirname "$0")"
cargo build --release --quiet
# Where cargo put it: ./target unless the caller set CARGO_TARGET_DIR.
BIN="${CARGO_TARGET_DIR:-target}/release/reference-worker"

rcli() { redis-cli -h 127.0.0.1 -p "$REDIS_PORT" -n "$DB" "$@"; }
accepted() { curl -sf "$SANDBOX_URL/admin/stats" | sed -E 's/.*"accepted":([0-9]+).*/\1/'; }
now() { date +%s.%N; }

curl -sf -X PUT "$SANDBOX_URL/admin/rules" -H 'content-type: application/json' \
    -d '{"tokens":true,"validation":true,"throughput":false,"pair":false,"window":false,"templates":true,"users":false}' \
    >/dev/null

rcli FLUSHDB >/dev/null
"$BIN" enqueue --redis "$REDIS_URL" --count "$COUNT" --phone-number-id "$PHONE_NUMBER_ID"
queued=$(rcli LLEN "$QUEUE:active")
if [ "$queued" -ne "$COUNT" ]; then
    echo "reference: enqueued $queued of $COUNT jobs" >&2
    exit 1
fi
accepted_before=$(accepted)

start=$(now)
"$BIN" work --redis "$REDIS_URL" --graph "$SANDBOX_URL" --token "$TOKEN" \
    --phone-number-id "$PHONE_NUMBER_ID" ${REFERENCE_WORKER_ARGS:-} &
PID=$!
trap 'kill "$PID" 2>/dev/null || true' EXIT

# apalis-redis adds each finished task id to the set QUEUE:done (or QUEUE:dead
# once it gives up); poll both (one redis-cli call per 0.1 s, so the poller
# costs the measured machine next to nothing) until every job is accounted for.
while :; do
    counts=($(rcli EVAL "return {redis.call('scard', KEYS[1]), redis.call('scard', KEYS[2])}" \
        2 "$QUEUE:done" "$QUEUE:dead"))
    done_count=${counts[0]} dead_count=${counts[1]}
    if [ -z "${sent_at:-}" ] && [ $(($(accepted) - accepted_before)) -ge "$COUNT" ]; then
        sent_at=$(now)
    fi
    [ $((done_count + dead_count)) -ge "$COUNT" ] && break
    if ! kill -0 "$PID" 2>/dev/null; then
        echo "reference: worker exited early ($done_count done)" >&2
        exit 1
    fi
    if awk -v s="$start" -v n="$(now)" -v d="$DEADLINE_SECONDS" 'BEGIN { exit !(n - s > d) }'; then
        echo "reference: not drained after ${DEADLINE_SECONDS}s ($done_count done)" >&2
        exit 1
    fi
    sleep 0.1
done
end=$(now)

# Sample the worker before stopping it: CPU = utime + stime (fields 14, 15 of
# /proc/PID/stat, in clock ticks), peak RSS = VmHWM.
read -r utime stime < <(sed -E 's/^.*\) //' "/proc/$PID/stat" | awk '{ print $12, $13 }')
hwm_kib=$(awk '/^VmHWM:/ { print $2 }' "/proc/$PID/status")
kill "$PID"
wait "$PID" 2>/dev/null || true
trap - EXIT

accepted_delta=$(($(accepted) - accepted_before))
# apalis-core 1.0 flushes acks that complete during a fetch only at the next
# heartbeat (30 s by default), so the last few can lag the sends.
if [ -n "${sent_at:-}" ] && awk -v a="$sent_at" -v e="$end" 'BEGIN { exit !(e - a > 1) }'; then
    echo "reference: warning: the last acks came $(awk -v a="$sent_at" -v e="$end" 'BEGIN { printf "%.1f", e - a }')s after the last send" >&2
fi
if [ "$dead_count" -ne 0 ] || [ "$accepted_delta" -lt "$done_count" ]; then
    echo "reference: warning: $dead_count dead jobs, sandbox accepted $accepted_delta" >&2
fi

awk -v n="$done_count" -v s="$start" -v e="$end" -v sent="${sent_at:-$end}" \
    -v ticks="$((utime + stime))" -v hz="$(getconf CLK_TCK)" -v hwm="$hwm_kib" 'BEGIN {
    secs = e - s
    sent_secs = sent - s
    printf "REFERENCE drained=%d seconds=%.2f per_second=%.0f sent_seconds=%.2f sent_per_second=%.0f cpu_ms_per_message=%.4f peak_rss_mib=%.1f\n",
        n, secs, n / secs, sent_secs, n / sent_secs, ticks * 1000 / hz / n, hwm / 1024
}'
