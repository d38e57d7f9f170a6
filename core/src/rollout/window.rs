//! Recurring maintenance windows: when a [`RecurringWindow`] is open.
//!
//! A window opens on each of its days at its start, a wall-clock time in
//! its time zone, and stays open for its length, elapsed time. Across
//! daylight-saving changes:
//!
//! - a start skipped by a spring-forward gap opens the window as much later
//!   as the clocks jumped (jiff's *compatible* disambiguation, as RFC 5545:
//!   `02:30` on the last Sunday of March in Berlin opens at 03:30 CEST,
//!   01:30 UTC); a start of `02:00` opens at 03:00, the first instant after
//!   the gap;
//! - a start that happens twice in a fall-back hour opens it the first time
//!   (02:30 CEST, not 02:30 CET);
//! - `length` is elapsed time: a 4h window is open 4 real hours even when
//!   the clocks change inside it, so its wall-clock end moves by the change
//!   (22:00 + 4h ends at 03:00 local on a night that springs forward).
//!
//! A window that opened on an earlier day and is still open counts: a
//! Sunday 22:00 window of 4h is open on Monday at 01:00.

use super::plan::RecurringWindow;
use jiff::Timestamp;
use jiff::civil::{Date, Time, Weekday};
use jiff::tz::TimeZone;
use std::time::Duration;

/// The longest a window may be: a week (so it cannot overlap itself).
pub const MAX_WINDOW_LENGTH: Duration = Duration::from_secs(7 * 24 * 3600);

/// The weekday a window's day names, as written (`Mon` .. `Sun`).
pub fn weekday(day: &str) -> Option<Weekday> {
    Some(match day {
        "Mon" => Weekday::Monday,
        "Tue" => Weekday::Tuesday,
        "Wed" => Weekday::Wednesday,
        "Thu" => Weekday::Thursday,
        "Fri" => Weekday::Friday,
        "Sat" => Weekday::Saturday,
        "Sun" => Weekday::Sunday,
        _ => return None,
    })
}

/// `HH:MM`, 00:00 to 23:59.
pub fn clock_time(text: &str) -> Option<Time> {
    let (h, m) = text.split_once(':')?;
    if h.len() != 2 || m.len() != 2 {
        return None;
    }
    let h: i8 = h.parse().ok()?;
    let m: i8 = m.parse().ok()?;
    Time::new(h, m, 0, 0).ok()
}

/// A window's fields, parsed.
struct Parsed {
    days: Vec<Weekday>,
    start: Time,
    length: Duration,
    zone: TimeZone,
}

impl RecurringWindow {
    /// What is wrong with this window, if anything: unknown days, a start
    /// that is not `HH:MM`, a length of 0 or over 7 days, a time zone the
    /// system's time zone database does not know.
    pub fn check(&self) -> Result<(), String> {
        self.parse().map(|_| ())
    }

    fn parse(&self) -> Result<Parsed, String> {
        let mut days = Vec::new();
        for day in &self.days {
            days.push(weekday(day).ok_or_else(|| {
                format!("`{day}` is not a day; expected one of: Mon, Tue, Wed, Thu, Fri, Sat, Sun")
            })?);
        }
        if days.is_empty() {
            return Err("a window needs at least one day".into());
        }
        let start = clock_time(&self.start)
            .ok_or_else(|| format!("`{}` is not a local time `HH:MM`", self.start))?;
        if self.length.is_zero() || self.length > MAX_WINDOW_LENGTH {
            return Err("a window's length must be more than 0s and at most 7d".into());
        }
        let zone = TimeZone::get(&self.time_zone)
            .map_err(|_| format!("unknown time zone `{}`", self.time_zone))?;
        Ok(Parsed {
            days,
            start,
            length: self.length,
            zone,
        })
    }

    /// Whether the window is open at `now`: some occurrence started at or
    /// before `now` and has not yet lasted `length`. `false` for a window
    /// that does not [`check`](Self::check).
    pub fn contains(&self, now: Timestamp) -> bool {
        let Ok(w) = self.parse() else { return false };
        w.starts_around(now)
            .any(|start| start <= now && now < add(start, w.length))
    }

    /// When the window is next open: `now` if it is open now, else the
    /// start of its next occurrence. `None` for a window that does not
    /// [`check`](Self::check).
    pub fn next_open(&self, now: Timestamp) -> Option<Timestamp> {
        let w = self.parse().ok()?;
        if w.starts_around(now)
            .any(|start| start <= now && now < add(start, w.length))
        {
            return Some(now);
        }
        w.starts_around(now).filter(|start| *start > now).min()
    }
}

impl Parsed {
    /// The starts of every occurrence from 8 local days before `now` to 8
    /// after: every occurrence that can contain `now` (a window lasts at
    /// most 7 days) and the next one to open.
    fn starts_around(&self, now: Timestamp) -> impl Iterator<Item = Timestamp> + '_ {
        let today = now.to_zoned_datetime(self.zone.clone()).date();
        (-8i32..=8).filter_map(move |offset| {
            let date: Date = today.checked_add(jiff::Span::new().days(offset)).ok()?;
            if !self.days.contains(&date.weekday()) {
                return None;
            }
            self.zone
                .to_ambiguous_timestamp(date.to_datetime(self.start))
                .compatible()
                .ok()
        })
    }
}

fn add(start: Timestamp, length: Duration) -> Timestamp {
    start.checked_add(length).unwrap_or(Timestamp::MAX)
}

/// Whether a host may start its upgrade at `now`: inside any of the
/// windows, or always when there are none.
pub fn window_open(windows: &[RecurringWindow], now: Timestamp) -> bool {
    windows.is_empty() || windows.iter().any(|w| w.contains(now))
}

/// When a host may next start: `now` when a window is open (or there are
/// none), else the earliest next opening of any window.
pub fn next_open(windows: &[RecurringWindow], now: Timestamp) -> Option<Timestamp> {
    if windows.is_empty() {
        return Some(now);
    }
    windows.iter().filter_map(|w| w.next_open(now)).min()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn window(days: &[&str], start: &str, hours: u64, zone: &str) -> RecurringWindow {
        RecurringWindow {
            days: days.iter().map(|d| d.to_string()).collect(),
            start: start.into(),
            length: Duration::from_secs(hours * 3600),
            time_zone: zone.into(),
        }
    }

    fn at(text: &str) -> Timestamp {
        text.parse().unwrap()
    }

    #[test]
    fn an_ordinary_night_in_berlin() {
        // Wednesday 2026-06-17, CEST (UTC+2): 22:00 local is 20:00 UTC.
        let w = window(&["Wed"], "22:00", 4, "Europe/Berlin");
        assert!(!w.contains(at("2026-06-17T19:59:59Z")));
        assert!(w.contains(at("2026-06-17T20:00:00Z")));
        assert!(w.contains(at("2026-06-17T23:59:59Z")));
        assert!(!w.contains(at("2026-06-18T00:00:00Z")));
        assert_eq!(
            w.next_open(at("2026-06-17T12:00:00Z")),
            Some(at("2026-06-17T20:00:00Z"))
        );
        // Inside: now. After: next Wednesday.
        let inside = at("2026-06-17T21:00:00Z");
        assert_eq!(w.next_open(inside), Some(inside));
        assert_eq!(
            w.next_open(at("2026-06-18T00:00:00Z")),
            Some(at("2026-06-24T20:00:00Z"))
        );
    }

    #[test]
    fn spring_forward_in_berlin_keeps_the_length_in_real_hours() {
        // Sunday 2026-03-29: 02:00 CET becomes 03:00 CEST (01:00 UTC).
        // Saturday 22:00 CET is 21:00 UTC; 4 real hours end at 01:00 UTC,
        // which reads 03:00 CEST: the wall-clock end moved by an hour.
        let w = window(&["Sat"], "22:00", 4, "Europe/Berlin");
        assert!(w.contains(at("2026-03-28T21:00:00Z")));
        assert!(w.contains(at("2026-03-29T00:59:59Z")));
        assert!(!w.contains(at("2026-03-29T01:00:00Z")));
    }

    #[test]
    fn a_start_in_the_spring_forward_gap_opens_after_it() {
        // 02:30 does not exist in Berlin on 2026-03-29: the window opens
        // an hour later on the wall clock, 03:30 CEST = 01:30 UTC.
        let w = window(&["Sun"], "02:30", 1, "Europe/Berlin");
        assert_eq!(
            w.next_open(at("2026-03-28T12:00:00Z")),
            Some(at("2026-03-29T01:30:00Z"))
        );
        assert!(!w.contains(at("2026-03-29T01:29:59Z")));
        assert!(w.contains(at("2026-03-29T01:30:00Z")));
        assert!(!w.contains(at("2026-03-29T02:30:00Z")));
        // 02:00 opens at the first instant after the gap: 03:00 CEST.
        let w = window(&["Sun"], "02:00", 1, "Europe/Berlin");
        assert_eq!(
            w.next_open(at("2026-03-28T12:00:00Z")),
            Some(at("2026-03-29T01:00:00Z"))
        );
        // A week later, an ordinary Sunday: 02:30 CEST = 00:30 UTC.
        let w = window(&["Sun"], "02:30", 1, "Europe/Berlin");
        assert_eq!(
            w.next_open(at("2026-03-29T03:00:00Z")),
            Some(at("2026-04-05T00:30:00Z"))
        );
    }

    #[test]
    fn fall_back_in_berlin_opens_at_the_first_occurrence() {
        // Sunday 2026-10-25: 03:00 CEST becomes 02:00 CET (01:00 UTC), so
        // 02:30 happens at 00:30 UTC (CEST) and again at 01:30 UTC (CET).
        let w = window(&["Sun"], "02:30", 1, "Europe/Berlin");
        assert_eq!(
            w.next_open(at("2026-10-24T12:00:00Z")),
            Some(at("2026-10-25T00:30:00Z"))
        );
        assert!(w.contains(at("2026-10-25T00:30:00Z")));
        assert!(w.contains(at("2026-10-25T01:29:59Z")));
        // One real hour, though the wall clock reads 02:30 again.
        assert!(!w.contains(at("2026-10-25T01:30:00Z")));
    }

    #[test]
    fn fall_back_lengthens_nothing_but_the_wall_clock() {
        // Saturday 2026-10-24 22:00 CEST = 20:00 UTC; 4 real hours end at
        // 00:00 UTC, which reads 02:00 CEST (before the change).
        let w = window(&["Sat"], "22:00", 4, "Europe/Berlin");
        assert!(w.contains(at("2026-10-24T20:00:00Z")));
        assert!(!w.contains(at("2026-10-25T00:00:00Z")));
        // Sunday night 2026-10-25 22:00 is CET now: 21:00 UTC.
        let w = window(&["Sun"], "22:00", 4, "Europe/Berlin");
        assert_eq!(
            w.next_open(at("2026-10-25T12:00:00Z")),
            Some(at("2026-10-25T21:00:00Z"))
        );
    }

    #[test]
    fn new_york_across_both_changes() {
        // 2026-03-08: 02:00 EST becomes 03:00 EDT (07:00 UTC).
        let w = window(&["Sun"], "02:15", 2, "America/New_York");
        // 02:15 is skipped: opens at 03:15 EDT = 07:15 UTC.
        assert_eq!(
            w.next_open(at("2026-03-07T00:00:00Z")),
            Some(at("2026-03-08T07:15:00Z"))
        );
        // 2026-11-01: 02:00 EDT becomes 01:00 EST (06:00 UTC); 01:30
        // happens twice: the first, EDT, is 05:30 UTC.
        let w = window(&["Sun"], "01:30", 1, "America/New_York");
        assert_eq!(
            w.next_open(at("2026-10-31T00:00:00Z")),
            Some(at("2026-11-01T05:30:00Z"))
        );
        assert!(!w.contains(at("2026-11-01T06:30:00Z")));
        // Saturday 23:00 EDT (03:00 UTC Sunday) for 4h ends at 07:00 UTC,
        // 02:00 EST on the wall clock.
        let w = window(&["Sat"], "23:00", 4, "America/New_York");
        assert!(w.contains(at("2026-11-01T06:59:59Z")));
        assert!(!w.contains(at("2026-11-01T07:00:00Z")));
    }

    #[test]
    fn a_window_spanning_midnight_counts_the_day_after() {
        // Friday 22:00 UTC for 4h: open on Saturday at 01:00, although
        // Saturday is not one of its days.
        let w = window(&["Fri"], "22:00", 4, "UTC");
        assert!(w.contains(at("2026-06-20T01:00:00Z")));
        assert!(!w.contains(at("2026-06-20T02:00:00Z")));
        assert_eq!(
            w.next_open(at("2026-06-20T01:00:00Z")),
            Some(at("2026-06-20T01:00:00Z"))
        );
    }

    #[test]
    fn a_window_spanning_the_week_boundary() {
        // Sunday 2026-06-21 23:00 for 3h: open Monday 01:00, closed 02:00.
        let w = window(&["Sun"], "23:00", 3, "UTC");
        assert!(w.contains(at("2026-06-22T01:00:00Z")));
        assert!(!w.contains(at("2026-06-22T02:00:00Z")));
        assert_eq!(
            w.next_open(at("2026-06-22T02:00:00Z")),
            Some(at("2026-06-28T23:00:00Z"))
        );
        // A whole week: always open.
        let w = window(&["Mon"], "00:00", 7 * 24, "UTC");
        assert!(w.contains(at("2026-06-21T23:59:59Z")));
        assert!(w.contains(at("2026-06-22T00:00:00Z")));
    }

    #[test]
    fn no_windows_is_always_open_and_any_window_opens() {
        assert!(window_open(&[], at("2026-06-17T03:00:00Z")));
        let a = window(&["Mon"], "01:00", 1, "UTC");
        let b = window(&["Wed"], "01:00", 3, "UTC");
        assert!(window_open(
            &[a.clone(), b.clone()],
            at("2026-06-17T03:00:00Z")
        ));
        assert!(!window_open(
            std::slice::from_ref(&a),
            at("2026-06-17T03:00:00Z")
        ));
        assert_eq!(
            next_open(&[a, b], at("2026-06-17T05:00:00Z")),
            Some(at("2026-06-22T01:00:00Z"))
        );
    }

    #[test]
    fn an_invalid_window_is_never_open() {
        let w = window(&["Mon"], "25:00", 1, "UTC");
        assert!(w.check().is_err());
        assert!(!w.contains(at("2026-06-22T01:00:00Z")));
        assert!(
            window(&["Mon"], "01:00", 1, "Mars/Olympus")
                .check()
                .is_err()
        );
        assert!(window(&["Mon"], "01:00", 0, "UTC").check().is_err());
        assert!(
            window(&["Mon"], "01:00", 7 * 24 + 1, "UTC")
                .check()
                .is_err()
        );
        assert!(
            window(&["Mon"], "01:00", 1, "Europe/Berlin")
                .check()
                .is_ok()
        );
    }
}
