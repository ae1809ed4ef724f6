//! Helpers shared by this crate's encoders and decoders. Fields are written and read with
//! `sealdb_base`'s [`PutBytes`](sealdb_base::PutBytes) and bounds-checked
//! [`Reader`](sealdb_base::Reader); what is here is specific to tables.

use std::cmp::Ordering;

/// Compares two internal entries: user key ascending, then sequence number descending, so the
/// newest version of a key comes first.
#[inline]
pub(crate) fn internal_cmp(a_key: &[u8], a_seq: u64, b_key: &[u8], b_seq: u64) -> Ordering {
    a_key.cmp(b_key).then_with(|| b_seq.cmp(&a_seq))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn internal_order_is_key_ascending_then_seq_descending() {
        assert_eq!(internal_cmp(b"a", 1, b"b", 9), Ordering::Less);
        assert_eq!(internal_cmp(b"a", 9, b"a", 1), Ordering::Less);
        assert_eq!(internal_cmp(b"a", 1, b"a", 1), Ordering::Equal);
    }
}
