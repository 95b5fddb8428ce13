"""Drives a running Watershed with the official `openai` Python SDK's async
client, `openai.AsyncOpenAI`, as an asyncio service would: chat plain and
streamed, `chat.completions.parse` with a pydantic model, embeddings and
`responses` plain and streamed on each model given, and tool calls plain and
streamed on the closed one; the local and closed calls run concurrently.
Every call records its `x-request-id` and the tokens the SDK saw, for the
Rust test to check against the ledger. Prints one JSON object.

Usage: openai_sdk_async.py BASE_URL LOCAL_MODEL CLOSED_MODEL EMBED_LOCAL EMBED_CLOSED
"""

import asyncio
import json
import sys

import openai
import pydantic

TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "get_weather",
            "description": "Weather for a city",
            "parameters": {
                "type": "object",
                "properties": {"query": {"type": "string"}},
                "required": ["query"],
                "additionalProperties": False,
            },
            # The async stream helper parses only strict tools' arguments.
            "strict": True,
        },
    }
]


class Colour(pydantic.BaseModel):
    name: str


def seen(raw, prompt_tokens, completion_tokens, **more):
    return {
        "request_id": raw.headers.get("x-request-id"),
        "backend": raw.headers.get("x-watershed-backend"),
        "prompt_tokens": prompt_tokens,
        "completion_tokens": completion_tokens,
        **more,
    }


async def chat(client, model):
    raw = await client.chat.completions.with_raw_response.create(
        model=model,
        messages=[{"role": "user", "content": "Name a colour of the sky."}],
        max_tokens=12,
        temperature=0,
    )
    resp = raw.parse()  # with_raw_response parses synchronously
    assert resp.choices[0].message.content, resp
    return seen(raw, resp.usage.prompt_tokens, resp.usage.completion_tokens, text=resp.choices[0].message.content)


async def chat_stream(client, model):
    async with client.chat.completions.with_streaming_response.create(
        model=model,
        messages=[{"role": "user", "content": "Count from one to five."}],
        max_tokens=16,
        temperature=0,
        stream=True,
        stream_options={"include_usage": True},
    ) as raw:
        text, usage = "", None
        async for chunk in await raw.parse():
            if chunk.usage is not None:
                usage = chunk.usage
            for choice in chunk.choices:
                text += choice.delta.content or ""
    assert usage is not None and text, (usage, text)
    return seen(raw, usage.prompt_tokens, usage.completion_tokens, text=text)


async def parse(client, model):
    raw = await client.chat.completions.with_raw_response.parse(
        model=model,
        messages=[{"role": "user", "content": "Name a colour as JSON."}],
        response_format=Colour,
        max_tokens=48,
        temperature=0,
    )
    resp = raw.parse()  # with_raw_response parses synchronously
    parsed = resp.choices[0].message.parsed
    assert isinstance(parsed, Colour), resp
    return seen(raw, resp.usage.prompt_tokens, resp.usage.completion_tokens, parsed=parsed.model_dump())


async def embed(client, model):
    raw = await client.embeddings.with_raw_response.create(
        model=model, input=["The river meets the sea.", "Quarterly revenue grew."], encoding_format="float"
    )
    resp = raw.parse()  # with_raw_response parses synchronously
    assert [d.index for d in resp.data] == [0, 1], resp
    return seen(raw, resp.usage.prompt_tokens, 0, vectors=len(resp.data), dims=len(resp.data[0].embedding))


async def responses(client, model):
    raw = await client.responses.with_raw_response.create(
        model=model, input="Name a colour of the sky.", max_output_tokens=12, temperature=0
    )
    resp = raw.parse()  # with_raw_response parses synchronously
    assert resp.output_text, resp
    return seen(raw, resp.usage.input_tokens, resp.usage.output_tokens, text=resp.output_text)


async def responses_stream(client, model):
    async with client.responses.with_streaming_response.create(
        model=model, input="Count from one to five.", max_output_tokens=16, temperature=0, stream=True
    ) as raw:
        text, final = "", None
        async for ev in await raw.parse():
            if ev.type == "response.output_text.delta":
                text += ev.delta
            elif ev.type in ("response.completed", "response.incomplete"):
                final = ev.response
    assert final is not None and text == final.output_text, (text, final)
    return seen(raw, final.usage.input_tokens, final.usage.output_tokens, text=text)


async def tools(client, model):
    messages = [{"role": "user", "content": "weather in Paris"}]
    raw = await client.chat.completions.with_raw_response.create(model=model, messages=messages, tools=TOOLS)
    resp = raw.parse()  # with_raw_response parses synchronously
    assert resp.choices[0].finish_reason == "tool_calls", resp
    call = resp.choices[0].message.tool_calls[0]
    plain = seen(
        raw,
        resp.usage.prompt_tokens,
        resp.usage.completion_tokens,
        id=call.id,
        name=call.function.name,
        arguments=json.loads(call.function.arguments),
    )
    # Streamed, through the SDK's own helper, which assembles the fragments.
    async with client.chat.completions.stream(model=model, messages=messages, tools=TOOLS) as stream:
        async for _ in stream:
            pass
        final = await stream.get_final_completion()
    scall = final.choices[0].message.tool_calls[0]
    assert final.choices[0].finish_reason == "tool_calls", final
    streamed = {"id": scall.id, "name": scall.function.name, "arguments": json.loads(scall.function.arguments)}
    return {"plain": plain, "stream": streamed}


async def one_model(client, model, embed_model, with_tools):
    out = {
        "chat": await chat(client, model),
        "chat_stream": await chat_stream(client, model),
        "parse": await parse(client, model),
        "embed": await embed(client, embed_model),
        "responses": await responses(client, model),
        "responses_stream": await responses_stream(client, model),
    }
    if with_tools:
        out["tools"] = await tools(client, model)
    return out


async def main() -> None:
    base_url, local_model, closed_model, embed_local, embed_closed = sys.argv[1:6]
    async with openai.AsyncOpenAI(base_url=f"{base_url}/v1", api_key="unused-virtual-key", max_retries=0) as client:
        local, closed = await asyncio.gather(
            one_model(client, local_model, embed_local, False),
            one_model(client, closed_model, embed_closed, True),
        )
        # Bad input is a typed error from the async client too.
        try:
            await client.chat.completions.create(model=local_model, messages=[], max_tokens=5)
            raise AssertionError("empty messages accepted")
        except openai.BadRequestError as e:
            bad = {"status": e.status_code, "param": e.param}
    print(json.dumps({"local": local, "closed": closed, "bad_request": bad}))


if __name__ == "__main__":
    asyncio.run(main())
