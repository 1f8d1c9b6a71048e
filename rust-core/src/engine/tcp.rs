//! One relayed TCP flow: the app's side is a smoltcp socket in a shard, the server's side a
//! non-blocking kernel socket. Bytes move straight between the two (`socket.recv(|buf| write)`,
//! `socket.send(|buf| read)`), each side throttling the other: nothing is read from the server
//! while the smoltcp send buffer is full, nothing taken from smoltcp while the server socket
//! would block.
//!
//! Connect-first: the smoltcp socket holds its SYN-ACK (`pause_synack`) until the outbound
//! connect succeeds; on failure the app gets a RST, so happy-eyeballs moves on at once.

use std::io;

use smoltcp::iface::SocketHandle;
use smoltcp::socket::tcp::State;

use crate::flow::{CloseReason, Direction};

use super::buffers::TcpBuffers;
use super::dns::{DnsExchange, Pairing, StreamSplitter};
use super::host::StreamSocket;
use super::report::{FlowCommon, Now, Reporter};
use super::shard::Shard;

/// How long data sent to the app may go unacknowledged before the flow is reset.
pub const APP_ACK_TIMEOUT: smoltcp::time::Duration = smoltcp::time::Duration::from_secs(120);

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Phase {
    /// Outbound connect in progress; the app's SYN waits in smoltcp.
    Connecting,
    Relaying,
    /// The smoltcp socket was aborted; it is removed after the shard's next poll has sent the
    /// RST.
    Aborting(CloseReason),
}

pub struct TcpFlow<S> {
    pub common: FlowCommon,
    pub shard: usize,
    pub handle: SocketHandle,
    pub buffers: Option<TcpBuffers>,
    pub stream: S,
    pub phase: Phase,
    /// The server socket had readiness we have not consumed (edge-triggered: mio will not
    /// report it again until we hit WouldBlock).
    pub out_readable: bool,
    pub out_writable: bool,
    /// The app's FIN was passed on (shutdown(Write) on the server socket).
    pub up_closed: bool,
    /// The server's EOF was seen and smoltcp asked to send FIN.
    pub down_closed: bool,
    /// DNS over TCP (to the tunnel's DNS address or any port 53): the two directions split
    /// into messages for the query log.
    pub dns: Option<TcpDns>,
    /// The app's initial sequence number + 1: where its stream starts.
    pub rx_start: u32,
    /// Highest sequence number (end of payload) seen from the app, to know when smoltcp may
    /// hold out-of-order data in its rx ring.
    pub rx_max_end: u32,
    /// `bytes_up` / `bytes_down` when the rings were last trimmed (for the memory estimate).
    pub trimmed_up: u64,
    pub trimmed_down: u64,
    /// The outbound connect succeeded (the SYN-ACK may still wait for the owner lookup).
    pub connected: bool,
}

/// DNS over TCP: each direction split into messages, paired as UDP flows and a replay pair
/// them. Exchanges wait in `finished` for the engine's query log.
#[derive(Default)]
pub struct TcpDns {
    pub up: StreamSplitter,
    pub down: StreamSplitter,
    pub pairing: Pairing,
    pub finished: Vec<DnsExchange>,
}

/// What servicing a flow concluded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    Open,
    /// Service again after the shard's next poll.
    Again,
    Closed(CloseReason),
}

enum ReadResult {
    Data(usize),
    Eof,
    Blocked,
    Failed(io::Error),
}

impl<S: StreamSocket> TcpFlow<S> {
    /// Where the outbound connect stands: None while in progress, then its result (success
    /// marks the flow connected; the SYN-ACK may still wait for the owner lookup).
    pub fn check_connect(&mut self) -> Option<io::Result<()>> {
        let result = self.stream.connect_result()?;
        let (id, dst) = (self.common.record.id, self.common.record.key.dst);
        match &result {
            Ok(()) => {
                log::trace!("flow {id}: connected to {dst}");
                self.connected = true;
            }
            Err(e) => log::debug!("connect {dst} failed: {e}"),
        }
        Some(result)
    }

    /// Move whatever can move between the two sockets and follow closes. `shard` is this flow's
    /// shard.
    pub fn service(&mut self, shard: &mut Shard, reporter: &mut Reporter, now: Now) -> Outcome {
        match self.phase {
            Phase::Connecting => {
                // The app may give up (RST) while we connect.
                return match shard.socket(self.handle).state() {
                    // A RST in SYN-RECEIVED sends a passive socket back to LISTEN (and
                    // `Shard::listen` may have closed it since).
                    State::Closed | State::Listen => Outcome::Closed(CloseReason::ResetByClient),
                    _ => Outcome::Open,
                };
            }
            Phase::Aborting(reason) => return Outcome::Closed(reason),
            Phase::Relaying => {}
        }
        let mut moved = false;
        let socket = shard
            .sockets
            .get_mut::<smoltcp::socket::tcp::Socket>(self.handle);

        // App -> server.
        while self.out_writable && socket.can_recv() {
            let stream = &mut self.stream;
            let common = &mut self.common;
            let dns = &mut self.dns;
            let result = socket.recv(|buf| match stream.write(buf) {
                Ok(n) => {
                    let sent = &buf[..n];
                    if common.inspect_stream(Direction::Up, sent) {
                        common.inspector_changed = true;
                    }
                    if let Some(dns) = dns {
                        let (pairing, finished) = (&mut dns.pairing, &mut dns.finished);
                        dns.up
                            .push(sent, |m| finished.extend(pairing.message(m, now)));
                    }
                    (n, Ok(n))
                }
                Err(e) => (0, Err(e)),
            });
            match result {
                Ok(Ok(n)) => {
                    reporter.bytes(&mut self.common, Direction::Up, n, now);
                    moved = true;
                }
                Ok(Err(e)) if e.kind() == io::ErrorKind::WouldBlock => self.out_writable = false,
                Ok(Err(e)) if e.kind() == io::ErrorKind::Interrupted => {}
                Ok(Err(e)) => return self.abort(shard, server_error(&e)),
                Err(_) => break,
            }
        }
        // The app's FIN, once everything before it reached the server.
        if !self.up_closed && app_sent_fin(socket.state()) && socket.recv_queue() == 0 {
            let _ = self.stream.shutdown_write();
            self.up_closed = true;
        }

        // Server -> app.
        while self.out_readable && !self.down_closed && socket.can_send() {
            let stream = &mut self.stream;
            let common = &mut self.common;
            let dns = &mut self.dns;
            let result = socket.send(|buf| match stream.read(buf) {
                Ok(0) => (0, ReadResult::Eof),
                Ok(n) => {
                    let got = &buf[..n];
                    if common.inspect_stream(Direction::Down, got) {
                        common.inspector_changed = true;
                    }
                    if let Some(dns) = dns {
                        let (pairing, finished) = (&mut dns.pairing, &mut dns.finished);
                        dns.down
                            .push(got, |m| finished.extend(pairing.message(m, now)));
                    }
                    (n, ReadResult::Data(n))
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => (0, ReadResult::Blocked),
                Err(e) => (0, ReadResult::Failed(e)),
            });
            match result {
                Ok(ReadResult::Data(n)) => {
                    reporter.bytes(&mut self.common, Direction::Down, n, now);
                    moved = true;
                }
                Ok(ReadResult::Eof) => {
                    self.down_closed = true;
                    // smoltcp sends the FIN after the data still queued.
                    socket.close();
                    moved = true;
                }
                Ok(ReadResult::Blocked) => self.out_readable = false,
                Ok(ReadResult::Failed(e)) if e.kind() == io::ErrorKind::Interrupted => {}
                Ok(ReadResult::Failed(e)) => return self.abort(shard, server_error(&e)),
                Err(_) => break,
            }
        }
        if moved {
            shard.dirty = true;
        }
        // smoltcp's timeout counts from the app's last packet whatever the socket holds, so it
        // would reset every connection idle for longer (a push channel between heartbeats). It
        // is only meant for data the app does not acknowledge (an app that vanished): armed
        // while bytes wait in the send ring, idle expiry takes care of the rest.
        let socket = shard.socket(self.handle);
        let waiting = socket.send_queue() > 0;
        if waiting != socket.timeout().is_some() {
            socket.set_timeout(waiting.then_some(APP_ACK_TIMEOUT));
        }

        let state = socket.state();
        match state {
            // Both FINs exchanged: the app is in FIN-WAIT/TIME-WAIT or got our last ACK.
            // Dropping the socket now skips smoltcp's 10 s TIME-WAIT.
            State::TimeWait => Outcome::Closed(CloseReason::Fin),
            State::Closed if self.up_closed && self.down_closed => {
                Outcome::Closed(CloseReason::Fin)
            }
            // A RST in SYN-RECEIVED (the app gave up between our SYN-ACK and its ACK, as
            // happy-eyeballs does) sends a passive socket back to LISTEN.
            State::Closed | State::Listen => {
                // Not a clean close: the app reset, or smoltcp gave up on it.
                self.stream.reset_on_close();
                Outcome::Closed(CloseReason::ResetByClient)
            }
            _ => Outcome::Open,
        }
    }

    /// Reset the app's side (smoltcp sends the RST at the next poll).
    pub fn abort(&mut self, shard: &mut Shard, reason: CloseReason) -> Outcome {
        shard.socket(self.handle).abort();
        shard.dirty = true;
        self.phase = Phase::Aborting(reason);
        Outcome::Again
    }
}

impl<S> TcpFlow<S> {
    /// Note a segment from the app (sequence number and payload length).
    pub fn saw_segment(&mut self, seq: u32, payload_len: usize) {
        self.rx_max_end = later(self.rx_max_end, seq.wrapping_add(payload_len as u32));
    }

    /// Bytes of ring pages this flow may have touched since its last trim.
    pub fn touched(&self) -> usize {
        let Some(buffers) = &self.buffers else {
            return 0;
        };
        buffers.rx_touched(self.common.record.bytes_up - self.trimmed_up)
            + buffers.tx_touched(self.common.record.bytes_down - self.trimmed_down)
    }

    /// Return the pages of empty rings to the system. The rx ring is empty only if smoltcp has
    /// nothing queued and no out-of-order segment can be waiting in it: every byte the app
    /// sent has been passed on. Returns the bytes released from the estimate.
    pub fn trim(&mut self, shard: &mut Shard) -> usize {
        let Some(buffers) = &self.buffers else {
            return 0;
        };
        if self.phase != Phase::Relaying {
            return 0;
        }
        let socket = shard.socket(self.handle);
        let mut released = 0;
        let up = self.common.record.bytes_up;
        let out_of_order =
            beyond_contiguous(self.rx_start, up, socket.recv_queue(), self.rx_max_end);
        if up != self.trimmed_up && socket.recv_queue() == 0 && !out_of_order {
            buffers.trim_rx();
            log::trace!("trimmed rx ring of flow {}", self.common.record.id);
            released += buffers.rx_touched(up - self.trimmed_up);
            self.trimmed_up = up;
        }
        let down = self.common.record.bytes_down;
        if down != self.trimmed_down && socket.send_queue() == 0 {
            buffers.trim_tx();
            released += buffers.tx_touched(down - self.trimmed_down);
            self.trimmed_down = down;
        }
        released
    }
}

/// The later of two sequence numbers (modulo 2^32, RFC 1982 style).
fn later(a: u32, b: u32) -> u32 {
    if (b.wrapping_sub(a) as i32) > 0 { b } else { a }
}

/// Whether the app sent bytes past what smoltcp holds in order (`start` + relayed + queued):
/// then out-of-order data may sit in the rx ring and its pages must be kept.
fn beyond_contiguous(start: u32, relayed: u64, queued: usize, max_end: u32) -> bool {
    let contiguous_end = start
        .wrapping_add(relayed as u32)
        .wrapping_add(queued as u32);
    (max_end.wrapping_sub(contiguous_end) as i32) > 0
}

/// The app has sent its FIN (smoltcp has received it).
fn app_sent_fin(state: State) -> bool {
    matches!(
        state,
        State::CloseWait | State::LastAck | State::Closing | State::TimeWait
    )
}

fn server_error(e: &io::Error) -> CloseReason {
    match e.kind() {
        io::ErrorKind::ConnectionReset
        | io::ErrorKind::ConnectionAborted
        | io::ErrorKind::BrokenPipe => CloseReason::ResetByServer,
        _ => CloseReason::Error,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sequence_tracking_survives_wraparound() {
        let start = u32::MAX - 100;
        // 300 bytes relayed across the wrap, nothing queued, nothing seen beyond: ring is free.
        let end = start.wrapping_add(300);
        assert!(!beyond_contiguous(start, 300, 0, end));
        // A segment past a hole: must not trim.
        assert!(beyond_contiguous(start, 300, 0, end.wrapping_add(1460)));
        // Queued bytes count as held in order.
        assert!(!beyond_contiguous(start, 200, 100, end));
        // Retransmissions of old data never move the high mark back.
        assert_eq!(later(end, start), end);
        assert_eq!(later(start, end), end);
        // More than 4 GiB relayed: only the low 32 bits matter, as in TCP.
        assert!(!beyond_contiguous(start, (1u64 << 32) + 300, 0, end));
    }
}
