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

    /// A second lookup for the engine thread itself, if this one has a way to answer without
    /// waiting (a sock_diag query: the kernel answers it within the send). A flow attributed
    /// while its SYN or first datagram is handled needs no round trip through the helper thread,
    /// whose wake-ups were most of a new connection's setup time on a loaded machine. None:
    /// every lookup goes to the helper thread.
    fn immediate(&mut self) -> Option<Box<dyn ImmediateOwner>> {
        None
    }
}

/// See [`OwnerLookup::immediate`]. Never blocks.
pub trait ImmediateOwner: Send {
    /// The owner if it can be told now; None hands the flow to the helper thread, which retries.
    fn owner_uid_now(&mut self, proto: Proto, local: SocketAddr, remote: SocketAddr)
    -> Option<u32>;
}

#[cfg(any(target_os = "linux", target_os = "android"))]
pub mod diag;
pub mod procfs;
pub mod resolver;

#[cfg(any(target_os = "linux", target_os = "android"))]
pub use diag::{ImmediateDiag, KernelOwner, SockDiag};
pub use procfs::ProcNet;
