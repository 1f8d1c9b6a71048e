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

/// Sorted range starts and the value of the range each one opens.
struct Table<K, V> {
    starts: Vec<K>,
    values: Vec<V>,
}

impl<K: Ord + Copy, V: Copy> Table<K, V> {
    fn find(&self, key: K) -> Option<V> {
        let idx = self.starts.partition_point(|s| *s <= key);
        idx.checked_sub(1).and_then(|i| self.values.get(i).copied())
    }
}

pub struct GeoDb {
    country_v4: Table<u32, [u8; 2]>,
    country_v6: Table<u128, [u8; 2]>,
    asn_v4: Table<u32, u32>,
    asn_v6: Table<u128, u32>,
    /// (asn, range in `names`), sorted by asn.
    as_names: Vec<(u32, u32, u32)>,
    names: String,
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

    fn u32s(&mut self, n: usize) -> Result<Vec<u32>, String> {
        let b = self.take(n.checked_mul(4).ok_or("size overflow")?)?;
        Ok(b.chunks_exact(4)
            .map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect())
    }

    fn u128s(&mut self, n: usize) -> Result<Vec<u128>, String> {
        let b = self.take(n.checked_mul(16).ok_or("size overflow")?)?;
        Ok(b.chunks_exact(16)
            .map(|c| {
                let mut a = [0u8; 16];
                a.copy_from_slice(c);
                u128::from_le_bytes(a)
            })
            .collect())
    }

    fn pairs(&mut self, n: usize) -> Result<Vec<[u8; 2]>, String> {
        let b = self.take(n.checked_mul(2).ok_or("size overflow")?)?;
        Ok(b.chunks_exact(2).map(|c| [c[0], c[1]]).collect())
    }
}

fn sorted<K: Ord>(v: &[K]) -> bool {
    v.windows(2).all(|w| w[0] < w[1])
}

impl GeoDb {
    pub fn parse(data: &[u8]) -> Result<GeoDb, String> {
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
        let country_v4 = Table {
            starts: c.u32s(nc4)?,
            values: c.pairs(nc4)?,
        };
        let country_v6 = Table {
            starts: c.u128s(nc6)?,
            values: c.pairs(nc6)?,
        };
        let asn_v4 = Table {
            starts: c.u32s(na4)?,
            values: c.u32s(na4)?,
        };
        let asn_v6 = Table {
            starts: c.u128s(na6)?,
            values: c.u32s(na6)?,
        };
        let triples = c.u32s(nn.checked_mul(3).ok_or("size overflow")?)?;
        let as_names: Vec<(u32, u32, u32)> = triples
            .chunks_exact(3)
            .map(|t| (t[0], t[1], t[2]))
            .collect();
        let names =
            String::from_utf8(c.take(blob)?.to_vec()).map_err(|_| "AS names are not UTF-8")?;
        if !(sorted(&country_v4.starts)
            && sorted(&country_v6.starts)
            && sorted(&asn_v4.starts)
            && sorted(&asn_v6.starts)
            && as_names.windows(2).all(|w| w[0].0 < w[1].0))
        {
            return Err("tables are not sorted".into());
        }
        for &(_, off, len) in &as_names {
            let (off, len) = (off as usize, len as usize);
            if off.checked_add(len).is_none_or(|end| end > names.len())
                || !names.is_char_boundary(off)
                || !names.is_char_boundary(off + len)
            {
                return Err("AS name outside the name table".into());
            }
        }
        Ok(GeoDb {
            country_v4,
            country_v6,
            asn_v4,
            asn_v6,
            as_names,
            names,
        })
    }

    pub fn open(path: &Path) -> Result<GeoDb, GeoError> {
        let err = |message: String| GeoError {
            path: path.to_owned(),
            message,
        };
        let data = std::fs::read(path).map_err(|e| err(e.to_string()))?;
        GeoDb::parse(&data).map_err(err)
    }

    /// Ranges in the four tables (for reports and tests).
    pub fn len(&self) -> usize {
        self.country_v4.starts.len()
            + self.country_v6.starts.len()
            + self.asn_v4.starts.len()
            + self.asn_v6.starts.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The holder of AS number `asn`, as the AS data names it.
    pub fn as_name(&self, asn: u32) -> Option<String> {
        let i = self.as_names.binary_search_by_key(&asn, |t| t.0).ok()?;
        let (_, off, len) = self.as_names[i];
        self.names
            .get(off as usize..(off + len) as usize)
            .map(str::to_owned)
    }

    /// Country and AS of `ip`; None when the database knows neither (private, reserved space).
    pub fn lookup(&self, ip: IpAddr) -> Option<GeoInfo> {
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(ip),
            v4 => v4,
        };
        let (country, asn) = match ip {
            IpAddr::V4(v4) => {
                let k = u32::from(v4);
                (self.country_v4.find(k), self.asn_v4.find(k))
            }
            IpAddr::V6(v6) => {
                let k = u128::from(v6);
                (self.country_v6.find(k), self.asn_v6.find(k))
            }
        };
        let country = country
            .filter(|c| c.iter().all(u8::is_ascii_alphabetic))
            .map(|c| String::from_utf8_lossy(&c).into_owned());
        let asn = asn.filter(|a| *a != 0);
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
    fn damaged_files_are_errors() {
        let f = tiny();
        assert!(GeoDb::parse(&f[..f.len() - 3]).is_err());
        assert!(GeoDb::parse(b"PHGEO999").is_err());
        let mut unsorted = f.clone();
        unsorted[32..36].copy_from_slice(&0x0200_0000u32.to_le_bytes());
        assert!(GeoDb::parse(&unsorted).is_err());
    }
}
