//! The methods of [`WriteBatch`]: building a batch across keyspaces.

use super::{Keyspace, WriteBatch};
use crate::{Error, Result};
use std::sync::Arc;

impl WriteBatch {
    /// An empty batch.
    pub fn new() -> Self {
        Self::default()
    }

    fn bind(&mut self, ks: &Keyspace) -> Result<()> {
        let id = Arc::as_ptr(&ks.db.inner) as usize;
        match self.db {
            None => {
                self.db = Some(id);
                Ok(())
            }
            Some(d) if d == id => Ok(()),
            Some(_) => Err(Error::invalid_argument(
                "a write batch cannot span databases".into(),
            )),
        }
    }

    /// Adds a put to `keyspace`.
    pub fn put(
        &mut self,
        keyspace: &Keyspace,
        key: impl AsRef<[u8]>,
        value: impl AsRef<[u8]>,
    ) -> Result<()> {
        self.bind(keyspace)?;
        Ok(self
            .builder
            .put(keyspace.id, key.as_ref(), value.as_ref())?)
    }

    /// Adds a delete to `keyspace`.
    pub fn delete(&mut self, keyspace: &Keyspace, key: impl AsRef<[u8]>) -> Result<()> {
        self.bind(keyspace)?;
        Ok(self.builder.delete(keyspace.id, key.as_ref())?)
    }

    /// Number of operations.
    pub fn len(&self) -> usize {
        self.builder.count() as usize
    }

    /// Whether the batch is empty.
    pub fn is_empty(&self) -> bool {
        self.builder.is_empty()
    }
}
