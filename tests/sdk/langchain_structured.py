"""LangChain's `ChatOpenAI.with_structured_output(method="json_schema")`
against a running Watershed: the schema goes out as a strict
`response_format: json_schema` and the answer comes back parsed into the
pydantic model (with `include_raw`, the raw message and no parsing error).
Prints one JSON object.

Usage: langchain_structured.py BASE_URL MODEL
"""

import json
import sys

from langchain_openai import ChatOpenAI
from pydantic import BaseModel


class Colour(BaseModel):
    """A colour."""

    name: str


def main() -> None:
    base_url, model = sys.argv[1:3]
    llm = ChatOpenAI(
        base_url=f"{base_url}/v1",
        api_key="unused-virtual-key",
        model=model,
        max_retries=0,
        max_tokens=48,
        temperature=0,
    )
    structured = llm.with_structured_output(Colour, method="json_schema", include_raw=True)
    got = structured.invoke("Name a colour as JSON.")
    assert got["parsing_error"] is None, got
    raw = got["raw"]
    print(
        json.dumps(
            {
                "parsed": got["parsed"].model_dump(),
                "text": raw.content,
                "finish_reason": raw.response_metadata.get("finish_reason"),
                "usage": raw.usage_metadata,
            }
        )
    )


if __name__ == "__main__":
    main()
