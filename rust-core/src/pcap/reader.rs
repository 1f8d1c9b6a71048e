//! pcap and pcapng records, parsed by `pcap-parser` (rusticata's, fuzzed upstream), with what
//! the observer needs on top of it:
//!
//! - the byte offset of every record, for error messages;
//! - a truncated tail told apart from a corrupt record, and every packet before either kept;
//! - each interface's link type and clock (`if_tsresol`, `if_tsoffset`) applied, as nanoseconds;
//! - the section header's device description (`shb_hardware`, `shb_os`, `shb_userappl`), which
//!   PCAPdroid fills with the phone's model, Android version and its own version;
//! - PCAPdroid's uid -> app custom block and its `u-<uid>` packet comments.
//!
//! The crate's block and record parsers are given one whole record: this module reads the
//! record's length from its header and fills its buffer to it first, so that running out of
//! bytes means a truncated file and a parse error a corrupt record. (Not the crate's streaming
//! readers: on a 32-bit target their `available + needed` and running byte count overflow on a
//! corrupt length or a 4 GiB file.)

use std::io::{self, Read};
use std::ops::Range;

use pcap_parser::nom;
use pcap_parser::pcap::{
    LegacyPcapBlock, parse_pcap_frame, parse_pcap_frame_be, parse_pcap_frame_modified,
    parse_pcap_header,
};
use pcap_parser::pcapng::{Block, parse_block_be, parse_block_le};
use pcap_parser::{OptionCode, PcapError};

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
/// Kuznetzov's patched libpcap: 24-byte record headers (the crate reads them).
const PCAP_MAGIC_MODIFIED: u32 = 0xa1b2_cd34;
const PCAPNG_SHB: u32 = 0x0a0d_0d0a;
const PCAPNG_BYTE_ORDER_MAGIC: u32 = 0x1a2b_3c4d;
const PCAPNG_OBSOLETE_PACKET: u32 = 2;
const PCAPDROID_UID_MAP: u8 = 1;

/// Larger blocks or packets than this are treated as corruption rather than allocated.
const MAX_RECORD: usize = 16 * 1024 * 1024;
/// The parser's buffer; it grows (up to [`MAX_RECORD`]) for a larger record.
const BUFFER: usize = 1 << 20;

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

/// The capturing device as the first pcapng section header describes it (pcap has none).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Section {
    /// `shb_hardware`: PCAPdroid writes the phone's model here.
    pub hardware: Option<String>,
    /// `shb_os`: PCAPdroid writes the Android version here.
    pub os: Option<String>,
    /// `shb_userappl`: the capturing application and its version.
    pub user_appl: Option<String>,
}

#[derive(Clone, Copy, Debug)]
struct Interface {
    linktype: u32,
    /// Timestamp units per second.
    units_per_sec: u64,
    offset_sec: i64,
    snaplen: u32,
}

/// The bytes read from the file and not yet consumed: `data[start..end]`.
struct Buffer {
    data: Vec<u8>,
    start: usize,
    end: usize,
    /// The source returned end of file.
    eof: bool,
}

impl Buffer {
    fn available(&self) -> &[u8] {
        self.data.get(self.start..self.end).unwrap_or_default()
    }

    fn consume(&mut self, n: usize) {
        self.start = self.start.saturating_add(n).min(self.end);
    }

    /// Reads more from `src` (moving what is left to the front, growing to hold `need` bytes).
    fn refill<R: Read>(&mut self, src: &mut R, need: usize) -> io::Result<()> {
        self.data.copy_within(self.start..self.end, 0);
        self.end = self.end.saturating_sub(self.start);
        self.start = 0;
        if self.data.len() < need {
            self.data.resize(need, 0);
        }
        loop {
            let Some(space) = self.data.get_mut(self.end..).filter(|s| !s.is_empty()) else {
                return Ok(());
            };
            match src.read(space) {
                Ok(0) => {
                    self.eof = true;
                    return Ok(());
                }
                Ok(n) => {
                    self.end = self.end.saturating_add(n).min(self.data.len());
                    return Ok(());
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
    }
}

/// Where the next record stands in the parser's buffer.
enum Framing {
    /// This many bytes are needed to read the record's length.
    Header(usize),
    /// The whole record is this long.
    Record(usize),
}

/// A record located in the parser's buffer (ranges, so the borrow starts after parsing).
struct Located {
    ts_ns: i64,
    linktype: u32,
    data: Range<usize>,
    orig_len: u32,
    interface: u32,
    comment: Option<Range<usize>>,
}

/// The range `sub` takes within `buf`, from their addresses.
fn range_in(base: usize, sub: &[u8]) -> Option<Range<usize>> {
    let start = (sub.as_ptr() as usize).checked_sub(base)?;
    Some(start..start.checked_add(sub.len())?)
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

fn u32_at(b: &[u8], at: usize, big_endian: bool) -> Option<u32> {
    let bytes: [u8; 4] = b.get(at..at.checked_add(4)?)?.try_into().ok()?;
    Some(if big_endian {
        u32::from_be_bytes(bytes)
    } else {
        u32::from_le_bytes(bytes)
    })
}

fn u16_at(b: &[u8], at: usize, big_endian: bool) -> Option<u16> {
    let bytes: [u8; 2] = b.get(at..at.checked_add(2)?)?.try_into().ok()?;
    Some(if big_endian {
        u16::from_be_bytes(bytes)
    } else {
        u16::from_le_bytes(bytes)
    })
}

fn block_name(block_type: u32) -> &'static str {
    match block_type {
        PCAPNG_SHB => "section header",
        1 => "interface description block",
        PCAPNG_OBSOLETE_PACKET => "packet block",
        3 => "simple packet block",
        4 => "name resolution block",
        5 => "interface statistics block",
        6 => "enhanced packet block",
        0x0000_0bad | 0x4000_0bad => "custom block",
        _ => "block",
    }
}

pub struct CaptureReader<R: Read> {
    src: R,
    buf: Buffer,
    format: Format,
    /// Bytes of the file before the parser's buffer.
    offset: u64,
    /// The last record's length, consumed when the next one is asked for (its data is borrowed
    /// from the buffer until then).
    pending: usize,
    big_endian: bool,
    /// pcap: the file's link type, and the record header length (16, or 24 when modified).
    pcap_linktype: u32,
    pcap_nanos: bool,
    pcap_header: usize,
    interfaces: Vec<Interface>,
    section: Section,
    sections_seen: u32,
    /// A corrupt record ends the file: nothing after it is trusted.
    failed: bool,
}

/// What one record was.
enum Step {
    Packet(Located),
    UidMap {
        uid: u32,
        package: String,
        app: String,
    },
    /// A header, an interface, statistics...: nothing for the caller.
    Other,
    End,
}

/// Where the next record stands in the parser's buffer: how many bytes tell its length, or its
/// whole length.
fn framing(
    data: &[u8],
    format: Format,
    big_endian: bool,
    pcap_header: usize,
) -> Result<Framing, String> {
    match format {
        Format::Pcap => {
            let Some(caplen) = u32_at(data, 8, big_endian).filter(|_| data.len() >= pcap_header)
            else {
                return Ok(Framing::Header(pcap_header));
            };
            usize::try_from(caplen)
                .ok()
                .filter(|len| *len <= MAX_RECORD)
                .and_then(|len| len.checked_add(pcap_header))
                .map(Framing::Record)
                .ok_or_else(|| format!("record length {caplen} is implausible"))
        }
        Format::Pcapng => {
            let (Some(block_type), Some(bom)) = (u32_at(data, 0, false), u32_at(data, 8, false))
            else {
                return Ok(Framing::Header(12));
            };
            let big_endian = if block_type != PCAPNG_SHB {
                big_endian
            } else if bom == PCAPNG_BYTE_ORDER_MAGIC {
                false
            } else if bom == PCAPNG_BYTE_ORDER_MAGIC.swap_bytes() {
                true
            } else {
                return Err("section header without byte-order magic".into());
            };
            let total = u32_at(data, 4, big_endian).unwrap_or(0);
            usize::try_from(total)
                .ok()
                .filter(|t| *t >= 12 && t.is_multiple_of(4) && *t <= MAX_RECORD)
                .map(Framing::Record)
                .ok_or_else(|| format!("pcapng block length {total} is invalid"))
        }
    }
}

/// `if_tsoffset` in the section's byte order (the crate reads it little-endian only).
fn ts_offset(options: &[pcap_parser::PcapNGOption<'_>], big_endian: bool) -> i64 {
    options
        .iter()
        .find(|o| o.code == OptionCode::IfTsoffset)
        .and_then(|o| <[u8; 8]>::try_from(o.as_bytes().ok()?).ok())
        .map_or(0, |b| {
            if big_endian {
                i64::from_be_bytes(b)
            } else {
                i64::from_le_bytes(b)
            }
        })
}

/// PCAPdroid's uid map (custom block data after the PEN): version (u16), block kind, a pad
/// byte, the uid, the lengths of the package and app names, then the names.
fn uid_map(data: &[u8], big_endian: bool) -> Result<Option<Step>, &'static str> {
    if u16_at(data, 0, big_endian) != Some(1) || data.get(2) != Some(&PCAPDROID_UID_MAP) {
        return Ok(None);
    }
    let (Some(uid), Some(&pkg_len), Some(&app_len)) =
        (u32_at(data, 4, big_endian), data.get(8), data.get(9))
    else {
        return Ok(None);
    };
    let names_end = usize::from(pkg_len)
        .checked_add(usize::from(app_len))
        .and_then(|n| n.checked_add(10));
    let (Some(package), Some(app)) = (
        data.get(10..usize::from(pkg_len).saturating_add(10)),
        names_end.and_then(|end| data.get(usize::from(pkg_len).saturating_add(10)..end)),
    ) else {
        return Err("PCAPdroid uid map overruns its block");
    };
    Ok(Some(Step::UidMap {
        uid,
        package: String::from_utf8_lossy(package).into_owned(),
        app: String::from_utf8_lossy(app).into_owned(),
    }))
}

impl<R: Read> CaptureReader<R> {
    /// Reads the file header (pcap) or first section header (pcapng).
    pub fn new(src: R) -> Result<CaptureReader<R>, ReadError> {
        let mut reader = CaptureReader {
            src,
            buf: Buffer {
                data: vec![0; BUFFER],
                start: 0,
                end: 0,
                eof: false,
            },
            format: Format::Pcap,
            offset: 0,
            pending: 0,
            big_endian: false,
            pcap_linktype: 0,
            pcap_nanos: false,
            pcap_header: 16,
            interfaces: Vec::new(),
            section: Section::default(),
            sections_seen: 0,
            failed: false,
        };
        while reader.buf.available().len() < 4 && !reader.buf.eof {
            reader
                .buf
                .refill(&mut reader.src, 4)
                .map_err(|source| ReadError::Io { offset: 0, source })?;
        }
        let Some(magic) = reader.buf.available().get(..4) else {
            return Err(ReadError::Truncated {
                offset: 0,
                what: "empty file",
            });
        };
        let le = u32_at(magic, 0, false).unwrap_or(0);
        let be = u32_at(magic, 0, true).unwrap_or(0);
        if le == PCAPNG_SHB {
            reader.format = Format::Pcapng;
            // The first block is a section header (checked when it is parsed).
            match reader.step()? {
                Step::Other if reader.sections_seen == 1 => {}
                _ => {
                    return Err(ReadError::Corrupt {
                        offset: 0,
                        message: "bad pcapng section header".into(),
                    });
                }
            }
        } else if [PCAP_MAGIC_MICRO, PCAP_MAGIC_NANO, PCAP_MAGIC_MODIFIED].contains(&le)
            || [PCAP_MAGIC_MICRO, PCAP_MAGIC_NANO].contains(&be)
        {
            reader.read_pcap_header()?;
        } else {
            return Err(ReadError::NotACapture { magic: be });
        }
        Ok(reader)
    }

    fn read_pcap_header(&mut self) -> Result<(), ReadError> {
        while self.buf.available().len() < 24 && !self.buf.eof {
            self.buf
                .refill(&mut self.src, 24)
                .map_err(|source| ReadError::Io { offset: 0, source })?;
        }
        let header = match parse_pcap_header(self.buf.available()) {
            Ok((_, header)) => header,
            Err(nom::Err::Incomplete(_)) => {
                return Err(ReadError::Truncated {
                    offset: 0,
                    what: "pcap file header",
                });
            }
            Err(nom::Err::Error(e) | nom::Err::Failure(e)) => {
                return Err(ReadError::Corrupt {
                    offset: 0,
                    message: format!("bad pcap file header: {}", parse_detail(&e)),
                });
            }
        };
        // The link type's upper bits carry FCS flags (LINKTYPE_FCS...); the type is the low 16.
        self.pcap_linktype = u32::try_from(header.network.0 & 0xffff).unwrap_or(0);
        self.pcap_nanos = header.is_nanosecond_precision();
        self.big_endian = header.is_bigendian();
        if header.is_modified_format() {
            self.pcap_header = 24;
        }
        self.pending = header.size();
        Ok(())
    }

    pub fn format(&self) -> Format {
        self.format
    }

    /// The device the first pcapng section describes (empty for pcap).
    pub fn section(&self) -> &Section {
        &self.section
    }

    /// Bytes consumed so far (for progress and error reports).
    pub fn offset(&self) -> u64 {
        self.offset.saturating_add(self.pending as u64)
    }

    /// The next packet or PCAPdroid uid map; Ok(None) at a clean end of file. After an error,
    /// every later call returns Ok(None): what was read before stays valid.
    pub fn next_record(&mut self) -> Result<Option<Record<'_>>, ReadError> {
        if self.failed {
            return Ok(None);
        }
        loop {
            match self.step() {
                Err(e) => {
                    self.failed = true;
                    return Err(e);
                }
                Ok(Step::End) => return Ok(None),
                Ok(Step::Other) => {}
                Ok(Step::UidMap { uid, package, app }) => {
                    return Ok(Some(Record::UidMap { uid, package, app }));
                }
                Ok(Step::Packet(p)) => {
                    let buf = self.buf.available();
                    let (Some(data), comment) =
                        (buf.get(p.data), p.comment.and_then(|r| buf.get(r)))
                    else {
                        self.failed = true;
                        return Err(ReadError::Corrupt {
                            offset: self.offset,
                            message: "packet data outside its block".into(),
                        });
                    };
                    return Ok(Some(Record::Packet(Packet {
                        ts_ns: p.ts_ns,
                        linktype: p.linktype,
                        data,
                        orig_len: p.orig_len,
                        interface: p.interface,
                        comment: comment.and_then(|c| std::str::from_utf8(c).ok()),
                        offset: self.offset,
                    })));
                }
            }
        }
    }

    /// Fills the buffer with the whole of the next record; its length, or None at a clean end.
    fn fill(&mut self, at: u64) -> Result<Option<usize>, ReadError> {
        loop {
            let data = self.buf.available();
            let (need, what) = match framing(data, self.format, self.big_endian, self.pcap_header) {
                Ok(Framing::Record(len)) if data.len() >= len => return Ok(Some(len)),
                Ok(Framing::Record(len)) => (len, self.what(false)),
                Ok(Framing::Header(len)) => (len, self.what(true)),
                Err(message) => {
                    return Err(ReadError::Corrupt {
                        offset: at,
                        message,
                    });
                }
            };
            if self.buf.eof {
                return if data.is_empty() {
                    Ok(None)
                } else {
                    Err(ReadError::Truncated { offset: at, what })
                };
            }
            self.buf
                .refill(&mut self.src, need)
                .map_err(|source| ReadError::Io { offset: at, source })?;
        }
    }

    fn what(&self, header: bool) -> &'static str {
        match (self.format, header) {
            (Format::Pcap, true) => "pcap record header",
            (Format::Pcap, false) => "pcap packet data",
            (Format::Pcapng, true) => "pcapng block header",
            (Format::Pcapng, false) => "pcapng block body",
        }
    }

    /// Reads and interprets one record.
    fn step(&mut self) -> Result<Step, ReadError> {
        if self.pending > 0 {
            self.buf.consume(self.pending);
            self.offset = self.offset.saturating_add(self.pending as u64);
            self.pending = 0;
        }
        let at = self.offset;
        let corrupt = |message: String| ReadError::Corrupt {
            offset: at,
            message,
        };
        let Some(len) = self.fill(at)? else {
            return Ok(Step::End);
        };
        let record = self.buf.available().get(..len).unwrap_or_default();
        let base = record.as_ptr() as usize;
        let big_endian = self.big_endian;
        let outside = || corrupt("packet data outside its block".into());
        if self.format == Format::Pcap {
            let parsed: nom::IResult<&[u8], LegacyPcapBlock<'_>, PcapError<&[u8]>> =
                if self.pcap_header == 24 {
                    parse_pcap_frame_modified(record)
                } else if big_endian {
                    parse_pcap_frame_be(record)
                } else {
                    parse_pcap_frame(record)
                };
            let Ok((_, frame)) = parsed else {
                return Err(corrupt("malformed pcap record".into()));
            };
            let ns_per_unit: i64 = if self.pcap_nanos { 1 } else { 1000 };
            let step = Step::Packet(Located {
                ts_ns: i64::from(frame.ts_sec)
                    .saturating_mul(1_000_000_000)
                    .saturating_add(i64::from(frame.ts_usec).saturating_mul(ns_per_unit)),
                linktype: self.pcap_linktype,
                data: range_in(base, frame.data).ok_or_else(outside)?,
                orig_len: frame.origlen,
                interface: 0,
                comment: None,
            });
            self.pending = len;
            return Ok(step);
        }
        // A section header carries its own byte order.
        let be = if u32_at(record, 0, false) == Some(PCAPNG_SHB) {
            u32_at(record, 8, false) == Some(PCAPNG_BYTE_ORDER_MAGIC.swap_bytes())
        } else {
            big_endian
        };
        let block_type = u32_at(record, 0, be).unwrap_or(0);
        let total = u32_at(record, 4, be).unwrap_or(0);
        let trailer = len.checked_sub(4).and_then(|t| u32_at(record, t, be));
        if trailer != Some(total) {
            return Err(corrupt(format!(
                "pcapng block length mismatch ({total} vs {})",
                trailer.unwrap_or(0)
            )));
        }
        if block_type == 6 && total < 32 {
            return Err(corrupt("enhanced packet block too short".into()));
        }
        let parsed = if be {
            parse_block_be(record)
        } else {
            parse_block_le(record)
        };
        let block = match parsed {
            Ok((_, block)) => block,
            // A block the observer has no use for (statistics, name resolution, secrets...) is
            // skipped when its content is malformed: its length was sound.
            Err(_)
                if !matches!(
                    block_type,
                    PCAPNG_SHB | 1 | 2 | 3 | 6 | 0x0bad | 0x4000_0bad
                ) =>
            {
                self.pending = len;
                return Ok(Step::Other);
            }
            Err(e) => {
                let message = if matches!(block_type, 6 | PCAPNG_OBSOLETE_PACKET) {
                    "packet data overruns its block".to_owned()
                } else {
                    let detail = match &e {
                        nom::Err::Error(e) | nom::Err::Failure(e) => parse_detail(e),
                        nom::Err::Incomplete(_) => "a field overruns the block".into(),
                    };
                    format!("malformed {}: {detail}", block_name(block_type))
                };
                return Err(corrupt(message));
            }
        };
        let step = match block {
            Block::SectionHeader(shb) => {
                self.big_endian = shb.big_endian();
                self.interfaces.clear();
                if self.sections_seen == 0 {
                    let text = |v: Option<Result<&str, _>>| {
                        v.and_then(Result::ok)
                            .map(|s| s.trim_end_matches('\0').to_owned())
                            .filter(|s| !s.is_empty())
                    };
                    self.section = Section {
                        hardware: text(shb.shb_hardware()),
                        os: text(shb.shb_os()),
                        user_appl: text(shb.shb_userappl()),
                    };
                }
                self.sections_seen = self.sections_seen.saturating_add(1);
                Step::Other
            }
            Block::InterfaceDescription(idb) => {
                let units_per_sec = units_per_sec(idb.if_tsresol)
                    .filter(|u| *u > 0)
                    .ok_or_else(|| corrupt("interface timestamp resolution too fine".into()))?;
                self.interfaces.push(Interface {
                    linktype: u32::try_from(idb.linktype.0).unwrap_or(0),
                    units_per_sec,
                    offset_sec: ts_offset(&idb.options, big_endian),
                    snaplen: idb.snaplen,
                });
                Step::Other
            }
            Block::EnhancedPacket(epb) => {
                let iface = usize::try_from(epb.if_id)
                    .ok()
                    .and_then(|i| self.interfaces.get(i))
                    .ok_or_else(|| {
                        corrupt(format!("packet names unknown interface {}", epb.if_id))
                    })?;
                let data = epb
                    .data
                    .get(..usize::try_from(epb.caplen).unwrap_or(usize::MAX))
                    .ok_or_else(|| corrupt("packet data overruns its block".into()))?;
                let comment = epb
                    .options
                    .iter()
                    .find(|o| o.code == OptionCode::Comment)
                    .and_then(|o| o.as_bytes().ok())
                    .filter(|c| std::str::from_utf8(c).is_ok())
                    .and_then(|c| range_in(base, c));
                let ts = (u64::from(epb.ts_high) << 32) | u64::from(epb.ts_low);
                Step::Packet(Located {
                    ts_ns: to_ns(ts, iface.units_per_sec, iface.offset_sec),
                    linktype: iface.linktype,
                    data: range_in(base, data).ok_or_else(outside)?,
                    orig_len: epb.origlen,
                    interface: epb.if_id,
                    comment,
                })
            }
            // Interface 0, no timestamp; the captured length is what the block holds, up to
            // the original length and the snap length.
            Block::SimplePacket(spb) => {
                let iface = self
                    .interfaces
                    .first()
                    .ok_or_else(|| corrupt("packet before any interface".into()))?;
                let mut caplen = usize::try_from(spb.origlen)
                    .unwrap_or(usize::MAX)
                    .min(spb.data.len());
                if iface.snaplen > 0 {
                    caplen = caplen.min(usize::try_from(iface.snaplen).unwrap_or(usize::MAX));
                }
                let data = spb.data.get(..caplen).ok_or_else(outside)?;
                Step::Packet(Located {
                    ts_ns: 0,
                    linktype: iface.linktype,
                    data: range_in(base, data).ok_or_else(outside)?,
                    orig_len: spb.origlen,
                    interface: 0,
                    comment: None,
                })
            }
            Block::Custom(custom) if custom.pen == PCAPDROID_PEN => {
                uid_map(custom.data, big_endian)
                    .map_err(|m| corrupt(m.into()))?
                    .unwrap_or(Step::Other)
            }
            // The obsolete Packet Block: a 16-bit interface, 16-bit drop count, then as an EPB.
            Block::Unknown(unknown) if block_type == PCAPNG_OBSOLETE_PACKET => {
                let body = unknown.data;
                let field = |at| u32_at(body, at, big_endian).unwrap_or(0);
                let interface = u32::from(u16_at(body, 0, big_endian).unwrap_or(0));
                let iface = usize::try_from(interface)
                    .ok()
                    .and_then(|i| self.interfaces.get(i))
                    .ok_or_else(|| {
                        corrupt(format!("packet names unknown interface {interface}"))
                    })?;
                let data = usize::try_from(field(12))
                    .ok()
                    .and_then(|caplen| caplen.checked_add(20))
                    .and_then(|end| body.get(20..end))
                    .filter(|_| body.len() >= 20)
                    .ok_or_else(|| corrupt("packet data overruns its block".into()))?;
                let ts = (u64::from(field(4)) << 32) | u64::from(field(8));
                Step::Packet(Located {
                    ts_ns: to_ns(ts, iface.units_per_sec, iface.offset_sec),
                    linktype: iface.linktype,
                    data: range_in(base, data).ok_or_else(outside)?,
                    orig_len: field(16),
                    interface,
                    comment: None,
                })
            }
            _ => Step::Other,
        };
        self.pending = len;
        Ok(step)
    }
}

/// What the parser found wrong, without the input bytes it quotes.
fn parse_detail<I>(e: &PcapError<I>) -> String {
    match e {
        PcapError::NomError(_, kind) | PcapError::OwnedNomError(_, kind) => {
            kind.description().to_owned()
        }
        PcapError::HeaderNotRecognized => "no byte-order magic".into(),
        PcapError::Incomplete(_) | PcapError::UnexpectedEof | PcapError::BufferTooSmall => {
            "a field overruns the block".into()
        }
        PcapError::Eof => "end of file".into(),
        PcapError::ReadError => "read failed".into(),
    }
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
    }

    /// Lengths inside a sound block that run past it: a decryption-secrets block (of no use to
    /// the observer) is skipped, a packet block is corrupt; neither panics (the crate's own
    /// streaming reader overflowed `available + needed` on 32-bit targets here).
    #[test]
    fn inner_lengths_past_their_block_are_skipped_or_corrupt() {
        let mut file = shb(false);
        file.extend(idb(false, 101, None));
        let mut secrets = 0x544c_534bu32.to_le_bytes().to_vec();
        secrets.extend((u32::MAX - 8).to_le_bytes());
        secrets.extend([0u8; 8]);
        file.extend(block(false, 0x0a, &secrets));
        file.extend(epb(false, 0, 1, b"after", None));
        let mut r = CaptureReader::new(&file[..]).unwrap();
        let Some(Record::Packet(p)) = r.next_record().unwrap() else {
            panic!()
        };
        assert_eq!(p.data, b"after");
        assert!(r.next_record().unwrap().is_none());
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
