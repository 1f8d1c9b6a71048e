//! The country/ASN file bundled in the APK (`assets/phonehome-geo.bin`, stored uncompressed):
//! the app hands over the APK's descriptor with the asset's offset and length
//! (`AssetFileDescriptor`), and the core reads exactly that range. No copy into the app's files,
//! and the APK can be replaced by an update without a stale copy lingering.

use std::os::fd::{AsRawFd, BorrowedFd};

use super::session::CoreError;
use crate::geo::{self, GeoDb};

/// Far above the real file (a few MB); a larger length is a wrong descriptor, not a bigger file.
const MAX_GEO_BYTES: u64 = 64 << 20;

/// Reads `length` bytes at `offset` of `fd` (not closed: the app's AssetFileDescriptor owns it),
/// checks them and makes them the process's country/ASN database. Returns the number of ranges.
pub fn load(fd: BorrowedFd<'_>, offset: u64, length: u64) -> Result<usize, CoreError> {
    let db = read(fd, offset, length)?;
    let ranges = db.len();
    if !geo::install(db) {
        return Err(CoreError::new(
            "geo",
            "the country/ASN database was already set in this process",
        ));
    }
    Ok(ranges)
}

fn read(fd: BorrowedFd<'_>, offset: u64, length: u64) -> Result<GeoDb, CoreError> {
    if length == 0 || length > MAX_GEO_BYTES {
        return Err(CoreError::bad_request(format!(
            "geo asset length {length} is outside 1..={MAX_GEO_BYTES}"
        )));
    }
    let size = usize::try_from(length)
        .map_err(|_| CoreError::bad_request(format!("geo asset length {length} too large")))?;
    let mut data = vec![0u8; size];
    let mut done = 0usize;
    while done < size {
        let at = offset
            .checked_add(done as u64)
            .and_then(|at| libc::off_t::try_from(at).ok())
            .ok_or_else(|| {
                CoreError::bad_request(format!("geo asset offset {offset} too large"))
            })?;
        let rest = &mut data[done..];
        // SAFETY: `rest` is a valid writable buffer of `rest.len()` bytes; fd is borrowed open.
        let n = unsafe { libc::pread(fd.as_raw_fd(), rest.as_mut_ptr().cast(), rest.len(), at) };
        if n < 0 {
            let err = std::io::Error::last_os_error();
            if err.kind() == std::io::ErrorKind::Interrupted {
                continue;
            }
            return Err(CoreError::new(
                "io",
                format!("reading the geo asset: {err}"),
            ));
        }
        if n == 0 {
            return Err(CoreError::new(
                "geo",
                format!("geo asset ends after {done} of {size} bytes"),
            ));
        }
        done += n as usize;
    }
    GeoDb::parse(&data).map_err(|e| CoreError::new("geo", format!("geo asset: {e}")))
}

#[cfg(test)]
mod tests {
    use std::io::Write;
    use std::os::fd::AsFd;

    use super::*;

    /// The asset as it sits in an APK: somewhere inside a larger file.
    fn apk_with(asset: &[u8]) -> (std::fs::File, u64) {
        let mut file = tempfile::tempfile().unwrap();
        let before = vec![0x5a; 1000];
        file.write_all(&before).unwrap();
        file.write_all(asset).unwrap();
        file.write_all(b"central directory").unwrap();
        (file, before.len() as u64)
    }

    #[test]
    fn the_asset_range_inside_the_apk_is_read_and_parsed() {
        let asset = crate::geo::tests::tiny();
        let (file, offset) = apk_with(&asset);
        let db = read(file.as_fd(), offset, asset.len() as u64).unwrap();
        let info = db.lookup("1.0.0.5".parse().unwrap()).unwrap();
        assert_eq!(info.country.as_deref(), Some("AU"));
        assert_eq!(info.asn, Some(64500));
    }

    #[test]
    fn a_wrong_range_is_an_error_naming_the_asset() {
        let asset = crate::geo::tests::tiny();
        let (file, offset) = apk_with(&asset);
        let error = |offset, length| match read(file.as_fd(), offset, length) {
            Ok(_) => panic!("range {offset}+{length} read as a database"),
            Err(e) => e,
        };
        let shifted = error(offset + 1, asset.len() as u64);
        assert!(shifted.to_string().contains("geo asset"), "{shifted}");
        let past_end = error(offset, 1 << 20);
        assert!(past_end.to_string().contains("ends after"), "{past_end}");
        let empty = error(offset, 0);
        assert!(empty.to_string().contains("length 0"), "{empty}");
    }
}
