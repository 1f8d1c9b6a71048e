//! Keeping the TCP rings' resident memory under `Tuning::tcp_buffer_budget`. A ring costs only
//! the pages its flow touched (`buffers.rs`), but with many busy flows every ring ends up
//! resident (1,000 echo flows: 95 MB). The engine estimates what the flows touched since their
//! last trim and gives the pages of empty rings back while the estimate is over budget; a lone
//! bulk flow stays under it and is never trimmed (no page-fault churn).

use std::time::Duration;

use super::{Core, Flow};
use crate::engine::host::Host;
use crate::engine::report::Now;
use crate::engine::shard::Shard;
use crate::engine::tcp::TcpFlow;

/// Shortest time between two estimates.
const TRIM_INTERVAL: Duration = Duration::from_millis(100);
/// Over budget, a flow returns its ring pages once it touched this much since its last trim.
const TRIM_MIN: usize = 8 * 1024;

impl<H: Host> Core<H> {
    /// Once enough bytes moved to possibly exceed the budget, estimate what the flows touched
    /// and give the pages of empty rings back. A thousand busy flows are trimmed every 100 ms.
    pub(super) fn trim_buffers(&mut self, now: Now) {
        let moved = self.reporter.stats.bytes_up + self.reporter.stats.bytes_down;
        let budget = self.tuning.tcp_buffer_budget;
        if moved - self.trim_mark < (budget / 2) as u64
            || now.mono.saturating_duration_since(self.last_trim) < TRIM_INTERVAL
        {
            return;
        }
        self.trim_mark = moved;
        self.last_trim = now.mono;
        let estimate = self.ring_estimate();
        // Busy flows keep trimming themselves down to half the budget (hysteresis): between two
        // passes a thousand fast flows can touch many megabytes.
        self.over_budget = estimate > budget / 2;
        if estimate <= budget {
            return;
        }
        for flow in self.flows.values_mut() {
            if let Flow::Tcp(tcp) = flow {
                tcp.trim(&mut self.shards[tcp.shard]);
            }
        }
    }

    /// Ring memory the TCP flows may have touched since their last trim: what the budget is
    /// checked against (an upper bound of what is resident).
    pub(in crate::engine) fn ring_estimate(&self) -> usize {
        self.flows
            .values()
            .map(|flow| match flow {
                Flow::Tcp(tcp) => tcp.touched(),
                _ => 0,
            })
            .sum()
    }
}

/// While over budget, a flow just serviced (and still open) returns its ring pages when its
/// rings went empty after enough traffic, without waiting for the next estimate.
pub(super) fn trim_quiet<S>(flow: &mut TcpFlow<S>, shard: &mut Shard) {
    if flow.touched() >= TRIM_MIN {
        flow.trim(shard);
    }
}
