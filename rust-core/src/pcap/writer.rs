//! Writing a live session as pcapng: raw IP packets, one comment per packet naming its owner
//! (`u-<uid> <app>`), readable by Wireshark and by `phonehome analyze`.
//!
//! The comment starts like PCAPdroid's (`u-<uid>`), so tools that know PCAPdroid's convention
//! find the uid; the app after a space is for people reading the capture.

use std::io::{self, Write};

use crate::flow::Millis;

use super::reader::linktype;

const SHB: u32 = 0x0a0d_0d0a;
const IDB: u32 = 1;
const EPB: u32 = 6;
const OPT_COMMENT: u16 = 1;
const OPT_SHB_USERAPPL: u16 = 4;
const SNAPLEN: u32 = 262_144;

pub struct PcapngWriter<W: Write> {
    out: W,
    block: Vec<u8>,
}

fn option(block: &mut Vec<u8>, code: u16, value: &[u8]) {
    // Option values are at most 65535 bytes; longer ones are cut.
    let value = &value[..value.len().min(u16::MAX as usize)];
    block.extend(code.to_le_bytes());
    block.extend((value.len() as u16).to_le_bytes());
    block.extend(value);
    block.resize(block.len().next_multiple_of(4), 0);
}

/// Wraps `body` as a block of `block_type` (length fields before and after).
fn finish_block(out: &mut impl Write, block_type: u32, body: &[u8]) -> io::Result<()> {
    let total =
        u32::try_from(12 + body.len()).map_err(|_| io::Error::other("pcapng block too large"))?;
    out.write_all(&block_type.to_le_bytes())?;
    out.write_all(&total.to_le_bytes())?;
    out.write_all(body)?;
    out.write_all(&total.to_le_bytes())
}

impl<W: Write> PcapngWriter<W> {
    /// Writes the section header and one raw-IP interface.
    pub fn new(mut out: W) -> io::Result<PcapngWriter<W>> {
        let mut body = Vec::with_capacity(64);
        body.extend(0x1a2b_3c4du32.to_le_bytes());
        body.extend(1u16.to_le_bytes());
        body.extend(0u16.to_le_bytes());
        body.extend(u64::MAX.to_le_bytes()); // section length unknown
        let app = format!("PhoneHome {}", env!("CARGO_PKG_VERSION"));
        option(&mut body, OPT_SHB_USERAPPL, app.as_bytes());
        body.extend([0u8; 4]); // opt_endofopt
        finish_block(&mut out, SHB, &body)?;

        let mut body = Vec::with_capacity(16);
        body.extend((linktype::RAW as u16).to_le_bytes());
        body.extend(0u16.to_le_bytes());
        body.extend(SNAPLEN.to_le_bytes());
        finish_block(&mut out, IDB, &body)?;
        Ok(PcapngWriter {
            out,
            block: Vec::with_capacity(2048),
        })
    }

    /// One IP packet seen at `ts` (ms since the epoch), owned by `uid` / `app` when known.
    /// Packets longer than the snap length are cut to it (the original length is recorded).
    pub fn write_packet(
        &mut self,
        ts: Millis,
        data: &[u8],
        uid: Option<u32>,
        app: Option<&str>,
    ) -> io::Result<()> {
        let micros = u64::try_from(ts).unwrap_or(0).saturating_mul(1000);
        let caplen = data.len().min(SNAPLEN as usize);
        let orig_len = u32::try_from(data.len()).unwrap_or(u32::MAX);
        let b = &mut self.block;
        b.clear();
        b.extend(0u32.to_le_bytes()); // interface 0
        b.extend(((micros >> 32) as u32).to_le_bytes());
        b.extend((micros as u32).to_le_bytes());
        b.extend((caplen as u32).to_le_bytes());
        b.extend(orig_len.to_le_bytes());
        b.extend(&data[..caplen]);
        b.resize(b.len().next_multiple_of(4), 0);
        if let Some(uid) = uid {
            let comment = match app.filter(|a| !a.is_empty()) {
                Some(app) => format!("u-{uid} {app}"),
                None => format!("u-{uid}"),
            };
            option(b, OPT_COMMENT, comment.as_bytes());
            b.extend([0u8; 4]);
        }
        finish_block(&mut self.out, EPB, &self.block)
    }

    pub fn flush(&mut self) -> io::Result<()> {
        self.out.flush()
    }

    /// Flushes and returns the output.
    pub fn into_inner(mut self) -> io::Result<W> {
        self.out.flush()?;
        Ok(self.out)
    }
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;
    use std::sync::mpsc;

    use super::*;
    use crate::flow::Event;
    use crate::pcap::Observer;
    use crate::pcap::reader::{CaptureReader, Record};
    use crate::pcap::testutil::*;

    #[test]
    fn round_trip_through_reader_and_observer() {
        let phone = Ipv4Addr::new(198, 18, 0, 2);
        let server = Ipv4Addr::new(198, 18, 1, 1);
        let mut w = PcapngWriter::new(Vec::new()).unwrap();
        let packets = [
            ipv4(phone, server, 6, &tcp(40000, 443, 1, 0, SYN, b"")),
            ipv4(server, phone, 6, &tcp(443, 40000, 9, 2, SYN | ACK, b"")),
            ipv4(phone, server, 6, &tcp(40000, 443, 2, 10, ACK | PSH, b"abc")),
        ];
        for (i, p) in packets.iter().enumerate() {
            w.write_packet(
                1_700_000_000_123 + i as i64,
                p,
                Some(10_200),
                Some("com.miui.analytics"),
            )
            .unwrap();
        }
        w.write_packet(
            1_700_000_000_200,
            &ipv4(phone, server, 17, &udp(5000, 53, b"q")),
            None,
            None,
        )
        .unwrap();
        let file = w.into_inner().unwrap();

        let mut reader = CaptureReader::new(&file[..]).unwrap();
        let Some(Record::Packet(first)) = reader.next_record().unwrap() else {
            panic!("no packet")
        };
        assert_eq!(first.ts_ns, 1_700_000_000_123_000_000);
        assert_eq!(first.data, &packets[0][..]);
        assert_eq!(first.comment, Some("u-10200 com.miui.analytics"));

        let (tx, rx) = mpsc::channel();
        let mut obs = Observer::new(tx);
        let mut reader = CaptureReader::new(&file[..]).unwrap();
        while let Some(rec) = reader.next_record().unwrap() {
            obs.on_record(&rec);
        }
        let stats = obs.finish();
        assert_eq!((stats.frames, stats.flows), (4, 2));
        let events: Vec<Event> = rx.try_iter().collect();
        assert!(events.contains(&Event::App {
            uid: 10_200,
            name: "com.miui.analytics".into()
        }));
        let tcp_flow = events
            .iter()
            .find_map(|e| match e {
                Event::FlowClosed(r) if r.key.dst.port() == 443 => Some(r),
                _ => None,
            })
            .unwrap();
        assert_eq!(tcp_flow.uid, Some(10_200));
        assert_eq!(tcp_flow.packets_up + tcp_flow.packets_down, 3);
        assert_eq!(tcp_flow.first_seen, 1_700_000_000_123);
    }
}
