//! Reading a non-blocking descriptor until it would block: the one loop every reader here
//! uses, and the two error predicates of mio's examples.

use std::io::{self, Read};

/// How a read of everything available ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReadEnd {
    /// Nothing more for now.
    WouldBlock,
    /// The peer closed (or the descriptor failed): what came before it is in the buffer.
    Closed,
    /// `limit` bytes are in the buffer; more may be waiting.
    Full,
}

/// Appends what `r` has to `into` until it would block, closes, or `into` holds `limit` bytes
/// or more; retries `Interrupted`.
pub fn read_available(r: &mut impl Read, into: &mut Vec<u8>, limit: usize) -> ReadEnd {
    let mut buf = [0u8; 4096];
    loop {
        if into.len() >= limit {
            return ReadEnd::Full;
        }
        let want = (limit - into.len()).min(buf.len());
        match r.read(&mut buf[..want]) {
            Ok(0) => return ReadEnd::Closed,
            Ok(n) => into.extend_from_slice(&buf[..n]),
            Err(e) if interrupted(&e) => continue,
            Err(e) if would_block(&e) => return ReadEnd::WouldBlock,
            Err(_) => return ReadEnd::Closed,
        }
    }
}

pub fn would_block(e: &io::Error) -> bool {
    e.kind() == io::ErrorKind::WouldBlock
}

pub fn interrupted(e: &io::Error) -> bool {
    e.kind() == io::ErrorKind::Interrupted
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;
    use std::os::unix::net::UnixStream;

    #[test]
    fn reads_until_it_would_block_closes_or_is_full() {
        let (mut a, mut b) = UnixStream::pair().unwrap();
        b.set_nonblocking(true).unwrap();
        let mut got = Vec::new();
        assert_eq!(read_available(&mut b, &mut got, 100), ReadEnd::WouldBlock);
        a.write_all(b"hello world").unwrap();
        assert_eq!(read_available(&mut b, &mut got, 5), ReadEnd::Full);
        assert_eq!(got, b"hello");
        drop(a);
        assert_eq!(read_available(&mut b, &mut got, 100), ReadEnd::Closed);
        assert_eq!(got, b"hello world");
    }
}
