//! The one binary encoding of sealdb-raft: CBOR (ciborium), for stored log entries and
//! metadata, snapshot packs and transport frames.

use crate::Error;
use serde::Serialize;
use serde::de::DeserializeOwned;

pub(crate) fn encode<T: Serialize>(value: &T) -> Vec<u8> {
    let mut out = Vec::new();
    // Writing into a Vec cannot fail, and every type encoded here is plain data.
    if let Err(e) = ciborium::into_writer(value, &mut out) {
        tracing::error!("encoding failed: {e}");
    }
    out
}

pub(crate) fn decode<T: DeserializeOwned>(bytes: &[u8], what: &'static str) -> crate::Result<T> {
    ciborium::from_reader(bytes).map_err(|e| Error::malformed(what, e))
}
