//! Frames: a 4-byte big-endian length, then a `postcard` body.

use serde::Serialize;
use serde::de::DeserializeOwned;
use std::io::{self, Read, Write};

/// The largest frame either side sends or accepts; control messages are small.
pub const MAX_FRAME: usize = 16 << 20;

/// Why a frame could not be read.
#[derive(Debug)]
pub(crate) enum FrameError {
    /// The socket failed or closed (`UnexpectedEof` when the peer closed it).
    Io(io::Error),
    /// Bytes that are not a frame of this protocol.
    Malformed(String),
}

/// Encodes `message` as one frame into `out`.
pub(crate) fn write_frame<T: Serialize>(out: &mut impl Write, message: &T) -> Result<(), FrameError> {
    let body = postcard::to_stdvec(message).map_err(|e| FrameError::Malformed(format!("cannot encode: {e}")))?;
    if body.len() > MAX_FRAME {
        return Err(FrameError::Malformed(format!(
            "a message of {} bytes exceeds the {MAX_FRAME}-byte limit",
            body.len()
        )));
    }
    out.write_all(&(body.len() as u32).to_be_bytes()).map_err(FrameError::Io)?;
    out.write_all(&body).map_err(FrameError::Io)?;
    out.flush().map_err(FrameError::Io)
}

/// Reads one frame from `input` and decodes it.
pub(crate) fn read_frame<T: DeserializeOwned>(input: &mut impl Read) -> Result<T, FrameError> {
    let mut len = [0u8; 4];
    input.read_exact(&mut len).map_err(FrameError::Io)?;
    let len = u32::from_be_bytes(len) as usize;
    if len > MAX_FRAME {
        return Err(FrameError::Malformed(format!("a frame of {len} bytes exceeds the {MAX_FRAME}-byte limit")));
    }
    let mut body = vec![0u8; len];
    input.read_exact(&mut body).map_err(FrameError::Io)?;
    postcard::from_bytes(&body).map_err(|e| FrameError::Malformed(format!("undecodable message: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Hello, Role};

    #[test]
    fn a_frame_reads_back_what_was_written() {
        let mut bytes = Vec::new();
        write_frame(&mut bytes, &Hello::new(Role::TaskManager)).unwrap();
        let back: Hello = read_frame(&mut bytes.as_slice()).unwrap();
        assert_eq!(back, Hello::new(Role::TaskManager));
    }

    #[test]
    fn an_oversized_length_is_refused_before_reading_the_body() {
        let bytes = ((MAX_FRAME + 1) as u32).to_be_bytes();
        match read_frame::<Hello>(&mut bytes.as_slice()) {
            Err(FrameError::Malformed(m)) => assert!(m.contains("exceeds"), "{m}"),
            other => panic!("expected a malformed frame, got {other:?}"),
        }
    }

    #[test]
    fn garbage_is_malformed_not_a_panic() {
        let mut bytes = 3u32.to_be_bytes().to_vec();
        bytes.extend_from_slice(&[0xff, 0xff, 0xff]);
        assert!(matches!(read_frame::<Hello>(&mut bytes.as_slice()), Err(FrameError::Malformed(_))));
    }

    #[test]
    fn a_truncated_frame_is_an_io_error() {
        let mut bytes = 10u32.to_be_bytes().to_vec();
        bytes.extend_from_slice(&[1, 2]);
        assert!(matches!(read_frame::<Hello>(&mut bytes.as_slice()), Err(FrameError::Io(_))));
    }
}
