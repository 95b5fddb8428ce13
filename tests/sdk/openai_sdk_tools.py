"""Tool calling through a running Watershed with the official `openai` Python
SDK: a call (plain, then streamed through the SDK's own stream helper, which
assembles the fragments), then the result sent back and the final answer.
Prints one JSON object for the Rust test to check.

Usage: openai_sdk_tools.py BASE_URL MODEL
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
                "properties": {"query": {"type": "string"}},
                "required": ["query"],
            },
        },
    }
]


def main() -> None:
    base_url, model = sys.argv[1:3]
    client = openai.OpenAI(base_url=f"{base_url}/v1", api_key="unused-virtual-key", max_retries=0)
    out = {}
    messages = [{"role": "user", "content": "weather in Paris"}]

    resp = client.chat.completions.create(
        model=model, messages=messages, tools=TOOLS, tool_choice="auto", parallel_tool_calls=False
    )
    choice = resp.choices[0]
    assert choice.finish_reason == "tool_calls", choice
    call = choice.message.tool_calls[0]
    assert call.type == "function" and call.function.name == "get_weather", call
    out["plain"] = {"id": call.id, "arguments": json.loads(call.function.arguments)}

    with client.chat.completions.stream(model=model, messages=messages, tools=TOOLS) as stream:
        for _ in stream:
            pass
        final = stream.get_final_completion()
    scall = final.choices[0].message.tool_calls[0]
    assert final.choices[0].finish_reason == "tool_calls", final
    out["stream"] = {
        "id": scall.id,
        "name": scall.function.name,
        "arguments": json.loads(scall.function.arguments),
    }

    messages.append(choice.message.model_dump(exclude_none=True))
    messages.append({"role": "tool", "tool_call_id": call.id, "content": "18C and sunny"})
    answer = client.chat.completions.create(model=model, messages=messages, tools=TOOLS)
    out["answer"] = {
        "text": answer.choices[0].message.content,
        "finish_reason": answer.choices[0].finish_reason,
    }

    try:
        client.chat.completions.create(
            model=model,
            messages=[{"role": "user", "content": "x"}],
            tools=[{"type": "function", "function": {"name": "f", "parameters": "not a schema"}}],
        )
        raise AssertionError("a tool without a schema object was accepted")
    except openai.BadRequestError as e:
        out["bad_tool"] = {"status": e.status_code, "param": e.param}

    print(json.dumps(out))


if __name__ == "__main__":
    main()
