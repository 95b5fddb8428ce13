"""Drives a running Watershed with the official `openai` Python SDK, exactly as an
application team would: only base_url changes. Prints one JSON object with what
each call returned, for the Rust test to check against the ledger.

Usage: openai_sdk_e2e.py BASE_URL LOCAL_MODEL CLOSED_MODEL
"""

import json
import sys

import openai


def main() -> None:
    base_url, local_model, closed_model = sys.argv[1:4]
    client = openai.OpenAI(base_url=f"{base_url}/v1", api_key="unused-virtual-key", max_retries=0)
    out = {}

    models = client.models.list()
    out["models"] = sorted(m.id for m in models.data)

    for label, model in (("local", local_model), ("closed", closed_model)):
        # Non-streaming, through with_raw_response to see Watershed's headers.
        raw = client.chat.completions.with_raw_response.create(
            model=model,
            messages=[
                {"role": "system", "content": "You are a terse assistant."},
                {"role": "user", "content": [{"type": "text", "text": "Name a colour of the sky."}]},
            ],
            max_tokens=12,
            temperature=0,
            seed=7,
            user="sdk-e2e",
            metadata={"suite": "e2e"},
        )
        resp = raw.parse()
        assert resp.object == "chat.completion", resp
        assert resp.choices[0].message.role == "assistant"
        assert resp.choices[0].message.content, "empty answer"
        assert resp.choices[0].finish_reason in ("stop", "length")
        assert resp.usage.total_tokens == resp.usage.prompt_tokens + resp.usage.completion_tokens
        out[f"{label}_plain"] = {
            "request_id": raw.headers.get("x-request-id"),
            "route": raw.headers.get("x-watershed-route"),
            "backend": raw.headers.get("x-watershed-backend"),
            "cost": raw.headers.get("x-watershed-cost-usd"),
            "text": resp.choices[0].message.content,
            "finish_reason": resp.choices[0].finish_reason,
            "prompt_tokens": resp.usage.prompt_tokens,
            "completion_tokens": resp.usage.completion_tokens,
        }

        # Streaming with usage in the last chunk.
        with client.chat.completions.with_streaming_response.create(
            model=model,
            messages=[{"role": "user", "content": "Count from one to five."}],
            max_tokens=16,
            temperature=0,
            stream=True,
            stream_options={"include_usage": True},
        ) as raw_stream:
            request_id = raw_stream.headers.get("x-request-id")
            backend = raw_stream.headers.get("x-watershed-backend")
            text, finish, usage, chunks = "", None, None, 0
            for chunk in raw_stream.parse():
                chunks += 1
                assert chunk.object == "chat.completion.chunk"
                if chunk.usage is not None:
                    assert chunk.choices == [], "usage chunk must have no choices"
                    usage = chunk.usage
                for choice in chunk.choices:
                    text += choice.delta.content or ""
                    finish = choice.finish_reason or finish
        assert usage is not None, "include_usage was not honoured"
        assert finish in ("stop", "length"), finish
        out[f"{label}_stream"] = {
            "request_id": request_id,
            "backend": backend,
            "text": text,
            "chunks": chunks,
            "finish_reason": finish,
            "prompt_tokens": usage.prompt_tokens,
            "completion_tokens": usage.completion_tokens,
        }

    # Bad input answers in the OpenAI error shape, which the SDK turns into typed errors.
    try:
        client.chat.completions.create(model=local_model, messages=[], max_tokens=5)
        raise AssertionError("empty messages accepted")
    except openai.BadRequestError as e:
        out["bad_request"] = {"status": e.status_code, "body": e.body}
    try:
        client.chat.completions.create(model="gpt-6", messages=[{"role": "user", "content": "hi"}])
        raise AssertionError("unknown model accepted")
    except openai.NotFoundError as e:
        out["not_found"] = {"status": e.status_code, "body": e.body}
    try:
        # More choices than the local target decodes at once (parallel: 2).
        client.chat.completions.create(model=local_model, messages=[{"role": "user", "content": "hi"}], n=3)
        raise AssertionError("n=3 accepted")
    except openai.BadRequestError as e:
        out["n3"] = {"status": e.status_code, "body": e.body}

    # models.retrieve: one model object, and a typed 404 for an unknown id.
    model = client.models.retrieve(local_model)
    assert model.id == local_model and model.object == "model", model
    try:
        client.models.retrieve("gpt-6")
        raise AssertionError("unknown model retrieved")
    except openai.NotFoundError as e:
        out["retrieve_not_found"] = {"status": e.status_code, "body": e.body}
    out["retrieved"] = model.id

    print(json.dumps(out))


if __name__ == "__main__":
    main()
