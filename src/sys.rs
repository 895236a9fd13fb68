//! The few operating-system calls that std does not offer, declared by hand.
//!
//! Everything `unsafe` in the crate is here, each call behind a safe function:
//! - [`send_nonblocking`]: `sendmsg` with `MSG_DONTWAIT`, so that one thread can write
//!   to many sockets without ever blocking on a client that stopped reading, while the
//!   connection's own thread stays blocked in `read` on the same socket;
//! - [`poll`]: to wait until any of those sockets can take more bytes;
//! - [`on_shutdown_signals`]: SIGINT and SIGTERM turned into a byte on a pipe, so that a
//!   plain thread can wait for them;
//! - [`raise_open_file_limit`]: a server holding thousands of connections needs more
//!   than the usual soft limit of 1024 descriptors;
//! - [`release_unused_stack`]: an idle connection's thread gives back the stack pages
//!   its busier moments touched.
//!
//! The declarations and constants are those of Linux on x86_64 and aarch64, with glibc
//! or musl; other targets are refused at compile time rather than miscompiled.

#![allow(unsafe_code)]

#[cfg(not(all(
    target_os = "linux",
    any(target_arch = "x86_64", target_arch = "aarch64")
)))]
compile_error!("src/sys.rs declares Linux x86_64/aarch64 system calls; port it first");

use std::io::{self, IoSlice, PipeReader, PipeWriter};
use std::os::fd::{AsRawFd, IntoRawFd, RawFd};
use std::sync::atomic::{AtomicI32, Ordering};
use std::time::Duration;

type CInt = i32;

const MSG_DONTWAIT: CInt = 0x40;
const MSG_NOSIGNAL: CInt = 0x4000;
/// The socket can take more bytes.
pub const POLLOUT: i16 = 0x4;
/// There is something to read.
pub const POLLIN: i16 = 0x1;
const SIGINT: CInt = 2;
const SIGTERM: CInt = 15;
const RLIMIT_NOFILE: CInt = 7;
const F_GETFL: CInt = 3;
const F_SETFL: CInt = 4;
const O_NONBLOCK: CInt = 0o4000;
const MADV_DONTNEED: CInt = 4;
/// `sysconf` name of the page size, the same on x86_64 and aarch64 Linux.
const SC_PAGESIZE: CInt = 30;
/// Bytes below the releasing function's frame that are kept: the frames of the calls
/// it still makes (the `madvise` stub) live there.
const STACK_MARGIN: usize = 512;

/// `pthread_attr_t`: 56 bytes with glibc and musl on 64-bit Linux; room for 64.
#[repr(C, align(8))]
struct PthreadAttr([u8; 64]);

#[repr(C)]
struct MsgHdr {
    name: *mut u8,
    name_len: u32,
    iov: *const IoSlice<'static>,
    iov_len: usize,
    control: *mut u8,
    control_len: usize,
    flags: CInt,
}

/// One entry of [`poll`]'s set: `struct pollfd`.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct PollFd {
    /// The descriptor to watch.
    pub fd: RawFd,
    /// What to wait for: [`POLLOUT`], [`POLLIN`].
    pub events: i16,
    /// What happened, filled in by [`poll`]; errors and hang-ups are always reported.
    pub revents: i16,
}

#[repr(C)]
struct RLimit {
    current: u64,
    max: u64,
}

extern "C" {
    fn sendmsg(fd: CInt, msg: *const MsgHdr, flags: CInt) -> isize;
    #[link_name = "poll"]
    fn c_poll(fds: *mut PollFd, nfds: u64, timeout_ms: CInt) -> CInt;
    fn signal(signum: CInt, handler: usize) -> usize;
    fn write(fd: CInt, buf: *const u8, count: usize) -> isize;
    fn fcntl(fd: CInt, cmd: CInt, ...) -> CInt;
    fn __errno_location() -> *mut CInt;
    fn getrlimit(resource: CInt, rlim: *mut RLimit) -> CInt;
    fn setrlimit(resource: CInt, rlim: *const RLimit) -> CInt;
    fn pthread_self() -> usize;
    fn pthread_getattr_np(thread: usize, attr: *mut PthreadAttr) -> CInt;
    fn pthread_attr_getstack(
        attr: *const PthreadAttr,
        addr: *mut *mut u8,
        size: *mut usize,
    ) -> CInt;
    fn pthread_attr_destroy(attr: *mut PthreadAttr) -> CInt;
    fn madvise(addr: *mut u8, len: usize, advice: CInt) -> CInt;
    fn sysconf(name: CInt) -> i64;
}

/// Writes as much of `bufs` as the socket takes now, in one system call, without
/// blocking: `Err(WouldBlock)` when it takes nothing. `MSG_NOSIGNAL`: a peer that has
/// gone gives `EPIPE`, not a SIGPIPE that would end the process.
pub fn send_nonblocking(socket: &impl AsRawFd, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
    let msg = MsgHdr {
        name: std::ptr::null_mut(),
        name_len: 0,
        // IoSlice is ABI-compatible with `struct iovec` on Unix (its documentation
        // guarantees it); the kernel only reads through this pointer.
        iov: bufs.as_ptr().cast(),
        iov_len: bufs.len(),
        control: std::ptr::null_mut(),
        control_len: 0,
        flags: 0,
    };
    loop {
        // SAFETY: `msg` points at `bufs`, which outlive the call; the kernel reads
        // `iov_len` iovecs and writes nothing into our memory.
        let n = unsafe { sendmsg(socket.as_raw_fd(), &msg, MSG_DONTWAIT | MSG_NOSIGNAL) };
        if n >= 0 {
            return Ok(n as usize);
        }
        let e = io::Error::last_os_error();
        if e.kind() != io::ErrorKind::Interrupted {
            return Err(e);
        }
    }
}

/// Waits until one of `fds` is ready or `timeout` passes (`None`: no timeout). Returns
/// how many entries have `revents` set.
pub fn poll(fds: &mut [PollFd], timeout: Option<Duration>) -> io::Result<usize> {
    let ms = match timeout {
        None => -1,
        // Rounded up, so that a deadline 0.4 ms away is not polled with 0 in a loop.
        Some(t) => t.as_micros().div_ceil(1000).min(i32::MAX as u128) as CInt,
    };
    // SAFETY: `fds` is a valid, exclusively borrowed array of `struct pollfd` of the
    // given length; the kernel writes only `revents`.
    let n = unsafe { c_poll(fds.as_mut_ptr(), fds.len() as u64, ms) };
    if n < 0 {
        let e = io::Error::last_os_error();
        if e.kind() == io::ErrorKind::Interrupted {
            return Ok(0);
        }
        return Err(e);
    }
    Ok(n as usize)
}

/// The write end of the pipe the signal handler writes to; -1 before installation.
static SIGNAL_PIPE: AtomicI32 = AtomicI32::new(-1);

extern "C" fn on_signal(signum: CInt) {
    let fd = SIGNAL_PIPE.load(Ordering::Relaxed);
    if fd >= 0 {
        let byte = signum as u8;
        // SAFETY: write(2) is async-signal-safe and `byte` lives for the call. The
        // write end is non-blocking: a full pipe drops the byte rather than hang the
        // interrupted thread, and bytes already wait to be read. errno is saved and
        // restored, since the thread we interrupted may be about to read it.
        unsafe {
            let errno = __errno_location();
            let saved = *errno;
            write(fd, &byte, 1);
            *errno = saved;
        }
    }
}

/// Turns SIGINT and SIGTERM into bytes (the signal number) readable on the returned
/// pipe. Installs the handlers once per process; later calls fail.
pub fn on_shutdown_signals() -> io::Result<PipeReader> {
    let (reader, writer): (PipeReader, PipeWriter) = io::pipe()?;
    let fd = writer.into_raw_fd();
    // SAFETY: `fd` is the pipe's write end, which we own; F_GETFL/F_SETFL only change
    // its flags.
    let set = unsafe {
        let flags = fcntl(fd, F_GETFL);
        flags >= 0 && fcntl(fd, F_SETFL, flags | O_NONBLOCK) == 0
    };
    if !set {
        return Err(io::Error::last_os_error());
    }
    if SIGNAL_PIPE
        .compare_exchange(-1, fd, Ordering::SeqCst, Ordering::SeqCst)
        .is_err()
    {
        return Err(io::Error::other("signal handlers are already installed"));
    }
    for signum in [SIGINT, SIGTERM] {
        // SAFETY: `on_signal` only loads an atomic and calls write(2), both
        // async-signal-safe. glibc's signal() installs it with SA_RESTART, so
        // blocking reads in other threads are restarted rather than failed.
        let previous = unsafe { signal(signum, on_signal as extern "C" fn(CInt) as usize) };
        if previous == usize::MAX {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(reader)
}

/// Raises the soft limit on open files to the hard limit, and returns the new soft
/// limit: each connection holds one descriptor.
pub fn raise_open_file_limit() -> io::Result<u64> {
    let mut lim = RLimit { current: 0, max: 0 };
    // SAFETY: `lim` is a valid `struct rlimit` the call fills in.
    if unsafe { getrlimit(RLIMIT_NOFILE, &mut lim) } != 0 {
        return Err(io::Error::last_os_error());
    }
    if lim.current < lim.max {
        let raised = RLimit {
            current: lim.max,
            max: lim.max,
        };
        // SAFETY: `raised` is a valid `struct rlimit` the call only reads.
        if unsafe { setrlimit(RLIMIT_NOFILE, &raised) } != 0 {
            return Err(io::Error::last_os_error());
        }
        lim.current = lim.max;
    }
    Ok(lim.current)
}

/// Gives the calling thread's stack pages below its current frame back to the
/// operating system (`madvise(MADV_DONTNEED)`), and returns how many bytes that range
/// spans. Nothing lives below the stack pointer once the calls that used it returned
/// (the x86_64 System V ABI's red zone is 128 bytes, within [`STACK_MARGIN`]); a page
/// touched again later is a fresh zeroed page. A reader thread touches its deepest
/// pages in the handshake and its busiest messages, and then waits for hours in
/// `read` with one or two pages in use: this is how it stops holding the rest.
#[inline(never)]
pub fn release_unused_stack() -> io::Result<usize> {
    let here = 0u8;
    let sp = std::ptr::addr_of!(here) as usize;
    let mut attr = PthreadAttr([0; 64]);
    let mut low: *mut u8 = std::ptr::null_mut();
    let mut size = 0usize;
    // SAFETY: `attr` is large and aligned enough for pthread_attr_t, initialised by
    // pthread_getattr_np before it is read, and destroyed once; the out-pointers are
    // valid for the call.
    let got = unsafe {
        if pthread_getattr_np(pthread_self(), &mut attr) != 0 {
            return Err(io::Error::other("pthread_getattr_np failed"));
        }
        let got = pthread_attr_getstack(&attr, &mut low, &mut size);
        pthread_attr_destroy(&mut attr);
        got
    };
    let low = low as usize;
    if got != 0 || sp <= low + STACK_MARGIN || sp > low + size {
        return Err(io::Error::other("the stack's bounds are not known"));
    }
    // The kernel's page size (4 KiB, or 16 or 64 KiB on some aarch64 kernels): madvise
    // works on whole pages, and would round a length up into the live frames.
    // SAFETY: sysconf only reads a value.
    let page = match unsafe { sysconf(SC_PAGESIZE) } {
        p if p > 0 && (p as usize).is_power_of_two() => p as usize,
        _ => return Err(io::Error::other("the page size is not known")),
    };
    // From the lowest whole page to the last whole page below the margin.
    let end = (sp - STACK_MARGIN) & !(page - 1);
    let start = (low + page - 1) & !(page - 1);
    if end <= start {
        return Ok(0);
    }
    // SAFETY: [start, end) lies within this thread's stack and below every live frame
    // (`end` is under this function's own frame by STACK_MARGIN, and every caller's
    // frame is above it); MADV_DONTNEED on private anonymous memory only drops pages,
    // which read back as zeros.
    if unsafe { madvise(start as *mut u8, end - start, MADV_DONTNEED) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(end - start)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;
    use std::net::{TcpListener, TcpStream};

    #[test]
    fn send_stops_at_would_block_and_poll_sees_room_again() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let tx = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (mut rx, _) = listener.accept().unwrap();
        let chunk = vec![7u8; 64 * 1024];
        let mut sent = 0usize;
        // Nobody reads: the socket buffers fill and the call says WouldBlock.
        let err = loop {
            match send_nonblocking(&tx, &[IoSlice::new(&chunk), IoSlice::new(&chunk)]) {
                Ok(n) => sent += n,
                Err(e) => break e,
            }
        };
        assert_eq!(err.kind(), io::ErrorKind::WouldBlock);
        assert!(sent > 0);
        let mut fds = [PollFd {
            fd: tx.as_raw_fd(),
            events: POLLOUT,
            revents: 0,
        }];
        assert_eq!(poll(&mut fds, Some(Duration::from_millis(20))).unwrap(), 0);
        // Reading everything makes room: poll reports POLLOUT.
        let mut buf = vec![0u8; 64 * 1024];
        let mut got = 0;
        rx.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        while got < sent {
            got += rx.read(&mut buf).unwrap();
        }
        assert_eq!(poll(&mut fds, Some(Duration::from_secs(5))).unwrap(), 1);
        assert_ne!(fds[0].revents & POLLOUT, 0);
    }

    #[test]
    fn send_to_a_closed_peer_is_an_error_not_a_signal() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let tx = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        drop(listener.accept().unwrap());
        let mut reader = &tx;
        reader
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        let mut buf = [0u8; 16];
        assert_eq!(reader.read(&mut buf).unwrap(), 0, "the peer's FIN");
        // Data to a closed socket is answered with RST, after which sends fail with
        // EPIPE or ECONNRESET (which one depends on timing) and the process lives on.
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        let err = loop {
            match send_nonblocking(&tx, &[IoSlice::new(&[1u8; 8])]) {
                Err(e) => break e,
                Ok(n) => assert_eq!(n, 8),
            }
            assert!(std::time::Instant::now() < deadline, "no RST seen");
            poll(&mut [], Some(Duration::from_millis(5))).unwrap();
        };
        assert!(
            matches!(
                err.kind(),
                io::ErrorKind::BrokenPipe | io::ErrorKind::ConnectionReset
            ),
            "{err:?}"
        );
    }

    #[test]
    fn open_file_limit_is_at_least_what_it_was() {
        let limit = raise_open_file_limit().unwrap();
        assert!(limit >= 256, "soft limit {limit}");
    }

    #[test]
    fn a_thread_gives_back_stack_it_no_longer_uses() {
        /// Touches `depth` KiB of stack below the caller, and checks it.
        #[inline(never)]
        fn deep(depth: usize) -> u64 {
            let mut block = [0u8; 1024];
            for (i, b) in block.iter_mut().enumerate() {
                *b = (i * depth) as u8;
            }
            let here: u64 = block.iter().map(|b| u64::from(*b)).sum();
            std::hint::black_box(&block);
            match depth {
                0 => here,
                _ => here + deep(depth - 1),
            }
        }
        std::thread::Builder::new()
            .stack_size(256 * 1024)
            .spawn(|| {
                let before = deep(64);
                let released = release_unused_stack().unwrap();
                assert!(released >= 128 * 1024, "released {released} bytes");
                // The pages come back, zeroed, and the computation is the same.
                assert_eq!(deep(64), before);
                assert!(release_unused_stack().unwrap() >= 128 * 1024);
            })
            .unwrap()
            .join()
            .unwrap();
    }
}
