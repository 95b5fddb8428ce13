#!/usr/bin/env python3
"""Writes a small synthetic mixture-of-experts model as GGUF, for tests and
benchmarks of the local engine's MoE support.

The architecture is llama.cpp's `qwen3moe` (Qwen3-MoE layout: routed experts
with a softmax top-k router, QK-norm attention). The weights are random, so the
text it generates is nonsense, but llama.cpp loads and runs it exactly like a
real MoE model: same tensors, same expert routing, same memory traffic per
token. The tokenizer and chat template are copied from an existing GGUF (the
default SmolLM2 model), so prompts tokenize and template normally.

    .venv/bin/python scripts/make_moe_gguf.py --out models/moe-test.gguf
    .venv/bin/python scripts/make_moe_gguf.py --out big.gguf --layers 48 \
        --embd 2048 --experts 128 --used 8 --expert-ff 768 --heads 32 --kv-heads 4 --type q8_0
"""

from __future__ import annotations

import argparse
import pathlib
import sys

import numpy as np

import gguf
from gguf import GGMLQuantizationType, GGUFReader, GGUFValueType, GGUFWriter

ARCH = "qwen3moe"
DEFAULT_TOKENIZER = pathlib.Path(__file__).resolve().parent.parent / "models" / "SmolLM2-135M-Instruct.Q4_1.gguf"
TYPES = {
    "f32": GGMLQuantizationType.F32,
    "f16": GGMLQuantizationType.F16,
    "q8_0": GGMLQuantizationType.Q8_0,
}


def copy_tokenizer(src: pathlib.Path, w: GGUFWriter) -> int:
    """Copies every tokenizer.* key from `src`; returns the vocabulary size."""
    r = GGUFReader(src)
    n_vocab = 0
    for key, field in r.fields.items():
        if not key.startswith("tokenizer."):
            continue
        value = field.contents()
        vtype = field.types[0]
        if vtype == GGUFValueType.ARRAY:
            w.add_key_value(key, value, vtype, sub_type=field.types[-1])
            if key == "tokenizer.ggml.tokens":
                n_vocab = len(value)
        else:
            w.add_key_value(key, value, vtype)
    if n_vocab == 0:
        raise SystemExit(f"{src} has no tokenizer.ggml.tokens")
    return n_vocab


def tensor(w: GGUFWriter, name: str, data: np.ndarray, qtype: GGMLQuantizationType) -> None:
    """Adds `data` (numpy shape = ggml shape reversed) in the requested type.
    One-dimensional tensors (norms) stay F32, as llama.cpp expects."""
    data = data.astype(np.float32)
    if data.ndim == 1 or qtype == GGMLQuantizationType.F32:
        w.add_tensor(name, data)
    elif qtype == GGMLQuantizationType.F16:
        w.add_tensor(name, data.astype(np.float16))
    else:
        q = gguf.quants.quantize(data, qtype)
        w.add_tensor(name, q, raw_shape=q.shape, raw_dtype=qtype)


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", required=True, type=pathlib.Path)
    p.add_argument("--tokenizer-from", type=pathlib.Path, default=DEFAULT_TOKENIZER)
    p.add_argument("--layers", type=int, default=2)
    p.add_argument("--embd", type=int, default=64)
    p.add_argument("--heads", type=int, default=4)
    p.add_argument("--kv-heads", type=int, default=2)
    p.add_argument("--head-dim", type=int, default=0, help="default: embd / heads")
    p.add_argument("--experts", type=int, default=8)
    p.add_argument("--used", type=int, default=2)
    p.add_argument("--expert-ff", type=int, default=128)
    p.add_argument("--context", type=int, default=4096)
    p.add_argument("--type", choices=sorted(TYPES), default="f16")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--name", default="Synthetic Qwen3-MoE")
    a = p.parse_args(argv)
    if a.experts < a.used or a.used < 1:
        raise SystemExit("--used must be between 1 and --experts")
    head_dim = a.head_dim or a.embd // a.heads
    qtype = TYPES[a.type]
    rng = np.random.default_rng(a.seed)

    def rand(*shape: int) -> np.ndarray:
        return rng.standard_normal(shape, dtype=np.float32) * 0.02

    a.out.parent.mkdir(parents=True, exist_ok=True)
    tmp = a.out.with_suffix(a.out.suffix + ".part")
    w = GGUFWriter(tmp, ARCH)
    w.add_name(a.name)
    w.add_file_type({"f32": 0, "f16": 1, "q8_0": 7}[a.type])
    w.add_context_length(a.context)
    w.add_embedding_length(a.embd)
    w.add_block_count(a.layers)
    w.add_feed_forward_length(a.expert_ff * a.used)
    w.add_head_count(a.heads)
    w.add_head_count_kv(a.kv_heads)
    w.add_key_length(head_dim)
    w.add_value_length(head_dim)
    w.add_rope_freq_base(1_000_000.0)
    w.add_layer_norm_rms_eps(1e-6)
    w.add_expert_count(a.experts)
    w.add_expert_used_count(a.used)
    w.add_expert_feed_forward_length(a.expert_ff)
    n_vocab = copy_tokenizer(a.tokenizer_from, w)

    # numpy shapes are ggml shapes reversed: ggml {n_embd, n_vocab} is (n_vocab, n_embd).
    tensor(w, "token_embd.weight", rand(n_vocab, a.embd), qtype)
    tensor(w, "output_norm.weight", np.ones(a.embd, np.float32), qtype)
    q_dim, kv_dim = head_dim * a.heads, head_dim * a.kv_heads
    for i in range(a.layers):
        b = f"blk.{i}."
        tensor(w, b + "attn_norm.weight", np.ones(a.embd, np.float32), qtype)
        tensor(w, b + "attn_q.weight", rand(q_dim, a.embd), qtype)
        tensor(w, b + "attn_k.weight", rand(kv_dim, a.embd), qtype)
        tensor(w, b + "attn_v.weight", rand(kv_dim, a.embd), qtype)
        tensor(w, b + "attn_output.weight", rand(a.embd, q_dim), qtype)
        tensor(w, b + "attn_q_norm.weight", np.ones(head_dim, np.float32), qtype)
        tensor(w, b + "attn_k_norm.weight", np.ones(head_dim, np.float32), qtype)
        tensor(w, b + "ffn_norm.weight", np.ones(a.embd, np.float32), qtype)
        # The router stays F32, as converted Qwen3-MoE checkpoints keep it.
        w.add_tensor(b + "ffn_gate_inp.weight", rand(a.experts, a.embd))
        tensor(w, b + "ffn_gate_exps.weight", rand(a.experts, a.expert_ff, a.embd), qtype)
        tensor(w, b + "ffn_up_exps.weight", rand(a.experts, a.expert_ff, a.embd), qtype)
        tensor(w, b + "ffn_down_exps.weight", rand(a.experts, a.embd, a.expert_ff), qtype)

    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    tmp.replace(a.out)
    total = a.out.stat().st_size
    print(f"wrote {a.out} ({total} bytes): {ARCH}, {a.layers} layers, {a.experts} experts, top-{a.used}, {a.type}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
