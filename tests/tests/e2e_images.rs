//! Image inputs end to end through the real binary: OpenAI `image_url`
//! parts and Anthropic image blocks reach mock Anthropic, Gemini and OpenAI
//! upstreams translated into each one's own shape (the bodies the mocks
//! record are checked), streamed and not; an image over
//! `server.max_image_bytes` is a 413 and an undecodable one a 400, each
//! naming the field in the client's wire format; and the privacy rule for
//! content no detector can read: with the default config
//! (`privacy.uninspectable: confidential`) an image never reaches an
//! untrusted target, with `uninspectable: public` it may, and the image
//! URL itself is still scanned.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly by design

use std::process::Command;
use std::time::Duration;

use serde_json::{json, Value};
use watershed_tests::harness::{python, workspace_root, Gateway};
use watershed_tests::mock::MockUpstream;

/// A 70-byte 1x1 PNG.
const PNG: &str = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNkYPhfDwAChwGA60e6kgAAAABJRU5ErkJggg==";

struct Env {
    claude: MockUpstream,
    gemini: MockUpstream,
    gpt: MockUpstream,
    gw: Gateway,
    http: reqwest::Client,
}

/// Three untrusted vision targets and a local engine (no vision) for
/// confidential requests; `privacy` is the config's `privacy:` section.
async fn start(tag: &str, privacy: &str) -> Env {
    let claude = MockUpstream::anthropic().await;
    let gemini = MockUpstream::gemini().await;
    let gpt = MockUpstream::openai().await;
    let config = format!(
        r#"version: 1
ledger: {{ url: "sqlite://{{dir}}/ledger.db" }}
server: {{ max_image_bytes: 256, max_images: 3 }}
privacy: {privacy}
models:
  local:
    engine: local
    gguf: "{{dir}}/does-not-exist.gguf"
  claude:
    provider: anthropic
    base_url: "{}"
    api_key_env: E2E_ANTHROPIC_KEY
    timeout_ms: 3000
  gem:
    provider: gemini
    base_url: "{}"
    model: gemini-3-flash-preview
    api_key_env: E2E_GEMINI_KEY
    timeout_ms: 3000
  gpt:
    provider: openai
    base_url: "{gpt}"
    api_key_env: E2E_OPENAI_KEY
    timeout_ms: 3000
  compat:
    provider: openai-compatible
    base_url: "{gpt}"
    model: text-only-model
    timeout_ms: 3000
  compat-vision:
    provider: openai-compatible
    base_url: "{gpt}"
    model: vision-model
    capabilities: {{ vision: true }}
    timeout_ms: 3000
routes:
  - name: home
    when: {{ privacy: ">= confidential" }}
    to: [local]
  - name: claude
    when: {{ model: claude }}
    to: [claude]
  - name: gemini
    when: {{ model: gemini }}
    to: [gem]
  - name: compat
    when: {{ model: compat }}
    to: [compat]
    fallback: [compat-vision]
  - name: gpt
    to: [gpt]
"#,
        claude.base_url,
        gemini.base_url,
        gpt = gpt.base_url
    );
    let gw = Gateway::start(
        tag,
        &config,
        &[
            ("E2E_ANTHROPIC_KEY", "sk-ant"),
            ("E2E_GEMINI_KEY", "gem-key"),
            ("E2E_OPENAI_KEY", "sk-openai"),
        ],
    )
    .unwrap();
    gw.wait_ready(Duration::from_secs(30)).await.unwrap();
    Env {
        claude,
        gemini,
        gpt,
        gw,
        http: reqwest::Client::new(),
    }
}

impl Env {
    /// Posts `body` to `path`; the status, the route header and the JSON
    /// body (or the raw text of a stream as a JSON string).
    async fn post(&self, path: &str, body: &Value) -> (u16, String, Value) {
        let resp = self
            .http
            .post(format!("{}{path}", self.gw.base_url))
            .header("anthropic-version", "2023-06-01")
            .json(body)
            .send()
            .await
            .unwrap();
        let status = resp.status().as_u16();
        let route = resp
            .headers()
            .get("x-watershed-route")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned();
        let text = resp.text().await.unwrap();
        let v = serde_json::from_str(&text).unwrap_or(Value::String(text));
        (status, route, v)
    }

    fn received(&self) -> usize {
        self.claude.request_count() + self.gemini.request_count() + self.gpt.request_count()
    }
}

/// An OpenAI chat body: text, an inline PNG, an https image, more text.
fn openai_image_body(model: &str, url: &str) -> Value {
    json!({"model": model, "max_tokens": 16, "messages": [{"role": "user", "content": [
        {"type": "text", "text": "compare these"},
        {"type": "image_url", "image_url": {"url": format!("data:image/png;base64,{PNG}"), "detail": "low"}},
        {"type": "image_url", "image_url": {"url": url}},
        {"type": "text", "text": "which is brighter"}
    ]}]})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn images_are_translated_for_anthropic_gemini_and_openai_targets() {
    let env = start("e2e-images", "{ uninspectable: public }").await;
    let url = "https://img.example/cat.jpg";

    // /v1/chat/completions → Anthropic: image blocks in place, base64
    // source with the sniffed media type, and a url source.
    let (status, route, v) = env
        .post("/v1/chat/completions", &openai_image_body("claude", url))
        .await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(route, "claude");
    assert_eq!(v["choices"][0]["message"]["role"], "assistant", "{v}");
    let body = env.claude.last_request().unwrap().body;
    assert_eq!(
        body["messages"],
        json!([{"role": "user", "content": [
            {"type": "text", "text": "compare these"},
            {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": PNG}},
            {"type": "image", "source": {"type": "url", "url": url}},
            {"type": "text", "text": "which is brighter"}
        ]}]),
        "{body}"
    );
    // Streamed, the same body goes up and the answer streams back.
    let mut streamed = openai_image_body("claude", url);
    streamed["stream"] = json!(true);
    let (status, _, v) = env.post("/v1/chat/completions", &streamed).await;
    assert_eq!(status, 200, "{v}");
    assert!(v.as_str().unwrap().contains("data: [DONE]"), "{v}");
    let up = env.claude.last_request().unwrap().body;
    assert_eq!(up["messages"], body["messages"]);
    assert_eq!(up["stream"], true);

    // /v1/chat/completions → Gemini: inlineData and fileData parts.
    let (status, route, v) = env
        .post("/v1/chat/completions", &openai_image_body("gemini", url))
        .await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(route, "gemini");
    let body = env.gemini.last_request().unwrap().body;
    assert_eq!(
        body["contents"],
        json!([{"role": "user", "parts": [
            {"text": "compare these"},
            {"inlineData": {"mimeType": "image/png", "data": PNG}},
            {"fileData": {"fileUri": url, "mimeType": "image/jpeg"}},
            {"text": "which is brighter"}
        ]}]),
        "{body}"
    );

    // /v1/messages → OpenAI: image_url parts, inline bytes as a data URI.
    let anthropic_body = json!({"model": "gpt", "max_tokens": 16, "messages": [{"role": "user", "content": [
        {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": PNG}},
        {"type": "image", "source": {"type": "url", "url": url}},
        {"type": "text", "text": "what is this"}
    ]}]});
    let (status, route, v) = env.post("/v1/messages", &anthropic_body).await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(route, "gpt");
    assert_eq!(v["type"], "message", "{v}");
    let body = env.gpt.last_request().unwrap().body;
    assert_eq!(
        body["messages"],
        json!([{"role": "user", "content": [
            {"type": "image_url", "image_url": {"url": format!("data:image/png;base64,{PNG}")}},
            {"type": "image_url", "image_url": {"url": url}},
            {"type": "text", "text": "what is this"}
        ]}]),
        "{body}"
    );
    println!("images: 3 wire translations checked (anthropic plain+streamed, gemini, openai)");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversize_undecodable_and_too_many_images_are_refused_naming_the_field() {
    let env = start("e2e-images-limits", "{ uninspectable: public }").await;
    // 309 bytes that start like a PNG: over the 256-byte limit.
    let big = format!("iVBORw0KGgo{}", "A".repeat(401));
    let with_url = |url: String| {
        json!({"model": "gpt", "messages": [{"role": "user", "content": [
            {"type": "text", "text": "look"},
            {"type": "image_url", "image_url": {"url": url}}
        ]}]})
    };
    let field = "messages[0].content[1].image_url.url";

    let (status, _, v) = env
        .post(
            "/v1/chat/completions",
            &with_url(format!("data:image/png;base64,{big}")),
        )
        .await;
    assert_eq!(status, 413, "{v}");
    assert_eq!(v["error"]["code"], "payload_too_large", "{v}");
    assert_eq!(v["error"]["param"], field, "{v}");
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("309 bytes, above the limit of 256"),
        "{v}"
    );

    // In the Anthropic wire, the Anthropic error shape, naming the field.
    let (status, _, v) = env
        .post(
            "/v1/messages",
            &json!({"model": "gpt", "max_tokens": 8, "messages": [{"role": "user", "content": [
                {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": big}}
            ]}]}),
        )
        .await;
    assert_eq!(status, 413, "{v}");
    assert_eq!(v["type"], "error", "{v}");
    assert_eq!(v["error"]["type"], "invalid_request_error", "{v}");
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("messages[0].content[0].source.data"),
        "{v}"
    );

    // Bytes that are no image, and base64 that does not decode: 400.
    for (url, words) in [
        ("data:image/png;base64,aGVsbG8gd29ybGQ=", "not a PNG"),
        ("data:image/png;base64,%%%%", "valid base64"),
        ("http://img.example/cat.png", "https URL"),
    ] {
        let (status, _, v) = env
            .post("/v1/chat/completions", &with_url(url.to_owned()))
            .await;
        assert_eq!(status, 400, "{url}: {v}");
        assert_eq!(v["error"]["param"], field, "{v}");
        assert!(
            v["error"]["message"].as_str().unwrap().contains(words),
            "{v}"
        );
    }

    // Four images where three are allowed.
    let png =
        json!({"type": "image_url", "image_url": {"url": format!("data:image/png;base64,{PNG}")}});
    let (status, _, v) = env
        .post(
            "/v1/chat/completions",
            &json!({"model": "gpt", "messages": [{"role": "user", "content": [png, png, png, png]}]}),
        )
        .await;
    assert_eq!(status, 413, "{v}");
    assert_eq!(v["error"]["param"], "messages[0].content[3].image_url.url");
    assert_eq!(env.received(), 0, "a refused image reached an upstream");
    println!(
        "images: 413 at 309 > 256 bytes and 4 > 3 images; 400 for 3 bad sources; upstreams got 0"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn by_default_an_image_never_leaves_for_an_untrusted_target() {
    let env = start("e2e-images-privacy", "{ scan: { timeout_ms: 2000 } }").await;
    // Default `uninspectable: confidential`: the request is routed home,
    // where the local engine cannot read images, so it is refused naming
    // the image, and no untrusted upstream sees it, in either wire.
    for model in ["claude", "gemini", "gpt"] {
        let (status, route, v) = env
            .post(
                "/v1/chat/completions",
                &openai_image_body(model, "https://img.example/a.png"),
            )
            .await;
        assert_eq!(status, 400, "{model}: {v}");
        // The policy refuses it: route "home" has no target that reads images.
        assert_eq!(route, "", "{v}");
        assert_eq!(v["error"]["code"], "missing_capability", "{v}");
        assert_eq!(v["error"]["param"], "messages[0].content[1].image_url.url");
        assert!(
            v["error"]["message"]
                .as_str()
                .unwrap()
                .contains("route \"home\" has no target with the capability \"vision\""),
            "{v}"
        );
    }
    let (status, route, v) = env
        .post(
            "/v1/messages",
            &json!({"model": "claude", "max_tokens": 8, "messages": [{"role": "user", "content": [
                {"type": "image", "source": {"type": "url", "url": "https://img.example/a.png"}}
            ]}]}),
        )
        .await;
    assert_eq!(status, 400, "{v}");
    assert_eq!(route, "");
    assert_eq!(v["type"], "error", "{v}");
    assert_eq!(v["error"]["type"], "invalid_request_error", "{v}");
    // A request without images still goes out.
    let (status, route, _) = env
        .post(
            "/v1/chat/completions",
            &json!({"model": "claude", "messages": [{"role": "user", "content": "hello"}]}),
        )
        .await;
    assert_eq!((status, route.as_str()), (200, "claude"));
    assert_eq!(env.claude.request_count(), 1);
    assert_eq!(env.received(), 1, "an image reached an untrusted upstream");
    println!("images: default uninspectable=confidential kept 4 image requests home; upstreams got only the text one");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_image_url_is_scanned_like_any_text() {
    // Images may leave, but a URL holding an e-mail address is personal
    // data the detectors read: the request is confidential and stays home.
    let env = start("e2e-images-url-scan", "{ uninspectable: public }").await;
    let (status, route, v) = env
        .post(
            "/v1/chat/completions",
            &openai_image_body("claude", "https://img.example/jane.doe@example.com/a.png"),
        )
        .await;
    assert_eq!(status, 400, "{v}");
    assert_eq!(v["error"]["code"], "missing_capability", "{v}");
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("at privacy confidential"),
        "{v}"
    );
    assert_eq!(route, "", "{v}");
    let (status, route, _) = env
        .post(
            "/v1/chat/completions",
            &openai_image_body("claude", "https://img.example/a.png"),
        )
        .await;
    assert_eq!((status, route.as_str()), (200, "claude"));
    assert_eq!(env.received(), 1);
    println!("images: an e-mail address in an image URL kept the request home");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_openai_sdk_sends_images_plain_and_streamed() {
    let env = start("e2e-images-sdk", "{ uninspectable: public }").await;
    let script = workspace_root().join("tests/sdk/openai_sdk_image.py");
    let base = env.gw.base_url.clone();
    let out = tokio::task::spawn_blocking(move || {
        Command::new(python())
            .arg(script)
            .args([base.as_str(), "gpt", PNG])
            .output()
    })
    .await
    .unwrap()
    .unwrap();
    assert!(
        out.status.success(),
        "SDK script failed:\n{}\n--- gateway log ---\n{}",
        String::from_utf8_lossy(&out.stderr),
        env.gw.log_text()
    );
    let o: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(
        o["plain"]["text"].as_str().unwrap().contains("what is in"),
        "{o}"
    );
    assert_eq!(o["streamed"], o["plain"]["text"], "{o}");
    assert_eq!(o["refused"]["status"], 400, "{o}");
    assert_eq!(
        o["refused"]["param"],
        "messages[0].content[0].image_url.url"
    );
    let sent = env.gpt.requests();
    assert_eq!(sent.len(), 2, "the refused image never left");
    for r in &sent {
        assert_eq!(
            r.body["messages"][0]["content"],
            json!([
                {"type": "text", "text": "what is in"},
                {"type": "image_url", "image_url": {"url": format!("data:image/png;base64,{PNG}"), "detail": "low"}},
                {"type": "image_url", "image_url": {"url": "https://img.example/b.webp"}}
            ]),
            "{}",
            r.body
        );
    }
    println!("images: the openai SDK's image request reached the mock twice (plain, streamed), byte for byte");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_target_without_vision_is_skipped_never_sent_the_text_alone() {
    let env = start("e2e-images-vision", "{ uninspectable: public }").await;
    // Text goes to the route's first target, an OpenAI-compatible server
    // that does not say `vision: true`.
    let (status, _, v) = env
        .post(
            "/v1/chat/completions",
            &json!({"model": "compat", "messages": [{"role": "user", "content": "hello"}]}),
        )
        .await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(
        env.gpt.last_request().unwrap().body["model"],
        "text-only-model"
    );
    // An image skips it for the fallback that takes images: one request
    // upstream, to the vision model, with the image in it.
    let resp = env
        .http
        .post(format!("{}/v1/chat/completions", env.gw.base_url))
        .json(&openai_image_body("compat", "https://img.example/a.png"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["x-watershed-backend"], "compat-vision");
    assert_eq!(
        env.gpt.request_count(),
        2,
        "the text-only target got nothing"
    );
    let body = env.gpt.last_request().unwrap().body;
    assert_eq!(body["model"], "vision-model");
    assert_eq!(
        body["messages"][0]["content"][1]["type"], "image_url",
        "{body}"
    );
    println!("images: the text-only target was skipped; the vision fallback got the image");
}
