//! Cron schedules: expressions parsed by the `cron` crate, evaluated in an IANA time zone
//! (chrono-tz), with a defined behaviour across daylight-saving changes.
//!
//! Expressions have 5 fields (`min hour day month weekday`) or 6 (with seconds first).
//!
//! ## Daylight saving
//!
//! A schedule that fires at most once an hour names wall-clock times ("02:30 every day"). It is
//! evaluated on the local wall clock:
//!
//! - a wall-clock time that does not exist (the clock jumps from 02:00 to 03:00) fires once, at
//!   the end of the gap (03:00), as Vixie cron does;
//! - a wall-clock time that happens twice (the clock goes back from 03:00 to 02:00) fires once,
//!   at its first occurrence.
//!
//! A schedule that fires more than once an hour is an interval ("every 15 minutes"): it fires at
//! every matching instant that exists, so the repeated hour is covered twice and the skipped hour
//! not at all, and consecutive fires stay evenly spaced in real time.
//!
//! ```
//! use chrono::{TimeZone, Utc};
//! use forge_core::schedule::CronSchedule;
//!
//! let s = CronSchedule::parse("30 2 * * *", "Europe/Paris").unwrap();
//! // 2025-03-30: Paris skips 02:00–03:00; the 02:30 run happens at 03:00 CEST (01:00 UTC).
//! let fires = s.fires_between(
//!     Utc.with_ymd_and_hms(2025, 3, 29, 12, 0, 0).unwrap(),
//!     Utc.with_ymd_and_hms(2025, 3, 31, 12, 0, 0).unwrap(),
//! );
//! assert_eq!(fires, vec![
//!     Utc.with_ymd_and_hms(2025, 3, 30, 1, 0, 0).unwrap(),
//!     Utc.with_ymd_and_hms(2025, 3, 31, 0, 30, 0).unwrap(),
//! ]);
//! ```

use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, Duration, LocalResult, NaiveDateTime, Offset, TimeZone, Timelike, Utc};
use chrono_tz::Tz;

/// Why a cron expression or time zone was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ScheduleError {
    /// The expression does not parse.
    #[error("invalid cron expression {expression:?}: {reason}")]
    Expression {
        /// The expression.
        expression: String,
        /// What the parser said.
        reason: String,
    },
    /// The expression has neither 5 nor 6 fields.
    #[error("invalid cron expression {0:?}: expected 5 fields (min hour day month weekday) or 6 (with seconds first)")]
    FieldCount(String),
    /// A field holds a number outside its range.
    #[error("invalid cron expression {expression:?}: {field} {value} is out of range {min}–{max}{hint}")]
    OutOfRange {
        /// The expression.
        expression: String,
        /// The field: second, minute, hour, day of month, month, day of week.
        field: &'static str,
        /// The number written.
        value: u64,
        /// The smallest allowed.
        min: u64,
        /// The largest allowed.
        max: u64,
        /// A word on the field's numbering, if it needs one.
        hint: &'static str,
    },
    /// The time zone is not an IANA name.
    #[error("unknown time zone {0:?}; use an IANA name such as \"Europe/Paris\" or \"UTC\"")]
    TimeZone(String),
    /// The expression never fires.
    #[error("cron expression {0:?} never fires")]
    Never(String),
}

/// Each field's name, range and numbering note, seconds first.
const FIELDS: [(&str, u64, u64, &str); 6] = [
    ("second", 0, 59, ""),
    ("minute", 0, 59, ""),
    ("hour", 0, 23, ""),
    ("day of month", 1, 31, ""),
    ("month", 1, 12, " (or JAN–DEC)"),
    ("day of week", 1, 7, " (1 is Sunday; or SUN–SAT)"),
];

/// Names a number outside its field's range, before the parser's less precise message.
fn check_ranges(expression: &str, full: &str) -> Result<(), ScheduleError> {
    for (text, (field, min, max, hint)) in full.split_whitespace().zip(FIELDS) {
        for part in text.split(',') {
            let (range, step) = match part.split_once('/') {
                Some((range, step)) => (range, Some(step)),
                None => (part, None),
            };
            if let Some(step) = step.and_then(|s| s.parse::<u64>().ok())
                && (step == 0 || step > max)
            {
                return Err(ScheduleError::OutOfRange {
                    expression: expression.to_owned(),
                    field,
                    value: step,
                    min: 1,
                    max,
                    hint: " (as a step)",
                });
            }
            for bound in range.split('-') {
                if let Ok(value) = bound.parse::<u64>()
                    && !(min..=max).contains(&value)
                {
                    return Err(ScheduleError::OutOfRange {
                        expression: expression.to_owned(),
                        field,
                        value,
                        min,
                        max,
                        hint,
                    });
                }
            }
        }
    }
    Ok(())
}

/// A parsed schedule in a time zone.
#[derive(Clone)]
pub struct CronSchedule {
    expression: String,
    schedule: cron::Schedule,
    tz: Tz,
    interval: bool,
}

impl fmt::Debug for CronSchedule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CronSchedule").field("expression", &self.expression).field("tz", &self.tz).finish()
    }
}

impl CronSchedule {
    /// Parses a 5- or 6-field expression for the IANA time zone `tz`.
    pub fn parse(expression: &str, tz: &str) -> Result<Self, ScheduleError> {
        let fields = expression.split_whitespace().count();
        let full = match fields {
            5 => format!("0 {expression}"),
            6 => expression.to_owned(),
            _ => return Err(ScheduleError::FieldCount(expression.to_owned())),
        };
        check_ranges(expression, &full)?;
        let schedule = cron::Schedule::from_str(&full).map_err(|e| ScheduleError::Expression {
            expression: expression.to_owned(),
            reason: parse_error_reason(&e.to_string(), full.len() - expression.len()),
        })?;
        let tz: Tz = tz.parse().map_err(|_| ScheduleError::TimeZone(tz.to_owned()))?;
        // An interval fires more than once within some hour; sample a year of fires in UTC.
        let start = Utc.with_ymd_and_hms(2001, 1, 1, 0, 0, 0).single().unwrap_or_else(Utc::now);
        let sample: Vec<DateTime<Utc>> = schedule.after(&start).take(64).collect();
        if sample.is_empty() {
            return Err(ScheduleError::Never(expression.to_owned()));
        }
        let interval = sample.windows(2).any(|w| w[1] - w[0] < Duration::hours(1));
        Ok(Self { expression: expression.to_owned(), schedule, tz, interval })
    }

    /// The expression as written.
    pub fn expression(&self) -> &str {
        &self.expression
    }

    /// The time zone.
    pub fn timezone(&self) -> Tz {
        self.tz
    }

    /// The fire times strictly after `after` and at or before `until`, in order.
    pub fn fires_between(&self, after: DateTime<Utc>, until: DateTime<Utc>) -> Vec<DateTime<Utc>> {
        let mut fires = Vec::new();
        let mut cursor = after;
        while let Some(next) = self.next_after(cursor) {
            if next > until {
                break;
            }
            fires.push(next);
            cursor = next;
        }
        fires
    }

    /// The first fire time strictly after `after`.
    pub fn next_after(&self, after: DateTime<Utc>) -> Option<DateTime<Utc>> {
        if self.interval {
            return self.next_instant(after);
        }
        // Wall-clock times: iterate the local clock as if it were UTC, then place each time.
        let wall = after.with_timezone(&self.tz).naive_local();
        // Start a little before, so a gap's run (placed at the gap's end) is not missed.
        let mut cursor = Utc.from_utc_datetime(&(wall - Duration::hours(3)));
        for _ in 0..10_000 {
            let candidate = self.schedule.after(&cursor).next()?;
            cursor = candidate;
            if let Some(instant) = self.place(candidate.naive_utc())
                && instant > after
            {
                return Some(instant);
            }
        }
        None
    }

    /// Intervals: the next matching instant, iterating under the UTC offset in force and moving
    /// to the new offset where a transition falls before the candidate.
    fn next_instant(&self, after: DateTime<Utc>) -> Option<DateTime<Utc>> {
        let offset_at = |t: DateTime<Utc>| self.tz.offset_from_utc_datetime(&t.naive_utc()).fix();
        let mut from = after;
        let mut offset = offset_at(after);
        for _ in 0..8 {
            let candidate = self.schedule.after(&from.with_timezone(&offset)).next()?.with_timezone(&Utc);
            if offset_at(candidate) == offset {
                return Some(candidate);
            }
            // The offset changed in (from, candidate]: find the change to the second.
            let (mut lo, mut hi) = (from, candidate);
            while hi - lo > Duration::seconds(1) {
                let mid = lo + (hi - lo) / 2;
                if offset_at(mid) == offset { lo = mid } else { hi = mid }
            }
            offset = offset_at(hi);
            from = (hi - Duration::seconds(1)).max(after);
        }
        None
    }

    /// The real instant of wall-clock time `wall`: itself, the first of two, or the end of a gap.
    fn place(&self, wall: NaiveDateTime) -> Option<DateTime<Utc>> {
        match self.tz.from_local_datetime(&wall) {
            LocalResult::Single(t) => Some(t.with_timezone(&Utc)),
            LocalResult::Ambiguous(first, _) => Some(first.with_timezone(&Utc)),
            LocalResult::None => {
                // Walk to the first wall-clock minute that exists: the end of the gap.
                let mut probe = wall;
                for _ in 0..(26 * 60) {
                    probe = (probe + Duration::minutes(1)).with_second(0)?;
                    if let Some(t) = self.tz.from_local_datetime(&probe).earliest() {
                        return Some(t.with_timezone(&Utc));
                    }
                }
                None
            }
        }
    }
}

/// The `cron` crate reports a parse error as the expression and a caret under the place it gave
/// up; turn that into a column of the expression as the user wrote it.
fn parse_error_reason(message: &str, prefix: usize) -> String {
    let mut lines = message.lines();
    let (Some(text), Some(caret)) = (lines.next(), lines.next()) else {
        return message.trim().to_owned();
    };
    let Some(column) = caret.find('^') else { return message.trim().to_owned() };
    let column = column.saturating_sub(prefix);
    let rest: String = text.chars().skip(column + prefix).take(12).collect();
    format!("cannot parse at column {} ({rest:?}); check the field values and their ranges", column + 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn utc(y: i32, m: u32, d: u32, h: u32, min: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(y, m, d, h, min, 0).unwrap()
    }

    #[test]
    fn five_and_six_field_expressions_parse() {
        let every_minute = CronSchedule::parse("* * * * *", "UTC").unwrap();
        assert_eq!(every_minute.next_after(utc(2025, 1, 1, 0, 0)), Some(utc(2025, 1, 1, 0, 1)));
        let every_second = CronSchedule::parse("* * * * * *", "UTC").unwrap();
        let t = utc(2025, 1, 1, 0, 0);
        assert_eq!(every_second.next_after(t), Some(t + Duration::seconds(1)));
        let step = CronSchedule::parse("*/15 * * * *", "UTC").unwrap();
        assert_eq!(step.fires_between(t, utc(2025, 1, 1, 1, 0)).len(), 4);
    }

    #[test]
    fn a_number_out_of_its_fields_range_is_named_with_the_range() {
        let message = |expression: &str| CronSchedule::parse(expression, "UTC").unwrap_err().to_string();
        assert!(message("61 * * * *").ends_with("minute 61 is out of range 0–59"), "{}", message("61 * * * *"));
        assert!(message("0 24 * * *").ends_with("hour 24 is out of range 0–23"));
        assert!(message("0 0 0 * *").ends_with("day of month 0 is out of range 1–31"));
        assert!(message("0 0 1 1-13 *").ends_with("month 13 is out of range 1–12 (or JAN–DEC)"));
        assert!(message("0 0 * * 0").ends_with("day of week 0 is out of range 1–7 (1 is Sunday; or SUN–SAT)"));
        assert!(message("*/0 * * * *").ends_with("minute 0 is out of range 1–59 (as a step)"));
        assert!(message("75 * * * * *").ends_with("second 75 is out of range 0–59"));
        for fine in ["0,30 8-17 * JAN-DEC MON-FRI", "*/5 * * * *", "0 0 1,15 * 1-7"] {
            assert!(CronSchedule::parse(fine, "UTC").is_ok(), "{fine}");
        }
    }

    #[test]
    fn bad_expressions_and_zones_are_refused() {
        assert!(matches!(CronSchedule::parse("* * *", "UTC"), Err(ScheduleError::FieldCount(_))));
        let err = CronSchedule::parse("* * * * MON-", "UTC").unwrap_err();
        assert!(matches!(err, ScheduleError::Expression { .. }), "{err}");
        assert!(err.to_string().contains("column"), "{err}");
        assert!(matches!(CronSchedule::parse("* * * * *", "Mars/Olympus"), Err(ScheduleError::TimeZone(_))));
        let err = CronSchedule::parse("0 0 30 2 *", "UTC").unwrap_err();
        assert!(matches!(err, ScheduleError::Never(_)), "{err}");
    }

    #[test]
    fn daily_runs_follow_the_local_clock() {
        let s = CronSchedule::parse("0 9 * * *", "Europe/Paris").unwrap();
        // Winter: 09:00 CET is 08:00 UTC; summer: 09:00 CEST is 07:00 UTC.
        assert_eq!(s.next_after(utc(2025, 1, 10, 0, 0)), Some(utc(2025, 1, 10, 8, 0)));
        assert_eq!(s.next_after(utc(2025, 7, 10, 0, 0)), Some(utc(2025, 7, 10, 7, 0)));
    }

    #[test]
    fn a_skipped_wall_clock_time_fires_once_at_the_end_of_the_gap() {
        let s = CronSchedule::parse("30 2 * * *", "Europe/Paris").unwrap();
        let fires = s.fires_between(utc(2025, 3, 28, 12, 0), utc(2025, 4, 1, 12, 0));
        assert_eq!(
            fires,
            vec![
                utc(2025, 3, 29, 1, 30), // 02:30 CET
                utc(2025, 3, 30, 1, 0),  // 02:30 does not exist: 03:00 CEST
                utc(2025, 3, 31, 0, 30), // 02:30 CEST
                utc(2025, 4, 1, 0, 30),
            ]
        );
    }

    #[test]
    fn a_repeated_wall_clock_time_fires_once() {
        let s = CronSchedule::parse("30 2 * * *", "Europe/Paris").unwrap();
        let fires = s.fires_between(utc(2025, 10, 25, 12, 0), utc(2025, 10, 27, 12, 0));
        assert_eq!(fires, vec![utc(2025, 10, 26, 0, 30), utc(2025, 10, 27, 1, 30)]);
    }

    #[test]
    fn intervals_keep_real_time_spacing_across_both_changes() {
        let s = CronSchedule::parse("*/30 * * * *", "Europe/Paris").unwrap();
        // Fall back: 02:00–03:00 local happens twice; every real half hour fires once.
        let fires = s.fires_between(utc(2025, 10, 25, 23, 0), utc(2025, 10, 26, 3, 0));
        let expected: Vec<_> = (1..=8).map(|i| utc(2025, 10, 25, 23, 0) + Duration::minutes(30 * i)).collect();
        assert_eq!(fires, expected);
        // Spring forward: the skipped hour has no instants; spacing stays 30 minutes.
        let fires = s.fires_between(utc(2025, 3, 29, 23, 0), utc(2025, 3, 30, 3, 0));
        assert!(fires.windows(2).all(|w| w[1] - w[0] == Duration::minutes(30)), "{fires:?}");
        assert_eq!(fires.len(), 8);
    }

    proptest::proptest! {
        /// Across any daylight-saving change in these zones, an interval stays evenly spaced in
        /// real time, and a daily wall-clock time fires exactly once per local day.
        #[test]
        fn dst_changes_neither_skip_nor_double(
            zone in proptest::sample::select(vec!["Europe/Paris", "America/New_York", "Australia/Sydney", "Asia/Kolkata", "UTC"]),
            start in 1_600_000_000i64..1_800_000_000,
        ) {
            let after = Utc.timestamp_opt(start, 0).single().unwrap();
            let every20 = CronSchedule::parse("*/20 * * * *", zone).unwrap();
            let fires = every20.fires_between(after, after + Duration::days(2));
            proptest::prop_assert!(fires.windows(2).all(|w| w[1] - w[0] == Duration::minutes(20)), "{:?}", fires);

            let daily = CronSchedule::parse("30 2 * * *", zone).unwrap();
            let fires = daily.fires_between(after, after + Duration::days(400));
            let tz: Tz = zone.parse().unwrap();
            let days: Vec<chrono::NaiveDate> = fires.iter().map(|f| f.with_timezone(&tz).date_naive()).collect();
            proptest::prop_assert!(days.windows(2).all(|w| w[1] - w[0] == Duration::days(1)), "{:?}", days);
        }
    }

    #[test]
    fn fires_are_strictly_after_and_in_order() {
        let s = CronSchedule::parse("0 * * * *", "America/New_York").unwrap();
        let t = utc(2025, 11, 2, 4, 0);
        let fires = s.fires_between(t, t + Duration::hours(6));
        assert!(fires.windows(2).all(|w| w[0] < w[1]), "{fires:?}");
        assert!(fires.iter().all(|f| *f > t));
    }
}
