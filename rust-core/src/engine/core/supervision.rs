//! The supervision boundary of datagram flows (TCP flows have theirs in `service_touched`): a
//! bug that panics while one flow's datagram is handled costs that flow (closed with reason
//! `error`, counted in `flows_failed`, logged), not the engine and every other flow with it.
//! Also the tests' hooks that provoke such panics.

use crate::flow::{CloseReason, FlowId};

use super::Core;
use crate::engine::host::Host;
use crate::engine::report::Now;

impl<H: Host> Core<H> {
    /// Run `handle`; if it panics, close the flow `flow` finds after the panic (it may have been
    /// opened by the handling that panicked).
    pub(super) fn supervised(
        &mut self,
        flow: impl FnOnce(&Self) -> Option<FlowId>,
        handle: impl FnOnce(&mut Self),
        now: Now,
    ) {
        let handled = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| handle(self)));
        if handled.is_err() {
            self.reporter.stats.flows_failed += 1;
            let id = flow(self);
            log::error!("flow {id:?} panicked while its datagram was handled: dropped");
            if let Some(id) = id {
                self.close_flow(id, CloseReason::Error, now);
            }
        }
    }
}

/// Test hook: TCP flows to this port panic when serviced (0: none), so the tests can show the
/// supervision boundary in `service_touched` holds.
#[cfg(test)]
pub static PROVOKE_PANIC_PORT: std::sync::atomic::AtomicU16 = std::sync::atomic::AtomicU16::new(0);

#[cfg(test)]
thread_local! {
    /// The same for an engine driven on the test's own thread (`engine::sim`), so parallel
    /// tests do not see each other's port.
    pub static PROVOKE_PANIC_PORT_HERE: std::cell::Cell<u16> =
        const { std::cell::Cell::new(0) };
}

#[cfg(test)]
pub fn panic_if_provoked(port: u16) {
    let provoked = PROVOKE_PANIC_PORT.load(std::sync::atomic::Ordering::Relaxed) == port
        || PROVOKE_PANIC_PORT_HERE.with(|p| p.get()) == port;
    if port != 0 && provoked {
        panic!("provoked by the test for port {port}");
    }
}

/// Test hook: a packet to this port panics outside any flow (0: none), killing the engine
/// thread, so the tests can show that its death is reported rather than hidden.
#[cfg(test)]
pub static PROVOKE_ENGINE_DEATH_PORT: std::sync::atomic::AtomicU16 =
    std::sync::atomic::AtomicU16::new(0);

#[cfg(test)]
pub(super) fn kill_if_provoked(port: u16) {
    if port != 0 && PROVOKE_ENGINE_DEATH_PORT.load(std::sync::atomic::Ordering::Relaxed) == port {
        panic!("engine death provoked by the test for port {port}");
    }
}
