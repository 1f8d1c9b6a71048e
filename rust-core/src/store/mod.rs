//! The SQLite store: one writer thread (WAL, batched transactions, `PRAGMA user_version`
//! migrations) fed by a channel of [`Event`](crate::flow::Event)s, and the read side used by the
//! CLI and the app. (Contract stub: being written.)

use std::path::Path;
use std::sync::mpsc::Sender;

use crate::flow::Event;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database {path}: {source}")]
    Sqlite { path: String, source: rusqlite::Error },
    #[error("database {path}: {message}")]
    Other { path: String, message: String },
}

/// What a session row records about the capture.
#[derive(Clone, Debug, Default)]
pub struct SessionInfo {
    /// "capture", "analyze", "android".
    pub kind: String,
    pub device: Option<String>,
    pub os: Option<String>,
    pub app_version: Option<String>,
    pub note: Option<String>,
}

/// The running writer thread.
pub struct StoreWriter {
    _private: (),
}

impl StoreWriter {
    /// Opens (creating or migrating) the database and starts a new session.
    pub fn start(path: &Path, session: SessionInfo) -> Result<StoreWriter, StoreError> {
        let _ = session;
        Err(StoreError::Other { path: path.display().to_string(), message: "store not built yet".into() })
    }

    pub fn session_id(&self) -> i64 {
        0
    }

    pub fn sender(&self) -> Sender<Event> {
        std::sync::mpsc::channel().0
    }

    /// Drains every event sent so far, commits, marks the session ended, joins the thread.
    pub fn finish(self) -> Result<(), StoreError> {
        Ok(())
    }
}
