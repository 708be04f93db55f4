//! Frames on a connection: `[length: u32 BE][kind: u8][body]`, where `length` counts the kind
//! byte and the body. Integers in bodies are big-endian; channel frames start with the
//! channel id (`u64`).

use std::io::{self, Read, Write};

/// The largest frame: a records buffer of large records must still fit (in-process channels
/// have no limit either). A reader grows its buffer only as the bytes arrive, so a corrupt or
/// hostile length cannot make it allocate what the peer never sends.
pub(super) const MAX_FRAME: usize = 1 << 31;

/// The largest frame before the handshake is done: the handshake's frames are small, and a
/// stranger must not make this process buffer much.
pub(super) const MAX_HANDSHAKE_FRAME: usize = 64 << 10;

/// Dialer → acceptor: `"BRSK"`, protocol version `u32`, service id `u64`.
pub(super) const HELLO: u8 = 1;
/// Acceptor → dialer: protocol version `u32`, service id `u64`.
pub(super) const WELCOME: u8 = 2;
/// Acceptor → dialer, then the socket closes: reason code `u8`, its data, UTF-8 text.
pub(super) const REFUSE: u8 = 3;
/// Dialer → acceptor when the dialer decides: the connection is kept (empty body).
pub(super) const CONFIRM: u8 = 4;
/// Dialer → acceptor when the dialer decides: a connection already exists (empty body).
pub(super) const ABANDON: u8 = 5;
/// Producer → consumer: a channel now sends on this connection.
pub(super) const OPEN: u8 = 16;
/// Producer → consumer: one message of a channel; uses one credit.
pub(super) const DATA: u8 = 17;
/// Producer → consumer: an overtaking barrier and the count of messages behind it; no credit.
pub(super) const PRIORITY: u8 = 18;
/// Consumer → producer: `count: u32`, then `count` × (channel `u64`, credits `u32`).
pub(super) const CREDIT: u8 = 19;
/// Producer → consumer: the channel's sender is gone and nothing more follows.
pub(super) const CLOSE: u8 = 20;
/// Consumer → producer: the channel's receiver is gone; the producer answers with `CLOSE`.
pub(super) const CANCEL: u8 = 21;

/// Refusal code: the versions differ; the data is the acceptor's version `u32`.
pub(super) const REFUSED_VERSION: u8 = 1;
/// Refusal code: the pair already has a connection; the data is the acceptor's id `u64`.
pub(super) const REFUSED_DUPLICATE: u8 = 2;
/// Refusal code: anything else; no data.
pub(super) const REFUSED_OTHER: u8 = 3;

/// The first bytes of a `HELLO`, so that a stray client is told apart from an old Brisk.
pub(super) const MAGIC: &[u8; 4] = b"BRSK";

/// Why no frame could be read.
#[derive(Debug)]
pub(super) enum FrameError {
    /// The socket failed or closed.
    Io(io::Error),
    /// The bytes are not a frame.
    Malformed(String),
}

/// Reads one frame of at most `limit` bytes into `body` (cleared first) and returns its kind.
pub(super) fn read_frame(input: &mut impl Read, body: &mut Vec<u8>, limit: usize) -> Result<u8, FrameError> {
    let mut header = [0u8; 5];
    input.read_exact(&mut header).map_err(FrameError::Io)?;
    let length = u32::from_be_bytes([header[0], header[1], header[2], header[3]]) as usize;
    if length == 0 || length > limit {
        return Err(FrameError::Malformed(format!("frame length {length} outside 1..={limit}")));
    }
    body.clear();
    let wanted = length - 1;
    let read = input.take(wanted as u64).read_to_end(body).map_err(FrameError::Io)?;
    if read < wanted {
        return Err(FrameError::Io(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            format!("the frame ended after {read} of {wanted} bytes"),
        )));
    }
    Ok(header[4])
}

/// Starts a frame of `kind` in `buf`; the length is filled in by [`finish`].
pub(super) fn begin(buf: &mut Vec<u8>, kind: u8) {
    buf.clear();
    buf.extend_from_slice(&[0; 4]);
    buf.push(kind);
}

/// Fills in the length of the frame in `buf`.
pub(super) fn finish(buf: &mut [u8]) -> Result<(), String> {
    let length = buf.len() - 4;
    if length > MAX_FRAME {
        return Err(format!("a frame of {length} bytes is over the limit of {MAX_FRAME}"));
    }
    buf[..4].copy_from_slice(&(length as u32).to_be_bytes());
    Ok(())
}

/// Writes a whole frame of `kind` with `body`.
pub(super) fn write_frame(output: &mut impl Write, kind: u8, body: &[u8]) -> io::Result<()> {
    let mut buf = Vec::with_capacity(5 + body.len());
    begin(&mut buf, kind);
    buf.extend_from_slice(body);
    finish(&mut buf).map_err(io::Error::other)?;
    output.write_all(&buf)
}

/// Reads the fields of a frame body front to back.
pub(super) struct Body<'a>(pub(super) &'a [u8]);

impl<'a> Body<'a> {
    fn bytes<const N: usize>(&mut self, what: &str) -> Result<[u8; N], String> {
        if self.0.len() < N {
            return Err(format!("frame ends inside the {what}"));
        }
        let (head, tail) = self.0.split_at(N);
        self.0 = tail;
        let mut out = [0u8; N];
        out.copy_from_slice(head);
        Ok(out)
    }

    /// The next `u8`.
    pub(super) fn u8(&mut self, what: &str) -> Result<u8, String> {
        Ok(self.bytes::<1>(what)?[0])
    }

    /// The next `u32`.
    pub(super) fn u32(&mut self, what: &str) -> Result<u32, String> {
        Ok(u32::from_be_bytes(self.bytes(what)?))
    }

    /// The next `u64`.
    pub(super) fn u64(&mut self, what: &str) -> Result<u64, String> {
        Ok(u64::from_be_bytes(self.bytes(what)?))
    }

    /// The next four bytes.
    pub(super) fn magic(&mut self) -> Result<[u8; 4], String> {
        self.bytes("magic")
    }

    /// Everything not read yet.
    pub(super) fn rest(self) -> &'a [u8] {
        self.0
    }

    /// Fails unless everything was read.
    pub(super) fn end(self, what: &str) -> Result<(), String> {
        if self.0.is_empty() { Ok(()) } else { Err(format!("{} bytes left over in a {what} frame", self.0.len())) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_round_trip_and_bad_lengths_are_refused() {
        let mut wire = Vec::new();
        write_frame(&mut wire, DATA, &[1, 2, 3]).unwrap();
        write_frame(&mut wire, CONFIRM, &[]).unwrap();
        assert_eq!(wire[..5], [0, 0, 0, 4, DATA]);
        let mut input = &wire[..];
        let mut body = Vec::new();
        assert_eq!(read_frame(&mut input, &mut body, MAX_FRAME).unwrap(), DATA);
        assert_eq!(body, [1, 2, 3]);
        assert_eq!(read_frame(&mut input, &mut body, MAX_FRAME).unwrap(), CONFIRM);
        assert!(body.is_empty());
        assert!(
            matches!(read_frame(&mut input, &mut body, MAX_FRAME), Err(FrameError::Io(e)) if e.kind() == io::ErrorKind::UnexpectedEof)
        );

        let mut zero: &[u8] = &[0, 0, 0, 0, DATA];
        assert!(
            matches!(read_frame(&mut zero, &mut body, MAX_FRAME), Err(FrameError::Malformed(m)) if m.starts_with("frame length 0"))
        );
        let mut huge: &[u8] = &[0xff, 0xff, 0xff, 0xff, DATA];
        assert!(
            matches!(read_frame(&mut huge, &mut body, MAX_FRAME), Err(FrameError::Malformed(m)) if m.starts_with("frame length 4294967295"))
        );
    }

    #[test]
    fn short_bodies_are_errors() {
        let mut body = Body(&[0, 0, 0, 0, 0, 0, 0, 7, 1]);
        assert_eq!(body.u64("channel id"), Ok(7));
        assert_eq!(body.u32("credit"), Err("frame ends inside the credit".to_string()));
        assert_eq!(body.u8("code"), Ok(1));
        assert_eq!(Body(&[1]).end("CLOSE"), Err("1 bytes left over in a CLOSE frame".to_string()));
    }
}
