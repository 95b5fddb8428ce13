#!/usr/bin/env python3
"""Soak test: two Watershed replicas on one PostgreSQL ledger, mixed streamed
and plain chat at high concurrency for a bounded time, with faults injected on
a schedule, sampling each replica's memory, descriptors and journal over time
and checking at the end that the ledger holds exactly the answered requests.

Standard library only (and `psql`), traffic to 127.0.0.1 only, bounded in time:
it stops by itself after --minutes plus a drain of at most a minute.

    scripts/soak.py --minutes 10 --concurrency 64        # what BENCHMARKS.md reports

Faults, at fixed fractions of the run:
  20 %  the upstream fails: every request answers 503 for 20 s (retried,
        then the target's breaker opens, half-open probes close it after)
  40 %  PostgreSQL goes away for 20 s: the TCP proxy in front of it refuses
        and cuts every connection (`--pg-restart real` restarts the server
        itself with pg_ctlcluster instead; only on a machine nobody else uses)
  60 %  replica B is killed with SIGKILL, and restarted 5 s later on the same
        journal directory

The gateway and mock binaries come from `cargo build -p watershed -p
watershed-tests` (debug by default; --profile release for release builds).
Writes a CSV of the samples (--csv) and prints a summary table.
"""

from __future__ import annotations

import argparse
import csv
import http.client
import json
import os
import random
import select
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def log(msg: str) -> None:
    print(f"[soak {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# --- a TCP proxy in front of PostgreSQL that can be cut --------------------


class Proxy:
    """Forwards 127.0.0.1:port to PostgreSQL; `cut(seconds)` closes every
    connection and refuses new ones for that long, as a restart would."""

    def __init__(self, target_port: int) -> None:
        self.target = ("127.0.0.1", target_port)
        self.port = free_port()
        self.down_until = 0.0
        self.lock = threading.Lock()
        self.conns: list[socket.socket] = []
        self.stop = False
        self.listener = socket.socket()
        self.listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.listener.bind(("127.0.0.1", self.port))
        self.listener.listen(256)
        self.listener.settimeout(0.2)
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while not self.stop:
            try:
                client, _ = self.listener.accept()
            except (socket.timeout, OSError):
                continue
            if time.time() < self.down_until:
                client.close()
                continue
            try:
                upstream = socket.create_connection(self.target, timeout=5)
            except OSError:
                client.close()
                continue
            with self.lock:
                self.conns += [client, upstream]
            threading.Thread(target=self._pump, args=(client, upstream), daemon=True).start()

    def _pump(self, a: socket.socket, b: socket.socket) -> None:
        socks = [a, b]
        try:
            while not self.stop:
                ready, _, _ = select.select(socks, [], [], 0.5)
                for s in ready:
                    data = s.recv(65536)
                    if not data:
                        return
                    (b if s is a else a).sendall(data)
        except OSError:
            pass
        finally:
            for s in socks:
                try:
                    s.close()
                except OSError:
                    pass
            with self.lock:
                self.conns = [c for c in self.conns if c not in socks]

    def cut(self, seconds: float) -> None:
        self.down_until = time.time() + seconds
        with self.lock:
            for c in self.conns:
                try:
                    c.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def close(self) -> None:
        self.stop = True
        self.listener.close()


# --- PostgreSQL through psql ------------------------------------------------


def psql(sql: str, pg_port: int, db: str = "test") -> str:
    out = subprocess.run(
        ["psql", "-h", "127.0.0.1", "-p", str(pg_port), "-U", "postgres", "-d", db,
         "-At", "-c", sql],
        capture_output=True, text=True, timeout=60,
    )
    if out.returncode != 0:
        raise RuntimeError(f"psql failed: {out.stderr.strip()}")
    return out.stdout.strip()


# --- the processes ------------------------------------------------------------


class Mock:
    def __init__(self, binary: str) -> None:
        self.proc = subprocess.Popen([binary], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     text=True, bufsize=1)
        line = self.proc.stdout.readline() if self.proc.stdout else ""
        self.urls = json.loads(line)

    def send(self, line: str) -> None:
        if self.proc.stdin:
            self.proc.stdin.write(line + "\n")
            self.proc.stdin.flush()

    def close(self) -> None:
        self.proc.send_signal(signal.SIGINT)
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()


class Replica:
    def __init__(self, name: str, binary: str, config: str, workdir: str) -> None:
        self.name, self.binary, self.config, self.workdir = name, binary, config, workdir
        self.port = free_port()
        self.url = f"127.0.0.1:{self.port}"
        self.proc: subprocess.Popen | None = None
        self.logf = open(os.path.join(workdir, f"{name}.log"), "a")
        self.restarts = 0

    def start(self) -> None:
        env = dict(os.environ, SOAK_KEY="sk-soak", WATERSHED_LOG="warn", NO_COLOR="1")
        self.proc = subprocess.Popen(
            [self.binary, "serve", "--config", self.config, "--listen", self.url],
            cwd=self.workdir, env=env, stdout=self.logf, stderr=subprocess.STDOUT,
        )
        deadline = time.time() + 120
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"replica {self.name} exited with {self.proc.returncode}")
            try:
                c = http.client.HTTPConnection("127.0.0.1", self.port, timeout=2)
                c.request("GET", "/healthz")
                if c.getresponse().status == 200:
                    return
            except OSError:
                pass
            time.sleep(0.2)
        raise RuntimeError(f"replica {self.name} did not come up")

    def kill9(self) -> None:
        if self.proc:
            self.proc.kill()
            self.proc.wait()

    def term(self, grace_s: float) -> float:
        if not self.proc or self.proc.poll() is not None:
            return 0.0
        t0 = time.time()
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=grace_s + 30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        return time.time() - t0

    def sample(self) -> tuple[int, int]:
        """(RSS in KiB, open descriptors) of the running process."""
        if not self.proc or self.proc.poll() is not None:
            return (0, 0)
        pid = self.proc.pid
        rss = 0
        try:
            with open(f"/proc/{pid}/status") as f:
                for line in f:
                    if line.startswith("VmRSS:"):
                        rss = int(line.split()[1])
            fds = len(os.listdir(f"/proc/{pid}/fd"))
        except OSError:
            return (0, 0)
        return (rss, fds)


def dir_bytes(path: str) -> int:
    total = 0
    for base, _, files in os.walk(path):
        for f in files:
            try:
                total += os.path.getsize(os.path.join(base, f))
            except OSError:
                pass
    return total


# --- the load -----------------------------------------------------------------


class Tally:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.answered: set[str] = set()
        self.refused: dict[int, int] = {}
        self.errors = 0
        self.broken_streams = 0
        self.sent = 0

    def add(self, kind: str, rid: str | None, status: int = 0) -> None:
        with self.lock:
            self.sent += 1
            if kind == "ok" and rid:
                self.answered.add(rid)
            elif kind == "status":
                self.refused[status] = self.refused.get(status, 0) + 1
            elif kind == "broken":
                self.broken_streams += 1
            else:
                self.errors += 1


PROMPTS = [
    "Summarise the quarterly report in three sentences.",
    "Translate 'good morning' into French, German and Italian.",
    "Write a haiku about rivers.",
    "List five prime numbers and explain why they are prime.",
]


def one(replica: Replica, stream: bool, i: int, tally: Tally) -> None:
    body = json.dumps({
        "model": "gpt-5.4-mini",
        "messages": [{"role": "user", "content": f"{PROMPTS[i % len(PROMPTS)]} ({i})"}],
        "max_tokens": 32,
        "stream": stream,
    })
    try:
        c = http.client.HTTPConnection("127.0.0.1", replica.port, timeout=90)
        c.request("POST", "/v1/chat/completions", body,
                  {"content-type": "application/json", "authorization": "Bearer sk-soak"})
        r = c.getresponse()
        rid = r.getheader("x-request-id")
        data = r.read()
        if r.status != 200:
            tally.add("status", rid, r.status)
            return
        if stream:
            text = data.decode("utf-8", "replace")
            if "data: [DONE]" not in text or '"error"' in text:
                tally.add("broken", rid)
                return
        tally.add("ok", rid)
    except (OSError, http.client.HTTPException):
        tally.add("error", None)


def worker(replicas: list[Replica], stop: threading.Event, seed: int, tally: Tally) -> None:
    rnd = random.Random(seed)
    i = seed * 1_000_000
    while not stop.is_set():
        i += 1
        one(rnd.choice(replicas), rnd.random() < 0.5, i, tally)


# --- the run ------------------------------------------------------------------


CONFIG = """\
version: 1
ledger:
  url: "postgres://postgres@127.0.0.1:{proxy}/test?schema={schema}"
{journal}
server:
  default_privacy: public
  request_deadline_ms: 30000
  stream_deadline_ms: 60000
{grace}models:
  gpt-5.4-mini:
    provider: openai
    base_url: "{openai}"
    api_key_env: SOAK_KEY
    trusted: true            # the mock runs on this machine
    timeout_ms: 10000
    retries: 2
    retry_backoff_ms: 50
    breaker: {{ failures: 50, window_ms: 10000, cooldown_ms: 2000 }}
routes:
  - name: all
    to: [gpt-5.4-mini]
teams:
  default: {{ budget: {{ daily_usd: 100000, on_exhausted: reject }} }}
"""


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--minutes", type=float, default=10.0)
    ap.add_argument("--concurrency", type=int, default=64)
    ap.add_argument("--sample-s", type=float, default=10.0)
    ap.add_argument("--profile", default="debug")
    ap.add_argument("--pg-port", type=int, default=5432)
    ap.add_argument("--pg-restart", choices=["proxy", "real"], default="proxy")
    ap.add_argument("--grace-ms", type=int, default=15000)
    ap.add_argument("--csv", default="soak.csv")
    ap.add_argument("--faults", default="upstream,postgres,kill",
                    help="which faults to inject, comma-separated (empty: none)")
    ap.add_argument("--grace-key", type=int, default=1,
                    help="0: leave server.shutdown_grace_ms out of the config")
    ap.add_argument("--journal-key", default="journal",
                    help="ledger config key of the journal directory")
    args = ap.parse_args()

    target = os.environ.get("CARGO_TARGET_DIR", os.path.join(ROOT, "target"))
    gw_bin = os.path.join(target, args.profile, "watershed")
    mock_bin = os.path.join(target, args.profile, "watershed-mock")
    for b in (gw_bin, mock_bin):
        if not os.path.exists(b):
            log(f"{b} is missing: cargo build -p watershed -p watershed-tests first")
            return 2

    work = tempfile.mkdtemp(prefix="watershed-soak-")
    schema = f"soak_{int(time.time())}_{os.getpid()}"
    proxy = Proxy(args.pg_port)
    mock = Mock(mock_bin)
    replicas: list[Replica] = []
    try:
        return run(args, gw_bin, work, schema, proxy, mock, replicas)
    finally:
        for r in replicas:
            if r.proc and r.proc.poll() is None:
                r.kill9()
        if mock.proc.poll() is None:
            mock.close()
        proxy.close()
        log(f"replica logs kept in {work}")


def run(args, gw_bin: str, work: str, schema: str, proxy: Proxy, mock: Mock,
        replicas: list[Replica]) -> int:
    for name in ("a", "b"):
        d = os.path.join(work, name)
        os.makedirs(d)
        journal = f"  {args.journal_key}: {{ dir: \"{d}/journal\" }}" if args.journal_key else ""
        cfg = os.path.join(d, "config.yaml")
        with open(cfg, "w") as f:
            f.write(CONFIG.format(proxy=proxy.port, schema=schema, journal=journal,
                                  grace=f"  shutdown_grace_ms: {args.grace_ms}\n" if args.grace_key else "", openai=mock.urls["openai"]))
        replicas.append(Replica(name, gw_bin, cfg, d))
    for r in replicas:
        r.start()
    log(f"replicas on {[r.url for r in replicas]}, ledger schema {schema}, work dir {work}")

    tally = Tally()
    stop = threading.Event()
    threads = [threading.Thread(target=worker, args=(replicas, stop, s, tally), daemon=True)
               for s in range(args.concurrency)]
    for t in threads:
        t.start()

    total_s = args.minutes * 60
    wanted = set(filter(None, args.faults.split(",")))
    faults = [(at, what) for at, key, what in [
        (0.2, "upstream", "upstream fails"),
        (0.4, "postgres", "postgres down"),
        (0.6, "kill", "replica b killed"),
    ] if key in wanted]
    samples: list[dict] = []
    t0 = time.time()
    next_sample = t0
    while (now := time.time()) - t0 < total_s:
        frac = (now - t0) / total_s
        while faults and frac >= faults[0][0]:
            _, what = faults.pop(0)
            log(f"fault: {what}")
            if what == "upstream fails":
                mock.send("down")
                threading.Timer(20, mock.send, args=("up",)).start()
            elif what == "postgres down":
                if args.pg_restart == "real":
                    ver = sorted(os.listdir("/etc/postgresql"))[0]
                    subprocess.run(["pg_ctlcluster", "--skip-systemctl-redirect", ver, "main", "restart"],
                                   check=False)
                else:
                    proxy.cut(20)
            else:
                replicas[1].kill9()
                time.sleep(5)
                replicas[1].start()
                replicas[1].restarts += 1
        if now >= next_sample:
            row = {"t_s": round(now - t0)}
            for r in replicas:
                rss, fds = r.sample()
                row[f"rss_kib_{r.name}"] = rss
                row[f"fds_{r.name}"] = fds
                row[f"journal_bytes_{r.name}"] = dir_bytes(os.path.join(r.workdir, "journal"))
            with tally.lock:
                row["answered"] = len(tally.answered)
                row["sent"] = tally.sent
            try:
                row["ledger_rows"] = int(psql(f'SELECT count(*) FROM "{schema}".ledger', args.pg_port))
            except (RuntimeError, ValueError):
                row["ledger_rows"] = -1
            samples.append(row)
            log(json.dumps(row))
            next_sample += args.sample_s
        time.sleep(0.2)

    log("stopping the load")
    stop.set()
    for t in threads:
        t.join(timeout=120)
    term_s = [round(r.term(args.grace_ms / 1000), 1) for r in replicas]
    mock.close()

    ids = psql(f'SELECT request_id, status FROM "{schema}".ledger', args.pg_port).splitlines()
    ledger = {}
    for line in ids:
        rid, status = line.split("|")
        ledger[rid] = int(status)
    ok_rows = {rid for rid, s in ledger.items() if s == 200}
    missing = tally.answered - ok_rows
    extra_ok = ok_rows - tally.answered

    with open(args.csv, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(samples[0].keys()))
        w.writeheader()
        w.writerows(samples)

    warm = [s for s in samples if s["t_s"] >= 120] or samples
    def growth(key: str) -> str:
        vals = [s[key] for s in warm if s[key] > 0]
        if len(vals) < 2:
            return "n/a"
        return f"{vals[0]} → {vals[-1]} ({(vals[-1] - vals[0]) * 100 / vals[0]:+.1f} %)"

    print("\n| measure | value |\n|---|---|")
    print(f"| duration | {args.minutes} min, {args.concurrency} clients, half streamed |")
    print(f"| requests sent | {tally.sent} |")
    print(f"| answered (200, complete) | {len(tally.answered)} |")
    print(f"| refused with a status | {dict(sorted(tally.refused.items()))} |")
    print(f"| streams ended by an error event | {tally.broken_streams} |")
    print(f"| connection errors (replica killed) | {tally.errors} |")
    print(f"| ledger rows / with status 200 | {len(ledger)} / {len(ok_rows)} |")
    print(f"| answered without a 200 ledger row | {len(missing)} |")
    print(f"| 200 ledger rows the client never saw complete | {len(extra_ok)} |")
    print(f"| RSS of replica a after warm-up (KiB) | {growth('rss_kib_a')} |")
    print(f"| descriptors of replica a after warm-up | {growth('fds_a')} |")
    print(f"| largest journal (bytes) | {max(max(s['journal_bytes_a'], s['journal_bytes_b']) for s in samples)} |")
    print(f"| SIGTERM to exit (s) | {term_s} |")
    try:
        psql(f'DROP SCHEMA "{schema}" CASCADE', args.pg_port)
    except RuntimeError as e:
        log(str(e))
    return 1 if missing else 0


if __name__ == "__main__":
    sys.exit(main())
