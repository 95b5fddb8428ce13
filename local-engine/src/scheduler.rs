//! The engine thread: it owns the llama.cpp model and context (a context is not
//! `Send`, and decoding must not run on the async runtime) and serves up to
//! `parallel` sequences at once with continuous batching. Every step builds one
//! batch holding the next token of each decoding sequence plus prompt chunks of
//! sequences still prefilling, decodes it, and samples each sequence's next
//! token. New requests join between steps; finished ones leave. A finished
//! sequence keeps its KV cells as a prefix cache for the next request that
//! shares its prompt prefix; a cancelled one frees them. A job whose prompt
//! a running sequence is still prefilling (the choices of an `n > 1`
//! request) waits for it and then copies its KV cells.

use std::sync::atomic::Ordering;
use std::sync::mpsc::{Receiver, TryRecvError};
use std::sync::{Arc, OnceLock};
use std::time::Instant;

use llama_cpp_2::context::LlamaContext;
use llama_cpp_2::llama_backend::LlamaBackend;
use llama_cpp_2::llama_batch::LlamaBatch;
use llama_cpp_2::model::LlamaModel;
use llama_cpp_2::sampling::LlamaSampler;
use llama_cpp_2::token::data::LlamaTokenData;
use llama_cpp_2::token::data_array::LlamaTokenDataArray;
use llama_cpp_2::token::LlamaToken;
use llama_cpp_2::{DecodeError, LogOptions};
use tokio::sync::watch;
use tracing::{debug, error, info, warn};
use watershed_providers::{Completion, FinishReason, ProviderError, StreamEvent, Usage};

use crate::engine::{EngineStats, Job, LoadState, Shared, SlotStats};
use crate::load::{describe, load_model, new_context};
use crate::text::OutputFilter;
use crate::LocalModelConfig;

/// Tokens per decode call. A prompt longer than what is left of this after the
/// decoding sequences' tokens is prefilled over several steps, so a long prompt
/// delays the others by at most one such chunk per step.
pub(crate) const BATCH: usize = 512;

/// llama.cpp's backend may be initialised once per process.
pub(crate) fn backend() -> Result<&'static LlamaBackend, String> {
    static BACKEND: OnceLock<Result<LlamaBackend, String>> = OnceLock::new();
    BACKEND
        .get_or_init(|| {
            llama_cpp_2::send_logs_to_tracing(LogOptions::default());
            LlamaBackend::init().map_err(|e| e.to_string())
        })
        .as_ref()
        .map_err(Clone::clone)
}

/// Entry point of the engine thread.
pub(crate) fn run(
    cfg: LocalModelConfig,
    shared: Arc<Shared>,
    jobs: Receiver<Job>,
    state: watch::Sender<LoadState>,
) {
    let started = Instant::now();
    let (file, model, backend) = match load_model(&cfg) {
        Ok(m) => m,
        Err(e) => {
            error!(model = %cfg.id, error = %e, "local model failed to load");
            state.send_replace(LoadState::Failed(e));
            return;
        }
    };
    let ctx = match new_context(&cfg, &model, backend) {
        Ok(c) => c,
        Err(e) => {
            error!(model = %cfg.id, error = %e, "local model failed to load");
            state.send_replace(LoadState::Failed(e));
            return;
        }
    };
    let loaded = match describe(&cfg, &file, &model) {
        Ok(l) => l,
        Err(e) => {
            state.send_replace(LoadState::Failed(e));
            return;
        }
    };
    let upstream = loaded.capabilities.upstream_model.clone();
    // `start` created this lock empty and only this thread sets it.
    let _ = shared.loaded.set(loaded);
    info!(
        model = %cfg.id,
        upstream = %upstream,
        seconds = started.elapsed().as_secs_f64(),
        context_tokens = cfg.context_tokens,
        parallel = cfg.parallel,
        "local model ready"
    );
    let mut sched = Scheduler::new(&cfg, &model, ctx, &shared, upstream);
    sched.publish();
    state.send_replace(LoadState::Ready);
    sched.serve(&jobs);
    info!(model = %cfg.id, "engine thread stopped");
}

/// A request being served in one sequence.
struct Active {
    job: Job,
    filter: OutputFilter,
    /// Next prompt position to prefill; equals the prompt length once prefilled.
    prefilled: usize,
    cached_prompt: usize,
    /// Sampled but not yet decoded.
    next: Option<LlamaToken>,
    generated: u32,
    engine_seconds: f64,
    /// Admission order, for fair prefill.
    order: u64,
}

/// One llama.cpp sequence id and what its KV cells hold.
struct Slot {
    seq: i32,
    /// Tokens whose KV cells this sequence holds, positions 0..len.
    cached: Vec<LlamaToken>,
    last_used: u64,
    active: Option<Active>,
}

struct Scheduler<'m> {
    id: String,
    upstream: String,
    model: &'m LlamaModel,
    ctx: LlamaContext<'m>,
    shared: &'m Shared,
    slots: Vec<Slot>,
    batch: LlamaBatch<'static>,
    clock: u64,
    steps: u64,
    batched_tokens: u64,
    closed: bool,
    /// Jobs taken from the queue whose prompt a running sequence is still
    /// prefilling (the choices of one `n > 1` request): they start when it
    /// is done, copying its KV cells instead of decoding the prompt again.
    deferred: Vec<Job>,
}

/// What one sequence put into the current batch.
struct Entry {
    slot: usize,
    start: usize,
    n: usize,
    /// Batch index of the token whose logits are sampled, if any.
    logits: Option<i32>,
}

fn common_prefix(a: &[LlamaToken], b: &[LlamaToken]) -> usize {
    a.iter().zip(b).take_while(|(x, y)| x == y).count()
}

impl<'m> Scheduler<'m> {
    fn new(
        cfg: &LocalModelConfig,
        model: &'m LlamaModel,
        ctx: LlamaContext<'m>,
        shared: &'m Shared,
        upstream: String,
    ) -> Self {
        let slots = (0..cfg.parallel as i32)
            .map(|seq| Slot {
                seq,
                cached: Vec::new(),
                last_used: 0,
                active: None,
            })
            .collect();
        Self {
            id: cfg.id.clone(),
            upstream,
            model,
            ctx,
            shared,
            slots,
            batch: LlamaBatch::new(BATCH, 1),
            clock: 0,
            steps: 0,
            batched_tokens: 0,
            closed: false,
            deferred: Vec::new(),
        }
    }

    fn n_active(&self) -> usize {
        self.slots.iter().filter(|s| s.active.is_some()).count()
    }

    fn serve(&mut self, jobs: &Receiver<Job>) {
        loop {
            self.start_deferred();
            if !self.admit(jobs) {
                return;
            }
            self.drop_cancelled();
            if self.n_active() > 0 {
                self.step();
            }
            self.publish();
        }
    }

    /// Takes queued jobs while a sequence is free. Blocks when nothing runs.
    /// Returns false when the engine is dropped and all work is done.
    fn admit(&mut self, jobs: &Receiver<Job>) -> bool {
        while self.free_slots() > self.deferred.len() {
            let job = if self.n_active() > 0 || self.closed || !self.deferred.is_empty() {
                match jobs.try_recv() {
                    Ok(j) => j,
                    Err(TryRecvError::Empty) => break,
                    Err(TryRecvError::Disconnected) => {
                        self.closed = true;
                        break;
                    }
                }
            } else {
                match jobs.recv() {
                    Ok(j) => j,
                    Err(_) => {
                        self.closed = true;
                        break;
                    }
                }
            };
            self.shared.queued.fetch_sub(1, Ordering::Relaxed);
            if job.tx.is_closed() {
                continue;
            }
            if self.prefilling(&job.prompt) {
                // Still waiting, as far as the stats tell.
                self.shared.queued.fetch_add(1, Ordering::Relaxed);
                self.deferred.push(job);
            } else {
                self.start(job);
            }
        }
        !(self.closed && self.n_active() == 0 && self.deferred.is_empty())
    }

    fn free_slots(&self) -> usize {
        self.slots.iter().filter(|s| s.active.is_none()).count()
    }

    /// Whether a running sequence is still prefilling exactly `prompt`.
    fn prefilling(&self, prompt: &[LlamaToken]) -> bool {
        self.slots.iter().any(|s| {
            s.active
                .as_ref()
                .is_some_and(|a| a.prefilled < a.job.prompt.len() && a.job.prompt == prompt)
        })
    }

    /// Starts the deferred jobs whose prompt is now in some sequence's KV
    /// cells (or whose prefilling sequence went away), while slots are free.
    fn start_deferred(&mut self) {
        let mut i = 0;
        while i < self.deferred.len() && self.free_slots() > 0 {
            if self.prefilling(&self.deferred[i].prompt) && !self.deferred[i].tx.is_closed() {
                i += 1;
                continue;
            }
            let job = self.deferred.swap_remove(i);
            self.shared.queued.fetch_sub(1, Ordering::Relaxed);
            if !job.tx.is_closed() {
                self.start(job);
            }
        }
    }

    /// Places a job in the free sequence that already holds most of its
    /// prompt, reusing cached KV cells; cells from another sequence with a
    /// longer common prefix are copied over (the whole stream, then its tail dropped).
    fn start(&mut self, job: Job) {
        let prompt = &job.prompt;
        // At least one prompt token is decoded so there are logits to sample from.
        let limit = prompt.len().saturating_sub(1);
        let Some(target) = self
            .slots
            .iter()
            .enumerate()
            .filter(|(_, s)| s.active.is_none())
            .max_by_key(|(_, s)| {
                (
                    common_prefix(&s.cached, prompt).min(limit),
                    std::cmp::Reverse(s.last_used),
                )
            })
            .map(|(i, _)| i)
        else {
            return;
        };
        let own = common_prefix(&self.slots[target].cached, prompt).min(limit);
        let (source, shared) = self
            .slots
            .iter()
            .enumerate()
            .map(|(i, s)| (i, common_prefix(&s.cached, prompt).min(limit)))
            .max_by_key(|&(i, n)| (n, i == target))
            .unwrap_or((target, own));
        let seq = self.slots[target].seq;
        let mut reuse = own;
        if source != target && shared > own {
            let src_seq = self.slots[source].seq;
            let _ = self.ctx.clear_kv_cache_seq(Some(seq as u32), None, None);
            // Each sequence has its own KV stream, and llama.cpp copies between
            // streams only whole: copy it all, then drop what is not shared.
            let copied = self.ctx.copy_kv_cache_seq(src_seq, seq, None, None).is_ok()
                && self
                    .ctx
                    .clear_kv_cache_seq(Some(seq as u32), Some(shared as u32), None)
                    .unwrap_or(false);
            if copied {
                reuse = shared;
            } else {
                let _ = self.ctx.clear_kv_cache_seq(Some(seq as u32), None, None);
                reuse = 0;
            }
        } else {
            let removed = self
                .ctx
                .clear_kv_cache_seq(Some(seq as u32), Some(own as u32), None)
                .unwrap_or(false);
            if !removed {
                let _ = self.ctx.clear_kv_cache_seq(Some(seq as u32), None, None);
                reuse = 0;
            }
        }
        let slot = &mut self.slots[target];
        slot.cached.clear();
        slot.cached.extend_from_slice(&prompt[..reuse]);
        self.clock += 1;
        debug!(
            model = %self.id,
            seq,
            prompt_tokens = prompt.len(),
            cached = reuse,
            waited_ms = job.enqueued.elapsed().as_millis() as u64,
            "sequence starts"
        );
        let filter = OutputFilter::new(&job.stops);
        slot.active = Some(Active {
            job,
            filter,
            prefilled: reuse,
            cached_prompt: reuse,
            next: None,
            generated: 0,
            engine_seconds: 0.0,
            order: self.clock,
        });
    }

    /// Sequences whose caller went away stop here and free their KV cells.
    fn drop_cancelled(&mut self) {
        for i in 0..self.slots.len() {
            let gone = self.slots[i]
                .active
                .as_ref()
                .is_some_and(|a| a.job.tx.is_closed());
            if gone {
                self.cancel(i);
            }
        }
    }

    fn cancel(&mut self, i: usize) {
        let seq = self.slots[i].seq;
        if let Some(a) = self.slots[i].active.take() {
            debug!(model = %self.id, seq, generated = a.generated, "sequence cancelled");
        }
        let _ = self.ctx.clear_kv_cache_seq(Some(seq as u32), None, None);
        self.slots[i].cached.clear();
        self.clock += 1;
        self.slots[i].last_used = self.clock;
    }

    fn step(&mut self) {
        self.batch.clear();
        let mut entries: Vec<Entry> = Vec::new();
        // Decoding sequences first: one token each.
        for (i, slot) in self.slots.iter().enumerate() {
            let Some(a) = &slot.active else { continue };
            let Some(tok) = a.next else { continue };
            let pos = slot.cached.len();
            if self.batch.add(tok, pos as i32, &[slot.seq], true).is_err() {
                break;
            }
            entries.push(Entry {
                slot: i,
                start: pos,
                n: 1,
                logits: Some(self.batch.n_tokens() - 1),
            });
        }
        // Then prompt chunks, oldest request first, in what room is left.
        let mut prefilling: Vec<(u64, usize)> = self
            .slots
            .iter()
            .enumerate()
            .filter_map(|(i, s)| {
                s.active
                    .as_ref()
                    .filter(|a| a.prefilled < a.job.prompt.len())
                    .map(|a| (a.order, i))
            })
            .collect();
        prefilling.sort_unstable();
        for (_, i) in prefilling {
            let room = BATCH.saturating_sub(self.batch.n_tokens() as usize);
            if room == 0 {
                break;
            }
            let slot = &self.slots[i];
            let Some(a) = &slot.active else { continue };
            let len = a.job.prompt.len();
            let take = room.min(len - a.prefilled);
            let mut logits = None;
            for pos in a.prefilled..a.prefilled + take {
                let last = pos + 1 == len;
                if self
                    .batch
                    .add(a.job.prompt[pos], pos as i32, &[slot.seq], last)
                    .is_err()
                {
                    break;
                }
                if last {
                    logits = Some(self.batch.n_tokens() - 1);
                }
            }
            entries.push(Entry {
                slot: i,
                start: a.prefilled,
                n: take,
                logits,
            });
        }
        let total = self.batch.n_tokens() as usize;
        if total == 0 {
            return;
        }
        let t0 = Instant::now();
        let result = self.ctx.decode(&mut self.batch);
        let wall = t0.elapsed().as_secs_f64();
        if let Err(e) = result {
            self.decode_failed(&entries, e);
            return;
        }
        self.steps += 1;
        self.batched_tokens += total as u64;
        // Commit what was decoded and charge each sequence its share of the step.
        for e in &entries {
            let slot = &mut self.slots[e.slot];
            let Some(a) = slot.active.as_mut() else {
                continue;
            };
            if let Some(tok) = a.next.take() {
                slot.cached.push(tok);
            } else {
                slot.cached
                    .extend_from_slice(&a.job.prompt[e.start..e.start + e.n]);
                a.prefilled = e.start + e.n;
            }
            a.engine_seconds += wall * e.n as f64 / total as f64;
        }
        for e in &entries {
            if let Some(idx) = e.logits {
                self.sample(e.slot, idx);
            }
        }
    }

    /// Samples the next token of the sequence in slot `i` from batch row `idx`.
    fn sample(&mut self, i: usize, idx: i32) {
        let t0 = Instant::now();
        let model = self.model;
        let Some(a) = self.slots[i].active.as_mut() else {
            return;
        };
        let vocab = model.vocab();
        let token = match a.job.grammar.as_mut() {
            None => a.job.sampler.sample(&self.ctx, idx),
            Some(g) => constrained(&self.ctx, idx, &mut a.job.sampler, g, vocab.eos()),
        };
        let logprobs = match a.job.top_logprobs {
            Some(k) if !vocab.is_eog(token) => Some(token_logprobs(
                self.ctx.get_logits_ith(idx),
                token,
                k,
                |t| vocab.token_to_piece(t, false, None),
            )),
            _ => None,
        };
        let mut finish = None;
        let mut stop_sequence = None;
        let mut out = String::new();
        if vocab.is_eog(token) {
            out.push_str(&a.filter.finish());
            finish = Some(FinishReason::Stop);
        } else {
            a.generated += 1;
            let piece = vocab.token_to_piece(token, false, None);
            let step = a.filter.push(&piece);
            out.push_str(&step.emit);
            if step.stopped {
                finish = Some(FinishReason::Stop);
                stop_sequence = step.stop_sequence;
            } else if a.generated >= a.job.max_tokens {
                out.push_str(&a.filter.finish());
                finish = Some(FinishReason::Length);
            } else {
                a.next = Some(token);
            }
        }
        a.engine_seconds += t0.elapsed().as_secs_f64();
        if !out.is_empty() && a.job.tx.send(Ok(StreamEvent::Delta(out))).is_err() {
            self.cancel(i);
            return;
        }
        if let Some(lp) = logprobs {
            if a.job.tx.send(Ok(StreamEvent::Logprobs(lp))).is_err() {
                self.cancel(i);
                return;
            }
        }
        if let Some(reason) = finish {
            self.finish(i, reason, stop_sequence);
        }
    }

    fn finish(&mut self, i: usize, reason: FinishReason, stop_sequence: Option<String>) {
        self.clock += 1;
        let slot = &mut self.slots[i];
        slot.last_used = self.clock;
        let Some(a) = slot.active.take() else { return };
        let done = Completion {
            model: self.upstream.clone(),
            finish_reason: reason,
            stop_sequence,
            usage: Usage {
                prompt_tokens: a.job.prompt.len() as u32,
                completion_tokens: a.generated,
                cached_prompt_tokens: a.cached_prompt as u32,
            },
            engine_seconds: Some(a.engine_seconds),
        };
        debug!(
            model = %self.id,
            seq = slot.seq,
            finish = reason.as_str(),
            prompt_tokens = done.usage.prompt_tokens,
            completion_tokens = done.usage.completion_tokens,
            engine_seconds = a.engine_seconds,
            "sequence finished"
        );
        // The cells stay as this sequence's prefix cache; the caller may be gone.
        let _ = a.job.tx.send(Ok(StreamEvent::Done(done)));
    }

    /// Undoes the batch's cells and decides who cannot go on.
    fn decode_failed(&mut self, entries: &[Entry], err: DecodeError) {
        for e in entries {
            let seq = self.slots[e.slot].seq;
            let _ = self
                .ctx
                .clear_kv_cache_seq(Some(seq as u32), Some(e.start as u32), None);
        }
        match err {
            DecodeError::NoKvCacheSlot => {
                // First give up prefix caches of idle sequences, then the newest request.
                let mut freed = false;
                for i in 0..self.slots.len() {
                    if self.slots[i].active.is_none() && !self.slots[i].cached.is_empty() {
                        let seq = self.slots[i].seq;
                        let _ = self.ctx.clear_kv_cache_seq(Some(seq as u32), None, None);
                        self.slots[i].cached.clear();
                        freed = true;
                    }
                }
                if freed {
                    warn!(model = %self.id, "KV cache full: dropped idle prefix caches");
                    return;
                }
                let newest = self
                    .slots
                    .iter()
                    .enumerate()
                    .filter_map(|(i, s)| s.active.as_ref().map(|a| (a.order, i)))
                    .max();
                if let Some((_, i)) = newest {
                    warn!(model = %self.id, seq = self.slots[i].seq, "KV cache full: rejecting the newest request");
                    self.fail(
                        i,
                        ProviderError::Overloaded {
                            message: format!(
                                "local model \"{}\" ran out of KV cache; retry later",
                                self.id
                            ),
                            retry_after_s: Some(1),
                        },
                    );
                }
            }
            other => {
                error!(model = %self.id, error = %other, "llama.cpp decode failed");
                for e in entries {
                    self.fail(
                        e.slot,
                        ProviderError::Internal(format!("llama.cpp decode failed: {other}")),
                    );
                }
            }
        }
    }

    fn fail(&mut self, i: usize, err: ProviderError) {
        if let Some(a) = self.slots[i].active.as_ref() {
            let _ = a.job.tx.send(Err(err));
        }
        self.cancel(i);
    }

    fn publish(&self) {
        let slots = self
            .slots
            .iter()
            .map(|s| SlotStats {
                seq: s.seq,
                state: match &s.active {
                    None => "idle",
                    Some(a) if a.prefilled < a.job.prompt.len() => "prefill",
                    Some(_) => "decode",
                },
                cached_tokens: s.cached.len(),
                kv_cells: usize::try_from(self.ctx.kv_cache_seq_pos_max(s.seq) + 1).unwrap_or(0),
            })
            .collect();
        let stats = EngineStats {
            ready: true,
            queued: 0,
            active: self.n_active(),
            steps: self.steps,
            batched_tokens: self.batched_tokens,
            slots,
        };
        match self.shared.stats.lock() {
            Ok(mut s) => *s = stats,
            Err(p) => *p.into_inner() = stats,
        }
    }
}

/// Samples under a grammar the way llama.cpp's common sampler does: the
/// token the other samplers pick is checked against the grammar alone, and
/// only when the grammar rejects it are the whole vocabulary's logits
/// constrained and the pick made again. Checking every token of a large
/// vocabulary against the grammar at each step is what makes constrained
/// output slow; most picks already fit. Both samplers then accept the token.
fn constrained(
    ctx: &LlamaContext<'_>,
    idx: i32,
    chain: &mut LlamaSampler,
    grammar: &mut LlamaSampler,
    eos: LlamaToken,
) -> LlamaToken {
    let mut cur = ctx.token_data_array_ith(idx);
    chain.apply(&mut cur);
    let fits = cur.selected_token().filter(|t| {
        let mut one = LlamaTokenDataArray::new(vec![LlamaTokenData::new(*t, 1.0, 0.0)], false);
        grammar.apply(&mut one);
        one.data.first().is_some_and(|d| d.logit().is_finite())
    });
    let token = fits.unwrap_or_else(|| {
        let mut cur = ctx.token_data_array_ith(idx);
        grammar.apply(&mut cur);
        chain.apply(&mut cur);
        cur.selected_token().unwrap_or(eos)
    });
    grammar.accept(token);
    chain.accept(token);
    token
}

/// One token's entry in OpenAI's `logprobs.content`: its log probability
/// under the logits it was drawn from (a log-softmax over the whole
/// vocabulary, before any sampler reshaped them), and the `k` likeliest
/// tokens with theirs, best first.
fn token_logprobs(
    logits: &[f32],
    token: LlamaToken,
    k: u8,
    piece: impl Fn(LlamaToken) -> Vec<u8>,
) -> serde_json::Value {
    let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let lse = max + logits.iter().map(|l| (l - max).exp()).sum::<f32>().ln();
    let entry = |t: LlamaToken| {
        let bytes = piece(t);
        let lp = logits
            .get(t.0 as usize)
            .map_or(f32::NEG_INFINITY, |l| l - lse);
        serde_json::json!({"token": String::from_utf8_lossy(&bytes), "logprob": lp, "bytes": bytes})
    };
    let mut top: Vec<usize> = (0..logits.len()).collect();
    let k = usize::from(k).min(top.len());
    if k > 0 {
        top.select_nth_unstable_by(k - 1, |a, b| logits[*b].total_cmp(&logits[*a]));
        top.truncate(k);
        top.sort_by(|a, b| logits[*b].total_cmp(&logits[*a]));
    } else {
        top.clear();
    }
    let mut e = entry(token);
    e["top_logprobs"] = top
        .into_iter()
        .map(|i| entry(LlamaToken::new(i as i32)))
        .collect();
    serde_json::json!({"content": [e], "refusal": null})
}
