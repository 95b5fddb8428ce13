"""Drives a running Watershed's `/v1/messages` with the official `anthropic`
Python SDK: only base_url changes. Prints one JSON object with what each call
returned, for the Rust test to check.

Usage: anthropic_sdk_e2e.py BASE_URL MODEL
"""

import json
import sys

import anthropic


def main() -> None:
    base_url, model = sys.argv[1:3]
    client = anthropic.Anthropic(base_url=base_url, api_key="unused-virtual-key", max_retries=0)
    out = {}

    raw = client.messages.with_raw_response.create(
        model=model,
        max_tokens=12,
        system="You are terse.",
        messages=[{"role": "user", "content": "Name a colour of the sky."}],
        temperature=0,
    )
    msg = raw.parse()
    assert msg.type == "message" and msg.role == "assistant", msg
    assert msg.content and msg.content[0].type == "text" and msg.content[0].text
    assert msg.stop_reason in ("end_turn", "max_tokens", "stop_sequence"), msg.stop_reason
    out["plain"] = {
        "request_id": raw.headers.get("x-request-id"),
        "backend": raw.headers.get("x-watershed-backend"),
        "text": msg.content[0].text,
        "input_tokens": msg.usage.input_tokens,
        "output_tokens": msg.usage.output_tokens,
    }

    with client.messages.stream(
        model=model,
        max_tokens=16,
        messages=[{"role": "user", "content": "Count from one to five."}],
        temperature=0,
    ) as stream:
        text = "".join(stream.text_stream)
        final = stream.get_final_message()
    assert final.usage.output_tokens > 0
    assert text == final.content[0].text
    out["stream"] = {"text": text, "output_tokens": final.usage.output_tokens, "stop_reason": final.stop_reason}

    # count_tokens: the same prompt as the plain call, counted exactly by the
    # backend, so it equals what that call reported (cache reads included).
    counted = client.messages.count_tokens(
        model=model,
        system="You are terse.",
        messages=[{"role": "user", "content": "Name a colour of the sky."}],
    )
    out["count_tokens"] = {
        "input_tokens": counted.input_tokens,
        "plain_prompt_tokens": msg.usage.input_tokens + (msg.usage.cache_read_input_tokens or 0),
    }

    # Stop sequences: a short English answer holds a space, an "e" or a comma,
    # so one of them ends it, and the answer names which.
    stops = [" ", "e", ",", "\n"]
    stopped = client.messages.create(
        model=model,
        max_tokens=16,
        messages=[{"role": "user", "content": "Say hello to the world."}],
        stop_sequences=stops,
        temperature=0,
    )
    assert stopped.stop_reason == "stop_sequence", stopped
    assert stopped.stop_sequence in stops, stopped
    with client.messages.stream(
        model=model,
        max_tokens=16,
        messages=[{"role": "user", "content": "Say hello to the world."}],
        stop_sequences=stops,
        temperature=0,
    ) as stream:
        start_input = None
        for event in stream:
            if event.type == "message_start":
                start_input = event.message.usage.input_tokens
        final = stream.get_final_message()
    assert final.stop_reason == "stop_sequence", final
    assert final.stop_sequence == stopped.stop_sequence, (final, stopped)
    assert start_input == final.usage.input_tokens, (start_input, final.usage)
    # From the local engine, that one number is the exact count.
    hello = client.messages.count_tokens(
        model=model, messages=[{"role": "user", "content": "Say hello to the world."}]
    )
    assert final.usage.input_tokens == hello.input_tokens, (final.usage, hello)
    out["stop_sequence"] = {"plain": stopped.stop_sequence, "stream": final.stop_sequence}

    try:
        client.messages.create(model=model, max_tokens=5, messages=[])
        raise AssertionError("empty messages accepted")
    except anthropic.BadRequestError as e:
        out["bad_request"] = {"status": e.status_code, "body": e.body}

    print(json.dumps(out))


if __name__ == "__main__":
    main()
