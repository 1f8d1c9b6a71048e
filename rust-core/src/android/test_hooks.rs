//! Test-only exports of `org.phonehome.core.NativeTestHooks` (feature `jni-test`, never in the
//! APK): what the JVM tests need that the Android framework gives the real app.

use std::fs::OpenOptions;
use std::os::fd::{AsRawFd, IntoRawFd};
use std::os::unix::fs::OpenOptionsExt;

use jni::objects::{JClass, JString};
use jni::sys::jint;
use jni::{EnvUnowned, jni_mangle};

use super::bridge::{BridgeError, ThrowCoreException};
use super::session::CoreError;

const IFF_TUN: libc::c_short = 0x0001;
const IFF_NO_PI: libc::c_short = 0x1000;
const TUNSETIFF: libc::c_ulong = 0x4004_54ca;

#[repr(C)]
struct IfReq {
    name: [libc::c_char; libc::IFNAMSIZ],
    flags: libc::c_short,
    _pad: [u8; 22],
}

/// `openTun(name: String): Int` — attaches to the TUN device `name` the way `VpnService`
/// hands one over: raw IP packets, no packet-information header, non-blocking. The caller
/// passes the fd to `NativeCore.start`, which owns it from then on.
#[jni_mangle("org.phonehome.core.NativeTestHooks")]
pub fn open_tun<'local>(
    mut unowned: EnvUnowned<'local>,
    _class: JClass<'local>,
    name: JString<'local>,
) -> jint {
    unowned
        .with_env(|env| -> Result<jint, BridgeError> {
            let name = name.try_to_string(env)?;
            let io =
                |what: &str, e: std::io::Error| CoreError::new("io", format!("{what} {name}: {e}"));
            if name.is_empty() || name.len() >= libc::IFNAMSIZ {
                return Err(CoreError::bad_request(format!(
                    "tun name {name:?} is not an interface name"
                ))
                .into());
            }
            let file = OpenOptions::new()
                .read(true)
                .write(true)
                .custom_flags(libc::O_NONBLOCK | libc::O_CLOEXEC)
                .open("/dev/net/tun")
                .map_err(|e| io("open /dev/net/tun for", e))?;
            let mut req = IfReq {
                name: [0; libc::IFNAMSIZ],
                flags: IFF_TUN | IFF_NO_PI,
                _pad: [0; 22],
            };
            for (dst, src) in req.name.iter_mut().zip(name.bytes()) {
                *dst = src as libc::c_char;
            }
            // SAFETY: TUNSETIFF reads and writes one `struct ifreq`, which `IfReq` lays out.
            let rc = unsafe { libc::ioctl(file.as_raw_fd(), TUNSETIFF as _, &mut req) };
            if rc < 0 {
                return Err(io("TUNSETIFF", std::io::Error::last_os_error()).into());
            }
            Ok(file.into_raw_fd())
        })
        .resolve::<ThrowCoreException>()
}

/// `panicNow(message: String)` — panics inside a native call, to prove the boundary turns a
/// panic into a Kotlin exception and the process (the VPN service) lives on.
#[jni_mangle("org.phonehome.core.NativeTestHooks")]
pub fn panic_now<'local>(
    mut unowned: EnvUnowned<'local>,
    _class: JClass<'local>,
    message: JString<'local>,
) {
    unowned
        .with_env(|env| -> Result<(), BridgeError> {
            let message = message.try_to_string(env)?;
            #[allow(clippy::panic)]
            {
                panic!("{message}");
            }
        })
        .resolve::<ThrowCoreException>()
}

/// `openFile(path: String): Int` — a writable descriptor for a new file, standing in for the
/// `ParcelFileDescriptor` the Storage Access Framework gives the app on export.
#[jni_mangle("org.phonehome.core.NativeTestHooks")]
pub fn open_file<'local>(
    mut unowned: EnvUnowned<'local>,
    _class: JClass<'local>,
    path: JString<'local>,
) -> jint {
    unowned
        .with_env(|env| -> Result<jint, BridgeError> {
            let path = path.try_to_string(env)?;
            let file = OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                .open(&path)
                .map_err(|e| CoreError::new("io", format!("create {path}: {e}")))?;
            Ok(file.into_raw_fd())
        })
        .resolve::<ThrowCoreException>()
}
