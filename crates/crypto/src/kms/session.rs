//! One locked access to a local KMS: the state as read, and what to audit and save when done.

use super::audit::AuditEntry;
use super::state::{KeyRecord, Lifecycle, MAX_NAME_LEN, State, unavailable};
use crate::keys::DatabaseId;
use crate::{KeyState, Result};

pub(super) struct PendingAudit {
    pub(super) entry: AuditEntry,
    /// Whether the entry records a state change (gets a follow-up if the save fails).
    pub(super) mutation: bool,
}

/// One locked access: the state as read, and what to audit and save when done.
pub(super) struct Session {
    pub(super) state: State,
    pub(super) dirty: bool,
    pub(super) now: u64,
    pub(super) audit: Vec<PendingAudit>,
}

impl Session {
    pub(super) fn record_mut(&mut self, name: &str) -> Result<&mut KeyRecord> {
        self.state
            .keys
            .get_mut(name)
            .ok_or_else(|| unavailable(name, KeyState::NotFound))
    }

    /// Audits `outcome` of `operation` on `key` and passes it through.
    pub(super) fn finish<T>(
        &mut self,
        key: &str,
        operation: &str,
        database_id: Option<DatabaseId>,
        mutation: bool,
        outcome: Result<T>,
    ) -> Result<T> {
        let text = match &outcome {
            Ok(_) => "ok".to_owned(),
            Err(e) => format!("refused: {e}"),
        };
        self.audit.push(PendingAudit {
            entry: AuditEntry {
                time: self.now,
                key: key.chars().take(MAX_NAME_LEN).collect(),
                operation: operation.to_owned(),
                database_id: database_id.map(|id| id.to_hex()),
                outcome: text,
            },
            mutation,
        });
        outcome
    }

    /// Destroys every key whose deletion date has passed, before anything else looks at the
    /// state, so an overdue key is never used even if saving the change then fails.
    pub(super) fn destroy_overdue(&mut self) {
        let now = self.now;
        let overdue: Vec<String> = self
            .state
            .keys
            .iter()
            .filter(|(_, r)| {
                matches!(r.lifecycle, Lifecycle::PendingDeletion { deletion_at } if deletion_at <= now)
            })
            .map(|(name, _)| name.clone())
            .collect();
        for name in overdue {
            if let Some(record) = self.state.keys.get_mut(&name) {
                record.set_lifecycle(Lifecycle::Destroyed);
                self.dirty = true;
                let _ = self.finish(&name, "scheduled-destroy", None, true, Ok(()));
            }
        }
    }
}
