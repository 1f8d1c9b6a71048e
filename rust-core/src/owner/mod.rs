//! Owner attribution: which UID opened a flow. Looked up off the packet loop and cached.

use std::net::SocketAddr;

use crate::flow::Proto;

/// Finds the UID that owns a socket. Implementations may block (procfs read, Binder call); the
/// engine calls them only on a helper thread.
pub trait OwnerLookup: Send {
    /// `local` is the app's address (the flow's src), `remote` the destination.
    fn owner_uid(&mut self, proto: Proto, local: SocketAddr, remote: SocketAddr) -> Option<u32>;

    /// Owners of several sockets at once, in order: the lookups that were pending together.
    /// A table-reading lookup reads each table once for the whole batch.
    fn owner_uids(&mut self, requests: &[(Proto, SocketAddr, SocketAddr)]) -> Vec<Option<u32>> {
        requests
            .iter()
            .map(|&(proto, local, remote)| self.owner_uid(proto, local, remote))
            .collect()
    }

    /// A display name for the UID: package name(s) on Android, the user name on Linux.
    fn app_name(&mut self, uid: u32) -> Option<String>;
}

#[cfg(any(target_os = "linux", target_os = "android"))]
pub mod diag;
pub mod procfs;
pub mod resolver;

#[cfg(any(target_os = "linux", target_os = "android"))]
pub use diag::{KernelOwner, SockDiag};
pub use procfs::ProcNet;
