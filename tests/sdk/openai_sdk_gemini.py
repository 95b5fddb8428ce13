"""The official `openai` Python SDK through a running Watershed to a Gemini
target: chat plain (with the gateway's headers), streamed with usage, a tool
call plain and streamed, then the result sent back for the final answer.
Prints one JSON object for the Rust test to check against the mock and the
ledger.

Usage: openai_sdk_gemini.py BASE_URL MODEL
"""

import json
import sys

import openai

TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "get_weather",
            "description": "Weather for a city",
            "parameters": {
                "type": "object",
                "properties": {"query": {"type": "string", "description": "the city"}},
                "required": ["query"],
                "additionalProperties": False,
            },
        },
    }
]


def main() -> None:
    base_url, model = sys.argv[1:3]
    client = openai.OpenAI(base_url=f"{base_url}/v1", api_key="unused-virtual-key", max_retries=0)
    out = {}

    raw = client.chat.completions.with_raw_response.create(
        model=model,
        messages=[
            {"role": "system", "content": "You are terse."},
            {"role": "user", "content": "name a colour of the sky"},
        ],
        max_tokens=32,
        temperature=0.2,
        stop=["NEVER"],
    )
    resp = raw.parse()
    assert resp.usage.total_tokens == resp.usage.prompt_tokens + resp.usage.completion_tokens
    out["plain"] = {
        "request_id": raw.headers.get("x-request-id"),
        "backend": raw.headers.get("x-watershed-backend"),
        "cost": raw.headers.get("x-watershed-cost-usd"),
        "text": resp.choices[0].message.content,
        "finish_reason": resp.choices[0].finish_reason,
        "prompt_tokens": resp.usage.prompt_tokens,
        "completion_tokens": resp.usage.completion_tokens,
    }

    with client.chat.completions.with_streaming_response.create(
        model=model,
        messages=[{"role": "user", "content": "count one two three"}],
        stream=True,
        stream_options={"include_usage": True},
    ) as raw_stream:
        request_id = raw_stream.headers.get("x-request-id")
        text, finish, usage, chunks = "", None, None, 0
        for chunk in raw_stream.parse():
            chunks += 1
            if chunk.usage is not None:
                usage = chunk.usage
            for choice in chunk.choices:
                text += choice.delta.content or ""
                finish = choice.finish_reason or finish
    assert usage is not None, "include_usage was not honoured"
    out["stream"] = {
        "request_id": request_id,
        "text": text,
        "chunks": chunks,
        "finish_reason": finish,
        "prompt_tokens": usage.prompt_tokens,
        "completion_tokens": usage.completion_tokens,
    }

    messages = [{"role": "user", "content": "weather in Paris"}]
    call_resp = client.chat.completions.create(
        model=model, messages=messages, tools=TOOLS, tool_choice="required"
    )
    choice = call_resp.choices[0]
    assert choice.finish_reason == "tool_calls", choice
    call = choice.message.tool_calls[0]
    out["tool_plain"] = {
        "id": call.id,
        "name": call.function.name,
        "arguments": json.loads(call.function.arguments),
    }

    with client.chat.completions.stream(model=model, messages=messages, tools=TOOLS) as stream:
        for _ in stream:
            pass
        final = stream.get_final_completion()
    scall = final.choices[0].message.tool_calls[0]
    out["tool_stream"] = {
        "id": scall.id,
        "name": scall.function.name,
        "arguments": json.loads(scall.function.arguments),
        "finish_reason": final.choices[0].finish_reason,
    }

    messages.append(choice.message.model_dump(exclude_none=True))
    messages.append({"role": "tool", "tool_call_id": call.id, "content": "18C and sunny"})
    answer = client.chat.completions.create(model=model, messages=messages, tools=TOOLS)
    out["answer"] = {
        "text": answer.choices[0].message.content,
        "finish_reason": answer.choices[0].finish_reason,
    }

    # A schema Gemini cannot state is refused by its field, before it leaves.
    try:
        client.chat.completions.create(
            model=model,
            messages=[{"role": "user", "content": "x"}],
            tools=[
                {
                    "type": "function",
                    "function": {
                        "name": "f",
                        "parameters": {
                            "type": "object",
                            "properties": {"n": {"type": "number", "multipleOf": 3}},
                        },
                    },
                }
            ],
        )
        raise AssertionError("a schema gemini cannot state was accepted")
    except openai.BadRequestError as e:
        out["untranslatable"] = {"status": e.status_code, "param": e.param, "message": e.message}

    print(json.dumps(out))


if __name__ == "__main__":
    main()
