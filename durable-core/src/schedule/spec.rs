//! When a schedule ticks: cron expressions (with seconds) in a time zone, intervals with
//! an offset, several combined (the earliest next tick of any), between a start and an
//! end time. The cron expressions are parsed and stepped by `croner`, the zones read from
//! the tz database of `chrono-tz`: neither is ours to write.

use std::str::FromStr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use chrono::{DateTime, TimeZone, Utc};
use chrono_tz::Tz;
use croner::Cron;
use croner::parser::{CronParser, Seconds};
use serde::{Deserialize, Serialize};

use crate::error::Error;

/// When a schedule ticks. Build it from one [`cron`](Self::cron) expression or
/// [`interval`](Self::every), combine more with [`and`](Self::and), and bound it with
/// [`starting_at`](Self::starting_at) and [`ending_at`](Self::ending_at). Times are
/// milliseconds apart at the finest.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use durable_core::schedule::ScheduleSpec;
///
/// // Weekdays at 09:00 in Berlin, whatever the daylight-saving offset, and every
/// // 6 hours at 5 past the hour (UTC).
/// let spec = ScheduleSpec::cron_in("0 0 9 * * MON-FRI", "Europe/Berlin")?
///     .and(ScheduleSpec::every(Duration::from_secs(6 * 3600))?.offset(Duration::from_secs(300)));
/// # Ok::<(), durable_core::Error>(())
/// ```
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ScheduleSpec {
    calendars: Vec<Calendar>,
    intervals: Vec<Interval>,
    /// No tick before it, in milliseconds since the Unix epoch.
    start_ms: Option<u64>,
    /// No tick after it, in milliseconds since the Unix epoch.
    end_ms: Option<u64>,
    /// Each run starts up to this late after its tick, in milliseconds (chosen per tick,
    /// replay-safely): spreads the runs of many schedules on one tick.
    jitter_ms: u64,
}

/// A cron expression in a time zone.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
struct Calendar {
    expression: String,
    /// An IANA zone name (`Europe/Berlin`), `UTC` by default.
    zone: String,
}

/// Ticks at the Unix epoch plus `offset_ms` plus each multiple of `every_ms`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
struct Interval {
    every_ms: u64,
    offset_ms: u64,
}

impl ScheduleSpec {
    /// Ticks when cron expression `expression` matches in UTC. Five fields (minute, hour,
    /// day of month, month, day of week) or six with seconds first; names (`MON-FRI`,
    /// `JAN`), ranges, steps, lists, `L`, `W` and `#` as croner reads them.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidSchedule`] if the expression does not parse.
    pub fn cron(expression: &str) -> Result<Self, Error> {
        Self::cron_in(expression, "UTC")
    }

    /// Ticks when cron expression `expression` matches on the wall clock of time zone
    /// `zone` (an IANA name, `Europe/Berlin`): 09:00 stays 09:00 there across
    /// daylight-saving changes. A time the change skips runs as the gap ends (02:30 on
    /// the spring day runs at 03:00); a time it repeats runs once, the first time. An
    /// expression whose hour is a wildcard ticks in each real hour instead: hourly at
    /// `:00` ticks at both 02:00 of the autumn day (summer, then winter time) and has no
    /// tick in the hour the spring day skips, as cron does for wildcard hours.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidSchedule`] if the expression does not parse or the zone is unknown.
    pub fn cron_in(expression: &str, zone: &str) -> Result<Self, Error> {
        let calendar = Calendar {
            expression: expression.to_string(),
            zone: zone.to_string(),
        };
        calendar.compile()?;
        Ok(Self {
            calendars: vec![calendar],
            ..Self::default()
        })
    }

    /// Ticks every `every`, counted from the Unix epoch (so every 15 minutes is on the
    /// quarter hours). Move the ticks with [`offset`](Self::offset).
    ///
    /// # Errors
    ///
    /// [`Error::InvalidSchedule`] if `every` is under a millisecond.
    pub fn every(every: Duration) -> Result<Self, Error> {
        let every_ms = millis_of(every);
        if every_ms == 0 {
            return Err(Error::InvalidSchedule(
                "an interval must be at least 1 ms".to_string(),
            ));
        }
        Ok(Self {
            intervals: vec![Interval {
                every_ms,
                offset_ms: 0,
            }],
            ..Self::default()
        })
    }

    /// Moves the ticks of this spec's intervals by `offset` (taken modulo each interval):
    /// `every(1 hour).offset(5 minutes)` ticks at 5 past each hour.
    pub fn offset(mut self, offset: Duration) -> Self {
        for interval in &mut self.intervals {
            interval.offset_ms = millis_of(offset) % interval.every_ms;
        }
        self
    }

    /// This spec and `other` together: the ticks of both (a time both give ticks once).
    /// The start, end and jitter of `self` stay; `other`'s are dropped.
    pub fn and(mut self, other: ScheduleSpec) -> Self {
        self.calendars.extend(other.calendars);
        self.intervals.extend(other.intervals);
        self
    }

    /// No tick before `start`.
    pub fn starting_at(mut self, start: SystemTime) -> Self {
        self.start_ms = Some(millis(start));
        self
    }

    /// No tick after `end`: the schedule then starts nothing more (it stays, to be
    /// described, updated or deleted).
    pub fn ending_at(mut self, end: SystemTime) -> Self {
        self.end_ms = Some(millis(end));
        self
    }

    /// Starts each run up to `jitter` after its tick, at a time chosen per tick (the
    /// run's id still names the tick): spreads the load of many schedules on one time.
    pub fn jitter(mut self, jitter: Duration) -> Self {
        self.jitter_ms = millis_of(jitter);
        self
    }

    /// The jitter, in milliseconds.
    pub(crate) fn jitter_ms(&self) -> u64 {
        self.jitter_ms
    }

    /// The first tick strictly after `after`, if there is one before the end.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidSchedule`] if a stored expression or zone no longer parses.
    pub fn next_after(&self, after: SystemTime) -> Result<Option<SystemTime>, Error> {
        Ok(self
            .compile()?
            .next_after(millis(after))
            .map(|ms| UNIX_EPOCH + Duration::from_millis(ms)))
    }

    /// The spec with its expressions parsed, to step through many ticks.
    pub(crate) fn compile(&self) -> Result<Compiled<'_>, Error> {
        let calendars = self
            .calendars
            .iter()
            .map(Calendar::compile)
            .collect::<Result<_, _>>()?;
        Ok(Compiled {
            spec: self,
            calendars,
        })
    }
}

impl Calendar {
    fn compile(&self) -> Result<(Cron, Tz), Error> {
        let cron = CronParser::builder()
            .seconds(Seconds::Optional)
            .build()
            .parse(&self.expression)
            .map_err(|e| {
                Error::InvalidSchedule(format!("cron expression `{}`: {e}", self.expression))
            })?;
        let zone = Tz::from_str(&self.zone).map_err(|_| {
            Error::InvalidSchedule(format!(
                "unknown time zone `{}`; use an IANA name such as `Europe/Berlin`",
                self.zone
            ))
        })?;
        Ok((cron, zone))
    }
}

/// A [`ScheduleSpec`] with its cron expressions parsed.
pub(crate) struct Compiled<'a> {
    spec: &'a ScheduleSpec,
    calendars: Vec<(Cron, Tz)>,
}

impl Compiled<'_> {
    /// The first tick strictly after `after_ms`, within the start and end.
    pub(crate) fn next_after(&self, after_ms: u64) -> Option<u64> {
        let after_ms = match self.spec.start_ms {
            Some(start) if start > 0 && after_ms < start => start - 1,
            _ => after_ms,
        };
        let intervals = self.spec.intervals.iter().map(|i| {
            // The next `offset + k * every` above `after_ms`.
            let base = after_ms.saturating_sub(i.offset_ms);
            let k = if after_ms < i.offset_ms {
                0
            } else {
                base / i.every_ms + 1
            };
            i.offset_ms + k * i.every_ms
        });
        let calendars = self.calendars.iter().filter_map(|(cron, zone)| {
            let after = zone.from_utc_datetime(&utc(after_ms).naive_utc());
            let next = cron.find_next_occurrence(&after, false).ok()?;
            u64::try_from(next.timestamp_millis()).ok()
        });
        let next = intervals.chain(calendars).min()?;
        match self.spec.end_ms {
            Some(end) if next > end => None,
            _ => Some(next),
        }
    }
}

/// `ms` (since the Unix epoch) as a UTC date-time.
pub(crate) fn utc(ms: u64) -> DateTime<Utc> {
    DateTime::from_timestamp_millis(i64::try_from(ms).unwrap_or(i64::MAX)).unwrap_or_default()
}

/// `ms` as RFC 3339 in UTC (`2026-03-25T08:00:00Z`, with milliseconds only if it has
/// some): how run ids name their tick.
pub(crate) fn rfc3339(ms: u64) -> String {
    utc(ms).to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true)
}

/// `time` in milliseconds since the Unix epoch (0 before it).
pub(crate) fn millis(time: SystemTime) -> u64 {
    crate::clock::millis(time)
}

fn millis_of(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    const HOUR: u64 = 3_600_000;

    fn ms(rfc: &str) -> u64 {
        DateTime::parse_from_rfc3339(rfc)
            .unwrap()
            .timestamp_millis() as u64
    }

    #[test]
    fn a_zoned_cron_keeps_its_wall_clock_time_across_daylight_saving() {
        let spec = ScheduleSpec::cron_in("0 0 9 * * MON-FRI", "Europe/Berlin").unwrap();
        let spec = spec.compile().unwrap();
        // Friday 27 March 2026, 09:00 CET, is 08:00 UTC; the clocks go forward on Sunday
        // 29 March, so Monday's 09:00 CEST is 07:00 UTC.
        let friday = spec.next_after(ms("2026-03-27T00:00:00Z")).unwrap();
        assert_eq!(rfc3339(friday), "2026-03-27T08:00:00Z");
        let monday = spec.next_after(friday).unwrap();
        assert_eq!(rfc3339(monday), "2026-03-30T07:00:00Z");
    }

    #[test]
    fn a_time_daylight_saving_skips_or_repeats_runs_once() {
        let spec = ScheduleSpec::cron_in("0 30 2 * * *", "Europe/Berlin").unwrap();
        let spec = spec.compile().unwrap();
        // 29 March 2026 has no 02:30 in Berlin; 25 October has two.
        let spring = spec.next_after(ms("2026-03-28T12:00:00Z")).unwrap();
        assert_eq!(
            rfc3339(spring),
            "2026-03-29T01:00:00Z",
            "03:00 CEST, as the gap ends"
        );
        let autumn = spec.next_after(ms("2026-10-24T12:00:00Z")).unwrap();
        assert_eq!(
            rfc3339(autumn),
            "2026-10-25T00:30:00Z",
            "the first 02:30 (CEST)"
        );
        let after = spec.next_after(autumn).unwrap();
        assert_eq!(
            rfc3339(after),
            "2026-10-26T01:30:00Z",
            "not the second 02:30 (CET)"
        );
    }

    #[test]
    fn the_tick_after_a_daylight_saving_tick_is_the_next_day_s() {
        let spec = ScheduleSpec::cron_in("0 30 2 * * *", "Europe/Berlin").unwrap();
        let spec = spec.compile().unwrap();
        let spring = ms("2026-03-29T01:00:00Z");
        assert_eq!(
            rfc3339(spec.next_after(spring).unwrap()),
            "2026-03-30T00:30:00Z"
        );
        assert_eq!(
            rfc3339(spec.next_after(spring - 1).unwrap()),
            "2026-03-29T01:00:00Z"
        );
        // Hourly (a wildcard hour) across the autumn change: every real hour once, the
        // repeated 02:00 twice (CEST, then CET), as cron does for wildcard hours.
        let hourly = ScheduleSpec::cron_in("0 0 * * * *", "Europe/Berlin").unwrap();
        let hourly = hourly.compile().unwrap();
        let mut at = ms("2026-10-24T23:30:00Z");
        let mut ticks = Vec::new();
        for _ in 0..4 {
            at = hourly.next_after(at).unwrap();
            ticks.push(rfc3339(at));
        }
        assert_eq!(
            ticks,
            [
                "2026-10-25T00:00:00Z",
                "2026-10-25T01:00:00Z",
                "2026-10-25T02:00:00Z",
                "2026-10-25T03:00:00Z"
            ]
        );
        // And across the spring change: the hour that does not exist has no tick.
        let mut at = ms("2026-03-28T23:30:00Z");
        let mut ticks = Vec::new();
        for _ in 0..3 {
            at = hourly.next_after(at).unwrap();
            ticks.push(rfc3339(at));
        }
        assert_eq!(
            ticks,
            [
                "2026-03-29T00:00:00Z",
                "2026-03-29T01:00:00Z",
                "2026-03-29T02:00:00Z"
            ]
        );
    }

    #[test]
    fn a_cron_tick_is_strictly_after_a_time_between_seconds() {
        let spec = ScheduleSpec::cron("0 0 9 * * *").unwrap();
        let spec = spec.compile().unwrap();
        let nine = ms("2026-03-25T09:00:00Z");
        assert_eq!(spec.next_after(nine - 1), Some(nine));
        assert_eq!(spec.next_after(nine - 500), Some(nine));
        assert_eq!(
            rfc3339(spec.next_after(nine + 500).unwrap()),
            "2026-03-26T09:00:00Z"
        );
        assert_eq!(
            rfc3339(spec.next_after(nine).unwrap()),
            "2026-03-26T09:00:00Z"
        );
    }

    #[test]
    fn intervals_tick_on_their_offset_and_specs_combine() {
        let spec = ScheduleSpec::every(Duration::from_secs(3600))
            .unwrap()
            .offset(Duration::from_secs(300))
            .and(ScheduleSpec::cron("30 * * * *").unwrap());
        let spec = spec.compile().unwrap();
        assert_eq!(spec.next_after(0), Some(300_000));
        assert_eq!(spec.next_after(300_000), Some(1_800_000));
        assert_eq!(spec.next_after(1_800_000), Some(HOUR + 300_000));
    }

    #[test]
    fn start_and_end_bound_the_ticks() {
        let spec = ScheduleSpec::every(Duration::from_secs(3600))
            .unwrap()
            .starting_at(UNIX_EPOCH + Duration::from_millis(5 * HOUR))
            .ending_at(UNIX_EPOCH + Duration::from_millis(6 * HOUR));
        let spec = spec.compile().unwrap();
        assert_eq!(spec.next_after(0), Some(5 * HOUR));
        assert_eq!(spec.next_after(5 * HOUR), Some(6 * HOUR));
        assert_eq!(spec.next_after(6 * HOUR), None);
    }

    #[test]
    fn bad_expressions_and_zones_are_refused() {
        assert!(ScheduleSpec::cron("not cron").is_err());
        assert!(ScheduleSpec::cron_in("0 9 * * *", "Mars/Olympus").is_err());
        assert!(ScheduleSpec::every(Duration::ZERO).is_err());
    }
}
