// The JavaScript clients an application team would point at Watershed, driven
// against a running gateway: the official `openai` client and the Vercel AI SDK
// (`ai` with `@ai-sdk/openai`). Prints one JSON object for the Rust test
// (tests/tests/e2e_js.rs) to check against the ledger: per case what the client
// saw and the request ids the gateway answered with.
//
// Usage: node clients.mjs BASE_URL LOCAL_MODEL CLOSED_MODEL

import OpenAI from "openai";
import { createOpenAI } from "@ai-sdk/openai";
import { generateObject, generateText, jsonSchema, stepCountIs, streamText, tool } from "ai";

const [base, localModel, closedModel] = process.argv.slice(2);
if (!closedModel) {
  console.error("usage: node clients.mjs BASE_URL LOCAL_MODEL CLOSED_MODEL");
  process.exit(2);
}

const client = new OpenAI({ baseURL: `${base}/v1`, apiKey: "unused-virtual-key", maxRetries: 0 });
// The AI SDK's OpenAI provider; `.chat(id)` speaks Chat Completions, `provider(id)`
// the Responses API.
const provider = createOpenAI({ baseURL: `${base}/v1`, apiKey: "unused-virtual-key" });

const weatherParams = {
  type: "object",
  properties: { query: { type: "string" } },
  required: ["query"],
  additionalProperties: false,
};
const TOOLS = [
  {
    type: "function",
    function: { name: "get_weather", description: "Weather for a city", parameters: weatherParams },
  },
];

const out = {};

// --- openai JS client ---------------------------------------------------------

{
  const { data, response } = await client.chat.completions
    .create({ model: localModel, messages: [{ role: "user", content: "Say hello." }], max_tokens: 12 })
    .withResponse();
  out.openai_chat = {
    request_id: response.headers.get("x-request-id"),
    backend: response.headers.get("x-watershed-backend"),
    text: data.choices[0].message.content,
    finish_reason: data.choices[0].finish_reason,
    usage: data.usage,
  };
}

{
  const { data: stream, response } = await client.chat.completions
    .create({
      model: localModel,
      messages: [{ role: "user", content: "Count to three." }],
      max_tokens: 12,
      stream: true,
      stream_options: { include_usage: true },
    })
    .withResponse();
  let text = "";
  let chunks = 0;
  let usage = null;
  let finish = null;
  for await (const chunk of stream) {
    chunks += 1;
    if (chunk.usage) usage = chunk.usage;
    for (const c of chunk.choices) {
      text += c.delta?.content ?? "";
      if (c.finish_reason) finish = c.finish_reason;
    }
  }
  out.openai_stream = {
    request_id: response.headers.get("x-request-id"),
    backend: response.headers.get("x-watershed-backend"),
    text,
    chunks,
    finish_reason: finish,
    usage,
  };
}

{
  const messages = [{ role: "user", content: "weather in Paris" }];
  const first = await client.chat.completions
    .create({ model: closedModel, messages, tools: TOOLS, tool_choice: "auto" })
    .withResponse();
  const call = first.data.choices[0].message.tool_calls[0];
  messages.push(first.data.choices[0].message);
  messages.push({ role: "tool", tool_call_id: call.id, content: "sunny, 21 C" });
  const second = await client.chat.completions
    .create({ model: closedModel, messages, tools: TOOLS })
    .withResponse();
  out.openai_tools = {
    request_ids: [first.response.headers.get("x-request-id"), second.response.headers.get("x-request-id")],
    finish_reason: first.data.choices[0].finish_reason,
    call_name: call.function.name,
    call_arguments: JSON.parse(call.function.arguments),
    answer: second.data.choices[0].message.content,
  };
}

{
  const { data: stream, response } = await client.chat.completions
    .create({
      model: closedModel,
      messages: [{ role: "user", content: "weather in Oslo" }],
      tools: TOOLS,
      tool_choice: { type: "function", function: { name: "get_weather" } },
      stream: true,
    })
    .withResponse();
  const calls = {};
  let finish = null;
  for await (const chunk of stream) {
    for (const c of chunk.choices) {
      for (const tc of c.delta?.tool_calls ?? []) {
        const slot = (calls[tc.index] ??= { id: null, name: "", arguments: "" });
        if (tc.id) slot.id = tc.id;
        if (tc.function?.name) slot.name += tc.function.name;
        if (tc.function?.arguments) slot.arguments += tc.function.arguments;
      }
      if (c.finish_reason) finish = c.finish_reason;
    }
  }
  const call = calls[0];
  out.openai_tools_stream = {
    request_id: response.headers.get("x-request-id"),
    finish_reason: finish,
    call_id: call?.id,
    call_name: call?.name,
    call_arguments: call ? JSON.parse(call.arguments) : null,
  };
}

// --- Vercel AI SDK --------------------------------------------------------------

{
  const r = await generateText({ model: provider.chat(localModel), prompt: "Say hello.", maxOutputTokens: 12 });
  out.ai_generate_text = {
    request_id: r.response.headers?.["x-request-id"] ?? null,
    text: r.text,
    finish_reason: r.finishReason,
    usage: r.usage,
  };
}

{
  const r = streamText({ model: provider.chat(localModel), prompt: "Count to three.", maxOutputTokens: 12 });
  let text = "";
  let parts = 0;
  for await (const delta of r.textStream) {
    text += delta;
    parts += 1;
  }
  const response = await r.response;
  out.ai_stream_text = {
    request_id: response.headers?.["x-request-id"] ?? null,
    text,
    parts,
    finish_reason: await r.finishReason,
    usage: await r.usage,
  };
}

{
  // A JSON schema response format: the local engine constrains its output to it.
  const r = await generateObject({
    model: provider.chat(localModel),
    schema: jsonSchema({
      type: "object",
      properties: { city: { type: "string" }, population: { type: "integer" } },
      required: ["city", "population"],
      additionalProperties: false,
    }),
    prompt: "Give the largest city of France and its population as JSON.",
    maxOutputTokens: 48,
  });
  out.ai_generate_object = {
    request_id: r.response.headers?.["x-request-id"] ?? null,
    object: r.object,
    finish_reason: r.finishReason,
  };
}

{
  // Tools: the SDK calls the tool the model asked for, sends the result back
  // and returns the model's final answer (two requests through the gateway).
  const seen = [];
  const r = await generateText({
    model: provider.chat(closedModel),
    prompt: "weather in Rome",
    tools: {
      get_weather: tool({
        description: "Weather for a city",
        inputSchema: jsonSchema(weatherParams),
        execute: async (input) => {
          seen.push(input);
          return "sunny, 21 C";
        },
      }),
    },
    stopWhen: stepCountIs(2),
  });
  out.ai_tools = {
    request_ids: r.steps.map((s) => s.response.headers?.["x-request-id"] ?? null),
    steps: r.steps.length,
    tool_inputs: seen,
    first_finish_reason: r.steps[0]?.finishReason,
    text: r.text,
  };
}

// --- Vercel AI SDK, default provider: `provider(id)` speaks the Responses API --

{
  const r = await generateText({ model: provider(localModel), prompt: "Say hello.", maxOutputTokens: 12 });
  out.ai_responses_text = {
    request_id: r.response.headers?.["x-request-id"] ?? null,
    text: r.text,
    usage: r.usage,
  };
}

{
  const r = streamText({ model: provider(localModel), prompt: "Count to three.", maxOutputTokens: 12 });
  let text = "";
  for await (const delta of r.textStream) {
    text += delta;
  }
  const response = await r.response;
  out.ai_responses_stream = {
    request_id: response.headers?.["x-request-id"] ?? null,
    text,
    usage: await r.usage,
  };
}

{
  // A tool loop over Responses. Nothing is stored, so the SDK is told so
  // (`store: false`) and sends the earlier call back whole instead of as an
  // `item_reference` to a stored response.
  const seen = [];
  const r = await generateText({
    model: provider(closedModel),
    prompt: "weather in Oslo",
    providerOptions: { openai: { store: false } },
    tools: {
      get_weather: tool({
        description: "Weather for a city",
        inputSchema: jsonSchema(weatherParams),
        execute: async (input) => {
          seen.push(input);
          return "snow, -3 C";
        },
      }),
    },
    stopWhen: stepCountIs(2),
  });
  out.ai_responses_tools = {
    request_ids: r.steps.map((s) => s.response.headers?.["x-request-id"] ?? null),
    steps: r.steps.length,
    tool_inputs: seen,
    text: r.text,
  };
}

process.stdout.write(JSON.stringify(out) + "\n");
