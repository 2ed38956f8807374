//! Times and durations as the pages show them (UTC, to the second), and the page's
//! date fields read back into ms since the Unix epoch.

use chrono::{DateTime, NaiveDateTime, Utc};

/// `ms` since the Unix epoch as `2026-11-29 23:04:05`, UTC (past chrono's range, the ms
/// as a number).
pub(crate) fn time(ms: u64) -> String {
    match i64::try_from(ms)
        .ok()
        .and_then(DateTime::<Utc>::from_timestamp_millis)
    {
        Some(time) => time.format("%Y-%m-%d %H:%M:%S").to_string(),
        None => format!("{ms} ms"),
    }
}

/// A duration in ms as `850 ms`, `4.2 s`, `3 min 5 s` or `2 h 10 min`.
pub(crate) fn duration(ms: u64) -> String {
    match ms {
        0..1_000 => format!("{ms} ms"),
        1_000..60_000 => format!("{:.1} s", ms as f64 / 1000.0),
        60_000..3_600_000 => format!("{} min {} s", ms / 60_000, ms % 60_000 / 1000),
        _ => format!("{} h {} min", ms / 3_600_000, ms % 3_600_000 / 60_000),
    }
}

/// A `datetime-local` field's value (`YYYY-MM-DDTHH:MM`, seconds optional; a space for
/// the `T` too), read as UTC, in ms since the Unix epoch; `None` if it is not one.
pub(crate) fn parse_field_time(value: &str) -> Option<u64> {
    let value = value.trim().replacen(' ', "T", 1);
    ["%Y-%m-%dT%H:%M", "%Y-%m-%dT%H:%M:%S%.f"]
        .iter()
        .find_map(|format| NaiveDateTime::parse_from_str(&value, format).ok())
        .and_then(|time| u64::try_from(time.and_utc().timestamp_millis()).ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_read_back_as_written() {
        let ms = 1_796_425_445_000; // 2026-12-04 ...
        assert_eq!(parse_field_time(&time(ms)), Some(ms));
        assert_eq!(time(0), "1970-01-01 00:00:00");
        assert_eq!(parse_field_time("2000-02-29T12:30"), Some(951_827_400_000));
        assert_eq!(parse_field_time("yesterday"), None);
    }

    #[test]
    fn durations_pick_their_unit() {
        assert_eq!(duration(850), "850 ms");
        assert_eq!(duration(4_200), "4.2 s");
        assert_eq!(duration(185_000), "3 min 5 s");
        assert_eq!(duration(7_800_000), "2 h 10 min");
    }
}
