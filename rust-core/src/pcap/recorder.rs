//! Recording a live session as pcapng on its own thread (`phonehome capture --pcapng FILE`).
//!
//! The engine offers a copy of every tun packet through an `engine::PacketTap`; the driver
//! passes the engine's events on with [`RecorderNotes::note`], which tells the recorder each
//! flow's owner (uid) and each uid's app name. Owners are looked up off the packet path and
//! arrive a few milliseconds after a flow's first packets, so packets wait here (at most
//! [`HOLD_MS`], and [`MAX_HELD`] packets) until their flow's owner and that owner's app name are
//! known; then they are written in the order they crossed the tun with a `u-<uid> <app>`
//! comment ([`PcapngWriter`]). The name is waited for too because an owner found at once on
//! the packet path is named later by the owner thread: a short flow's packets would otherwise
//! all go out without it, and its replay would not know the app the live capture named.

use std::collections::{HashMap, HashSet, VecDeque};
use std::fs::File;
use std::io::{self, BufWriter};
use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender, TryRecvError};
use std::thread::JoinHandle;
use std::time::Duration;

use crate::engine::TappedPacket;
use crate::flow::{Event, FlowKey, FlowTable, Millis, Proto};

use super::ip::{parse_ip, parse_tcp, parse_udp};
use super::writer::PcapngWriter;

/// The longest a packet waits for its flow's owner before it is written without one.
pub const HOLD_MS: Millis = 1_000;
/// Packets waiting for an owner, at most; beyond this the oldest is written at once.
pub const MAX_HELD: usize = 65_536;
/// How often the thread looks at the clock when no packet comes.
const TICK: Duration = Duration::from_millis(50);

/// Owner facts from the engine's events.
enum Note {
    Owner { key: Endpoints, uid: u32 },
    App { uid: u32, name: String },
}

/// What the recorder wrote.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RecorderStats {
    pub packets: u64,
    /// Packets written with a uid comment.
    pub with_owner: u64,
}

/// The driver's end: passes owner facts on. Cheap to clone; the recorder finishes once every
/// clone is dropped (or [`Recorder::finish`] is called after the others are gone).
#[derive(Clone)]
pub struct RecorderNotes {
    tx: Sender<Note>,
}

impl RecorderNotes {
    /// Take what the recorder needs from one engine event (flow owners, app names).
    pub fn note(&self, event: &Event) {
        let note = match event {
            Event::Flow(record) | Event::FlowClosed(record) => match record.uid {
                Some(uid) => Note::Owner {
                    key: Endpoints::of_flow(&record.key),
                    uid,
                },
                None => return,
            },
            Event::App { uid, name } => Note::App {
                uid: *uid,
                name: name.clone(),
            },
            Event::Dns(_) => return,
        };
        let _ = self.tx.send(note);
    }
}

/// A running recorder thread.
pub struct Recorder {
    notes: RecorderNotes,
    thread: JoinHandle<io::Result<RecorderStats>>,
}

impl Recorder {
    /// Creates `path` (the section header is written at once, so a bad path fails here) and
    /// starts writing the packets of `packets`.
    pub fn start(path: &Path, packets: Receiver<TappedPacket>) -> io::Result<Recorder> {
        let file = File::create(path)
            .map_err(|e| io::Error::new(e.kind(), format!("creating {}: {e}", path.display())))?;
        let writer = PcapngWriter::new(BufWriter::with_capacity(1 << 20, file))?;
        let (tx, notes) = mpsc::channel();
        let thread = std::thread::Builder::new()
            .name("phonehome-pcapng".into())
            .spawn(move || run(writer, packets, notes))?;
        Ok(Recorder {
            notes: RecorderNotes { tx },
            thread,
        })
    }

    pub fn notes(&self) -> RecorderNotes {
        self.notes.clone()
    }

    /// Call once the engine has stopped and every other [`RecorderNotes`] is dropped: writes
    /// what is left (with the owners known by then), flushes, and returns what was written.
    pub fn finish(self) -> io::Result<RecorderStats> {
        drop(self.notes);
        self.thread
            .join()
            .map_err(|_| io::Error::other("the pcapng thread panicked"))?
    }
}

struct State<W: io::Write> {
    writer: PcapngWriter<W>,
    held: VecDeque<TappedPacket>,
    owners: FlowTable<Endpoints, u32>,
    apps: HashMap<u32, String>,
    /// UIDs whose name did not come within [`HOLD_MS`]: their packets no longer wait for one.
    nameless: HashSet<u32>,
    stats: RecorderStats,
}

fn run<W: io::Write>(
    writer: PcapngWriter<W>,
    packets: Receiver<TappedPacket>,
    notes: Receiver<Note>,
) -> io::Result<RecorderStats> {
    let mut state = State {
        writer,
        held: VecDeque::new(),
        owners: FlowTable::default(),
        apps: HashMap::new(),
        nameless: HashSet::new(),
        stats: RecorderStats::default(),
    };
    let mut packets_open = true;
    loop {
        if packets_open {
            match packets.recv_timeout(TICK) {
                Ok(packet) => state.held.push_back(packet),
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => packets_open = false,
            }
            while state.held.len() < MAX_HELD {
                match packets.try_recv() {
                    Ok(packet) => state.held.push_back(packet),
                    Err(TryRecvError::Empty) => break,
                    Err(TryRecvError::Disconnected) => {
                        packets_open = false;
                        break;
                    }
                }
            }
        } else {
            std::thread::sleep(TICK);
        }
        let notes_open = state.take_notes(&notes);
        if !notes_open {
            // The driver is done (the engine has stopped): write everything left.
            state.held.extend(packets.try_iter());
            state.write_ready(Millis::MAX)?;
            state.writer.flush()?;
            return Ok(state.stats);
        }
        state.write_ready(now_ms())?;
    }
}

impl<W: io::Write> State<W> {
    /// Applies every note waiting; false once the driver has dropped every sender.
    fn take_notes(&mut self, notes: &Receiver<Note>) -> bool {
        loop {
            match notes.try_recv() {
                Ok(Note::Owner { key, uid }) => {
                    self.owners.insert(key, uid);
                }
                Ok(Note::App { uid, name }) => {
                    self.apps.insert(uid, name);
                }
                Err(TryRecvError::Empty) => return true,
                Err(TryRecvError::Disconnected) => return false,
            }
        }
    }

    /// Writes held packets in order while the first one's owner and its name are known, it has
    /// waited [`HOLD_MS`] by `now`, or too many are held.
    fn write_ready(&mut self, now: Millis) -> io::Result<()> {
        while let Some(packet) = self.held.front() {
            let uid = Endpoints::of_packet(&packet.data).and_then(|key| self.owner(&key));
            let expired = now.saturating_sub(packet.ts) >= HOLD_MS || self.held.len() > MAX_HELD;
            let app = uid.and_then(|uid| self.apps.get(&uid)).map(String::as_str);
            let named = app.is_some() || uid.is_some_and(|u| self.nameless.contains(&u));
            if !named && !expired {
                return Ok(());
            }
            if let (Some(uid), None) = (uid, app) {
                self.nameless.insert(uid);
            }
            self.writer
                .write_packet(packet.ts, &packet.data, uid, app)?;
            self.stats.packets += 1;
            self.stats.with_owner += u64::from(uid.is_some());
            self.held.pop_front();
        }
        Ok(())
    }

    /// The owner of a packet's flow, in either direction.
    fn owner(&self, key: &Endpoints) -> Option<u32> {
        self.owners
            .get(key)
            .or_else(|| self.owners.get(&key.reversed()))
            .copied()
    }
}

/// A flow's protocol and endpoints as the recorder matches them. ICMP flows match by
/// addresses only (the engine keys them by echo identifier, a packet carries it only in
/// echo messages).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
struct Endpoints {
    proto: Proto,
    src: SocketAddr,
    dst: SocketAddr,
}

impl Endpoints {
    fn new(proto: Proto, src: SocketAddr, dst: SocketAddr) -> Endpoints {
        let (src, dst) = match proto {
            Proto::Icmp => (SocketAddr::new(src.ip(), 0), SocketAddr::new(dst.ip(), 0)),
            _ => (src, dst),
        };
        Endpoints {
            proto,
            src: SocketAddr::new(src.ip().to_canonical(), src.port()),
            dst: SocketAddr::new(dst.ip().to_canonical(), dst.port()),
        }
    }

    fn of_flow(key: &FlowKey) -> Endpoints {
        Endpoints::new(key.proto, key.src, key.dst)
    }

    fn of_packet(data: &[u8]) -> Option<Endpoints> {
        let ip = parse_ip(data).ok()?;
        let at = |addr: IpAddr, port: u16| SocketAddr::new(addr, port);
        let (proto, sport, dport) = match ip.proto {
            6 => {
                let (tcp, _) = parse_tcp(ip.payload).ok()?;
                (Proto::Tcp, tcp.src_port, tcp.dst_port)
            }
            17 => {
                let (sport, dport, _) = parse_udp(ip.payload).ok()?;
                (Proto::Udp, sport, dport)
            }
            1 | 58 => (Proto::Icmp, 0, 0),
            _ => return None,
        };
        Some(Endpoints::new(proto, at(ip.src, sport), at(ip.dst, dport)))
    }

    fn reversed(&self) -> Endpoints {
        Endpoints {
            proto: self.proto,
            src: self.dst,
            dst: self.src,
        }
    }
}

fn now_ms() -> Millis {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| Millis::try_from(d.as_millis()).unwrap_or(Millis::MAX))
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;

    use super::*;
    use crate::engine::PacketTap;
    use crate::flow::{FlowId, FlowRecord};
    use crate::pcap::reader::{CaptureReader, Record};
    use crate::pcap::testutil::*;

    fn comments(bytes: &[u8]) -> Vec<Option<String>> {
        let mut reader = CaptureReader::new(bytes).unwrap();
        let mut out = Vec::new();
        while let Some(record) = reader.next_record().unwrap() {
            if let Record::Packet(p) = record {
                out.push(p.comment.map(str::to_string));
            }
        }
        out
    }

    #[test]
    fn packets_wait_for_their_owner_and_keep_their_order() {
        let phone = Ipv4Addr::new(10, 215, 173, 1);
        let server = Ipv4Addr::new(198, 18, 0, 1);
        let syn = ipv4(phone, server, 6, &tcp(40000, 80, 1, 0, SYN, b""));
        let synack = ipv4(server, phone, 6, &tcp(80, 40000, 9, 2, SYN | ACK, b""));
        let other = ipv4(phone, server, 17, &udp(5000, 53, b"q"));
        let path =
            std::env::temp_dir().join(format!("phonehome-rec-{}.pcapng", std::process::id()));
        let (tap, packets) = PacketTap::bounded(16);
        let recorder = Recorder::start(&path, packets).unwrap();
        let notes = recorder.notes();
        let now = now_ms();
        tap.offer(now, &syn);
        tap.offer(now, &synack);
        // Old enough to be written without an owner at once.
        tap.offer(now - HOLD_MS, &other);
        // The owner comes later, as from the owner thread; until then the TCP packets wait and
        // the UDP packet, behind them, waits too (order is kept).
        std::thread::sleep(Duration::from_millis(200));
        let mut record = FlowRecord::new(
            7 as FlowId,
            FlowKey {
                proto: Proto::Tcp,
                src: "10.215.173.1:40000".parse().unwrap(),
                dst: "198.18.0.1:80".parse().unwrap(),
            },
            now,
        );
        record.uid = Some(1000);
        notes.note(&Event::App {
            uid: 1000,
            name: "alice".into(),
        });
        notes.note(&Event::Flow(record));
        drop(notes);
        drop(tap);
        let stats = recorder.finish().unwrap();
        assert_eq!(
            stats,
            RecorderStats {
                packets: 3,
                with_owner: 2
            }
        );
        assert_eq!(
            comments(&std::fs::read(&path).unwrap()),
            vec![
                Some("u-1000 alice".into()),
                Some("u-1000 alice".into()),
                None
            ]
        );
        std::fs::remove_file(&path).unwrap();
    }

    fn state() -> State<Vec<u8>> {
        State {
            writer: PcapngWriter::new(Vec::new()).unwrap(),
            held: VecDeque::new(),
            owners: FlowTable::default(),
            apps: HashMap::new(),
            nameless: HashSet::new(),
            stats: RecorderStats::default(),
        }
    }

    fn udp_packet(ts: Millis, sport: u16) -> TappedPacket {
        let phone = Ipv4Addr::new(10, 215, 173, 1);
        let server = Ipv4Addr::new(198, 18, 0, 1);
        TappedPacket {
            ts,
            data: ipv4(phone, server, 17, &udp(sport, 7, b"ping")),
        }
    }

    /// Holds `packet` and makes `uid` its flow's owner.
    fn hold_owned(st: &mut State<Vec<u8>>, packet: TappedPacket, uid: u32) {
        let key = Endpoints::of_packet(&packet.data).unwrap();
        st.owners.insert(key, uid);
        st.held.push_back(packet);
    }

    /// What `st` wrote: its counts and every packet's comment.
    fn written(st: State<Vec<u8>>) -> (RecorderStats, Vec<Option<String>>) {
        (st.stats, comments(&st.writer.into_inner().unwrap()))
    }

    /// An owner found on the packet path is named by the owner thread afterwards: the packets
    /// wait for the name, so a short flow's replay names the app as the live capture did.
    #[test]
    fn packets_with_a_known_owner_wait_for_its_name() {
        let mut st = state();
        hold_owned(&mut st, udp_packet(0, 5000), 4242);
        hold_owned(&mut st, udp_packet(1, 5000), 4242);
        st.write_ready(20).unwrap();
        assert_eq!(st.stats.packets, 0, "written before the owner's name came");
        st.apps.insert(4242, "uid:4242".into());
        st.write_ready(30).unwrap();
        let named = Some("u-4242 uid:4242".to_owned());
        let counts = RecorderStats {
            packets: 2,
            with_owner: 2,
        };
        assert_eq!(written(st), (counts, vec![named.clone(), named]));
    }

    /// A UID whose name never comes costs its first packet HOLD_MS, not every packet.
    #[test]
    fn a_name_that_never_comes_is_waited_for_once() {
        let mut st = state();
        hold_owned(&mut st, udp_packet(0, 5000), 4242);
        st.write_ready(HOLD_MS - 1).unwrap();
        assert_eq!(st.stats.packets, 0);
        st.write_ready(HOLD_MS).unwrap();
        assert_eq!(st.stats.packets, 1);
        hold_owned(&mut st, udp_packet(HOLD_MS + 5, 5001), 4242);
        st.write_ready(HOLD_MS + 5).unwrap();
        let unnamed = Some("u-4242".to_owned());
        let counts = RecorderStats {
            packets: 2,
            with_owner: 2,
        };
        assert_eq!(written(st), (counts, vec![unnamed.clone(), unnamed]));
    }
}
