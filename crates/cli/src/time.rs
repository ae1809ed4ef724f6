//! Wall-clock times on the command line: UTC rendering of Unix times, RFC 3339 and Unix-second
//! parsing (calendar arithmetic by `jiff`), and durations such as `30s`, `15m`, `24h`, `7d`.
//! No time-zone database: output is always UTC, and input offsets are applied as given.

use jiff::Timestamp;
use std::time::Duration;

/// Unix seconds as `2024-05-01T12:34:56Z` (a time past the year 9999, which no clock of
/// this program produces, is shown as `unix:<seconds>`).
pub fn utc(secs: u64) -> String {
    i64::try_from(secs)
        .ok()
        .and_then(|s| Timestamp::from_second(s).ok())
        .map_or_else(
            || format!("unix:{secs}"),
            |t| t.strftime("%Y-%m-%dT%H:%M:%SZ").to_string(),
        )
}

/// Unix milliseconds as `2024-05-01T12:34:56.789Z`.
pub fn utc_ms(ms: u64) -> String {
    let base = utc(ms / 1000);
    let frac = ms % 1000;
    match base.strip_suffix('Z') {
        Some(b) => format!("{b}.{frac:03}Z"),
        None => base,
    }
}

/// Reads a point in time as Unix milliseconds: Unix seconds (`1714566896`, fractions allowed:
/// `1714566896.5`) or RFC 3339 (`2024-05-01T12:34:56Z`, `2024-05-01T14:34:56.250+02:00`; a
/// space may stand for the `T`). The offset is required: a time without one names no
/// instant.
pub fn parse_time_ms(s: &str) -> Result<u64, String> {
    let s = s.trim();
    if s.bytes().all(|b| b.is_ascii_digit() || b == b'.') && !s.is_empty() {
        let (int, frac) = s.split_once('.').unwrap_or((s, ""));
        let secs: u64 = int
            .parse()
            .map_err(|_| format!("{s:?} is not a Unix time in seconds"))?;
        let ms = frac_ms(frac).ok_or_else(|| format!("{s:?} is not a Unix time in seconds"))?;
        return secs
            .checked_mul(1000)
            .and_then(|v| v.checked_add(ms))
            .ok_or_else(|| format!("{s:?} is out of range"));
    }
    let t: Timestamp = s.parse().map_err(|e| {
        format!(
            "{s:?} is neither Unix seconds nor an RFC 3339 time such as 2024-05-01T12:34:56Z ({e})"
        )
    })?;
    u64::try_from(t.as_millisecond()).map_err(|_| format!("{s:?} is before 1970"))
}

/// Milliseconds of a fraction's digits (`"5"` is 500, `"25"` 250, extra digits truncated).
fn frac_ms(frac: &str) -> Option<u64> {
    if !frac.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let mut ms = 0u64;
    for i in 0..3 {
        let digit = frac.as_bytes().get(i).map_or(0, |b| u64::from(b - b'0'));
        ms = ms * 10 + digit;
    }
    Some(ms)
}

/// Reads a duration: a number with a unit `ms`, `s`, `m`, `h` or `d` (`30s`, `15m`, `24h`,
/// `7d`), or a bare number of seconds.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let t = s.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (digits, unit) = t.split_at(split);
    let bad = || format!("{s:?} is not a duration (examples: 500ms, 30s, 15m, 24h, 7d)");
    let n: u64 = digits.parse().map_err(|_| bad())?;
    let secs = |mult: u64| n.checked_mul(mult).map(Duration::from_secs).ok_or_else(bad);
    match unit {
        "ms" => Ok(Duration::from_millis(n)),
        "" | "s" => secs(1),
        "m" => secs(60),
        "h" => secs(3600),
        "d" => secs(86_400),
        _ => Err(bad()),
    }
}

/// A duration the way [`parse_duration`] reads it back (`24h`, `90s`, `250ms`).
pub fn format_duration(d: Duration) -> String {
    let ms = d.as_millis();
    if !ms.is_multiple_of(1000) {
        return format!("{ms}ms");
    }
    let s = d.as_secs();
    if s == 0 {
        "0s".to_string()
    } else if s.is_multiple_of(86_400) {
        format!("{}d", s / 86_400)
    } else if s.is_multiple_of(3600) {
        format!("{}h", s / 3600)
    } else if s.is_multiple_of(60) {
        format!("{}m", s / 60)
    } else {
        format!("{s}s")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn utc_round_trips_through_the_parser() {
        assert_eq!(utc(0), "1970-01-01T00:00:00Z");
        assert_eq!(utc(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(utc(1_714_566_896), "2024-05-01T12:34:56Z");
        assert_eq!(utc_ms(1_714_566_896_789), "2024-05-01T12:34:56.789Z");
        for secs in [0u64, 951_782_400, 1_714_566_896, 4_102_444_800] {
            assert_eq!(parse_time_ms(&utc(secs)), Ok(secs * 1000));
        }
    }

    #[test]
    fn times_parse_as_unix_seconds_or_rfc3339() {
        assert_eq!(parse_time_ms("1714566896"), Ok(1_714_566_896_000));
        assert_eq!(parse_time_ms("1714566896.25"), Ok(1_714_566_896_250));
        assert_eq!(
            parse_time_ms("2024-05-01T14:34:56.5+02:00"),
            Ok(1_714_566_896_500)
        );
        assert_eq!(parse_time_ms("2024-05-01 12:34:56Z"), Ok(1_714_566_896_000));
        for bad in [
            "",
            "yesterday",
            "2024-05-01",
            "2024-13-01T00:00:00Z",
            "1.2.3",
            "2024-05-01T00:00:00",
            "1969-12-31T23:59:59Z",
            "2024-02-30T00:00:00Z",
        ] {
            assert!(parse_time_ms(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("30s"), Ok(Duration::from_secs(30)));
        assert_eq!(parse_duration("15m"), Ok(Duration::from_secs(900)));
        assert_eq!(parse_duration("24h"), Ok(Duration::from_secs(86_400)));
        assert_eq!(parse_duration("7d"), Ok(Duration::from_secs(604_800)));
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("42"), Ok(Duration::from_secs(42)));
        for bad in ["", "h", "5w", "-1s", "1.5h"] {
            assert!(parse_duration(bad).is_err(), "{bad}");
        }
        assert_eq!(format_duration(Duration::from_secs(86_400)), "1d");
        assert_eq!(format_duration(Duration::from_secs(90)), "90s");
        assert_eq!(format_duration(Duration::from_millis(250)), "250ms");
    }
}
