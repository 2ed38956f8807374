//! Times on the command line: ms since the Unix epoch (as the store keeps them) to RFC 3339
//! UTC for tables, and RFC 3339 or ms back to ms for the `--created-*` filters.
//!
//! Written by hand (Howard Hinnant's days-from-civil algorithms) rather than with a date
//! crate: the CLI only needs UTC, whole days and one format.

/// `ms` since the Unix epoch as RFC 3339 in UTC, to the millisecond:
/// `2026-11-29T23:05:00.250Z`.
pub(crate) fn format_ms(ms: u64) -> String {
    let secs = ms / 1000;
    let (days, rem) = (secs / 86_400, secs % 86_400);
    let (year, month, day) = civil_from_days(days as i64);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60,
        ms % 1000
    )
}

/// A time given on the command line, in ms since the Unix epoch: digits only are ms;
/// otherwise RFC 3339 (`2026-11-29T23:05:00Z`, `2026-11-29T23:05:00.25+01:00`), or a
/// date alone (`2026-11-29`, its midnight UTC).
///
/// # Errors
///
/// A message saying what is accepted, if `text` is neither.
pub(crate) fn parse_time(text: &str) -> Result<u64, String> {
    let text = text.trim();
    if !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit()) {
        return text
            .parse()
            .map_err(|_| format!("time `{text}` is too large for ms since the Unix epoch"));
    }
    parse_rfc3339(text).ok_or_else(|| {
        format!(
            "time `{text}` is neither RFC 3339 (`2026-11-29T23:05:00Z`) nor ms since the Unix \
             epoch (`1796000000000`)"
        )
    })
}

fn parse_rfc3339(text: &str) -> Option<u64> {
    let bytes = text.as_bytes();
    let number = |from: usize, len: usize| -> Option<i64> {
        let digits = text.get(from..from + len)?;
        if !digits.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        digits.parse().ok()
    };
    if bytes.len() < 10 || bytes[4] != b'-' || bytes[7] != b'-' {
        return None;
    }
    let (year, month, day) = (number(0, 4)?, number(5, 2)?, number(8, 2)?);
    if !(1..=12).contains(&month) || day < 1 || day > days_in_month(year, month) {
        return None;
    }
    let days = days_from_civil(year, month, day);
    if bytes.len() == 10 {
        return u64::try_from(days * 86_400_000).ok();
    }
    if !matches!(bytes[10], b'T' | b't' | b' ') || bytes.len() < 19 {
        return None;
    }
    if bytes[13] != b':' || bytes[16] != b':' {
        return None;
    }
    let (hour, minute, second) = (number(11, 2)?, number(14, 2)?, number(17, 2)?);
    if hour > 23 || minute > 59 || second > 60 {
        return None;
    }
    let mut at = 19;
    let mut millis = 0;
    if bytes.get(at) == Some(&b'.') {
        let digits = bytes[at + 1..]
            .iter()
            .take_while(|b| b.is_ascii_digit())
            .count();
        if digits == 0 {
            return None;
        }
        // Milliseconds: the first three digits, padded; finer digits are dropped.
        let first: String = text[at + 1..at + 1 + digits.min(3)].into();
        millis = format!("{first:0<3}").parse::<i64>().ok()?;
        at += 1 + digits;
    }
    let offset_minutes = match &text[at..] {
        "Z" | "z" => 0,
        zone if zone.len() == 6 && zone.as_bytes()[3] == b':' => {
            let sign = match zone.as_bytes()[0] {
                b'+' => 1,
                b'-' => -1,
                _ => return None,
            };
            let (h, m) = (number(at + 1, 2)?, number(at + 4, 2)?);
            if h > 23 || m > 59 {
                return None;
            }
            sign * (h * 60 + m)
        }
        _ => return None,
    };
    let secs = days * 86_400 + hour * 3600 + minute * 60 + second - offset_minutes * 60;
    u64::try_from(secs * 1000 + millis).ok()
}

fn is_leap(year: i64) -> bool {
    year % 4 == 0 && (year % 100 != 0 || year % 400 == 0)
}

fn days_in_month(year: i64, month: i64) -> i64 {
    match month {
        2 if is_leap(year) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date.
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let year = if month <= 2 { year - 1 } else { year };
    let era = year.div_euclid(400);
    let year_of_era = year - era * 400;
    let day_of_year = (153 * (if month > 2 { month - 3 } else { month + 9 }) + 2) / 5 + day - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    era * 146_097 + day_of_era - 719_468
}

/// The date of `days` since 1970-01-01: (year, month, day).
fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let day_of_era = z - era * 146_097;
    let year_of_era =
        (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let mp = (5 * day_of_year + 2) / 153;
    let day = day_of_year - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use super::{format_ms, parse_time};

    #[test]
    fn formats_utc_to_the_millisecond() {
        assert_eq!(format_ms(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(format_ms(951_782_400_000), "2000-02-29T00:00:00.000Z");
        assert_eq!(format_ms(1_796_000_000_250), "2026-11-30T00:53:20.250Z");
    }

    #[test]
    fn parses_ms_dates_and_rfc3339_back() {
        assert_eq!(parse_time("1796000000250"), Ok(1_796_000_000_250));
        assert_eq!(parse_time("2026-11-30T00:53:20.25Z"), Ok(1_796_000_000_250));
        assert_eq!(
            parse_time("2026-11-30T01:53:20.250+01:00"),
            Ok(1_796_000_000_250)
        );
        assert_eq!(parse_time("2000-02-29"), Ok(951_782_400_000));
        for ms in [0, 86_399_999, 951_782_400_000, 4_102_444_800_123] {
            assert_eq!(parse_time(&format_ms(ms)), Ok(ms));
        }
    }

    #[test]
    fn refuses_what_is_not_a_time() {
        for bad in [
            "",
            "yesterday",
            "2026-02-30",
            "2026-11-29T25:00:00Z",
            "2026-11-29T01:00:00",
        ] {
            let err = parse_time(bad).unwrap_err();
            assert!(err.contains("RFC 3339"), "{bad}: {err}");
        }
    }
}
