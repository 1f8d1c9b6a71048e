//! The JNI exports of `org.phonehome.core.NativeCore` (Kotlin `object` with `@JvmStatic
//! external fun`s). Few and coarse: start, stop, snapshot, query, mark, export.
//!
//! Every export runs inside `EnvUnowned::with_env`, which catches panics; errors and panics
//! become a `org.phonehome.core.CoreException` (a RuntimeException) in Kotlin, never an abort of
//! the VPN process. One capture runs at a time, kept in `CORE`.

use std::os::fd::{BorrowedFd, FromRawFd, OwnedFd};
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use jni::errors::{Error as JniError, ErrorPolicy};
use jni::objects::{JByteArray, JClass, JObject, JString};
use jni::sys::{jint, jlong};
use jni::{Env, EnvUnowned, jni_mangle, jni_str};
use prost::Message;

use super::callback::JniOwner;
use super::live::LiveView;
use super::proto;
use super::session::{CoreError, Session, answer_or_history, lock};

/// The running capture, and what remains readable of the last one after it stopped.
struct CoreState {
    running: Option<Session>,
    last_live: Option<Arc<Mutex<LiveView>>>,
    last_snapshot: Option<proto::Snapshot>,
    /// The database to show when no capture ran in this process (`openHistory`).
    history: Option<PathBuf>,
}

static CORE: Mutex<CoreState> = Mutex::new(CoreState {
    running: None,
    last_live: None,
    last_snapshot: None,
    history: None,
});

fn core() -> MutexGuard<'static, CoreState> {
    CORE.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Errors inside an export: the core's own, or JNI's.
#[derive(Debug)]
pub enum BridgeError {
    Core(CoreError),
    Jni(JniError),
}

impl std::fmt::Display for BridgeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            BridgeError::Core(e) => e.fmt(f),
            BridgeError::Jni(e) => write!(f, "jni: {e}"),
        }
    }
}

impl std::error::Error for BridgeError {}

impl From<JniError> for BridgeError {
    fn from(e: JniError) -> Self {
        BridgeError::Jni(e)
    }
}

impl From<CoreError> for BridgeError {
    fn from(e: CoreError) -> Self {
        BridgeError::Core(e)
    }
}

impl From<prost::DecodeError> for BridgeError {
    fn from(e: prost::DecodeError) -> Self {
        BridgeError::Core(e.into())
    }
}

type Result<T> = std::result::Result<T, BridgeError>;

/// Throws `CoreException(message)` for errors and panics (falling back to RuntimeException if
/// the class cannot be found) and returns the default value (null, 0) to the caller.
pub struct ThrowCoreException;

fn throw(env: &mut Env<'_>, message: String) {
    if env.exception_check() {
        return;
    }
    // Plain FindClass: inside a native method it searches the class loader of the class that
    // declared the method, which on Android is the app's (Class.forName on the thread's context
    // loader is not).
    let text = jni::strings::JNIString::from(message.as_str());
    let thrown = match env.find_class(jni_str!("org/phonehome/core/CoreException")) {
        Ok(class) => env.throw_new(&class, &text).is_ok() || env.exception_check(),
        Err(_) => false,
    };
    if !thrown {
        env.exception_clear();
        let _ = env.throw(message);
    }
}

impl<T: Default> ErrorPolicy<T, BridgeError> for ThrowCoreException {
    type Captures<'unowned_env_local: 'native_method, 'native_method> = ();

    fn on_error<'unowned_env_local: 'native_method, 'native_method>(
        env: &mut Env<'unowned_env_local>,
        _cap: &mut Self::Captures<'unowned_env_local, 'native_method>,
        err: BridgeError,
    ) -> jni::errors::Result<T> {
        if !matches!(err, BridgeError::Jni(JniError::JavaException)) {
            log::warn!("native call failed: {err}");
            throw(env, err.to_string());
        }
        Ok(T::default())
    }

    fn on_panic<'unowned_env_local: 'native_method, 'native_method>(
        env: &mut Env<'unowned_env_local>,
        _cap: &mut Self::Captures<'unowned_env_local, 'native_method>,
        payload: Box<dyn std::any::Any + Send + 'static>,
    ) -> jni::errors::Result<T> {
        let text = match payload.downcast::<String>() {
            Ok(s) => *s,
            Err(payload) => match payload.downcast::<&'static str>() {
                Ok(s) => (*s).to_string(),
                Err(payload) => {
                    std::mem::forget(payload);
                    "non-text panic payload".to_string()
                }
            },
        };
        log::error!("panic in the core: {text}");
        throw(env, format!("panic: {text}"));
        Ok(T::default())
    }
}

fn init_logging() {
    #[cfg(target_os = "android")]
    android_logger::init_once(
        android_logger::Config::default()
            .with_tag("PhoneHome")
            .with_max_level(log::LevelFilter::Info),
    );
}

fn bytes<'local>(env: &mut Env<'local>, message: &impl Message) -> Result<JByteArray<'local>> {
    Ok(env.byte_array_from_slice(&message.encode_to_vec())?)
}

fn not_running() -> BridgeError {
    BridgeError::Core(CoreError::new("not-running", "no capture is running"))
}

/// `start(tunFd: Int, dbPath: String, config: ByteArray, callback: CoreCallback)`.
/// The core takes ownership of `tunFd` (from `ParcelFileDescriptor.detachFd()`), even on error.
#[jni_mangle("org.phonehome.core.NativeCore")]
pub fn start<'local>(
    mut unowned: EnvUnowned<'local>,
    _class: JClass<'local>,
    tun_fd: jint,
    db_path: JString<'local>,
    config: JByteArray<'local>,
    callback: JObject<'local>,
) {
    unowned
        .with_env(|env| -> Result<()> {
            init_logging();
            if tun_fd < 0 {
                return Err(
                    CoreError::bad_request(format!("tun fd {tun_fd} is not a descriptor")).into(),
                );
            }
            // SAFETY: the app detached this descriptor for us; nobody else closes it.
            let tun = unsafe { OwnedFd::from_raw_fd(tun_fd) };
            let path = PathBuf::from(db_path.try_to_string(env)?);
            let config = proto::StartConfig::decode(env.convert_byte_array(&config)?.as_slice())?;
            if callback.is_null() {
                return Err(CoreError::bad_request("start needs a callback object").into());
            }
            let mut core = core();
            if core.running.is_some() {
                return Err(CoreError::new("running", "a capture is already running").into());
            }
            let identities = Arc::new(Mutex::new(Default::default()));
            let owner = JniOwner::new(env, &callback, identities.clone())?;
            let session = Session::start(tun, &path, &config, Box::new(owner), identities)?;
            core.last_live = Some(session.live());
            core.last_snapshot = None;
            core.running = Some(session);
            log::info!("capture started, database {}", path.display());
            Ok(())
        })
        .resolve::<ThrowCoreException>()
}

/// `stop(): ByteArray` — the final `Snapshot`. Closes the tun fd and flushes the database.
#[jni_mangle("org.phonehome.core.NativeCore")]
pub fn stop<'local>(mut unowned: EnvUnowned<'local>, _class: JClass<'local>) -> JByteArray<'local> {
    unowned
        .with_env(|env| -> Result<JByteArray<'local>> {
            let session = core().running.take().ok_or_else(not_running)?;
            let (snapshot, error) = session.stop();
            core().last_snapshot = Some(snapshot.clone());
            match error {
                Some(err) => Err(err.into()),
                None => bytes(env, &snapshot),
            }
        })
        .resolve::<ThrowCoreException>()
}

/// `isRunning(): Boolean`.
#[jni_mangle("org.phonehome.core.NativeCore")]
pub fn is_running<'local>(mut unowned: EnvUnowned<'local>, _class: JClass<'local>) -> bool {
    unowned
        .with_env(|_env| -> Result<bool> { Ok(core().running.is_some()) })
        .resolve::<ThrowCoreException>()
}

/// `snapshot(): ByteArray` — a `Snapshot` of the running capture, else the final one of the last
/// capture in this process, else the latest session of the history database, else an empty
/// message (no totals).
#[jni_mangle("org.phonehome.core.NativeCore")]
pub fn snapshot<'local>(
    mut unowned: EnvUnowned<'local>,
    _class: JClass<'local>,
) -> JByteArray<'local> {
    unowned
        .with_env(|env| -> Result<JByteArray<'local>> {
            let mut guard = core();
            let state = &mut *guard;
            let history = state.history.clone();
            let snapshot = match (&mut state.running, &state.last_snapshot) {
                (Some(session), _) => Some(session.snapshot()),
                (None, Some(last)) => Some(last.clone()),
                (None, None) => None,
            };
            drop(guard);
            let snapshot = match (snapshot, history) {
                (Some(snapshot), _) => snapshot,
                (None, Some(db)) => super::history::snapshot(&db)?,
                (None, None) => proto::Snapshot::default(),
            };
            bytes(env, &snapshot)
        })
        .resolve::<ThrowCoreException>()
}

/// `query(request: ByteArray): ByteArray` — `QueryRequest` in, `QueryResponse` out, answered
/// from the running capture or the last one. Query errors travel inside the response
/// (`error`); only a broken call throws.
#[jni_mangle("org.phonehome.core.NativeCore")]
pub fn query<'local>(
    mut unowned: EnvUnowned<'local>,
    _class: JClass<'local>,
    request: JByteArray<'local>,
) -> JByteArray<'local> {
    unowned
        .with_env(|env| -> Result<JByteArray<'local>> {
            let request =
                proto::QueryRequest::decode(env.convert_byte_array(&request)?.as_slice())?;
            let (live, history) = {
                let core = core();
                (core.last_live.clone(), core.history.clone())
            };
            let response = match (live, history) {
                (Some(live), history) => {
                    answer_or_history(&lock(&live), history.as_deref(), &request)
                }
                (None, Some(db)) => super::history::answer(&db, &request).unwrap_or_else(|err| {
                    proto::QueryResponse {
                        kind: Some(proto::query_response::Kind::Error(err.to_proto())),
                    }
                }),
                (None, None) => proto::QueryResponse {
                    kind: Some(proto::query_response::Kind::Error(
                        CoreError::new("not-running", "no capture is running").to_proto(),
                    )),
                },
            };
            bytes(env, &response)
        })
        .resolve::<ThrowCoreException>()
}

/// `openHistory(dbPath: String)` — the database `snapshot` and `query` read when no capture ran
/// in this process (after the app was restarted).
#[jni_mangle("org.phonehome.core.NativeCore")]
pub fn open_history<'local>(
    mut unowned: EnvUnowned<'local>,
    _class: JClass<'local>,
    db_path: JString<'local>,
) {
    unowned
        .with_env(|env| -> Result<()> {
            core().history = Some(PathBuf::from(db_path.try_to_string(env)?));
            Ok(())
        })
        .resolve::<ThrowCoreException>()
}

/// `mark(label: String): ByteArray` — the new `Marker`.
#[jni_mangle("org.phonehome.core.NativeCore")]
pub fn mark<'local>(
    mut unowned: EnvUnowned<'local>,
    _class: JClass<'local>,
    label: JString<'local>,
) -> JByteArray<'local> {
    unowned
        .with_env(|env| -> Result<JByteArray<'local>> {
            let label = label.try_to_string(env)?;
            let marker = core()
                .running
                .as_mut()
                .ok_or_else(not_running)?
                .mark(&label)?;
            bytes(env, &marker)
        })
        .resolve::<ThrowCoreException>()
}

/// `loadGeo(fd: Int, offset: Long, length: Long): Int` — the APK's country/ASN asset, as its
/// AssetFileDescriptor gives it (the app keeps and closes `fd`). Returns the number of ranges.
#[jni_mangle("org.phonehome.core.NativeCore")]
pub fn load_geo<'local>(
    mut unowned: EnvUnowned<'local>,
    _class: JClass<'local>,
    fd: jint,
    offset: jlong,
    length: jlong,
) -> jint {
    unowned
        .with_env(|_env| -> Result<jint> {
            init_logging();
            let (Ok(offset), Ok(length)) = (u64::try_from(offset), u64::try_from(length)) else {
                return Err(CoreError::bad_request(format!(
                    "geo asset offset {offset} / length {length} is negative"
                ))
                .into());
            };
            if fd < 0 {
                return Err(
                    CoreError::bad_request(format!("geo fd {fd} is not a descriptor")).into(),
                );
            }
            // SAFETY: the app keeps `fd` open for the duration of this call and closes it after.
            let fd = unsafe { BorrowedFd::borrow_raw(fd) };
            let ranges = super::geo_asset::load(fd, offset, length)?;
            log::info!("country/ASN database: {ranges} ranges");
            Ok(jint::try_from(ranges).unwrap_or(jint::MAX))
        })
        .resolve::<ThrowCoreException>()
}

/// `changeNetwork(dnsUpstream: String, network: String): ByteArray` — the running capture sends
/// DNS to the new upstream from now on (same session, same flows); returns the timeline `Marker`.
#[jni_mangle("org.phonehome.core.NativeCore")]
pub fn change_network<'local>(
    mut unowned: EnvUnowned<'local>,
    _class: JClass<'local>,
    dns_upstream: JString<'local>,
    network: JString<'local>,
) -> JByteArray<'local> {
    unowned
        .with_env(|env| -> Result<JByteArray<'local>> {
            let upstream = dns_upstream.try_to_string(env)?;
            let network = network.try_to_string(env)?;
            let marker = core()
                .running
                .as_mut()
                .ok_or_else(not_running)?
                .change_network(&upstream, &network)?;
            bytes(env, &marker)
        })
        .resolve::<ThrowCoreException>()
}

/// `export(fd: Int, request: ByteArray): Long` — writes the report into `fd` (detached from the
/// ParcelFileDescriptor the Storage Access Framework gave) and closes it. Returns bytes written.
/// Works without a running capture too, on the database at `dbPath`.
#[jni_mangle("org.phonehome.core.NativeCore")]
pub fn export<'local>(
    mut unowned: EnvUnowned<'local>,
    _class: JClass<'local>,
    fd: jint,
    db_path: JString<'local>,
    request: JByteArray<'local>,
) -> jlong {
    unowned
        .with_env(|env| -> Result<jlong> {
            if fd < 0 {
                return Err(
                    CoreError::bad_request(format!("export fd {fd} is not a descriptor")).into(),
                );
            }
            // SAFETY: detached by the app for us; closed when `out` drops.
            let out = unsafe { OwnedFd::from_raw_fd(fd) };
            let path = PathBuf::from(db_path.try_to_string(env)?);
            let request =
                proto::ExportRequest::decode(env.convert_byte_array(&request)?.as_slice())?;
            let written = super::session::export_database(&path, out, &request)?;
            Ok(jlong::try_from(written).unwrap_or(jlong::MAX))
        })
        .resolve::<ThrowCoreException>()
}
