//! SIGINT/SIGTERM as a readable fd (the self-pipe trick), so the serve loop can poll for them
//! next to the context's fd and shut down cleanly: connections are closed after their queued
//! output is flushed, and Unix socket files are removed.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::sync::atomic::{AtomicI32, Ordering};

/// Write end of the pipe, for the handler; -1 until installed.
static WRITE_FD: AtomicI32 = AtomicI32::new(-1);

extern "C" fn on_signal(signal: libc::c_int) {
    // Only async-signal-safe work here: one write(2), with errno preserved.
    let saved = errno();
    let fd = WRITE_FD.load(Ordering::Relaxed);
    if fd >= 0 {
        let byte = signal as u8;
        // SAFETY: writing one byte from a live stack variable to a pipe fd we own; if the
        // pipe is full a wake-up is already pending, so a failed write loses nothing.
        unsafe { libc::write(fd, (&byte as *const u8).cast(), 1) };
    }
    set_errno(saved);
}

#[cfg(any(target_os = "linux", target_os = "android"))]
fn errno() -> libc::c_int {
    // SAFETY: __errno_location returns this thread's errno slot, valid for the thread's life.
    unsafe { *libc::__errno_location() }
}

#[cfg(any(target_os = "linux", target_os = "android"))]
fn set_errno(value: libc::c_int) {
    // SAFETY: as in `errno`.
    unsafe { *libc::__errno_location() = value };
}

#[cfg(not(any(target_os = "linux", target_os = "android")))]
fn errno() -> libc::c_int {
    0
}

#[cfg(not(any(target_os = "linux", target_os = "android")))]
fn set_errno(_value: libc::c_int) {}

/// The read end of the signal pipe. Install once per process.
pub struct SignalPipe {
    read: OwnedFd,
}

impl SignalPipe {
    /// Catch `signals` from now on; each one makes [`fd`](Self::fd) readable.
    pub fn install(signals: &[libc::c_int]) -> io::Result<SignalPipe> {
        let mut fds = [0 as libc::c_int; 2];
        // SAFETY: pipe(2) fills the two-element array on success.
        if unsafe { libc::pipe(fds.as_mut_ptr()) } != 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: both fds were just created and are owned by nobody else. The write end is
        // deliberately kept open for the life of the process (the handler may run any time).
        let read = unsafe { OwnedFd::from_raw_fd(fds[0]) };
        for fd in fds {
            set_flags(fd)?;
        }
        WRITE_FD.store(fds[1], Ordering::Relaxed);
        for &signal in signals {
            // SAFETY: a zeroed sigaction is a valid "no flags, empty mask" value; the handler
            // has the signature sigaction expects for a plain (non-SA_SIGINFO) handler.
            unsafe {
                let mut action: libc::sigaction = std::mem::zeroed();
                action.sa_sigaction = on_signal as extern "C" fn(libc::c_int) as libc::sighandler_t;
                action.sa_flags = libc::SA_RESTART;
                libc::sigemptyset(&mut action.sa_mask);
                if libc::sigaction(signal, &action, std::ptr::null_mut()) != 0 {
                    return Err(io::Error::last_os_error());
                }
            }
        }
        Ok(SignalPipe { read })
    }

    pub fn fd(&self) -> RawFd {
        self.read.as_raw_fd()
    }

    /// The last signal received since the previous call, if any.
    pub fn take(&self) -> Option<libc::c_int> {
        let mut buf = [0u8; 16];
        let mut last = None;
        loop {
            // SAFETY: reading into a live stack buffer of the given length.
            let n = unsafe { libc::read(self.fd(), buf.as_mut_ptr().cast(), buf.len()) };
            if n <= 0 {
                return last;
            }
            last = Some(libc::c_int::from(buf[n as usize - 1]));
        }
    }
}

fn set_flags(fd: RawFd) -> io::Result<()> {
    // SAFETY: fcntl on an fd we own; no memory is touched.
    unsafe {
        let fl = libc::fcntl(fd, libc::F_GETFL);
        let fd_flags = libc::fcntl(fd, libc::F_GETFD);
        if fl < 0
            || fd_flags < 0
            || libc::fcntl(fd, libc::F_SETFL, fl | libc::O_NONBLOCK) < 0
            || libc::fcntl(fd, libc::F_SETFD, fd_flags | libc::FD_CLOEXEC) < 0
        {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(())
}

/// Wait until one of `fds` is readable or `timeout_ms` passes (-1: no limit). EINTR counts as
/// a wake-up.
pub fn poll_readable(fds: &[RawFd], timeout_ms: i32) -> io::Result<()> {
    let mut pfds: Vec<libc::pollfd> = fds.iter().map(|&fd| libc::pollfd { fd, events: libc::POLLIN, revents: 0 }).collect();
    // SAFETY: `pfds` is a live array of `pfds.len()` pollfd structs.
    let rc = unsafe { libc::poll(pfds.as_mut_ptr(), pfds.len() as libc::nfds_t, timeout_ms) };
    if rc < 0 {
        let e = io::Error::last_os_error();
        if e.kind() != io::ErrorKind::Interrupted {
            return Err(e);
        }
    }
    Ok(())
}

pub fn name(signal: libc::c_int) -> &'static str {
    match signal {
        libc::SIGINT => "SIGINT",
        libc::SIGTERM => "SIGTERM",
        _ => "signal",
    }
}
