//! One error enum per subsystem, gathered by `Error`; the C ABI maps each to a result code.

use thiserror::Error;

#[derive(Debug, Error)]
pub enum ConfigError {
    #[error("invalid config: {message}")]
    Json { message: String },
    #[error("invalid config key {key}: {message}")]
    Invalid { key: String, message: String },
}

#[derive(Debug, Error)]
pub enum LoadError {
    #[error("permission denied: {what} (the collector needs CAP_BPF, CAP_PERFMON, CAP_NET_ADMIN, CAP_SYS_PTRACE, CAP_DAC_READ_SEARCH and, for TLS uprobes on Linux 6.16+, CAP_SYS_ADMIN; see the README, Deployment)")]
    Permission { what: String },
    #[error("kernel lacks {feature}: {detail}")]
    Unsupported { feature: String, detail: String },
    #[error("{what}: {source}")]
    Aya {
        what: String,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
}

impl LoadError {
    pub fn from_io(e: std::io::Error) -> LoadError {
        LoadError::Aya {
            what: "duplicating a map descriptor".into(),
            source: Box::new(e),
        }
    }
}

#[derive(Debug, Error)]
pub enum Error {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Load(#[from] LoadError),
    #[error("receiver is {0}")]
    State(&'static str),
    #[error("{0}")]
    Io(#[from] std::io::Error),
}
