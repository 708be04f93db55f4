//! The byte encoding of [`Message`]s for the network: one message is one frame body.
//!
//! A message is `[tag: u8][payload]`. Records are `[count: varint][record]*`, each record
//! postcard-encoded on its own so the receiver can decode straight into a recycled buffer;
//! events are postcard values; barriers are written through `WireBarrier` because their
//! `target` is an `Arc<Path>`. Decoding must use every byte: anything left over means the
//! peer wrote another type, which is an error rather than silently misread data.

use crate::checkpoint::{CheckpointBarrier, CheckpointId, SnapshotKind};
use crate::network::channel::Message;
use brisk_core::{StreamRecord, Watermark, WatermarkStatus};
use brisk_state::codec::{decode_prefix, encode_into};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use std::path::Path;
use std::sync::Arc;
use thiserror::Error;

const RECORDS: u8 = 0;
const WATERMARK: u8 = 1;
const WATERMARK_STATUS: u8 = 2;
const END_OF_INPUT: u8 = 3;
const BARRIER: u8 = 4;
const OVERTAKING_BARRIER: u8 = 5;

/// A message that could not be encoded or decoded.
#[derive(Debug, Error, PartialEq, Eq)]
#[error("{0}")]
pub struct WireError(String);

/// A [`CheckpointBarrier`] as it travels: the target directory as UTF-8 text.
#[derive(Serialize, Deserialize)]
struct WireBarrier<S> {
    id: CheckpointId,
    timestamp: i64,
    kind: SnapshotKind,
    stop: Option<bool>,
    target: S,
    remote: Option<S>,
    overtaking: bool,
}

/// Appends the encoding of `message` to `out`.
pub fn encode_message<T: Serialize>(message: &Message<T>, out: &mut Vec<u8>) -> Result<(), WireError> {
    match message {
        Message::Records(records) => {
            out.push(RECORDS);
            put(&(records.len() as u64), out, "record count")?;
            for record in records {
                put(record, out, "record")?;
            }
            Ok(())
        }
        Message::Watermark(watermark) => {
            out.push(WATERMARK);
            put(watermark, out, "watermark")
        }
        Message::WatermarkStatus(status) => {
            out.push(WATERMARK_STATUS);
            put(status, out, "watermark status")
        }
        Message::EndOfInput => {
            out.push(END_OF_INPUT);
            Ok(())
        }
        Message::Barrier(barrier) => {
            out.push(BARRIER);
            put_barrier(barrier, out)
        }
        Message::OvertakingBarrier { barrier, overtaken } => {
            out.push(OVERTAKING_BARRIER);
            put_barrier(barrier, out)?;
            put(&(*overtaken as u64), out, "overtaken count")
        }
    }
}

/// Decodes a message that fills `bytes` exactly; records go into `buffer(n)`, a buffer with
/// room for `n` records (a recycled one, ideally).
pub fn decode_message<T: DeserializeOwned>(
    bytes: &[u8],
    buffer: impl FnOnce(usize) -> Vec<StreamRecord<T>>,
) -> Result<Message<T>, WireError> {
    let Some((&tag, mut rest)) = bytes.split_first() else {
        return Err(WireError("empty message".into()));
    };
    let message = match tag {
        RECORDS => {
            let count: u64 = take(&mut rest, "record count")?;
            // Every record takes at least one byte: a count beyond that is corrupt, and must not
            // reserve memory before that is found out.
            if count > rest.len() as u64 {
                return Err(WireError(format!("{count} records announced in {} bytes", rest.len())));
            }
            let count = count as usize;
            // The count is the peer's word: reserve no more than a buffer's worth up front.
            let mut records = buffer(count.min(4096));
            for i in 0..count {
                let record = take(&mut rest, "record").map_err(|e| WireError(format!("record {i} of {count}: {e}")))?;
                records.push(record);
            }
            Message::Records(records)
        }
        WATERMARK => Message::Watermark(take::<Watermark>(&mut rest, "watermark")?),
        WATERMARK_STATUS => Message::WatermarkStatus(take::<WatermarkStatus>(&mut rest, "watermark status")?),
        END_OF_INPUT => Message::EndOfInput,
        BARRIER => Message::Barrier(take_barrier(&mut rest)?),
        OVERTAKING_BARRIER => {
            let barrier = take_barrier(&mut rest)?;
            let overtaken: u64 = take(&mut rest, "overtaken count")?;
            let overtaken = usize::try_from(overtaken)
                .map_err(|_| WireError(format!("overtaken count {overtaken} does not fit this machine")))?;
            Message::OvertakingBarrier { barrier, overtaken }
        }
        other => return Err(WireError(format!("unknown message tag {other}"))),
    };
    if !rest.is_empty() {
        return Err(WireError(format!("{} bytes left over after the message", rest.len())));
    }
    Ok(message)
}

fn put<V: Serialize + ?Sized>(value: &V, out: &mut Vec<u8>, what: &str) -> Result<(), WireError> {
    encode_into(value, out).map_err(|e| WireError(format!("cannot encode {what}: {e}")))
}

fn take<V: DeserializeOwned>(rest: &mut &[u8], what: &str) -> Result<V, WireError> {
    let (value, tail) = decode_prefix::<V>(rest).map_err(|e| WireError(format!("bad {what}: {e}")))?;
    *rest = tail;
    Ok(value)
}

fn put_barrier(barrier: &CheckpointBarrier, out: &mut Vec<u8>) -> Result<(), WireError> {
    let target = barrier
        .target
        .to_str()
        .ok_or_else(|| WireError(format!("checkpoint target {} is not UTF-8", barrier.target.display())))?;
    let wire = WireBarrier {
        id: barrier.id,
        timestamp: barrier.timestamp,
        kind: barrier.kind,
        stop: barrier.stop,
        target,
        remote: barrier.remote.as_deref(),
        overtaking: barrier.overtaking,
    };
    put(&wire, out, "barrier")
}

fn take_barrier(rest: &mut &[u8]) -> Result<CheckpointBarrier, WireError> {
    let wire: WireBarrier<String> = take(rest, "barrier")?;
    Ok(CheckpointBarrier {
        id: wire.id,
        timestamp: wire.timestamp,
        kind: wire.kind,
        stop: wire.stop,
        target: Arc::from(Path::new(&wire.target)),
        remote: wire.remote.map(Arc::from),
        overtaking: wire.overtaking,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn barrier(id: u64, overtaking: bool) -> CheckpointBarrier {
        CheckpointBarrier {
            id,
            timestamp: -3,
            kind: SnapshotKind::Savepoint,
            stop: Some(true),
            target: Path::new("/tmp/brisk/chk-7").into(),
            remote: overtaking.then(|| Arc::from("s3://bucket/job/chk-7")),
            overtaking,
        }
    }

    fn round_trip(message: &Message<String>) -> Message<String> {
        let mut bytes = Vec::new();
        encode_message(message, &mut bytes).unwrap();
        decode_message(&bytes, Vec::with_capacity).unwrap()
    }

    #[test]
    fn every_message_kind_round_trips() {
        let messages = vec![
            Message::Records(vec![
                StreamRecord { value: "a".to_string(), timestamp: 1 },
                StreamRecord { value: String::new(), timestamp: i64::MIN },
            ]),
            Message::Records(Vec::new()),
            Message::Watermark(Watermark(-5)),
            Message::Watermark(Watermark::MAX),
            Message::WatermarkStatus(WatermarkStatus::Idle),
            Message::EndOfInput,
            Message::Barrier(barrier(3, false)),
            Message::OvertakingBarrier { barrier: barrier(4, true), overtaken: 17 },
        ];
        for message in &messages {
            assert_eq!(format!("{:?}", round_trip(message)), format!("{message:?}"));
        }
    }

    #[test]
    fn records_are_decoded_into_the_given_buffer() {
        let mut bytes = Vec::new();
        encode_message(&Message::Records(vec![StreamRecord { value: 9u32, timestamp: 0 }]), &mut bytes).unwrap();
        let mut asked = None;
        let message = decode_message::<u32>(&bytes, |n| {
            asked = Some(n);
            Vec::with_capacity(64)
        })
        .unwrap();
        assert_eq!(asked, Some(1));
        match message {
            Message::Records(records) => {
                assert_eq!(records.capacity(), 64, "the recycled buffer is used");
                assert_eq!((records[0].value, records[0].timestamp), (9, 0));
            }
            other => panic!("expected records, got {other:?}"),
        }
    }

    #[test]
    fn malformed_bytes_are_errors_not_panics() {
        let decode = |bytes: &[u8]| decode_message::<String>(bytes, Vec::with_capacity).map(|_| ()).unwrap_err();
        assert_eq!(decode(&[]), WireError("empty message".into()));
        assert_eq!(decode(&[99]), WireError("unknown message tag 99".into()));
        assert_eq!(decode(&[END_OF_INPUT, 0]), WireError("1 bytes left over after the message".into()));
        // A huge count in a short frame is refused before any allocation.
        assert_eq!(
            decode(&[RECORDS, 0xff, 0xff, 0xff, 0xff, 0x0f, 1]),
            WireError("4294967295 records announced in 1 bytes".into())
        );
        // The second record is cut off.
        let mut bytes = Vec::new();
        let records = vec![StreamRecord { value: "xy".to_string(), timestamp: 1 }; 2];
        encode_message(&Message::Records(records), &mut bytes).unwrap();
        bytes.truncate(bytes.len() - 1);
        assert!(decode(&bytes).0.starts_with("record 1 of 2: bad record"), "{}", decode(&bytes));
        assert!(decode(&[WATERMARK]).0.starts_with("bad watermark"));
    }

    #[test]
    fn a_non_utf8_target_is_refused_when_encoding() {
        use std::os::unix::ffi::OsStrExt;
        let mut b = barrier(1, false);
        b.target = Path::new(std::ffi::OsStr::from_bytes(b"/tmp/\xff")).into();
        let err = encode_message::<u8>(&Message::Barrier(b), &mut Vec::new()).unwrap_err();
        assert!(err.0.contains("is not UTF-8"), "{err}");
    }

    proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..64)) {
            let _ = decode_message::<(u32, String)>(&bytes, Vec::with_capacity);
        }

        #[test]
        fn records_round_trip(values in proptest::collection::vec((any::<i64>(), ".{0,8}"), 0..20)) {
            let records: Vec<_> = values.into_iter().map(|(timestamp, value)| StreamRecord { value, timestamp }).collect();
            let message = Message::Records(records.clone());
            match round_trip(&message) {
                Message::Records(back) => {
                    let pairs = |r: &[StreamRecord<String>]| r.iter().map(|r| (r.value.clone(), r.timestamp)).collect::<Vec<_>>();
                    prop_assert_eq!(pairs(&back), pairs(&records));
                }
                other => prop_assert!(false, "expected records, got {:?}", other),
            }
        }
    }
}
