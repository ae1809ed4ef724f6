//! Entry points for the fuzz targets in `fuzz/` into decoders that are otherwise private.
//!
//! Not part of the supported API: hidden from the docs and kept in this one module so that it
//! can be put behind a cargo feature without touching the decoders themselves.

use crate::{Error, Result, StreamId};
use std::collections::BTreeMap;

/// A decoded `CONSUMERS` payload: the stream it names, its generation, and every consumer
/// and its position, by name.
pub type DecodedPositions = (StreamId, u64, Vec<(String, u64)>);

/// Decodes the plaintext of a `CONSUMERS` file's block.
pub fn decode_positions(bytes: &[u8]) -> Result<DecodedPositions> {
    crate::positions::decode(bytes)
        .map(|(stream, generation, m)| (stream, generation, m.into_iter().collect()))
        .map_err(Error::malformed)
}

/// Encodes the plaintext of a `CONSUMERS` file's block, exactly as a commit writes it.
pub fn encode_positions(
    stream: StreamId,
    generation: u64,
    positions: &[(String, u64)],
) -> Result<Vec<u8>> {
    let map: BTreeMap<String, u64> = positions.iter().cloned().collect();
    crate::positions::encode(stream, generation, &map)
}
