//! The SQLite store: one writer thread (WAL, batched transactions, `PRAGMA user_version`
//! migrations) fed by a channel of [`Event`](crate::flow::Event)s, and the read side used by the
//! CLI and the app.
//!
//! - [`StoreWriter`] records a session (a capture from start to stop).
//! - [`Reader`] answers everything else: flows and DNS rows, sessions and markers, the per-app,
//!   per-domain and per-country views, timelines, the before/after [`Comparison`], exports and
//!   retention. Every answer is a plain serde-serializable struct.
//! - [`report`] renders text, JSON and a self-contained HTML page from those answers.
//!
//! See docs/ARCHITECTURE-store.md.

mod evidence;
pub mod experiment;
pub mod export;
mod read;
pub mod report;
pub mod retention;
pub mod schema;
pub mod timeline;
mod views;
mod writer;

pub use evidence::{CleartextRequest, CompanyChange, CompanySummary, CountAt, IdentifierUse};
pub use experiment::{
    AppChange, CategoryChange, Comparison, Counts, EXPERIMENT_INTRO, EndpointChange, GUIDED_STEPS,
    GuidedStep, StepGroup, StillPhoningHome, WINDOW_SYNTAX, WindowSpec, WindowStats,
};
pub use export::{DNS_COLUMNS, ExportError, FLOW_COLUMNS, Format, write_dns, write_flows};
pub use read::{DnsFilter, DnsRow, FlowFilter, FlowRow, Marker, Reader, Session, Window};
pub use retention::Retention;
pub use views::{
    AppSummary, CategorySummary, CountrySummary, DOH_HOSTS, DomainSummary, TimelineBucket, Totals,
    Visibility,
};
pub use writer::{StoreWriter, WriterOptions, WriterStats};

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database {path}: {source}")]
    Sqlite {
        path: String,
        source: rusqlite::Error,
    },
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

/// Wall-clock milliseconds since the Unix epoch (the clock sessions and markers use).
pub fn now_ms() -> crate::flow::Millis {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}
