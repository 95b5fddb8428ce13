#!/usr/bin/env python3
"""Load generator for an OpenAI-compatible chat endpoint (Watershed, or
llama.cpp's llama-server for comparison), standard library only so it runs on
any machine with Python 3.

For each concurrency level B it runs B client threads, each sending `--rounds`
streamed requests one after another (greedy decoding, the same prompt for all,
`max_tokens` fixed), and reports:

  gen_tps   generated tokens per second of wall time, prefill included
            (sum of completion tokens over the level's wall time)
  ttft      time to the first content byte, p50 and p99 over all requests

    python3 scripts/bench_serving.py --url http://127.0.0.1:8080 --model local \
        --concurrency 1,8 --rounds 4 --max-tokens 96 --label watershed
"""

from __future__ import annotations

import argparse
import http.client
import json
import statistics
import sys
import threading
import time
import urllib.parse

# Every concurrent request gets its own prompt: identical prompts would share
# their prefix in the cache and, on a MoE model, route every sequence of a batch
# to the same experts, which flatters batched decoding.
TOPICS = [
    "a lighthouse keeper who finds a message in a bottle on a stormy night",
    "a baker who discovers a secret recipe hidden in an old oven",
    "two astronauts repairing a satellite while a storm of debris approaches",
    "a detective in Lisbon following a trail of stolen paintings",
    "a girl who teaches her grandfather to play the violin again",
    "a village that wakes up one morning to find the river flowing uphill",
    "a chess player who can only win when it is raining",
    "a beekeeper whose bees start bringing back tiny gold coins",
    "a ferry captain on her last crossing before the bridge opens",
    "an engineer who builds a clock that runs backwards",
    "a gardener growing a tree that remembers everyone who sat under it",
    "a translator who receives a letter in a language nobody speaks",
]


def prompt_for(i: int) -> str:
    return f"Write a long and detailed story about {TOPICS[i % len(TOPICS)]}."


def one_request(
    url: str, model: str, max_tokens: int, messages: list[dict] | None = None
) -> tuple[float, int, int]:
    """Sends one streamed request; returns (ttft seconds, completion tokens, prompt tokens)."""
    u = urllib.parse.urlparse(url)
    conn = http.client.HTTPConnection(u.hostname, u.port, timeout=600)
    body = json.dumps({
        "model": model,
        "messages": messages or [{"role": "user", "content": prompt_for(0)}],
        "max_tokens": max_tokens,
        "temperature": 0,
        "stream": True,
        "stream_options": {"include_usage": True},
    })
    t0 = time.perf_counter()
    conn.request("POST", "/v1/chat/completions", body, {"content-type": "application/json"})
    resp = conn.getresponse()
    if resp.status != 200:
        raise RuntimeError(f"HTTP {resp.status}: {resp.read()[:300]!r}")
    ttft = None
    deltas = completion = prompt = 0
    for raw in resp:
        line = raw.decode().strip()
        if not line.startswith("data:"):
            continue
        data = line[5:].strip()
        if data == "[DONE]":
            break
        chunk = json.loads(data)
        if "error" in chunk:
            raise RuntimeError(f"stream error: {chunk['error']}")
        for choice in chunk.get("choices") or []:
            if (choice.get("delta") or {}).get("content"):
                deltas += 1
                if ttft is None:
                    ttft = time.perf_counter() - t0
        usage = chunk.get("usage")
        if usage:
            completion = usage.get("completion_tokens", 0)
            prompt = usage.get("prompt_tokens", 0)
    conn.close()
    return (ttft if ttft is not None else time.perf_counter() - t0), (completion or deltas), prompt


def percentile(xs: list[float], q: float) -> float:
    xs = sorted(xs)
    if not xs:
        return float("nan")
    k = min(len(xs) - 1, max(0, round(q * (len(xs) - 1))))
    return xs[k]


def level(url: str, model: str, b: int, rounds: int, max_tokens: int) -> dict:
    results: list[tuple[float, int, int]] = []
    errors: list[str] = []
    lock = threading.Lock()

    def worker(k: int) -> None:
        for j in range(rounds):
            msgs = [{"role": "user", "content": prompt_for(k + j * b)}]
            try:
                r = one_request(url, model, max_tokens, msgs)
            except Exception as e:  # reported, never hidden
                with lock:
                    errors.append(str(e))
                return
            with lock:
                results.append(r)

    threads = [threading.Thread(target=worker, args=(k,)) for k in range(b)]
    t0 = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - t0
    if errors:
        raise SystemExit(f"B={b}: {len(errors)} requests failed, first: {errors[0]}")
    ttfts = [r[0] for r in results]
    gen = sum(r[1] for r in results)
    return {
        "concurrency": b,
        "requests": len(results),
        "prompt_tokens": statistics.mean(r[2] for r in results),
        "completion_tokens": gen,
        "wall_s": wall,
        "gen_tps": gen / wall,
        "ttft_p50_ms": percentile(ttfts, 0.50) * 1000,
        "ttft_p99_ms": percentile(ttfts, 0.99) * 1000,
    }


def prefix_cache(url: str, model: str) -> None:
    """TTFT of two requests sharing a long system prompt: the second one's
    prefill can reuse the first one's KV cells."""
    system = "You are the assistant of a bakery. " + " ".join(
        f"Rule {i}: answer politely, mention fresh bread, and keep it short." for i in range(60)
    )
    rows = []
    for label, question in [
        ("cold (first with this system prompt)", "When is the bread baked?"),
        ("warm (same system prompt)", "What flour do you use?"),
        ("warm again", "Do you sell cakes?"),
    ]:
        msgs = [{"role": "system", "content": system}, {"role": "user", "content": question}]
        ttft, _, prompt = one_request(url, model, 8, msgs)
        rows.append((label, prompt, ttft * 1000))
    print("| request | prompt tok | TTFT ms |")
    print("|---|---|---|")
    for label, prompt, ms in rows:
        print(f"| {label} | {prompt} | {ms:.0f} |", flush=True)


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--url", required=True)
    p.add_argument("--model", required=True)
    p.add_argument("--concurrency", default="1,8")
    p.add_argument("--rounds", type=int, default=4)
    p.add_argument("--max-tokens", type=int, default=96)
    p.add_argument("--label", default="")
    p.add_argument("--json", help="also write the results to this file")
    p.add_argument("--prefix-cache", action="store_true",
                   help="measure TTFT of requests sharing a long system prompt instead")
    a = p.parse_args(argv)
    if a.prefix_cache:
        prefix_cache(a.url, a.model)
        return 0
    one_request(a.url, a.model, 8)  # warm-up: model pages, connection paths
    rows = []
    print(f"| {'side':<24} | B | requests | prompt tok | gen tok | wall s | gen tok/s | TTFT p50 ms | TTFT p99 ms |")
    print("|---|---|---|---|---|---|---|---|---|")
    for b in (int(x) for x in a.concurrency.split(",")):
        r = level(a.url, a.model, b, a.rounds, a.max_tokens)
        r["label"] = a.label
        rows.append(r)
        print(
            f"| {a.label:<24} | {b} | {r['requests']} | {r['prompt_tokens']:.0f} | "
            f"{r['completion_tokens']} | {r['wall_s']:.2f} | {r['gen_tps']:.1f} | "
            f"{r['ttft_p50_ms']:.0f} | {r['ttft_p99_ms']:.0f} |",
            flush=True,
        )
    if a.json:
        with open(a.json, "w") as f:
            json.dump(rows, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
