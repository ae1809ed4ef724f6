//! openraft's storage traits on sealdb: the log store and the state machine.
//!
//! A node directory holds two databases under the node's own master key:
//!
//! ```text
//! <node>/log        the Raft log (keyspace `raft_log`, key = index, big-endian) and the
//!                   vote, committed id and last purged id (keyspace `raft_meta`)
//! <node>/state      the replicated data (keyspace `kv`) and, in the same database, the last
//!                   applied log id, the last membership and the current snapshot's metadata
//!                   (keyspace `raft_applied`)
//! <node>/snapshot-<digest>.pack   the current snapshot: a packed backup of `state` (see
//!                   `snapshot`), named by a digest of its snapshot id
//! ```
//!
//! The log is a database of its own rather than a keyspace of `state` because installing a
//! snapshot replaces the whole state database (a restore), which must not touch the log or
//! the vote.

mod config;
mod log;
mod state;

pub use config::StoreConfig;
pub use log::LogStore;
pub use state::StateMachine;

use crate::Error;
use config::LOG_DIR;

/// Opens (creating if needed) the log store and the state machine of the node at `config`.
pub fn open_stores(config: &StoreConfig) -> crate::Result<(LogStore, StateMachine)> {
    std::fs::create_dir_all(&config.dir)
        .map_err(|e| Error::io(format!("creating {}", config.dir.display()), e))?;
    let log = LogStore::open(&config.dir.join(LOG_DIR), config.db_options())?;
    let sm = StateMachine::open(config.clone())?;
    Ok((log, sm))
}
