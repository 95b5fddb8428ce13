"""Drives a running Watershed's `/v1/messages` with the official `anthropic`
Python SDK's async client, `anthropic.AsyncAnthropic`: messages plain and
streamed and `count_tokens` on each model given, a tool_use plain and
streamed and its result sent back on the closed one; the two models' calls
run concurrently. Every call records its `x-request-id` and the tokens the
SDK saw, for the Rust test to check against the ledger. Prints one JSON
object.

Usage: anthropic_sdk_async.py BASE_URL LOCAL_MODEL CLOSED_MODEL
"""

import asyncio
import json
import sys

import anthropic

TOOLS = [
    {
        "name": "get_weather",
        "description": "Weather for a city",
        "input_schema": {
            "type": "object",
            "properties": {"query": {"type": "string"}},
            "required": ["query"],
        },
    }
]
PROMPT = [{"role": "user", "content": "Name a colour of the sky."}]


def seen(raw, usage, **more):
    return {
        "request_id": raw.headers.get("x-request-id"),
        "backend": raw.headers.get("x-watershed-backend"),
        "input_tokens": usage.input_tokens + (usage.cache_read_input_tokens or 0),
        "output_tokens": usage.output_tokens,
        **more,
    }


async def plain(client, model):
    raw = await client.messages.with_raw_response.create(
        model=model, max_tokens=12, system="You are terse.", messages=PROMPT, temperature=0
    )
    msg = raw.parse()  # with_raw_response parses synchronously
    assert msg.type == "message" and msg.content[0].type == "text" and msg.content[0].text, msg
    return seen(raw, msg.usage, text=msg.content[0].text, stop_reason=msg.stop_reason)


async def streamed(client, model):
    async with client.messages.stream(
        model=model,
        max_tokens=16,
        messages=[{"role": "user", "content": "Count from one to five."}],
        temperature=0,
    ) as stream:
        text = "".join([t async for t in stream.text_stream])
        final = await stream.get_final_message()
    assert text == final.content[0].text, (text, final)
    return {
        "request_id": stream.response.headers.get("x-request-id"),
        "backend": stream.response.headers.get("x-watershed-backend"),
        "input_tokens": final.usage.input_tokens + (final.usage.cache_read_input_tokens or 0),
        "output_tokens": final.usage.output_tokens,
        "text": text,
    }


async def count(client, model):
    counted = await client.messages.count_tokens(model=model, system="You are terse.", messages=PROMPT)
    return counted.input_tokens


async def tools(client, model):
    messages = [{"role": "user", "content": "weather in Oslo"}]
    raw = await client.messages.with_raw_response.create(
        model=model, max_tokens=64, messages=messages, tools=TOOLS, tool_choice={"type": "any"}
    )
    msg = raw.parse()  # with_raw_response parses synchronously
    assert msg.stop_reason == "tool_use", msg
    use = next(b for b in msg.content if b.type == "tool_use")
    out = {"plain": seen(raw, msg.usage, id=use.id, name=use.name, input=use.input)}
    async with client.messages.stream(model=model, max_tokens=64, messages=messages, tools=TOOLS) as stream:
        final = await stream.get_final_message()
    suse = next(b for b in final.content if b.type == "tool_use")
    assert final.stop_reason == "tool_use", final
    out["stream"] = {"id": suse.id, "name": suse.name, "input": suse.input}
    messages.append({"role": "assistant", "content": [b.model_dump() for b in msg.content]})
    messages.append(
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": use.id, "content": "minus 3"}]}
    )
    answer = await client.messages.create(model=model, max_tokens=64, messages=messages, tools=TOOLS)
    out["answer"] = {"text": answer.content[0].text, "stop_reason": answer.stop_reason}
    return out


async def one_model(client, model, with_tools):
    out = {
        "plain": await plain(client, model),
        "stream": await streamed(client, model),
        "count_tokens": await count(client, model),
    }
    if with_tools:
        out["tools"] = await tools(client, model)
    return out


async def main() -> None:
    base_url, local_model, closed_model = sys.argv[1:4]
    async with anthropic.AsyncAnthropic(base_url=base_url, api_key="unused-virtual-key", max_retries=0) as client:
        local, closed = await asyncio.gather(one_model(client, local_model, False), one_model(client, closed_model, True))
        try:
            await client.messages.create(model=local_model, max_tokens=5, messages=[])
            raise AssertionError("empty messages accepted")
        except anthropic.BadRequestError as e:
            bad = {"status": e.status_code, "type": e.body["type"]}
    print(json.dumps({"local": local, "closed": closed, "bad_request": bad}))


if __name__ == "__main__":
    asyncio.run(main())
