//! Wall-clock times on the command line: UTC rendering of Unix times, RFC 3339 and Unix-second
//! parsing, and durations such as `30s`, `15m`, `24h`, `7d`. No time-zone database: output is
//! always UTC, and input offsets are applied arithmetically.

use std::time::Duration;

const SECS_PER_DAY: i64 = 86_400;

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The date of a day number (inverse of [`days_from_civil`]).
fn civil_from_days(z: i64) -> (i64, i64, i64) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

/// Unix seconds as `2024-05-01T12:34:56Z`.
pub fn utc(secs: u64) -> String {
    let secs = i64::try_from(secs).unwrap_or(i64::MAX / 2);
    let (days, rem) = (secs.div_euclid(SECS_PER_DAY), secs.rem_euclid(SECS_PER_DAY));
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
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
/// space may stand for the `T`).
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
    parse_rfc3339_ms(s).ok_or_else(|| {
        format!("{s:?} is neither Unix seconds nor an RFC 3339 time such as 2024-05-01T12:34:56Z")
    })
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

fn parse_rfc3339_ms(s: &str) -> Option<u64> {
    let b = s.as_bytes();
    let num = |r: std::ops::Range<usize>| -> Option<i64> {
        let part = s.get(r)?;
        if part.bytes().all(|c| c.is_ascii_digit()) {
            part.parse().ok()
        } else {
            None
        }
    };
    if b.len() < 20 || b.get(4) != Some(&b'-') || b.get(7) != Some(&b'-') {
        return None;
    }
    if !matches!(b.get(10), Some(b'T' | b't' | b' ')) || b.get(13) != Some(&b':') {
        return None;
    }
    if b.get(16) != Some(&b':') {
        return None;
    }
    let (y, mo, d) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (h, mi, sec) = (num(11..13)?, num(14..16)?, num(17..19)?);
    if !(1..=12).contains(&mo) || !(1..=31).contains(&d) || h > 23 || mi > 59 || sec > 60 {
        return None;
    }
    let mut rest = s.get(19..)?;
    let mut ms = 0u64;
    if let Some(r) = rest.strip_prefix('.') {
        let end = r.find(|c: char| !c.is_ascii_digit()).unwrap_or(r.len());
        if end == 0 {
            return None;
        }
        ms = frac_ms(r.get(..end)?)?;
        rest = r.get(end..)?;
    }
    let offset_secs = match rest {
        "Z" | "z" => 0,
        _ => {
            let sign = match rest.as_bytes().first() {
                Some(b'+') => 1,
                Some(b'-') => -1,
                _ => return None,
            };
            let tz = rest.get(1..)?;
            let (oh, om) = tz.split_once(':')?;
            if oh.len() != 2 || om.len() != 2 {
                return None;
            }
            let (oh, om): (i64, i64) = (oh.parse().ok()?, om.parse().ok()?);
            if oh > 23 || om > 59 {
                return None;
            }
            sign * (oh * 3600 + om * 60)
        }
    };
    let secs = days_from_civil(y, mo, d) * SECS_PER_DAY + h * 3600 + mi * 60 + sec - offset_secs;
    let secs = u64::try_from(secs).ok()?;
    secs.checked_mul(1000)?.checked_add(ms)
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
