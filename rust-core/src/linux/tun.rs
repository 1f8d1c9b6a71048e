//! Opening a Linux TUN device: one IP packet per read or write, no packet-information header
//! (`IFF_NO_PI`), non-blocking. Without offload that is the framing of Android's VpnService fd;
//! with offload each packet is preceded by a `virtio_net_hdr` and TCP may move in 64 KiB
//! super-packets (`engine::offload`).

use std::ffi::CStr;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

/// Creates (or attaches to) the TUN interface `name` in the calling thread's network namespace
/// and returns its fd (non-blocking, close-on-exec) and the name the kernel gave it.
///
/// `name` may hold a `%d` pattern (`"ph%d"`) to let the kernel pick a free number. The interface
/// is created down; bring it up and address it with [`super::netns`].
///
/// `offload`: `IFF_VNET_HDR` and `TUNSETOFFLOAD` with checksum and TCP segmentation offload
/// (IPv4 and IPv6), as wireguard-go and tailscale do. Both exist since Linux 2.6.27.
pub fn open(name: &str, offload: bool) -> io::Result<(OwnedFd, String)> {
    if name.is_empty() || name.len() >= libc::IFNAMSIZ || name.bytes().any(|b| b == 0 || b == b'/')
    {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!(
                "invalid TUN interface name {name:?} (1 to {} bytes, no '/')",
                libc::IFNAMSIZ - 1
            ),
        ));
    }
    // SAFETY: a NUL-terminated literal path; the returned fd is checked before use.
    let raw = unsafe {
        libc::open(
            c"/dev/net/tun".as_ptr(),
            libc::O_RDWR | libc::O_NONBLOCK | libc::O_CLOEXEC,
        )
    };
    if raw < 0 {
        let err = io::Error::last_os_error();
        return Err(io::Error::new(err.kind(), format!("/dev/net/tun: {err}")));
    }
    // SAFETY: `raw` is a fresh fd that nothing else owns.
    let fd = unsafe { OwnedFd::from_raw_fd(raw) };

    // SAFETY: ifreq is plain old data; all-zero is a valid value.
    let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
    for (dst, src) in req.ifr_name.iter_mut().zip(name.bytes()) {
        *dst = src as libc::c_char;
    }
    let vnet = if offload { libc::IFF_VNET_HDR } else { 0 };
    req.ifr_ifru.ifru_flags = (libc::IFF_TUN | libc::IFF_NO_PI | vnet) as libc::c_short;
    // SAFETY: TUNSETIFF reads and writes one `ifreq`, which outlives the call.
    if unsafe { libc::ioctl(fd.as_raw_fd(), libc::TUNSETIFF, &mut req) } < 0 {
        let err = io::Error::last_os_error();
        return Err(io::Error::new(
            err.kind(),
            format!("TUNSETIFF {name}: {err}"),
        ));
    }
    if offload {
        let features = libc::TUN_F_CSUM | libc::TUN_F_TSO4 | libc::TUN_F_TSO6;
        // SAFETY: TUNSETOFFLOAD takes its argument by value.
        if unsafe {
            libc::ioctl(
                fd.as_raw_fd(),
                libc::TUNSETOFFLOAD,
                features as libc::c_ulong,
            )
        } < 0
        {
            let err = io::Error::last_os_error();
            return Err(io::Error::new(
                err.kind(),
                format!("TUNSETOFFLOAD {name}: {err}"),
            ));
        }
    }
    // SAFETY: the kernel writes a NUL-terminated name of at most IFNAMSIZ bytes.
    let actual = unsafe { CStr::from_ptr(req.ifr_name.as_ptr()) }
        .to_string_lossy()
        .into_owned();
    Ok((fd, actual))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rejects_bad_names_before_touching_the_kernel() {
        for bad in ["", "a/b", "exactly-16-bytes"] {
            let err = open(bad, true).err().map(|e| e.kind());
            assert_eq!(err, Some(io::ErrorKind::InvalidInput), "{bad:?}");
        }
    }
}
