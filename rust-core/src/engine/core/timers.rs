//! Time in the engine: idle and connect expiry (a sweep every second, only while flows exist),
//! DNS timeouts (at the first waiting query's deadline), held answers released, throttled flow updates, and how long the loop may sleep.
//! The engine reads no clock: each of these is a deadline checked against the `Now` it is given,
//! so the sim tests move time exactly to a deadline and one millisecond before it.

use std::time::Duration;

use crate::flow::CloseReason;
use crate::flow_rules::{self, IdleClass, IdleTimeouts};

use super::{Core, Flow};
use crate::engine::host::Host;
use crate::engine::report::Now;
use crate::engine::tcp::Phase;

const SWEEP_INTERVAL: Duration = Duration::from_secs(1);
/// The loop's sleep is clamped to these (`Core::timeout`).
const MIN_WAIT: Duration = Duration::from_millis(1);
const MAX_WAIT: Duration = Duration::from_secs(5);

impl<H: Host> Core<H> {
    pub(super) fn schedule_sweep(&mut self, now: Now) {
        if self.next_sweep.is_none() {
            self.next_sweep = Some(now.mono + SWEEP_INTERVAL);
        }
    }

    /// The last flow is gone: drop the capacity a burst of flows grew the tables to. Tables sized
    /// for 1,000 flows hold megabytes, and memory still allocated cannot be trimmed.
    fn shrink_tables(&mut self) {
        self.flows.shrink_to_fit();
        self.tcp_index.shrink_to_fit();
        self.udp_index.shrink_to_fit();
        self.echo_index.shrink_to_fit();
        self.touched.shrink_to_fit();
        self.owner_requests.shrink_to_fit();
        self.held.shrink_to_fit();
        for shard in &mut self.shards {
            shard.shrink_sockets();
        }
    }

    /// Timers: idle expiry, DNS timeouts, throttled flow updates. Cheap when nothing is due.
    pub fn on_timers(&mut self, now: Now) {
        self.reporter.release_dns(now.ms);
        if !self.held.is_empty() {
            self.release_overdue(now);
        }
        if self.dns_deadline.is_some_and(|t| t <= now.mono) {
            self.dns_timeouts(now);
        }
        if self.next_sweep.is_some_and(|t| t <= now.mono) {
            self.next_sweep = None;
            self.sweep(now);
            if self.flows.is_empty() {
                self.shrink_tables();
                release_free_heap();
            } else {
                self.schedule_sweep(now);
            }
        }
        if self.reporter.has_pending() {
            let mut next: Option<i64> = None;
            let mut keep = Vec::new();
            for id in self.reporter.take_dirty() {
                let Some(flow) = self.flows.get_mut(&id) else {
                    continue;
                };
                if let Some(due) = self.reporter.emit_if_due(flow.common(), now.ms) {
                    keep.push(id);
                    next = Some(next.map_or(due, |n| n.min(due)));
                }
            }
            self.reporter.restore_dirty(keep);
            self.next_flush = next;
        } else {
            self.next_flush = None;
        }
    }

    fn sweep(&mut self, now: Now) {
        let tuning = &self.tuning;
        let idle_limits = IdleTimeouts {
            tcp: tuning.tcp_idle_timeout,
            tcp_half_closed: tuning.tcp_half_closed_timeout,
            udp: tuning.udp_idle_timeout,
            dns: tuning.dns_flow_timeout,
            echo: tuning.echo_idle_timeout,
        };
        let connect_timeout = tuning.connect_timeout;
        let mut expired = Vec::new();
        for (&id, flow) in &mut self.flows {
            // A connect has its own limit, from the SYN (the app's retransmissions are activity
            // but do not extend it); every other flow expires by the rule the observer uses.
            let class = match flow {
                Flow::Tcp(f) if f.phase == Phase::Connecting => {
                    if now.mono.saturating_duration_since(f.common.opened) >= connect_timeout {
                        expired.push((id, CloseReason::ConnectFailed));
                    }
                    continue;
                }
                Flow::Tcp(f) => IdleClass::Tcp {
                    half_closed: f.up_closed || f.down_closed,
                },
                Flow::Udp(f) => IdleClass::Udp {
                    dns: flow_rules::is_dns_server(&f.common.record.key),
                },
                Flow::Echo(_) => IdleClass::Echo,
            };
            if flow.common().idle_expired(&idle_limits, class, now) {
                expired.push((id, CloseReason::Idle));
            }
        }
        for (id, reason) in expired {
            if reason == CloseReason::ConnectFailed {
                self.fail_connect(id, reason);
            } else {
                self.close_flow(id, reason, now);
            }
        }
    }

    /// How long the loop may sleep: the nearest smoltcp deadline or timer, clamped to
    /// [1 ms, 5 s]; zero when work is pending.
    pub fn timeout(&mut self, now: Now) -> Duration {
        if !self.touched.is_empty() {
            return Duration::ZERO;
        }
        let smol_now = self.smol_now(now);
        let mut wait = MAX_WAIT;
        for shard in &self.shards {
            if shard.dirty {
                return Duration::ZERO;
            }
            if let Some(deadline) = shard.deadline {
                let micros = (deadline - smol_now.min(deadline)).total_micros();
                wait = wait.min(Duration::from_micros(micros));
            }
        }
        for deadline in [self.next_sweep, self.dns_deadline].into_iter().flatten() {
            wait = wait.min(deadline.saturating_duration_since(now.mono));
        }
        if let Some(&(_, release)) = self.held.iter().min_by_key(|(_, at)| *at) {
            wait = wait.min(release.saturating_duration_since(now.mono));
        }
        if let Some(flush) = self.next_flush {
            wait = wait.min(Duration::from_millis((flush - now.ms).max(0) as u64));
        }
        wait.max(MIN_WAIT)
    }
}

/// The last flow is gone: give the allocator's free pages back to the system. glibc keeps
/// freed chunks of each thread's arena (a burst of 1,000 flows left ~6 MB resident after they
/// closed); `malloc_trim` returns the whole pages among them.
fn release_free_heap() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only releases memory the allocator holds free.
    unsafe {
        libc::malloc_trim(0);
    }
}
