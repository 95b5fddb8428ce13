//! Reading configuration files: the embedded default or a file on disk. Parsing
//! and validation live in `watershed-policies`; this is the IO around them.

use std::path::{Path, PathBuf};

use watershed_policies::{load_config, Config};

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
            let config = parse(EMBEDDED_DEFAULT, EMBEDDED_NAME)?;
            Ok(Loaded {
                config,
                base_dir: PathBuf::from("."),
                path: None,
            })
        }
        Some(p) => {
            let text = std::fs::read_to_string(p).map_err(|source| ConfigLoadError::Read {
                path: p.display().to_string(),
                source,
            })?;
            let config = parse(&text, &p.display().to_string())?;
            let base_dir = p
                .parent()
                .map(Path::to_path_buf)
                .filter(|d| !d.as_os_str().is_empty())
                .unwrap_or_else(|| PathBuf::from("."));
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
