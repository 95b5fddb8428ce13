"""The official `openai` Python SDK sending an image through a running
Watershed: one `image_url` part with a data URI and one with an https URL,
beside text, plain and streamed; then an image that is not one, which the
gateway refuses naming its field. Prints one JSON object for the Rust test
to check against what the mock upstream received.

Usage: openai_sdk_image.py BASE_URL MODEL PNG_BASE64
"""

import json
import sys

import openai


def main() -> None:
    base, model, png = sys.argv[1], sys.argv[2], sys.argv[3]
    client = openai.OpenAI(base_url=f"{base}/v1", api_key="unused", max_retries=0)
    content = [
        {"type": "text", "text": "what is in"},
        {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{png}", "detail": "low"}},
        {"type": "image_url", "image_url": {"url": "https://img.example/b.webp"}},
    ]
    out = {}
    plain = client.chat.completions.create(
        model=model, messages=[{"role": "user", "content": content}], max_tokens=16
    )
    out["plain"] = {"text": plain.choices[0].message.content, "finish_reason": plain.choices[0].finish_reason}
    stream = client.chat.completions.create(
        model=model, messages=[{"role": "user", "content": content}], max_tokens=16, stream=True
    )
    out["streamed"] = "".join(c.choices[0].delta.content or "" for c in stream if c.choices)
    try:
        client.chat.completions.create(
            model=model,
            messages=[{"role": "user", "content": [
                {"type": "image_url", "image_url": {"url": "data:image/png;base64,aGVsbG8gd29ybGQ="}}
            ]}],
        )
        raise AssertionError("a non-image was accepted")
    except openai.BadRequestError as e:
        out["refused"] = {"status": e.status_code, "param": e.param}
    print(json.dumps(out))


if __name__ == "__main__":
    main()
