//! Owner attribution through the app: `CoreCallback.ownerUid` (ConnectivityManager
//! `getConnectionOwnerUid` on Android 10+) and `CoreCallback.appIdentity` (package names and
//! label of a UID). The engine calls these only on its owner helper thread, which attaches to
//! the JVM once and stays attached; the packet loop never waits on Java.

use std::net::{IpAddr, SocketAddr};

use jni::objects::{JByteArray, JObject, JValue};
use jni::refs::Global;
use jni::vm::AttachConfig;
use jni::{Env, JavaVM, jni_sig, jni_str};
use prost::Message;

use crate::flow::Proto;
use crate::owner::OwnerLookup;
use crate::owner::procfs::ProcNet;

use super::live::Identities;
use super::proto;

/// `CoreCallback.ownerUid` answers this when the platform has no owner lookup (below
/// Android 10): the core then reads procfs itself.
pub const OWNER_UNSUPPORTED: i32 = -2;

pub struct JniOwner {
    callback: Global<JObject<'static>>,
    identities: Identities,
    /// Below Android 10 apps may still read `/proc/net`.
    procfs: ProcNet,
}

impl JniOwner {
    pub fn new(
        env: &Env<'_>,
        callback: &JObject<'_>,
        identities: Identities,
    ) -> jni::errors::Result<JniOwner> {
        Ok(JniOwner {
            callback: env.new_global_ref(callback)?,
            identities,
            procfs: ProcNet::new("/proc/net".into()),
        })
    }

    fn ask_owner(
        &self,
        proto: Proto,
        local: SocketAddr,
        remote: SocketAddr,
    ) -> jni::errors::Result<i32> {
        let ipproto = match proto {
            Proto::Tcp => libc::IPPROTO_TCP,
            Proto::Udp => libc::IPPROTO_UDP,
            Proto::Icmp => return Ok(-1),
        };
        attached(|env| {
            let local_ip = env.byte_array_from_slice(&ip_bytes(local.ip()))?;
            let remote_ip = env.byte_array_from_slice(&ip_bytes(remote.ip()))?;
            env.call_method(
                &*self.callback,
                jni_str!("ownerUid"),
                jni_sig!((protocol: jint, local_address: jbyte[], local_port: jint, remote_address: jbyte[], remote_port: jint) -> jint),
                &[
                    JValue::Int(ipproto),
                    JValue::Object(&local_ip),
                    JValue::Int(i32::from(local.port())),
                    JValue::Object(&remote_ip),
                    JValue::Int(i32::from(remote.port())),
                ],
            )?
            .i()
        })
    }

    fn ask_identity(&self, uid: u32) -> jni::errors::Result<Option<Vec<u8>>> {
        let juid =
            i32::try_from(uid).map_err(|_| jni::errors::Error::WrongJValueType("uid", "int"))?;
        attached(|env| {
            let answer = env
                .call_method(
                    &*self.callback,
                    jni_str!("appIdentity"),
                    jni_sig!((uid: jint) -> jbyte[]),
                    &[JValue::Int(juid)],
                )?
                .l()?;
            if answer.is_null() {
                return Ok(None);
            }
            let bytes = env.cast_local::<JByteArray>(answer)?;
            Ok(Some(env.convert_byte_array(&bytes)?))
        })
    }
}

/// Runs `work` on this thread attached to the JVM (permanently: the first call attaches, the
/// thread stays attached until it ends), named like the native thread so it reads well in
/// Android traces.
fn attached<T>(work: impl FnOnce(&mut Env) -> jni::errors::Result<T>) -> jni::errors::Result<T> {
    JavaVM::singleton()?.attach_current_thread_with_config(
        || AttachConfig::new().thread_name(jni_str!("phonehome-owner")),
        None,
        work,
    )
}

fn ip_bytes(ip: IpAddr) -> Vec<u8> {
    match ip {
        IpAddr::V4(v4) => v4.octets().to_vec(),
        IpAddr::V6(v6) => v6.octets().to_vec(),
    }
}

impl OwnerLookup for JniOwner {
    fn owner_uid(&mut self, proto: Proto, local: SocketAddr, remote: SocketAddr) -> Option<u32> {
        match self.ask_owner(proto, local, remote) {
            Ok(uid) if uid >= 0 => u32::try_from(uid).ok(),
            Ok(OWNER_UNSUPPORTED) => self.procfs.owner_uid(proto, local, remote),
            Ok(_) => None,
            Err(err) => {
                log::warn!("ownerUid callback failed for {local} -> {remote}: {err}");
                None
            }
        }
    }

    fn app_name(&mut self, uid: u32) -> Option<String> {
        let bytes = match self.ask_identity(uid) {
            Ok(bytes) => bytes?,
            Err(err) => {
                log::warn!("appIdentity callback failed for uid {uid}: {err}");
                return None;
            }
        };
        let mut identity = match proto::AppIdentity::decode(bytes.as_slice()) {
            Ok(identity) => identity,
            Err(err) => {
                log::warn!("appIdentity for uid {uid} is not an AppIdentity message: {err}");
                return None;
            }
        };
        identity.uid = uid;
        let name = if identity.packages.is_empty() {
            identity.label.clone()
        } else {
            identity.packages.join(",")
        };
        match self.identities.lock() {
            Ok(mut map) => map.insert(uid, identity),
            Err(poisoned) => poisoned.into_inner().insert(uid, identity),
        };
        (!name.is_empty()).then_some(name)
    }
}
