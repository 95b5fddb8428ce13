"""Embeddings through a running Watershed with the official `openai` Python
SDK: one string, a list of strings, and base64 (the SDK decodes it itself);
with `dimensions` when a third argument says how many. Prints one JSON
object for the Rust test to check: each answer's vectors, usage, model and
the gateway's request id.

Usage: openai_sdk_embeddings.py BASE_URL MODEL [DIMENSIONS]
"""

import base64
import json
import struct
import sys

import openai


def main() -> None:
    base_url, model = sys.argv[1:3]
    dims = int(sys.argv[3]) if len(sys.argv) > 3 else None
    client = openai.OpenAI(base_url=f"{base_url}/v1", api_key="unused-virtual-key", max_retries=0)
    extra = {"dimensions": dims} if dims else {}
    out = {}

    def record(name, raw):
        resp = raw.parse()
        out[name] = {
            "request_id": raw.headers.get("x-request-id"),
            "backend": raw.headers.get("x-watershed-backend"),
            "model": resp.model,
            "vectors": [d.embedding for d in resp.data],
            "indexes": [d.index for d in resp.data],
            "prompt_tokens": resp.usage.prompt_tokens,
            "total_tokens": resp.usage.total_tokens,
        }

    record(
        "string",
        client.embeddings.with_raw_response.create(
            model=model, input="The river meets the sea.", user="user-42", encoding_format="float", **extra
        ),
    )
    record(
        "list",
        client.embeddings.with_raw_response.create(
            model=model, input=["The river meets the sea.", "Quarterly revenue grew."], encoding_format="float", **extra
        ),
    )
    # Without encoding_format the SDK asks for base64 and decodes it; ask
    # for it by name and decode by hand too, so the bytes are checked.
    record(
        "base64_sdk",
        client.embeddings.with_raw_response.create(model=model, input="The river meets the sea.", **extra),
    )
    raw = client.with_options().post(
        "/embeddings",
        body={"model": model, "input": "The river meets the sea.", "encoding_format": "base64", **extra},
        cast_to=object,
    )
    b = base64.b64decode(raw["data"][0]["embedding"])
    out["base64_manual"] = list(struct.unpack(f"<{len(b) // 4}f", b))
    print(json.dumps(out))


if __name__ == "__main__":
    main()
