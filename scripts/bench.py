#!/usr/bin/env python3
"""`make bench`: measures the gateway against its references in one run and
writes BENCHMARKS.md. Everything runs on loopback, on free ports, with a
private redis-server; every process started here is stopped by its PID.

1. accepting: raw XADD (redis-benchmark) next to POST /send and a signed
   POST /webhook (wrk), 64 connections, in three rounds of the three back
   to back, the round with the median /send ratio reported
2. draining: one worker against the sandbox with its limits off, next to the
   apalis reference worker (benches/reference-apalis) on the same sandbox,
   in three alternating rounds, the fastest run of each compared
3. memory: one worker with 100,000 messages queued across 100 senders
4. rate fidelity: 10 senders at 70/s with Meta's limits on, 1 and 3 workers
5. pick-up: 20 messages a second, each to a random one of 200 idle senders,
   from POST /send to the sandbox's acceptance
6. idle: one worker holding 1,000 senders with nothing queued; its CPU,
   Redis's CPU and Redis commands over 30 s
7. head-of-line: one sender, 40 messages to each of 5 pair-limited
   recipients ahead of 500 messages to others; how long the 500 take
8. slow Meta: 10 senders at 70/s with the sandbox answering in 400 ms and
   in 1,500 ms

Each phase's worker gets a configuration of its own that lists only that
phase's senders; the api and the sandbox use the one listing them all. Each
phase deletes its senders' keys when it is done, so the next starts clean.
"""

import hashlib
import hmac
import json
import os
import platform
import random
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BIN = os.environ.get("GATEWAY_BIN") or os.path.join(os.environ.get("CARGO_TARGET_DIR", os.path.join(ROOT, "target")), "release", "gateway")
CONNECTIONS = 64
SEND_SECONDS = int(os.environ.get("BENCH_SECONDS", "10"))
DRAIN_MESSAGES = 100_000
DRAIN_SENDERS = 50
DRAIN_ROUNDS = 3
ACCEPT_ROUNDS = 3
MEMORY_SENDERS = 100
FIDELITY_SENDERS = 10
FIDELITY_RATE = 70
FIDELITY_SECONDS = int(os.environ.get("BENCH_FIDELITY_SECONDS", "20"))
PICKUP_SENDERS = 200
PICKUP_PER_SECOND = 20
PICKUP_SECONDS = 15
IDLE_SENDERS = 1000
IDLE_SECONDS = 30
HOL_BLOCKED = 5  # recipients A-E
HOL_EACH = 40  # messages queued to each of them first
HOL_OTHERS = 500  # then one message to each of this many recipients
SLOW_SENDERS = 10
SLOW_LATENCIES_MS = (400, 1500)
SLOW_SECONDS = 20
# BENCH_ONLY=drain,memory runs some phases (send, drain, reference, memory, fidelity,
# pickup, idle, hol, slow) and prints them without writing BENCHMARKS.md.
ONLY = set(filter(None, os.environ.get("BENCH_ONLY", "").split(",")))
TOKEN = "bench-token"
KEY = "bench-key"
APP_SECRET = "bench-app-secret"
PROCESSES = []


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start(args, log, env=None):
    process = subprocess.Popen(args, stdout=open(log, "w"), stderr=subprocess.STDOUT, env=env)
    PROCESSES.append(process)
    return process


def stop(process, sig=signal.SIGTERM, timeout=20):
    if process.poll() is None:
        process.send_signal(sig)
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def http(method, url, body=None, headers=None):
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, method=method, headers=headers or {})
    if data is not None:
        request.add_header("content-type", "application/json")
    with urllib.request.urlopen(request, timeout=60) as response:
        text = response.read()
        return json.loads(text) if text else None


def wait_http(url, deadline=30):
    give_up = time.time() + deadline
    while time.time() < give_up:
        try:
            urllib.request.urlopen(url, timeout=1).read()
            return
        except Exception:
            time.sleep(0.05)
    sys.exit(f"no answer from {url}")


def cpu_seconds(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def rss_mib(pid, field="VmRSS"):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
    return 0.0


def open_sockets(pid):
    count = 0
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            count += os.readlink(f"/proc/{pid}/fd/{fd}").startswith("socket:")
        except OSError:
            pass
    return count


class Redis:
    def __init__(self, workdir):
        self.port = free_port()
        self.process = start(
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--dir", workdir,
             "--save", "", "--appendonly", "no"],
            os.path.join(workdir, "redis.log"),
        )
        give_up = time.time() + 10
        while self.cli("ping") != "PONG":
            if time.time() > give_up:
                sys.exit("redis-server did not start")
            time.sleep(0.05)

    def cli(self, *args):
        result = subprocess.run(["redis-cli", "-p", str(self.port), *args], capture_output=True, text=True)
        return result.stdout.strip()


def config_text(ports, senders):
    lines = [
        f'[api]\nlisten = "127.0.0.1:{ports["api"]}"\nmax_body_bytes = 4194304\n',
        f'[worker]\nlisten = "127.0.0.1:{ports["worker"]}"\n',
        f'[redis]\nurl = "redis://127.0.0.1:{ports["redis"]}"\n',
        f'[graph]\nbase_url = "http://127.0.0.1:{ports["sandbox"]}"\n',
        f'[sandbox]\nlisten = "127.0.0.1:{ports["sandbox"]}"\n',
        '[webhook]\napp_secret_env = "BENCH_APP_SECRET"\n',
    ]
    for name, pnid, rate in senders:
        lines.append(
            f'[[senders]]\nname = "{name}"\nphone_number_id = "{pnid}"\nwaba_id = "200000000001"\n'
            f'access_token_env = "BENCH_TOKEN"\nrate_per_second = {rate}\n'
        )
    names = ", ".join(f'"{name}"' for name, _, _ in senders)
    lines.append(f'[[clients]]\nname = "bench"\nkey_env = "BENCH_KEY"\nsenders = [{names}]\n')
    return "".join(lines)


def worker_config(workdir, ports, phase, senders):
    """Writes a worker configuration listing only this phase's senders; returns its path."""
    path = os.path.join(workdir, f"gateway-{phase}.toml")
    with open(path, "w") as f:
        f.write(config_text(ports, senders))
    return path


def start_worker(config, workdir, name, env):
    """Starts a worker on `config`, its metrics on a free port, logging to worker-NAME.log."""
    return start([BIN, "--config", config, "worker", "--listen", "127.0.0.1:0"],
                 os.path.join(workdir, f"worker-{name}.log"), env)


# Deletes every key matching ARGV[1], in one call; returns how many.
CLEAN_SCRIPT = """
local cursor, n = "0", 0
repeat
  local page = redis.call("SCAN", cursor, "MATCH", ARGV[1], "COUNT", 1000)
  cursor = page[1]
  for _, key in ipairs(page[2]) do redis.call("UNLINK", key); n = n + 1 end
until cursor == "0"
return n
"""


def clean(redis, senders):
    """Deletes every key of these senders (streams, records, leases, parked sets, send logs): the keys
    under the prefix their phone_number_ids share, which no other phase's ids start with."""
    prefix = os.path.commonprefix([pnid for _, pnid, _ in senders])
    pattern = f"gw:{{{prefix}}}:*" if len(senders) == 1 else f"gw:{{{prefix}*"
    return int(redis.cli("eval", CLEAN_SCRIPT, "0", pattern) or 0)


def wait_settled(redis, senders, worker, deadline=60):
    """Waits until every sender's lease is held (by the one worker running), then 2 s more, and then until
    the worker spent under 5 % of a core over the last second: past its first poll of every sender's
    health, which it makes 3 s after it starts (and every 5 minutes after). Returns its CPU seconds so far."""
    keys = [f"gw:{{{pnid}}}:lease" for _, pnid, _ in senders]
    give_up = time.time() + deadline
    while int(redis.cli("exists", *keys) or 0) < len(keys):
        if worker.poll() is not None:
            sys.exit("a worker died")
        if time.time() > give_up:
            sys.exit(f"leases not all taken after {deadline} s: {redis.cli('exists', *keys)} of {len(keys)}")
        time.sleep(0.1)
    time.sleep(2)
    while True:
        before = cpu_seconds(worker.pid)
        time.sleep(1)
        if cpu_seconds(worker.pid) - before < 0.05:
            return cpu_seconds(worker.pid)
        if time.time() > give_up:
            sys.exit(f"the worker did not settle within {deadline} s")


def percentile(values, p):
    """The nearest-rank percentile of `values` (p in 0..100)."""
    ordered = sorted(values)
    return ordered[max(0, -(-len(ordered) * p // 100) - 1)]


def largest_window(times):
    """The most sends in any one-second window of these sorted Unix-ms times."""
    worst, start = 0, 0
    for end in range(len(times)):
        while times[end] - times[start] >= 1000:
            start += 1
        worst = max(worst, end - start + 1)
    return worst


def post_batches(api, messages):
    headers = {"authorization": f"Bearer {KEY}"}
    for i in range(0, len(messages), 1000):
        answer = http("POST", f"{api}/send/batch", {"messages": messages[i:i + 1000]}, headers)
        bad = [r for r in answer["results"] if "error" in r]
        if bad:
            sys.exit(f"batch refused: {bad[:3]}")


def template(sender, to):
    return {"from": sender, "to": to, "type": "template",
            "template": {"name": "hello_world", "language": {"code": "en_US"}}}


def set_limits(sandbox, on):
    rules = {"tokens": True, "validation": True, "throughput": on, "pair": on, "window": on,
             "templates": True, "users": on}
    http("PUT", f"{sandbox}/admin/rules", rules)


def accepted(sandbox):
    return http("GET", f"{sandbox}/admin/stats")["accepted"]


def drain(sandbox, expected, workers, deadline):
    """Waits until the sandbox accepted `expected` more sends; samples the workers."""
    base = accepted(sandbox)
    started = time.time()
    cpu0 = sum(cpu_seconds(w.pid) for w in workers)
    peak = 0.0
    while accepted(sandbox) - base < expected:
        peak = max(peak, sum(rss_mib(w.pid) for w in workers))
        if time.time() - started > deadline:
            sys.exit(f"drain did not finish: {accepted(sandbox) - base} of {expected}")
        for w in workers:
            if w.poll() is not None:
                sys.exit("a worker died")
        time.sleep(0.1)
    elapsed = time.time() - started
    cpu = sum(cpu_seconds(w.pid) for w in workers) - cpu0
    return elapsed, cpu, peak


def fidelity(sandbox, senders, rate):
    """Per sender: sends, largest one-second window, and sends per second first to last over `rate`."""
    report = []
    for name, pnid, _ in senders:
        rows = http("GET", f"{sandbox}/admin/messages?phone_number_id={pnid}")
        times = sorted(row["at"] for row in rows)
        worst = largest_window(times)
        span = (times[-1] - times[0]) / 1000 if len(times) > 1 else 0
        achieved = (len(times) - 1) / span if span else 0
        report.append((name, len(times), worst, achieved / rate))
    return report


def main():
    """Builds the gateway, starts Redis, the sandbox and the api, runs the wanted phases, writes the report."""
    subprocess.run([os.path.join(ROOT, "scripts", "ensure-redis-server.sh")], check=True)
    if not shutil.which("wrk"):
        subprocess.run(["apt-get", "install", "-y", "-qq", "wrk"], check=False, capture_output=True)
        if not shutil.which("wrk"):
            sys.exit("wrk is needed: sudo apt-get install -y wrk")
    subprocess.run(["cargo", "build", "--release", "-p", "gateway", "--quiet"], cwd=ROOT, check=True)
    workdir = tempfile.mkdtemp(prefix="gateway-bench-")
    redis = Redis(workdir)
    ports = {"redis": redis.port, "api": free_port(), "worker": free_port(), "sandbox": free_port()}
    senders = [("bench", "100000000001", 1000)]
    drain_senders = [(f"d{i}", str(110000000000 + i), 1000) for i in range(DRAIN_SENDERS)]
    memory_senders = [(f"m{i}", str(120000000000 + i), 70) for i in range(MEMORY_SENDERS)]
    fidelity_senders = [(f"f{i}", str(130000000000 + i), FIDELITY_RATE) for i in range(FIDELITY_SENDERS)]
    pickup_senders = [(f"p{i}", str(140000000000 + i), 70) for i in range(PICKUP_SENDERS)]
    idle_senders = [(f"i{i}", str(150000000000 + i), 70) for i in range(IDLE_SENDERS)]
    hol_senders = [("h0", "160000000001", 70)]
    slow_senders = [(f"s{i}", str(170000000000 + i), 70) for i in range(SLOW_SENDERS)]
    everyone = (senders + drain_senders + memory_senders + fidelity_senders + pickup_senders + idle_senders
                + hol_senders + slow_senders)
    # The api and the sandbox serve every sender; each phase's worker only its own.
    config = os.path.join(workdir, "gateway.toml")
    with open(config, "w") as f:
        f.write(config_text(ports, everyone))
    env = dict(os.environ, BENCH_TOKEN=TOKEN, BENCH_KEY=KEY, BENCH_APP_SECRET=APP_SECRET, RUST_LOG="warn")
    api_url = f"http://127.0.0.1:{ports['api']}"
    sandbox_url = f"http://127.0.0.1:{ports['sandbox']}"
    results = {}

    sandbox = start([BIN, "--config", config, "sandbox"], os.path.join(workdir, "sandbox.log"), env)
    api = start([BIN, "--config", config, "api"], os.path.join(workdir, "api.log"), env)
    wait_http(f"{api_url}/readyz")
    wait_http(f"{sandbox_url}/admin/stats")
    set_limits(sandbox_url, False)

    def wanted(phase):
        return not ONLY or phase in ONLY

    def own(phase, phase_senders):
        return worker_config(workdir, ports, phase, phase_senders)

    if wanted("send"):
        accept_phase(redis, api, api_url, workdir, results, senders)

    # Alternating rounds, the fastest of each compared: one round could
    # catch either worker in a slow moment of the machine.
    for _ in range(DRAIN_ROUNDS):
        if wanted("drain"):
            drain_phase(api_url, sandbox_url, own("drain", drain_senders), workdir, env, results, sandbox, redis,
                        drain_senders)
        if wanted("reference"):
            reference_phase(redis, sandbox_url, results)
    if wanted("memory"):
        memory_phase(redis, api_url, own("memory", memory_senders), workdir, env, memory_senders, results)
    if wanted("fidelity"):
        fidelity_phase(redis, api_url, sandbox_url, own("fidelity", fidelity_senders), workdir, env,
                       fidelity_senders, results)
    if wanted("pickup"):
        pickup_phase(redis, api_url, sandbox_url, own("pickup", pickup_senders), workdir, env, pickup_senders,
                     results)
    if wanted("idle"):
        idle_phase(redis, own("idle", idle_senders), workdir, env, idle_senders, results)
    if wanted("hol"):
        hol_phase(redis, api_url, sandbox_url, own("hol", hol_senders), workdir, env, hol_senders, results)
    if wanted("slow"):
        slow_phase(redis, api_url, sandbox_url, own("slow", slow_senders), workdir, env, slow_senders, results)

    stop(api)
    stop(sandbox)
    stop(redis.process)
    if ONLY:
        print(json.dumps(results, indent=1, default=str))
    else:
        write_report(results)
    shutil.rmtree(workdir, ignore_errors=True)


def accept_phase(redis, api, api_url, workdir, results, senders):
    """Raw XADD (redis-benchmark) next to POST /send and a signed POST /webhook (wrk), in rounds of the three
    back to back: each round's ratios compare runs a few seconds apart, and the round with the median /send
    ratio is reported (one round could catch either side in a slow moment of the machine)."""
    # Bulk: ten seconds of accepts at full speed stay within the sender's
    # admission cap (max_queue_seconds × rate), so every answer is a 202 and
    # the figure is the cost of storing, not of refusing.
    send = json.dumps({**template("bench", "+16505551234"), "priority": "bulk",
                       "metadata": {"campaign": "bench"}})
    # A status webhook as Meta sends it, for a sender this gateway serves.
    status = {"id": "wamid.HBgLMTY1MDU1NTEyMzQVAgARGBI1QjM0RjFCMzFCNUQ0NDE2OTcA", "status": "delivered",
              "timestamp": "1767225600", "recipient_id": "16505551234",
              "biz_opaque_callback_data": "100000000001-1767225600000-0",
              "pricing": {"billable": True, "pricing_model": "PMP", "type": "regular", "category": "utility"}}
    hook = json.dumps({"object": "whatsapp_business_account", "entry": [{"id": "200000000001", "changes": [
        {"field": "messages", "value": {"messaging_product": "whatsapp",
                                        "metadata": {"display_phone_number": "15550001111",
                                                     "phone_number_id": "100000000001"},
                                        "statuses": [status]}}]}]}, separators=(",", ":"))
    signature = "sha256=" + hmac.new(APP_SECRET.encode(), hook.encode(), hashlib.sha256).hexdigest()
    for _ in range(ACCEPT_ROUNDS):
        print(f"== raw XADD (redis-benchmark, {CONNECTIONS} connections)")
        csv = subprocess.run(
            ["redis-benchmark", "-p", str(redis.port), "-c", str(CONNECTIONS), "-n", "400000", "--csv",
             "XADD", "bench:raw", "*", "snd", "bench", "rcpt", "+16505551234", "kind", "template",
             "body", '{"messaging_product":"whatsapp","type":"template"}'],
            capture_output=True, text=True, check=True,
        ).stdout
        xadd = float(re.findall(r'"([0-9.]+)"', csv.strip().splitlines()[-1])[0])
        redis.cli("del", "bench:raw")
        print(f"   {xadd:.0f} XADD/s")

        print(f"== POST /send (wrk, {CONNECTIONS} connections, {SEND_SECONDS} s)")
        sent = wrk(api, f"{api_url}/send", workdir, send, {"Authorization": f"Bearer {KEY}"})
        print(f"   {sent['rate']:.0f} /send/s ({sent['rate'] / xadd:.2f} of XADD), non-2xx {sent['non2xx']}")

        print(f"== POST /webhook, signed (wrk, {CONNECTIONS} connections, {SEND_SECONDS} s)")
        hooked = wrk(api, f"{api_url}/webhook", workdir, hook, {"X-Hub-Signature-256": signature})
        print(f"   {hooked['rate']:.0f} /webhook/s ({hooked['rate'] / xadd:.2f} of XADD), non-2xx {hooked['non2xx']}")
        results.setdefault("accept_rounds", []).append(dict(xadd=xadd, send=sent, webhook=hooked))
        # The /send backlog is for one sender at 70/s, and the webhooks are
        # about messages that do not exist: not something to drain here.
        clean(redis, senders)
        redis.cli("del", "gw:events")


def wrk(api, url, workdir, body, headers):
    """POSTs `body` to `url` for SEND_SECONDS with wrk; rate, latency and api CPU per request."""
    lua = os.path.join(workdir, "post.lua")
    header_lines = "".join(f'wrk.headers["{k}"] = "{v}"\n' for k, v in headers.items())
    with open(lua, "w") as f:
        f.write(
            'wrk.method = "POST"\nwrk.headers["Content-Type"] = "application/json"\n'
            f'{header_lines}wrk.body = [[{body}]]\n'
            "done = function(summary, latency, requests)\n"
            '  io.write(string.format("RESULT %d %d %d %.3f %.3f\\n", summary.requests, summary.errors.status,\n'
            "    summary.errors.connect + summary.errors.read + summary.errors.write + summary.errors.timeout,\n"
            "    latency:percentile(50) / 1000, latency:percentile(99) / 1000))\nend\n"
        )
    api_cpu0 = cpu_seconds(api.pid)
    out = subprocess.run(["wrk", "-t1", f"-c{CONNECTIONS}", f"-d{SEND_SECONDS}s", "-s", lua, url],
                         capture_output=True, text=True, check=True).stdout
    api_cpu = cpu_seconds(api.pid) - api_cpu0
    _, requests, non2xx, socket_errors, p50, p99 = next(l for l in out.splitlines() if l.startswith("RESULT")).split()
    rate = int(requests) / SEND_SECONDS
    return dict(rate=rate, non2xx=int(non2xx), socket_errors=int(socket_errors), p50=float(p50), p99=float(p99),
                cpu_us=api_cpu / max(int(requests), 1) * 1e6)


def drain_phase(api_url, sandbox_url, config, workdir, env, results, sandbox, redis, drain_senders):
    """One worker drains 100,000 messages with the sandbox's limits off: rate, CPU and memory per message."""
    print(f"== drain: one worker, {DRAIN_MESSAGES} messages over {DRAIN_SENDERS} senders, sandbox limits off")
    messages = [template(f"d{i % DRAIN_SENDERS}", f"+1{2000000000 + i}") for i in range(DRAIN_MESSAGES)]
    post_batches(api_url, messages)
    worker = start_worker(config, workdir, "drain", env)
    # What the other processes on the machine spend per message: with all
    # of them on two cores, their sum is what bounds the drain.
    others = {"sandbox": sandbox.pid, "redis": redis.process.pid}
    others_before = {name: cpu_seconds(pid) for name, pid in others.items()}
    elapsed, cpu, peak = drain(sandbox_url, DRAIN_MESSAGES, [worker], 300)
    others_ms = {name: (cpu_seconds(pid) - others_before[name]) / DRAIN_MESSAGES * 1000 for name, pid in others.items()}
    keep_best(results, "drain", dict(rate=DRAIN_MESSAGES / elapsed, cpu_ms=cpu / DRAIN_MESSAGES * 1000, rss=peak,
                            sandbox_ms=others_ms["sandbox"], redis_ms=others_ms["redis"]))
    print(f"   {DRAIN_MESSAGES / elapsed:.0f} messages/s, {cpu / DRAIN_MESSAGES * 1000:.3f} ms CPU each, {peak:.1f} MiB; "
          f"sandbox {others_ms['sandbox']:.3f} ms, Redis {others_ms['redis']:.3f} ms per message")
    stop(worker)
    clean(redis, drain_senders)


def keep_best(results, name, run):
    """Keeps every run's rate under NAME_rates, and the fastest run under NAME."""
    results.setdefault(f"{name}_rates", []).append(run["rate"])
    if run["rate"] > results.get(name, {}).get("rate", 0):
        results[name] = run


def reference_phase(redis, sandbox_url, results):
    """The apalis reference worker drains the same 100,000 messages on the same Redis and sandbox."""
    print("== drain: apalis reference on the same Redis and sandbox")
    reference = subprocess.run(
        [os.path.join(ROOT, "benches", "reference-apalis", "run.sh"), str(redis.port), sandbox_url, TOKEN,
         "100000000001", str(DRAIN_MESSAGES)],
        capture_output=True, text=True,
    )
    line = next((l for l in reference.stdout.splitlines() if l.startswith("REFERENCE")), None)
    if line:
        fields = dict(item.split("=") for item in line.split()[1:])
        # Timed as the gateway's drain is: until the sandbox accepted the
        # last send. Its acknowledgements sometimes lag by ~30 s (they wait
        # for its next heartbeat; see its README): not sending time.
        keep_best(results, "reference", dict(rate=float(fields["sent_per_second"]),
                                             cpu_ms=float(fields["cpu_ms_per_message"]),
                                             rss=float(fields["peak_rss_mib"])))
        print(f"   {line}")
    else:
        print(f"   reference failed: {reference.stderr[-2000:]}")
    redis.cli("-n", os.environ.get("REFERENCE_REDIS_DB", "9"), "flushdb")


def memory_phase(redis, api_url, config, workdir, env, memory_senders, results):
    """Peak resident set of one worker in its first 10 s on a 100,000-message backlog."""
    print(f"== memory: one worker, 100,000 messages queued across {MEMORY_SENDERS} senders")
    messages = [template(f"m{i % MEMORY_SENDERS}", f"+1{3000000000 + i}") for i in range(100_000)]
    post_batches(api_url, messages)
    worker = start_worker(config, workdir, "memory", env)
    # The peak, with how much of it is the worker's own (heap) rather than
    # file pages it shares (the binary, which the api and sandbox run too),
    # and its open sockets then (mostly connections to the Graph API).
    peak, anon, sockets, started = 0.0, 0.0, 0, time.time()
    while time.time() - started < 10:
        rss = rss_mib(worker.pid)
        if rss > peak:
            peak, anon, sockets = rss, rss_mib(worker.pid, "RssAnon"), open_sockets(worker.pid)
        time.sleep(0.1)
    left = sum(int(redis.cli("xlen", f"gw:{{{pnid}}}:queue") or 0) for _, pnid, _ in memory_senders)
    results["memory"] = dict(rss=peak, anon=anon, sockets=sockets, left=left)
    print(f"   peak {peak:.1f} MiB ({anon:.1f} MiB anonymous, {sockets} sockets) after 10 s, "
          f"{left} messages still queued")
    stop(worker)
    clean(redis, memory_senders)


def fidelity_phase(redis, api_url, sandbox_url, config, workdir, env, fidelity_senders, results):
    """10 senders at 70/s with Meta's limits on, drained by 1 and then 3 workers: windows and achieved rate."""
    results["fidelity"] = {}
    for count in (1, 3):
        print(f"== rate fidelity: {FIDELITY_SENDERS} senders at {FIDELITY_RATE}/s, {FIDELITY_SECONDS} s of backlog, "
              f"{count} worker(s), Meta's limits on")
        http("POST", f"{sandbox_url}/admin/reset")
        set_limits(sandbox_url, True)
        total = FIDELITY_SENDERS * FIDELITY_RATE * FIDELITY_SECONDS
        messages = [template(f"f{i % FIDELITY_SENDERS}", f"+1{4000000000 + i}") for i in range(total)]
        post_batches(api_url, messages)
        workers = [start_worker(config, workdir, f"fidelity-{count}-{n}", env) for n in range(count)]
        drain(sandbox_url, total, workers, FIDELITY_SECONDS * 3 + 60)
        for w in workers:
            stop(w)
        clean(redis, fidelity_senders)
        stats = http("GET", f"{sandbox_url}/admin/stats")
        report = fidelity(sandbox_url, fidelity_senders, FIDELITY_RATE)
        results["fidelity"][count] = dict(report=report, rejections=stats["rejections"])
        worst = max(r[2] for r in report)
        lowest = min(r[3] for r in report)
        print(f"   largest one-second window {worst} (limit {FIDELITY_RATE}), lowest achieved {lowest:.3f} of the rate, "
              f"rejections {stats['rejections']}")


def pickup_phase(redis, api_url, sandbox_url, config, workdir, env, pickup_senders, results):
    """Pick-up latency to an idle sender: POST /send to the sandbox's acceptance, for a trickle of messages."""
    count = PICKUP_PER_SECOND * PICKUP_SECONDS
    print(f"== pick-up: {PICKUP_PER_SECOND} messages/s for {PICKUP_SECONDS} s, each to a random one of "
          f"{PICKUP_SENDERS} idle senders, one worker, Meta's limits on")
    http("POST", f"{sandbox_url}/admin/reset")
    set_limits(sandbox_url, True)
    worker = start_worker(config, workdir, "pickup", env)
    wait_settled(redis, pickup_senders, worker)
    posted = trickle(api_url, pickup_senders, count)
    latencies, by_callback = pickup_latencies(sandbox_url, pickup_senders, posted, worker)
    stop(worker)
    clean(redis, pickup_senders)
    results["pickup"] = dict(count=len(latencies), p50=percentile(latencies, 50), p99=percentile(latencies, 99),
                             max=max(latencies), by_callback=by_callback)
    pickup = results["pickup"]
    print(f"   {pickup['count']} messages: p50 {pickup['p50']:.1f} ms, p99 {pickup['p99']:.1f} ms, "
          f"max {pickup['max']:.1f} ms (goal p99 <= 5 ms)")


def trickle(api, senders, count):
    """POSTs `count` messages from one thread, one at each tick of 1/PICKUP_PER_SECOND s, each to a random
    sender and its own recipient; returns (id, recipient as the sandbox keys it, wall clock before the POST)."""
    headers = {"authorization": f"Bearer {KEY}"}
    pick = random.Random(1)
    tick = 1 / PICKUP_PER_SECOND
    posted = []
    for i in range(count):
        time.sleep(tick - time.time() % tick)
        to = f"1{5000000000 + i}"
        before = time.time()
        answer = http("POST", f"{api}/send", template(pick.choice(senders)[0], f"+{to}"), headers)
        posted.append((answer["id"], to, before))
    return posted


def pickup_latencies(sandbox, senders, posted, worker, deadline=30):
    """Waits until the sandbox accepted every posted message; each one's acceptance minus its POST, in ms,
    and how many rows were matched by their biz_opaque_callback_data (the id /send returned); the others
    are matched by their recipient."""
    pnids = {pnid for _, pnid, _ in senders}
    give_up = time.time() + deadline
    while True:
        accepted_rows = [row for row in http("GET", f"{sandbox}/admin/messages") if row["phone_number_id"] in pnids]
        by_id = {row["biz_opaque_callback_data"]: row["at"] for row in accepted_rows
                 if row.get("biz_opaque_callback_data")}
        by_recipient = {row["recipient"]: row["at"] for row in accepted_rows}
        found = [by_id.get(message_id, by_recipient.get(to)) for message_id, to, _ in posted]
        if None not in found:
            by_callback = sum(1 for message_id, _, _ in posted if message_id in by_id)
            return [at - before * 1000 for at, (_, _, before) in zip(found, posted)], by_callback
        if worker.poll() is not None:
            sys.exit("a worker died")
        if time.time() > give_up:
            sys.exit(f"pick-up: {found.count(None)} of {len(posted)} messages never reached the sandbox")
        time.sleep(0.2)


def idle_phase(redis, config, workdir, env, idle_senders, results):
    """What one worker holding 1,000 senders with nothing queued costs over 30 s: its CPU and memory,
    and Redis's CPU and commands."""
    print(f"== idle: one worker holding {IDLE_SENDERS} senders, nothing queued, {IDLE_SECONDS} s")
    worker = start_worker(config, workdir, "idle", env)
    settling = wait_settled(redis, idle_senders, worker)
    redis.cli("config", "resetstat")
    worker_cpu0, redis_cpu0, started = cpu_seconds(worker.pid), cpu_seconds(redis.process.pid), time.time()
    time.sleep(IDLE_SECONDS)
    elapsed = time.time() - started
    worker_cpu = (cpu_seconds(worker.pid) - worker_cpu0) / elapsed * 100
    redis_cpu = (cpu_seconds(redis.process.pid) - redis_cpu0) / elapsed * 100
    commands = command_calls(redis)
    rss = rss_mib(worker.pid)
    if worker.poll() is not None:
        sys.exit("a worker died")
    stop(worker)
    clean(redis, idle_senders)
    busiest = dict(sorted(commands.items(), key=lambda item: -item[1])[:5])
    results["idle"] = dict(worker_cpu=worker_cpu, redis_cpu=redis_cpu, rss=rss, commands=sum(commands.values()),
                           busiest=busiest, settling=settling)
    print(f"   worker {worker_cpu:.2f} % CPU, Redis {redis_cpu:.2f} % CPU (goal < 1 % each), worker {rss:.1f} MiB, "
          f"{sum(commands.values())} Redis commands in {IDLE_SECONDS} s {busiest}; "
          f"{settling:.2f} s of worker CPU from its start to settled")


def command_calls(redis):
    """Calls per command since the last CONFIG RESETSTAT, from INFO commandstats."""
    calls = {}
    for line in redis.cli("info", "commandstats").splitlines():
        match = re.match(r"cmdstat_(\S+):calls=(\d+)", line)
        if match:
            calls[match.group(1)] = int(match.group(2))
    return calls


def hol_phase(redis, api_url, sandbox_url, config, workdir, env, hol_senders, results):
    """Head-of-line: 500 messages to distinct recipients queued behind 40 to each of 5 recipients that
    Meta's pair rule holds to one per 6 s; how long the 500 take against 500 at the sender's rate."""
    name, pnid, rate = hol_senders[0]
    print(f"== head-of-line: one sender at {rate}/s, {HOL_EACH} messages to each of {HOL_BLOCKED} recipients, "
          f"then {HOL_OTHERS} to distinct recipients; Meta's limits on")
    http("POST", f"{sandbox_url}/admin/reset")
    set_limits(sandbox_url, True)
    blocked = [template(name, f"+1{6000000000 + k % HOL_BLOCKED}") for k in range(HOL_BLOCKED * HOL_EACH)]
    others = [f"1{6100000000 + i}" for i in range(HOL_OTHERS)]
    post_batches(api_url, blocked + [template(name, f"+{to}") for to in others])
    worker = start_worker(config, workdir, "hol", env)
    first, last, sent = wait_recipients(sandbox_url, pnid, set(others), worker, 120)
    stop(worker)
    clean(redis, hol_senders)
    stats = http("GET", f"{sandbox_url}/admin/stats")
    elapsed, ideal = (last - first) / 1000, HOL_OTHERS / rate
    results["hol"] = dict(elapsed=elapsed, ideal=ideal, ratio=elapsed / ideal, blocked_sent=sent - HOL_OTHERS,
                          rejections=stats["rejections"])
    print(f"   first send to the last of the {HOL_OTHERS}: {elapsed:.2f} s, ideal {ideal:.2f} s, "
          f"ratio {elapsed / ideal:.3f} (goal <= 1.25); {sent - HOL_OTHERS} sends to A-E by then, "
          f"rejections {stats['rejections']}")


def wait_recipients(sandbox, pnid, recipients, worker, deadline):
    """Waits until the sandbox accepted a send from `pnid` to each of `recipients`; returns the first
    accepted send's time, the last of those recipients' (Unix ms), and the sender's sends so far."""
    give_up = time.time() + deadline
    while True:
        accepted_rows = http("GET", f"{sandbox}/admin/messages?phone_number_id={pnid}")
        arrived = [row["at"] for row in accepted_rows if row["recipient"] in recipients]
        if len(arrived) >= len(recipients):
            return min(row["at"] for row in accepted_rows), max(arrived), len(accepted_rows)
        if worker.poll() is not None:
            sys.exit("a worker died")
        if time.time() > give_up:
            sys.exit(f"head-of-line: {len(arrived)} of {len(recipients)} after {deadline} s")
        time.sleep(0.1)


def slow_phase(redis, api_url, sandbox_url, config, workdir, env, slow_senders, results):
    """10 senders at 70/s with Meta's limits on and the sandbox answering each send in 400 ms, then 1,500 ms:
    the steady rate each sender reaches, and its largest one-second window."""
    results["slow"] = {}
    rate = slow_senders[0][2]
    for run, latency in enumerate(SLOW_LATENCIES_MS):
        print(f"== slow Meta: {SLOW_SENDERS} senders at {rate}/s, {SLOW_SECONDS} s of backlog, one worker, "
              f"Meta's limits on, {latency} ms per send")
        http("POST", f"{sandbox_url}/admin/reset")
        set_limits(sandbox_url, True)
        http("PUT", f"{sandbox_url}/admin/faults", {"latency_ms": latency})
        total = SLOW_SENDERS * rate * SLOW_SECONDS
        messages = [template(f"s{i % SLOW_SENDERS}", f"+1{7000000000 + run * 1000000 + i}") for i in range(total)]
        post_batches(api_url, messages)
        worker = start_worker(config, workdir, f"slow-{latency}", env)
        drain(sandbox_url, total, [worker], SLOW_SECONDS * 3 + 60)
        stop(worker)
        http("PUT", f"{sandbox_url}/admin/faults", {"latency_ms": 0})
        clean(redis, slow_senders)
        stats = http("GET", f"{sandbox_url}/admin/stats")
        report = steady_rates(sandbox_url, slow_senders)
        results["slow"][latency] = dict(report=report, lowest=min(r[2] for r in report),
                                        worst=max(r[1] for r in report), rejections=stats["rejections"])
        slow = results["slow"][latency]
        print(f"   lowest steady rate {slow['lowest']:.3f} of {rate}/s (goal >= 0.95), largest one-second window "
              f"{slow['worst']} (limit {rate}), rejections {stats['rejections']}")


def steady_rates(sandbox, senders):
    """Per sender: sends, largest one-second window, and sends per second between its first send + 3 s
    and its last send - 1 s over its configured rate."""
    report = []
    for name, pnid, rate in senders:
        times = sorted(row["at"] for row in http("GET", f"{sandbox}/admin/messages?phone_number_id={pnid}"))
        start, end = times[0] + 3000, times[-1] - 1000
        inside = sum(1 for t in times if start <= t <= end)
        steady = inside / ((end - start) / 1000) / rate if end > start else 0
        report.append((name, largest_window(times), steady, len(times)))
    return report


def run_by(*phases):
    """The line under a BENCHMARKS.md heading: the command that wrote it, and how to rerun just that part."""
    return (f"Command: `make bench`; this part alone: `BENCH_ONLY={','.join(phases)} scripts/bench.py` "
            "(prints its figures, leaves this file as it is).")


def rates(r, name):
    """Every run's rate of a drain, as listed in the report."""
    return ", ".join(f"{rate:.0f}" for rate in r.get(f"{name}_rates", []))


def write_report(r):
    """Writes BENCHMARKS.md from the results of a full run."""
    cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), "?")
    memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    redis_version = subprocess.run(["redis-server", "--version"], capture_output=True, text=True).stdout.split()[2]
    rounds = sorted(r["accept_rounds"], key=lambda a: a["send"]["rate"] / a["xadd"])
    median = rounds[len(rounds) // 2]
    s, w, d, xadd = median["send"], median["webhook"], r["drain"], median["xadd"]

    def by_round(name):
        return ", ".join(f"{a[name]['rate'] / a['xadd']:.2f}" for a in r["accept_rounds"])

    ref = r.get("reference")
    lines = [
        "# Benchmarks",
        "",
        f"Written by `make bench` (scripts/bench.py) on {time.strftime('%Y-%m-%d')}: {os.cpu_count()} cores ({cpu}), "
        f"{memory:.0f} GiB, Redis {redis_version}, {platform.system()}; load generators, Redis, the sandbox and the "
        "gateway share the machine. Each reference is measured in the same run, so the ratios hold even though the "
        "machine is noisy; the absolute numbers move from run to run.",
        "",
        "## Accepting: `POST /send` and `POST /webhook` against raw XADD",
        "",
        run_by("send"),
        "",
        f"{ACCEPT_ROUNDS} rounds, each running the three back to back, so that a ratio compares runs seconds apart; shown "
        "is the round whose `/send` ratio is the median, with every round's ratios listed.",
        "",
        "| what | command | result |",
        "| --- | --- | --- |",
        f"| raw XADD on the bench Redis | `redis-benchmark -c {CONNECTIONS} -n 400000 XADD bench:raw * …` | {xadd:.0f} per second |",
        f"| `POST /send` (auth, validation, one XADD) | `wrk -t1 -c{CONNECTIONS} -d{SEND_SECONDS}s -s post.lua /send` | "
        f"{s['rate']:.0f} per second, p50 {s['p50']:.2f} ms, p99 {s['p99']:.2f} ms, non-2xx {s['non2xx']}, "
        f"{s['cpu_us']:.0f} µs of api CPU each |",
        f"| ratio | | **{s['rate'] / xadd:.2f}** of raw XADD (goal ≥ 0.5; rounds: {by_round('send')}) |",
        f"| `POST /webhook`: one-status Meta webhook (signature check over the raw body, parse, one XADD) | "
        f"`wrk -t1 -c{CONNECTIONS} -d{SEND_SECONDS}s -s post.lua /webhook` | "
        f"{w['rate']:.0f} per second, p50 {w['p50']:.2f} ms, p99 {w['p99']:.2f} ms, non-2xx {w['non2xx']}, "
        f"{w['cpu_us']:.0f} µs of api CPU each |",
        f"| ratio | | **{w['rate'] / xadd:.2f}** of raw XADD (rounds: {by_round('webhook')}) |",
        "",
        "## Draining: one worker against the sandbox with its limits off",
        "",
        run_by("drain", "reference"),
        "",
        f"{DRAIN_MESSAGES:,} template messages queued over {DRAIN_SENDERS} senders at 1,000/s each, every message to its "
        "own recipient; the worker (configured with those senders only) reads, paces (send window, pair limiter), POSTs to the sandbox, and records the wamid "
        f"and acknowledges in one script per message. Each worker is timed from its start until the sandbox accepted "
        "the last message (the reference's acknowledgements sometimes lag its sends by ~30 s, waiting for its next "
        f"heartbeat, as its README says). {DRAIN_ROUNDS} rounds, alternating; the fastest run of each is shown and "
        "compared, the other rates are listed.",
        "",
        "| worker | messages per second | CPU per message | peak resident |",
        "| --- | --- | --- | --- |",
        f"| gateway worker | {d['rate']:.0f} (runs: {rates(r, 'drain')}) | {d['cpu_ms']:.3f} ms | {d['rss']:.1f} MiB |",
    ]
    footnote = (f"During the gateway's drain the sandbox spent {d['sandbox_ms']:.3f} ms and Redis {d['redis_ms']:.3f} ms "
                f"of CPU per message besides the worker's {d['cpu_ms']:.3f} ms: together "
                f"{d['cpu_ms'] + d['sandbox_ms'] + d['redis_ms']:.3f} ms, so two cores cannot drain faster than about "
                f"{2 / (d['cpu_ms'] + d['sandbox_ms'] + d['redis_ms']) * 1000:,.0f} per second whatever the worker does.")
    if ref:
        lines += [
            f"| apalis 1.0 reference (benches/reference-apalis: apalis-redis, rate-limit and retry layers, reqwest) | "
            f"{ref['rate']:.0f} (runs: {rates(r, 'reference')}) | {ref['cpu_ms']:.3f} ms | {ref['rss']:.1f} MiB |",
            f"| ratio | **{d['rate'] / ref['rate']:.2f}** | | |",
        ]
    lines += ["", footnote]
    m = r["memory"]
    lines += [
        "",
        "## Memory: one worker with 100,000 messages queued across 100 senders",
        "",
        run_by("memory"),
        "",
        f"Peak resident set during the first 10 s of draining: **{m['rss']:.1f} MiB** (goal < 32 MiB), of which "
        f"{m['anon']:.1f} MiB anonymous (the rest is file pages, mostly the binary's code, shared with the api and "
        f"the sandbox), with {m['sockets']} sockets open then; {m['left']:,} messages were still queued. "
        "Calls in flight follow each sender's rate × Meta's answer time (at least 3 per sender), and each keeps "
        "its connection: on a loaded machine the sandbox answers more slowly, so more are open and the peak is "
        "higher. The worker holds at most `worker.read_ahead` messages per "
        "sender and priority in memory, from the read to the end of the last attempt; the backlog stays in Redis.",
        "",
        "## Rate fidelity: 10 senders at 70/s, Meta's limits on in the sandbox",
        "",
        run_by("fidelity"),
        "",
        f"{FIDELITY_SECONDS} s of backlog per sender; the sandbox timestamps every accepted send. Achieved = sends "
        "per second between a sender's first and last send, over its configured rate.",
        "",
        "| workers | largest one-second window (any sender) | lowest achieved / configured | 130429 / 131056 from the sandbox |",
        "| --- | --- | --- | --- |",
    ]
    for count, f in r["fidelity"].items():
        worst = max(x[2] for x in f["report"])
        lowest = min(x[3] for x in f["report"])
        rejections = f["rejections"]
        lines.append(f"| {count} | {worst} (limit {FIDELITY_RATE}) | {lowest:.3f} | "
                     f"{rejections.get('130429', 0)} / {rejections.get('131056', 0)} |")
    lines += pickup_report(r["pickup"]) + idle_report(r["idle"]) + hol_report(r["hol"]) + slow_report(r["slow"])
    lines.append("")
    with open(os.path.join(ROOT, "BENCHMARKS.md"), "w") as f:
        f.write("\n".join(lines))
    print("wrote BENCHMARKS.md")


def pickup_report(p):
    """The pick-up section of BENCHMARKS.md."""
    return [
        "",
        "## Pick-up: a message to an idle sender",
        "",
        run_by("pickup"),
        "",
        f"{PICKUP_SENDERS} senders at 70/s, one worker holding all of their leases and settled (as in Idle below); then "
        f"{PICKUP_PER_SECOND} messages a second for {PICKUP_SECONDS} s from one client thread, each to a random one of "
        "the senders and its own recipient, one `POST /send` each, Meta's limits on. Latency = the sandbox's "
        "acceptance time (Unix ms) minus the wall clock just before the POST: the api's answer, the worker's "
        "wake-up and read, and the Graph call. The sandbox stamps whole milliseconds, truncated, so a figure may "
        "read up to 1 ms under the true one (a p50 below 0 means under a millisecond).",
        "",
        "| messages | p50 | p99 | max | goal |",
        "| --- | --- | --- | --- | --- |",
        f"| {p['count']} | {p['p50']:.1f} ms | **{p['p99']:.1f} ms** | {p['max']:.1f} ms | p99 ≤ 5 ms |",
    ]


def idle_report(i):
    """The idle section of BENCHMARKS.md."""
    # A `|` in a command's name (`client|trackinginfo`) would end the table cell.
    busiest = ", ".join(name.replace("|", "\\|") + f" {calls}" for name, calls in i["busiest"].items())
    return [
        "",
        f"## Idle: one worker holding {IDLE_SENDERS:,} senders with nothing queued",
        "",
        run_by("idle"),
        "",
        f"Measured over {IDLE_SECONDS} s once the worker held every lease and had settled (2 s more, and past its "
        "first poll of every sender's health, 3 s after it starts). CPU is a percentage of one core "
        "(/proc/PID/stat); commands are every Redis command in those seconds (`CONFIG RESETSTAT`, then "
        "`INFO commandstats`), the api's included. Not in the window: the worker spent "
        f"{i['settling']:.2f} s of CPU from its start to settled, most of it on that health poll (one Graph API "
        "call per sender), which it repeats every 5 minutes.",
        "",
        "| worker CPU | Redis CPU | worker resident at the end | Redis commands | goal |",
        "| --- | --- | --- | --- | --- |",
        f"| **{i['worker_cpu']:.2f} %** | **{i['redis_cpu']:.2f} %** | {i['rss']:.1f} MiB | {i['commands']:,} "
        f"({busiest}) | CPU < 1 % each |",
    ]


def hol_report(h):
    """The head-of-line section of BENCHMARKS.md."""
    return [
        "",
        "## Head-of-line: recipients held by the pair limit ahead of everyone else",
        "",
        run_by("hol"),
        "",
        f"One sender at 70/s, Meta's limits on (one message per 6 s to a recipient). Queued before the worker starts: "
        f"{HOL_EACH} messages to each of {HOL_BLOCKED} recipients A–E, interleaved, then {HOL_OTHERS} messages to "
        f"{HOL_OTHERS} other recipients. Time from the first send the sandbox accepted to the last of the "
        f"{HOL_OTHERS}, against {HOL_OTHERS} at the sender's rate; the worker is stopped then, with most of A–E's "
        "messages still waiting their turn.",
        "",
        "| first send to the last of the 500 | ideal | ratio | sends to A–E by then | 130429 / 131056 from the sandbox | goal |",
        "| --- | --- | --- | --- | --- | --- |",
        f"| {h['elapsed']:.2f} s | {h['ideal']:.2f} s | **{h['ratio']:.2f}** | {h['blocked_sent']} | "
        f"{h['rejections'].get('130429', 0)} / {h['rejections'].get('131056', 0)} | ≤ 1.25 |",
    ]


def slow_report(slow):
    """The slow-Meta section of BENCHMARKS.md."""
    lines = [
        "",
        "## Slow Meta: 10 senders at 70/s while the sandbox answers slowly",
        "",
        run_by("slow"),
        "",
        f"Meta's limits on, the sandbox holding every send for the given time before answering (`PUT /admin/faults "
        f"{{\"latency_ms\": N}}`), {SLOW_SECONDS} s of backlog per sender, one worker. Steady rate = a sender's sends "
        "between its first send + 3 s and its last send − 1 s, per second, over 70.",
        "",
        "| Meta's answer time | lowest steady rate / configured (any sender) | largest one-second window | "
        "130429 / 131056 from the sandbox | goal |",
        "| --- | --- | --- | --- | --- |",
    ]
    for latency, s in slow.items():
        lines.append(f"| {latency} ms | **{s['lowest']:.3f}** | {s['worst']} (limit 70) | "
                     f"{s['rejections'].get('130429', 0)} / {s['rejections'].get('131056', 0)} | ≥ 0.95 |")
    return lines


if __name__ == "__main__":
    try:
        main()
    finally:
        for process in PROCESSES:
            if process.poll() is None:
                process.kill()
                process.wait()
