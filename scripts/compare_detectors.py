#!/usr/bin/env python3
"""Compares Watershed's privacy detectors with Presidio's pattern recognizers and with
detect-secrets on the same corpus, and prints one table: per tool and kind, span-level
precision, recall and F1 (exact kind and character span), sentence-level precision and
recall for "holds personal data or a secret", and throughput in KB/s of text.

Run it through ``scripts/compare_detectors.sh``, which makes the virtual environment with
both peers and builds the detector example. Directly:

    python3 scripts/compare_detectors.py --watershed target/release/examples/detect_jsonl \
        policies/tests/data/privacy_corpus.jsonl policies/tests/data/privacy_corpus_holdout.jsonl

Presidio is used without its NLP engine (a spaCy model cannot be fetched here): each
pattern recognizer's ``analyze(text, entities, nlp_artifacts=None)``, duplicates removed
as the AnalyzerEngine does, every score kept (the engine's default threshold is 0).
detect-secrets scans each text as a file named for its context (``.env``, ``.yaml``,
``.json``, ``.py``, else ``.txt``), as ``detect-secrets scan`` would, with its default
plugins and filters; it reports values rather than offsets, so each value is located in
its line, and for its regex plugins the whole match of the plugin's own pattern is the
span (some report only a capture group). Its throughput includes reading those files.
"""

import argparse
import json
import subprocess
import sys
import time

KINDS = ["credit_card", "email", "iban", "ip", "phone", "secret", "ssn"]

PRESIDIO_MAP = {
    "EMAIL_ADDRESS": "email",
    "CREDIT_CARD": "credit_card",
    "IBAN_CODE": "iban",
    "US_SSN": "ssn",
    "PHONE_NUMBER": "phone",
    "IP_ADDRESS": "ip",
}


def load(path):
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def watershed(binary, rows, runs=20):
    """Spans from the detector example: one JSON line in, one line of spans out. The
    time is detection alone as the example measures it (``--time``), best of a few runs,
    like the peers' time, which is their analysis calls in this process."""
    payload = "".join(json.dumps({"text": r["text"]}, ensure_ascii=False) + "\n" for r in rows)
    elapsed = float("inf")
    for _ in range(runs):
        proc = subprocess.run([binary, "--time"], input=payload.encode(), capture_output=True,
                              check=True)
        report = json.loads(proc.stderr.decode().strip().splitlines()[-1])
        elapsed = min(elapsed, report["detect_seconds"])
    out = [json.loads(line) for line in proc.stdout.decode().splitlines()]
    spans = [[(s["type"], s["start"], s["end"]) for s in o["pii"]] for o in out]
    return spans, elapsed


def presidio_recognizers():
    import tldextract
    from presidio_analyzer.predefined_recognizers import (
        CreditCardRecognizer, EmailRecognizer, IbanRecognizer, IpRecognizer,
        PhoneRecognizer, UsSsnRecognizer,
    )
    from presidio_analyzer.predefined_recognizers.generic import email_recognizer

    # The e-mail validator would fetch the public suffix list; the bundled copy is used.
    offline = tldextract.TLDExtract(suffix_list_urls=())
    email_recognizer.tldextract.extract = offline
    regions = ("US", "GB", "DE", "FR", "ES", "IT", "NL", "PT", "BR", "IN", "JP")
    return [
        EmailRecognizer(), CreditCardRecognizer(), IbanRecognizer(), UsSsnRecognizer(),
        PhoneRecognizer(supported_regions=regions), IpRecognizer(),
    ]


def presidio(rows):
    from presidio_analyzer import EntityRecognizer

    recognizers = presidio_recognizers()
    t0 = time.perf_counter()
    spans = []
    for r in rows:
        results = []
        for rec in recognizers:
            results.extend(rec.analyze(r["text"], rec.supported_entities, None) or [])
        results = EntityRecognizer.remove_duplicates(results)
        spans.append([(PRESIDIO_MAP[x.entity_type], x.start, x.end) for x in results
                      if x.entity_type in PRESIDIO_MAP])
    return spans, time.perf_counter() - t0


# The file name detect-secrets sees for each context: its keyword plugin reads by type.
SUFFIX = {"json": ".json", "yaml": ".yaml", "env": ".env", "code": ".py"}


def detect_secrets_spans(rows):
    import os
    import tempfile

    from detect_secrets import SecretsCollection
    from detect_secrets.core.plugins.util import get_mapping_from_secret_type_to_class
    from detect_secrets.plugins.base import RegexBasedDetector
    from detect_secrets.settings import default_settings

    spans = []
    with tempfile.TemporaryDirectory() as tmp, default_settings():
        classes = get_mapping_from_secret_type_to_class()
        paths = []
        for i, r in enumerate(rows):
            path = os.path.join(tmp, f"{i:05d}{SUFFIX.get(r['context'], '.txt')}")
            with open(path, "w", encoding="utf-8") as f:
                f.write(r["text"])
            paths.append(path)
        t0 = time.perf_counter()
        for r, path in zip(rows, paths):
            # Each text is scanned as the file it would be, as `detect-secrets scan` does.
            collection = SecretsCollection()
            collection.scan_file(path)
            lines = r["text"].split("\n")
            starts = [0]
            for line in lines:
                starts.append(starts[-1] + len(line) + 1)
            found = set()
            for _, secret in collection:
                n = secret.line_number - 1
                line, offset = lines[n], starts[n]
                kind = "ip" if "IP" in secret.type else "secret"
                cls = classes.get(secret.type)
                placed = False
                if cls is not None and issubclass(cls, RegexBasedDetector):
                    for regex in cls().denylist:
                        for m in regex.finditer(line):
                            if secret.secret_value and secret.secret_value in m.group(0):
                                found.add((kind, offset + m.start(), offset + m.end()))
                                placed = True
                if not placed and secret.secret_value:
                    at = line.find(secret.secret_value)
                    if at >= 0:
                        found.add((kind, offset + at, offset + at + len(secret.secret_value)))
            spans.append(sorted(found, key=lambda s: s[1]))
        elapsed = time.perf_counter() - t0
    return spans, elapsed


def same(a, b, overlap):
    """Whether two spans match: the same kind and, by the rule in force, the same start
    and end (exact) or any shared character (overlap)."""
    if a[0] != b[0]:
        return False
    return a[1] < b[2] and b[1] < a[2] if overlap else a == b


def score(rows, predicted, kinds, overlap=False):
    per = {k: [0, 0, 0] for k in kinds}
    sent = [0, 0, 0]
    for row, got in zip(rows, predicted):
        exp = {(s["type"], s["start"], s["end"]) for s in row["spans"]}
        got = set(got)
        has, said = bool(exp), bool(got)
        sent[0] += has and said
        sent[1] += said and not has
        sent[2] += has and not said
        for g in got:
            if g[0] in per:
                hit = any(same(g, e, overlap) for e in exp)
                per[g[0]][0 if hit else 1] += 1
        for e in exp:
            if e[0] in per and not any(same(g, e, overlap) for g in got):
                per[e[0]][2] += 1
    return per, sent


def prf(tp, fp, fn):
    p = tp / (tp + fp) if tp + fp else 1.0
    r = tp / (tp + fn) if tp + fn else 1.0
    f = 2 * p * r / (p + r) if p + r else 0.0
    return p, r, f


def table(name, rows, results, overlap=False):
    kb = sum(len(r["text"].encode()) for r in rows) / 1024
    rule = "overlapping spans of the same kind match" if overlap else "exact spans"
    print(f"\n### {name}: {len(rows)} lines, {kb:.0f} KB, {rule}\n")
    head = "| tool | " + " | ".join(f"{k} P/R/F1" for k in KINDS) + " | sentence P/R | KB/s |"
    print(head)
    print("|" + "---|" * (len(KINDS) + 3))
    for tool, (pred, secs, supported) in results.items():
        per, sent = score(rows, pred, KINDS, overlap)
        cells = []
        for k in KINDS:
            if k not in supported:
                cells.append("—")
                continue
            p, r, f = prf(*per[k])
            cells.append(f"{p:.3f}/{r:.3f}/{f:.3f}")
        sp, sr, _ = prf(*sent)
        print(f"| {tool} | " + " | ".join(cells) + f" | {sp:.3f}/{sr:.3f} | {kb / secs:,.0f} |")


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--watershed", required=True, help="the detect_jsonl example binary")
    ap.add_argument("--overlap", action="store_true",
                    help="also print tables where overlapping spans of one kind match")
    ap.add_argument("corpus", nargs="+")
    a = ap.parse_args()
    for path in a.corpus:
        rows = load(path)
        ws = watershed(a.watershed, rows)
        pr = presidio(rows)
        ds = detect_secrets_spans(rows)
        union = [sorted(set(x) | set(y)) for x, y in zip(pr[0], ds[0])]
        results = {
            "watershed": (ws[0], ws[1], set(KINDS)),
            "presidio (patterns)": (pr[0], pr[1], set(PRESIDIO_MAP.values())),
            "detect-secrets": (ds[0], ds[1], {"secret", "ip"}),
            "presidio + detect-secrets": (union, pr[1] + ds[1], set(KINDS)),
        }
        table(path, rows, results)
        if a.overlap:
            table(path, rows, results, overlap=True)
    sys.stdout.flush()


if __name__ == "__main__":
    main()
