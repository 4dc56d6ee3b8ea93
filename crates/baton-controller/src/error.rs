//! Errors the controller returns to the API and CLI: each says what is wrong and what to do.

use thiserror::Error;

#[derive(Debug, Error)]
pub enum ControlError {
    #[error("unknown app {app:?}; apps in this config: {known}")]
    UnknownApp { app: String, known: String },
    #[error("a deployment of {app} is in progress ({id}: {version} by {strategy}, {state}); wait for it, or `baton abort {app}`")]
    InProgress {
        app: String,
        id: String,
        version: String,
        strategy: String,
        state: String,
    },
    #[error("no deployment of {app} is in progress")]
    NoDeployment { app: String },
    #[error("nothing to roll back to: {app} has no previous version")]
    NothingToRollBack { app: String },
    #[error("{0}")]
    BadRequest(String),
    /// Going back after an irreversible release step, without `--force`.
    #[error("refused: {0}")]
    Irreversible(String),
    /// A reload that cannot be applied now; nothing was changed.
    #[error("{0}")]
    ReloadRefused(String),
    #[error("store: {0}")]
    Store(#[from] baton_store::StoreError),
    /// An app's record could not be stored, so what depended on it did not happen.
    #[error("store: {0}")]
    StoreFailed(String),
    #[error("runtime: {0}")]
    Runtime(#[from] baton_runtime::RuntimeError),
    #[error("baton is shutting down")]
    ShuttingDown,
    #[error("baton is handing over to a new process (`baton upgrade`); retry in a moment")]
    Suspended,
}

impl ControlError {
    /// HTTP status for the admin API.
    pub fn status_code(&self) -> u16 {
        match self {
            ControlError::UnknownApp { .. } => 404,
            ControlError::InProgress { .. }
            | ControlError::NoDeployment { .. }
            | ControlError::NothingToRollBack { .. }
            | ControlError::ReloadRefused(_)
            | ControlError::Irreversible(_) => 409,
            ControlError::BadRequest(_) => 400,
            ControlError::Store(_) | ControlError::StoreFailed(_) | ControlError::Runtime(_) => 500,
            ControlError::ShuttingDown | ControlError::Suspended => 503,
        }
    }
}
