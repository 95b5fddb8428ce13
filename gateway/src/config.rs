//! Reading configuration files: the embedded default or a file on disk. Parsing
//! and validation live in `watershed-policies`; this is the IO around them.

use std::path::{Path, PathBuf};

use watershed_policies::{load_config, Config, TargetSpec};

/// The default configuration compiled into the binary.
pub const EMBEDDED_DEFAULT: &str = include_str!("../../config/default.yaml");
pub const EMBEDDED_NAME: &str = "<embedded config/default.yaml>";

#[derive(Debug, thiserror::Error)]
pub enum ConfigLoadError {
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    /// Every validation error, one per line, each with file:line:col.
    #[error("{0}")]
    Invalid(String),
}

/// A loaded configuration and the directory its relative paths are taken from.
#[derive(Debug)]
pub struct Loaded {
    pub config: Config,
    pub base_dir: PathBuf,
    pub path: Option<PathBuf>,
}

pub fn load(path: Option<&Path>) -> Result<Loaded, ConfigLoadError> {
    match path {
        None => {
            let mut config = parse(EMBEDDED_DEFAULT, EMBEDDED_NAME)?;
            let base_dir = PathBuf::from(".");
            narrow_to_gguf(&mut config, &base_dir);
            Ok(Loaded {
                config,
                base_dir,
                path: None,
            })
        }
        Some(p) => {
            let text = std::fs::read_to_string(p).map_err(|source| ConfigLoadError::Read {
                path: p.display().to_string(),
                source,
            })?;
            let mut config = parse(&text, &p.display().to_string())?;
            let base_dir = p
                .parent()
                .map(Path::to_path_buf)
                .filter(|d| !d.as_os_str().is_empty())
                .unwrap_or_else(|| PathBuf::from("."));
            narrow_to_gguf(&mut config, &base_dir);
            Ok(Loaded {
                config,
                base_dir,
                path: Some(p.to_path_buf()),
            })
        }
    }
}

fn parse(text: &str, source: &str) -> Result<Config, ConfigLoadError> {
    load_config(text, source).map_err(|errs| ConfigLoadError::Invalid(errs.to_string()))
}

/// Narrows each local target's context window to what its model was trained
/// for (`<arch>.context_length` in the GGUF header), when that is smaller
/// than the configured `context_tokens`. A file that cannot be read keeps
/// the configured window; the engine names the problem when it loads it.
fn narrow_to_gguf(config: &mut Config, base_dir: &Path) {
    for target in config.models.values_mut() {
        let TargetSpec::Local(spec) = &target.spec else {
            continue;
        };
        let path = crate::state::resolve(base_dir, &spec.gguf);
        let Ok(file) = watershed_local_engine::gguf::read(&path) else {
            continue;
        };
        if let (Some(trained), Some(window)) = (
            file.arch_u64("context_length"),
            target.capabilities.context_tokens,
        ) {
            target.capabilities.context_tokens = Some(window.min(trained));
        }
    }
}
