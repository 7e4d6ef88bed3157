//! RFC 3339 timestamps in UTC, for image created times, log lines and `inspect`,
//! without a date crate (only the civil-calendar arithmetic is needed).

use std::time::{SystemTime, UNIX_EPOCH};

/// `2026-11-29T02:04:39.123456789Z`: the log and `inspect` form.
pub fn rfc3339(secs: u64, nanos: u32) -> String {
    format!("{}.{nanos:09}Z", date_time(secs))
}

/// `2026-11-29T02:04:39Z`: the image-config form.
pub fn rfc3339_seconds(secs: u64) -> String {
    format!("{}Z", date_time(secs))
}

/// Now, with nanoseconds.
pub fn now() -> String {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    rfc3339(now.as_secs(), now.subsec_nanos())
}

/// Now, to the second.
pub fn now_seconds() -> String {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    rfc3339_seconds(now.as_secs())
}

/// Seconds since the epoch of `YYYY-MM-DDTHH:MM:SS[.frac](Z|+00:00)`.
pub fn parse(text: &str) -> Option<u64> {
    let num = |range: std::ops::Range<usize>| text.get(range)?.parse::<i64>().ok();
    let (y, m, d) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (hh, mm, ss) = (num(11..13)?, num(14..16)?, num(17..19)?);
    let valid = (1..=12).contains(&m) && (1..=31).contains(&d) && hh < 24 && mm < 60 && ss < 61;
    if !valid {
        return None;
    }
    u64::try_from(days_from_civil(y, m, d) * 86_400 + hh * 3600 + mm * 60 + ss).ok()
}

fn date_time(secs: u64) -> String {
    let (y, m, d) = civil_from_days((secs / 86_400) as i64);
    let rem = secs % 86_400;
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}",
        rem / 3600,
        rem / 60 % 60,
        rem % 60
    )
}

// Howard Hinnant's civil-calendar algorithms (proleptic Gregorian, public domain).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * (m + if m > 2 { -3 } else { 9 }) + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_and_parses_utc() {
        assert_eq!(rfc3339(0, 0), "1970-01-01T00:00:00.000000000Z");
        assert_eq!(rfc3339(1_709_210_096, 5), "2024-02-29T12:34:56.000000005Z");
        assert_eq!(rfc3339_seconds(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(parse("2024-01-01T00:00:00Z"), Some(1_704_067_200));
        assert_eq!(parse(&rfc3339(1_709_210_096, 5)), Some(1_709_210_096));
        assert_eq!(parse("1970-01-01T00:00:00Z"), Some(0));
        assert_eq!(parse("yesterday"), None);
        assert_eq!(parse("2024-13-01T00:00:00Z"), None);
    }
}
