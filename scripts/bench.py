#!/usr/bin/env python3
"""`make bench`: measures the gateway against its references in one run and
writes BENCHMARKS.md. Everything runs on loopback, on free ports, with a
private redis-server; every process started here is stopped by its PID.

1. accepting: raw XADD (redis-benchmark) next to POST /send and a signed
   POST /webhook (wrk), 64 connections
2. draining: one worker against the sandbox with its limits off, next to the
   apalis reference worker (benches/reference-apalis) on the same sandbox
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
    """Deletes every key of these senders (streams, records, leases, parked sets, send logs)."""
    prefix = os.path.commonprefix([pnid for _, pnid, _ in senders])
    return int(redis.cli("eval", CLEAN_SCRIPT, "0", f"gw:{{{prefix}*") or 0)


def wait_leases(redis, senders, worker, deadline=60):
    """Waits until every sender's lease is held (by the one worker running), then 2 s more to settle."""
    keys = [f"gw:{{{pnid}}}:lease" for _, pnid, _ in senders]
    give_up = time.time() + deadline
    while int(redis.cli("exists", *keys) or 0) < len(keys):
        if worker.poll() is not None:
            sys.exit("a worker died")
        if time.time() > give_up:
            sys.exit(f"leases not all taken after {deadline} s: {redis.cli('exists', *keys)} of {len(keys)}")
        time.sleep(0.1)
    time.sleep(2)


def percentile(values, p):
    """The nearest-rank percentile of `values` (p in 0..100)."""
    ordered = sorted(values)
    return ordered[max(0, -(-len(ordered) * p // 100) - 1)]


def sandbox_rows(sandbox, senders):
    """The sandbox's accepted sends for these senders, sender by sender."""
    return [row for _, pnid, _ in senders
            for row in http("GET", f"{sandbox}/admin/messages?phone_number_id={pnid}")]


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
    subprocess.run([os.path.join(ROOT, "scripts", "ensure-redis-server.sh")], check=True)
    if not shutil.which("wrk"):
        subprocess.run(["apt-get", "install", "-y", "-qq", "wrk"], check=False, capture_output=True)
        if not shutil.which("wrk"):
            sys.exit("wrk is needed: sudo apt-get install -y wrk")
    subprocess.run(["cargo", "build", "--release", "-p", "gateway", "--quiet"], cwd=ROOT, check=True)
    workdir = tempfile.mkdtemp(prefix="gateway-bench-")
    redis = Redis(workdir)
    ports = {"redis": redis.port, "api": free_port(), "worker": free_port(), "sandbox": free_port()}
    senders = [("bench", "100000000001", 70)]
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
        accept_phase(redis, api, api_url, workdir, results)
    # The /send backlog is for one sender at 70/s, and the webhooks are about
    # messages that do not exist: not something to drain here.
    clean(redis, senders)
    redis.cli("del", "gw:events")

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


def accept_phase(redis, api, api_url, workdir, results):
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
    body = json.dumps({**template("bench", "+16505551234"), "metadata": {"campaign": "bench"}})
    results["send"] = dict(xadd=xadd, **wrk(api, f"{api_url}/send", workdir, body,
                                             {"Authorization": f"Bearer {KEY}"}))
    send = results["send"]
    print(f"   {send['rate']:.0f} /send/s ({send['rate'] / xadd:.2f} of XADD), non-2xx {send['non2xx']}")

    print(f"== POST /webhook, signed (wrk, {CONNECTIONS} connections, {SEND_SECONDS} s)")
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
    results["webhook"] = wrk(api, f"{api_url}/webhook", workdir, hook, {"X-Hub-Signature-256": signature})
    hook_result = results["webhook"]
    print(f"   {hook_result['rate']:.0f} /webhook/s ({hook_result['rate'] / xadd:.2f} of XADD), "
          f"non-2xx {hook_result['non2xx']}")


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


def drain_phase(api_url, sandbox_url, config, workdir, env, results, sandbox, redis):
    print(f"== drain: one worker, {DRAIN_MESSAGES} messages over {DRAIN_SENDERS} senders, sandbox limits off")
    messages = [template(f"d{i % DRAIN_SENDERS}", f"+1{2000000000 + i}") for i in range(DRAIN_MESSAGES)]
    post_batches(api_url, messages)
    worker = start([BIN, "--config", config, "worker"], os.path.join(workdir, "worker.log"), env)
    # What the other processes on the machine spend per message: with all
    # of them on two cores, their sum is what bounds the drain.
    others = {"sandbox": sandbox.pid, "redis": redis.process.pid}
    others_before = {name: cpu_seconds(pid) for name, pid in others.items()}
    elapsed, cpu, peak = drain(sandbox_url, DRAIN_MESSAGES, [worker], 300)
    others_ms = {name: (cpu_seconds(pid) - others_before[name]) / DRAIN_MESSAGES * 1000 for name, pid in others.items()}
    results["drain"] = dict(rate=DRAIN_MESSAGES / elapsed, cpu_ms=cpu / DRAIN_MESSAGES * 1000, rss=peak,
                            sandbox_ms=others_ms["sandbox"], redis_ms=others_ms["redis"])
    print(f"   {DRAIN_MESSAGES / elapsed:.0f} messages/s, {cpu / DRAIN_MESSAGES * 1000:.3f} ms CPU each, {peak:.1f} MiB; "
          f"sandbox {others_ms['sandbox']:.3f} ms, Redis {others_ms['redis']:.3f} ms per message")
    stop(worker)


def reference_phase(redis, sandbox_url, results):
    print("== drain: apalis reference on the same Redis and sandbox")
    reference = subprocess.run(
        [os.path.join(ROOT, "benches", "reference-apalis", "run.sh"), str(redis.port), sandbox_url, TOKEN,
         "100000000001", str(DRAIN_MESSAGES)],
        capture_output=True, text=True,
    )
    line = next((l for l in reference.stdout.splitlines() if l.startswith("REFERENCE")), None)
    if line:
        fields = dict(item.split("=") for item in line.split()[1:])
        results["reference"] = dict(rate=float(fields["per_second"]), cpu_ms=float(fields["cpu_ms_per_message"]),
                                    rss=float(fields["peak_rss_mib"]))
        print(f"   {line}")
    else:
        print(f"   reference failed: {reference.stderr[-2000:]}")


def memory_phase(redis, api_url, config, workdir, env, memory_senders, results):
    print(f"== memory: one worker, 100,000 messages queued across {MEMORY_SENDERS} senders")
    messages = [template(f"m{i % MEMORY_SENDERS}", f"+1{3000000000 + i}") for i in range(100_000)]
    post_batches(api_url, messages)
    worker = start([BIN, "--config", config, "worker"], os.path.join(workdir, "worker-memory.log"), env)
    peak, started = 0.0, time.time()
    while time.time() - started < 10:
        peak = max(peak, rss_mib(worker.pid))
        time.sleep(0.1)
    left = sum(int(redis.cli("xlen", f"gw:{{{pnid}}}:queue") or 0) for _, pnid, _ in memory_senders)
    results["memory"] = dict(rss=peak, left=left)
    print(f"   peak {peak:.1f} MiB after 10 s, {left} messages still queued")
    stop(worker)
    for _, pnid, _ in memory_senders:
        redis.cli("del", f"gw:{{{pnid}}}:queue")


def fidelity_phase(api_url, sandbox_url, config, workdir, env, fidelity_senders, results):
    results["fidelity"] = {}
    for count in (1, 3):
        print(f"== rate fidelity: {FIDELITY_SENDERS} senders at {FIDELITY_RATE}/s, {FIDELITY_SECONDS} s of backlog, "
              f"{count} worker(s), Meta's limits on")
        http("POST", f"{sandbox_url}/admin/reset")
        set_limits(sandbox_url, True)
        total = FIDELITY_SENDERS * FIDELITY_RATE * FIDELITY_SECONDS
        messages = [template(f"f{i % FIDELITY_SENDERS}", f"+1{4000000000 + i}") for i in range(total)]
        post_batches(api_url, messages)
        workers = [start([BIN, "--config", config, "worker", "--listen", "127.0.0.1:0"],
                         os.path.join(workdir, f"worker-fidelity-{count}-{n}.log"), env) for n in range(count)]
        drain(sandbox_url, total, workers, FIDELITY_SECONDS * 3 + 60)
        for w in workers:
            stop(w)
        stats = http("GET", f"{sandbox_url}/admin/stats")
        report = fidelity(sandbox_url, fidelity_senders, FIDELITY_RATE)
        results["fidelity"][count] = dict(report=report, rejections=stats["rejections"])
        worst = max(r[2] for r in report)
        lowest = min(r[3] for r in report)
        print(f"   largest one-second window {worst} (limit {FIDELITY_RATE}), lowest achieved {lowest:.3f} of the rate, "
              f"rejections {stats['rejections']}")


def write_report(r):
    cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), "?")
    memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    redis_version = subprocess.run(["redis-server", "--version"], capture_output=True, text=True).stdout.split()[2]
    s, w, d = r["send"], r["webhook"], r["drain"]
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
        "| what | command | result |",
        "| --- | --- | --- |",
        f"| raw XADD on the bench Redis | `redis-benchmark -c {CONNECTIONS} -n 400000 XADD bench:raw * …` | {s['xadd']:.0f} per second |",
        f"| `POST /send` (auth, validation, one XADD) | `wrk -t1 -c{CONNECTIONS} -d{SEND_SECONDS}s -s post.lua /send` | "
        f"{s['rate']:.0f} per second, p50 {s['p50']:.2f} ms, p99 {s['p99']:.2f} ms, non-2xx {s['non2xx']}, "
        f"{s['cpu_us']:.0f} µs of api CPU each |",
        f"| ratio | | **{s['rate'] / s['xadd']:.2f}** of raw XADD (goal ≥ 0.5) |",
        f"| `POST /webhook`: one-status Meta webhook (signature check over the raw body, parse, one XADD) | "
        f"`wrk -t1 -c{CONNECTIONS} -d{SEND_SECONDS}s -s post.lua /webhook` | "
        f"{w['rate']:.0f} per second, p50 {w['p50']:.2f} ms, p99 {w['p99']:.2f} ms, non-2xx {w['non2xx']}, "
        f"{w['cpu_us']:.0f} µs of api CPU each |",
        f"| ratio | | **{w['rate'] / s['xadd']:.2f}** of raw XADD |",
        "",
        "## Draining: one worker against the sandbox with its limits off",
        "",
        f"{DRAIN_MESSAGES:,} template messages queued over {DRAIN_SENDERS} senders at 1,000/s each, every message to its "
        "own recipient; the worker reads, paces (send window, pair limiter), POSTs to the sandbox, and records the wamid "
        "and acknowledges in one script per message.",
        "",
        "| worker | messages per second | CPU per message | peak resident |",
        "| --- | --- | --- | --- |",
        f"| gateway worker | {d['rate']:.0f} | {d['cpu_ms']:.3f} ms | {d['rss']:.1f} MiB |",
    ]
    footnote = (f"During the gateway's drain the sandbox spent {d['sandbox_ms']:.3f} ms and Redis {d['redis_ms']:.3f} ms "
                f"of CPU per message besides the worker's {d['cpu_ms']:.3f} ms: together "
                f"{d['cpu_ms'] + d['sandbox_ms'] + d['redis_ms']:.3f} ms, so two cores cannot drain faster than about "
                f"{2 / (d['cpu_ms'] + d['sandbox_ms'] + d['redis_ms']) * 1000:,.0f} per second whatever the worker does.")
    if ref:
        lines += [
            f"| apalis 1.0 reference (benches/reference-apalis: apalis-redis, rate-limit and retry layers, reqwest) | "
            f"{ref['rate']:.0f} | {ref['cpu_ms']:.3f} ms | {ref['rss']:.1f} MiB |",
            f"| ratio | **{d['rate'] / ref['rate']:.2f}** | | |",
        ]
    lines += ["", footnote]
    m = r["memory"]
    lines += [
        "",
        "## Memory: one worker with 100,000 messages queued across 100 senders",
        "",
        f"Peak resident set during the first 10 s of draining: **{m['rss']:.1f} MiB** (goal < 32 MiB); "
        f"{m['left']:,} messages were still queued then. The worker holds at most `worker.read_ahead` messages per "
        "sender and priority in memory, from the read to the end of the last attempt; the backlog stays in Redis.",
        "",
        "## Rate fidelity: 10 senders at 70/s, Meta's limits on in the sandbox",
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
    lines.append("")
    with open(os.path.join(ROOT, "BENCHMARKS.md"), "w") as f:
        f.write("\n".join(lines))
    print("wrote BENCHMARKS.md")


if __name__ == "__main__":
    try:
        main()
    finally:
        for process in PROCESSES:
            if process.poll() is None:
                process.kill()
                process.wait()
