#!/usr/bin/env python3
"""Writes a large synthetic Qwen3-MoE GGUF with the Python standard library only.

`make_moe_gguf.py` builds small test models with numpy and the `gguf` package;
this one is for benchmark-sized models (tens of GB, e.g. shaped like
Qwen3-30B-A3B) on machines that have neither package. Tensors are written as
quantized blocks (Q4_0 or Q8_0) with a small fixed scale and random quants,
streamed from a repeating random buffer, so a 17 GB file takes as long as the
disk needs. The model is nonsense but llama.cpp runs it as a real MoE: same
tensors, same expert routing, same bytes read per token.

The tokenizer comes from a GGUF that holds only tokenizer keys, made once with
`--export-tokenizer` where the `gguf` package is available:

    .venv/bin/python scripts/make_big_moe_gguf.py --export-tokenizer tok.gguf \
        --from models/SmolLM2-135M-Instruct.Q4_1.gguf
    python3 scripts/make_big_moe_gguf.py --tokenizer tok.gguf --out big.gguf \
        --preset qwen3-30b-a3b --type q4_0
"""

from __future__ import annotations

import argparse
import os
import pathlib
import random
import struct
import sys

ALIGN = 32
# GGUF value types.
U32, F32, STRING, ARRAY = 4, 6, 8, 9
# ggml tensor types: (id, elements per block, bytes per block, GGUF file type).
QTYPES = {"q4_0": (2, 32, 18, 2), "q8_0": (8, 32, 34, 7)}
F32_TYPE = 0

PRESETS = {
    # For checking the writer itself.
    "tiny": dict(layers=2, embd=128, heads=4, kv_heads=2, head_dim=32,
                 experts=8, used=2, expert_ff=128),
    # Qwen3-30B-A3B's shape: 48 layers, 2048 wide, 32/4 heads of 128, 128 experts
    # of 768, top-8.
    "qwen3-30b-a3b": dict(layers=48, embd=2048, heads=32, kv_heads=4, head_dim=128,
                          experts=128, used=8, expert_ff=768),
    # gpt-oss-20b's size class: 24 layers, 2880 wide, 32 experts of 2880, top-4.
    "gpt-oss-20b-like": dict(layers=24, embd=2880, heads=64, kv_heads=8, head_dim=64,
                             experts=32, used=4, expert_ff=2880),
}


def gguf_string(s: str) -> bytes:
    b = s.encode()
    return struct.pack("<Q", len(b)) + b


def kv(key: str, vtype: int, value) -> bytes:
    out = gguf_string(key) + struct.pack("<I", vtype)
    if vtype == U32:
        return out + struct.pack("<I", value)
    if vtype == F32:
        return out + struct.pack("<f", value)
    if vtype == STRING:
        return out + gguf_string(value)
    raise ValueError(vtype)


def skip_value(buf: bytes, pos: int, vtype: int) -> int:
    """Returns the position after one GGUF value of type `vtype` at `pos`."""
    fixed = {0: 1, 1: 1, 2: 2, 3: 2, 4: 4, 5: 4, 6: 4, 7: 1, 10: 8, 11: 8, 12: 8}
    if vtype in fixed:
        return pos + fixed[vtype]
    if vtype == STRING:
        (n,) = struct.unpack_from("<Q", buf, pos)
        return pos + 8 + n
    if vtype == ARRAY:
        sub, n = struct.unpack_from("<IQ", buf, pos)
        pos += 12
        if sub in fixed:
            return pos + fixed[sub] * n
        for _ in range(n):
            pos = skip_value(buf, pos, sub)
        return pos
    raise ValueError(f"unknown GGUF value type {vtype}")


def tokenizer_kvs(path: pathlib.Path) -> tuple[bytes, int, int]:
    """The raw tokenizer.* key/value records of a GGUF, their count and the vocabulary size."""
    buf = path.read_bytes()
    if buf[:4] != b"GGUF":
        raise SystemExit(f"{path} is not a GGUF file")
    _, _, n_kv = struct.unpack_from("<IQQ", buf, 4)
    pos, out, count, n_vocab = 24, bytearray(), 0, 0
    for _ in range(n_kv):
        start = pos
        (klen,) = struct.unpack_from("<Q", buf, pos)
        key = buf[pos + 8:pos + 8 + klen].decode()
        pos += 8 + klen
        (vtype,) = struct.unpack_from("<I", buf, pos)
        if key == "tokenizer.ggml.tokens":
            (n_vocab,) = struct.unpack_from("<Q", buf, pos + 8)
        pos = skip_value(buf, pos + 4, vtype)
        if key.startswith("tokenizer."):
            out += buf[start:pos]
            count += 1
    if n_vocab == 0:
        raise SystemExit(f"{path} has no tokenizer.ggml.tokens")
    return bytes(out), count, n_vocab


def export_tokenizer(src: pathlib.Path, dst: pathlib.Path) -> None:
    import gguf  # only here: the export runs where the package is installed

    r = gguf.GGUFReader(src)
    w = gguf.GGUFWriter(dst, "tokenizer")
    for key, field in r.fields.items():
        if key.startswith("tokenizer."):
            vtype = field.types[0]
            if vtype == gguf.GGUFValueType.ARRAY:
                w.add_key_value(key, field.contents(), vtype, sub_type=field.types[-1])
            else:
                w.add_key_value(key, field.contents(), vtype)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.close()


def pad(n: int) -> int:
    return (ALIGN - n % ALIGN) % ALIGN


def block_pattern(qtype: str, nbytes: int, rng: random.Random) -> bytes:
    """Random quant blocks with a fixed small scale (about 0.02 per weight)."""
    _, _, bsize, _ = QTYPES[qtype]
    scale = struct.pack("<e", 0.0025 if qtype == "q4_0" else 0.0005)
    body = bsize - 2
    n_blocks = max(1, nbytes // bsize)
    raw = rng.randbytes(n_blocks * body)
    return b"".join(scale + raw[i * body:(i + 1) * body] for i in range(n_blocks))


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--export-tokenizer", type=pathlib.Path)
    p.add_argument("--from", dest="src", type=pathlib.Path)
    p.add_argument("--tokenizer", type=pathlib.Path)
    p.add_argument("--out", type=pathlib.Path)
    p.add_argument("--preset", choices=sorted(PRESETS), default="qwen3-30b-a3b")
    p.add_argument("--type", choices=sorted(QTYPES), default="q4_0")
    p.add_argument("--context", type=int, default=32768)
    p.add_argument("--seed", type=int, default=0)
    a = p.parse_args(argv)
    if a.export_tokenizer:
        if not a.src:
            raise SystemExit("--export-tokenizer needs --from MODEL.gguf")
        export_tokenizer(a.src, a.export_tokenizer)
        return 0
    if not (a.tokenizer and a.out):
        raise SystemExit("--tokenizer and --out are required")
    s = PRESETS[a.preset]
    qid, qblock, qbytes, ftype = QTYPES[a.type]
    tok, n_tok_kv, n_vocab = tokenizer_kvs(a.tokenizer)
    L, E, hd = s["layers"], s["embd"], s["head_dim"]
    q_dim, kv_dim = hd * s["heads"], hd * s["kv_heads"]
    X, FF = s["experts"], s["expert_ff"]

    arch = "qwen3moe"
    kvs = [
        kv("general.architecture", STRING, arch),
        kv("general.name", STRING, f"Synthetic {a.preset} {a.type}"),
        kv("general.file_type", U32, ftype),
        kv(f"{arch}.context_length", U32, a.context),
        kv(f"{arch}.embedding_length", U32, E),
        kv(f"{arch}.block_count", U32, L),
        kv(f"{arch}.feed_forward_length", U32, FF * s["used"]),
        kv(f"{arch}.attention.head_count", U32, s["heads"]),
        kv(f"{arch}.attention.head_count_kv", U32, s["kv_heads"]),
        kv(f"{arch}.attention.key_length", U32, hd),
        kv(f"{arch}.attention.value_length", U32, hd),
        kv(f"{arch}.rope.freq_base", F32, 1_000_000.0),
        kv(f"{arch}.attention.layer_norm_rms_epsilon", F32, 1e-6),
        kv(f"{arch}.expert_count", U32, X),
        kv(f"{arch}.expert_used_count", U32, s["used"]),
        kv(f"{arch}.expert_feed_forward_length", U32, FF),
    ]

    # (name, ggml dims with ne0 first, type)
    tensors: list[tuple[str, list[int], int]] = [
        ("token_embd.weight", [E, n_vocab], qid),
        ("output_norm.weight", [E], F32_TYPE),
    ]
    for i in range(L):
        b = f"blk.{i}."
        tensors += [
            (b + "attn_norm.weight", [E], F32_TYPE),
            (b + "attn_q.weight", [E, q_dim], qid),
            (b + "attn_k.weight", [E, kv_dim], qid),
            (b + "attn_v.weight", [E, kv_dim], qid),
            (b + "attn_output.weight", [q_dim, E], qid),
            (b + "attn_q_norm.weight", [hd], F32_TYPE),
            (b + "attn_k_norm.weight", [hd], F32_TYPE),
            (b + "ffn_norm.weight", [E], F32_TYPE),
            (b + "ffn_gate_inp.weight", [E, X], F32_TYPE),
            (b + "ffn_gate_exps.weight", [E, FF, X], qid),
            (b + "ffn_up_exps.weight", [E, FF, X], qid),
            (b + "ffn_down_exps.weight", [FF, E, X], qid),
        ]

    def nbytes(dims: list[int], t: int) -> int:
        n = 1
        for d in dims:
            n *= d
        return n * 4 if t == F32_TYPE else n // qblock * qbytes

    infos, offset, params = bytearray(), 0, 0
    for name, dims, t in tensors:
        infos += gguf_string(name) + struct.pack("<I", len(dims))
        infos += b"".join(struct.pack("<Q", d) for d in dims)
        infos += struct.pack("<IQ", t, offset)
        size = nbytes(dims, t)
        offset += size + pad(size)
        n = 1
        for d in dims:
            n *= d
        params += n

    rng = random.Random(a.seed)
    quant = block_pattern(a.type, 64 << 20, rng)
    ones = struct.pack("<f", 1.0) * (1 << 20)
    router = b"".join(struct.pack("<f", rng.gauss(0.0, 0.02)) for _ in range(1 << 18))

    def stream(f, pattern: bytes, size: int) -> None:
        while size > 0:
            chunk = pattern[:size]
            f.write(chunk)
            size -= len(chunk)

    a.out.parent.mkdir(parents=True, exist_ok=True)
    tmp = a.out.with_suffix(a.out.suffix + ".part")
    with open(tmp, "wb") as f:
        head = b"GGUF" + struct.pack("<IQQ", 3, len(tensors), len(kvs) + n_tok_kv)
        head += b"".join(kvs) + tok + bytes(infos)
        f.write(head + b"\0" * pad(len(head)))
        for name, dims, t in tensors:
            size = nbytes(dims, t)
            if t != F32_TYPE:
                stream(f, quant, size)
            elif name.endswith("ffn_gate_inp.weight"):
                stream(f, router, size)
            else:
                stream(f, ones, size)
            f.write(b"\0" * pad(size))
    os.replace(tmp, a.out)
    active = params - L * 3 * E * FF * (X - s["used"])
    print(
        f"wrote {a.out}: {a.out.stat().st_size} bytes, {params / 1e9:.2f} B parameters, "
        f"{active / 1e9:.2f} B active per token ({arch}, {L} layers, {X} experts, "
        f"top-{s['used']}, {a.type})"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
