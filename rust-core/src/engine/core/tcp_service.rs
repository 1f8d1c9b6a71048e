//! Polling the smoltcp shards and servicing the TCP flows they touched. Only shards that got
//! packets or whose deadline passed are polled, and only the flows whose packets went in or out
//! are serviced, so the cost per packet does not grow with idle flows (smoltcp walks every
//! socket of a set on each poll).

use crate::flow::{CloseReason, Direction};

use super::{Core, Flow, trim};
use crate::engine::host::Host;
use crate::engine::packet;
use crate::engine::report::Now;
use crate::engine::tcp::Outcome;

impl<H: Host> Core<H> {
    pub(super) fn poll_shards(&mut self, smol_now: smoltcp::time::Instant, now: Now) {
        for index in 0..self.shards.len() {
            if !self.shards[index].is_due(smol_now) {
                continue;
            }
            self.shards[index].poll(smol_now);
            while let Some(out) = self.shards[index].device.tx.pop() {
                if let Ok(parsed) = packet::parse(&out) {
                    // Our packet to the app: its dst is the flow's src.
                    if let Some(&id) = self.tcp_index.get(&(parsed.dst_addr(), parsed.src_addr()))
                        && let Some(Flow::Tcp(flow)) = self.flows.get_mut(&id)
                    {
                        self.reporter.packet(&mut flow.common, Direction::Down, now);
                        self.touched.push(id);
                    }
                }
                self.to_tun.push(out);
            }
            // Write each shard's output at once: a poll of a shard with many busy flows emits
            // hundreds of segments, and holding every shard's until the end inflates memory.
            self.flush_tun(now);
        }
    }

    /// Service each touched flow once and act on its outcome.
    pub(super) fn service_touched(&mut self, now: Now) {
        let mut touched = std::mem::take(&mut self.touched);
        touched.sort_unstable();
        touched.dedup();
        for id in touched.drain(..) {
            let Some(Flow::Tcp(flow)) = self.flows.get_mut(&id) else {
                continue;
            };
            // The supervision boundary: a bug that panics while one flow is serviced costs that
            // flow (dropped, counted, logged), not the engine and every other flow with it.
            let serviced = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                #[cfg(test)]
                super::panic_if_provoked(flow.common.record.key.dst.port());
                flow.service(&mut self.shards[flow.shard], &mut self.reporter, now)
            }));
            let Ok(outcome) = serviced else {
                self.reporter.stats.flows_failed += 1;
                log::error!("flow {id} panicked while being serviced: dropped (engine goes on)");
                self.close_tcp(id, CloseReason::Error, now);
                continue;
            };
            if self.over_budget && outcome == Outcome::Open {
                let released = trim::trim_quiet(flow, &mut self.shards[flow.shard]);
                self.self_trimmed = self.self_trimmed.saturating_add(released);
            }
            if flow.common.inspector_changed {
                flow.common.inspector_changed = false;
                self.reporter.rename(&mut flow.common, now.ms);
            }
            if let Some(dns) = &mut flow.dns {
                let deadline = dns.pairing.deadline(self.tuning.dns_timeout);
                let finished = std::mem::take(&mut dns.finished);
                self.dns_deadline_at(deadline);
                self.record_exchanges(id, finished, now);
            }
            match outcome {
                Outcome::Open => {}
                Outcome::Again => self.touched.push(id),
                Outcome::Closed(reason) => self.close_tcp(id, reason, now),
            }
        }
        // Keep the allocation.
        if self.touched.is_empty() {
            self.touched = touched;
        }
    }
}
