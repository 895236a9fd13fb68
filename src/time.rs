//! Wall-clock time as text: ISO 8601 in UTC with milliseconds
//! (`2026-11-22T09:15:02.123Z`), the form log lines and chat messages carry.
//!
//! Written here rather than taken from a date crate: only this one format is needed.

use std::time::{SystemTime, UNIX_EPOCH};

/// `time` as `YYYY-MM-DDTHH:MM:SS.mmmZ`, in UTC. Times before 1970 print as the epoch.
pub fn iso8601(time: SystemTime) -> String {
    let since = time.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = since.as_secs();
    let (year, month, day) = civil_from_days((secs / 86_400) as i64);
    let rem = secs % 86_400;
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z",
        rem / 3600,
        rem / 60 % 60,
        rem % 60,
        since.subsec_millis()
    )
}

/// The current time, see [`iso8601`].
pub fn now_iso8601() -> String {
    iso8601(SystemTime::now())
}

/// Days since 1970-01-01 to (year, month, day) in the proleptic Gregorian calendar.
/// The algorithm counts in 400-year eras of 146 097 days, with years starting in
/// March so that the leap day falls at the end (Howard Hinnant, "chrono-Compatible
/// Low-Level Date Algorithms").
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097); // day of era, 0..=146096
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365; // 0..=399
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100); // day of year from March 1
    let mp = (5 * doy + 2) / 153; // month from March, 0..=11
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn at(secs: u64, millis: u64) -> String {
        iso8601(UNIX_EPOCH + Duration::from_secs(secs) + Duration::from_millis(millis))
    }

    #[test]
    fn known_instants() {
        assert_eq!(at(0, 0), "1970-01-01T00:00:00.000Z");
        // `date -u -d @951782400`: the leap day of a year divisible by 400.
        assert_eq!(at(951_782_400, 5), "2000-02-29T00:00:00.005Z");
        assert_eq!(at(1_700_000_000, 999), "2023-11-14T22:13:20.999Z");
        // The last second of a year, and 2100, which is not a leap year.
        assert_eq!(at(1_767_225_599, 0), "2025-12-31T23:59:59.000Z");
        assert_eq!(at(4_107_542_400, 0), "2100-03-01T00:00:00.000Z");
    }

    #[test]
    fn every_day_follows_the_one_before() {
        // Walks 1970..2400 day by day: the date advances by exactly one day each time.
        let mut prev = civil_from_days(0);
        for d in 1..(430 * 366) {
            let next = civil_from_days(d);
            let (py, pm, pd) = prev;
            let ok = next == (py, pm, pd + 1)
                || (next.2 == 1 && next.1 == pm + 1 && next.0 == py)
                || (next == (py + 1, 1, 1) && pm == 12 && pd == 31);
            assert!(ok, "{prev:?} -> {next:?}");
            prev = next;
        }
    }
}
