//! Embeddings on the local engine: a second llama.cpp context over the same
//! loaded model, with embeddings on and mean pooling, owned by its own OS
//! thread (started on the first embeddings request) so pooling never runs on
//! the async runtime and never holds up the generation scheduler's batches.
//! Vectors are L2-normalised, as OpenAI's are.

use std::num::NonZeroU32;
use std::sync::mpsc::{self, Receiver, SyncSender, TrySendError};
use std::sync::Arc;
use std::time::Instant;

use llama_cpp_2::context::params::{LlamaContextParams, LlamaPoolingType};
use llama_cpp_2::llama_batch::LlamaBatch;
use llama_cpp_2::model::LlamaModel;
use llama_cpp_2::token::LlamaToken;
use tokio::sync::oneshot;
use tracing::{error, info};
use watershed_providers::ProviderError;

use crate::LocalModelConfig;

/// What the embedding thread answers: one vector per input and the engine
/// seconds they took, or why it could not.
pub(crate) type EmbedResult = Result<(Vec<Vec<f32>>, f64), ProviderError>;

/// One embeddings request on its way to the embedding thread: each input's
/// tokens, already checked against the context and the vocabulary.
pub(crate) struct EmbedJob {
    pub inputs: Vec<Vec<LlamaToken>>,
    pub tx: oneshot::Sender<EmbedResult>,
}

/// The embedding thread and the bounded queue in front of it.
pub(crate) struct Embedder {
    pub jobs: SyncSender<EmbedJob>,
    pub thread: std::thread::JoinHandle<()>,
}

impl Embedder {
    /// Starts the thread; at most `cfg.queue` requests wait for it.
    pub fn start(cfg: &LocalModelConfig, model: Arc<LlamaModel>) -> Result<Embedder, String> {
        let (jobs, rx) = mpsc::sync_channel(cfg.queue.max(1) as usize);
        let cfg = cfg.clone();
        let thread = std::thread::Builder::new()
            .name(format!("embed-{}", cfg.id))
            .spawn(move || run(&cfg, &model, &rx))
            .map_err(|e| format!("cannot start the embedding thread: {e}"))?;
        Ok(Embedder { jobs, thread })
    }

    /// Queues a job, or hands it back when the queue is full or the thread gone.
    pub fn submit(&self, job: EmbedJob) -> Result<(), TrySendError<EmbedJob>> {
        self.jobs.try_send(job)
    }
}

fn params(cfg: &LocalModelConfig) -> LlamaContextParams {
    let threads = cfg.threads.map_or_else(
        || {
            std::thread::available_parallelism()
                .map(usize::from)
                .unwrap_or(4)
        },
        |t| t as usize,
    );
    let threads = i32::try_from(threads.max(1)).unwrap_or(4);
    // Pooling needs a whole input in one micro-batch: one sequence of up to
    // `context_tokens` tokens at a time.
    LlamaContextParams::default()
        .with_n_ctx(NonZeroU32::new(cfg.context_tokens))
        .with_n_batch(cfg.context_tokens)
        .with_n_ubatch(cfg.context_tokens)
        .with_n_seq_max(1)
        .with_embeddings(true)
        .with_pooling_type(LlamaPoolingType::Mean)
        .with_n_threads(threads)
        .with_n_threads_batch(threads)
}

fn run(cfg: &LocalModelConfig, model: &LlamaModel, jobs: &Receiver<EmbedJob>) {
    let backend = match crate::scheduler::backend() {
        Ok(b) => b,
        Err(e) => return refuse_all(jobs, &format!("llama.cpp backend: {e}")),
    };
    let mut ctx = match model.new_context(backend, params(cfg)) {
        Ok(c) => c,
        Err(e) => {
            error!(model = %cfg.id, error = %e, "embedding context failed");
            return refuse_all(jobs, &format!("cannot create the embedding context: {e}"));
        }
    };
    info!(model = %cfg.id, context_tokens = cfg.context_tokens, "embedding context ready");
    while let Ok(job) = jobs.recv() {
        let started = Instant::now();
        let mut out = Vec::with_capacity(job.inputs.len());
        let mut failed = None;
        for (i, tokens) in job.inputs.iter().enumerate() {
            // The caller went away: stop between inputs.
            if job.tx.is_closed() {
                break;
            }
            match embed_one(&mut ctx, tokens) {
                Ok(v) => out.push(v),
                Err(e) => {
                    failed = Some(ProviderError::Internal(format!(
                        "local embedding of input[{i}] failed: {e}"
                    )));
                    break;
                }
            }
        }
        let result = match failed {
            Some(e) => Err(e),
            None => Ok((out, started.elapsed().as_secs_f64())),
        };
        let _ = job.tx.send(result);
    }
    info!(model = %cfg.id, "embedding thread stopped");
}

fn embed_one(
    ctx: &mut llama_cpp_2::context::LlamaContext<'_>,
    tokens: &[LlamaToken],
) -> Result<Vec<f32>, String> {
    ctx.clear_kv_cache();
    let mut batch = LlamaBatch::new(tokens.len(), 1);
    for (pos, t) in tokens.iter().enumerate() {
        let pos = i32::try_from(pos).map_err(|_| "input too long".to_owned())?;
        batch.add(*t, pos, &[0], true).map_err(|e| e.to_string())?;
    }
    ctx.decode(&mut batch).map_err(|e| e.to_string())?;
    let v = ctx
        .embeddings_seq_ith(0)
        .map_err(|e| format!("no pooled embedding: {e}"))?;
    Ok(normalized(v))
}

/// `v / |v|` (a zero vector stays zero).
pub(crate) fn normalized(v: &[f32]) -> Vec<f32> {
    let norm = v
        .iter()
        .map(|x| f64::from(*x) * f64::from(*x))
        .sum::<f64>()
        .sqrt();
    if norm == 0.0 {
        return v.to_vec();
    }
    v.iter().map(|x| (f64::from(*x) / norm) as f32).collect()
}

fn refuse_all(jobs: &Receiver<EmbedJob>, why: &str) {
    while let Ok(job) = jobs.recv() {
        let _ = job.tx.send(Err(ProviderError::Internal(why.to_owned())));
    }
}

#[cfg(test)]
mod tests {
    use super::normalized;

    #[test]
    fn vectors_come_out_with_unit_length() {
        let v = normalized(&[3.0, 4.0]);
        assert!((v[0] - 0.6).abs() < 1e-6 && (v[1] - 0.8).abs() < 1e-6);
        assert_eq!(normalized(&[0.0, 0.0]), vec![0.0, 0.0]);
    }
}
