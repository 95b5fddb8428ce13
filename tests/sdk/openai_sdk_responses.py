"""Drives a running Watershed's `/v1/responses` with the official `openai`
Python SDK's `client.responses`: plain and streamed answers from the local
model and a closed (mock) target, a function tool round trip (plain and
streamed), `text.format` with a JSON schema, and refused fields. Prints one
JSON object for the Rust test to check against the ledger.

Usage: openai_sdk_responses.py BASE_URL LOCAL_MODEL CLOSED_MODEL
"""

import json
import sys

import openai
import pydantic

TOOLS = [
    {
        "type": "function",
        "name": "get_weather",
        "description": "Weather for a city",
        "parameters": {
            "type": "object",
            "properties": {"query": {"type": "string"}},
            "required": ["query"],
        },
    }
]


class Colour(pydantic.BaseModel):
    name: str


def headers_of(raw):
    return {
        "request_id": raw.headers.get("x-request-id"),
        "route": raw.headers.get("x-watershed-route"),
        "backend": raw.headers.get("x-watershed-backend"),
        "cost": raw.headers.get("x-watershed-cost-usd"),
    }


def plain(client, model):
    raw = client.responses.with_raw_response.create(
        model=model,
        instructions="You are a terse assistant.",
        input="Name a colour of the sky.",
        max_output_tokens=12,
        temperature=0,
        user="sdk-responses",
        metadata={"suite": "responses"},
        store=False,
    )
    resp = raw.parse()
    assert resp.object == "response", resp
    assert resp.id.startswith("resp_"), resp.id
    assert resp.output[0].type == "message" and resp.output[0].role == "assistant", resp
    assert resp.output_text, "empty answer"
    assert resp.status in ("completed", "incomplete"), resp.status
    if resp.status == "incomplete":
        assert resp.incomplete_details.reason == "max_output_tokens", resp
    assert resp.usage.total_tokens == resp.usage.input_tokens + resp.usage.output_tokens
    assert resp.instructions == "You are a terse assistant.", resp.instructions
    assert resp.metadata == {"suite": "responses"}, resp.metadata
    return {
        **headers_of(raw),
        "text": resp.output_text,
        "status": resp.status,
        "input_tokens": resp.usage.input_tokens,
        "output_tokens": resp.usage.output_tokens,
    }


def streamed(client, model, **kwargs):
    """A streamed response: event types in order, checked sequence numbers,
    the text assembled from deltas and the final response's."""
    with client.responses.with_streaming_response.create(model=model, stream=True, **kwargs) as raw:
        out = headers_of(raw)
        types, text, args, final = [], "", "", None
        for n, ev in enumerate(raw.parse()):
            assert ev.sequence_number == n, (n, ev)
            types.append(ev.type)
            if ev.type == "response.output_text.delta":
                text += ev.delta
            elif ev.type == "response.function_call_arguments.delta":
                args += ev.delta
            elif ev.type in ("response.completed", "response.incomplete", "response.failed"):
                final = ev.response
    assert final is not None, types
    out.update(
        {
            "types": types,
            "text": text,
            "arguments": args,
            "final_text": final.output_text,
            "status": final.status,
            "output": [item.model_dump(exclude_none=True) for item in final.output],
            "input_tokens": final.usage.input_tokens,
            "output_tokens": final.usage.output_tokens,
        }
    )
    return out


def main() -> None:
    base_url, local_model, closed_model = sys.argv[1:4]
    client = openai.OpenAI(base_url=f"{base_url}/v1", api_key="unused-virtual-key", max_retries=0)
    out = {}

    for label, model in (("local", local_model), ("closed", closed_model)):
        out[f"{label}_plain"] = plain(client, model)
        out[f"{label}_stream"] = streamed(
            client, model, input="Count from one to five.", max_output_tokens=16, temperature=0
        )

    # A function tool round trip on the closed target (the mock calls the
    # first tool it is offered, then answers with the tool's result).
    question = [{"role": "user", "content": [{"type": "input_text", "text": "weather in Paris"}]}]
    raw = client.responses.with_raw_response.create(
        model=closed_model, input=question, tools=TOOLS, tool_choice="auto", parallel_tool_calls=False
    )
    first = raw.parse()
    calls = [item for item in first.output if item.type == "function_call"]
    assert len(calls) == 1, first.output
    call = calls[0]
    answer_raw = client.responses.with_raw_response.create(
        model=closed_model,
        input=question + [call, {"type": "function_call_output", "call_id": call.call_id, "output": "18C and sunny"}],
        tools=TOOLS,
    )
    answer = answer_raw.parse()
    out["tools"] = {
        "call": headers_of(raw) | {"name": call.name, "call_id": call.call_id, "arguments": json.loads(call.arguments)},
        "answer": headers_of(answer_raw) | {"text": answer.output_text, "status": answer.status},
    }
    out["tools_stream"] = streamed(client, closed_model, input="weather in Oslo", tools=TOOLS)

    # The SDK's own stream helper, which rebuilds the response from the
    # events by their output and content indexes and fails on a misplaced one.
    with client.responses.stream(model=closed_model, input="weather in Rome", tools=TOOLS) as stream:
        for _ in stream:
            pass
        helper_call = stream.get_final_response()
    # (The helper wants response.completed: an answer cut by
    # max_output_tokens, which ends in response.incomplete, makes it raise.)
    with client.responses.stream(model=closed_model, input="Say hello.") as stream:
        deltas = "".join(ev.delta for ev in stream if ev.type == "response.output_text.delta")
        helper_text = stream.get_final_response()
    out["stream_helper"] = {
        "call_type": helper_call.output[0].type,
        "call_arguments": json.loads(helper_call.output[0].arguments),
        "deltas": deltas,
        "text": helper_text.output_text,
    }

    # text.format with a JSON schema: the local engine constrains its output
    # to the schema; `responses.parse` builds the schema from a pydantic model.
    raw = client.responses.with_raw_response.parse(
        model=local_model,
        input="Name a colour as JSON.",
        text_format=Colour,
        max_output_tokens=48,
        temperature=0,
    )
    parsed = raw.parse()
    assert parsed.status == "completed", parsed
    out["json_schema_local"] = headers_of(raw) | {
        "text": parsed.output_text,
        "parsed": parsed.output_parsed.model_dump(),
    }
    raw = client.responses.with_raw_response.create(
        model=closed_model,
        input="Name a colour as JSON.",
        text={"format": {"type": "json_schema", "name": "colour", "schema": Colour.model_json_schema(), "strict": False}},
    )
    out["json_schema_closed"] = headers_of(raw)

    # Refused, each naming its field, in OpenAI's error shape.
    refusals = {
        "previous_response_id": dict(previous_response_id="resp_earlier"),
        "store": dict(store=True),
        "background": dict(background=True),
        "reasoning.effort": dict(reasoning={"effort": "high"}),
        # An uploaded file needs stored files, which a stateless gateway has not.
        "input[0].content[0].file_id": dict(
            input=[{"role": "user", "content": [{"type": "input_image", "file_id": "file-abc"}]}]
        ),
    }
    out["refused"] = {}
    for field, kwargs in refusals.items():
        kwargs.setdefault("input", "hi")
        try:
            client.responses.create(model=local_model, **kwargs)
            raise AssertionError(f"{field} was accepted")
        except openai.BadRequestError as e:
            out["refused"][field] = {"status": e.status_code, "param": e.param, "message": e.message}

    print(json.dumps(out))


if __name__ == "__main__":
    main()
