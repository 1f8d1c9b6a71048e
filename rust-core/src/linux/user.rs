//! Looking up local users: who to run the captured command as, and a display name per UID.

use std::ffi::{CStr, CString};
use std::io;

/// The credentials a process runs with.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Credentials {
    pub uid: u32,
    pub gid: u32,
    /// Supplementary groups (including `gid`).
    pub groups: Vec<u32>,
    /// The account name, when the UID has a passwd entry.
    pub name: Option<String>,
    pub home: Option<String>,
}

struct Passwd {
    name: String,
    uid: u32,
    gid: u32,
    home: String,
}

/// Resolves `NAME` or a numeric `UID`. A numeric UID without a passwd entry runs with gid = uid
/// and no supplementary groups.
pub fn resolve(user: &str) -> io::Result<Credentials> {
    let entry = match user.parse::<u32>() {
        Ok(uid) => by_uid(uid)?,
        Err(_) => {
            let name = CString::new(user).map_err(|_| {
                io::Error::new(
                    io::ErrorKind::InvalidInput,
                    format!("invalid user name {user:?}"),
                )
            })?;
            Some(
                lookup(|pwd, buf, len, result| {
                    // SAFETY: all pointers are valid for the call; getpwnam_r fills `pwd` and `buf`.
                    unsafe { libc::getpwnam_r(name.as_ptr(), pwd, buf, len, result) }
                })?
                .ok_or_else(|| {
                    io::Error::new(io::ErrorKind::NotFound, format!("unknown user {user:?}"))
                })?,
            )
        }
    };
    Ok(match entry {
        Some(pw) => {
            let groups = group_list(&pw.name, pw.gid)?;
            Credentials {
                uid: pw.uid,
                gid: pw.gid,
                groups,
                name: Some(pw.name),
                home: Some(pw.home),
            }
        }
        None => {
            let uid = user.parse::<u32>().map_err(|_| {
                io::Error::new(io::ErrorKind::NotFound, format!("unknown user {user:?}"))
            })?;
            Credentials {
                uid,
                gid: uid,
                groups: vec![uid],
                name: None,
                home: None,
            }
        }
    })
}

fn by_uid(uid: u32) -> io::Result<Option<Passwd>> {
    lookup(|pwd, buf, len, result| {
        // SAFETY: all pointers are valid for the call; getpwuid_r fills `pwd` and `buf`.
        unsafe { libc::getpwuid_r(uid, pwd, buf, len, result) }
    })
}

/// Calls a getpw*_r function, growing the buffer on ERANGE.
fn lookup(
    call: impl Fn(
        *mut libc::passwd,
        *mut libc::c_char,
        libc::size_t,
        *mut *mut libc::passwd,
    ) -> libc::c_int,
) -> io::Result<Option<Passwd>> {
    let mut len = 1024usize;
    loop {
        let mut buf = vec![0 as libc::c_char; len];
        // SAFETY: passwd is plain old data; all-zero is valid.
        let mut pwd: libc::passwd = unsafe { std::mem::zeroed() };
        let mut result: *mut libc::passwd = std::ptr::null_mut();
        let rc = call(&mut pwd, buf.as_mut_ptr(), len, &mut result);
        if rc == libc::ERANGE && len < (1 << 20) {
            len *= 4;
            continue;
        }
        if rc != 0 {
            return Err(io::Error::from_raw_os_error(rc));
        }
        if result.is_null() {
            return Ok(None);
        }
        // SAFETY: on success the string fields point into `buf`, NUL-terminated.
        let (name, home) = unsafe {
            (
                CStr::from_ptr(pwd.pw_name).to_string_lossy().into_owned(),
                CStr::from_ptr(pwd.pw_dir).to_string_lossy().into_owned(),
            )
        };
        return Ok(Some(Passwd {
            name,
            uid: pwd.pw_uid,
            gid: pwd.pw_gid,
            home,
        }));
    }
}

fn group_list(name: &str, gid: u32) -> io::Result<Vec<u32>> {
    let cname = CString::new(name)
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "user name with NUL"))?;
    let mut count: libc::c_int = 32;
    loop {
        let mut groups = vec![0 as libc::gid_t; count as usize];
        let asked = count;
        // SAFETY: `groups` holds `count` entries; getgrouplist writes at most that many and
        // updates `count`.
        let rc =
            unsafe { libc::getgrouplist(cname.as_ptr(), gid, groups.as_mut_ptr(), &mut count) };
        if rc >= 0 {
            groups.truncate(count.max(0) as usize);
            return Ok(groups);
        }
        if count <= asked {
            count = asked.saturating_mul(2);
        }
        if count > 65536 {
            return Ok(vec![gid]);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn root_resolves_by_name_and_number() {
        let by_name = resolve("root").unwrap();
        assert_eq!((by_name.uid, by_name.gid), (0, 0));
        assert!(by_name.groups.contains(&0));
        assert_eq!(resolve("0").unwrap().name.as_deref(), Some("root"));
    }

    #[test]
    fn unknown_names_fail_and_unknown_numbers_run_bare() {
        let err = resolve("no-such-user-phonehome").unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::NotFound);
        assert!(err.to_string().contains("no-such-user-phonehome"));
        let bare = resolve("4000000000").unwrap();
        assert_eq!(
            (bare.uid, bare.gid, bare.name),
            (4_000_000_000, 4_000_000_000, None)
        );
    }
}
