"""LangChain's `ChatOpenAI` against a running Watershed: `bind_tools` (plain
and streamed), `with_structured_output(method="function_calling")`, and a
tool result sent back as a `ToolMessage`. Prints one JSON object.

Usage: langchain_tools.py BASE_URL MODEL
"""

import json
import sys

from langchain_core.messages import HumanMessage, ToolMessage
from langchain_core.tools import tool
from langchain_openai import ChatOpenAI
from pydantic import BaseModel


@tool
def get_weather(query: str) -> str:
    """Weather for a city."""
    return "18C and sunny"


class Lookup(BaseModel):
    """What to look up."""

    query: str


def main() -> None:
    base_url, model = sys.argv[1:3]
    llm = ChatOpenAI(base_url=f"{base_url}/v1", api_key="unused-virtual-key", model=model, max_retries=0)
    out = {}
    with_tools = llm.bind_tools([get_weather])

    question = HumanMessage("weather in Rome")
    ai = with_tools.invoke([question])
    call = ai.tool_calls[0]
    out["plain"] = {"id": call["id"], "name": call["name"], "args": call["args"]}

    merged = None
    for chunk in with_tools.stream([question]):
        merged = chunk if merged is None else merged + chunk
    scall = merged.tool_calls[0]
    out["stream"] = {"id": scall["id"], "name": scall["name"], "args": scall["args"]}

    structured = llm.with_structured_output(Lookup, method="function_calling").invoke("rome")
    out["structured"] = structured.model_dump()

    answer = with_tools.invoke(
        [question, ai, ToolMessage(get_weather.invoke(call["args"]), tool_call_id=call["id"])]
    )
    out["answer"] = answer.content
    print(json.dumps(out))


if __name__ == "__main__":
    main()
