//! The `kms.state` byte format (see the [module documentation](super)).

use super::state::{
    KeyRecord, Lifecycle, MAX_KEYS, MAX_NAME_LEN, MAX_VERSIONS, State, name_problem,
};
use crate::keys::SecretKey;
use crate::{Error, IntegrityReason, Result};
use sealdb_base::{PutBytes, Reader};
use zeroize::Zeroizing;

pub(super) const MAGIC: &[u8; 8] = b"SDBKMS01";
/// Largest state file read. Far above any realistic use, low enough that a corrupt or hostile
/// file cannot make us allocate gigabytes.
pub(super) const MAX_STATE_FILE_LEN: u64 = 64 << 20;
/// Smallest encoding of one key (1-byte name, destroyed, no materials), used to reject a key
/// count the remaining bytes cannot hold before allocating anything for it.
const MIN_ENCODED_KEY_LEN: usize = 2 + 1 + 8 + 1 + 8 + 4;

pub(super) fn encode_state(state: &State) -> Zeroizing<Vec<u8>> {
    let size = 8
        + 4
        + state
            .keys
            .iter()
            .map(|(name, r)| 2 + name.len() + 8 + 1 + 8 + 4 + 32 * r.materials.len())
            .sum::<usize>()
        + 4;
    // Exact capacity: growing would leave unwiped copies of key material behind.
    let mut out = Zeroizing::new(Vec::with_capacity(size));
    // Counts and lengths were bounded on the way in (MAX_KEYS, MAX_NAME_LEN, MAX_VERSIONS).
    out.put_raw(MAGIC)
        .put_u32(u32::try_from(state.keys.len()).unwrap_or(u32::MAX));
    for (name, record) in &state.keys {
        out.put_bytes_u16(name.as_bytes())
            .put_u64(record.created_at)
            .put_u8(record.lifecycle.code())
            .put_u64(record.lifecycle.deletion_at())
            .put_u32(record.version_count);
        for material in &record.materials {
            out.put_raw(material.expose());
        }
    }
    let crc = crc32fast::hash(&out);
    out.put_u32(crc);
    out
}

pub(super) fn decode_state(bytes: &[u8], file: &str) -> Result<State> {
    let fail = |reason| Error::integrity(file, None, reason);
    let malformed = |why: String| fail(IntegrityReason::Malformed(why));
    match bytes.get(..MAGIC.len()) {
        Some(magic) if magic == MAGIC => {}
        Some(_) => return Err(fail(IntegrityReason::BadMagic)),
        None => {
            return Err(malformed(format!(
                "state file is {} bytes, too short for its header",
                bytes.len()
            )));
        }
    }
    let Some(body_len) = bytes.len().checked_sub(4).filter(|&n| n >= MAGIC.len() + 4) else {
        return Err(malformed(format!(
            "state file is {} bytes, too short for its header",
            bytes.len()
        )));
    };
    let (body, crc) = bytes.split_at(body_len);
    let crc: [u8; 4] = crc
        .try_into()
        .map_err(|_| fail(IntegrityReason::BadLength))?;
    if crc32fast::hash(body) != u32::from_le_bytes(crc) {
        return Err(fail(IntegrityReason::HeaderChecksum));
    }
    decode_body(body.get(MAGIC.len()..).unwrap_or_default()).map_err(malformed)
}

/// Decodes what follows the magic, up to the crc.
fn decode_body(bytes: &[u8]) -> std::result::Result<State, String> {
    let mut r = Reader::new(bytes);
    let count = r.u32("key count")?;
    let count = usize::try_from(count).map_err(|_| "key count overflows".to_owned())?;
    if count > MAX_KEYS {
        return Err(format!("{count} keys, more than the limit of {MAX_KEYS}"));
    }
    if count.saturating_mul(MIN_ENCODED_KEY_LEN) > r.remaining() {
        return Err(format!(
            "{count} keys cannot fit in {} bytes",
            r.remaining()
        ));
    }
    let mut state = State::default();
    for index in 0..count {
        let (name, record) = decode_key(&mut r).map_err(|why| format!("key #{index}: {why}"))?;
        if state.keys.contains_key(&name) {
            return Err(format!("key #{index}: duplicate name {name:?}"));
        }
        state.keys.insert(name, record);
    }
    if !r.is_empty() {
        return Err(format!("{} unexpected bytes after the keys", r.remaining()));
    }
    Ok(state)
}

fn decode_key(r: &mut Reader<'_>) -> std::result::Result<(String, KeyRecord), String> {
    let name_len = usize::from(r.u16("name length")?);
    if name_len == 0 || name_len > MAX_NAME_LEN {
        return Err(format!("name length {name_len} is not 1 to {MAX_NAME_LEN}"));
    }
    let name = std::str::from_utf8(r.take(name_len, "name")?)
        .map_err(|_| "name is not UTF-8".to_owned())?
        .to_owned();
    if let Some(why) = name_problem(&name) {
        return Err(format!("invalid name: {why}"));
    }
    let created_at = r.u64("created at")?;
    let code = r.u8("state")?;
    let deletion_at = r.u64("deletion at")?;
    let lifecycle = match code {
        0 => Lifecycle::Enabled,
        1 => Lifecycle::Disabled,
        2 => Lifecycle::PendingDeletion { deletion_at },
        3 => Lifecycle::Destroyed,
        other => return Err(format!("unknown state {other}")),
    };
    if code != 2 && deletion_at != 0 {
        return Err("deletion date set on a key not pending deletion".to_owned());
    }
    let version_count = r.u32("version count")?;
    if version_count > MAX_VERSIONS {
        return Err(format!(
            "{version_count} versions, more than the limit of {MAX_VERSIONS}"
        ));
    }
    let stored = if lifecycle == Lifecycle::Destroyed {
        0
    } else if version_count == 0 {
        return Err("a live key with no versions".to_owned());
    } else {
        usize::try_from(version_count).map_err(|_| "version count overflows".to_owned())?
    };
    let material_len = stored
        .checked_mul(crate::keys::KEY_LEN)
        .ok_or_else(|| "version count overflows".to_owned())?;
    let mut material_bytes = Reader::new(r.take(material_len, "key material")?);
    let mut materials = Vec::with_capacity(stored);
    for _ in 0..stored {
        let bytes = material_bytes.take(crate::keys::KEY_LEN, "key material")?;
        materials.push(SecretKey::from_slice(bytes).map_err(|_| "key material".to_owned())?);
    }
    Ok((
        name,
        KeyRecord {
            created_at,
            lifecycle,
            version_count,
            materials,
        },
    ))
}

/// Decodes a `kms.state` image and returns how many keys it holds; for the fuzz target,
/// which checks that no input panics or over-allocates. Decoded key material is held in
/// zeroizing [`SecretKey`]s and dropped.
#[cfg(any(test, feature = "fuzzing"))]
#[doc(hidden)]
pub fn decode_state_for_fuzz(bytes: &[u8]) -> Result<usize> {
    decode_state(bytes, super::state::STATE_FILE).map(|state| state.keys.len())
}
