"""Tool calling through a running Watershed's `/v1/messages` with the
official `anthropic` Python SDK: a tool_use (plain, then streamed through the
SDK's stream helper, which assembles `input_json_delta` into the input), then
the tool_result sent back and the final answer. Prints one JSON object.

Usage: anthropic_sdk_tools.py BASE_URL MODEL
"""

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


def main() -> None:
    base_url, model = sys.argv[1:3]
    client = anthropic.Anthropic(base_url=base_url, api_key="unused-virtual-key", max_retries=0)
    out = {}
    messages = [{"role": "user", "content": "weather in Oslo"}]

    msg = client.messages.create(
        model=model, max_tokens=64, messages=messages, tools=TOOLS, tool_choice={"type": "any"}
    )
    assert msg.stop_reason == "tool_use", msg
    use = next(b for b in msg.content if b.type == "tool_use")
    out["plain"] = {"id": use.id, "name": use.name, "input": use.input}

    with client.messages.stream(model=model, max_tokens=64, messages=messages, tools=TOOLS) as stream:
        final = stream.get_final_message()
    suse = next(b for b in final.content if b.type == "tool_use")
    assert final.stop_reason == "tool_use", final
    out["stream"] = {"id": suse.id, "name": suse.name, "input": suse.input}

    messages.append({"role": "assistant", "content": [b.model_dump() for b in msg.content]})
    messages.append(
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": use.id, "content": "minus 3"}]}
    )
    answer = client.messages.create(model=model, max_tokens=64, messages=messages, tools=TOOLS)
    out["answer"] = {"text": answer.content[0].text, "stop_reason": answer.stop_reason}
    print(json.dumps(out))


if __name__ == "__main__":
    main()
