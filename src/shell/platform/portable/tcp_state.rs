//! A TCP socket's state where the kernel tells it to its holder: FreeBSD's `TCP_INFO` and
//! macOS's `TCP_CONNECTION_INFO` (`tcpi_state`, BSD's numbering: 4 is ESTABLISHED). Nothing
//! elsewhere (OpenBSD, Linux built portable).

use std::os::fd::OwnedFd;

/// `TCPS_ESTABLISHED` in <netinet/tcp_fsm.h> (FreeBSD and macOS).
#[allow(dead_code)] // unused where no state is read
const TCPS_ESTABLISHED: u8 = 4;

/// Whether the connection is established; `None` where that cannot be read.
#[cfg(target_os = "freebsd")]
pub fn established(fd: &OwnedFd) -> Option<bool> {
    let info: libc::tcp_info = read(fd, libc::TCP_INFO)?;
    Some(info.tcpi_state == TCPS_ESTABLISHED)
}

/// Whether the connection is established; `None` where that cannot be read.
#[cfg(target_vendor = "apple")]
pub fn established(fd: &OwnedFd) -> Option<bool> {
    let info: libc::tcp_connection_info = read(fd, libc::TCP_CONNECTION_INFO)?;
    Some(info.tcpi_state == TCPS_ESTABLISHED)
}

/// Whether the connection is established; `None` where that cannot be read.
#[cfg(not(any(target_os = "freebsd", target_vendor = "apple")))]
pub fn established(_fd: &OwnedFd) -> Option<bool> {
    None
}

/// One `IPPROTO_TCP` option of plain-data type `T`.
#[cfg(any(target_os = "freebsd", target_vendor = "apple"))]
fn read<T>(fd: &OwnedFd, name: libc::c_int) -> Option<T> {
    use std::os::fd::AsRawFd;
    // SAFETY: T is a plain-data struct (zeroed is valid); getsockopt fills at most its size.
    unsafe {
        let mut v: T = std::mem::zeroed();
        let mut len = std::mem::size_of::<T>() as libc::socklen_t;
        let rc = libc::getsockopt(
            fd.as_raw_fd(),
            libc::IPPROTO_TCP,
            name,
            (&mut v as *mut T).cast(),
            &mut len,
        );
        (rc == 0).then_some(v)
    }
}
