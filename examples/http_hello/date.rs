//! The `Date` field, formatted once per second for every connection.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// Length of `Date: Sun, 06 Nov 1994 08:49:37 GMT\r\n`: the date itself is
/// always 29 bytes (IMF-fixdate), so every response has a fixed length.
pub const DATE_LINE_LEN: usize = 37;

/// The loop-wide state: the current `Date` line, shared by every connection
/// and reformatted only when the second changes.
pub struct DateCache {
    line: [u8; DATE_LINE_LEN],
    /// Loop time at which `line` goes stale (the next whole second of wall
    /// time); `None` before the first request.
    stale_at: Option<Instant>,
}

impl DateCache {
    pub fn new() -> DateCache {
        DateCache { line: [0; DATE_LINE_LEN], stale_at: None }
    }

    /// Whether the line must be reformatted at loop time `now`.
    pub fn is_stale(&self, now: Instant) -> bool {
        self.stale_at.is_none_or(|at| now >= at)
    }

    /// Reformats the line for wall time `wall`, read at loop time `now`.
    pub fn refresh(&mut self, now: Instant, wall: SystemTime) {
        let since_epoch = wall.duration_since(UNIX_EPOCH).unwrap_or_default();
        self.line = date_line(since_epoch.as_secs());
        let to_next_second = Duration::from_secs(1) - Duration::from_nanos(since_epoch.subsec_nanos().into());
        self.stale_at = Some(now + to_next_second);
    }

    /// The current line. Returned by value (37 bytes): `ctx.write` cannot
    /// take bytes borrowed from `ctx.shared()`, since both borrow the
    /// context.
    pub fn line(&self) -> [u8; DATE_LINE_LEN] {
        self.line
    }
}

/// `Date: <IMF-fixdate>\r\n` for `secs` since the Unix epoch.
pub fn date_line(secs: u64) -> [u8; DATE_LINE_LEN] {
    const DAYS: [&str; 7] = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"]; // 1970-01-01 was a Thursday
    const MONTHS: [&str; 12] = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"];
    let (days, rem) = (secs / 86_400, secs % 86_400);
    let (year, month, day) = civil_from_days(days);
    let text = format!(
        "Date: {}, {day:02} {} {year:04} {:02}:{:02}:{:02} GMT\r\n",
        DAYS[(days % 7) as usize],
        MONTHS[month as usize - 1],
        rem / 3600,
        rem / 60 % 60,
        rem % 60
    );
    let mut line = [0; DATE_LINE_LEN];
    line.copy_from_slice(&text.as_bytes()[..DATE_LINE_LEN]);
    line
}

/// Year, month (1 to 12) and day of `days` since 1970-01-01, by Howard
/// Hinnant's `civil_from_days` (proleptic Gregorian, eras of 400 years).
fn civil_from_days(days: u64) -> (u64, u64, u64) {
    let z = days + 719_468;
    let era = z / 146_097;
    let day_of_era = z - era * 146_097;
    let year_of_era = (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let shifted_month = (5 * day_of_year + 2) / 153; // March is 0
    let day = day_of_year - (153 * shifted_month + 2) / 5 + 1;
    let month = if shifted_month < 10 { shifted_month + 3 } else { shifted_month - 9 };
    let year = year_of_era + era * 400 + u64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_are_imf_fixdate() {
        for (secs, expected) in [
            (0, "Thu, 01 Jan 1970 00:00:00 GMT"),
            (784_111_777, "Sun, 06 Nov 1994 08:49:37 GMT"), // RFC 9110's example
            (951_782_400, "Tue, 29 Feb 2000 00:00:00 GMT"),
            (4_102_444_799, "Thu, 31 Dec 2099 23:59:59 GMT"),
            (4_107_542_400, "Mon, 01 Mar 2100 00:00:00 GMT"), // 2100 is no leap year
        ] {
            assert_eq!(date_line(secs), format!("Date: {expected}\r\n").as_bytes(), "{secs}");
        }
    }

    #[test]
    fn the_line_changes_when_the_second_does() {
        let start = Instant::now();
        let wall = UNIX_EPOCH + Duration::from_millis(784_111_777_400);
        let mut cache = DateCache::new();
        assert!(cache.is_stale(start));
        cache.refresh(start, wall);
        assert_eq!(&cache.line()[6..35], b"Sun, 06 Nov 1994 08:49:37 GMT");
        // 600 ms to the next second: not stale before, stale after.
        assert!(!cache.is_stale(start + Duration::from_millis(599)));
        assert!(cache.is_stale(start + Duration::from_millis(600)));
        cache.refresh(start + Duration::from_millis(600), wall + Duration::from_millis(600));
        assert_eq!(&cache.line()[6..35], b"Sun, 06 Nov 1994 08:49:38 GMT");
    }
}
