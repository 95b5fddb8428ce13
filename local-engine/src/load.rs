//! Loading one local model for the engine thread: the GGUF read and checked,
//! the weights placed (configured GPU layers, or fitted to free GPU memory),
//! the llama.cpp context made for `parallel` sequences, and what the model
//! tells about itself (chat template, capabilities, metadata).

use std::ffi::CString;
use std::num::NonZeroU32;
use std::pin::{pin, Pin};
use std::sync::{Arc, Mutex};

use llama_cpp_2::context::params::LlamaContextParams;
use llama_cpp_2::context::LlamaContext;
use llama_cpp_2::llama_backend::LlamaBackend;
use llama_cpp_2::model::params::{LlamaModelParams, LlamaSplitMode};
use llama_cpp_2::model::{LlamaChatTemplate, LlamaModel};
use tracing::{info, warn};
use watershed_providers::{BackendKind, Capabilities};

use crate::engine::{file_stem, Loaded};
use crate::scheduler::{backend, BATCH};
use crate::{gguf, EngineError, LocalModelConfig};

type LoadedModel = (gguf::GgufFile, Arc<LlamaModel>, &'static LlamaBackend);

pub(crate) fn load_model(cfg: &LocalModelConfig) -> Result<LoadedModel, EngineError> {
    let path = &cfg.gguf;
    let file = gguf::read(path).map_err(|p| EngineError::ModelFile {
        path: path.clone(),
        reason: p.0,
    })?;
    let backend = backend().map_err(|reason| EngineError::Load {
        path: path.clone(),
        reason: format!("llama.cpp backend: {reason}"),
    })?;
    info!(
        model = %cfg.id,
        path = %path.display(),
        architecture = file.architecture().unwrap_or("unknown"),
        bytes = file.file_len,
        "loading local model"
    );
    let id = cfg.id.clone();
    let mut last_tenth = -1i32;
    let mut params = LlamaModelParams::default();
    if !cfg.fit_to_memory {
        params = params.with_n_gpu_layers(cfg.gpu_layers.unwrap_or(u32::MAX).min(i32::MAX as u32));
    }
    let mut params = params
        .with_main_gpu(i32::try_from(cfg.main_gpu).unwrap_or(0))
        .with_progress_callback(move |p| {
            let tenth = (p * 10.0).floor() as i32;
            if tenth > last_tenth {
                last_tenth = tenth;
                info!(model = %id, percent = tenth * 10, "loading local model");
            }
            true
        });
    if cfg.main_gpu > 0 {
        // llama.cpp only honours main_gpu when the model is not split across GPUs.
        params = params.with_split_mode(LlamaSplitMode::None);
    }
    let mut params = pin!(params);
    if cfg.fit_to_memory {
        fit(cfg, params.as_mut())?;
    } else if cfg.moe_experts_on_cpu {
        params.as_mut().add_cpu_moe_override();
    }
    let model =
        LlamaModel::load_from_file(backend, path, &params).map_err(|e| EngineError::Load {
            path: path.clone(),
            reason: format!(
                "{e} (the header is valid; the architecture may be unsupported by this llama.cpp \
             or a tensor may be missing or malformed; the llama.cpp log above has details)"
            ),
        })?;
    Ok((file, Arc::new(model), backend))
}

/// GPU memory left free for compute buffers and other processes when fitting.
const FIT_MARGIN_BYTES: usize = 1 << 30;

/// Lets llama.cpp choose the GPU layers and tensor placement that fit free GPU
/// memory for this model at the configured context (which it may not shrink).
fn fit(cfg: &LocalModelConfig, params: Pin<&mut LlamaModelParams>) -> Result<(), EngineError> {
    // llama.cpp's fitting swaps the global logger: one model at a time.
    static FITTING: Mutex<()> = Mutex::new(());
    let _guard = FITTING.lock().unwrap_or_else(|p| p.into_inner());
    let path = CString::new(cfg.gguf.as_os_str().as_encoded_bytes()).map_err(|_| {
        EngineError::ModelFile {
            path: cfg.gguf.clone(),
            reason: "the path contains a NUL byte".to_owned(),
        }
    })?;
    let mut cparams = context_params(cfg);
    let cells = cfg.context_tokens.saturating_mul(cfg.parallel);
    let mut margins = vec![FIT_MARGIN_BYTES; llama_cpp_2::max_devices()];
    const LOG_INFO: u32 = 2;
    match params.fit_params(&path, &mut cparams, &mut margins, cells, LOG_INFO) {
        Ok(_) => Ok(()),
        Err(e) => Err(EngineError::Load {
            path: cfg.gguf.clone(),
            reason: format!(
                "gpu_layers: fit found no placement for {cells} KV cells in free GPU memory: {e}"
            ),
        }),
    }
}

fn context_params(cfg: &LocalModelConfig) -> LlamaContextParams {
    let cells = cfg.context_tokens.saturating_mul(cfg.parallel);
    LlamaContextParams::default()
        .with_n_ctx(NonZeroU32::new(cells))
        .with_n_batch(BATCH as u32)
        .with_n_ubatch(BATCH as u32)
        .with_n_seq_max(cfg.parallel)
        // One KV stream per sequence: attention then reads only the sequence's
        // own cells, so a sequence decoded among others gives bit for bit the
        // logits it gives alone (with one shared buffer, the other sequences'
        // masked cells change the float reductions, and sampled answers drift).
        // The price: a shared prefix is copied as KV data, not as metadata.
        .with_kv_unified(false)
        .with_n_threads(threads(cfg))
        .with_n_threads_batch(threads(cfg))
}

fn threads(cfg: &LocalModelConfig) -> i32 {
    let n = cfg.threads.map(|t| t as usize).unwrap_or_else(|| {
        std::thread::available_parallelism()
            .map(usize::from)
            .unwrap_or(4)
    });
    i32::try_from(n.max(1)).unwrap_or(4)
}

pub(crate) fn new_context<'m>(
    cfg: &LocalModelConfig,
    model: &'m LlamaModel,
    backend: &LlamaBackend,
) -> Result<LlamaContext<'m>, EngineError> {
    let cells = cfg.context_tokens.saturating_mul(cfg.parallel);
    let params = context_params(cfg);
    if model.n_ctx_train() > 0 && cfg.context_tokens > model.n_ctx_train() {
        warn!(
            model = %cfg.id,
            context_tokens = cfg.context_tokens,
            trained = model.n_ctx_train(),
            "context_tokens is larger than the model was trained for"
        );
    }
    model
        .new_context(backend, params)
        .map_err(|e| EngineError::Context {
            id: cfg.id.clone(),
            reason: format!("{e} ({cells} KV cells for {} sequences)", cfg.parallel),
        })
}

pub(crate) fn describe(
    cfg: &LocalModelConfig,
    file: &gguf::GgufFile,
    model: &Arc<LlamaModel>,
) -> Result<Loaded, EngineError> {
    let template = match model.chat_template(None) {
        Ok(t) => t,
        Err(e) => {
            warn!(model = %cfg.id, error = %e, "model has no chat template; using chatml");
            LlamaChatTemplate::new("chatml").map_err(|e| EngineError::Load {
                path: cfg.gguf.clone(),
                reason: e.to_string(),
            })?
        }
    };
    // The file name, not `general.name`: it is what the operator configured and
    // it names the quantization, which `general.name` often does not.
    let upstream = file_stem(&cfg.gguf);
    let mut details = file.details();
    details.insert(
        "n_params_llama".to_owned(),
        serde_json::json!(model.n_params()),
    );
    let template_source = template.to_string().unwrap_or_default();
    Ok(Loaded {
        model: Arc::clone(model),
        template,
        template_source,
        capabilities: Capabilities {
            kind: BackendKind::Local,
            upstream_model: upstream,
            streaming: true,
            json_mode: true,
            tools: cfg.tools,
            embeddings: cfg.embeddings,
            embedding_dimensions: false,
            vision: false,
            context_tokens: Some(cfg.context_tokens),
            details,
        },
    })
}
