//! Owner attribution: which process has the app's end of each flow. A lookup that can answer at
//! once does so before the flow's first event; the others go to the driver as requests, run off
//! the packet path and come back through [`Core::on_owner`].
//!
//! Meanwhile a TCP flow's SYN-ACK and a DNS flow's answers are held (at most [`OWNER_HOLD`]):
//! the app's socket stays open while it waits for them, so the lookup still finds a process whose
//! flow would otherwise be over in a millisecond.

use std::net::SocketAddr;
use std::time::Duration;

use crate::flow::{FlowId, FlowKey, Proto};

use super::{Core, Flow};
use crate::engine::host::Host;
use crate::engine::report::{FlowCommon, Now};
use crate::engine::tcp::Phase;

/// Longest a connected flow's SYN-ACK, or a DNS answer, waits for its owner lookup.
pub const OWNER_HOLD: Duration = Duration::from_millis(200);

/// An owner lookup the engine wants: which process has the app's end of this flow. The driver
/// runs it off the packet path and answers with [`Core::on_owner`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct OwnerRequest {
    pub flow: FlowId,
    pub proto: Proto,
    pub local: SocketAddr,
    pub remote: SocketAddr,
}

impl<H: Host> Core<H> {
    /// Attribute a new flow on the spot when the lookup can answer without waiting, before its
    /// first event: the SYN-ACK (or a DNS answer) then waits for no other thread.
    pub(super) fn owner_now(&mut self, common: &mut FlowCommon) {
        let key = common.record.key;
        if let Some(uid) = self.host.owner_now(key.proto, key.src, key.dst) {
            common.record.uid = Some(uid);
            common.owner_done = true;
        }
    }

    /// Start owner attribution for a new flow that `owner_now` could not attribute.
    pub(super) fn ask_owner(&mut self, id: FlowId, key: FlowKey) {
        let Some(flow) = self.flows.get_mut(&id) else {
            return;
        };
        let common = flow.common();
        if common.owner_done {
            return;
        }
        if self.owner_lookups {
            self.owner_requests.push(OwnerRequest {
                flow: id,
                proto: key.proto,
                local: key.src,
                remote: key.dst,
            });
        } else {
            common.owner_done = true;
        }
    }

    /// Owner lookups asked for since the last call, for the driver to run.
    pub fn take_owner_requests(&mut self) -> std::vec::Drain<'_, OwnerRequest> {
        self.owner_requests.drain(..)
    }

    /// Some open flow still waits for its owner lookup: before the final events of a session
    /// the driver lets those answer (bounded), so the last flows are attributed too.
    pub fn owners_pending(&self) -> bool {
        self.flows.values().any(|f| !f.owner_done())
    }

    /// An owner lookup finished: the uid, or None when it found no owner.
    pub fn on_owner(&mut self, id: FlowId, uid: Option<u32>) {
        match self.flows.get_mut(&id) {
            Some(flow) => {
                let common = flow.common();
                common.owner_done = true;
                if let Some(uid) = uid {
                    common.record.uid = Some(uid);
                    self.reporter.owner_found(common);
                }
                self.release_if_ready(id);
            }
            None => {
                if let Some(uid) = uid {
                    self.reporter.late_owner(id, uid);
                }
            }
        }
        self.reporter.owner_known(id, uid);
    }

    /// The flow waits for its owner lookup: release what it holds after [`OWNER_HOLD`] anyway.
    pub(super) fn hold_for_owner(&mut self, id: FlowId, now: Now) {
        self.held.push((id, now.mono + OWNER_HOLD));
    }

    /// Answer the app's SYN (release the held SYN-ACK) once the outbound connect succeeded and
    /// the owner lookup answered. Holding it until then keeps the app's socket in SYN_SENT, so
    /// the lookup sees it even for flows that would be over in a millisecond.
    /// A DNS flow's answers held for the same reason go out once the owner is known.
    pub(super) fn release_if_ready(&mut self, id: FlowId) {
        let flow = match self.flows.get_mut(&id) {
            Some(Flow::Tcp(flow)) => flow,
            Some(Flow::Udp(flow)) => {
                if flow.common.owner_done {
                    flow.release_answers(&mut self.to_tun);
                }
                return;
            }
            _ => return,
        };
        if flow.phase == Phase::Connecting && flow.connected && flow.common.owner_done {
            flow.phase = Phase::Relaying;
            let shard = &mut self.shards[flow.shard];
            shard.socket(flow.handle).pause_synack(false);
            shard.dirty = true;
            self.touched.push(id);
        }
    }

    /// Release held SYN-ACKs and DNS answers whose owner lookup is taking too long.
    pub(super) fn release_overdue(&mut self, now: Now) {
        let mut due = Vec::new();
        self.held.retain(|&(id, deadline)| {
            if deadline <= now.mono {
                due.push(id);
                false
            } else {
                true
            }
        });
        for id in due {
            match self.flows.get_mut(&id) {
                Some(Flow::Tcp(flow)) => flow.common.owner_done = true,
                Some(Flow::Udp(flow)) => flow.common.owner_done = true,
                _ => {}
            }
            self.release_if_ready(id);
        }
    }
}
