//! The provider contract: the same cases run against every remote adapter
//! (OpenAI, OpenAI-compatible, Anthropic, Gemini), each pointed at a mock upstream that
//! speaks its exact wire format.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly by design

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use watershed_providers::anthropic::AnthropicProvider;
use watershed_providers::gemini::GeminiProvider;
use watershed_providers::openai::OpenAiProvider;
use watershed_providers::{
    BackendKind, ChatRequest, Completion, ErrorCode, FinishReason, Message, Provider,
    ProviderError, RemoteTarget, Role, StreamEvent, Tool, ToolCall, ToolChoice, Usage,
};
use watershed_tests::mock::{Failure, MockUpstream};

struct Backend {
    kind: BackendKind,
    mock: MockUpstream,
}

impl Backend {
    fn name(&self) -> &'static str {
        self.kind.otel_name()
    }

    fn target(&self) -> RemoteTarget {
        let mut t = RemoteTarget::new(
            format!("contract-{}", self.name()),
            self.kind,
            self.mock.base_url.clone(),
            format!("upstream-{}", self.name()),
        );
        t.request_timeout = Duration::from_millis(500);
        t.connect_timeout = Duration::from_secs(2);
        match self.kind {
            BackendKind::Openai => {
                t.api_key = Some("sk-test-openai".into());
                t.api_key_env = Some("OPENAI_API_KEY".into());
            }
            BackendKind::Anthropic => {
                t.api_key = Some("sk-ant-test".into());
                t.api_key_env = Some("ANTHROPIC_API_KEY".into());
            }
            BackendKind::Gemini => {
                t.api_key = Some("gemini-test-key".into());
                t.api_key_env = Some("GEMINI_API_KEY".into());
            }
            // A local vLLM or llama.cpp server needs no key.
            _ => {}
        }
        t
    }

    fn provider_for(&self, t: RemoteTarget) -> Arc<dyn Provider> {
        match self.kind {
            BackendKind::Anthropic => Arc::new(AnthropicProvider::new(t).unwrap()),
            BackendKind::Gemini => Arc::new(GeminiProvider::new(t).unwrap()),
            _ => Arc::new(OpenAiProvider::new(t).unwrap()),
        }
    }

    fn provider(&self) -> Arc<dyn Provider> {
        self.provider_for(self.target())
    }
}

async fn backends() -> Vec<Backend> {
    vec![
        Backend {
            kind: BackendKind::Openai,
            mock: MockUpstream::openai().await,
        },
        Backend {
            kind: BackendKind::OpenaiCompatible,
            mock: MockUpstream::openai().await,
        },
        Backend {
            kind: BackendKind::Anthropic,
            mock: MockUpstream::anthropic().await,
        },
        Backend {
            kind: BackendKind::Gemini,
            mock: MockUpstream::gemini().await,
        },
    ]
}

fn request(user: &str) -> ChatRequest {
    ChatRequest {
        model: "alias".into(),
        messages: vec![
            Message::new(Role::System, "be brief"),
            Message::new(Role::User, user),
        ],
        ..Default::default()
    }
}

/// Drain a stream into (text, done events, first error).
async fn collect(
    p: &dyn Provider,
    req: &ChatRequest,
) -> Result<(String, Vec<Completion>, Option<ProviderError>), ProviderError> {
    let mut stream = p.chat_stream(req).await?;
    let mut text = String::new();
    let mut dones = Vec::new();
    let mut error = None;
    while let Some(item) = stream.next().await {
        match item {
            Ok(StreamEvent::Delta(d)) => {
                assert!(dones.is_empty(), "delta after Done");
                text.push_str(&d);
            }
            Ok(StreamEvent::ToolCall(d)) => panic!("unexpected tool call {d:?}"),
            Ok(StreamEvent::Logprobs(l)) => panic!("log probabilities nobody asked for: {l}"),
            Ok(StreamEvent::Done(c)) => dones.push(c),
            Err(e) => {
                error = Some(e);
                break;
            }
        }
    }
    Ok((text, dones, error))
}

fn tool_request(user: &str) -> ChatRequest {
    let mut req = request(user);
    req.tools = vec![Tool {
        name: "lookup".into(),
        description: Some("Looks a thing up".into()),
        parameters: serde_json::json!({"type": "object", "properties": {"query": {"type": "string"}}}),
        strict: None,
    }];
    req.tool_choice = Some(ToolChoice::Auto);
    req
}

#[tokio::test]
async fn tool_calls_plain_and_streamed_then_a_result_gets_an_answer() {
    for b in backends().await {
        let p = b.provider();
        let req = tool_request("find cats");
        let resp = p.chat(&req).await.unwrap();
        assert_eq!(
            resp.done.finish_reason,
            FinishReason::ToolCalls,
            "{}",
            b.name()
        );
        assert_eq!(resp.tool_calls.len(), 1, "{}", b.name());
        let call = &resp.tool_calls[0];
        assert_eq!(call.name, "lookup");
        assert_eq!(
            serde_json::from_str::<serde_json::Value>(&call.arguments).unwrap(),
            serde_json::json!({"query": "find cats"}),
            "{}",
            b.name()
        );

        // Streamed: the pieces make the same call.
        let mut stream = p.chat_stream(&req).await.unwrap();
        let (mut id, mut name, mut args, mut finish) = (None, None, String::new(), None);
        while let Some(item) = stream.next().await {
            match item.unwrap() {
                StreamEvent::Delta(d) => assert!(d.is_empty(), "{}: text {d:?}", b.name()),
                StreamEvent::ToolCall(d) => {
                    assert_eq!(d.index, 0);
                    id = id.or(d.id);
                    name = name.or(d.name);
                    args.push_str(&d.arguments);
                }
                StreamEvent::Logprobs(l) => panic!("{}: log probabilities {l}", b.name()),
                StreamEvent::Done(c) => finish = Some(c.finish_reason),
            }
        }
        assert_eq!(finish, Some(FinishReason::ToolCalls), "{}", b.name());
        assert_eq!(name.as_deref(), Some("lookup"));
        assert!(id.is_some(), "{}", b.name());
        assert_eq!(args, call.arguments, "{}", b.name());

        // The call and its result go back; the answer uses the result.
        let mut round = req.clone();
        let mut assistant = Message::new(Role::Assistant, "");
        assistant.tool_calls = vec![ToolCall {
            id: call.id.clone(),
            name: call.name.clone(),
            arguments: serde_json::from_str(&call.arguments).unwrap(),
        }];
        let mut result = Message::new(Role::Tool, "three cats");
        result.tool_call_id = Some(call.id.clone());
        round.messages.extend([assistant, result]);
        let answer = p.chat(&round).await.unwrap();
        assert_eq!(answer.text, "echo: tool said three cats", "{}", b.name());
        assert_eq!(answer.done.finish_reason, FinishReason::Stop);
        assert!(answer.tool_calls.is_empty());
        let sent = b.mock.last_request().unwrap().body;
        if b.kind == BackendKind::Gemini {
            // Gemini has no call ids: the result names the function and
            // follows the call it answers.
            let contents = sent["contents"].as_array().unwrap();
            let n = contents.len();
            assert_eq!(
                contents[n - 2]["parts"][0]["functionCall"]["name"],
                "lookup",
                "{sent}"
            );
            assert_eq!(
                contents[n - 1]["parts"][0]["functionResponse"],
                serde_json::json!({"name": "lookup", "response": {"output": "three cats"}}),
                "{sent}"
            );
        } else {
            let ids = sent.to_string();
            assert!(
                ids.matches(call.id.as_str()).count() >= 2,
                "{}: {sent}",
                b.name()
            );
        }
    }
}

#[tokio::test]
async fn plain_answer() {
    for b in backends().await {
        let resp = b
            .provider()
            .chat(&request("hello there world"))
            .await
            .unwrap();
        assert_eq!(resp.text, "echo: hello there world", "{}", b.name());
        assert_eq!(resp.done.finish_reason, FinishReason::Stop, "{}", b.name());
        // Mock tokens are words: "be brief" + "hello there world" in, 4 out.
        assert_eq!(
            resp.done.usage,
            Usage {
                prompt_tokens: 5,
                completion_tokens: 4,
                cached_prompt_tokens: 0
            },
            "{}",
            b.name()
        );
        assert_eq!(resp.done.model, format!("upstream-{}", b.name()));
        let sent = b.mock.last_request().unwrap();
        if b.kind == BackendKind::Gemini {
            // Gemini names the model in the path.
            assert_eq!(
                sent.path,
                format!("/v1beta/models/upstream-{}:generateContent", b.name())
            );
        } else {
            assert_eq!(sent.body["model"], format!("upstream-{}", b.name()));
        }
    }
}

#[tokio::test]
async fn cached_prompt_tokens_are_reported() {
    for b in backends().await {
        b.mock.set_cached_prompt_tokens(3);
        let resp = b
            .provider()
            .chat(&request("hello there world"))
            .await
            .unwrap();
        assert_eq!(
            resp.done.usage,
            Usage {
                prompt_tokens: 5,
                completion_tokens: 4,
                cached_prompt_tokens: 3
            },
            "{}",
            b.name()
        );
    }
}

#[tokio::test]
async fn streaming_answer_matches_the_plain_one() {
    for b in backends().await {
        let p = b.provider();
        let req = request("one two three four five");
        let plain = p.chat(&req).await.unwrap();
        let (text, dones, err) = collect(p.as_ref(), &req).await.unwrap();
        assert!(err.is_none(), "{}: {err:?}", b.name());
        assert_eq!(text, plain.text, "{}", b.name());
        assert_eq!(dones.len(), 1, "{}", b.name());
        assert_eq!(dones[0].usage, plain.done.usage, "{}", b.name());
        assert_eq!(dones[0].finish_reason, FinishReason::Stop, "{}", b.name());
        let sent = b.mock.last_request().unwrap();
        if b.kind == BackendKind::Gemini {
            assert!(
                sent.path.ends_with(":streamGenerateContent"),
                "{}",
                sent.path
            );
            continue;
        }
        assert_eq!(sent.body["stream"], true, "{}", b.name());
        if b.kind != BackendKind::Anthropic {
            // Usage is always requested upstream, whatever the client asked.
            assert_eq!(sent.body["stream_options"]["include_usage"], true);
        }
    }
}

#[tokio::test]
async fn max_tokens_and_stop_map_to_finish_reasons() {
    for b in backends().await {
        let p = b.provider();
        let mut req = request("alpha beta gamma delta");
        req.max_tokens = Some(2);
        let resp = p.chat(&req).await.unwrap();
        assert_eq!(resp.text, "echo: alpha", "{}", b.name());
        assert_eq!(
            resp.done.finish_reason,
            FinishReason::Length,
            "{}",
            b.name()
        );
        assert_eq!(resp.done.usage.completion_tokens, 2);
        let (text, dones, err) = collect(p.as_ref(), &req).await.unwrap();
        assert!(err.is_none());
        assert_eq!(text, "echo: alpha");
        assert_eq!(dones[0].finish_reason, FinishReason::Length, "{}", b.name());

        let mut req = request("alpha beta gamma delta");
        req.stop = vec!["gamma".into()];
        let resp = p.chat(&req).await.unwrap();
        assert_eq!(resp.text, "echo: alpha beta ", "{}", b.name());
        assert_eq!(resp.done.finish_reason, FinishReason::Stop, "{}", b.name());
        let sent = b.mock.last_request().unwrap();
        let stop_field = match b.kind {
            BackendKind::Anthropic => "/stop_sequences",
            BackendKind::Gemini => "/generationConfig/stopSequences",
            _ => "/stop",
        };
        assert_eq!(
            sent.body.pointer(stop_field).cloned().unwrap_or_default(),
            serde_json::json!(["gamma"]),
            "{}",
            b.name()
        );
    }
}

#[tokio::test]
async fn upstream_error_statuses_keep_their_status_and_code() {
    for b in backends().await {
        let p = b.provider();
        let mut cases = vec![
            (500, ErrorCode::UpstreamError),
            (429, ErrorCode::RateLimited),
            (401, ErrorCode::UpstreamError),
            (400, ErrorCode::BadRequest),
        ];
        if b.kind == BackendKind::Anthropic {
            cases.push((529, ErrorCode::UpstreamUnavailable));
        }
        if b.kind == BackendKind::Gemini {
            // PERMISSION_DENIED, NOT_FOUND, UNAVAILABLE.
            cases.push((403, ErrorCode::UpstreamError));
            cases.push((404, ErrorCode::BadRequest));
            cases.push((503, ErrorCode::UpstreamUnavailable));
        }
        for (status, code) in cases {
            for streaming in [false, true] {
                b.mock.fail_next(1, Failure::Status(status));
                let err = if streaming {
                    match p.chat_stream(&request("hi")).await {
                        Err(e) => e,
                        Ok(_) => panic!("{}: {status} streamed", b.name()),
                    }
                } else {
                    p.chat(&request("hi")).await.unwrap_err()
                };
                match &err {
                    ProviderError::Upstream {
                        status: s,
                        message,
                        target,
                        ..
                    } => {
                        assert_eq!(*s, status, "{}", b.name());
                        assert!(!message.is_empty());
                        assert_eq!(target, &format!("contract-{}", b.name()));
                    }
                    other => panic!("{} {status}: {other:?}", b.name()),
                }
                assert_eq!(err.code(), code, "{} {status}", b.name());
            }
        }
        // The failures were used up: the next call succeeds.
        p.chat(&request("hi")).await.unwrap();
    }
}

#[tokio::test]
async fn hanging_upstream_times_out() {
    for b in backends().await {
        let p = b.provider();
        b.mock.fail_next(2, Failure::Hang);
        let started = std::time::Instant::now();
        let err = p.chat(&request("hi")).await.unwrap_err();
        assert!(
            matches!(err, ProviderError::Timeout { after_ms: 500, .. }),
            "{}: {err:?}",
            b.name()
        );
        assert_eq!(err.code(), ErrorCode::UpstreamTimeout);
        let err = match p.chat_stream(&request("hi")).await {
            Err(e) => e,
            Ok(_) => panic!("{}: a hanging stream started", b.name()),
        };
        assert!(
            matches!(err, ProviderError::Timeout { .. }),
            "{}: {err:?}",
            b.name()
        );
        assert!(started.elapsed() < Duration::from_secs(5));
    }
}

#[tokio::test]
async fn stalled_stream_times_out_between_chunks() {
    for b in backends().await {
        b.mock.set_chunk_delay(Duration::from_millis(1500));
        let (_, dones, err) = collect(b.provider().as_ref(), &request("a b c"))
            .await
            .unwrap();
        assert!(dones.is_empty(), "{}", b.name());
        assert!(
            matches!(err, Some(ProviderError::Timeout { .. })),
            "{}: {err:?}",
            b.name()
        );
    }
}

#[tokio::test]
async fn connection_cut_mid_stream_is_an_error_not_a_short_answer() {
    for b in backends().await {
        let p = b.provider();
        b.mock.fail_next(1, Failure::DropMidStream);
        let (text, dones, err) = collect(p.as_ref(), &request("one two three four"))
            .await
            .unwrap();
        assert!(dones.is_empty(), "{}: got Done after a cut", b.name());
        assert_eq!(text, "echo: ", "{}", b.name());
        let err = err.unwrap_or_else(|| panic!("{}: stream ended silently", b.name()));
        assert!(err.is_retryable(), "{}: {err:?}", b.name());
        assert!(
            matches!(err, ProviderError::Unreachable { .. }),
            "{}: {err:?}",
            b.name()
        );

        b.mock.fail_next(1, Failure::DropMidStream);
        let err = p.chat(&request("x")).await.unwrap_err();
        assert!(
            matches!(err, ProviderError::Unreachable { .. }),
            "{}: {err:?}",
            b.name()
        );
    }
}

#[tokio::test]
async fn missing_key_fails_before_any_request() {
    for b in backends().await {
        let mut t = b.target();
        t.api_key = None;
        t.api_key_env = Some("WATERSHED_CONTRACT_UNSET_KEY".into());
        let p = b.provider_for(t.with_key_from_env());
        let err = p.chat(&request("hi")).await.unwrap_err();
        match &err {
            ProviderError::MissingKey { env, .. } => {
                assert_eq!(env, "WATERSHED_CONTRACT_UNSET_KEY")
            }
            other => panic!("{}: {other:?}", b.name()),
        }
        assert!(err.to_string().contains("WATERSHED_CONTRACT_UNSET_KEY"));
        assert_eq!(err.code(), ErrorCode::UpstreamUnavailable);
        assert!(matches!(
            p.chat_stream(&request("hi")).await,
            Err(ProviderError::MissingKey { .. })
        ));
        assert_eq!(
            b.mock.request_count(),
            0,
            "{}: a request reached the upstream",
            b.name()
        );
    }
}

#[tokio::test]
async fn the_right_auth_headers_arrive() {
    for b in backends().await {
        b.provider().chat(&request("hi")).await.unwrap();
        let sent = b.mock.last_request().unwrap();
        assert_eq!(sent.method, "POST");
        assert_eq!(sent.header("content-type"), Some("application/json"));
        match b.kind {
            BackendKind::Openai => {
                assert_eq!(sent.path, "/v1/chat/completions");
                assert_eq!(sent.header("authorization"), Some("Bearer sk-test-openai"));
                assert_eq!(sent.header("x-api-key"), None);
            }
            BackendKind::OpenaiCompatible => {
                assert_eq!(sent.path, "/v1/chat/completions");
                assert_eq!(sent.header("authorization"), None);
            }
            BackendKind::Gemini => {
                assert_eq!(
                    sent.path,
                    "/v1beta/models/upstream-gcp.gemini:generateContent"
                );
                assert_eq!(sent.header("x-goog-api-key"), Some("gemini-test-key"));
                assert_eq!(sent.header("authorization"), None);
                assert_eq!(
                    sent.body["systemInstruction"],
                    serde_json::json!({"parts": [{"text": "be brief"}]})
                );
                assert_eq!(
                    sent.body["contents"],
                    serde_json::json!([{"role": "user", "parts": [{"text": "hi"}]}])
                );
            }
            _ => {
                assert_eq!(sent.path, "/v1/messages");
                assert_eq!(sent.header("x-api-key"), Some("sk-ant-test"));
                assert_eq!(sent.header("anthropic-version"), Some("2023-06-01"));
                assert_eq!(sent.header("authorization"), None);
                // The system prompt travels on top, not as a message.
                assert_eq!(sent.body["system"], "be brief");
                assert_eq!(sent.body["messages"].as_array().unwrap().len(), 1);
                assert_eq!(sent.body["max_tokens"], 4096);
            }
        }
    }
}

#[tokio::test]
async fn capabilities_name_the_backend() {
    for b in backends().await {
        let caps = b.provider().capabilities();
        assert_eq!(caps.kind, b.kind);
        assert_eq!(caps.upstream_model, format!("upstream-{}", b.name()));
        assert!(caps.streaming);
    }
}

#[tokio::test]
async fn a_trickle_that_never_completes_an_event_times_out() {
    // The idle timer moves on complete SSE events, not on bytes: a byte every
    // 50 ms for longer than the 500 ms timeout must still time out.
    for b in backends().await {
        b.mock.fail_next(1, Failure::Trickle);
        let started = std::time::Instant::now();
        let (text, dones, err) = collect(b.provider().as_ref(), &request("a b"))
            .await
            .unwrap();
        assert!(text.is_empty() && dones.is_empty(), "{}", b.name());
        assert!(
            matches!(err, Some(ProviderError::Timeout { .. })),
            "{}: {err:?}",
            b.name()
        );
        assert!(started.elapsed() < Duration::from_secs(10), "{}", b.name());
    }
}

#[tokio::test]
async fn retry_after_is_read_and_faults_are_classed_transient_or_not() {
    for b in backends().await {
        let p = b.provider();
        for streaming in [false, true] {
            b.mock.fail_next(1, Failure::RetryAfter(7));
            let err = if streaming {
                match p.chat_stream(&request("hi")).await {
                    Err(e) => e,
                    Ok(_) => panic!("{}: a 429 streamed", b.name()),
                }
            } else {
                p.chat(&request("hi")).await.unwrap_err()
            };
            assert_eq!(err.retry_after_s(), Some(7), "{}: {err:?}", b.name());
            assert!(err.is_transient(), "{}", b.name());
        }
        // An answer that cannot be read is the target's fault but would come
        // back the same: fall back, do not retry.
        b.mock.fail_next(1, Failure::Malformed);
        let err = p.chat(&request("hi")).await.unwrap_err();
        assert!(
            matches!(err, ProviderError::Protocol { .. }),
            "{}: {err:?}",
            b.name()
        );
        assert!(err.is_retryable() && !err.is_transient(), "{}", b.name());
        // A reset before the first event is an error item, and transient.
        b.mock.fail_next(1, Failure::ResetBeforeFirstEvent);
        let (_, dones, err) = collect(p.as_ref(), &request("hi")).await.unwrap();
        assert!(dones.is_empty(), "{}", b.name());
        let err = err.unwrap_or_else(|| panic!("{}: stream ended silently", b.name()));
        assert!(err.is_transient(), "{}: {err:?}", b.name());
    }
}

#[tokio::test]
async fn the_prompt_is_counted_by_the_upstream_where_it_can_count() {
    for b in backends().await {
        let counted = b
            .provider()
            .count_tokens(&request("hello there world"))
            .await
            .unwrap();
        match b.kind {
            // Mock tokens are words: "be brief" + "hello there world".
            BackendKind::Anthropic | BackendKind::Gemini => {
                assert_eq!(counted, Some(5), "{}", b.name());
                let sent = b.mock.last_request().unwrap();
                let want = if b.kind == BackendKind::Gemini {
                    "/v1beta/models/upstream-gcp.gemini:countTokens"
                } else {
                    "/v1/messages/count_tokens"
                };
                assert_eq!(sent.path, want);
            }
            // OpenAI has no counting endpoint: the caller estimates.
            _ => {
                assert_eq!(counted, None, "{}", b.name());
                assert_eq!(b.mock.request_count(), 0);
            }
        }
    }
}
