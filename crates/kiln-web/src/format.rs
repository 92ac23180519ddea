//! How pages write times, sizes and durations.

use time::OffsetDateTime;
use time::macros::format_description;

/// `2026-11-22 21:15 UTC`.
pub fn when(at: OffsetDateTime) -> String {
    at.to_offset(time::UtcOffset::UTC)
        .format(format_description!(
            "[year]-[month]-[day] [hour]:[minute] UTC"
        ))
        .unwrap_or_else(|_| at.to_string())
}

/// The machine-readable form for `<time datetime>`.
pub fn iso(at: OffsetDateTime) -> String {
    at.format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}

/// `3 min ago`, `in 2 h`, `just now`.
pub fn relative(at: OffsetDateTime, now: OffsetDateTime) -> String {
    let secs = (now - at).whole_seconds();
    let span = span(secs.unsigned_abs());
    match secs {
        -59..=59 => "just now".to_owned(),
        s if s > 0 => format!("{span} ago"),
        _ => format!("in {span}"),
    }
}

/// A duration in its largest whole unit: `45 s`, `12 min`, `3 h`, `6 d`.
pub fn span(secs: u64) -> String {
    match secs {
        0..=59 => format!("{secs} s"),
        60..=3599 => format!("{} min", secs / 60),
        3600..=86_399 => format!("{} h", secs / 3600),
        _ => format!("{} d", secs / 86_400),
    }
}

/// `812 B`, `14.2 KB`, `3.1 MB`.
pub fn bytes(n: u64) -> String {
    match n {
        0..=999 => format!("{n} B"),
        1_000..=999_999 => format!("{:.1} KB", n as f64 / 1e3),
        1_000_000..=999_999_999 => format!("{:.1} MB", n as f64 / 1e6),
        _ => format!("{:.1} GB", n as f64 / 1e9),
    }
}

/// `1,234 ms` or `2.5 s`.
pub fn millis(ms: u64) -> String {
    if ms < 10_000 {
        format!("{ms} ms")
    } else {
        format!("{:.1} s", ms as f64 / 1000.0)
    }
}

/// `87 %`, or `—` when there was nothing to divide.
pub fn percent(ratio: Option<f64>) -> String {
    ratio.map_or_else(|| "—".to_owned(), |r| format!("{:.0} %", r * 100.0))
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    #[test]
    fn times_read_naturally() {
        let now = datetime!(2026-11-22 21:15:00 UTC);
        assert_eq!(when(now), "2026-11-22 21:15 UTC");
        assert_eq!(relative(now - time::Duration::seconds(30), now), "just now");
        assert_eq!(relative(now - time::Duration::minutes(3), now), "3 min ago");
        assert_eq!(relative(now + time::Duration::hours(2), now), "in 2 h");
        assert_eq!(relative(now - time::Duration::days(6), now), "6 d ago");
    }

    #[test]
    fn sizes_and_ratios_read_naturally() {
        assert_eq!(bytes(812), "812 B");
        assert_eq!(bytes(14_200), "14.2 KB");
        assert_eq!(bytes(3_100_000), "3.1 MB");
        assert_eq!(millis(1234), "1234 ms");
        assert_eq!(millis(25_000), "25.0 s");
        assert_eq!(percent(Some(0.874)), "87 %");
        assert_eq!(percent(None), "—");
    }
}
