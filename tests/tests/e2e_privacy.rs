//! The privacy promise under attack, through the real binary and mock
//! upstreams on port 0:
//!
//! - a fixed-seed property test puts a detectable value in a random field of
//!   a random request (every text field of both wire formats) and checks that
//!   no untrusted target ever receives it — the request stays home, or the
//!   value leaves only as a placeholder;
//! - a flood of large adversarial prompts is classified off the async
//!   workers: small requests and `/healthz` keep answering meanwhile;
//! - a request whose classification cannot finish (too large, too slow) is
//!   treated as restricted, counted on `/metrics` and said in
//!   `policy explain`; it is never sent out.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stderr)] // tests fail loudly by design

use std::time::{Duration, Instant};

use serde_json::{json, Value};
use watershed_tests::harness::{binary, Gateway};
use watershed_tests::mock::MockUpstream;

/// E-mail and IP addresses are `internal` here, so a route with `redact: true`
/// may send them out as placeholders; everything else the detectors find is
/// confidential or restricted and may only go to `local`, which cannot load in
/// this setup (503). The untrusted targets are the three mocks.
fn config(openai: &str, anthropic: &str, gemini: &str, extra: &str) -> String {
    format!(
        r#"version: 1
ledger: {{ url: "sqlite://{{dir}}/ledger.db" }}
server: {{ max_body_bytes: 20000000 }}
privacy:
  detectors: {{ email: internal, ip: internal }}
{extra}
models:
  local:
    engine: local
    gguf: "{{dir}}/does-not-exist.gguf"
    # A window that holds the 4 MiB prompts: they stay home for their
    # privacy, not because no target is large enough.
    context_tokens: 2000000
    tools: false
  gpt:
    provider: openai
    base_url: "{openai}"
    api_key_env: E2E_OPENAI_KEY
    timeout_ms: 3000
  claude:
    provider: anthropic
    base_url: "{anthropic}"
    api_key_env: E2E_ANTHROPIC_KEY
    timeout_ms: 3000
  gemini:
    provider: gemini
    base_url: "{gemini}"
    api_key_env: E2E_GEMINI_KEY
    timeout_ms: 3000
routes:
  - name: home
    when: {{ privacy: ">= confidential" }}
    to: [local]
  - name: claude-redacted
    when: {{ model: claude }}
    to: [claude]
    redact: true
  - name: gemini-redacted
    when: {{ model: gemini }}
    to: [gemini]
    redact: true
  - name: gpt-redacted
    to: [gpt]
    redact: true
"#
    )
}

async fn start(tag: &str, extra: &str) -> (MockUpstream, MockUpstream, MockUpstream, Gateway) {
    let openai = MockUpstream::openai().await;
    let anthropic = MockUpstream::anthropic().await;
    let gemini = MockUpstream::gemini().await;
    let gw = Gateway::start(
        tag,
        &config(
            &openai.base_url,
            &anthropic.base_url,
            &gemini.base_url,
            extra,
        ),
        &[
            ("E2E_OPENAI_KEY", "sk-openai"),
            ("E2E_ANTHROPIC_KEY", "sk-ant"),
            ("E2E_GEMINI_KEY", "gemini-key"),
        ],
    )
    .unwrap();
    gw.wait_ready(Duration::from_secs(30)).await.unwrap();
    (openai, anthropic, gemini, gw)
}

/// A small deterministic generator: the cases are the same on every run.
struct XorShift(u64);

impl XorShift {
    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }

    fn pick<T: Copy>(&mut self, items: &[T]) -> T {
        items[(self.next() % items.len() as u64) as usize]
    }
}

/// Values the detectors must find, and whether they may leave as a placeholder.
const VALUES: &[(&str, bool)] = &[
    ("jane.doe@example.com", true),
    ("10.20.30.40", true),
    ("4111 1111 1111 1111", false),
    ("AKIAIOSFODNN7EXAMPLE", false),
    ("DE89 3704 0044 0532 0130 00", false),
    ("+44 20 7946 0958", false),
];

/// Where the value goes: every text field of both wire formats.
const OPENAI_FIELDS: &[&str] = &[
    "system",
    "developer",
    "user",
    "user-part",
    "assistant",
    "user-field",
    "stop-string",
    "stop-array",
    "schema-name",
    "schema-description",
    "schema-key",
    "schema-enum",
    "metadata",
    "tool-description",
    "tool-param-description",
    "tool-param-key",
    "tool-param-enum",
    "tool-call-arguments",
    "tool-call-argument-key",
    "tool-call-id",
    "tool-result",
];
const ANTHROPIC_FIELDS: &[&str] = &[
    "system",
    "system-blocks",
    "user",
    "user-block",
    "assistant",
    "stop_sequences",
    "metadata.user_id",
    "tool-description",
    "tool-schema-key",
    "tool-use-input",
    "tool-use-id",
    "tool-result",
    "tool-result-blocks",
];

/// An OpenAI conversation with one tool, one call and its result; `at`
/// says which of its texts holds `v`.
fn openai_tools(body: &mut Value, at: &str, v: &str) {
    let pick = |f: &str, default: &str| {
        if f == at {
            v.to_owned()
        } else {
            default.to_owned()
        }
    };
    let id = pick("tool-call-id", "call_1");
    let args_key = pick("tool-call-argument-key", "query");
    let args = json!({ args_key: pick("tool-call-arguments", "cats") }).to_string();
    body["tools"] = json!([{"type": "function", "function": {
        "name": "lookup",
        "description": pick("tool-description", "looks things up"),
        "parameters": {"type": "object", "properties": {
            pick("tool-param-key", "query"): {
                "type": "string",
                "description": pick("tool-param-description", "what to look up"),
                "enum": [pick("tool-param-enum", "cats"), "dogs"]
            }
        }}
    }}]);
    body["messages"] = json!([
        {"role": "user", "content": "hello there"},
        {"role": "assistant", "content": null, "tool_calls": [
            {"id": id, "type": "function", "function": {"name": "lookup", "arguments": args}}
        ]},
        {"role": "tool", "tool_call_id": id, "content": pick("tool-result", "three cats")}
    ]);
}

/// The same for Anthropic: a tool, a `tool_use` and its `tool_result`.
fn anthropic_tools(body: &mut Value, at: &str, v: &str) {
    let pick = |f: &str, default: &str| {
        if f == at {
            v.to_owned()
        } else {
            default.to_owned()
        }
    };
    let id = pick("tool-use-id", "toolu_1");
    let result = if at == "tool-result-blocks" {
        json!([{"type": "text", "text": v}])
    } else {
        json!(pick("tool-result", "three cats"))
    };
    body["tools"] = json!([{
        "name": "lookup",
        "description": pick("tool-description", "looks things up"),
        "input_schema": {"type": "object", "properties": {
            pick("tool-schema-key", "query"): {"type": "string"}
        }}
    }]);
    body["messages"] = json!([
        {"role": "user", "content": "hello there"},
        {"role": "assistant", "content": [
            {"type": "tool_use", "id": id, "name": "lookup",
             "input": {"query": pick("tool-use-input", "cats")}}
        ]},
        {"role": "user", "content": [
            {"type": "tool_result", "tool_use_id": id, "content": result}
        ]}
    ]);
}

fn openai_body(field: &str, v: &str, model: &str) -> Value {
    let text = |s: &str| format!("please look at {s} now");
    let mut messages = vec![json!({"role": "user", "content": "hello there"})];
    let mut body = json!({"model": model, "max_tokens": 8});
    match field {
        "system" | "developer" | "assistant" => messages.insert(
            0,
            json!({"role": if field == "assistant" { "assistant" } else { field }, "content": text(v)}),
        ),
        "user" => messages[0]["content"] = json!(text(v)),
        "user-part" => {
            messages[0]["content"] = json!([
                {"type": "text", "text": "first part"},
                {"type": "text", "text": text(v)}
            ])
        }
        "user-field" => body["user"] = json!(v),
        "stop-string" => body["stop"] = json!(v),
        "stop-array" => body["stop"] = json!(["END", v]),
        "metadata" => body["metadata"] = json!({"ticket": text(v)}),
        f if f.starts_with("tool") => {}
        f if f.starts_with("schema") => {
            let (name, desc, key, en) = match f {
                "schema-name" => (v, "d", "k", "e"),
                "schema-description" => ("n", v, "k", "e"),
                "schema-key" => ("n", "d", v, "e"),
                _ => ("n", "d", "k", v),
            };
            body["response_format"] = json!({
                "type": "json_schema",
                "json_schema": {"name": name, "schema": {
                    "type": "object",
                    "description": desc,
                    "properties": {key: {"type": "string", "enum": [en, "other"]}}
                }}
            });
        }
        other => panic!("unknown field {other}"),
    }
    body["messages"] = json!(messages);
    if field.starts_with("tool") {
        openai_tools(&mut body, field, v);
    }
    body
}

fn anthropic_body(field: &str, v: &str) -> Value {
    let text = |s: &str| format!("please look at {s} now");
    let mut body = json!({"model": "claude", "max_tokens": 8,
        "messages": [{"role": "user", "content": "hello there"}]});
    match field {
        "system" => body["system"] = json!(text(v)),
        "system-blocks" => body["system"] = json!([{"type": "text", "text": text(v)}]),
        "user" => body["messages"][0]["content"] = json!(text(v)),
        "user-block" => body["messages"][0]["content"] = json!([{"type": "text", "text": text(v)}]),
        "assistant" => {
            body["messages"] = json!([
                {"role": "user", "content": "hi"},
                {"role": "assistant", "content": text(v)},
                {"role": "user", "content": "go on"}
            ])
        }
        "stop_sequences" => body["stop_sequences"] = json!(["END", v]),
        "metadata.user_id" => body["metadata"] = json!({"user_id": v}),
        f if f.starts_with("tool") => anthropic_tools(&mut body, f, v),
        other => panic!("unknown field {other}"),
    }
    body
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_detectable_value_in_any_field_reaches_an_untrusted_target() {
    let (openai, anthropic, gemini, gw) = start("e2e-privacy-fields", "").await;
    let http = reqwest::Client::new();
    let mut rng = XorShift(0x5eed_cafe_f00d_0001);
    let (mut home, mut redacted) = (0, 0);
    // Every field with every value at least once, then random ones: bounded.
    let mut cases: Vec<(bool, &str, &str, bool)> = Vec::new();
    for &f in OPENAI_FIELDS {
        for &(v, leaves) in VALUES {
            cases.push((true, f, v, leaves));
        }
    }
    for &f in ANTHROPIC_FIELDS {
        for &(v, leaves) in VALUES {
            cases.push((false, f, v, leaves));
        }
    }
    for _ in 0..40 {
        let openai_wire = rng.next().is_multiple_of(2);
        let f = if openai_wire {
            rng.pick(OPENAI_FIELDS)
        } else {
            rng.pick(ANTHROPIC_FIELDS)
        };
        let (v, leaves) = rng.pick(VALUES);
        cases.push((openai_wire, f, v, leaves));
    }
    for (openai_wire, field, value, leaves) in cases {
        let before_openai = openai.request_count();
        let before_gemini = gemini.request_count();
        let before = before_openai + anthropic.request_count() + before_gemini;
        let (path, body) = if openai_wire {
            let model = rng.pick(&["gpt", "claude", "gemini"]);
            ("/v1/chat/completions", openai_body(field, value, model))
        } else {
            ("/v1/messages", anthropic_body(field, value))
        };
        let resp = http
            .post(format!("{}{path}", gw.base_url))
            .json(&body)
            .send()
            .await
            .unwrap();
        let status = resp.status().as_u16();
        let headers = resp.headers().clone();
        let answer = resp.text().await.unwrap();
        let sent: Vec<String> = openai
            .requests()
            .into_iter()
            .chain(anthropic.requests())
            .chain(gemini.requests())
            .map(|r| r.body.to_string())
            .collect();
        let case = format!("{path} {field} {value:?}: {status} {answer}");
        assert!(
            sent.iter().all(|b| !b.contains(value)),
            "{case}: an untrusted target received the value"
        );
        let after = sent.len();
        // The body this case sent, from whichever mock received it.
        let newest = if openai.request_count() > before_openai {
            openai.last_request()
        } else if gemini.request_count() > before_gemini {
            gemini.last_request()
        } else {
            anthropic.last_request()
        }
        .map(|r| r.body.to_string())
        .unwrap_or_default();
        if leaves {
            // Internal: it may leave, but only as a placeholder. The Anthropic
            // adapter refuses JSON formats (400) and sends nothing.
            let schema_to_claude = field.starts_with("schema") && body["model"] == "claude";
            if schema_to_claude {
                assert_eq!(status, 400, "{case}");
                assert_eq!(after, before, "{case}");
            } else {
                assert_eq!(status, 200, "{case}");
                assert_eq!(after, before + 1, "{case}");
                // Metadata is scanned and redacted but no adapter sends it;
                // Gemini sends no `user`, call ids or schema name.
                let unsent = field == "metadata"
                    || (body["model"] == "gemini"
                        && matches!(field, "user-field" | "tool-call-id" | "schema-name"));
                if !unsent {
                    assert!(
                        newest.contains("[EMAIL_1]") || newest.contains("[IP_1]"),
                        "{case}: no placeholder in {newest}"
                    );
                }
                assert!(headers.get("x-watershed-redacted").is_some(), "{case}");
                redacted += 1;
            }
        } else if field.starts_with("tool") {
            // Confidential or restricted with tools: only `local` may serve,
            // and it is configured with `tools: false`, so the request fails
            // closed at once with a 400 naming the capability.
            assert_eq!(status, 400, "{case}");
            assert!(answer.contains(r#"capability \"tools\""#), "{case}");
            assert_eq!(after, before, "{case}: the request left");
            home += 1;
        } else {
            // Confidential or restricted: only `local` may serve, and it cannot.
            assert_eq!(status, 503, "{case}");
            assert_eq!(after, before, "{case}: the request left");
            home += 1;
        }
    }
    eprintln!(
        "{home} requests stayed home, {redacted} left redacted ({} to gemini)",
        gemini.request_count()
    );
    assert!(home > 50 && redacted > 20);
    assert!(
        gemini.request_count() > 5,
        "the gemini adapter was exercised"
    );
    gw.stop().unwrap();
}

/// `n` bytes of text that hits every detector's slow path at once.
fn adversarial(n: usize) -> String {
    let unit = "4111 1111 1111 1111 12 1.1.1.1 a@b@c@ ::ff:: AKIA password= DE89 +1 555 ";
    // One clear card number makes the whole request confidential (it stays
    // home); the rest is near-misses that exercise every scanner.
    let mut s = String::with_capacity(n + unit.len());
    s.push_str("pay with card 4111 1111 1111 1111 please. ");
    while s.len() < n {
        s.push_str(unit);
    }
    s.truncate(n);
    s
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_prompts_are_classified_off_the_async_workers() {
    let (openai, _anthropic, _gemini, gw) = start(
        "e2e-privacy-flood",
        "  scan: { workers: 2, timeout_ms: 60000, inline_bytes: 65536 }",
    )
    .await;
    let http = reqwest::Client::new();
    let big = json!({"model": "gpt", "max_tokens": 8,
        "messages": [{"role": "user", "content": adversarial(4 << 20)}]})
    .to_string();
    // Four 4 MiB adversarial prompts at once, on two blocking workers.
    let tracker = tokio_util::task::TaskTracker::new();
    let mut flood = Vec::new();
    for _ in 0..4 {
        let (http, url, body) = (
            http.clone(),
            format!("{}/v1/chat/completions", gw.base_url),
            big.clone(),
        );
        flood.push(tracker.spawn(async move {
            let r = http
                .post(url)
                .header("content-type", "application/json")
                .body(body)
                .send()
                .await
                .unwrap();
            let status = r.status().as_u16();
            (status, r.text().await.unwrap_or_default())
        }));
    }
    // Meanwhile small requests and /healthz answer.
    let started = Instant::now();
    let mut latencies = Vec::new();
    let mut small = 0;
    while !flood.iter().all(|h| h.is_finished()) && started.elapsed() < Duration::from_secs(120) {
        let t = Instant::now();
        let h = http
            .get(format!("{}/healthz", gw.base_url))
            .timeout(Duration::from_secs(10))
            .send()
            .await
            .unwrap();
        assert_eq!(h.status(), 200);
        let r = http
            .post(format!("{}/v1/chat/completions", gw.base_url))
            .timeout(Duration::from_secs(10))
            .json(&json!({"model": "gpt", "max_tokens": 8,
                "messages": [{"role": "user", "content": "hello there"}]}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        latencies.push(t.elapsed());
        small += 1;
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let mut statuses = Vec::new();
    for h in flood {
        statuses.push(h.await.unwrap());
    }
    latencies.sort();
    eprintln!(
        "while 4 x 4 MiB adversarial prompts were classified ({:?}): {small} small requests + /healthz, latency p50 {:?}, max {:?}",
        started.elapsed(),
        latencies.get(latencies.len() / 2),
        latencies.last()
    );
    assert!(small >= 1, "no small request was tried");
    // The big prompts hold card numbers: they are confidential and stay home.
    assert!(statuses.iter().all(|(s, _)| *s == 503), "{statuses:?}");
    assert_eq!(
        openai
            .requests()
            .iter()
            .filter(|r| r.body.to_string().len() > 1 << 20)
            .count(),
        0
    );
    gw.stop().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_that_cannot_be_classified_fails_closed_visibly() {
    let (openai, _anthropic, _gemini, gw) = start(
        "e2e-privacy-fail-closed",
        "  scan: { max_bytes: 100000, timeout_ms: 1, inline_bytes: 1000 }",
    )
    .await;
    let http = reqwest::Client::new();
    let post = |text: String| {
        http.post(format!("{}/v1/chat/completions", gw.base_url))
            .json(&json!({"model": "gpt", "max_tokens": 8,
                "messages": [{"role": "user", "content": text}]}))
            .send()
    };
    // Harmless but over the size budget: restricted, so it stays home (503).
    let r = post("hello ".repeat(20_000)).await.unwrap();
    assert_eq!(r.status(), 503);
    // Under the size budget but far over a 1 ms time budget.
    let r = post("lorem ipsum 12 1.1.1.1 ".repeat(4_000)).await.unwrap();
    assert_eq!(r.status(), 503);
    // A small harmless request still goes out.
    let r = post("hello there".into()).await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(openai.request_count(), 1, "an unclassified request left");
    let metrics = http
        .get(format!("{}/metrics", gw.base_url))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    for reason in ["too_large", "timeout"] {
        assert!(
            metrics.contains(&format!(
                "watershed_privacy_fail_closed_total{{reason=\"{reason}\"}} 1"
            )),
            "{metrics}"
        );
    }
    // `policy explain` says so for the same config.
    let req = gw.dir.join("big.json");
    std::fs::write(
        &req,
        json!({"model": "gpt", "messages": [{"role": "user", "content": "hello ".repeat(20_000)}]})
            .to_string(),
    )
    .unwrap();
    let out = std::process::Command::new(binary().unwrap())
        .args(["policy", "explain", "--config"])
        .arg(gw.config_path())
        .arg("--request")
        .arg(&req)
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let e: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(e["privacy"]["level"], "restricted", "{e:#}");
    assert_eq!(e["privacy"]["fail_closed"]["reason"], "too_large", "{e:#}");
    assert!(e["privacy"]["fail_closed"]["detail"]
        .as_str()
        .unwrap()
        .contains("privacy.scan.max_bytes"));
    assert_eq!(e["outcome"]["route"], "home", "{e:#}");
    gw.stop().unwrap();
}
