//! [`LocalEngine`]: the async face of one loaded model. Callers render and
//! tokenize their prompt here, check the limits, and hand a job to the model's
//! own OS thread (see `scheduler`) over a bounded queue; tokens come back on a
//! channel as [`StreamEvent`]s.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{self, SyncSender, TrySendError};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Instant;

use async_trait::async_trait;
use llama_cpp_2::model::{LlamaChatMessage, LlamaChatTemplate, LlamaModel};
use llama_cpp_2::sampling::LlamaSampler;
use llama_cpp_2::token::logit_bias::LlamaLogitBias;
use llama_cpp_2::token::LlamaToken;
use serde::Serialize;
use tokio::sync::{mpsc as tmpsc, watch};
use tokio_stream::wrappers::UnboundedReceiverStream;
use watershed_providers::{
    BackendKind, Capabilities, ChatRequest, ChatResponse, ChatStream, Embeddings, Provider,
    ProviderError, StreamEvent,
};

use crate::grammar::Grammar;
use crate::{choices, grammar, scheduler, tools, EngineError, LocalModelConfig};

/// Where loading stands; the engine thread publishes it.
#[derive(Debug, Clone)]
pub enum LoadState {
    Loading,
    Ready,
    Failed(EngineError),
}

/// What the engine thread publishes once the model is loaded.
pub(crate) struct Loaded {
    pub model: Arc<LlamaModel>,
    pub template: LlamaChatTemplate,
    /// The template's Jinja source (or a built-in template's name), which
    /// says how tools can be rendered.
    pub template_source: String,
    pub capabilities: Capabilities,
}

/// State shared between the async side and the engine thread.
pub(crate) struct Shared {
    pub loaded: OnceLock<Loaded>,
    /// Jobs sent but not yet taken by the engine thread.
    pub queued: AtomicUsize,
    /// Jobs accepted and not yet finished, running or waiting; bounded by
    /// `parallel + queue`.
    pub in_flight: AtomicUsize,
    pub stats: Mutex<EngineStats>,
}

/// One accepted job's claim on the engine's capacity, given back when the job
/// is dropped — finished, cancelled or failed, wherever that happens.
pub(crate) struct Permit(Arc<Shared>);

impl Drop for Permit {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::AcqRel);
    }
}

/// A request on its way to the engine thread.
pub(crate) struct Job {
    pub prompt: Vec<LlamaToken>,
    pub max_tokens: u32,
    pub stops: Vec<String>,
    pub sampler: LlamaSampler,
    /// The grammar the answer is held to, kept out of `sampler` so the
    /// scheduler checks it against the sampled token first (see
    /// `scheduler::constrained`).
    pub grammar: Option<LlamaSampler>,
    /// With `logprobs`: how many alternatives per token to report with it.
    pub top_logprobs: Option<u8>,
    pub tx: tmpsc::UnboundedSender<Result<StreamEvent, ProviderError>>,
    pub enqueued: Instant,
    pub _permit: Permit,
}

/// A snapshot of the engine's live state, for routing and `/metrics`.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct EngineStats {
    pub ready: bool,
    /// Requests waiting for a free sequence.
    pub queued: usize,
    /// Sequences prefilling or decoding.
    pub active: usize,
    /// Decode steps run so far and the tokens they carried.
    pub steps: u64,
    pub batched_tokens: u64,
    pub slots: Vec<SlotStats>,
}

/// One sequence of the llama.cpp context.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct SlotStats {
    pub seq: i32,
    /// `idle`, `prefill` or `decode`.
    pub state: &'static str,
    /// Tokens whose KV cells this sequence holds (reusable as a prefix cache).
    pub cached_tokens: usize,
    /// KV cells llama.cpp holds for this sequence (highest position + 1).
    pub kv_cells: usize,
}

/// One GGUF model served in-process. Cheap to share: hold it in an `Arc`.
pub struct LocalEngine {
    cfg: LocalModelConfig,
    shared: Arc<Shared>,
    /// `None` once the engine is shut down.
    jobs: Mutex<Option<SyncSender<Job>>>,
    thread: Mutex<Option<std::thread::JoinHandle<()>>>,
    state: watch::Receiver<LoadState>,
    stem: String,
    /// The embedding thread, started by the first embeddings request;
    /// `None` before that and after shutdown.
    embedder: Mutex<Option<crate::embed::Embedder>>,
}

impl std::fmt::Debug for LocalEngine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LocalEngine")
            .field("id", &self.cfg.id)
            .field("gguf", &self.cfg.gguf)
            .finish()
    }
}

impl LocalEngine {
    fn busy(&self) -> ProviderError {
        ProviderError::Overloaded {
            message: format!(
                "local model \"{}\" is busy: {} requests are running and {} waiting",
                self.cfg.id, self.cfg.parallel, self.cfg.queue
            ),
            retry_after_s: Some(1),
        }
    }

    /// Starts the engine thread, which loads the model in the background; use
    /// [`LocalEngine::wait_ready`] or [`LocalEngine::is_ready`] to follow it.
    pub fn start(cfg: LocalModelConfig) -> Result<Arc<LocalEngine>, EngineError> {
        let bad = |reason: &str| EngineError::Config {
            id: cfg.id.clone(),
            reason: reason.to_owned(),
        };
        if cfg.parallel == 0 || cfg.parallel > 256 {
            return Err(bad("parallel must be between 1 and 256"));
        }
        if cfg.context_tokens < 16 {
            return Err(bad("context_tokens must be at least 16"));
        }
        if cfg.context_tokens.checked_mul(cfg.parallel).is_none() {
            return Err(bad("context_tokens × parallel is too large"));
        }
        if cfg.queue == 0 {
            return Err(bad("queue must be at least 1"));
        }
        let shared = Arc::new(Shared {
            loaded: OnceLock::new(),
            queued: AtomicUsize::new(0),
            in_flight: AtomicUsize::new(0),
            stats: Mutex::new(EngineStats::default()),
        });
        // The channel never fills before the in-flight bound does.
        let (jobs_tx, jobs_rx) = mpsc::sync_channel((cfg.queue + cfg.parallel) as usize);
        let (state_tx, state_rx) = watch::channel(LoadState::Loading);
        let thread_cfg = cfg.clone();
        let thread_shared = Arc::clone(&shared);
        let thread = std::thread::Builder::new()
            .name(format!("llama-{}", cfg.id))
            .spawn(move || scheduler::run(thread_cfg, thread_shared, jobs_rx, state_tx))
            .map_err(|e| EngineError::Context {
                id: cfg.id.clone(),
                reason: format!("cannot start the engine thread: {e}"),
            })?;
        let stem = file_stem(&cfg.gguf);
        Ok(Arc::new(LocalEngine {
            cfg,
            shared,
            jobs: Mutex::new(Some(jobs_tx)),
            thread: Mutex::new(Some(thread)),
            state: state_rx,
            stem,
            embedder: Mutex::new(None),
        }))
    }

    /// Stops taking requests, lets the running ones finish, frees the model and
    /// its context, and waits for the engine thread to end. Call it before the
    /// process exits: GPU drivers tear down at exit, and a context freed after
    /// that aborts the process.
    pub fn shutdown(&self) {
        let sender = self.jobs.lock().map(|mut j| j.take()).unwrap_or(None);
        drop(sender);
        let embedder = self.embedder.lock().map(|mut e| e.take()).unwrap_or(None);
        if let Some(e) = embedder {
            drop(e.jobs);
            let _ = e.thread.join();
        }
        let handle = self.thread.lock().map(|mut t| t.take()).unwrap_or(None);
        if let Some(h) = handle {
            let _ = h.join();
        }
    }

    pub fn config(&self) -> &LocalModelConfig {
        &self.cfg
    }

    /// Loading, ready, or failed with the reason.
    pub fn load_state(&self) -> LoadState {
        self.state.borrow().clone()
    }

    pub fn is_ready(&self) -> bool {
        matches!(*self.state.borrow(), LoadState::Ready)
    }

    /// Waits until the model is loaded, or returns why it could not be.
    pub async fn wait_ready(&self) -> Result<(), EngineError> {
        let mut rx = self.state.clone();
        loop {
            let now = rx.borrow_and_update().clone();
            match now {
                LoadState::Ready => return Ok(()),
                LoadState::Failed(e) => return Err(e),
                LoadState::Loading => {}
            }
            if rx.changed().await.is_err() {
                return Err(EngineError::Stopped {
                    id: self.cfg.id.clone(),
                });
            }
        }
    }

    /// The engine's live state.
    pub fn stats(&self) -> EngineStats {
        let mut s = match self.shared.stats.lock() {
            Ok(s) => s.clone(),
            Err(p) => p.into_inner().clone(),
        };
        s.queued = self.shared.queued.load(Ordering::Relaxed);
        s
    }

    /// The templated prompt for `messages`, exactly as it will be tokenized.
    pub fn render_prompt(&self, req: &ChatRequest) -> Result<String, ProviderError> {
        let loaded = self.loaded()?;
        self.check_tools(req)?;
        Ok(prompt(loaded, req)?.0)
    }

    fn check_tools(&self, req: &ChatRequest) -> Result<(), ProviderError> {
        // Dispatch never sends such a request here (the engine then says it
        // has no `tools` capability); refusing it keeps a tool call from
        // being rendered as plain text if that ever changes.
        if req.needs_tools() && !self.cfg.tools {
            return Err(ProviderError::bad_request(
                format!(
                    "target \"{}\" (local engine) is configured with tools: false",
                    self.cfg.id
                ),
                Some("tools"),
            ));
        }
        Ok(())
    }

    /// Tokenizes `text` the way prompts are tokenized (special tokens parsed,
    /// BOS added where the model wants it).
    pub fn tokenize(&self, text: &str) -> Result<Vec<i32>, ProviderError> {
        let loaded = self.loaded()?;
        Ok(tokenize(&loaded.model, text)
            .into_iter()
            .map(|t| t.0)
            .collect())
    }

    fn loaded(&self) -> Result<&Loaded, ProviderError> {
        if let Some(l) = self.shared.loaded.get() {
            if self.is_ready() {
                return Ok(l);
            }
        }
        match &*self.state.borrow() {
            // Not an upstream fault: the cause is our own model file, and
            // the client is told which one (a remote target's errors are
            // hidden from clients, see `ProviderError::public_message`).
            LoadState::Failed(e) => Err(ProviderError::Overloaded {
                message: format!("local model \"{}\" cannot serve: {e}", self.cfg.id),
                retry_after_s: None,
            }),
            _ => Err(ProviderError::Overloaded {
                message: format!("local model \"{}\" is still loading", self.cfg.id),
                retry_after_s: Some(1),
            }),
        }
    }

    /// Queues `req` as `choices` jobs, decoded side by side as sequences of
    /// their own, and returns their streams in choice order: text as
    /// generated, or, when the answer is held to tool calls, the calls read
    /// from it at the end. Choice `i` samples with `seed + i`, so seeded
    /// choices differ and are each reproducible; each is held to the grammar.
    fn submit(&self, req: &ChatRequest, choices: u32) -> Result<Vec<ChatStream>, ProviderError> {
        self.check_tools(req)?;
        choices::check(req, choices, &self.cfg)?;
        // No image is ever dropped into a text-only prompt: the engine has
        // no `vision`, and says so if one reaches it.
        if let Some(img) = req.messages.iter().flat_map(|m| m.images()).next() {
            return Err(ProviderError::bad_request(
                format!(
                    "target \"{}\" (local engine) cannot read images",
                    self.cfg.id
                ),
                Some(&img.field),
            ));
        }
        let loaded = self.loaded()?;
        let (prompt_text, plan) = prompt(loaded, req)?;
        let prompt = tokenize(&loaded.model, &prompt_text);
        let ctx = self.cfg.context_tokens;
        let n_prompt = u32::try_from(prompt.len()).unwrap_or(u32::MAX);
        if n_prompt == 0 {
            return Err(ProviderError::bad_request(
                "the prompt is empty",
                Some("messages"),
            ));
        }
        let max_tokens = match req.max_tokens {
            Some(0) => {
                return Err(ProviderError::bad_request(
                    "max_tokens must be at least 1",
                    Some("max_tokens"),
                ))
            }
            Some(m) => {
                if u64::from(n_prompt) + u64::from(m) > u64::from(ctx) {
                    return Err(ProviderError::bad_request(
                        format!(
                            "prompt has {n_prompt} tokens and max_tokens is {m}, but the context holds {ctx}"
                        ),
                        Some("max_tokens"),
                    ));
                }
                m
            }
            None => {
                if n_prompt >= ctx {
                    return Err(ProviderError::bad_request(
                        format!("prompt has {n_prompt} tokens, but the context holds {ctx}"),
                        Some("messages"),
                    ));
                }
                ctx - n_prompt
            }
        };
        let grammar = match &plan {
            Some(p) => Some(p.grammar()?),
            None => grammar::for_format(req.response_format.as_ref())?,
        };
        let mut samplers = Vec::with_capacity(choices as usize);
        for i in 0..choices {
            let sampler = build_sampler(&loaded.model, req, i)?;
            let grammar = grammar
                .as_ref()
                .map(|g| grammar_sampler(&loaded.model, g))
                .transpose()?;
            samplers.push((sampler, grammar));
        }
        // A request for n choices takes n places of `parallel + queue`, all
        // at once or none.
        let capacity = self.cfg.parallel as usize + self.cfg.queue as usize;
        let n = choices as usize;
        if self.shared.in_flight.fetch_add(n, Ordering::AcqRel) + n > capacity {
            self.shared.in_flight.fetch_sub(n, Ordering::AcqRel);
            return Err(self.busy());
        }
        let permits: Vec<Permit> = (0..n).map(|_| Permit(Arc::clone(&self.shared))).collect();
        let mut streams = Vec::with_capacity(n);
        for ((sampler, grammar), permit) in samplers.into_iter().zip(permits) {
            let (tx, rx) = tmpsc::unbounded_channel();
            let job = Job {
                prompt: prompt.clone(),
                max_tokens,
                stops: req.stop.clone(),
                sampler,
                grammar,
                top_logprobs: req
                    .options
                    .logprobs
                    .then(|| req.options.top_logprobs.unwrap_or(0)),
                tx,
                enqueued: Instant::now(),
                _permit: permit,
            };
            // A choice sent before a later one fails is cancelled when its
            // stream, dropped with this error, closes its channel.
            self.send(job)?;
            let stream: ChatStream = Box::pin(UnboundedReceiverStream::new(rx));
            streams.push(match &plan {
                Some(p) => tools::read_calls(stream, p.format),
                None => stream,
            });
        }
        Ok(streams)
    }

    /// Hands `job` to the engine thread, or says why it cannot take it.
    fn send(&self, job: Job) -> Result<(), ProviderError> {
        self.shared.queued.fetch_add(1, Ordering::Relaxed);
        let sent = match self.jobs.lock() {
            Ok(jobs) => match jobs.as_ref() {
                Some(tx) => tx.try_send(job),
                None => Err(TrySendError::Disconnected(job)),
            },
            Err(_) => Err(TrySendError::Disconnected(job)),
        };
        match sent {
            Ok(()) => Ok(()),
            Err(TrySendError::Full(_)) => {
                self.shared.queued.fetch_sub(1, Ordering::Relaxed);
                Err(self.busy())
            }
            Err(TrySendError::Disconnected(_)) => {
                self.shared.queued.fetch_sub(1, Ordering::Relaxed);
                Err(ProviderError::Internal(format!(
                    "the engine thread for \"{}\" stopped",
                    self.cfg.id
                )))
            }
        }
    }
}

/// The embedding thread's answer, and the request's input tokens.
type EmbedWait = (
    tokio::sync::oneshot::Receiver<crate::embed::EmbedResult>,
    u32,
);

impl LocalEngine {
    fn submit_embeddings(&self, req: &ChatRequest) -> Result<EmbedWait, ProviderError> {
        use watershed_providers::EmbeddingInput;
        if !self.cfg.embeddings {
            return Err(ProviderError::bad_request(
                format!("target \"{}\" does not serve embeddings", self.cfg.id),
                Some("model"),
            ));
        }
        let Some(params) = &req.embedding else {
            return Err(ProviderError::bad_request(
                "input is missing",
                Some("input"),
            ));
        };
        if params.dimensions.is_some() {
            return Err(ProviderError::bad_request(
                format!(
                    "target \"{}\" (local engine) gives vectors of its model's own size; dimensions is not supported",
                    self.cfg.id
                ),
                Some("dimensions"),
            ));
        }
        let loaded = self.loaded()?;
        let n_vocab = u32::try_from(loaded.model.n_vocab()).unwrap_or(0);
        let ctx = self.cfg.context_tokens as usize;
        let mut inputs = Vec::with_capacity(params.inputs.len());
        let mut total = 0u32;
        for (i, input) in params.inputs.iter().enumerate() {
            let tokens = match input {
                EmbeddingInput::Text(t) => loaded.model.vocab().tokenize(t.as_bytes(), true, false),
                EmbeddingInput::Tokens(ids) => {
                    if let Some(bad) = ids.iter().find(|t| **t >= n_vocab) {
                        return Err(ProviderError::bad_request(
                            format!("input[{i}] holds token id {bad}, outside this model's vocabulary of {n_vocab}"),
                            Some("input"),
                        ));
                    }
                    ids.iter()
                        .map(|t| LlamaToken(i32::try_from(*t).unwrap_or(0)))
                        .collect()
                }
            };
            if tokens.is_empty() {
                return Err(ProviderError::bad_request(
                    format!("input[{i}] has no tokens"),
                    Some("input"),
                ));
            }
            if tokens.len() > ctx {
                return Err(ProviderError::bad_request(
                    format!(
                        "input[{i}] has {} tokens, over the model's context of {ctx}",
                        tokens.len()
                    ),
                    Some("input"),
                ));
            }
            total = total.saturating_add(u32::try_from(tokens.len()).unwrap_or(u32::MAX));
            inputs.push(tokens);
        }
        let (tx, rx) = tokio::sync::oneshot::channel();
        let job = crate::embed::EmbedJob { inputs, tx };
        let mut guard = self
            .embedder
            .lock()
            .map_err(|_| ProviderError::Internal("embedding lock poisoned".to_owned()))?;
        if guard.is_none() {
            // Not started after shutdown: the jobs sender is gone then.
            let running = self.jobs.lock().map(|j| j.is_some()).unwrap_or(false);
            if !running {
                return Err(ProviderError::Internal(format!(
                    "the engine for \"{}\" is shut down",
                    self.cfg.id
                )));
            }
            let e = crate::embed::Embedder::start(&self.cfg, Arc::clone(&loaded.model))
                .map_err(ProviderError::Internal)?;
            *guard = Some(e);
        }
        let sent = match guard.as_ref() {
            Some(e) => e.submit(job),
            None => Err(TrySendError::Disconnected(job)),
        };
        match sent {
            Ok(()) => Ok((rx, total)),
            Err(TrySendError::Full(_)) => Err(ProviderError::Overloaded {
                message: format!(
                    "local model \"{}\" is busy: {} embeddings requests are waiting",
                    self.cfg.id, self.cfg.queue
                ),
                retry_after_s: Some(1),
            }),
            Err(TrySendError::Disconnected(_)) => Err(ProviderError::Internal(format!(
                "the embedding thread for \"{}\" stopped",
                self.cfg.id
            ))),
        }
    }
}

/// Whether the local engine honours option `field`: `seed`, the two
/// penalties (llama.cpp's penalties sampler), `logit_bias` (token ids of
/// the model's vocabulary) and `logprobs` / `top_logprobs` (a log-softmax
/// over the logits each token was drawn from), and `n` (that many sequences
/// decoded side by side, up to `parallel`).
pub fn sends_option(field: &str) -> bool {
    matches!(
        field,
        "seed"
            | "frequency_penalty"
            | "presence_penalty"
            | "logit_bias"
            | "logprobs"
            | "top_logprobs"
            | "n"
    )
}

#[async_trait]
impl Provider for LocalEngine {
    fn sends_option(&self, field: &str) -> bool {
        sends_option(field)
    }

    fn capabilities(&self) -> Capabilities {
        if let Some(l) = self.shared.loaded.get() {
            return l.capabilities.clone();
        }
        Capabilities {
            kind: BackendKind::Local,
            upstream_model: self.stem.clone(),
            streaming: true,
            json_mode: true,
            tools: self.cfg.tools,
            embeddings: self.cfg.embeddings,
            embedding_dimensions: false,
            vision: false,
            context_tokens: Some(self.cfg.context_tokens),
            details: BTreeMap::new(),
        }
    }

    async fn chat(&self, req: &ChatRequest) -> Result<ChatResponse, ProviderError> {
        let streams = self.submit(req, req.options.n.unwrap_or(1))?;
        let id = self.cfg.id.as_str();
        let answers = futures::future::try_join_all(
            streams.into_iter().map(|s| choices::collect(s, req, id)),
        )
        .await?;
        choices::merge_choices(answers).ok_or_else(|| {
            ProviderError::Internal(format!("the engine for \"{}\" gave no choice", self.cfg.id))
        })
    }

    /// One choice only: a stream carries no choice index.
    async fn chat_stream(&self, req: &ChatRequest) -> Result<ChatStream, ProviderError> {
        if let Some(n) = req.options.n.filter(|n| *n > 1) {
            return Err(ProviderError::bad_request(
                format!("\"n\": {n} is not supported with \"stream\": true"),
                Some("n"),
            ));
        }
        let mut streams = self.submit(req, 1)?;
        streams.pop().ok_or_else(|| {
            ProviderError::Internal(format!("the engine for \"{}\" gave no stream", self.cfg.id))
        })
    }

    /// Mean-pooled, L2-normalised vectors from the loaded model, one input
    /// at a time on the embedding thread. Text is tokenized with the model's
    /// vocabulary (special tokens read as text); token arrays are taken as
    /// this model's ids.
    async fn embed(&self, req: &ChatRequest) -> Result<Embeddings, ProviderError> {
        let rx = self.submit_embeddings(req)?;
        let (vectors, seconds) = rx.0.await.map_err(|_| {
            ProviderError::Internal(format!(
                "the embedding thread for \"{}\" stopped",
                self.cfg.id
            ))
        })??;
        Ok(Embeddings {
            model: self.capabilities().upstream_model,
            vectors,
            prompt_tokens: rx.1,
            engine_seconds: Some(seconds),
        })
    }

    /// Exact: the prompt rendered with the GGUF's chat template and tokenized
    /// with its own vocabulary, as a request would be.
    async fn count_tokens(&self, req: &ChatRequest) -> Result<Option<u32>, ProviderError> {
        let prompt = self.render_prompt(req)?;
        let n = self.tokenize(&prompt)?.len();
        Ok(Some(u32::try_from(n).unwrap_or(u32::MAX)))
    }
}

pub(crate) fn file_stem(path: &Path) -> String {
    path.file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| path.display().to_string())
}

/// The prompt for `req` and, when its answer is held to tool calls, the plan
/// for them. A request without tools goes through llama.cpp's own template
/// engine as before; one with tools (or earlier calls) through the
/// template's own Jinja source where it can express tools, else through the
/// generic format (see `tools`).
fn prompt(
    loaded: &Loaded,
    req: &ChatRequest,
) -> Result<(String, Option<tools::Plan>), ProviderError> {
    if req.messages.is_empty() {
        return Err(ProviderError::bad_request(
            "messages must not be empty",
            Some("messages"),
        ));
    }
    if !req.needs_tools() {
        let turns: Vec<(String, String)> = req
            .messages
            .iter()
            .map(|m| (m.role.as_str().to_owned(), m.content.clone()))
            .collect();
        return Ok((render(&loaded.model, &loaded.template, &turns)?, None));
    }
    let format = tools::Format::of_template(&loaded.template_source);
    let mut plan = tools::plan(req, format)?;
    if format == tools::Format::Hermes {
        let vocab = loaded.model.vocab();
        let text = |t: LlamaToken| {
            vocab
                .text(t)
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_default()
        };
        // The tokenizer adds BOS itself where the model wants one.
        let bos = if vocab.should_add_bos() {
            String::new()
        } else {
            text(vocab.bos())
        };
        match tools::render_native(
            &loaded.template_source,
            req,
            plan.as_ref(),
            &bos,
            &text(vocab.eos()),
        ) {
            Ok(p) => return Ok((p, plan)),
            Err(e) => {
                tracing::warn!(error = %e, "the model's chat template cannot render tools; using the generic format");
                if let Some(p) = plan.as_mut() {
                    p.format = tools::Format::Generic;
                }
            }
        }
    }
    let turns = tools::generic_turns(req, plan.as_ref());
    Ok((render(&loaded.model, &loaded.template, &turns)?, plan))
}

fn render(
    model: &LlamaModel,
    template: &LlamaChatTemplate,
    turns: &[(String, String)],
) -> Result<String, ProviderError> {
    let mut chat = Vec::with_capacity(turns.len());
    for (i, (role, content)) in turns.iter().enumerate() {
        let msg = LlamaChatMessage::new(role.clone(), content.clone()).map_err(|_| {
            ProviderError::bad_request(
                format!("messages[{i}].content contains a NUL character"),
                Some("messages"),
            )
        })?;
        chat.push(msg);
    }
    model
        .apply_chat_template(template, &chat, true)
        .map_err(|e| ProviderError::Internal(format!("cannot apply the chat template: {e}")))
}

fn tokenize(model: &LlamaModel, text: &str) -> Vec<LlamaToken> {
    model.vocab().tokenize(text.as_bytes(), true, true)
}

/// How many of the latest tokens `frequency_penalty` and `presence_penalty`
/// count (llama.cpp's `penalty_last_n`): more than any answer the engine's
/// context leaves room for in practice.
const PENALTY_LAST_N: i32 = 4096;

/// `logit_bias` as llama.cpp takes it: each key a token id of this model's
/// vocabulary, each bias added to that token's logit (OpenAI's meaning).
fn logit_biases(
    n_vocab: i32,
    biases: &BTreeMap<String, f32>,
) -> Result<Vec<LlamaLogitBias>, ProviderError> {
    biases
        .iter()
        .map(|(k, bias)| {
            let id = k
                .parse::<i32>()
                .ok()
                .filter(|id| (0..n_vocab).contains(id))
                .ok_or_else(|| {
                    ProviderError::bad_request(
                        format!(
                            "\"logit_bias\" key {k:?} is not a token id of this model (0 to {})",
                            n_vocab - 1
                        ),
                        Some("logit_bias"),
                    )
                })?;
            Ok(LlamaLogitBias::new(LlamaToken::new(id), *bias))
        })
        .collect()
}

fn grammar_sampler(model: &LlamaModel, g: &Grammar) -> Result<LlamaSampler, ProviderError> {
    match &g.trigger {
        None => LlamaSampler::grammar(model, &g.gbnf, "root"),
        Some(t) => LlamaSampler::grammar_lazy(model, &g.gbnf, "root", [t.as_bytes()], &[]),
    }
    .map_err(|e| {
        ProviderError::bad_request(
            format!("{} gives a grammar llama.cpp rejects: {e}", g.field),
            Some(g.field),
        )
    })
}

/// The sampler chain of choice `choice`: seeded with `seed + choice`.
fn build_sampler(
    model: &LlamaModel,
    req: &ChatRequest,
    choice: u32,
) -> Result<LlamaSampler, ProviderError> {
    let temperature = req.temperature.unwrap_or(1.0);
    if !temperature.is_finite() || temperature < 0.0 {
        return Err(ProviderError::bad_request(
            format!("temperature must be 0 or more, got {temperature}"),
            Some("temperature"),
        ));
    }
    let top_p = req.top_p.unwrap_or(1.0);
    if !(top_p > 0.0 && top_p <= 1.0) {
        return Err(ProviderError::bad_request(
            format!("top_p must be in (0, 1], got {top_p}"),
            Some("top_p"),
        ));
    }
    let mut chain = Vec::new();
    // Biases and penalties change the logits, so they come before the
    // samplers that pick from them (the grammar, if any, is applied apart).
    if !req.options.logit_bias.is_empty() {
        chain.push(LlamaSampler::logit_bias(
            model.n_vocab(),
            &logit_biases(model.n_vocab(), &req.options.logit_bias)?,
        ));
    }
    let frequency = req.options.frequency_penalty.unwrap_or(0.0);
    let presence = req.options.presence_penalty.unwrap_or(0.0);
    if frequency != 0.0 || presence != 0.0 {
        chain.push(LlamaSampler::penalties(
            model.n_vocab(),
            PENALTY_LAST_N,
            1.0,
            frequency,
            presence,
        ));
    }
    if temperature == 0.0 {
        chain.push(LlamaSampler::greedy());
    } else {
        if top_p < 1.0 {
            chain.push(LlamaSampler::top_p(top_p, 1));
        }
        chain.push(LlamaSampler::temp(temperature));
        // llama.cpp picks a random seed for u32::MAX (LLAMA_DEFAULT_SEED).
        let seed = req
            .seed
            .map(|s| (((s ^ (s >> 32)) as u32).wrapping_add(choice)).min(u32::MAX - 1))
            .unwrap_or(u32::MAX);
        chain.push(LlamaSampler::dist(seed));
    }
    Ok(LlamaSampler::chain_simple(chain))
}
