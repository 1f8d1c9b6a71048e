//! The Android side of the core: the prost messages shared with the app
//! (`proto/phonehome.proto`), the live view the app polls, the capture session, and the JNI
//! bridge (`jni` feature) with its owner-lookup callback.
//!
//! Everything except `bridge`, `callback` and `test_hooks` is plain Rust, tested with
//! `cargo test --features proto`. The JNI layer is tested from the JVM against the host cdylib
//! (scripts/check-android.sh), and checked for aarch64-linux-android.

/// The generated messages of `proto/phonehome.proto` (package `phonehome.v1`).
#[allow(clippy::all, missing_docs)]
pub mod proto {
    include!(concat!(env!("OUT_DIR"), "/phonehome.v1.rs"));
}

pub mod geo_asset;
pub mod history;
pub mod live;
pub mod session;

#[cfg(feature = "jni")]
pub(crate) mod bridge;
#[cfg(feature = "jni")]
mod callback;
#[cfg(feature = "jni-test")]
mod test_hooks;

#[cfg(test)]
mod golden;

/// A store writer for the tests, as the app's session opens it.
#[cfg(test)]
fn android_store(db: &std::path::Path) -> crate::store::StoreWriter {
    crate::store::StoreWriter::start(
        db,
        crate::store::SessionInfo {
            kind: "android".into(),
            ..Default::default()
        },
    )
    .unwrap()
}
