#!/usr/bin/env python3
"""Train the difficulty classifier that `watershed-policies` embeds.

The classifier scores a prompt in [0, 1]: higher means the strong model is more
likely to beat the weak one on it. It is a logistic regression over hashed
word/character n-gram frequencies plus a few dense text statistics; the Rust
side (`policies/src/difficulty/`) reproduces the features byte for byte, so the
featurisation here is written in the same explicit, byte-level way.

Training data is read from ../shared/routing-data/ (never copied into the repo).
The target is the soft label t = (strong_score - weak_score + 1) / 2: ranking
prompts by E[t | prompt] is what maximises APGR, because the quality gained by
sending a prompt to the strong model is exactly strong_score - weak_score.

    .venv/bin/python scripts/train_difficulty.py            # writes the weights
    .venv/bin/python scripts/train_difficulty.py --check    # select, train twice, compare

The configuration (which features the model may use and how strongly the
n-gram weights are regularised) is one of CANDIDATES, picked by cross-validation
over the training data with whole prompt sources held out (`select_config`);
scripts/eval_difficulty.py runs the same selection inside each split's training
part.

Only numpy is needed. Everything is deterministic: the only randomness is a
fixed-seed fold assignment, and the hashes of the written weights are printed.
"""

from __future__ import annotations

import argparse
import ast
import hashlib
import json
import math
import os
import re
import sys
from dataclasses import dataclass, field

import numpy as np

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEFAULT_DATA = os.path.join(os.path.dirname(REPO), "shared", "routing-data")
DEFAULT_OUT = os.path.join(REPO, "policies", "assets", "difficulty_weights.json")

FORMAT_VERSION = 1

# ---------------------------------------------------------------------------
# Featurisation (mirrored exactly by policies/src/difficulty/features.rs)
# ---------------------------------------------------------------------------

FNV_OFFSET = 0xCBF29CE484222325
FNV_PRIME = 0x100000001B3
MASK64 = (1 << 64) - 1

# Group tags are hashed before the n-gram bytes so the groups share one table
# without sharing buckets systematically.
TAG_WORD = b"w\x00"
TAG_BIGRAM = b"b\x00"
TAG_CHAR = b"c\x00"
TAG_TAIL = b"t\x00"

CHAR_NS = (3, 4, 5)
# The tail is the last this-many bytes of the normalised text: in chat and
# few-shot prompts alike the actual request usually sits at the end.
TAIL_BYTES = 600

_LOWER = bytes(range(256)).translate(
    bytes.maketrans(b"ABCDEFGHIJKLMNOPQRSTUVWXYZ", b"abcdefghijklmnopqrstuvwxyz")
)
_WS = b" \t\n\r\x0b\x0c"
_WORD_RE = re.compile(rb"[a-z0-9\x80-\xff]+")
_WS_RE = re.compile(rb"[ \t\n\r\x0b\x0c]+")

# Dense features, in this order (the Rust side uses the same order).
DENSE_NAMES = (
    "log_bytes",
    "log_words",
    "log_lines",
    "frac_digit",
    "frac_upper",
    "frac_code_punct",
    "frac_math",
    "frac_non_ascii",
    "log_questions",
    "mean_word_len",
)


def fnv1a64(data: bytes, state: int = FNV_OFFSET) -> int:
    h = state
    for byte in data:
        h ^= byte
        h = (h * FNV_PRIME) & MASK64
    return h


def bucket(h: int, bits: int) -> int:
    return h >> (64 - bits)


def normalise(text: str) -> tuple[bytes, bytes]:
    """Returns (lowercased bytes, lowercased bytes with whitespace runs collapsed)."""
    low = text.encode("utf-8").translate(_LOWER)
    collapsed = _WS_RE.sub(b" ", low).strip(_WS)
    return low, collapsed


def _runs(mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Start offsets and lengths of the runs of True in `mask`."""
    if len(mask) == 0:
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)
    edges = np.diff(np.concatenate(([0], mask.astype(np.int8), [0])))
    starts = np.nonzero(edges == 1)[0]
    ends = np.nonzero(edges == -1)[0]
    return starts.astype(np.int64), (ends - starts).astype(np.int64)


def _word_mask(arr: np.ndarray) -> np.ndarray:
    return (
        ((arr >= 97) & (arr <= 122))
        | ((arr >= 65) & (arr <= 90))
        | ((arr >= 48) & (arr <= 57))
        | (arr >= 128)
    )


def dense_features(text: str) -> list[float]:
    raw = np.frombuffer(text.encode("utf-8"), dtype=np.uint8)
    n = len(raw)
    digit = (raw >= 48) & (raw <= 57)
    upper = (raw >= 65) & (raw <= 90)
    non_ascii = raw >= 128
    code = np.isin(raw, _CODE_PUNCT_ARR)
    math_ = np.isin(raw, _MATH_ARR)
    _, word_lens = _runs(_word_mask(raw))
    words = len(word_lens)
    lines = int((raw == 10).sum()) + 1 if n else 0
    denom = float(max(n, 1))
    return [
        math.log1p(n),
        math.log1p(words),
        math.log1p(lines),
        int(digit.sum()) / denom,
        int(upper.sum()) / denom,
        int(code.sum()) / denom,
        int(math_.sum()) / denom,
        int(non_ascii.sum()) / denom,
        math.log1p(int((raw == 63).sum())),
        int(word_lens.sum()) / float(max(words, 1)),
    ]


_CODE_PUNCT_ARR = np.frombuffer(b"{}()[];=<>_`#\\|", dtype=np.uint8)
_MATH_ARR = np.frombuffer(b"+-*/^%=", dtype=np.uint8)
_PRIME = np.uint64(FNV_PRIME)


def _tag_state(tag: bytes) -> int:
    return fnv1a64(tag)


def _fnv_runs(states: np.ndarray, arr: np.ndarray, starts: np.ndarray, lens: np.ndarray) -> np.ndarray:
    """FNV-1a continued from `states[i]` over arr[starts[i] : starts[i] + lens[i]], vectorised."""
    order = np.argsort(-lens, kind="stable")
    h = states[order].copy()
    st = starts[order]
    ln = lens[order]
    for j in range(int(ln[0]) if len(ln) else 0):
        active = int(np.count_nonzero(ln > j))
        h[:active] ^= arr[st[:active] + j]
        h[:active] *= _PRIME
    out = np.empty_like(h)
    out[order] = h
    return out


def _word_hashes(arr: np.ndarray, tag: bytes) -> np.ndarray:
    starts, lens = _runs(_word_mask(arr))
    states = np.full(len(starts), np.uint64(_tag_state(tag)), dtype=np.uint64)
    return _fnv_runs(states, arr, starts, lens)


def _bigram_hashes(arr: np.ndarray) -> np.ndarray:
    starts, lens = _runs(_word_mask(arr))
    if len(starts) < 2:
        return np.zeros(0, dtype=np.uint64)
    states = np.full(len(starts) - 1, np.uint64(_tag_state(TAG_BIGRAM)), dtype=np.uint64)
    h = _fnv_runs(states, arr, starts[:-1], lens[:-1])
    h ^= np.uint64(ord(" "))
    h *= _PRIME
    return _fnv_runs(h, arr, starts[1:], lens[1:])


def _char_hashes(arr: np.ndarray, tag: bytes) -> np.ndarray:
    """FNV-1a of tag+ngram for every byte n-gram of `arr`, vectorised."""
    out = []
    state = np.uint64(_tag_state(tag))
    for n in CHAR_NS:
        m = len(arr) - n + 1
        if m <= 0:
            continue
        h = np.full(m, state, dtype=np.uint64)
        for j in range(n):
            h ^= arr[j : j + m]
            h *= _PRIME
        out.append(h)
    if not out:
        return np.zeros(0, dtype=np.uint64)
    return np.concatenate(out)


@dataclass
class FeatureConfig:
    bits: int = 18
    # Each group's counts are divided by count**norm_power (1 = frequencies).
    norm_power: float = 1.0
    groups: tuple[str, ...] = ("word", "bigram", "tail")

    def to_json(self) -> dict:
        return {
            "bits": self.bits,
            "norm_power": self.norm_power,
            "groups": list(self.groups),
            "char_ns": list(CHAR_NS),
            "tail_bytes": TAIL_BYTES,
        }


def feature_arrays(text: str, cfg: FeatureConfig) -> tuple[np.ndarray, np.ndarray]:
    """Hashed n-gram features of one text: sorted unique buckets and their values."""
    _, collapsed = normalise(text)
    arr = np.frombuffer(collapsed, dtype=np.uint8).astype(np.uint64)
    tail = arr[-TAIL_BYTES:]
    hashes = []
    if "word" in cfg.groups:
        hashes.append(_word_hashes(arr, TAG_WORD))
    if "bigram" in cfg.groups:
        hashes.append(_bigram_hashes(arr))
    if "char" in cfg.groups:
        hashes.append(_char_hashes(arr, TAG_CHAR))
    if "tail" in cfg.groups:
        hashes.append(_word_hashes(tail, TAG_TAIL))
    shift = np.uint64(64 - cfg.bits)
    idx = [(h >> shift).astype(np.int64) for h in hashes if len(h)]
    if not idx:
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.float64)
    val = [np.full(len(i), 1.0 / (len(i) ** cfg.norm_power)) for i in idx]
    uniq, inverse = np.unique(np.concatenate(idx), return_inverse=True)
    return uniq, np.bincount(inverse, weights=np.concatenate(val), minlength=len(uniq))


def sparse_features(text: str, cfg: FeatureConfig) -> dict[int, float]:
    """Hashed n-gram features of one text: bucket -> value."""
    idx, val = feature_arrays(text, cfg)
    return dict(zip(idx.tolist(), val.tolist()))


# ---------------------------------------------------------------------------
# Data
# ---------------------------------------------------------------------------


def user_text(row: dict) -> str:
    """The text a user would send: RouterBench stores a stringified Python list."""
    prompt = row["prompt"]
    if row.get("source") == "routerbench":
        parts = ast.literal_eval(prompt)
        return "\n\n".join(str(p) for p in parts)
    return prompt


@dataclass
class Example:
    text: str
    group: str  # "alpaca" or the RouterBench dataset name
    rows: list[dict] = field(default_factory=list)

    @property
    def target(self) -> float:
        return float(np.mean([(r["strong_score"] - r["weak_score"] + 1.0) / 2.0 for r in self.rows]))


def load_rows(data_dir: str) -> list[dict]:
    rows = []
    for name in sorted(os.listdir(data_dir)):
        if not name.endswith(".jsonl"):
            continue
        with open(os.path.join(data_dir, name), encoding="utf-8") as fh:
            for line in fh:
                row = json.loads(line)
                row["file"] = name
                row["text"] = user_text(row)
                row["group"] = "alpaca" if row["source"] == "alpaca_eval2" else row["eval_name"]
                rows.append(row)
    return rows


def examples_from_rows(rows: list[dict]) -> list[Example]:
    """One example per unique (group, text); the labels of duplicate prompts are averaged."""
    by_key: dict[tuple[str, str], Example] = {}
    for row in rows:
        key = (row["group"], row["text"])
        ex = by_key.get(key)
        if ex is None:
            ex = by_key[key] = Example(row["text"], row["group"])
        ex.rows.append(row)
    return [by_key[k] for k in sorted(by_key)]


# ---------------------------------------------------------------------------
# Model
# ---------------------------------------------------------------------------


@dataclass
class TrainConfig:
    l2: float = 1e-3
    l2_dense: float = 1e-4
    iters: int = 80
    # Relative weight of one AlpacaEval label (each prompt has four) against one
    # RouterBench label.
    alpaca_weight: float = 1.0
    # Dense features the model may use; the others keep weight 0.
    dense_used: tuple[str, ...] = DENSE_NAMES
    # Whether the hashed n-gram features are used at all.
    sparse: bool = True
    name: str = "custom"

    def to_json(self) -> dict:
        return {
            "name": self.name,
            "l2": self.l2,
            "l2_dense": self.l2_dense,
            "alpaca_weight": self.alpaca_weight,
            "dense_used": list(self.dense_used),
            "sparse": self.sparse,
        }


# The candidate configurations; `select_config` picks one by cross-validation
# inside whatever data it is given (never on a held-out test part).
CANDIDATES = (
    TrainConfig(name="all features, L2 1e-3"),
    TrainConfig(name="dense statistics only", sparse=False),
    TrainConfig(name="prompt length only", sparse=False, dense_used=("log_bytes",)),
    TrainConfig(name="length + n-grams, L2 1e-2", l2=1e-2, dense_used=("log_bytes",)),
)
# Random folds used when the data holds a single prompt source.
CV_FOLDS = 4
CV_SEED = 7


class Matrix:
    """A CSR matrix with just the two products training needs (numpy only)."""

    def __init__(self, feats: list[tuple[np.ndarray, np.ndarray]], dim: int):
        lens = np.asarray([len(i) for i, _ in feats], dtype=np.int64)
        self.indptr = np.concatenate(([0], np.cumsum(lens)))
        self.indices = np.concatenate([i for i, _ in feats]) if feats else np.zeros(0, np.int64)
        self.data = np.concatenate([v for _, v in feats]) if feats else np.zeros(0)
        self.rows = np.repeat(np.arange(len(feats)), lens)
        self.n = len(feats)
        self.dim = dim

    def dot(self, w: np.ndarray) -> np.ndarray:
        return np.bincount(self.rows, weights=self.data * w[self.indices], minlength=self.n)

    def tdot(self, g: np.ndarray) -> np.ndarray:
        return np.bincount(self.indices, weights=self.data * g[self.rows], minlength=self.dim)


@dataclass
class Model:
    fcfg: FeatureConfig
    weights: np.ndarray  # hashed weights, length 2**bits
    dense_w: np.ndarray
    dense_mean: np.ndarray
    dense_std: np.ndarray
    bias: float

    def score_one(self, text: str) -> float:
        """Reference scorer, summing in the same order as the Rust code."""
        idx, val = feature_arrays(text, self.fcfg)
        z = self.bias
        for k, v in zip(idx.tolist(), val.tolist()):
            z += float(self.weights[k]) * v
        for x, m, s, w in zip(dense_features(text), self.dense_mean, self.dense_std, self.dense_w):
            z += float(w) * ((x - float(m)) / float(s))
        return 1.0 / (1.0 + math.exp(-z))


def featurise(examples: list[Example], cfg: FeatureConfig) -> tuple[Matrix, np.ndarray]:
    sparse = [feature_arrays(e.text, cfg) for e in examples]
    dense = np.asarray([dense_features(e.text) for e in examples], dtype=np.float64)
    return Matrix(sparse, 1 << cfg.bits), dense


def _lbfgs(fun, x0: np.ndarray, iters: int, memory: int = 10) -> np.ndarray:
    """Plain L-BFGS with Armijo backtracking; deterministic."""
    x = x0.copy()
    f, g = fun(x)
    s_hist: list[np.ndarray] = []
    y_hist: list[np.ndarray] = []
    for _ in range(iters):
        q = g.copy()
        alphas = []
        for s, y in zip(reversed(s_hist), reversed(y_hist)):
            a = s.dot(q) / y.dot(s)
            alphas.append(a)
            q -= a * y
        if s_hist:
            q *= s_hist[-1].dot(y_hist[-1]) / y_hist[-1].dot(y_hist[-1])
        for (s, y), a in zip(zip(s_hist, y_hist), reversed(alphas)):
            b = y.dot(q) / y.dot(s)
            q += (a - b) * s
        d = -q
        gd = g.dot(d)
        if gd >= 0:
            d = -g
            gd = -g.dot(g)
        step = 1.0
        while True:
            xn = x + step * d
            fn, gn = fun(xn)
            if fn <= f + 1e-4 * step * gd or step < 1e-10:
                break
            step *= 0.5
        s, y = xn - x, gn - g
        if y.dot(s) > 1e-12:
            s_hist.append(s)
            y_hist.append(y)
            if len(s_hist) > memory:
                s_hist.pop(0)
                y_hist.pop(0)
        if abs(f - fn) < 1e-12 * max(1.0, abs(f)):
            x, f, g = xn, fn, gn
            break
        x, f, g = xn, fn, gn
    return x


def train(
    examples: list[Example],
    fcfg: FeatureConfig,
    tcfg: TrainConfig,
    cache: tuple[Matrix, np.ndarray] | None = None,
) -> Model:
    X, dense = cache if cache is not None else featurise(examples, fcfg)
    if not tcfg.sparse:
        X = Matrix([(np.zeros(0, np.int64), np.zeros(0))] * len(examples), 1 << fcfg.bits)
    y = np.asarray([e.target for e in examples], dtype=np.float64)
    sw = np.asarray(
        [len(e.rows) * (tcfg.alpaca_weight if e.group == "alpaca" else 1.0) for e in examples],
        dtype=np.float64,
    )
    sw = sw / sw.sum()
    mean = dense.mean(axis=0)
    std = dense.std(axis=0)
    std[std < 1e-9] = 1.0
    D = (dense - mean) / std * np.asarray([n in tcfg.dense_used for n in DENSE_NAMES], dtype=np.float64)
    # Optimise only over the buckets the training set uses; the rest stay 0
    # (their L2-optimal value).
    used, local = np.unique(X.indices, return_inverse=True)
    Xl = Matrix.__new__(Matrix)
    Xl.indptr, Xl.indices, Xl.data, Xl.rows, Xl.n, Xl.dim = X.indptr, local, X.data, X.rows, X.n, len(used)
    dim = len(used)
    nd = D.shape[1]

    def fun(theta: np.ndarray):
        w, dw, b = theta[:dim], theta[dim : dim + nd], theta[-1]
        z = Xl.dot(w) + D.dot(dw) + b
        p = 1.0 / (1.0 + np.exp(-z))
        # Soft-label cross entropy, computed stably.
        loss = np.sum(sw * (np.logaddexp(0.0, z) - y * z))
        loss += 0.5 * tcfg.l2 * w.dot(w) + 0.5 * tcfg.l2_dense * dw.dot(dw)
        r = sw * (p - y)
        grad = np.concatenate([Xl.tdot(r) + tcfg.l2 * w, D.T.dot(r) + tcfg.l2_dense * dw, [r.sum()]])
        return loss, grad

    theta = _lbfgs(fun, np.zeros(dim + nd + 1), tcfg.iters)
    weights = np.zeros(X.dim)
    weights[used] = theta[:dim]
    return Model(fcfg, weights, theta[dim : dim + nd], mean, std, float(theta[-1]))


def curve(scores: np.ndarray, strong: np.ndarray, weak: np.ndarray) -> np.ndarray:
    """Cumulative quality gain G(k), k = 0..n, sending the top-k scores to strong.

    Ties in the router score are spread evenly (the expectation over random
    tie-breaking)."""
    order = np.argsort(-scores, kind="stable")
    s, d = scores[order], (strong - weak)[order]
    n = len(s)
    gain = np.zeros(n + 1)
    i = 0
    acc = 0.0
    while i < n:
        j = i
        while j + 1 < n and s[j + 1] == s[i]:
            j += 1
        size = j - i + 1
        group = d[i : j + 1].sum()
        for k in range(1, size + 1):
            gain[i + k] = acc + group * k / size
        acc += group
        i = j + 1
    return gain


def metrics(scores, strong, weak) -> tuple[float, float, float] | None:
    """(APGR, CPT(50%), CPT(80%)) as RouteLLM defines them; None when the strong
    model has no advantage on these rows (PGR is undefined)."""
    scores = np.asarray(scores, dtype=np.float64)
    strong = np.asarray(strong, dtype=np.float64)
    weak = np.asarray(weak, dtype=np.float64)
    n = len(scores)
    gap = strong.sum() - weak.sum()
    if gap <= 0:
        return None
    pgr = curve(scores, strong, weak) / gap
    apgr = float(np.sum((pgr[1:] + pgr[:-1]) / 2.0) / n)
    frac = np.arange(n + 1) / n

    def cpt(x: float) -> float:
        hit = np.nonzero(pgr >= x - 1e-12)[0]
        return float(frac[hit[0]]) if len(hit) else 1.0

    return apgr, cpt(0.5), cpt(0.8)


def select_config(
    examples: list[Example],
    fcfg: FeatureConfig,
    cache: tuple[Matrix, np.ndarray] | None = None,
) -> tuple[TrainConfig, dict[str, float]]:
    """Picks the candidate with the best cross-validated APGR on `examples`.

    When the examples come from two or more prompt sources (AlpacaEval and each
    RouterBench dataset count as one each), every fold holds out one whole
    source, so the choice rewards what carries over to prompts of a kind not
    seen in training; with a single source the folds are random. The score is
    the mean APGR of the out-of-fold predictions over every label set (one per
    data file and source) of at least 20 rows where the strong model has an
    advantage."""
    X, dense = cache if cache is not None else featurise(examples, fcfg)
    n = len(examples)
    groups = sorted({e.group for e in examples})
    if len(groups) >= 2:
        fold = np.asarray([groups.index(e.group) for e in examples])
    else:
        fold = np.empty(n, dtype=np.int64)
        fold[np.random.default_rng(CV_SEED).permutation(n)] = np.arange(n) % CV_FOLDS
    label_sets: dict[tuple[str, str], list[tuple[int, float, float]]] = {}
    for i, e in enumerate(examples):
        for r in e.rows:
            label_sets.setdefault((r["file"], r["group"]), []).append(
                (i, r["strong_score"], r["weak_score"])
            )
    sparse = [
        (X.indices[X.indptr[i] : X.indptr[i + 1]], X.data[X.indptr[i] : X.indptr[i + 1]]) for i in range(n)
    ]
    scores: dict[str, float] = {}
    for cand in CANDIDATES:
        oof = np.zeros(n)
        for k in np.unique(fold):
            tr = np.nonzero(fold != k)[0]
            te = np.nonzero(fold == k)[0]
            sub = (Matrix([sparse[i] for i in tr], X.dim), dense[tr])
            model = train([examples[i] for i in tr], fcfg, cand, sub)
            oof[te] = predict(model, Matrix([sparse[i] for i in te], X.dim), dense[te])
        apgrs = []
        for key in sorted(label_sets):
            ids, strong, weak = (np.asarray(c) for c in zip(*label_sets[key]))
            m = metrics(oof[ids.astype(np.int64)], strong, weak)
            if m is not None and len(ids) >= 20:
                apgrs.append(m[0])
        scores[cand.name] = float(np.mean(apgrs))
    best = max(CANDIDATES, key=lambda c: scores[c.name])
    return best, scores


def predict(model: Model, X: Matrix, dense: np.ndarray) -> np.ndarray:
    z = X.dot(model.weights) + ((dense - model.dense_mean) / model.dense_std).dot(model.dense_w) + model.bias
    return 1.0 / (1.0 + np.exp(-z))


# ---------------------------------------------------------------------------
# Serialisation
# ---------------------------------------------------------------------------


def quantise(model: Model) -> Model:
    """Rounds every parameter to f32, the precision the Rust side stores."""
    f = lambda a: np.asarray(a, dtype=np.float32).astype(np.float64)  # noqa: E731
    return Model(
        model.fcfg,
        f(model.weights),
        f(model.dense_w),
        f(model.dense_mean),
        f(model.dense_std),
        float(np.float32(model.bias)),
    )


def to_json(model: Model, meta: dict) -> str:
    """Sparse JSON: only non-zero hashed weights are stored, as f32 values."""
    m = quantise(model)
    nz = np.nonzero(m.weights)[0]
    import base64

    idx_b64 = base64.b64encode(nz.astype("<u4").tobytes()).decode("ascii")
    val_b64 = base64.b64encode(m.weights[nz].astype("<f4").tobytes()).decode("ascii")
    doc = {
        "format": FORMAT_VERSION,
        "features": m.fcfg.to_json(),
        "bias": float(np.float32(m.bias)),
        "dense": {
            "names": list(DENSE_NAMES),
            "mean": [float(v) for v in m.dense_mean],
            "std": [float(v) for v in m.dense_std],
            "weights": [float(v) for v in m.dense_w],
        },
        "sparse": {"count": int(len(nz)), "indices_u32le_b64": idx_b64, "values_f32le_b64": val_b64},
        "meta": meta,
    }
    return json.dumps(doc, indent=1, sort_keys=True) + "\n"


PARITY_TEXTS = [
    "",
    "hi",
    "What is the capital of France?",
    "Write a Python function that merges two sorted lists in O(n) time.\n\n```python\ndef merge(a, b):\n    pass\n```",
    "Prove that the square root of 2 is irrational. Then compute ∫_0^1 x² dx and explain each step.",
    "Ünïcödé  tëxt\twith\r\nmixed   WHITESPACE and emoji 🚀🚀 — plus a very long tail " + "lorem ipsum " * 80,
]


FEATURE_PARITY_TEXTS = [
    "Hello, World!  Is 2+2=4?\n\nYes.",
    "def f(x):\n\treturn x**2  # caf\u00e9 \u00fcber",
]


def feature_fixture(text: str, cfg: FeatureConfig) -> dict:
    idx, val = feature_arrays(text, cfg)
    return {
        "text": text,
        "features": [[int(i), float(v)] for i, v in zip(idx, val)],
        "dense": dense_features(text),
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", default=DEFAULT_DATA)
    ap.add_argument("--out", default=DEFAULT_OUT)
    ap.add_argument("--check", action="store_true", help="select once, then train twice and compare hashes")
    args = ap.parse_args()

    rows = load_rows(args.data)
    examples = examples_from_rows(rows)
    fcfg = FeatureConfig()
    cache = featurise(examples, fcfg)
    tcfg, cv = select_config(examples, fcfg, cache)
    print(f"cross-validated APGR: {json.dumps(cv)}; using {tcfg.name!r}")
    digests = []
    for _ in range(2 if args.check else 1):
        model = train(examples, fcfg, tcfg, cache)
        meta = {
            "trained_on": sorted({r["file"] for r in rows}),
            "examples": len(examples),
            "labels": len(rows),
            "config": tcfg.to_json(),
            "cross_validated_apgr": cv,
            "parity": [
                {"text": t, "score": quantise(model).score_one(t)} for t in PARITY_TEXTS
            ],
            "feature_parity": [feature_fixture(t, fcfg) for t in FEATURE_PARITY_TEXTS],
        }
        doc = to_json(model, meta)
        digests.append(hashlib.sha256(doc.encode()).hexdigest())
        print(f"weights sha256 {digests[-1]}")
    if args.check and len(set(digests)) != 1:
        print("training is not reproducible: the two runs differ", file=sys.stderr)
        return 1
    os.makedirs(os.path.dirname(args.out), exist_ok=True)
    with open(args.out, "w", encoding="utf-8") as fh:
        fh.write(doc)
    print(f"wrote {args.out} ({len(doc)} bytes, {len(examples)} prompts, {len(rows)} labels)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
