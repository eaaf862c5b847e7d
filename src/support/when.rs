//! Time on the command line and in the config: durations such as `24h` or `1d12h` (soak times,
//! `--since 7d`, token lifetimes), points in time given as RFC 3339, a plain date or a duration
//! ago, RFC 3339 rendering in UTC, and "3 days ago" for people.

use chrono::{DateTime, NaiveDate, NaiveDateTime, TimeZone, Utc};

use crate::error::{Error, Result};

/// Parses a duration made of number-unit parts: `90s`, `30m`, `24h`, `7d`, `2w`, `1d12h`.
/// Returns seconds.
pub fn parse_duration(text: &str) -> Option<i64> {
    let text = text.trim();
    if text.is_empty() {
        return None;
    }
    let mut total: i64 = 0;
    let mut number = String::new();
    for c in text.chars() {
        if c.is_ascii_digit() {
            number.push(c);
            continue;
        }
        let unit = match c {
            's' => 1,
            'm' => 60,
            'h' => 3_600,
            'd' => 86_400,
            'w' => 604_800,
            _ => return None,
        };
        let n: i64 = number.parse().ok()?;
        total = total.checked_add(n.checked_mul(unit)?)?;
        number.clear();
    }
    number.is_empty().then_some(total)
}

/// Renders seconds as the shortest duration text, e.g. `1d12h`.
pub fn format_duration(mut secs: i64) -> String {
    if secs == 0 {
        return "0s".into();
    }
    let mut out = String::new();
    if secs < 0 {
        out.push('-');
        secs = -secs;
    }
    for (unit, size) in [("d", 86_400), ("h", 3_600), ("m", 60), ("s", 1)] {
        if secs >= size {
            out.push_str(&format!("{}{unit}", secs / size));
            secs %= size;
        }
    }
    out
}

/// A duration for people: its largest unit and the next one when that is not zero (`5d23h`,
/// `3h12m`, `23h`, `45s`); what is smaller is dropped, not rounded.
pub fn format_duration_short(secs: i64) -> String {
    const UNITS: [(&str, u64); 4] = [("d", 86_400), ("h", 3_600), ("m", 60), ("s", 1)];
    let sign = if secs < 0 { "-" } else { "" };
    let secs = secs.unsigned_abs();
    let Some(i) = UNITS.iter().position(|&(_, size)| secs >= size) else {
        return "0s".into();
    };
    let (unit, size) = UNITS[i];
    let mut out = format!("{sign}{}{unit}", secs / size);
    if let Some(&(next, next_size)) = UNITS.get(i + 1) {
        let rest = secs % size / next_size;
        if rest > 0 {
            out.push_str(&format!("{rest}{next}"));
        }
    }
    out
}

/// Parses a point in time: RFC 3339 (`2026-03-03T12:00:00Z`), a date and time without zone
/// (`2026-03-03 12:00`, read as UTC), a plain date (`2026-03-03`, its start in UTC), or a
/// duration before `now` (`7d`, `12h`).
pub fn parse_time(text: &str, now: DateTime<Utc>) -> Result<DateTime<Utc>> {
    parse_time_arg(text, now).map(|a| a.time)
}

/// A time argument as written: an absolute time, or a duration before now. A relative one
/// moves with the clock: an answer to it is not the same twice, and a link to it is no
/// permalink.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TimeArg {
    pub time: DateTime<Utc>,
    /// Written as a duration ago (`7d`, `12h ago`).
    pub relative: bool,
}

/// Parses a time argument (see [`parse_time`]) and says whether it was relative.
pub fn parse_time_arg(text: &str, now: DateTime<Utc>) -> Result<TimeArg> {
    let absolute = |time| {
        Ok(TimeArg {
            time,
            relative: false,
        })
    };
    let t = text.trim();
    if let Ok(dt) = DateTime::parse_from_rfc3339(t) {
        return absolute(dt.with_timezone(&Utc));
    }
    for fmt in [
        "%Y-%m-%dT%H:%M:%S",
        "%Y-%m-%d %H:%M:%S",
        "%Y-%m-%dT%H:%M",
        "%Y-%m-%d %H:%M",
    ] {
        if let Ok(naive) = NaiveDateTime::parse_from_str(t, fmt) {
            return absolute(Utc.from_utc_datetime(&naive));
        }
    }
    if let Ok(date) = NaiveDate::parse_from_str(t, "%Y-%m-%d")
        && let Some(start) = date.and_hms_opt(0, 0, 0)
    {
        return absolute(Utc.from_utc_datetime(&start));
    }
    let ago = t.strip_suffix(" ago").unwrap_or(t);
    if let Some(secs) = parse_duration(ago)
        && let Some(delta) = chrono::TimeDelta::try_seconds(secs)
        && let Some(then) = now.checked_sub_signed(delta)
    {
        return Ok(TimeArg {
            time: then,
            relative: true,
        });
    }
    Err(Error::invalid(
        format!("`{text}` is not a time"),
        "use RFC 3339 (2026-03-03T12:00:00Z), a date (2026-03-03), or a duration ago (7d, 12h)",
    ))
}

/// RFC 3339 in UTC with seconds and a `Z`, as in `2026-11-29T06:01:13Z`.
pub fn rfc3339(secs: i64) -> String {
    let mut out = Vec::with_capacity(20);
    TimeWriter::default().write(&mut out, secs);
    String::from_utf8(out).unwrap_or_default()
}

/// Writes RFC 3339 times, fast: the date is computed by hand (days to civil date, as in Howard
/// Hinnant's `civil_from_days`) and reused while consecutive times fall on the same day, because
/// histories print two times for every event and a general formatter is ten times slower.
#[derive(Default)]
pub struct TimeWriter {
    /// The day (since the epoch) whose date `date` holds, if any.
    day: Option<i64>,
    date: [u8; 11],
}

impl TimeWriter {
    /// Appends the RFC 3339 form of `secs` to `out`.
    pub fn write(&mut self, out: &mut Vec<u8>, secs: i64) {
        let days = secs.div_euclid(86_400);
        let rem = secs.rem_euclid(86_400);
        if self.day != Some(days) {
            let Some(date) = civil_date(days) else {
                let text = DateTime::from_timestamp(secs, 0).map_or_else(
                    || secs.to_string(),
                    |dt| dt.format("%Y-%m-%dT%H:%M:%SZ").to_string(),
                );
                out.extend_from_slice(text.as_bytes());
                return;
            };
            self.date = date;
            self.day = Some(days);
        }
        out.extend_from_slice(&self.date);
        let d = |n: i64| b'0' + (n % 10) as u8;
        let (h, m, s) = (rem / 3_600, rem % 3_600 / 60, rem % 60);
        out.extend_from_slice(&[
            d(h / 10),
            d(h),
            b':',
            d(m / 10),
            d(m),
            b':',
            d(s / 10),
            d(s),
            b'Z',
        ]);
    }
}

/// `YYYY-MM-DDT` of a day since the epoch, for years 0 to 9999.
fn civil_date(days: i64) -> Option<[u8; 11]> {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    if !(0..=9999).contains(&year) {
        return None;
    }
    let d = |n: i64| b'0' + (n % 10) as u8;
    Some([
        d(year / 1000),
        d(year / 100),
        d(year / 10),
        d(year),
        b'-',
        d(month / 10),
        d(month),
        b'-',
        d(day / 10),
        d(day),
        b'T',
    ])
}

/// "3 days ago", "in 2 hours", "just now".
pub fn relative(secs: i64, now: i64) -> String {
    let delta = now - secs;
    let abs = delta.unsigned_abs();
    let (n, unit) = match abs {
        0..=59 => return "just now".into(),
        60..=3_599 => (abs / 60, "minute"),
        3_600..=86_399 => (abs / 3_600, "hour"),
        86_400..=2_591_999 => (abs / 86_400, "day"),
        2_592_000..=31_535_999 => (abs / 2_592_000, "month"),
        _ => (abs / 31_536_000, "year"),
    };
    let plural = if n == 1 { "" } else { "s" };
    if delta >= 0 {
        format!("{n} {unit}{plural} ago")
    } else {
        format!("in {n} {unit}{plural}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn time_arguments_say_whether_they_move_with_the_clock() {
        let now = Utc.timestamp_opt(1_800_000_000, 0).unwrap();
        for (text, relative) in [
            ("7d", true),
            ("12h ago", true),
            ("2026-03-03", false),
            ("2026-03-03T12:00:00Z", false),
            ("2026-03-03 12:00", false),
        ] {
            let arg = parse_time_arg(text, now).unwrap();
            assert_eq!(arg.relative, relative, "{text}");
            assert_eq!(parse_time(text, now).unwrap(), arg.time);
        }
        assert_eq!(
            parse_time_arg("7d", now).unwrap().time.timestamp(),
            1_800_000_000 - 7 * 86_400
        );
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("24h"), Some(86_400));
        assert_eq!(parse_duration("1d12h"), Some(129_600));
        assert_eq!(parse_duration("90s"), Some(90));
        assert_eq!(parse_duration("2w"), Some(1_209_600));
        for bad in ["", "h", "24", "1x", "1.5h", "-1h", "99999999999999999999d"] {
            assert_eq!(parse_duration(bad), None, "{bad}");
        }
        assert_eq!(format_duration(129_600), "1d12h");
        assert_eq!(format_duration(59), "59s");
        assert_eq!(format_duration_short(517_853), "5d23h");
        assert_eq!(format_duration_short(59), "59s");
        // 23h0m2s: the seconds are below the two units shown, not the second unit.
        assert_eq!(format_duration_short(82_802), "23h");
        assert_eq!(format_duration_short(86_400 + 59), "1d");
        assert_eq!(format_duration_short(3 * 3_600 + 12 * 60 + 5), "3h12m");
        assert_eq!(format_duration_short(-90), "-1m30s");
        assert_eq!(format_duration_short(0), "0s");
    }

    /// Found by fuzzing the server's `?at=`: a duration too large for chrono panicked.
    #[test]
    fn durations_ago_beyond_the_calendar_are_errors() {
        let now = Utc::now();
        for text in [
            "9300000000000000s",
            "9223372036854775807s",
            "1000000000000w",
            "15250w ago",
        ] {
            let _ = parse_time(text, now);
        }
        assert!(parse_time("9300000000000000s", now).is_err());
        assert!(parse_time("1000000000000w", now).is_err());
        assert!(parse_time("7d", now).is_ok());
    }

    #[test]
    fn times() {
        let now = Utc.with_ymd_and_hms(2026, 3, 10, 0, 0, 0).unwrap();
        let at = |s| parse_time(s, now).unwrap().timestamp();
        let noon = Utc
            .with_ymd_and_hms(2026, 3, 3, 12, 0, 0)
            .unwrap()
            .timestamp();
        assert_eq!(at("2026-03-03T12:00:00Z"), noon);
        assert_eq!(at("2026-03-03T13:00:00+01:00"), noon);
        assert_eq!(at("2026-03-03 12:00"), noon);
        assert_eq!(at("2026-03-03"), noon - 12 * 3600);
        assert_eq!(at("7d"), now.timestamp() - 7 * 86_400);
        assert_eq!(at("7d ago"), now.timestamp() - 7 * 86_400);
        assert!(parse_time("last tuesday", now).is_err());
        assert_eq!(rfc3339(noon), "2026-03-03T12:00:00Z");
        // The hand-rolled formatter agrees with chrono across eras, leap days and the epoch.
        for t in [
            0,
            -1,
            951_782_400,
            4_107_542_399,
            1_709_208_000,
            -62_135_596_800,
            253_402_300_799,
        ] {
            let chrono = DateTime::from_timestamp(t, 0)
                .unwrap()
                .format("%Y-%m-%dT%H:%M:%SZ")
                .to_string();
            assert_eq!(rfc3339(t), chrono, "{t}");
        }
        for t in (-2_000_000_000..4_000_000_000i64).step_by(9_999_991) {
            let chrono = DateTime::from_timestamp(t, 0)
                .unwrap()
                .format("%Y-%m-%dT%H:%M:%SZ")
                .to_string();
            assert_eq!(rfc3339(t), chrono, "{t}");
        }
    }

    #[test]
    fn relative_times() {
        assert_eq!(relative(0, 30), "just now");
        assert_eq!(relative(0, 3 * 86_400 + 5), "3 days ago");
        assert_eq!(relative(0, 3_600), "1 hour ago");
        assert_eq!(relative(7_200, 0), "in 2 hours");
    }
}
