//! Unix domain socket specifics: a listener whose socket file gets its mode before anyone
//! can connect, and the credentials of the process on the other end (`SO_PEERCRED`).

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use mio::net::UnixListener;

use super::PeerCredentials;

/// Bind and listen on `path`. With a `mode`, the socket file is chmod-ed between bind(2) and
/// listen(2): until listen, connecting is refused, so no peer gets in under the umask's mode.
pub fn bind(path: &Path, mode: Option<u32>) -> io::Result<UnixListener> {
    let Some(mode) = mode else { return UnixListener::bind(path) };
    let bytes = path.as_os_str().as_bytes();
    // SAFETY: sockaddr_un is plain old data; all zeroes is a valid value.
    let mut addr: libc::sockaddr_un = unsafe { std::mem::zeroed() };
    if bytes.len() >= addr.sun_path.len() || bytes.contains(&0) {
        return Err(io::Error::new(io::ErrorKind::InvalidInput, "the socket path is too long or contains a NUL byte"));
    }
    addr.sun_family = libc::AF_UNIX as libc::sa_family_t;
    for (dst, src) in addr.sun_path.iter_mut().zip(bytes) {
        *dst = *src as libc::c_char;
    }
    // SAFETY: socket(2); the result is checked before use and owned from here on.
    let fd = unsafe { libc::socket(libc::AF_UNIX, libc::SOCK_STREAM | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: a fresh fd nothing else owns.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    let len = (std::mem::size_of::<libc::sa_family_t>() + bytes.len() + 1) as libc::socklen_t;
    // SAFETY: bind(2) with a sockaddr_un that lives across the call and its true length.
    if unsafe { libc::bind(fd.as_raw_fd(), (&addr as *const libc::sockaddr_un).cast(), len) } < 0 {
        return Err(io::Error::last_os_error());
    }
    let listening = chmod_socket(bytes, mode).and_then(|()| {
        // SAFETY: listen(2) on the socket bound above (the backlog is set again later).
        if unsafe { libc::listen(fd.as_raw_fd(), 1024) } < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    });
    if let Err(e) = listening {
        let _ = std::fs::remove_file(path);
        return Err(e);
    }
    // SAFETY: the fd is a listening Unix stream socket, handed over whole.
    Ok(unsafe { UnixListener::from_raw_fd(std::os::fd::IntoRawFd::into_raw_fd(fd)) })
}

/// chmod the socket file at `path` without following a symlink: someone who can write to the
/// directory could swap the path for a link to another file between bind(2) and here. The
/// path is opened with O_PATH|O_NOFOLLOW, must be a socket, and is chmod-ed through
/// /proc/self/fd.
fn chmod_socket(path: &[u8], mode: u32) -> io::Result<()> {
    let c_path = std::ffi::CString::new(path).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
    // SAFETY: open(2) with a NUL-terminated path; the result is checked before use.
    let fd = unsafe { libc::open(c_path.as_ptr(), libc::O_PATH | libc::O_NOFOLLOW | libc::O_CLOEXEC) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: a fresh fd nothing else owns.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    // SAFETY: stat is plain old data; all zeroes is a valid value.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: fstat(2) on the fd opened above, filling `st`, which outlives the call.
    if unsafe { libc::fstat(fd.as_raw_fd(), &mut st) } < 0 {
        return Err(io::Error::last_os_error());
    }
    if st.st_mode & libc::S_IFMT != libc::S_IFSOCK {
        return Err(io::Error::other("the socket path was replaced by something else before its mode was set"));
    }
    std::fs::set_permissions(format!("/proc/self/fd/{}", fd.as_raw_fd()), std::os::unix::fs::PermissionsExt::from_mode(mode))
}

/// The pid, uid and gid of the process that made (or accepted) the connection on `fd`, as
/// the kernel recorded them then.
pub fn peer_credentials(fd: RawFd) -> Option<PeerCredentials> {
    let mut cred = libc::ucred { pid: 0, uid: 0, gid: 0 };
    let mut len = std::mem::size_of::<libc::ucred>() as libc::socklen_t;
    // SAFETY: getsockopt(2) writing at most `len` bytes into `cred`, which outlives the call.
    let rc = unsafe { libc::getsockopt(fd, libc::SOL_SOCKET, libc::SO_PEERCRED, (&mut cred as *mut libc::ucred).cast(), &mut len) };
    (rc == 0 && len as usize == std::mem::size_of::<libc::ucred>()).then_some(PeerCredentials { pid: cred.pid, uid: cred.uid, gid: cred.gid })
}

/// Split `PATH?mode=OCTAL` (a listener's file mode) from a `unix:` URI's path. A `?` not
/// followed by that is part of the path, as before the option existed.
pub fn split_mode(path: &str) -> Result<(&str, Option<u32>), String> {
    let Some((file, query)) = path.rsplit_once("?mode=") else { return Ok((path, None)) };
    if query.is_empty() || !query.bytes().all(|b| (b'0'..=b'7').contains(&b)) {
        return Err(format!("mode={query:?} is not an octal file mode such as 0600"));
    }
    match u32::from_str_radix(query, 8) {
        Ok(mode) if mode <= 0o777 => Ok((file, Some(mode))),
        _ => Err(format!("mode={query} is not a file mode from 0 to 0777")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn modes_in_paths() {
        assert_eq!(split_mode("/tmp/s.sock"), Ok(("/tmp/s.sock", None)));
        assert_eq!(split_mode("/tmp/s.sock?mode=0600"), Ok(("/tmp/s.sock", Some(0o600))));
        assert_eq!(split_mode("/tmp/what?.sock"), Ok(("/tmp/what?.sock", None)));
        assert!(split_mode("/tmp/s.sock?mode=0800").is_err());
        assert!(split_mode("/tmp/s.sock?mode=").is_err());
        assert!(split_mode("/tmp/s.sock?mode=01777").is_err());
    }
}
