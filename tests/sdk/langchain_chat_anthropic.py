"""LangChain's `ChatAnthropic` (langchain-anthropic) against a running
Watershed's `/v1/messages`: a plain answer, a streamed one, `bind_tools`
(plain and streamed, the `input_json_delta` fragments merged by LangChain),
and the tool result sent back as a `ToolMessage`. Prints one JSON object.

Usage: langchain_chat_anthropic.py BASE_URL MODEL
"""

import json
import sys

from langchain_anthropic import ChatAnthropic
from langchain_core.messages import HumanMessage, ToolMessage
from langchain_core.tools import tool


@tool
def get_weather(query: str) -> str:
    """Weather for a city."""
    return "18C and sunny"


def main() -> None:
    base_url, model = sys.argv[1:3]
    llm = ChatAnthropic(
        base_url=base_url, api_key="unused-virtual-key", model=model, max_retries=0, max_tokens=64
    )
    out = {}

    plain = llm.invoke("Name a colour of the sky.")
    out["plain"] = {
        "text": plain.content,
        "stop_reason": plain.response_metadata.get("stop_reason"),
        "usage": plain.usage_metadata,
    }

    merged = None
    for chunk in llm.stream("Count from one to five."):
        merged = chunk if merged is None else merged + chunk
    text = merged.content if isinstance(merged.content, str) else "".join(
        b.get("text", "") for b in merged.content if isinstance(b, dict)
    )
    out["stream"] = {"text": text, "usage": merged.usage_metadata}

    with_tools = llm.bind_tools([get_weather])
    question = HumanMessage("weather in Rome")
    ai = with_tools.invoke([question])
    call = ai.tool_calls[0]
    out["tools"] = {"id": call["id"], "name": call["name"], "args": call["args"]}

    merged = None
    for chunk in with_tools.stream([question]):
        merged = chunk if merged is None else merged + chunk
    scall = merged.tool_calls[0]
    out["tools_stream"] = {"id": scall["id"], "name": scall["name"], "args": scall["args"]}

    answer = with_tools.invoke(
        [question, ai, ToolMessage(get_weather.invoke(call["args"]), tool_call_id=call["id"])]
    )
    out["answer"] = answer.content if isinstance(answer.content, str) else answer.content[0]["text"]
    print(json.dumps(out))


if __name__ == "__main__":
    main()
