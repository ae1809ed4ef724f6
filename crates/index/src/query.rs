//! Queries on an index: the entry-key range holding exactly the matches, an exact predicate to
//! re-check scanned entries with, and continuation tokens for paging.
//!
//! Comparisons are typed, as in DynamoDB key conditions: `Lt(Number(5))` matches numbers below 5,
//! never a boolean, although booleans sort below numbers. A query whose operands are of two
//! different types, or on NaN, or `BeginsWith` on something other than a string or bytes, matches
//! nothing.

use std::fmt;
use std::ops::Bound;
use std::str::FromStr;

use crate::key::{DecodedEntry, ESC_END, decode_entry_key, push_stuffed, push_terminated};
use crate::value::IndexValue;
use crate::{Error, Result};

/// A condition on the index value.
#[derive(Debug, Clone, PartialEq)]
pub enum Query {
    /// Equal to the value.
    Eq(IndexValue),
    /// Less than the value (same type).
    Lt(IndexValue),
    /// Less than or equal to the value (same type).
    Le(IndexValue),
    /// Greater than the value (same type).
    Gt(IndexValue),
    /// Greater than or equal to the value (same type).
    Ge(IndexValue),
    /// Between the two values, both inclusive; both must be of one type, and a first value
    /// above the second matches nothing.
    Between(IndexValue, IndexValue),
    /// A string with this string as a prefix, or bytes with these bytes as a prefix.
    BeginsWith(IndexValue),
}

impl Query {
    fn operands(&self) -> (&IndexValue, Option<&IndexValue>) {
        match self {
            Self::Eq(v) | Self::Lt(v) | Self::Le(v) | Self::Gt(v) | Self::Ge(v) => (v, None),
            Self::BeginsWith(v) => (v, None),
            Self::Between(a, b) => (a, Some(b)),
        }
    }

    /// False when the query can match nothing whatever the index holds.
    fn satisfiable(&self) -> bool {
        let (a, b) = self.operands();
        if a.is_nan() || b.is_some_and(IndexValue::is_nan) {
            return false;
        }
        match self {
            Self::Between(a, b) => a.tag() == b.tag(),
            Self::BeginsWith(v) => matches!(v, IndexValue::String(_) | IndexValue::Bytes(_)),
            _ => true,
        }
    }
}

/// The entry-key range of `partition` (`b""` for a global index) that holds exactly the entries
/// matching `q`.
///
/// Both bounds are always finite and the range is well-formed: the start is never above the end,
/// and an empty answer is returned as `(Included(k), Excluded(k))`, which
/// `BTreeMap::range` and every ordered scan accept.
pub fn query_bounds(partition: &[u8], q: &Query) -> (Bound<Vec<u8>>, Bound<Vec<u8>>) {
    let mut prefix = Vec::with_capacity(partition.len() + 2);
    push_terminated(&mut prefix, partition);
    if !q.satisfiable() {
        return empty(prefix);
    }
    // Every entry with value v in this partition starts with `at(v)` = prefix ‖ stuffed(v) ‖ 00 01,
    // and `past(v)` (the terminator's last byte raised to 02) is the least key above all of them.
    let at = |v: &IndexValue| {
        let mut k = prefix.clone();
        push_terminated(&mut k, &v.encode());
        k
    };
    let past = |v: &IndexValue| {
        let mut k = at(v);
        if let Some(last) = k.last_mut() {
            *last = ESC_END + 1;
        }
        k
    };
    // All values of one type start with prefix ‖ tag (tags are non-zero, so never stuffed).
    let type_start = |v: &IndexValue| {
        let mut k = prefix.clone();
        k.push(v.tag());
        k
    };
    let type_end = |v: &IndexValue| {
        let mut k = prefix.clone();
        k.push(v.tag() + 1);
        k
    };
    use Bound::{Excluded, Included};
    let (lo, hi) = match q {
        Query::Eq(v) => (at(v), past(v)),
        Query::Lt(v) => (type_start(v), at(v)),
        Query::Le(v) => (type_start(v), past(v)),
        Query::Gt(v) => (past(v), type_end(v)),
        Query::Ge(v) => (at(v), type_end(v)),
        Query::Between(a, b) => (at(a), past(b)),
        Query::BeginsWith(v) => {
            // Unterminated: the stuffed prefix is a prefix of the stuffed value exactly when the
            // value starts with it, since stuffing works byte by byte.
            let mut start = prefix.clone();
            push_stuffed(&mut start, &v.encode());
            let Some(end) = prefix_successor(&start) else {
                return empty(prefix);
            };
            (start, end)
        }
    };
    if lo >= hi {
        return empty(prefix);
    }
    (Included(lo), Excluded(hi))
}

/// The exact predicate behind [`query_bounds`], for re-checking entries a range scan returned.
///
/// Looks at the value only: the scan's bounds fix the partition.
pub fn matches(q: &Query, decoded: &DecodedEntry) -> bool {
    if !q.satisfiable() {
        return false;
    }
    let got = decoded.value.as_slice();
    // Typed comparisons: the encodings compare like the values once the tags agree.
    let same_type = |v: &IndexValue| got.first() == Some(&v.tag());
    match q {
        Query::Eq(v) => got == v.encode(),
        Query::Lt(v) => same_type(v) && got < v.encode().as_slice(),
        Query::Le(v) => same_type(v) && got <= v.encode().as_slice(),
        Query::Gt(v) => same_type(v) && got > v.encode().as_slice(),
        Query::Ge(v) => same_type(v) && got >= v.encode().as_slice(),
        Query::Between(a, b) => {
            same_type(a) && got >= a.encode().as_slice() && got <= b.encode().as_slice()
        }
        // The operand is a string or bytes (`satisfiable`), and its tag is its first byte, so a
        // prefix match is also a type match.
        Query::BeginsWith(v) => got.starts_with(&v.encode()),
    }
}

/// The canonical empty range, placed at `at`.
fn empty(at: Vec<u8>) -> (Bound<Vec<u8>>, Bound<Vec<u8>>) {
    (Bound::Included(at.clone()), Bound::Excluded(at))
}

/// The least byte string above every string that starts with `prefix`: drop trailing `FF`s, then
/// add one to the last byte. `None` when `prefix` is all `FF` (no such string exists).
fn prefix_successor(prefix: &[u8]) -> Option<Vec<u8>> {
    let keep = prefix.iter().rposition(|&b| b != 0xFF)?;
    let mut out = prefix.get(..=keep)?.to_vec();
    let last = out.last_mut()?;
    *last += 1;
    Some(out)
}

/// Where a paged query stopped: the last entry key it returned. The next page starts strictly
/// after it (strictly before it, for a reverse scan).
///
/// The token holds the entry key in clear (index value and primary key), hex-encoded: treat it
/// like the data itself.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ContinuationToken(pub Vec<u8>);

impl ContinuationToken {
    /// Reads a token from its hex form (either case); it must hold a well-formed entry key.
    pub fn parse(s: &str) -> Result<Self> {
        if !s.len().is_multiple_of(2) {
            return Err(Error::malformed(
                "continuation token: odd number of hex digits".into(),
            ));
        }
        let digits = s.as_bytes();
        let mut key = Vec::with_capacity(digits.len() / 2);
        for pair in digits.chunks_exact(2) {
            let [hi, lo] = pair else {
                return Err(Error::malformed("continuation token: odd length".into()));
            };
            let (Some(hi), Some(lo)) = (hex_digit(*hi), hex_digit(*lo)) else {
                return Err(Error::malformed(
                    "continuation token: not a hex string".into(),
                ));
            };
            key.push(hi << 4 | lo);
        }
        decode_entry_key(&key).map_err(|e| Error::malformed(format!("continuation token: {e}")))?;
        Ok(Self(key))
    }

    /// The bound that resumes after this token: the new lower bound of a forward scan, or the new
    /// upper bound of a reverse scan. Either way it is `Excluded(token)`.
    pub fn resume_bound(&self, reverse: bool) -> Bound<Vec<u8>> {
        // The same for both directions; the argument says which end the caller replaces.
        let _ = reverse;
        Bound::Excluded(self.0.clone())
    }

    /// `bounds` (as from [`query_bounds`]) narrowed to what is left after this token: the lower
    /// bound raised past it for a forward scan, the upper bound lowered below it for a reverse
    /// one. A token outside the range narrows nothing or empties it; the result is always a
    /// well-formed range, as [`query_bounds`] promises.
    pub fn resume_bounds(
        &self,
        bounds: (Bound<Vec<u8>>, Bound<Vec<u8>>),
        reverse: bool,
    ) -> (Bound<Vec<u8>>, Bound<Vec<u8>>) {
        use Bound::{Excluded, Included, Unbounded};
        let (lo, hi) = bounds;
        let tok = &self.0;
        let (lo, hi) = if reverse {
            let hi = match hi {
                Included(b) if b < *tok => Included(b),
                Excluded(b) if b <= *tok => Excluded(b),
                _ => Excluded(tok.clone()),
            };
            (lo, hi)
        } else {
            let lo = match lo {
                Included(a) if a > *tok => Included(a),
                Excluded(a) if a >= *tok => Excluded(a),
                _ => Excluded(tok.clone()),
            };
            (lo, hi)
        };
        let empty_range = match (&lo, &hi) {
            (Included(a), Included(b)) => a > b,
            (Included(a) | Excluded(a), Included(b) | Excluded(b)) => a >= b,
            (Unbounded, _) | (_, Unbounded) => false,
        };
        if empty_range {
            empty(tok.clone())
        } else {
            (lo, hi)
        }
    }
}

/// Lowercase hex of the entry key.
impl fmt::Display for ContinuationToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.iter().try_for_each(|b| write!(f, "{b:02x}"))
    }
}

impl FromStr for ContinuationToken {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        Self::parse(s)
    }
}

fn hex_digit(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::key::entry_key;
    use std::collections::BTreeSet;

    fn s(x: &str) -> IndexValue {
        IndexValue::String(x.into())
    }

    fn scan(set: &BTreeSet<Vec<u8>>, b: (Bound<Vec<u8>>, Bound<Vec<u8>>)) -> Vec<Vec<u8>> {
        set.range(b).cloned().collect()
    }

    #[test]
    fn typed_comparisons_skip_other_types() {
        let set: BTreeSet<_> = [
            entry_key(b"", &IndexValue::Bool(true), b"b"),
            entry_key(b"", &IndexValue::Number(1.0), b"n"),
            entry_key(b"", &s("a"), b"s"),
        ]
        .into_iter()
        .collect();
        let lt = scan(&set, query_bounds(b"", &Query::Lt(IndexValue::Number(5.0))));
        assert_eq!(lt, vec![entry_key(b"", &IndexValue::Number(1.0), b"n")]);
        let gt = scan(&set, query_bounds(b"", &Query::Gt(IndexValue::Number(0.0))));
        assert_eq!(gt, vec![entry_key(b"", &IndexValue::Number(1.0), b"n")]);
    }

    #[test]
    fn begins_with_prefixes() {
        let keys =
            ["", "a", "ab", "ab\0", "abc", "ab\u{7f}", "b"].map(|x| entry_key(b"p", &s(x), b"k"));
        let set: BTreeSet<_> = keys.iter().cloned().collect();
        let got = scan(&set, query_bounds(b"p", &Query::BeginsWith(s("ab"))));
        assert_eq!(got, keys.get(2..6).map(<[_]>::to_vec).unwrap_or_default());
        let all = scan(&set, query_bounds(b"p", &Query::BeginsWith(s(""))));
        assert_eq!(all.len(), keys.len());
    }

    #[test]
    fn unsatisfiable_queries_are_empty_and_well_formed() {
        let set: BTreeSet<_> = [entry_key(b"", &IndexValue::Number(1.0), b"k")]
            .into_iter()
            .collect();
        for q in [
            Query::Between(IndexValue::Number(0.0), s("z")),
            Query::Between(IndexValue::Number(2.0), IndexValue::Number(0.0)),
            Query::Lt(IndexValue::Number(f64::NAN)),
            Query::BeginsWith(IndexValue::Number(1.0)),
        ] {
            assert!(scan(&set, query_bounds(b"", &q)).is_empty(), "{q:?}");
        }
    }

    #[test]
    fn token_round_trip_and_resume() -> Result<()> {
        let k = entry_key(b"", &s("m"), b"pk");
        let t = ContinuationToken(k.clone());
        let parsed: ContinuationToken = t.to_string().to_uppercase().parse()?;
        assert_eq!(parsed, t);
        assert!(ContinuationToken::parse("0").is_err());
        assert!(ContinuationToken::parse("zz").is_err());
        assert!(ContinuationToken::parse("00").is_err());
        assert_eq!(t.resume_bound(false), Bound::Excluded(k.clone()));

        let set: BTreeSet<_> = ["a", "m", "z"]
            .map(|x| entry_key(b"", &s(x), b"pk"))
            .into_iter()
            .collect();
        let all = query_bounds(b"", &Query::Ge(s("")));
        assert_eq!(
            scan(&set, t.resume_bounds(all.clone(), false)),
            vec![entry_key(b"", &s("z"), b"pk")]
        );
        assert_eq!(
            scan(&set, t.resume_bounds(all, true)),
            vec![entry_key(b"", &s("a"), b"pk")]
        );
        // A token beyond the range empties it without producing an inverted range.
        let low = query_bounds(b"", &Query::Lt(s("b")));
        assert!(scan(&set, t.resume_bounds(low, false)).is_empty());
        Ok(())
    }
}
