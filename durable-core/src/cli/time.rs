//! Times on the command line: ms since the Unix epoch (as the store keeps them) to RFC 3339
//! UTC for tables, and RFC 3339 or ms back to ms for the `--created-*` filters (through
//! chrono, the calendar the dashboard uses too).

use chrono::{DateTime, NaiveDate, SecondsFormat, Utc};

/// `ms` since the Unix epoch as RFC 3339 in UTC, to the millisecond:
/// `2026-11-29T23:05:00.250Z` (past chrono's range, the ms as a number).
pub(crate) fn format_ms(ms: u64) -> String {
    match i64::try_from(ms)
        .ok()
        .and_then(DateTime::<Utc>::from_timestamp_millis)
    {
        Some(time) => time.to_rfc3339_opts(SecondsFormat::Millis, true),
        None => format!("{ms} ms since the Unix epoch"),
    }
}

/// A time given on the command line, in ms since the Unix epoch: digits only are ms;
/// otherwise RFC 3339 (`2026-11-29T23:05:00Z`, `2026-11-29T23:05:00.25+01:00`), or a
/// date alone (`2026-11-29`, its midnight UTC).
///
/// # Errors
///
/// A message saying what is accepted, if `text` is neither (or is before the epoch).
pub(crate) fn parse_time(text: &str) -> Result<u64, String> {
    let text = text.trim();
    if !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit()) {
        return text
            .parse()
            .map_err(|_| format!("time `{text}` is too large for ms since the Unix epoch"));
    }
    let ms = DateTime::parse_from_rfc3339(text)
        .map(|time| time.timestamp_millis())
        .or_else(|_| {
            NaiveDate::parse_from_str(text, "%Y-%m-%d").map(|date| {
                date.and_time(chrono::NaiveTime::MIN)
                    .and_utc()
                    .timestamp_millis()
            })
        });
    ms.ok()
        .and_then(|ms| u64::try_from(ms).ok())
        .ok_or_else(|| {
            format!(
                "time `{text}` is neither RFC 3339 (`2026-11-29T23:05:00Z`) nor ms since the \
                 Unix epoch (`1796000000000`)"
            )
        })
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
