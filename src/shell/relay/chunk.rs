//! Where a relayed direction keeps the bytes it has read and not yet written: a pipe that
//! `splice(2)` moves them through without copying them (Linux), or a buffer (elsewhere, and
//! when no pipe can be had). Both come from a small pool and go back to it once empty, so
//! ten thousand idle connections hold none.

use std::io;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};

/// A buffer's size, and what one read or splice moves at most.
pub const CHUNK: usize = 64 * 1024;
/// Empty pipes and buffers kept for reuse at most.
const KEEP: usize = 32;

/// Bytes in flight in one direction.
pub enum Chunk {
    /// In a pipe: `len` bytes.
    Pipe { pipe: Pipe, len: usize },
    /// In a buffer: `buf[start..end]`.
    Buf {
        buf: Box<[u8]>,
        start: usize,
        end: usize,
    },
}

impl Chunk {
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn len(&self) -> usize {
        match self {
            Chunk::Pipe { len, .. } => *len,
            Chunk::Buf { start, end, .. } => end - start,
        }
    }

    /// Room left for more bytes.
    pub fn room(&self) -> usize {
        match self {
            Chunk::Pipe { len, .. } => CHUNK - len,
            // An emptied buffer starts over at its beginning on the next fill.
            Chunk::Buf { buf, start, end } if start == end => buf.len(),
            Chunk::Buf { buf, end, .. } => buf.len() - end,
        }
    }

    /// Reads from `from` into the chunk: `Ok(0)` at the end of the stream.
    pub fn fill(&mut self, from: RawFd) -> io::Result<usize> {
        match self {
            Chunk::Pipe { pipe, len } => {
                let n = splice(from, pipe.write.as_raw_fd(), CHUNK - *len)?;
                *len += n;
                Ok(n)
            }
            Chunk::Buf { buf, start, end } => {
                if *start == *end {
                    (*start, *end) = (0, 0);
                }
                let n = read(from, &mut buf[*end..])?;
                *end += n;
                Ok(n)
            }
        }
    }

    /// Writes what the chunk holds to `to`: how much went.
    pub fn drain(&mut self, to: RawFd) -> io::Result<usize> {
        match self {
            Chunk::Pipe { pipe, len } => {
                let n = splice(pipe.read.as_raw_fd(), to, *len)?;
                *len -= n;
                Ok(n)
            }
            Chunk::Buf { buf, start, end } => {
                let n = write(to, &buf[*start..*end])?;
                *start += n;
                Ok(n)
            }
        }
    }
}

/// A pipe for `splice(2)`, both ends non-blocking.
pub struct Pipe {
    read: OwnedFd,
    write: OwnedFd,
}

impl Pipe {
    #[cfg(not(target_os = "linux"))]
    fn new() -> io::Result<Pipe> {
        Err(io::Error::from(io::ErrorKind::Unsupported))
    }

    #[cfg(target_os = "linux")]
    fn new() -> io::Result<Pipe> {
        use nix::fcntl::OFlag;
        let (read, write) =
            nix::unistd::pipe2(OFlag::O_NONBLOCK | OFlag::O_CLOEXEC).map_err(io::Error::from)?;
        Ok(Pipe { read, write })
    }
}

/// The pool: spare pipes and buffers.
pub struct Chunks {
    splice: bool,
    pipes: Vec<Pipe>,
    bufs: Vec<Box<[u8]>>,
}

impl Chunks {
    /// `splice`: use pipes where the platform has `splice(2)`.
    pub fn new(splice: bool) -> Chunks {
        Chunks {
            splice: splice && cfg!(target_os = "linux"),
            pipes: Vec::new(),
            bufs: Vec::new(),
        }
    }

    /// An empty chunk: a pipe when splicing (a buffer when none can be made: out of
    /// descriptors), else a buffer.
    pub fn take(&mut self) -> Chunk {
        if self.splice {
            if let Some(pipe) = self.pipes.pop().or_else(|| Pipe::new().ok()) {
                return Chunk::Pipe { pipe, len: 0 };
            }
        }
        let buf = self
            .bufs
            .pop()
            .unwrap_or_else(|| vec![0u8; CHUNK].into_boxed_slice());
        Chunk::Buf {
            buf,
            start: 0,
            end: 0,
        }
    }

    /// An empty chunk comes back. One that still holds bytes (a connection torn down) is
    /// dropped: a pipe with bytes in it cannot be reused.
    pub fn give(&mut self, c: Chunk) {
        if !c.is_empty() {
            return;
        }
        match c {
            Chunk::Pipe { pipe, .. } if self.pipes.len() < KEEP => self.pipes.push(pipe),
            Chunk::Buf { buf, .. } if self.bufs.len() < KEEP => self.bufs.push(buf),
            _ => {}
        }
    }
}

#[cfg(target_os = "linux")]
fn splice(from: RawFd, to: RawFd, len: usize) -> io::Result<usize> {
    let flags = libc::SPLICE_F_MOVE | libc::SPLICE_F_NONBLOCK;
    // SAFETY: both descriptors are open (owned by the caller); no offsets are passed.
    let n = unsafe {
        libc::splice(
            from,
            std::ptr::null_mut(),
            to,
            std::ptr::null_mut(),
            len,
            flags,
        )
    };
    if n < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(n as usize)
    }
}

#[cfg(not(target_os = "linux"))]
fn splice(_from: RawFd, _to: RawFd, _len: usize) -> io::Result<usize> {
    Err(io::Error::from(io::ErrorKind::Unsupported))
}

fn read(fd: RawFd, buf: &mut [u8]) -> io::Result<usize> {
    // SAFETY: `buf` is valid for `buf.len()` bytes; `fd` is open.
    let n = unsafe { libc::read(fd, buf.as_mut_ptr().cast(), buf.len()) };
    if n < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(n as usize)
    }
}

fn write(fd: RawFd, buf: &[u8]) -> io::Result<usize> {
    // MSG_NOSIGNAL: a peer gone is an error here, not a SIGPIPE.
    #[cfg(any(target_os = "linux", target_os = "freebsd", target_os = "openbsd"))]
    let flags = libc::MSG_NOSIGNAL;
    #[cfg(not(any(target_os = "linux", target_os = "freebsd", target_os = "openbsd")))]
    let flags = 0;
    // SAFETY: `buf` is valid for `buf.len()` bytes; `fd` is an open socket.
    let n = unsafe { libc::send(fd, buf.as_ptr().cast(), buf.len(), flags) };
    if n < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(n as usize)
    }
}

/// Bytes waiting to be read on a socket (`FIONREAD`).
pub fn readable_bytes(fd: RawFd) -> usize {
    let mut n: libc::c_int = 0;
    // SAFETY: FIONREAD writes one int.
    let r = unsafe { libc::ioctl(fd, libc::FIONREAD, &mut n) };
    if r < 0 {
        0
    } else {
        n.max(0) as usize
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};
    use std::os::unix::net::UnixStream;

    fn pair() -> (UnixStream, UnixStream) {
        let (a, b) = UnixStream::pair().unwrap();
        a.set_nonblocking(true).unwrap();
        b.set_nonblocking(true).unwrap();
        (a, b)
    }

    fn through(splice: bool) {
        let mut pool = Chunks::new(splice);
        let (mut w, r) = pair();
        let (out, mut sink) = pair();
        w.write_all(b"hello through the chunk").unwrap();
        let mut c = pool.take();
        assert_eq!(
            matches!(c, Chunk::Pipe { .. }),
            splice && cfg!(target_os = "linux")
        );
        let n = c.fill(r.as_raw_fd()).unwrap();
        assert_eq!(n, 23);
        assert_eq!(c.len(), 23);
        assert_eq!(c.drain(out.as_raw_fd()).unwrap(), 23);
        let mut got = [0u8; 64];
        let m = sink.read(&mut got).unwrap();
        assert_eq!(&got[..m], b"hello through the chunk");
        // Nothing more to read: would block; the end of the stream: 0.
        let e = c.fill(r.as_raw_fd()).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::WouldBlock);
        drop(w);
        assert_eq!(c.fill(r.as_raw_fd()).unwrap(), 0);
        pool.give(c);
        assert_eq!(
            pool.pipes.len() + pool.bufs.len(),
            1,
            "the empty chunk is kept"
        );
    }

    #[test]
    fn bytes_go_through_a_pipe_or_a_buffer() {
        through(true);
        through(false);
    }

    #[test]
    fn a_chunk_with_bytes_in_it_is_not_reused() {
        let mut pool = Chunks::new(true);
        let (mut w, r) = pair();
        w.write_all(b"x").unwrap();
        let mut c = pool.take();
        c.fill(r.as_raw_fd()).unwrap();
        pool.give(c);
        assert_eq!(pool.pipes.len() + pool.bufs.len(), 0);
        assert_eq!(readable_bytes(r.as_raw_fd()), 0);
        w.write_all(b"abc").unwrap();
        assert_eq!(readable_bytes(r.as_raw_fd()), 3);
    }
}
