//! Country and autonomous system of an IP address, offline.
//!
//! The data comes from the `@ip-location-db` npm packages (`geo-whois-asn-country`, CC0, for the
//! country; `asn`, CC BY 4.0 by RouteViews, DB-IP and NRO, for the AS), converted by
//! `scripts/fetch-geo.sh` into one compact file: for IPv4 and IPv6 separately, sorted range
//! starts with one value each (a gap is a range with no value), found by binary search. Nothing
//! here ever goes to the network.
//!
//! Where the file is found, first match wins: `--geo FILE` ([`init`]), `$PHONEHOME_GEO`,
//! `phonehome-geo.bin` next to the executable, then in its parent directory (`target/` for a
//! cargo build), then `$XDG_DATA_HOME/phonehome/` (`~/.local/share/phonehome/`).
//!
//! File layout (little-endian): magic `PHGEO001`; six u32 counts (country v4, country v6,
//! ASN v4, ASN v6, AS names, name bytes); then each table's starts followed by its values
//! (country: 2 ASCII bytes, "\0\0" = none; ASN: u32, 0 = none; v4 starts u32, v6 starts u128);
//! then the AS names as (asn, offset, length) triples sorted by ASN, and the UTF-8 name bytes.

use std::fmt;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

pub const MAGIC: &[u8; 8] = b"PHGEO001";
pub const FILE_NAME: &str = "phonehome-geo.bin";
pub const ENV_VAR: &str = "PHONEHOME_GEO";

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct GeoInfo {
    /// ISO 3166 alpha-2 code, e.g. "SG".
    pub country: Option<String>,
    pub asn: Option<u32>,
    pub as_name: Option<String>,
}

#[derive(Debug)]
pub struct GeoError {
    pub path: PathBuf,
    pub message: String,
}

impl fmt::Display for GeoError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "geo database {}: {}", self.path.display(), self.message)
    }
}

impl std::error::Error for GeoError {}

/// The file's bytes. Mapped from the file, only the pages lookups touch become resident (a
/// few dozen per table: a binary search), instead of the whole ~17 MB table set in the heap.
enum Bytes {
    Mapped(memmap2::Mmap),
    Owned(Vec<u8>),
}

impl Bytes {
    fn as_slice(&self) -> &[u8] {
        match self {
            Bytes::Mapped(map) => map,
            Bytes::Owned(vec) => vec,
        }
    }
}

/// Where one table lies in the file: `len` sorted range starts of `key` bytes each (u32 or
/// u128), then `len` values of `value` bytes each (a country code or a u32 ASN), little-endian.
#[derive(Clone, Copy)]
struct Table {
    starts: usize,
    values: usize,
    len: usize,
    key: usize,
    value: usize,
}

impl Table {
    fn key_at(&self, data: &[u8], i: usize) -> u128 {
        let at = self.starts + i * self.key;
        let mut b = [0u8; 16];
        b[..self.key].copy_from_slice(&data[at..at + self.key]);
        u128::from_le_bytes(b)
    }

    /// The value of the range holding `key`.
    fn find<'a>(&self, data: &'a [u8], key: u128) -> Option<&'a [u8]> {
        let (mut lo, mut hi) = (0, self.len);
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            if self.key_at(data, mid) <= key {
                lo = mid + 1;
            } else {
                hi = mid;
            }
        }
        let i = lo.checked_sub(1)?;
        data.get(self.values + i * self.value..self.values + (i + 1) * self.value)
    }

    fn sorted(&self, data: &[u8]) -> bool {
        (1..self.len).all(|i| self.key_at(data, i - 1) < self.key_at(data, i))
    }
}

pub struct GeoDb {
    bytes: Bytes,
    country_v4: Table,
    country_v6: Table,
    asn_v4: Table,
    asn_v6: Table,
    /// (asn, offset in the names, length) u32 triples, sorted by asn.
    as_names: usize,
    as_count: usize,
    names: usize,
    names_len: usize,
}

struct Cursor<'a> {
    data: &'a [u8],
    at: usize,
}

impl<'a> Cursor<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], String> {
        let end = self.at.checked_add(n).ok_or("size overflow")?;
        let s = self
            .data
            .get(self.at..end)
            .ok_or_else(|| format!("cut short at byte {}", self.at))?;
        self.at = end;
        Ok(s)
    }

    fn u32(&mut self) -> Result<u32, String> {
        let b = self.take(4)?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }

    fn count(&mut self) -> Result<usize, String> {
        let n = self.u32()? as usize;
        if n > self.data.len() {
            return Err(format!("count {n} exceeds the file size"));
        }
        Ok(n)
    }

    /// Skips over a table of `len` entries and returns where it lies.
    fn table(&mut self, len: usize, key: usize, value: usize) -> Result<Table, String> {
        let starts = self.at;
        self.take(len.checked_mul(key).ok_or("size overflow")?)?;
        let values = self.at;
        self.take(len.checked_mul(value).ok_or("size overflow")?)?;
        Ok(Table {
            starts,
            values,
            len,
            key,
            value,
        })
    }
}

fn word(data: &[u8], at: usize) -> u32 {
    u32::from_le_bytes([data[at], data[at + 1], data[at + 2], data[at + 3]])
}

impl GeoDb {
    /// A database from bytes in memory (a copy is kept).
    pub fn parse(data: &[u8]) -> Result<GeoDb, String> {
        GeoDb::from_bytes(Bytes::Owned(data.to_vec()))
    }

    fn from_bytes(bytes: Bytes) -> Result<GeoDb, String> {
        let data = bytes.as_slice();
        let mut c = Cursor { data, at: 0 };
        if c.take(8)? != MAGIC {
            return Err(
                "not a PhoneHome geo file (bad magic); rebuild it with scripts/fetch-geo.sh".into(),
            );
        }
        let (nc4, nc6, na4, na6, nn, blob) = (
            c.count()?,
            c.count()?,
            c.count()?,
            c.count()?,
            c.count()?,
            c.count()?,
        );
        let country_v4 = c.table(nc4, 4, 2)?;
        let country_v6 = c.table(nc6, 16, 2)?;
        let asn_v4 = c.table(na4, 4, 4)?;
        let asn_v6 = c.table(na6, 16, 4)?;
        let as_names = c.at;
        c.take(nn.checked_mul(12).ok_or("size overflow")?)?;
        let names_at = c.at;
        let names =
            std::str::from_utf8(c.take(blob)?).map_err(|_| "AS names are not UTF-8".to_string())?;
        let triple = |i: usize| {
            let at = as_names + 12 * i;
            (word(data, at), word(data, at + 4), word(data, at + 8))
        };
        if !(country_v4.sorted(data)
            && country_v6.sorted(data)
            && asn_v4.sorted(data)
            && asn_v6.sorted(data)
            && (1..nn).all(|i| triple(i - 1).0 < triple(i).0))
        {
            return Err("tables are not sorted".into());
        }
        for i in 0..nn {
            let (_, off, len) = triple(i);
            let (off, len) = (off as usize, len as usize);
            if off.checked_add(len).is_none_or(|end| end > names.len())
                || !names.is_char_boundary(off)
                || !names.is_char_boundary(off + len)
            {
                return Err("AS name outside the name table".into());
            }
        }
        if let Bytes::Mapped(map) = &bytes {
            // The checks read every page; lookups need a few. Dropping the pages from this
            // mapping leaves them to the page cache, and RSS to what lookups touch.
            // SAFETY: a read-only private file mapping: MADV_DONTNEED only unmaps its pages,
            // and later reads fault the same file contents back in.
            let _ = unsafe { map.unchecked_advise(memmap2::UncheckedAdvice::DontNeed) };
        }
        Ok(GeoDb {
            country_v4,
            country_v6,
            asn_v4,
            asn_v6,
            as_names,
            as_count: nn,
            names: names_at,
            names_len: blob,
            bytes,
        })
    }

    /// Maps the file (read in place, see [`Bytes`]).
    pub fn open(path: &Path) -> Result<GeoDb, GeoError> {
        let err = |message: String| GeoError {
            path: path.to_owned(),
            message,
        };
        let file = std::fs::File::open(path).map_err(|e| err(e.to_string()))?;
        // SAFETY: the mapping is read-only and private. The file is the installed database,
        // replaced by rename (scripts/fetch-geo.sh), not rewritten in place; a truncation
        // while mapped would fault, as any reader of a vanishing file would fail.
        let map = unsafe { memmap2::Mmap::map(&file) }.map_err(|e| err(e.to_string()))?;
        GeoDb::from_bytes(Bytes::Mapped(map)).map_err(err)
    }

    /// Ranges in the four tables (for reports and tests).
    pub fn len(&self) -> usize {
        self.country_v4.len + self.country_v6.len + self.asn_v4.len + self.asn_v6.len
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The holder of AS number `asn`, as the AS data names it.
    pub fn as_name(&self, asn: u32) -> Option<String> {
        let data = self.bytes.as_slice();
        let (mut lo, mut hi) = (0, self.as_count);
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            let at = self.as_names + 12 * mid;
            match word(data, at).cmp(&asn) {
                std::cmp::Ordering::Less => lo = mid + 1,
                std::cmp::Ordering::Greater => hi = mid,
                std::cmp::Ordering::Equal => {
                    let (off, len) = (word(data, at + 4) as usize, word(data, at + 8) as usize);
                    let names = data.get(self.names..self.names + self.names_len)?;
                    return std::str::from_utf8(names.get(off..off + len)?)
                        .ok()
                        .map(str::to_owned);
                }
            }
        }
        None
    }

    /// Country and AS of `ip`; None when the database knows neither (private, reserved space).
    pub fn lookup(&self, ip: IpAddr) -> Option<GeoInfo> {
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(ip),
            v4 => v4,
        };
        let data = self.bytes.as_slice();
        let (country, asn) = match ip {
            IpAddr::V4(v4) => {
                let k = u128::from(u32::from(v4));
                (self.country_v4.find(data, k), self.asn_v4.find(data, k))
            }
            IpAddr::V6(v6) => {
                let k = u128::from(v6);
                (self.country_v6.find(data, k), self.asn_v6.find(data, k))
            }
        };
        let country = country
            .filter(|c| c.iter().all(u8::is_ascii_alphabetic))
            .map(|c| String::from_utf8_lossy(c).into_owned());
        let asn = asn.map(|a| word(a, 0)).filter(|a| *a != 0);
        if country.is_none() && asn.is_none() {
            return None;
        }
        let as_name = asn.and_then(|a| self.as_name(a));
        Some(GeoInfo {
            country,
            asn,
            as_name,
        })
    }
}

/// The places searched for the database when no path is given, in order.
pub fn search_paths() -> Vec<PathBuf> {
    let mut paths = Vec::new();
    if let Some(p) = std::env::var_os(ENV_VAR).filter(|p| !p.is_empty()) {
        paths.push(PathBuf::from(p));
    }
    if let Ok(exe) = std::env::current_exe()
        && let Some(dir) = exe.parent()
    {
        paths.push(dir.join(FILE_NAME));
        if let Some(parent) = dir.parent() {
            paths.push(parent.join(FILE_NAME));
        }
    }
    let data_home = std::env::var_os("XDG_DATA_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".local/share")));
    if let Some(d) = data_home {
        paths.push(d.join("phonehome").join(FILE_NAME));
    }
    paths
}

static GLOBAL: OnceLock<Option<GeoDb>> = OnceLock::new();

/// Loads the process-wide database: from `path` when given (an error if it cannot be read),
/// else from the first of [`search_paths`] that exists. Later calls return the first result.
pub fn init(path: Option<&Path>) -> Result<Option<&'static GeoDb>, GeoError> {
    if let Some(loaded) = GLOBAL.get() {
        return Ok(loaded.as_ref());
    }
    let db = match path {
        Some(p) => Some(GeoDb::open(p)?),
        None => discover(),
    };
    Ok(GLOBAL.get_or_init(|| db).as_ref())
}

fn discover() -> Option<GeoDb> {
    for p in search_paths() {
        if p.is_file() {
            match GeoDb::open(&p) {
                Ok(db) => return Some(db),
                Err(e) => log::warn!("{e}"),
            }
        }
    }
    log::info!("no country/ASN database found; run scripts/fetch-geo.sh (see docs)");
    None
}

/// Makes `db` the process-wide database (the Android app reads it from its APK, where no search
/// path reaches). False when one was already in place, or the search already ran and found none.
pub fn install(db: GeoDb) -> bool {
    GLOBAL.set(Some(db)).is_ok()
}

/// The process-wide database, found by [`search_paths`] on first use; None when absent.
pub fn global() -> Option<&'static GeoDb> {
    GLOBAL.get_or_init(discover).as_ref()
}

/// Country and AS of `ip` from the process-wide database.
pub fn lookup(ip: IpAddr) -> Option<GeoInfo> {
    global().and_then(|db| db.lookup(ip))
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// Builds a file by hand in the documented layout.
    pub(crate) fn tiny() -> Vec<u8> {
        let mut f = MAGIC.to_vec();
        let name = "Example Net";
        for n in [2u32, 1, 2, 1, 1, name.len() as u32] {
            f.extend(n.to_le_bytes());
        }
        // country v4: 1.0.0.0 -> AU, 1.0.1.0 -> none
        f.extend(0x0100_0000u32.to_le_bytes());
        f.extend(0x0100_0100u32.to_le_bytes());
        f.extend(b"AU\0\0");
        // country v6: 2001:db8:: -> JP
        f.extend(0x2001_0db8u128.wrapping_shl(96).to_le_bytes());
        f.extend(b"JP");
        // asn v4: 1.0.0.0 -> 64500, 1.0.0.128 -> none
        f.extend(0x0100_0000u32.to_le_bytes());
        f.extend(0x0100_0080u32.to_le_bytes());
        f.extend(64500u32.to_le_bytes());
        f.extend(0u32.to_le_bytes());
        f.extend(0x2001_0db8u128.wrapping_shl(96).to_le_bytes());
        f.extend(64500u32.to_le_bytes());
        for n in [64500u32, 0, name.len() as u32] {
            f.extend(n.to_le_bytes());
        }
        f.extend(name.as_bytes());
        f
    }

    #[test]
    fn lookups_in_a_hand_built_file() {
        let db = GeoDb::parse(&tiny()).unwrap();
        let info = db.lookup("1.0.0.5".parse().unwrap()).unwrap();
        assert_eq!(info.country.as_deref(), Some("AU"));
        assert_eq!(info.asn, Some(64500));
        assert_eq!(info.as_name.as_deref(), Some("Example Net"));
        let info = db.lookup("1.0.0.200".parse().unwrap()).unwrap();
        assert_eq!((info.country.as_deref(), info.asn), (Some("AU"), None));
        assert_eq!(db.lookup("1.0.2.1".parse().unwrap()), None);
        assert_eq!(db.lookup("0.0.0.1".parse().unwrap()), None);
        let v6 = db.lookup("2001:db8::1".parse().unwrap()).unwrap();
        assert_eq!((v6.country.as_deref(), v6.asn), (Some("JP"), Some(64500)));
        // IPv4-mapped IPv6 uses the v4 table.
        let mapped = db.lookup("::ffff:1.0.0.5".parse().unwrap()).unwrap();
        assert_eq!(mapped.country.as_deref(), Some("AU"));
    }

    #[test]
    fn a_mapped_file_answers_as_bytes_in_memory_do() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(FILE_NAME);
        std::fs::write(&path, tiny()).unwrap();
        let mapped = GeoDb::open(&path).unwrap();
        let owned = GeoDb::parse(&tiny()).unwrap();
        for ip in [
            "1.0.0.5",
            "1.0.0.200",
            "1.0.2.1",
            "2001:db8::1",
            "::ffff:1.0.0.5",
        ] {
            let ip: IpAddr = ip.parse().unwrap();
            assert_eq!(mapped.lookup(ip), owned.lookup(ip), "{ip}");
        }
        assert_eq!(mapped.as_name(64500).as_deref(), Some("Example Net"));
        assert_eq!(mapped.as_name(64501), None);
        assert_eq!(mapped.len(), 6);
    }

    #[test]
    fn damaged_files_are_errors() {
        let f = tiny();
        assert!(GeoDb::parse(&f[..f.len() - 3]).is_err());
        assert!(GeoDb::parse(b"PHGEO999").is_err());
        let mut unsorted = f.clone();
        unsorted[32..36].copy_from_slice(&0x0200_0000u32.to_le_bytes());
        assert!(GeoDb::parse(&unsorted).is_err());
    }
}
