#!/usr/bin/env python3
"""Evaluate the difficulty classifier the way RouteLLM does, on held-out splits.

For every split the classifier is retrained from scratch on the split's training
part only: the configuration is chosen among train_difficulty.CANDIDATES by
cross-validation inside that training part (train_difficulty.select_config, the
same procedure that picks the shipped model), so nothing is tuned on a test
part. It is scored on the held-out part next to a random router (mean over
seeds), prompt-length routers (longer = harder, and the reverse) and a
hindsight oracle that ranks by the test labels themselves (the ceiling for any
prompt-only router on that test set). Metrics follow
../shared/routing-data/README.md exactly:

- quality(k): mean score when the k highest-scored prompts go to the strong
  model and the rest to the weak one; ties in the router score are spread
  evenly (the expectation over random tie-breaking).
- PGR(k) = (quality(k) - quality_weak) / (quality_strong - quality_weak).
- APGR: area under quality over strong fraction k/n (trapezoid over k = 0..n),
  minus quality_weak, over (quality_strong - quality_weak).
- CPT(x): the smallest k/n with PGR(k) >= x.

    .venv/bin/python scripts/eval_difficulty.py [--markdown]
"""

from __future__ import annotations

import argparse
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import train_difficulty as td  # noqa: E402

RANDOM_SEEDS = 100
FOLDS = 5  # the prompt split holds out one fold of five
SPLIT_SEED = 20240611


metrics = td.metrics


def oracle_scores(trows: list[dict]) -> np.ndarray:
    """Hindsight scores: each prompt's mean strong-minus-weak gain over this test
    set's own labels. No router that sees only the prompt can rank better, so its
    APGR is the ceiling for the test set."""
    gains: dict[tuple[str, str], list[float]] = {}
    for r in trows:
        gains.setdefault((r["group"], r["text"]), []).append(r["strong_score"] - r["weak_score"])
    return np.asarray([np.mean(gains[(r["group"], r["text"])]) for r in trows])


def random_metrics(strong, weak) -> tuple[float, float, float] | None:
    if metrics(np.zeros(len(strong)), strong, weak) is None:
        return None
    rng = np.random.default_rng(0)
    out = [metrics(rng.permutation(len(strong)).astype(float), strong, weak) for _ in range(RANDOM_SEEDS)]
    return tuple(float(np.mean([o[i] for o in out])) for i in range(3))


def splits(rows: list[dict], examples: list[td.Example]):
    """Yields (name, [train example ids], [(test set name, test rows)], None)."""
    key_of = {(e.group, e.text): i for i, e in enumerate(examples)}
    n = len(examples)
    perm = np.random.default_rng(SPLIT_SEED).permutation(n)
    fold = np.empty(n, dtype=int)
    fold[perm] = np.arange(n) % FOLDS
    files = sorted({r["file"] for r in rows})
    alpaca_files = [f for f in files if f.startswith("alpaca")]
    rb_groups = sorted({e.group for e in examples if e.group != "alpaca"})

    def rows_where(pred):
        return [r for r in rows if pred(r)]

    # 1. A random fifth of the prompts held out: one prompt (with all its
    # labels, e.g. the four AlpacaEval weak models) is never in train and test.
    held = lambda r: fold[key_of[(r["group"], r["text"])]] == 0  # noqa: E731
    yield (
        "20% of prompts held out",
        [[i for i in range(n) if fold[i] != 0]],
        [(f, rows_where(lambda r, f=f: r["file"] == f and held(r))) for f in files],
        None,
    )
    # 2. By source, both directions.
    yield (
        "train AlpacaEval -> test RouterBench",
        [[i for i, e in enumerate(examples) if e.group == "alpaca"]],
        [("routerbench (all)", rows_where(lambda r: r["group"] != "alpaca"))]
        + [(g, rows_where(lambda r, g=g: r["group"] == g)) for g in rb_groups],
        None,
    )
    yield (
        "train RouterBench -> test AlpacaEval",
        [[i for i, e in enumerate(examples) if e.group != "alpaca"]],
        [("alpaca (all 4 weak models)", rows_where(lambda r: r["group"] == "alpaca"))]
        + [(f, rows_where(lambda r, f=f: r["file"] == f)) for f in alpaca_files],
        None,
    )
    # 3. Leave one RouterBench dataset out (AlpacaEval + the other two for training).
    for g in rb_groups:
        yield (
            f"leave {g} out",
            [[i for i, e in enumerate(examples) if e.group != g]],
            [(g, rows_where(lambda r, g=g: r["group"] == g))],
            None,
        )


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", default=td.DEFAULT_DATA)
    ap.add_argument("--markdown", action="store_true", help="print a Markdown table")
    ap.add_argument(
        "--config",
        default=None,
        choices=[c.name for c in td.CANDIDATES],
        help="use this candidate on every split instead of selecting one by cross-validation",
    )
    args = ap.parse_args()

    fcfg = td.FeatureConfig()
    rows = td.load_rows(args.data)
    examples = td.examples_from_rows(rows)
    sparse = [td.feature_arrays(e.text, fcfg) for e in examples]
    dense = np.asarray([td.dense_features(e.text) for e in examples], dtype=np.float64)
    key_of = {(e.group, e.text): i for i, e in enumerate(examples)}

    def fit_predict(train_ids: list[int]) -> tuple[np.ndarray, str]:
        sub = [examples[i] for i in train_ids]
        cache = (td.Matrix([sparse[i] for i in train_ids], 1 << fcfg.bits), dense[train_ids])
        if args.config is not None:
            tcfg = next(c for c in td.CANDIDATES if c.name == args.config)
        else:
            tcfg, cv = td.select_config(sub, fcfg, cache)
            note = ", ".join(f"{k} {v:.3f}" for k, v in cv.items())
            print(f"<!-- cross-validated APGR inside the training part: {note} -->", file=sys.stderr)
        model = td.quantise(td.train(sub, fcfg, tcfg, cache))
        return td.predict(model, td.Matrix(sparse, 1 << fcfg.bits), dense), tcfg.name

    header = "| split | configuration chosen | test set | n | router | APGR | CPT(50%) | CPT(80%) |"
    if args.markdown:
        print(header)
        print("|---|---|---|---:|---|---:|---:|---:|")
    for name, train_sets, tests, _ in splits(rows, examples):
        ours_all, chosen = fit_predict(train_sets[0])
        for test_name, trows in tests:
            idx = [key_of[(r["group"], r["text"])] for r in trows]
            ours = ours_all[idx]
            strong = np.asarray([r["strong_score"] for r in trows])
            weak = np.asarray([r["weak_score"] for r in trows])
            length = np.asarray([len(r["text"].encode("utf-8")) for r in trows], dtype=float)
            results = [
                ("classifier", metrics(ours, strong, weak)),
                (f"random (mean of {RANDOM_SEEDS})", random_metrics(strong, weak)),
                ("length (longer = harder)", metrics(length, strong, weak)),
                ("length (shorter = harder)", metrics(-length, strong, weak)),
                ("hindsight oracle (ceiling)", metrics(oracle_scores(trows), strong, weak)),
            ]
            if results[0][1] is None:
                note = "n/a: the weak model scores higher on average, so PGR is undefined"
                if args.markdown:
                    print(f"| {name} | {chosen} | {test_name} | {len(trows)} | all | {note} | | |")
                else:
                    print(f"{name:38s} {test_name:52s} {len(trows):5d} {note}")
                continue
            for router, (apgr, c50, c80) in results:
                if args.markdown:
                    print(
                        f"| {name} | {chosen} | {test_name} | {len(trows)} | {router} | {apgr:.3f} | "
                        f"{c50 * 100:.1f}% | {c80 * 100:.1f}% |"
                    )
                else:
                    print(
                        f"{name:38s} {chosen:26s} {test_name:52s} {len(trows):5d} {router:26s} "
                        f"APGR {apgr:.3f}  CPT50 {c50 * 100:5.1f}%  CPT80 {c80 * 100:5.1f}%"
                    )
            sys.stdout.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
