//! The engine's records (manifest edits, CURRENT, the head record, backup catalogues) are
//! written and read with `sealdb_base`'s one byte writer and bounds-checked reader. This module
//! only adapts them to the engine: the writer keeps its buffer in a field the encoders hand
//! on, and the reader names the record being read and turns a [`DecodeError`] into
//! [`Error::Corruption`].

use crate::{Error, Result};
use sealdb_base::{DecodeError, PutBytes};

/// Appends encoded values to a buffer (little-endian; byte strings with a `u32` length).
#[derive(Debug, Default)]
pub(crate) struct Writer {
    pub(crate) buf: Vec<u8>,
}

impl Writer {
    pub(crate) fn u8(&mut self, v: u8) -> &mut Self {
        self.buf.put_u8(v);
        self
    }
    pub(crate) fn u32(&mut self, v: u32) -> &mut Self {
        self.buf.put_u32(v);
        self
    }
    pub(crate) fn u64(&mut self, v: u64) -> &mut Self {
        self.buf.put_u64(v);
        self
    }
    pub(crate) fn bytes(&mut self, v: &[u8]) -> &mut Self {
        self.buf.put_bytes_u32(v);
        self
    }
    pub(crate) fn raw(&mut self, v: &[u8]) -> &mut Self {
        self.buf.put_raw(v);
        self
    }
}

/// Reads encoded values from untrusted bytes; errors name the record (`context`), the field
/// and its offset.
#[derive(Debug)]
pub(crate) struct Reader<'a> {
    inner: sealdb_base::Reader<'a>,
    context: &'a str,
}

impl<'a> Reader<'a> {
    pub(crate) fn new(bytes: &'a [u8], context: &'a str) -> Self {
        Self {
            inner: sealdb_base::Reader::new(bytes),
            context,
        }
    }

    fn corrupt(&self, e: DecodeError) -> Error {
        Error::corruption(format!("{}: {e}", self.context)).caused_by(e)
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.inner.is_empty()
    }

    pub(crate) fn take(&mut self, n: usize, what: &'static str) -> Result<&'a [u8]> {
        self.inner.take(n, what).map_err(|e| self.corrupt(e))
    }
    pub(crate) fn u8(&mut self, what: &'static str) -> Result<u8> {
        self.inner.u8(what).map_err(|e| self.corrupt(e))
    }
    pub(crate) fn u32(&mut self, what: &'static str) -> Result<u32> {
        self.inner.u32(what).map_err(|e| self.corrupt(e))
    }
    pub(crate) fn u64(&mut self, what: &'static str) -> Result<u64> {
        self.inner.u64(what).map_err(|e| self.corrupt(e))
    }
    /// A length-prefixed byte string of at most `max` bytes.
    pub(crate) fn bytes(&mut self, max: usize, what: &'static str) -> Result<&'a [u8]> {
        self.inner.bytes_u32(max, what).map_err(|e| self.corrupt(e))
    }
    pub(crate) fn array<const N: usize>(&mut self, what: &'static str) -> Result<[u8; N]> {
        self.inner.array(what).map_err(|e| self.corrupt(e))
    }
    /// A length-prefixed UTF-8 string of at most `max` bytes.
    pub(crate) fn string(&mut self, max: usize, what: &'static str) -> Result<String> {
        self.inner
            .str_u32(max, what)
            .map(str::to_owned)
            .map_err(|e| self.corrupt(e))
    }
}
