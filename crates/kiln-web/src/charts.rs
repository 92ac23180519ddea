//! The dashboard's charts as inline SVG: no script, no external assets, scaled to the width of
//! their container (a phone's included).
//!
//! Every function returns a complete `<svg>` element meant to be inserted into HTML as it is: text
//! that goes in (titles, labels, series names) is escaped here. Colours come from `fill`/`stroke`
//! attributes that a stylesheet can override through the classes `chart`, `series-a`, `series-b`,
//! `series-c`, `grid`, `axis`, `legend` and `no-data`. Each chart is an image to assistive
//! technology (`role="img"`), labelled with its title and a summary of its values.

use kiln_control::stats::Bucket;
use std::fmt::Write;
use time::OffsetDateTime;

/// The coordinate system (`viewBox`); the chart scales to whatever width it is given.
const WIDTH: f64 = 480.0;
const HEIGHT: f64 = 200.0;
/// The plot area: room on the left for the y-axis labels, on top for the legend, below for the
/// x-axis labels, and on the right for the last label's overhang.
const LEFT: f64 = 48.0;
const RIGHT: f64 = WIDTH - 16.0;
const TOP: f64 = 24.0;
const BOTTOM: f64 = HEIGHT - 22.0;

/// The classes and default colours of the series, in order.
const SERIES: [(&str, &str); 3] = [
    ("series-a", "#2b6cb0"),
    ("series-b", "#d9534f"),
    ("series-c", "#2f9e6e"),
];
const GRID_COLOUR: &str = "#d0d5dd";

/// What a chart shows along its x axis.
#[derive(Clone, Copy, Debug)]
pub struct Frame<'a> {
    /// What the chart shows, e.g. "Renders per hour, last 24 hours": its `<title>` and the start of
    /// its accessible label.
    pub title: &'a str,
    /// One label per bucket, oldest first ("14:00", "Nov 3"); values are matched to them by position.
    pub labels: &'a [String],
    /// Only every n-th label is written under the axis, counting back from the newest bucket, which
    /// is always labelled (every label is still in the buckets' tooltips).
    pub label_every: usize,
}

/// One series of values, one per bucket, oldest first; `None` where there is nothing to show.
#[derive(Clone, Copy, Debug)]
pub struct Series<'a> {
    /// Its name in the legend and tooltips, e.g. "stored" or "p95".
    pub name: &'a str,
    pub values: &'a [Option<f64>],
}

/// What the values measure, which decides the y axis and how values are written.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Unit {
    /// Counts: "12", "1.5k".
    Count,
    /// Percentages from 0 to 100: the y axis always spans 0 to 100 %.
    Percent,
    /// Durations in milliseconds: "850 ms", "1.2 s".
    Milliseconds,
}

impl Unit {
    fn format(self, value: f64) -> String {
        match self {
            Unit::Count if value >= 1_000_000.0 => format!("{}M", one_decimal(value / 1e6)),
            Unit::Count if value >= 1_000.0 => format!("{}k", one_decimal(value / 1e3)),
            Unit::Count => format!("{}", value.round()),
            Unit::Percent => format!("{}%", one_decimal(value)),
            Unit::Milliseconds if value >= 1_000.0 => format!("{} s", one_decimal(value / 1e3)),
            Unit::Milliseconds => format!("{} ms", value.round()),
        }
    }
}

/// `value` with at most one decimal, and none when it would be `.0`.
fn one_decimal(value: f64) -> String {
    let rounded = (value * 10.0).round() / 10.0;
    if rounded.fract() == 0.0 {
        format!("{rounded:.0}")
    } else {
        format!("{rounded:.1}")
    }
}

/// A bar chart of two series stacked, `lower` at the bottom (e.g. stored and failed renders). A
/// bucket whose values are both zero or `None` has no bar.
pub fn stacked_bar_chart(frame: &Frame<'_>, lower: &Series<'_>, upper: &Series<'_>) -> String {
    let n = frame.labels.len();
    let value = |series: &Series<'_>, i: usize| series.values.get(i).copied().flatten();
    let totals: Vec<f64> = (0..n)
        .map(|i| value(lower, i).unwrap_or(0.0).max(0.0) + value(upper, i).unwrap_or(0.0).max(0.0))
        .collect();
    let highest = totals.iter().copied().fold(0.0, f64::max);
    let has_data = highest > 0.0;
    let summary = if has_data {
        [lower, upper]
            .iter()
            .map(|series| sum_summary(series, frame.labels))
            .collect::<Vec<_>>()
            .join(" ")
    } else {
        String::new()
    };
    let max = nice_ceiling(highest);
    let mut svg = open(frame, &summary);
    if has_data {
        y_axis(&mut svg, &Unit::Count.format(max));
        legend(&mut svg, &[lower, upper]);
        let slot = slot_width(n);
        for i in 0..n {
            let parts = [lower, upper].map(|series| value(series, i).unwrap_or(0.0).max(0.0));
            if parts.iter().all(|&part| part == 0.0) {
                continue;
            }
            let label = text(&frame.labels[i]);
            let _ = write!(
                svg,
                "<g><title>{label}: {} {}, {} {}</title>",
                Unit::Count.format(parts[0]),
                text(lower.name),
                Unit::Count.format(parts[1]),
                text(upper.name),
            );
            let x = LEFT + slot * i as f64 + slot * 0.15;
            let mut base = BOTTOM;
            for (k, part) in parts.into_iter().enumerate() {
                if part == 0.0 {
                    continue;
                }
                let height = scale(part, max);
                base -= height;
                let (class, colour) = SERIES[k];
                let _ = write!(
                    svg,
                    r#"<rect class="{class}" fill="{colour}" x="{x:.1}" y="{base:.1}" width="{:.1}" height="{height:.1}"/>"#,
                    slot * 0.7,
                );
            }
            svg.push_str("</g>");
        }
    }
    close(svg, frame, has_data)
}

/// A line chart of one or more series; `None` values are gaps in the line. With [`Unit::Percent`]
/// the y axis spans 0 to 100 %; otherwise it reaches a round number above the highest value.
pub fn line_chart(frame: &Frame<'_>, series: &[Series<'_>], unit: Unit) -> String {
    let n = frame.labels.len();
    let value = |series: &Series<'_>, i: usize| {
        series
            .values
            .get(i)
            .copied()
            .flatten()
            .filter(|v| v.is_finite())
            .map(|v| v.max(0.0))
    };
    let highest = series
        .iter()
        .flat_map(|s| (0..n).filter_map(move |i| value(s, i)))
        .fold(None, |max: Option<f64>, v| {
            Some(max.map_or(v, |m| m.max(v)))
        });
    let has_data = highest.is_some();
    let max = match unit {
        Unit::Percent => 100.0,
        _ => nice_ceiling(highest.unwrap_or(0.0)),
    };
    let summary = if has_data {
        series
            .iter()
            .map(|s| line_summary(s, frame.labels, unit))
            .collect::<Vec<_>>()
            .join(" ")
    } else {
        String::new()
    };
    let mut svg = open(frame, &summary);
    if has_data {
        y_axis(&mut svg, &unit.format(max));
        if series.len() > 1 {
            legend(&mut svg, &series.iter().collect::<Vec<_>>());
        }
        let slot = slot_width(n);
        let x = |i: usize| LEFT + slot * (i as f64 + 0.5);
        let y = |v: f64| BOTTOM - scale(v.min(max), max);
        for (k, s) in series.iter().enumerate() {
            let (class, colour) = SERIES[k % SERIES.len()];
            let _ = write!(
                svg,
                r#"<g class="{class}" fill="{colour}" stroke="{colour}">"#
            );
            // One polyline per run of values without a gap.
            let mut run: Vec<String> = Vec::new();
            for i in 0..=n {
                match (i < n).then(|| value(s, i)).flatten() {
                    Some(v) => run.push(format!("{:.1},{:.1}", x(i), y(v))),
                    None => {
                        if run.len() > 1 {
                            let _ = write!(
                                svg,
                                r#"<polyline fill="none" stroke-width="2" stroke-linejoin="round" stroke-linecap="round" points="{}"/>"#,
                                run.join(" ")
                            );
                        }
                        run.clear();
                    }
                }
            }
            // A dot on every value, so that a value between two gaps shows, with its tooltip.
            for i in 0..n {
                if let Some(v) = value(s, i) {
                    let _ = write!(
                        svg,
                        r#"<circle cx="{:.1}" cy="{:.1}" r="2.5" stroke="none"><title>{}: {} {}</title></circle>"#,
                        x(i),
                        y(v),
                        text(&frame.labels[i]),
                        text(s.name),
                        unit.format(v),
                    );
                }
            }
            svg.push_str("</g>");
        }
    }
    close(svg, frame, has_data)
}

/// Whether a chart covers the last hours or the last days, for the charts of [`Bucket`]s.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Period {
    /// Hourly buckets, labelled "14:00", every 6th hour on the axis.
    Hours,
    /// Daily buckets, labelled "Nov 3", every 5th day on the axis.
    Days,
}

impl Period {
    fn frame<'a>(self, title: &'a str, labels: &'a [String]) -> Frame<'a> {
        Frame {
            title,
            labels,
            label_every: match self {
                Period::Hours => 6,
                Period::Days => 5,
            },
        }
    }

    fn labels(self, buckets: &[Bucket]) -> Vec<String> {
        buckets
            .iter()
            .map(|bucket| match self {
                Period::Hours => hour_label(bucket.start),
                Period::Days => day_label(bucket.start),
            })
            .collect()
    }

    fn title(self, what: &str, count: usize) -> String {
        match self {
            Period::Hours => format!("{what} per hour, last {count} hours"),
            Period::Days => format!("{what} per day, last {count} days"),
        }
    }
}

/// Stored and failed renders per bucket, stacked.
pub fn renders_chart(buckets: &[Bucket], period: Period) -> String {
    let labels = period.labels(buckets);
    let title = period.title("Renders", buckets.len());
    let stored: Vec<_> = buckets.iter().map(|b| Some(b.renders as f64)).collect();
    let failed: Vec<_> = buckets
        .iter()
        .map(|b| Some(b.failed_renders as f64))
        .collect();
    stacked_bar_chart(
        &period.frame(&title, &labels),
        &Series {
            name: "stored",
            values: &stored,
        },
        &Series {
            name: "failed",
            values: &failed,
        },
    )
}

/// The cache hit ratio per bucket, in percent; buckets without bot traffic are gaps.
pub fn hit_ratio_chart(buckets: &[Bucket], period: Period) -> String {
    let labels = period.labels(buckets);
    let title = period.title("Cache hit ratio", buckets.len());
    let ratios: Vec<_> = buckets
        .iter()
        .map(|b| b.hit_ratio().map(|r| r * 100.0))
        .collect();
    line_chart(
        &period.frame(&title, &labels),
        &[Series {
            name: "hit ratio",
            values: &ratios,
        }],
        Unit::Percent,
    )
}

/// The median and 95th percentile render time per bucket; buckets without renders are gaps.
pub fn render_time_chart(buckets: &[Bucket], period: Period) -> String {
    let labels = period.labels(buckets);
    let title = period.title("Render time", buckets.len());
    let p50: Vec<_> = buckets.iter().map(|b| b.p50_ms).collect();
    let p95: Vec<_> = buckets.iter().map(|b| b.p95_ms).collect();
    line_chart(
        &period.frame(&title, &labels),
        &[
            Series {
                name: "p50",
                values: &p50,
            },
            Series {
                name: "p95",
                values: &p95,
            },
        ],
        Unit::Milliseconds,
    )
}

/// The hour `start` begins, in UTC: "14:00".
pub fn hour_label(start: OffsetDateTime) -> String {
    let start = start.to_offset(time::UtcOffset::UTC);
    format!("{:02}:00", start.hour())
}

/// The UTC day of `start`: "Nov 3".
pub fn day_label(start: OffsetDateTime) -> String {
    let date = start.to_offset(time::UtcOffset::UTC).date();
    let month = date.month().to_string();
    format!("{} {}", &month[..3], date.day())
}

/// The opening of the `<svg>` element, its title and description, and the baseline.
fn open(frame: &Frame<'_>, summary: &str) -> String {
    let summary = if summary.is_empty() {
        "No data."
    } else {
        summary
    };
    let label = attribute(&format!("{}. {summary}", frame.title));
    let (title, summary) = (text(frame.title), text(summary));
    let mut svg = format!(
        r#"<svg xmlns="http://www.w3.org/2000/svg" class="chart" viewBox="0 0 {WIDTH} {HEIGHT}" width="100%" role="img" aria-label="{label}" font-family="system-ui, sans-serif" font-size="12"><title>{title}</title><desc>{summary}</desc>"#
    );
    let _ = write!(
        svg,
        r#"<line class="grid" stroke="{GRID_COLOUR}" x1="{LEFT}" y1="{BOTTOM}" x2="{RIGHT}" y2="{BOTTOM}"/>"#
    );
    svg
}

/// The x-axis labels, the "no data" notice when there is nothing to show, and the closing tag.
fn close(mut svg: String, frame: &Frame<'_>, has_data: bool) -> String {
    let n = frame.labels.len();
    let slot = slot_width(n);
    let every = frame.label_every.max(1);
    svg.push_str(r#"<g class="axis" fill="currentColor" text-anchor="middle">"#);
    for (i, label) in frame.labels.iter().enumerate() {
        if (n - 1 - i).is_multiple_of(every) {
            let _ = write!(
                svg,
                r#"<text x="{:.1}" y="{:.1}">{}</text>"#,
                LEFT + slot * (i as f64 + 0.5),
                HEIGHT - 6.0,
                text(label)
            );
        }
    }
    svg.push_str("</g>");
    if !has_data {
        let _ = write!(
            svg,
            r#"<text class="no-data" fill="currentColor" x="{:.1}" y="{:.1}" text-anchor="middle">No data</text>"#,
            (LEFT + RIGHT) / 2.0,
            (TOP + BOTTOM) / 2.0,
        );
    }
    svg.push_str("</svg>");
    svg
}

/// The y axis: a dashed line at the top of the scale and at its middle, and the top's value.
fn y_axis(svg: &mut String, max_label: &str) {
    for y in [TOP, (TOP + BOTTOM) / 2.0] {
        let _ = write!(
            svg,
            r#"<line class="grid" stroke="{GRID_COLOUR}" stroke-dasharray="3 3" x1="{LEFT}" y1="{y}" x2="{RIGHT}" y2="{y}"/>"#
        );
    }
    let _ = write!(
        svg,
        r#"<g class="axis" fill="currentColor" text-anchor="end"><text x="{:.1}" y="{:.1}">{}</text><text x="{:.1}" y="{:.1}">0</text></g>"#,
        LEFT - 6.0,
        TOP + 4.0,
        text(max_label),
        LEFT - 6.0,
        BOTTOM + 4.0,
    );
}

/// A swatch and the name of each series, in a row above the plot.
fn legend(svg: &mut String, series: &[&Series<'_>]) {
    svg.push_str(r#"<g class="legend" fill="currentColor">"#);
    let mut x = LEFT;
    for (k, s) in series.iter().enumerate() {
        let (class, colour) = SERIES[k % SERIES.len()];
        let _ = write!(
            svg,
            r#"<rect class="{class}" fill="{colour}" x="{x:.1}" y="4" width="10" height="10"/><text x="{:.1}" y="13">{}</text>"#,
            x + 14.0,
            text(s.name),
        );
        // An estimate of the name's width: good enough to keep the entries apart.
        x += 14.0 + 7.0 * s.name.chars().count() as f64 + 14.0;
    }
    svg.push_str("</g>");
}

/// "stored: 120 in all, most 30 (14:00)."
fn sum_summary(series: &Series<'_>, labels: &[String]) -> String {
    let total: f64 = labelled(labels, series.values).map(|(_, v)| v).sum();
    match peak(labelled(labels, series.values)) {
        Some((label, most)) if total > 0.0 => format!(
            "{}: {} in all, most {} ({label}).",
            series.name,
            Unit::Count.format(total),
            Unit::Count.format(most)
        ),
        _ => format!("{}: none.", series.name),
    }
}

/// "p95: latest 1.2 s (14:00), highest 3 s (09:00)."
fn line_summary(series: &Series<'_>, labels: &[String], unit: Unit) -> String {
    let latest = labelled(labels, series.values).next_back();
    match (latest, peak(labelled(labels, series.values))) {
        (Some((latest_label, latest)), Some((highest_label, highest))) => format!(
            "{}: latest {} ({latest_label}), highest {} ({highest_label}).",
            series.name,
            unit.format(latest),
            unit.format(highest)
        ),
        _ => format!("{}: no data.", series.name),
    }
}

/// A series' finite values with their buckets' labels, oldest first: what its summary speaks of.
fn labelled<'a>(
    labels: &'a [String],
    values: &'a [Option<f64>],
) -> impl DoubleEndedIterator<Item = (&'a String, f64)> {
    labels
        .iter()
        .zip(values)
        .filter_map(|(label, v)| Some((label, v.filter(|v| v.is_finite())?)))
}

/// The highest of `values` with its label; the oldest of equal ones.
fn peak<'a>(values: impl Iterator<Item = (&'a String, f64)>) -> Option<(&'a String, f64)> {
    values.fold(None, |best, (label, v)| {
        if best.is_none_or(|(_, b)| v > b) {
            Some((label, v))
        } else {
            best
        }
    })
}

fn slot_width(buckets: usize) -> f64 {
    (RIGHT - LEFT) / buckets.max(1) as f64
}

/// The height in the plot of `value` on a scale from 0 to `max`.
fn scale(value: f64, max: f64) -> f64 {
    if max <= 0.0 {
        return 0.0;
    }
    (value / max).clamp(0.0, 1.0) * (BOTTOM - TOP)
}

/// The smallest of 1, 2, 2.5 and 5 times a power of ten that is at least `value` (and at least 1):
/// the top of a y axis that is easy to read.
fn nice_ceiling(value: f64) -> f64 {
    if !value.is_finite() || value <= 1.0 {
        return 1.0;
    }
    let power = 10f64.powf(value.log10().floor());
    [1.0, 2.0, 2.5, 5.0, 10.0]
        .into_iter()
        .map(|m| m * power)
        .find(|&top| top >= value)
        .unwrap_or(10.0 * power)
}

/// `content` made safe as the text of an element; characters XML cannot hold are dropped.
fn text(content: &str) -> String {
    html_escape::encode_text(&xml_chars(content)).into_owned()
}

/// `value` made safe as an attribute's value (every attribute here is written in double quotes);
/// characters XML cannot hold are dropped.
fn attribute(value: &str) -> String {
    html_escape::encode_double_quoted_attribute(&xml_chars(value)).into_owned()
}

/// `text` without the characters an XML document cannot hold, even escaped: control characters
/// other than tab, newline and carriage return, and U+FFFE and U+FFFF. An SVG must stay XML
/// wherever it goes; `html_escape` escapes markup and leaves these to its caller, so they are
/// dropped here.
fn xml_chars(text: &str) -> std::borrow::Cow<'_, str> {
    let unfit = |c: char| {
        (c.is_control() && !matches!(c, '\t' | '\n' | '\r')) || matches!(c, '\u{FFFE}' | '\u{FFFF}')
    };
    if text.contains(unfit) {
        text.chars()
            .filter(|&c| !unfit(c))
            .collect::<String>()
            .into()
    } else {
        text.into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::Duration;
    use time::macros::datetime;

    /// Checks that `svg` is one well-formed XML element: tags nest and close, attribute values are
    /// quoted, and `<` or `&` never appear unescaped in text or attributes.
    #[track_caller]
    fn assert_well_formed(svg: &str) {
        let entity_ok = |rest: &str| {
            ["&amp;", "&lt;", "&gt;", "&quot;"]
                .iter()
                .any(|e| rest.starts_with(e))
        };
        let mut open: Vec<&str> = Vec::new();
        let mut rest = svg;
        assert!(rest.starts_with("<svg "), "{svg}");
        while let Some(start) = rest.find(['<', '&']) {
            let (text, tail) = rest.split_at(start);
            assert!(!text.contains('>'), "a stray '>' in {text:?}");
            if let Some(after) = tail.strip_prefix('&') {
                assert!(entity_ok(tail), "an unescaped '&' at {tail:.40}");
                rest = after;
                continue;
            }
            assert!(
                !open.is_empty() || start == 0,
                "text outside the root: {text:?}"
            );
            let end = tail.find('>').expect("an unclosed tag");
            let tag = &tail[1..end];
            rest = &tail[end + 1..];
            if let Some(name) = tag.strip_prefix('/') {
                assert_eq!(open.pop(), Some(name), "mismatched </{name}>");
                if open.is_empty() {
                    assert!(rest.is_empty(), "content after the root: {rest:.40}");
                }
                continue;
            }
            let self_closing = tag.ends_with('/');
            let tag = tag.trim_end_matches('/');
            let (name, mut attributes) = tag.split_once(' ').unwrap_or((tag, ""));
            assert!(
                !name.is_empty() && name.chars().all(|c| c.is_ascii_alphanumeric()),
                "bad tag name {name:?}"
            );
            while !attributes.trim().is_empty() {
                let (key, value) = attributes
                    .trim_start()
                    .split_once("=\"")
                    .unwrap_or_else(|| panic!("an unquoted attribute in <{tag}>"));
                assert!(
                    key.chars().all(|c| c.is_ascii_alphanumeric() || c == '-'),
                    "bad attribute name {key:?}"
                );
                let close = value.find('"').expect("an unterminated attribute value");
                let value_text = &value[..close];
                assert!(
                    !value_text.contains('<'),
                    "'<' in an attribute: {value_text}"
                );
                for (i, _) in value_text.match_indices('&') {
                    assert!(
                        entity_ok(&value_text[i..]),
                        "an unescaped '&' in {value_text}"
                    );
                }
                attributes = &value[close + 1..];
            }
            if !self_closing {
                open.push(name);
            }
        }
        assert!(open.is_empty() && rest.is_empty(), "unclosed: {open:?}");
    }

    /// `value` as the charts write coordinates: to one decimal.
    fn r1(value: f64) -> f64 {
        (value * 10.0).round() / 10.0
    }

    fn labels(n: usize) -> Vec<String> {
        (0..n).map(|i| format!("{i:02}:00")).collect()
    }

    /// The numbers of an attribute on every element that has it, in order.
    fn attribute_values(svg: &str, element: &str, attribute: &str) -> Vec<f64> {
        svg.split(&format!("<{element} "))
            .skip(1)
            .filter_map(|tag| {
                let tag = &tag[..tag.find('>').unwrap()];
                let start = tag.find(&format!(" {attribute}=\""))? + attribute.len() + 3;
                tag[start..start + tag[start..].find('"').unwrap()]
                    .parse()
                    .ok()
            })
            .collect()
    }

    /// The text of every `<text>` element.
    fn texts(svg: &str) -> Vec<&str> {
        svg.split("<text ")
            .skip(1)
            .map(|t| &t[t.find('>').unwrap() + 1..t.find("</text>").unwrap()])
            .collect()
    }

    #[test]
    fn text_is_escaped_everywhere_it_goes() {
        // Quotes need no escape in text, and `'` none in an attribute value in double quotes.
        assert_eq!(text(r#"<b> & "x" 'y'"#), r#"&lt;b&gt; &amp; "x" 'y'"#);
        assert_eq!(
            attribute(r#"<b> & "x" 'y'"#),
            "&lt;b&gt; &amp; &quot;x&quot; 'y'"
        );
        assert_eq!(text("a\u{0}b\u{1b}c\nd\u{FFFF}é"), "abc\ndé");
        assert_eq!(attribute("a\u{0}b\u{1b}c\nd\u{FFFF}é"), "abc\ndé");
        let hostile = r#"</svg><script>alert("&")</script>"#;
        let labels = vec![hostile.to_owned(); 3];
        let frame = Frame {
            title: hostile,
            labels: &labels,
            label_every: 1,
        };
        let values = [Some(1.0), None, Some(2.0)];
        let series = Series {
            name: hostile,
            values: &values,
        };
        for svg in [
            stacked_bar_chart(&frame, &series, &series),
            line_chart(&frame, &[series, series], Unit::Milliseconds),
            line_chart(&frame, &[], Unit::Percent),
        ] {
            assert_well_formed(&svg);
            assert!(!svg.contains("<script"), "{svg}");
            // In the accessible label (an attribute), and in the title (text).
            assert!(
                svg.contains("&lt;/svg&gt;&lt;script&gt;alert(&quot;&amp;&quot;)"),
                "{svg}"
            );
            assert!(
                svg.contains(r#"<title>&lt;/svg&gt;&lt;script&gt;alert("&amp;")"#),
                "{svg}"
            );
        }
    }

    #[test]
    fn charts_without_data_say_so() {
        let labels = labels(24);
        let frame = Frame {
            title: "Renders per hour",
            labels: &labels,
            label_every: 6,
        };
        let zeros = vec![Some(0.0); 24];
        let nones = vec![None; 24];
        let zero = Series {
            name: "stored",
            values: &zeros,
        };
        let none = Series {
            name: "failed",
            values: &nones,
        };
        for svg in [
            stacked_bar_chart(&frame, &zero, &none),
            stacked_bar_chart(&frame, &none, &none),
            line_chart(&frame, &[none, none], Unit::Milliseconds),
            line_chart(&frame, &[none], Unit::Percent),
            line_chart(&frame, &[], Unit::Count),
            stacked_bar_chart(
                &Frame {
                    labels: &[],
                    ..frame
                },
                &none,
                &none,
            ),
        ] {
            assert_well_formed(&svg);
            assert!(svg.contains(">No data</text>"), "{svg}");
            assert!(
                svg.contains(r#"aria-label="Renders per hour. No data.""#),
                "{svg}"
            );
            assert!(svg.contains(r#"role="img""#) && svg.contains(r#"width="100%""#));
            assert!(svg.contains(r#"viewBox="0 0 480 200""#));
            assert!(
                !svg.contains("<rect") && !svg.contains("<polyline"),
                "{svg}"
            );
        }
        // A zero hit ratio is data, not the lack of it.
        let svg = line_chart(&frame, &[zero], Unit::Percent);
        assert!(!svg.contains("No data"), "{svg}");
        assert_eq!(attribute_values(&svg, "circle", "cy"), vec![BOTTOM; 24]);
    }

    #[test]
    fn bars_stack_and_scale_to_a_round_maximum() {
        let labels = labels(4);
        let frame = Frame {
            title: "Renders",
            labels: &labels,
            label_every: 1,
        };
        // Highest stack 80 → the axis goes to 100.
        let stored = [Some(40.0), Some(0.0), None, Some(70.0)];
        let failed = [Some(10.0), Some(0.0), Some(20.0), Some(10.0)];
        let svg = stacked_bar_chart(
            &frame,
            &Series {
                name: "stored",
                values: &stored,
            },
            &Series {
                name: "failed",
                values: &failed,
            },
        );
        assert_well_formed(&svg);
        let plot = BOTTOM - TOP;
        // Bars in order: 40 and 10 (bucket 0), nothing for bucket 1, 20 (bucket 2), 70 and 10.
        let heights = attribute_values(&svg, "rect", "height");
        // The legend's two swatches come first.
        assert_eq!(heights[..2], [10.0, 10.0]);
        let expected: Vec<f64> = [40.0, 10.0, 20.0, 70.0, 10.0]
            .iter()
            .map(|v| r1(v / 100.0 * plot))
            .collect();
        assert_eq!(heights[2..], expected[..]);
        let ys = attribute_values(&svg, "rect", "y");
        assert_eq!(
            ys[2],
            r1(BOTTOM - 0.4 * plot),
            "the lower part sits on the axis"
        );
        assert_eq!(
            ys[3],
            r1(BOTTOM - 0.5 * plot),
            "the upper part on the lower"
        );
        assert!(texts(&svg).contains(&"100"), "{:?}", texts(&svg));
        assert!(
            svg.contains("<title>03:00: 70 stored, 10 failed</title>"),
            "{svg}"
        );
        assert!(svg.contains(r##"class="series-a" fill="#2b6cb0""##));
        assert!(svg.contains(r##"class="series-b" fill="#d9534f""##));
        assert!(
            svg.contains(
                "stored: 110 in all, most 70 (03:00). failed: 40 in all, most 20 (02:00)."
            ),
            "{svg}"
        );
    }

    #[test]
    fn lines_scale_break_at_gaps_and_keep_percentages_on_a_fixed_axis() {
        let labels = labels(5);
        let frame = Frame {
            title: "Hit ratio",
            labels: &labels,
            label_every: 2,
        };
        let ratio = [Some(50.0), Some(100.0), None, Some(25.0), None];
        let svg = line_chart(
            &frame,
            &[Series {
                name: "hit ratio",
                values: &ratio,
            }],
            Unit::Percent,
        );
        assert_well_formed(&svg);
        let plot = BOTTOM - TOP;
        assert_eq!(
            attribute_values(&svg, "circle", "cy"),
            [r1(BOTTOM - 0.5 * plot), TOP, r1(BOTTOM - 0.25 * plot)]
        );
        assert_eq!(svg.matches("<polyline").count(), 1, "the lone 25% is a dot");
        assert!(texts(&svg).contains(&"100%"));
        assert!(
            !svg.contains("class=\"legend\""),
            "one series needs no legend"
        );
        // Every second label, counting back from the newest.
        assert_eq!(
            texts(&svg)
                .into_iter()
                .filter(|t| t.ends_with(":00"))
                .collect::<Vec<_>>(),
            ["00:00", "02:00", "04:00"]
        );

        let p50 = [Some(100.0), Some(300.0), Some(200.0)];
        let p95 = [Some(400.0), Some(1_200.0), None];
        let labels = labels[..3].to_vec();
        let svg = line_chart(
            &Frame {
                labels: &labels,
                ..frame
            },
            &[
                Series {
                    name: "p50",
                    values: &p50,
                },
                Series {
                    name: "p95",
                    values: &p95,
                },
            ],
            Unit::Milliseconds,
        );
        assert_well_formed(&svg);
        // Highest 1200 ms → the axis goes to 2 s.
        assert!(texts(&svg).contains(&"2 s"), "{:?}", texts(&svg));
        let cys = attribute_values(&svg, "circle", "cy");
        assert_eq!(cys[1], r1(BOTTOM - 0.15 * plot));
        assert_eq!(cys[4], r1(BOTTOM - 0.6 * plot));
        assert_eq!(svg.matches("<polyline").count(), 2);
        assert!(texts(&svg).contains(&"p50") && texts(&svg).contains(&"p95"));
        assert!(
            svg.contains("p95: latest 1.2 s (01:00), highest 1.2 s (01:00)."),
            "{svg}"
        );
    }

    #[test]
    fn summaries_skip_gaps_and_name_the_oldest_of_equal_peaks() {
        let labels = labels(4);
        let values = [Some(5.0), None, Some(5.0), Some(f64::NAN)];
        let series = Series {
            name: "p95",
            values: &values,
        };
        assert_eq!(
            sum_summary(&series, &labels),
            "p95: 10 in all, most 5 (00:00)."
        );
        assert_eq!(
            line_summary(&series, &labels, Unit::Milliseconds),
            "p95: latest 5 ms (02:00), highest 5 ms (00:00)."
        );
    }

    #[test]
    fn axis_tops_are_round_numbers() {
        #[track_caller]
        fn check(value: f64, expected: f64) {
            assert_eq!(nice_ceiling(value), expected, "{value}");
        }
        check(0.0, 1.0);
        check(-3.0, 1.0);
        check(f64::NAN, 1.0);
        check(0.4, 1.0);
        check(1.0, 1.0);
        check(1.5, 2.0);
        check(2.2, 2.5);
        check(3.0, 5.0);
        check(7.0, 10.0);
        check(10.0, 10.0);
        check(80.0, 100.0);
        check(101.0, 200.0);
        check(1_200.0, 2_000.0);
        check(2_400.0, 2_500.0);
        check(45_000.0, 50_000.0);
    }

    #[test]
    fn values_are_written_for_people() {
        #[track_caller]
        fn check(unit: Unit, value: f64, expected: &str) {
            assert_eq!(unit.format(value), expected, "{unit:?} {value}");
        }
        check(Unit::Count, 0.0, "0");
        check(Unit::Count, 12.0, "12");
        check(Unit::Count, 999.0, "999");
        check(Unit::Count, 1_000.0, "1k");
        check(Unit::Count, 1_540.0, "1.5k");
        check(Unit::Count, 2_500_000.0, "2.5M");
        check(Unit::Percent, 100.0, "100%");
        check(Unit::Percent, 93.333, "93.3%");
        check(Unit::Milliseconds, 849.6, "850 ms");
        check(Unit::Milliseconds, 1_000.0, "1 s");
        check(Unit::Milliseconds, 12_345.0, "12.3 s");
    }

    #[test]
    fn buckets_make_labelled_charts() {
        assert_eq!(hour_label(datetime!(2025-11-03 14:00 UTC)), "14:00");
        assert_eq!(hour_label(datetime!(2025-11-03 14:00 +02:00)), "12:00");
        assert_eq!(day_label(datetime!(2025-11-03 00:00 UTC)), "Nov 3");
        assert_eq!(day_label(datetime!(2025-05-30 00:00 UTC)), "May 30");

        let first = datetime!(2025-11-03 00:00 UTC);
        let mut buckets: Vec<Bucket> = (0..24)
            .map(|h| Bucket::empty(first + Duration::hours(h)))
            .collect();
        buckets[23] = Bucket {
            renders: 3,
            failed_renders: 1,
            hits: 3,
            misses: 1,
            p50_ms: Some(800.0),
            p95_ms: Some(1_500.0),
            ..buckets[23].clone()
        };
        let renders = renders_chart(&buckets, Period::Hours);
        let ratio = hit_ratio_chart(&buckets, Period::Hours);
        let times = render_time_chart(&buckets, Period::Hours);
        for svg in [&renders, &ratio, &times] {
            assert_well_formed(svg);
            let axis: Vec<_> = texts(svg)
                .into_iter()
                .filter(|t| t.ends_with(":00"))
                .collect();
            assert_eq!(axis, ["05:00", "11:00", "17:00", "23:00"], "{svg}");
        }
        assert!(renders.contains("<title>Renders per hour, last 24 hours</title>"));
        assert!(renders.contains("<title>23:00: 3 stored, 1 failed</title>"));
        assert!(
            ratio.contains("<title>23:00: hit ratio 75%</title>"),
            "{ratio}"
        );
        assert!(times.contains("<title>23:00: p95 1.5 s</title>"), "{times}");

        let days: Vec<Bucket> = (0..30)
            .map(|d| Bucket::empty(first + Duration::days(d)))
            .collect();
        let svg = renders_chart(&days, Period::Days);
        assert_well_formed(&svg);
        assert!(svg.contains("Renders per day, last 30 days. No data."));
        let axis = texts(&svg);
        assert_eq!(axis.first(), Some(&"Nov 7"));
        assert_eq!(axis[axis.len() - 2], "Dec 2", "{axis:?}");
        assert_eq!(axis.len(), 7, "six labels and the notice: {axis:?}");
    }
}
