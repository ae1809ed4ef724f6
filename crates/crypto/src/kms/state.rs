//! The in-memory keys of a local KMS: each key's lifecycle, versions and material, and the
//! rules (names, states) every operation checks.

use crate::keys::SecretKey;
use crate::{Error, IntegrityReason, KeyState, Result};
use std::collections::BTreeMap;

/// Provider kind string of local-KMS keys, as stored in key descriptors.
pub(super) const PROVIDER: &str = "local-kms";
pub(super) const STATE_FILE: &str = "kms.state";
/// Most keys one KMS holds.
pub const MAX_KEYS: usize = 10_000;
/// Most versions one key may have.
pub const MAX_VERSIONS: u32 = 10_000;
/// Longest key name, in bytes.
pub const MAX_NAME_LEN: usize = 128;
/// Shortest deletion waiting period, in days (as AWS KMS, minus its 7-day floor: a local KMS
/// is often used for tests and demos).
pub const MIN_DELETION_DAYS: u32 = 1;
/// Longest deletion waiting period, in days (as AWS KMS).
pub const MAX_DELETION_DAYS: u32 = 30;
pub(super) const SECONDS_PER_DAY: u64 = 86_400;

/// What [`LocalKms::list`](super::LocalKms::list) and
/// [`LocalKms::describe`](super::LocalKms::describe) report about a key. No key material.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KmsKeyInfo {
    /// The key's name (its key id in descriptors).
    pub name: String,
    /// When it was created (Unix seconds).
    pub created_at: u64,
    /// Enabled, disabled, pending deletion or destroyed.
    pub state: KeyState,
    /// How many versions it has (or had, once destroyed); the newest is this number.
    pub versions: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Lifecycle {
    Enabled,
    Disabled,
    PendingDeletion { deletion_at: u64 },
    Destroyed,
}

impl Lifecycle {
    pub(super) fn key_state(self) -> KeyState {
        match self {
            Self::Enabled => KeyState::Enabled,
            Self::Disabled => KeyState::Disabled,
            Self::PendingDeletion { deletion_at } => KeyState::PendingDeletion { deletion_at },
            Self::Destroyed => KeyState::Destroyed,
        }
    }

    pub(super) fn code(self) -> u8 {
        match self {
            Self::Enabled => 0,
            Self::Disabled => 1,
            Self::PendingDeletion { .. } => 2,
            Self::Destroyed => 3,
        }
    }

    pub(super) fn deletion_at(self) -> u64 {
        match self {
            Self::PendingDeletion { deletion_at } => deletion_at,
            _ => 0,
        }
    }
}

/// One key. Invariant: `materials.len() == version_count` unless destroyed, when `materials`
/// is empty.
#[derive(Debug)]
pub(super) struct KeyRecord {
    pub(super) created_at: u64,
    pub(super) lifecycle: Lifecycle,
    pub(super) version_count: u32,
    pub(super) materials: Vec<SecretKey>,
}

impl KeyRecord {
    pub(super) fn info(&self, name: &str) -> KmsKeyInfo {
        KmsKeyInfo {
            name: name.to_owned(),
            created_at: self.created_at,
            state: self.lifecycle.key_state(),
            versions: self.version_count,
        }
    }

    pub(super) fn set_lifecycle(&mut self, lifecycle: Lifecycle) {
        self.lifecycle = lifecycle;
        if lifecycle == Lifecycle::Destroyed {
            // Dropping each SecretKey zeroizes it.
            self.materials.clear();
        }
    }
}

#[derive(Debug, Default)]
pub(super) struct State {
    pub(super) keys: BTreeMap<String, KeyRecord>,
}

pub(super) fn unavailable(name: &str, state: KeyState) -> Error {
    Error::KeyUnavailable {
        provider: PROVIDER.into(),
        key_id: name.to_owned(),
        state,
    }
}

pub(super) fn wrong_state(name: &str, state: Lifecycle, action: &str) -> Error {
    let hint = match state {
        Lifecycle::PendingDeletion { .. } => "; cancel the deletion first",
        Lifecycle::Destroyed => "; destruction is permanent",
        Lifecycle::Enabled | Lifecycle::Disabled if action == "destroy" => {
            "; schedule its deletion first"
        }
        Lifecycle::Enabled | Lifecycle::Disabled => "",
    };
    Error::invalid_argument(format!(
        "cannot {action} local KMS key {name:?}: it is {}{hint}",
        state.key_state()
    ))
}

pub(super) fn missing_material(name: &str) -> Error {
    Error::integrity(
        STATE_FILE,
        None,
        IntegrityReason::Malformed(format!("key {name:?} has no key material")),
    )
}

/// The key if it exists and is enabled, else the [`Error::KeyUnavailable`] naming its state.
pub(super) fn usable_key<'a>(state: &'a State, name: &str) -> Result<&'a KeyRecord> {
    match state.keys.get(name) {
        None => Err(unavailable(name, KeyState::NotFound)),
        Some(record) if record.lifecycle == Lifecycle::Enabled => Ok(record),
        Some(record) => Err(unavailable(name, record.lifecycle.key_state())),
    }
}

pub(super) fn name_problem(name: &str) -> Option<String> {
    if name.is_empty() || name.len() > MAX_NAME_LEN {
        return Some(format!("must be 1 to {MAX_NAME_LEN} bytes long"));
    }
    if !name
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
    {
        return Some("may contain only A-Z, a-z, 0-9, '.', '_' and '-'".to_owned());
    }
    None
}

pub(super) fn validate_name(name: &str) -> Result<()> {
    match name_problem(name) {
        None => Ok(()),
        Some(why) => Err(Error::invalid_argument(format!(
            "invalid local KMS key name {:?}: {why}",
            name.chars().take(MAX_NAME_LEN).collect::<String>()
        ))),
    }
}
