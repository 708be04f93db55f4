//! Serialization of keys, namespaces and values (postcard: compact, self-delimiting).

use serde::Serialize;
use serde::de::DeserializeOwned;

/// Appends the encoding of `value` to `out`.
pub fn encode_into<T: Serialize + ?Sized>(value: &T, out: &mut Vec<u8>) -> Result<(), String> {
    let buffer = std::mem::take(out);
    *out = postcard::to_extend(value, buffer).map_err(|e| e.to_string())?;
    Ok(())
}

/// The encoding of `value`.
pub fn encode<T: Serialize + ?Sized>(value: &T) -> Result<Vec<u8>, String> {
    let mut out = Vec::new();
    encode_into(value, &mut out)?;
    Ok(out)
}

/// Reads an encoded value as JSON, for people (queryable state over HTTP).
pub fn to_json<T: DeserializeOwned + Serialize>(bytes: &[u8]) -> Result<serde_json::Value, String> {
    let value: T = decode(bytes)?;
    serde_json::to_value(&value).map_err(|e| format!("cannot show the value as JSON: {e}"))
}

/// Reads an encoded value to show it as JSON (a monomorphic [`to_json`]).
pub type JsonOf = fn(&[u8]) -> Result<serde_json::Value, String>;

/// Decodes a value that must use every byte (leftover bytes mean another type was written).
pub fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, String> {
    let (value, rest) = decode_prefix::<T>(bytes)?;
    if rest.is_empty() { Ok(value) } else { Err(format!("{} bytes left over after the value", rest.len())) }
}

/// Decodes a value from the front of `bytes`, returning the rest.
pub fn decode_prefix<T: DeserializeOwned>(bytes: &[u8]) -> Result<(T, &[u8]), String> {
    postcard::take_from_bytes::<T>(bytes).map_err(|e| e.to_string())
}

/// Appends a TTL timestamp (big-endian, so byte order is time order).
pub fn put_timestamp(ts: i64, out: &mut Vec<u8>) {
    out.extend_from_slice(&ts.to_be_bytes());
}

/// Splits a TTL timestamp off the front of `bytes`.
pub fn take_timestamp(bytes: &[u8]) -> Result<(i64, &[u8]), String> {
    if bytes.len() < 8 {
        return Err("value shorter than its time-to-live timestamp".into());
    }
    let (ts, rest) = bytes.split_at(8);
    let mut raw = [0u8; 8];
    raw.copy_from_slice(ts);
    Ok((i64::from_be_bytes(raw), rest))
}

/// Appends one list element: `[timestamp if ttl][varint length][bytes]`.
pub fn put_list_element(element: &[u8], ts: Option<i64>, out: &mut Vec<u8>) -> Result<(), String> {
    if let Some(ts) = ts {
        put_timestamp(ts, out);
    }
    encode_into(&(element.len() as u32), out)?;
    out.extend_from_slice(element);
    Ok(())
}

/// One stored list element: its time-to-live timestamp (if any) and its bytes.
pub type ListElement<'a> = (Option<i64>, &'a [u8]);

/// Splits the list elements of a stored list value.
pub fn list_elements(mut bytes: &[u8], ttl: bool) -> Result<Vec<ListElement<'_>>, String> {
    let mut elements = Vec::new();
    while !bytes.is_empty() {
        let ts = if ttl {
            let (ts, rest) = take_timestamp(bytes)?;
            bytes = rest;
            Some(ts)
        } else {
            None
        };
        let (len, rest) = decode_prefix::<u32>(bytes)?;
        let len = len as usize;
        if rest.len() < len {
            return Err("list element longer than the stored value".into());
        }
        elements.push((ts, &rest[..len]));
        bytes = &rest[len..];
    }
    Ok(elements)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn changed_types_are_detected() {
        let bytes = encode(&(7u32, "seven".to_string())).unwrap();
        assert_eq!(decode::<(u32, String)>(&bytes).unwrap(), (7, "seven".to_string()));
        assert!(decode::<u32>(&bytes).is_err(), "leftover bytes");
        assert!(decode::<(String, u32)>(&bytes).is_err());
    }

    #[test]
    fn list_elements_round_trip() {
        let mut value = Vec::new();
        put_list_element(b"ab", Some(5), &mut value).unwrap();
        put_list_element(b"", Some(6), &mut value).unwrap();
        assert_eq!(list_elements(&value, true).unwrap(), vec![(Some(5), &b"ab"[..]), (Some(6), &b""[..])]);
        assert!(list_elements(&value[..value.len() - 1], true).is_err());
    }
}
