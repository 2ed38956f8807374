//! Times and durations as the pages show them (UTC, to the second), and the page's
//! date fields read back into ms since the Unix epoch.

/// `ms` since the Unix epoch as `2026-11-29 23:04:05`, UTC.
pub(crate) fn time(ms: u64) -> String {
    let secs = ms / 1000;
    let (days, rest) = (secs / 86_400, secs % 86_400);
    let (y, m, d) = civil_from_days(days as i64);
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02}",
        rest / 3600,
        rest % 3600 / 60,
        rest % 60
    )
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

/// A `datetime-local` field's value (`YYYY-MM-DDTHH:MM`, seconds optional), read as UTC,
/// in ms since the Unix epoch; `None` if it is not one.
pub(crate) fn parse_field_time(value: &str) -> Option<u64> {
    let (date, clock) = value.split_once('T').or_else(|| value.split_once(' '))?;
    let mut date = date.split('-').map(str::parse::<i64>);
    let (y, m, d) = (date.next()?.ok()?, date.next()?.ok()?, date.next()?.ok()?);
    let mut clock = clock.split(':').map(|p| p.parse::<f64>());
    let (h, min) = (clock.next()?.ok()?, clock.next()?.ok()?);
    let s = clock.next().transpose().ok()?.unwrap_or(0.0);
    // Years past 9999 and clocks out of range are refused, so the arithmetic below cannot
    // overflow.
    if !(0..=9999).contains(&y)
        || !(1..=12).contains(&m)
        || !(1..=31).contains(&d)
        || !(0.0..24.0).contains(&h)
        || !(0.0..60.0).contains(&min)
        || !(0.0..61.0).contains(&s)
    {
        return None;
    }
    let days = days_from_civil(y, m, d);
    let secs = days * 86_400 + (h * 3600.0 + min * 60.0 + s) as i64;
    u64::try_from(secs).ok().map(|s| s * 1000)
}

// Howard Hinnant's algorithms (http://howardhinnant.github.io/date_algorithms.html):
// days since 1970-01-01 to and from a proleptic Gregorian date.
fn civil_from_days(z: i64) -> (i64, i64, i64) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
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
