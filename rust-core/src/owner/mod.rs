//! Owner attribution: which UID opened a flow. Looked up off the packet loop and cached.

use std::net::SocketAddr;

use crate::flow::Proto;

/// Finds the UID that owns a socket. Implementations may block (procfs read, Binder call); the
/// engine calls them only on a helper thread.
pub trait OwnerLookup: Send {
    /// `local` is the app's address (the flow's src), `remote` the destination.
    fn owner_uid(&mut self, proto: Proto, local: SocketAddr, remote: SocketAddr) -> Option<u32>;

    /// A display name for the UID: package name(s) on Android, the user name on Linux.
    fn app_name(&mut self, uid: u32) -> Option<String>;
}

pub mod procfs;
pub mod resolver;

pub use procfs::ProcNet;
