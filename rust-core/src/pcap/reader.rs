//! A streaming reader for pcap (both byte orders, micro- and nanosecond) and pcapng (several
//! sections and interfaces, EPB/SPB/obsolete PB, packet comments, PCAPdroid's uid-map custom
//! block).
//!
//! Hand-written rather than a crate: the formats are small, and we need what the crates did not
//! give together: the byte offset of every record for error messages, the PCAPdroid custom block,
//! and a reader that keeps every packet read before a truncated or corrupt tail.

use std::io::{self, Read};
use std::ops::Range;

/// Link types the observer decodes (see [`super::link`]); others are reported and skipped.
pub mod linktype {
    pub const NULL: u32 = 0;
    pub const ETHERNET: u32 = 1;
    pub const PPP: u32 = 9;
    pub const PPP_HDLC: u32 = 50;
    pub const RAW: u32 = 101;
    pub const LOOP: u32 = 108;
    pub const LINUX_SLL: u32 = 113;
    pub const IPV4: u32 = 228;
    pub const IPV6: u32 = 229;
    pub const LINUX_SLL2: u32 = 276;
}

/// PCAPdroid's IANA private enterprise number, used in its pcapng custom blocks.
pub const PCAPDROID_PEN: u32 = 62652;

const PCAP_MAGIC_MICRO: u32 = 0xa1b2_c3d4;
const PCAP_MAGIC_NANO: u32 = 0xa1b2_3c4d;
const PCAPNG_SHB: u32 = 0x0a0d_0d0a;
const PCAPNG_BYTE_ORDER_MAGIC: u32 = 0x1a2b_3c4d;

/// Larger blocks or packets than this are treated as corruption rather than allocated.
const MAX_RECORD: usize = 16 * 1024 * 1024;

/// Why reading stopped early. `offset` is the byte offset in the file of the record that failed.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    #[error("not a pcap or pcapng file (magic {magic:#010x})")]
    NotACapture { magic: u32 },
    #[error("file truncated at byte offset {offset}: {what}")]
    Truncated { offset: u64, what: &'static str },
    #[error("corrupt data at byte offset {offset}: {message}")]
    Corrupt { offset: u64, message: String },
    #[error("read error at byte offset {offset}: {source}")]
    Io { offset: u64, source: io::Error },
}

impl ReadError {
    /// Byte offset of the failing record (0 for a bad header).
    pub fn offset(&self) -> u64 {
        match self {
            ReadError::NotACapture { .. } => 0,
            ReadError::Truncated { offset, .. }
            | ReadError::Corrupt { offset, .. }
            | ReadError::Io { offset, .. } => *offset,
        }
    }
}

/// One captured packet, borrowed from the reader's buffer.
#[derive(Debug, PartialEq, Eq)]
pub struct Packet<'a> {
    /// Nanoseconds since the Unix epoch.
    pub ts_ns: i64,
    pub linktype: u32,
    pub data: &'a [u8],
    /// Length on the wire (can exceed `data.len()` when the snap length cut it).
    pub orig_len: u32,
    /// pcapng interface index within its section (0 for pcap).
    pub interface: u32,
    /// The packet comment (pcapng `opt_comment`), e.g. PCAPdroid's `u-10123`.
    pub comment: Option<&'a str>,
    /// Byte offset of the record in the file.
    pub offset: u64,
}

/// What the reader yields.
#[derive(Debug, PartialEq, Eq)]
pub enum Record<'a> {
    Packet(Packet<'a>),
    /// PCAPdroid's pcapng uid -> app block.
    UidMap {
        uid: u32,
        package: String,
        app: String,
    },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    Pcap,
    Pcapng,
}

#[derive(Clone, Copy, Debug)]
struct Interface {
    linktype: u32,
    /// Timestamp units per second.
    units_per_sec: u64,
    offset_sec: i64,
    snaplen: u32,
}

enum State {
    Pcap {
        big_endian: bool,
        nanos: bool,
        linktype: u32,
    },
    Pcapng {
        big_endian: bool,
        interfaces: Vec<Interface>,
    },
}

pub struct CaptureReader<R: Read> {
    src: R,
    offset: u64,
    state: State,
    buf: Vec<u8>,
    /// A corrupt record ends the file: nothing after it is trusted.
    failed: bool,
}

// Callers check the bounds first; the slicing here only restates them.
fn u16_at(b: &[u8], at: usize, be: bool) -> u16 {
    let mut v = [0u8; 2];
    v.copy_from_slice(&b[at..][..2]);
    if be {
        u16::from_be_bytes(v)
    } else {
        u16::from_le_bytes(v)
    }
}

fn u32_at(b: &[u8], at: usize, be: bool) -> u32 {
    let mut v = [0u8; 4];
    v.copy_from_slice(&b[at..][..4]);
    if be {
        u32::from_be_bytes(v)
    } else {
        u32::from_le_bytes(v)
    }
}

/// Fills `buf` completely; Ok(false) when the source ended before the first byte,
/// Err(Truncated) when it ended in the middle.
fn read_full<R: Read>(
    src: &mut R,
    buf: &mut [u8],
    offset: u64,
    what: &'static str,
) -> Result<bool, ReadError> {
    let mut filled = 0;
    while filled < buf.len() {
        match src.read(&mut buf[filled..]) {
            Ok(0) if filled == 0 => return Ok(false),
            Ok(0) => return Err(ReadError::Truncated { offset, what }),
            Ok(n) => filled = filled.saturating_add(n),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(source) => return Err(ReadError::Io { offset, source }),
        }
    }
    Ok(true)
}

fn units_per_sec(tsresol: u8) -> Option<u64> {
    let exp = u32::from(tsresol & 0x7f);
    if tsresol & 0x80 == 0 {
        10u64.checked_pow(exp)
    } else {
        2u64.checked_pow(exp)
    }
}

/// Nanoseconds since the epoch, saturating at the ends of i64 (a corrupt offset or timestamp
/// gives a wrong time, never a panic).
fn to_ns(ts: u64, units_per_sec: u64, offset_sec: i64) -> i64 {
    let units = units_per_sec.max(1);
    let secs = ts.checked_div(units).unwrap_or(0);
    let frac = ts.checked_rem(units).unwrap_or(0);
    // frac < units <= u64::MAX, so frac * 10^9 fits in u128 and the quotient is below 10^9.
    let ns = (u128::from(frac).saturating_mul(1_000_000_000))
        .checked_div(u128::from(units))
        .unwrap_or(0);
    let total = i128::from(secs)
        .saturating_add(i128::from(offset_sec))
        .saturating_mul(1_000_000_000)
        .saturating_add(i128::try_from(ns).unwrap_or(0));
    i64::try_from(total).unwrap_or(if total < 0 { i64::MIN } else { i64::MAX })
}

/// Walks the pcapng options in `b` from `start`, yielding each option's code and the range of
/// its value in `b`; stops at opt_endofopt or a malformed option.
fn options(b: &[u8], start: usize, be: bool) -> impl Iterator<Item = (u16, Range<usize>)> {
    let mut at = Some(start);
    std::iter::from_fn(move || {
        let here = at?;
        let value_start = here.checked_add(4).filter(|v| *v <= b.len())?;
        let code = u16_at(b, here, be);
        let len = usize::from(u16_at(b, here.checked_add(2)?, be));
        let value_end = value_start.checked_add(len).filter(|e| *e <= b.len())?;
        if code == 0 {
            return None;
        }
        at = value_start.checked_add(len.checked_next_multiple_of(4)?);
        Some((code, value_start..value_end))
    })
}

impl<R: Read> CaptureReader<R> {
    /// Reads the file header (pcap) or first section header (pcapng).
    pub fn new(mut src: R) -> Result<CaptureReader<R>, ReadError> {
        let mut magic = [0u8; 4];
        if !read_full(&mut src, &mut magic, 0, "empty file")? {
            return Err(ReadError::Truncated {
                offset: 0,
                what: "empty file",
            });
        }
        let le = u32::from_le_bytes(magic);
        let be = u32::from_be_bytes(magic);
        if le == PCAPNG_SHB {
            let mut reader = CaptureReader {
                src,
                offset: 0,
                state: State::Pcapng {
                    big_endian: false,
                    interfaces: Vec::new(),
                },
                buf: Vec::with_capacity(65_536),
                failed: false,
            };
            reader.read_section_header()?;
            return Ok(reader);
        }
        let (big_endian, nanos) = if le == PCAP_MAGIC_MICRO {
            (false, false)
        } else if le == PCAP_MAGIC_NANO {
            (false, true)
        } else if be == PCAP_MAGIC_MICRO {
            (true, false)
        } else if be == PCAP_MAGIC_NANO {
            (true, true)
        } else {
            return Err(ReadError::NotACapture { magic: be });
        };
        let mut rest = [0u8; 20];
        if !read_full(&mut src, &mut rest, 4, "pcap file header")? {
            return Err(ReadError::Truncated {
                offset: 4,
                what: "pcap file header",
            });
        }
        // The link type's upper bits carry FCS flags (LINKTYPE_FCS...); the type is the low 16.
        let linktype = u32_at(&rest, 16, big_endian) & 0xffff;
        Ok(CaptureReader {
            src,
            offset: 24,
            state: State::Pcap {
                big_endian,
                nanos,
                linktype,
            },
            buf: Vec::with_capacity(65_536),
            failed: false,
        })
    }

    pub fn format(&self) -> Format {
        match self.state {
            State::Pcap { .. } => Format::Pcap,
            State::Pcapng { .. } => Format::Pcapng,
        }
    }

    /// Bytes consumed so far (for progress and error reports).
    pub fn offset(&self) -> u64 {
        self.offset
    }

    /// The next packet or PCAPdroid uid map; Ok(None) at a clean end of file. After an error,
    /// every later call returns Ok(None): what was read before stays valid.
    pub fn next_record(&mut self) -> Result<Option<Record<'_>>, ReadError> {
        if self.failed {
            return Ok(None);
        }
        let result = match self.state {
            State::Pcap { .. } => self.next_pcap_len(),
            State::Pcapng { .. } => self.next_pcapng_block(),
        };
        match result {
            Err(e) => {
                self.failed = true;
                Err(e)
            }
            Ok(None) => Ok(None),
            Ok(Some(parsed)) => Ok(Some(self.materialize(parsed))),
        }
    }

    /// Reads the next pcap record into `buf`.
    fn next_pcap_len(&mut self) -> Result<Option<Parsed>, ReadError> {
        let State::Pcap {
            big_endian,
            nanos,
            linktype,
        } = self.state
        else {
            return Ok(None);
        };
        let at = self.offset;
        let mut hdr = [0u8; 16];
        if !read_full(&mut self.src, &mut hdr, at, "pcap record header")? {
            return Ok(None);
        }
        let sec = u32_at(&hdr, 0, big_endian);
        let frac = u32_at(&hdr, 4, big_endian);
        let incl = u32_at(&hdr, 8, big_endian) as usize;
        let orig = u32_at(&hdr, 12, big_endian);
        if incl > MAX_RECORD {
            return Err(ReadError::Corrupt {
                offset: at,
                message: format!("record length {incl} is implausible"),
            });
        }
        self.buf.resize(incl, 0);
        if !read_full(&mut self.src, &mut self.buf, at, "pcap packet data")? && incl > 0 {
            return Err(ReadError::Truncated {
                offset: at,
                what: "pcap packet data",
            });
        }
        self.offset = at.saturating_add(16).saturating_add(incl as u64);
        let ns_per_unit: i64 = if nanos { 1 } else { 1000 };
        let ts_ns = i64::from(sec)
            .saturating_mul(1_000_000_000)
            .saturating_add(i64::from(frac).saturating_mul(ns_per_unit));
        Ok(Some(Parsed::Packet {
            ts_ns,
            linktype,
            data: 0..incl,
            orig_len: orig,
            interface: 0,
            comment: None,
            offset: at,
        }))
    }

    fn read_section_header(&mut self) -> Result<(), ReadError> {
        let at = self.offset;
        let mut hdr = [0u8; 8];
        if !read_full(&mut self.src, &mut hdr, at, "pcapng section header")? {
            return Err(ReadError::Truncated {
                offset: at,
                what: "pcapng section header",
            });
        }
        let bom = [hdr[4], hdr[5], hdr[6], hdr[7]];
        let big_endian = if u32::from_le_bytes(bom) == PCAPNG_BYTE_ORDER_MAGIC {
            false
        } else if u32::from_be_bytes(bom) == PCAPNG_BYTE_ORDER_MAGIC {
            true
        } else {
            return Err(ReadError::Corrupt {
                offset: at,
                message: "pcapng section header has no byte-order magic".into(),
            });
        };
        let total = u32_at(&hdr, 0, big_endian) as usize;
        if total < 28 || !total.is_multiple_of(4) || total > MAX_RECORD {
            return Err(ReadError::Corrupt {
                offset: at,
                message: format!("pcapng section header length {total} is invalid"),
            });
        }
        // The rest of the block: version, section length, options, trailing length.
        self.read_block_rest(at, total, 12, big_endian, "pcapng section header")?;
        self.state = State::Pcapng {
            big_endian,
            interfaces: Vec::new(),
        };
        Ok(())
    }

    /// Reads the rest of the pcapng block at `at`, of length `total`, after its first
    /// `already_read` bytes, into `buf`; checks the trailing copy of the length and moves past it.
    fn read_block_rest(
        &mut self,
        at: u64,
        total: usize,
        already_read: usize,
        big_endian: bool,
        what: &'static str,
    ) -> Result<(), ReadError> {
        // Callers pass total >= already_read + 4; checked anyway, as a corrupt length, not a panic.
        let rest = total.saturating_sub(already_read);
        let trailer_at = rest.checked_sub(4).ok_or_else(|| ReadError::Corrupt {
            offset: at,
            message: format!("pcapng block length {total} is too short"),
        })?;
        self.buf.resize(rest, 0);
        if !read_full(&mut self.src, &mut self.buf, at, what)? {
            return Err(ReadError::Truncated { offset: at, what });
        }
        let trailer = u32_at(&self.buf, trailer_at, big_endian) as usize;
        if trailer != total {
            return Err(ReadError::Corrupt {
                offset: at,
                message: format!("pcapng block length mismatch ({total} vs {trailer})"),
            });
        }
        self.offset = at.saturating_add(total as u64);
        Ok(())
    }

    fn next_pcapng_block(&mut self) -> Result<Option<Parsed>, ReadError> {
        loop {
            let at = self.offset;
            let mut type_bytes = [0u8; 4];
            if !read_full(&mut self.src, &mut type_bytes, at, "pcapng block header")? {
                return Ok(None);
            }
            if u32::from_le_bytes(type_bytes) == PCAPNG_SHB {
                self.read_section_header()?;
                continue;
            }
            let State::Pcapng { big_endian: be, .. } = self.state else {
                return Ok(None);
            };
            let mut len_bytes = [0u8; 4];
            if !read_full(&mut self.src, &mut len_bytes, at, "pcapng block header")? {
                return Err(ReadError::Truncated {
                    offset: at,
                    what: "pcapng block header",
                });
            }
            let block_type = if be {
                u32::from_be_bytes(type_bytes)
            } else {
                u32::from_le_bytes(type_bytes)
            };
            let total = u32_at(&len_bytes, 0, be) as usize;
            if total < 12 || !total.is_multiple_of(4) || total > MAX_RECORD {
                return Err(ReadError::Corrupt {
                    offset: at,
                    message: format!("pcapng block length {total} is invalid"),
                });
            }
            self.read_block_rest(at, total, 8, be, "pcapng block body")?;
            let body_len = total.saturating_sub(12);
            if let Some(parsed) = self.parse_block(block_type, body_len, at, be)? {
                return Ok(Some(parsed));
            }
        }
    }

    /// Interprets the block body in `buf[..body_len]`. Ok(None) for blocks that yield nothing.
    fn parse_block(
        &mut self,
        block_type: u32,
        body_len: usize,
        at: u64,
        be: bool,
    ) -> Result<Option<Parsed>, ReadError> {
        let corrupt = |message: &str| ReadError::Corrupt {
            offset: at,
            message: message.into(),
        };
        let body = &self.buf[..body_len];
        let State::Pcapng { interfaces, .. } = &mut self.state else {
            return Ok(None);
        };
        match block_type {
            // Interface Description Block.
            1 => {
                if body.len() < 8 {
                    return Err(corrupt("interface description block too short"));
                }
                let mut iface = Interface {
                    linktype: u32::from(u16_at(body, 0, be)),
                    units_per_sec: 1_000_000,
                    offset_sec: 0,
                    snaplen: u32_at(body, 4, be),
                };
                for (code, range) in options(body, 8, be) {
                    match (code, &body[range]) {
                        (9, [resol]) => {
                            iface.units_per_sec =
                                units_per_sec(*resol).filter(|u| *u > 0).ok_or_else(|| {
                                    corrupt("interface timestamp resolution too fine")
                                })?;
                        }
                        (14, v) if v.len() == 8 => {
                            let hi = u32_at(v, 0, be);
                            let lo = u32_at(v, 4, be);
                            let raw = if be {
                                (u64::from(hi) << 32) | u64::from(lo)
                            } else {
                                (u64::from(lo) << 32) | u64::from(hi)
                            };
                            iface.offset_sec = raw as i64;
                        }
                        _ => {}
                    }
                }
                interfaces.push(iface);
                Ok(None)
            }
            // Enhanced Packet Block.
            6 => {
                if body.len() < 20 {
                    return Err(corrupt("enhanced packet block too short"));
                }
                let interface = u32_at(body, 0, be);
                let iface = interfaces.get(interface as usize).copied().ok_or_else(|| {
                    corrupt(&format!("packet names unknown interface {interface}"))
                })?;
                let ts = (u64::from(u32_at(body, 4, be)) << 32) | u64::from(u32_at(body, 8, be));
                let orig_len = u32_at(body, 16, be);
                let data_end = packet_data_end(body, u32_at(body, 12, be))
                    .ok_or_else(|| corrupt("packet data overruns its block"))?;
                // The data is padded to 32 bits; 20 is a multiple of 4, so padding the end pads it.
                let comment = data_end.checked_next_multiple_of(4).and_then(|opts_start| {
                    options(body, opts_start, be)
                        .find(|(code, _)| *code == 1)
                        .map(|(_, r)| r)
                        .filter(|r| std::str::from_utf8(&body[r.clone()]).is_ok())
                });
                Ok(Some(Parsed::Packet {
                    ts_ns: to_ns(ts, iface.units_per_sec, iface.offset_sec),
                    linktype: iface.linktype,
                    data: 20..data_end,
                    orig_len,
                    interface,
                    comment,
                    offset: at,
                }))
            }
            // Simple Packet Block: interface 0, no timestamp.
            3 => {
                if body.len() < 4 {
                    return Err(corrupt("simple packet block too short"));
                }
                let iface = interfaces
                    .first()
                    .copied()
                    .ok_or_else(|| corrupt("packet before any interface"))?;
                let orig_len = u32_at(body, 0, be);
                let mut caplen = (orig_len as usize).min(body.len().saturating_sub(4));
                if iface.snaplen > 0 {
                    caplen = caplen.min(iface.snaplen as usize);
                }
                // caplen <= body.len() - 4, so the end stays inside the body.
                let data_end = caplen.saturating_add(4);
                Ok(Some(Parsed::Packet {
                    ts_ns: 0,
                    linktype: iface.linktype,
                    data: 4..data_end,
                    orig_len,
                    interface: 0,
                    comment: None,
                    offset: at,
                }))
            }
            // Obsolete Packet Block.
            2 => {
                if body.len() < 20 {
                    return Err(corrupt("packet block too short"));
                }
                let interface = u32::from(u16_at(body, 0, be));
                let iface = interfaces.get(interface as usize).copied().ok_or_else(|| {
                    corrupt(&format!("packet names unknown interface {interface}"))
                })?;
                let ts = (u64::from(u32_at(body, 4, be)) << 32) | u64::from(u32_at(body, 8, be));
                let data_end = packet_data_end(body, u32_at(body, 12, be))
                    .ok_or_else(|| corrupt("packet data overruns its block"))?;
                Ok(Some(Parsed::Packet {
                    ts_ns: to_ns(ts, iface.units_per_sec, iface.offset_sec),
                    linktype: iface.linktype,
                    data: 20..data_end,
                    orig_len: u32_at(body, 16, be),
                    interface,
                    comment: None,
                    offset: at,
                }))
            }
            // Custom Block (copiable or not): PCAPdroid's uid map.
            0x0000_0bad | 0x4000_0bad => {
                if body.len() < 14 || u32_at(body, 0, be) != PCAPDROID_PEN {
                    return Ok(None);
                }
                let version = u16_at(body, 4, be);
                let kind = body[6];
                if version != 1 || kind != 1 {
                    return Ok(None);
                }
                let uid = u32_at(body, 8, be);
                let pkg_len = usize::from(body[12]);
                let app_len = usize::from(body[13]);
                let names = body
                    .get(14..)
                    .and_then(|rest| rest.get(..pkg_len.checked_add(app_len)?))
                    .ok_or_else(|| corrupt("PCAPdroid uid map overruns its block"))?;
                let package = String::from_utf8_lossy(&names[..pkg_len]).into_owned();
                let app = String::from_utf8_lossy(&names[pkg_len..]).into_owned();
                Ok(Some(Parsed::UidMap { uid, package, app }))
            }
            _ => Ok(None),
        }
    }

    fn materialize(&self, parsed: Parsed) -> Record<'_> {
        match parsed {
            Parsed::UidMap { uid, package, app } => Record::UidMap { uid, package, app },
            Parsed::Packet {
                ts_ns,
                linktype,
                data,
                orig_len,
                interface,
                comment,
                offset,
            } => Record::Packet(Packet {
                ts_ns,
                linktype,
                data: &self.buf[data],
                orig_len,
                interface,
                comment: comment.and_then(|r| std::str::from_utf8(&self.buf[r]).ok()),
                offset,
            }),
        }
    }
}

/// The end of an EPB's or obsolete PB's packet data (after its 20-byte header), or None when
/// `caplen` runs past the block. Checked: on a 32-bit target `20 + caplen` from the file wraps.
fn packet_data_end(body: &[u8], caplen: u32) -> Option<usize> {
    usize::try_from(caplen)
        .ok()?
        .checked_add(20)
        .filter(|end| *end <= body.len())
}

/// A record located in the reader's buffer (ranges, so the borrow starts after parsing).
enum Parsed {
    Packet {
        ts_ns: i64,
        linktype: u32,
        data: std::ops::Range<usize>,
        orig_len: u32,
        interface: u32,
        comment: Option<std::ops::Range<usize>>,
        offset: u64,
    },
    UidMap {
        uid: u32,
        package: String,
        app: String,
    },
}

/// Parses a packet comment written by PCAPdroid (`u-10123`) or by [`super::PcapngWriter`]
/// (`u-10123 com.example.app`) into the uid and, when present, the app.
pub fn parse_uid_comment(comment: &str) -> Option<(u32, Option<&str>)> {
    let rest = comment.strip_prefix("u-")?;
    let (digits, app) = match rest.split_once(' ') {
        Some((d, a)) => (d, Some(a.trim()).filter(|a| !a.is_empty())),
        None => (rest.trim_end(), None),
    };
    // PCAPdroid writes -1 for unknown owners.
    let uid: i64 = digits.parse().ok()?;
    let uid = u32::try_from(uid).ok()?;
    Some((uid, app))
}

#[cfg(test)]
#[allow(clippy::arithmetic_side_effects, clippy::cast_possible_truncation)]
mod tests {
    use super::*;

    fn pcap_header(be: bool, nanos: bool, linktype: u32) -> Vec<u8> {
        let magic = if nanos {
            PCAP_MAGIC_NANO
        } else {
            PCAP_MAGIC_MICRO
        };
        let mut v = Vec::new();
        let put32 = |v: &mut Vec<u8>, x: u32| {
            v.extend_from_slice(&if be { x.to_be_bytes() } else { x.to_le_bytes() })
        };
        put32(&mut v, magic);
        v.extend_from_slice(&if be {
            2u16.to_be_bytes()
        } else {
            2u16.to_le_bytes()
        });
        v.extend_from_slice(&if be {
            4u16.to_be_bytes()
        } else {
            4u16.to_le_bytes()
        });
        put32(&mut v, 0);
        put32(&mut v, 0);
        put32(&mut v, 65535);
        put32(&mut v, linktype);
        v
    }

    fn pcap_record(be: bool, sec: u32, frac: u32, data: &[u8]) -> Vec<u8> {
        let mut v = Vec::new();
        for x in [sec, frac, data.len() as u32, data.len() as u32] {
            v.extend_from_slice(&if be { x.to_be_bytes() } else { x.to_le_bytes() });
        }
        v.extend_from_slice(data);
        v
    }

    #[test]
    fn pcap_both_byte_orders_and_resolutions() {
        for be in [false, true] {
            for nanos in [false, true] {
                let mut file = pcap_header(be, nanos, linktype::RAW);
                file.extend(pcap_record(be, 10, 500, b"abc"));
                file.extend(pcap_record(be, 11, 0, b"defg"));
                let mut r = CaptureReader::new(&file[..]).unwrap();
                assert_eq!(r.format(), Format::Pcap);
                let Some(Record::Packet(p)) = r.next_record().unwrap() else {
                    panic!()
                };
                let expect_ns = 10_000_000_000 + if nanos { 500 } else { 500_000 };
                assert_eq!(
                    (p.ts_ns, p.linktype, p.data, p.offset),
                    (expect_ns, 101, &b"abc"[..], 24)
                );
                let Some(Record::Packet(p)) = r.next_record().unwrap() else {
                    panic!()
                };
                assert_eq!(p.data, b"defg");
                assert!(r.next_record().unwrap().is_none());
            }
        }
    }

    #[test]
    fn truncated_pcap_keeps_earlier_packets_and_names_offset() {
        let mut file = pcap_header(false, false, linktype::ETHERNET);
        file.extend(pcap_record(false, 1, 0, b"first"));
        let second_at = file.len() as u64;
        let rec = pcap_record(false, 2, 0, b"second packet");
        file.extend(&rec[..rec.len() - 3]);
        let mut r = CaptureReader::new(&file[..]).unwrap();
        assert!(matches!(r.next_record(), Ok(Some(Record::Packet(_)))));
        let err = r.next_record().unwrap_err();
        assert_eq!(err.offset(), second_at);
        assert!(
            err.to_string()
                .contains(&format!("byte offset {second_at}")),
            "{err}"
        );
        assert!(r.next_record().unwrap().is_none());
    }

    #[test]
    fn rejects_non_capture() {
        let err = CaptureReader::new(&b"hello world, not a capture"[..])
            .err()
            .unwrap();
        assert!(matches!(err, ReadError::NotACapture { .. }));
    }

    #[test]
    fn uid_comments() {
        assert_eq!(parse_uid_comment("u-10123"), Some((10123, None)));
        assert_eq!(
            parse_uid_comment("u-1000 com.miui.analytics"),
            Some((1000, Some("com.miui.analytics")))
        );
        assert_eq!(parse_uid_comment("u--1"), None);
        assert_eq!(parse_uid_comment("hello"), None);
    }

    #[test]
    fn tsresol() {
        assert_eq!(units_per_sec(6), Some(1_000_000));
        assert_eq!(units_per_sec(9), Some(1_000_000_000));
        assert_eq!(units_per_sec(0x80 | 10), Some(1024));
        assert_eq!(to_ns(1_500_000, 1_000_000, 0), 1_500_000_000);
        assert_eq!(to_ns(3 * 1024 + 512, 1024, 10), 13_500_000_000);
    }

    /// A pcapng block in the given byte order.
    fn block(be: bool, block_type: u32, body: &[u8]) -> Vec<u8> {
        let w = |x: u32| if be { x.to_be_bytes() } else { x.to_le_bytes() };
        let total = 12 + body.len() as u32;
        let mut v = w(block_type).to_vec();
        v.extend(w(total));
        v.extend(body);
        v.extend(w(total));
        v
    }

    fn shb(be: bool) -> Vec<u8> {
        let mut body = if be {
            PCAPNG_BYTE_ORDER_MAGIC.to_be_bytes()
        } else {
            PCAPNG_BYTE_ORDER_MAGIC.to_le_bytes()
        }
        .to_vec();
        body.extend([0, 1, 0, 0]);
        body.extend([0xff; 8]);
        block(be, PCAPNG_SHB, &body)
    }

    fn opt(be: bool, code: u16, value: &[u8]) -> Vec<u8> {
        let w = |x: u16| if be { x.to_be_bytes() } else { x.to_le_bytes() };
        let mut v = w(code).to_vec();
        v.extend(w(value.len() as u16));
        v.extend(value);
        v.resize(v.len().next_multiple_of(4), 0);
        v
    }

    fn idb(be: bool, link: u16, tsresol: Option<u8>) -> Vec<u8> {
        let mut body = if be {
            link.to_be_bytes()
        } else {
            link.to_le_bytes()
        }
        .to_vec();
        body.extend([0, 0]);
        body.extend(if be {
            0u32.to_be_bytes()
        } else {
            0u32.to_le_bytes()
        });
        if let Some(r) = tsresol {
            body.extend(opt(be, 9, &[r]));
            body.extend([0u8; 4]);
        }
        block(be, 1, &body)
    }

    fn epb(be: bool, iface: u32, ts: u64, data: &[u8], comment: Option<&str>) -> Vec<u8> {
        let w = |x: u32| if be { x.to_be_bytes() } else { x.to_le_bytes() };
        let mut body = w(iface).to_vec();
        body.extend(w((ts >> 32) as u32));
        body.extend(w(ts as u32));
        body.extend(w(data.len() as u32));
        body.extend(w(data.len() as u32));
        body.extend(data);
        body.resize(body.len().next_multiple_of(4), 0);
        if let Some(c) = comment {
            body.extend(opt(be, 1, c.as_bytes()));
            body.extend([0u8; 4]);
        }
        block(be, 6, &body)
    }

    fn uid_map(be: bool, uid: u32, pkg: &str, app: &str) -> Vec<u8> {
        let w = |x: u32| if be { x.to_be_bytes() } else { x.to_le_bytes() };
        let mut body = w(PCAPDROID_PEN).to_vec();
        body.extend(if be {
            1u16.to_be_bytes()
        } else {
            1u16.to_le_bytes()
        });
        body.extend([1, 0]);
        body.extend(w(uid));
        body.extend([pkg.len() as u8, app.len() as u8]);
        body.extend(pkg.as_bytes());
        body.extend(app.as_bytes());
        body.resize(body.len().next_multiple_of(4), 0);
        block(be, 0xbad, &body)
    }

    #[test]
    fn pcapng_sections_interfaces_comments_and_uid_map() {
        let mut file = shb(false);
        file.extend(idb(false, 1, None));
        file.extend(idb(false, 101, Some(9)));
        file.extend(uid_map(false, 10_077, "com.miui.msa.global", "MSA"));
        file.extend(epb(
            false,
            1,
            1_500_000_000_123_456_789,
            b"raw",
            Some("u-10077"),
        ));
        file.extend(epb(false, 0, 2_000_000, b"eth", None));
        file.extend(block(false, 0x0000_0005, &[0u8; 8])); // statistics block: skipped
        // A second section in the other byte order resets the interfaces.
        file.extend(shb(true));
        file.extend(idb(true, 113, None));
        file.extend(epb(true, 0, 3_000_000, b"sll", Some("u-1000 com.example")));

        let mut r = CaptureReader::new(&file[..]).unwrap();
        assert_eq!(r.format(), Format::Pcapng);
        assert_eq!(
            r.next_record().unwrap(),
            Some(Record::UidMap {
                uid: 10_077,
                package: "com.miui.msa.global".into(),
                app: "MSA".into()
            })
        );
        let Some(Record::Packet(p)) = r.next_record().unwrap() else {
            panic!()
        };
        assert_eq!(
            (p.linktype, p.data, p.ts_ns, p.comment),
            (101, &b"raw"[..], 1_500_000_000_123_456_789, Some("u-10077"))
        );
        let Some(Record::Packet(p)) = r.next_record().unwrap() else {
            panic!()
        };
        assert_eq!(
            (p.linktype, p.data, p.ts_ns, p.comment),
            (1, &b"eth"[..], 2_000_000_000, None)
        );
        let Some(Record::Packet(p)) = r.next_record().unwrap() else {
            panic!()
        };
        assert_eq!(
            (p.linktype, p.data, p.ts_ns, p.comment),
            (113, &b"sll"[..], 3_000_000_000, Some("u-1000 com.example"))
        );
        assert_eq!(r.next_record().unwrap(), None);
    }

    /// A caplen near u32::MAX: `20 + caplen` wrapped on 32-bit targets and the slice panicked.
    #[test]
    fn pcapng_caplen_at_u32_max_is_corrupt_not_a_panic() {
        for caplen in [u32::MAX, u32::MAX - 19, u32::MAX - 3] {
            let mut file = shb(false);
            file.extend(idb(false, 101, None));
            let at = file.len() as u64;
            let mut packet = epb(false, 0, 1, b"data", None);
            packet[8 + 12..8 + 16].copy_from_slice(&caplen.to_le_bytes());
            file.extend(packet);
            let e = CaptureReader::new(&file[..])
                .unwrap()
                .next_record()
                .unwrap_err();
            assert!(e.to_string().contains("overruns its block"), "{e}");
            assert_eq!(e.offset(), at);
        }
        assert_eq!(packet_data_end(&[0u8; 24], 4), Some(24));
        assert_eq!(packet_data_end(&[0u8; 24], 5), None);
    }

    #[test]
    fn pcapng_damage_is_reported_with_offset() {
        let mut file = shb(false);
        file.extend(idb(false, 101, None));
        let good = epb(false, 0, 1, b"ok", None);
        file.extend(&good);
        let bad_at = file.len() as u64;
        let mut bad = epb(false, 0, 2, b"bad!", None);
        let n = bad.len();
        bad[n - 4] ^= 0xff; // trailing length disagrees
        file.extend(&bad);
        let mut r = CaptureReader::new(&file[..]).unwrap();
        assert!(matches!(r.next_record(), Ok(Some(Record::Packet(_)))));
        let e = r.next_record().unwrap_err();
        assert!(matches!(e, ReadError::Corrupt { .. }), "{e}");
        assert_eq!(e.offset(), bad_at);
        // Unknown interface, and a packet overrunning its block.
        let mut file = shb(false);
        file.extend(epb(false, 0, 1, b"x", None));
        let e = CaptureReader::new(&file[..])
            .unwrap()
            .next_record()
            .unwrap_err();
        assert!(e.to_string().contains("unknown interface"), "{e}");
    }
}
