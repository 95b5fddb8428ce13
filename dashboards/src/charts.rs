//! Server-side charts: pure functions from numbers to SVG (or an HTML table),
//! so the dashboard needs no script and fetches nothing when it is viewed.
//!
//! Every number a chart shows is also written as an exact `data-value`
//! attribute beside its formatted text, so a browser test (or a scraper) reads
//! the same figures the ledger holds, not a rounded label.

use std::fmt::Write as _;

use crate::render::{count, usd};

/// How a chart's numbers are formatted for people.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unit {
    Usd,
    Count,
    Millis,
}

impl Unit {
    pub fn format(self, v: f64) -> String {
        match self {
            Unit::Usd => money(v),
            Unit::Count => count(v),
            Unit::Millis => format!("{} ms", count(v)),
        }
    }
}

/// Dollars with cents, or with four decimals below one dollar so that the cost
/// of a few small requests does not print as `$0.00`.
pub fn money(v: f64) -> String {
    if v != 0.0 && v.abs() < 1.0 {
        let sign = if v < 0.0 { "-" } else { "" };
        format!("{sign}${:.4}", v.abs())
    } else {
        usd(v)
    }
}

/// What a series' legend entry shows: the sum of its values (daily amounts)
/// or its last value (running totals).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Legend {
    Sum,
    Last,
}

/// One named line or one set of bars.
#[derive(Debug, Clone, PartialEq)]
pub struct Series {
    pub name: String,
    pub values: Vec<f64>,
}

impl Series {
    pub fn new(name: &str, values: Vec<f64>) -> Self {
        Self {
            name: name.to_owned(),
            values,
        }
    }
}

/// Colours of the series, in order; chosen to stay apart for colour-blind readers.
const PALETTE: &[&str] = &["#1f77b4", "#ff7f0e", "#2ca02c", "#9467bd", "#8c564b"];

const WIDTH: f64 = 720.0;
const LEFT: f64 = 84.0;
const RIGHT: f64 = 24.0;
const TOP: f64 = 40.0;

/// Escapes text for XML/HTML content and attribute values.
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for ch in s.chars() {
        match ch {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// A number as an attribute value: the shortest text that reads back as the
/// same `f64`, so a test can compare it exactly.
fn attr_num(v: f64) -> String {
    if v.is_finite() {
        format!("{v}")
    } else {
        "0".into()
    }
}

/// Rounds `v` up to 1, 2 or 5 times a power of ten, for axis ends.
fn nice_ceiling(v: f64) -> f64 {
    if v <= 0.0 || !v.is_finite() {
        return 1.0;
    }
    let mag = 10f64.powf(v.log10().floor());
    for step in [1.0, 2.0, 5.0, 10.0] {
        if step * mag >= v {
            return step * mag;
        }
    }
    10.0 * mag
}

fn open_svg(out: &mut String, id: &str, title: &str, height: f64) {
    let _ = write!(
        out,
        "<svg xmlns=\"http://www.w3.org/2000/svg\" class=\"chart\" id=\"svg-{id}\" \
         viewBox=\"0 0 {WIDTH} {height}\" width=\"{WIDTH}\" height=\"{height}\" \
         role=\"img\" aria-label=\"{t}\"><title>{t}</title>\
         <text class=\"chart-title\" x=\"{LEFT}\" y=\"22\" font-size=\"15\" \
         font-weight=\"bold\">{t}</text>",
        t = escape(title)
    );
}

fn legend(out: &mut String, series: &[Series], unit: Unit, kind: Legend, y: f64) {
    let mut x = LEFT;
    for (i, s) in series.iter().enumerate() {
        let colour = PALETTE[i % PALETTE.len()];
        let total: f64 = match kind {
            Legend::Sum => s.values.iter().sum(),
            Legend::Last => s.values.last().copied().unwrap_or(0.0),
        };
        let label = format!("{} {}", s.name, unit.format(total));
        let _ = write!(
            out,
            "<rect x=\"{x}\" y=\"{}\" width=\"12\" height=\"12\" fill=\"{colour}\"/>\
             <text class=\"total\" data-series=\"{}\" data-value=\"{}\" x=\"{}\" y=\"{y}\" \
             font-size=\"12\">{}</text>",
            y - 10.0,
            escape(&s.name),
            attr_num(total),
            x + 16.0,
            escape(&label)
        );
        x += 16.0 + 7.0 * label.chars().count() as f64 + 24.0;
    }
}

fn no_data(out: &mut String, y: f64) {
    let _ = write!(
        out,
        "<text class=\"no-data\" x=\"{}\" y=\"{y}\" font-size=\"13\" fill=\"#666\" \
         text-anchor=\"middle\">no requests in this range</text>",
        WIDTH / 2.0
    );
}

/// A line per series over `x_labels` (days), with a dot and an exact
/// `data-value` at every point and each series' total (or last value) in the
/// legend. The y axis includes zero and stretches below it for negative values.
pub fn line_chart(
    id: &str,
    title: &str,
    x_labels: &[String],
    series: &[Series],
    unit: Unit,
    legend_shows: Legend,
) -> String {
    const HEIGHT: f64 = 300.0;
    const BOTTOM: f64 = 62.0;
    let mut out = String::new();
    open_svg(&mut out, id, title, HEIGHT);
    let plot_w = WIDTH - LEFT - RIGHT;
    let plot_h = HEIGHT - TOP - BOTTOM;
    let n = x_labels.len();
    let values = series.iter().flat_map(|s| s.values.iter().copied());
    let (lo, hi) = values.fold((0.0f64, 0.0f64), |(lo, hi), v| (lo.min(v), hi.max(v)));
    if n == 0 || series.is_empty() {
        no_data(&mut out, TOP + plot_h / 2.0);
        out.push_str("</svg>");
        return out;
    }
    let hi = if hi > 0.0 { nice_ceiling(hi) } else { 0.0 };
    let lo = if lo < 0.0 { -nice_ceiling(-lo) } else { 0.0 };
    let span = if hi - lo > 0.0 { hi - lo } else { 1.0 };
    let y_of = |v: f64| TOP + plot_h - (v - lo) / span * plot_h;
    let x_of = |i: usize| {
        if n == 1 {
            LEFT + plot_w / 2.0
        } else {
            LEFT + plot_w * i as f64 / (n - 1) as f64
        }
    };
    // Grid and y labels: five steps from lo to hi.
    for k in 0..=4 {
        let v = lo + span * f64::from(k) / 4.0;
        let y = y_of(v);
        let _ = write!(
            out,
            "<line x1=\"{LEFT}\" x2=\"{}\" y1=\"{y:.1}\" y2=\"{y:.1}\" stroke=\"#ddd\"/>\
             <text class=\"axis\" x=\"{}\" y=\"{:.1}\" font-size=\"11\" \
             text-anchor=\"end\">{}</text>",
            WIDTH - RIGHT,
            LEFT - 6.0,
            y + 4.0,
            escape(&unit.format(v))
        );
    }
    if lo < 0.0 {
        let y = y_of(0.0);
        let _ = write!(
            out,
            "<line x1=\"{LEFT}\" x2=\"{}\" y1=\"{y:.1}\" y2=\"{y:.1}\" stroke=\"#888\"/>",
            WIDTH - RIGHT
        );
    }
    // At most about eight x labels, evenly spaced, always the last one (and
    // no regular label so close before it that the two overlap).
    let every = n.div_ceil(8).max(1);
    for (i, label) in x_labels.iter().enumerate() {
        if (i % every == 0 && n - 1 - i >= every) || i + 1 == n {
            // The last label ends at the plot's right edge instead of overhanging it.
            let anchor = if i + 1 == n && n > 1 { "end" } else { "middle" };
            let _ = write!(
                out,
                "<text class=\"axis\" x=\"{:.1}\" y=\"{:.1}\" font-size=\"11\" \
                 text-anchor=\"{anchor}\">{}</text>",
                x_of(i),
                TOP + plot_h + 16.0,
                escape(label)
            );
        }
    }
    for (si, s) in series.iter().enumerate() {
        let colour = PALETTE[si % PALETTE.len()];
        let points: Vec<String> = s
            .values
            .iter()
            .enumerate()
            .take(n)
            .map(|(i, v)| format!("{:.1},{:.1}", x_of(i), y_of(*v)))
            .collect();
        let _ = write!(
            out,
            "<polyline class=\"series\" data-series=\"{}\" fill=\"none\" stroke=\"{colour}\" \
             stroke-width=\"2\" points=\"{}\"/>",
            escape(&s.name),
            points.join(" ")
        );
        for (i, v) in s.values.iter().enumerate().take(n) {
            let _ = write!(
                out,
                "<circle class=\"point\" data-series=\"{}\" data-x=\"{}\" data-value=\"{}\" \
                 cx=\"{:.1}\" cy=\"{:.1}\" r=\"3\" fill=\"{colour}\"><title>{} {}: {}</title>\
                 </circle>",
                escape(&s.name),
                escape(&x_labels[i]),
                attr_num(*v),
                x_of(i),
                y_of(*v),
                escape(&s.name),
                escape(&x_labels[i]),
                escape(&unit.format(*v))
            );
        }
    }
    legend(&mut out, series, unit, legend_shows, HEIGHT - 12.0);
    out.push_str("</svg>");
    out
}

/// Horizontal bars: one group per category, one bar per series in it, each
/// labelled with its formatted value and its exact `data-value`.
pub fn bar_chart(
    id: &str,
    title: &str,
    categories: &[String],
    series: &[Series],
    unit: Unit,
) -> String {
    const BAR: f64 = 16.0;
    const GAP: f64 = 10.0;
    const LABEL_W: f64 = 150.0;
    let group_h = BAR * series.len().max(1) as f64 + GAP;
    let legend_h = if series.len() > 1 { 28.0 } else { 8.0 };
    let body_h = (group_h * categories.len() as f64).max(40.0);
    let height = TOP + body_h + legend_h;
    let mut out = String::new();
    open_svg(&mut out, id, title, height);
    if categories.is_empty() || series.is_empty() {
        no_data(&mut out, TOP + 20.0);
        out.push_str("</svg>");
        return out;
    }
    let max = series
        .iter()
        .flat_map(|s| s.values.iter().copied())
        .fold(0.0f64, f64::max);
    let max = nice_ceiling(max);
    // Room on the right for the value label.
    let bar_w = WIDTH - LABEL_W - RIGHT - 110.0;
    for (ci, cat) in categories.iter().enumerate() {
        let gy = TOP + group_h * ci as f64;
        let _ = write!(
            out,
            "<text class=\"category\" x=\"{:.1}\" y=\"{:.1}\" font-size=\"12\" \
             text-anchor=\"end\">{}</text>",
            LABEL_W - 8.0,
            gy + BAR * series.len() as f64 / 2.0 + 4.0,
            escape(cat)
        );
        for (si, s) in series.iter().enumerate() {
            let v = s.values.get(ci).copied().unwrap_or(0.0);
            let w = (v.max(0.0) / max * bar_w).max(if v > 0.0 { 1.0 } else { 0.0 });
            let y = gy + BAR * si as f64;
            let colour = PALETTE[si % PALETTE.len()];
            let _ = write!(
                out,
                "<rect class=\"bar\" x=\"{LABEL_W}\" y=\"{y:.1}\" width=\"{w:.1}\" \
                 height=\"{:.1}\" fill=\"{colour}\"/>\
                 <text class=\"value\" data-category=\"{}\" data-series=\"{}\" \
                 data-value=\"{}\" x=\"{:.1}\" y=\"{:.1}\" font-size=\"11\">{}</text>",
                BAR - 2.0,
                escape(cat),
                escape(&s.name),
                attr_num(v),
                LABEL_W + w + 4.0,
                y + BAR - 5.0,
                escape(&unit.format(v))
            );
        }
    }
    if series.len() > 1 {
        legend(&mut out, series, unit, Legend::Sum, height - 10.0);
    }
    out.push_str("</svg>");
    out
}

/// One cell of an HTML table: its text and, for numbers, the exact value.
#[derive(Debug, Clone, PartialEq)]
pub struct Cell {
    pub text: String,
    pub value: Option<f64>,
}

impl Cell {
    pub fn text(s: &str) -> Self {
        Self {
            text: s.to_owned(),
            value: None,
        }
    }

    pub fn num(v: f64, unit: Unit) -> Self {
        Self {
            text: unit.format(v),
            value: Some(v),
        }
    }

    /// A number that may be missing (shown as a dash, with no `data-value`).
    pub fn opt(v: Option<f64>, unit: Unit) -> Self {
        match v {
            Some(v) => Self::num(v, unit),
            None => Self::text("-"),
        }
    }
}

/// An HTML table; numeric cells carry `data-value` and `data-column`.
pub fn table(id: &str, title: &str, headers: &[&str], rows: &[Vec<Cell>]) -> String {
    let mut out = format!(
        "<table class=\"data\" id=\"table-{}\"><caption>{}</caption><thead><tr>",
        escape(id),
        escape(title)
    );
    for h in headers {
        let _ = write!(out, "<th>{}</th>", escape(h));
    }
    out.push_str("</tr></thead><tbody>");
    if rows.is_empty() {
        let _ = write!(
            out,
            "<tr><td class=\"no-data\" colspan=\"{}\">no requests in this range</td></tr>",
            headers.len().max(1)
        );
    }
    for row in rows {
        out.push_str("<tr>");
        for (i, cell) in row.iter().enumerate() {
            let column = headers.get(i).copied().unwrap_or("");
            match cell.value {
                Some(v) => {
                    let _ = write!(
                        out,
                        "<td class=\"num\" data-column=\"{}\" data-value=\"{}\">{}</td>",
                        escape(column),
                        attr_num(v),
                        escape(&cell.text)
                    );
                }
                None => {
                    let _ = write!(
                        out,
                        "<td data-column=\"{}\">{}</td>",
                        escape(column),
                        escape(&cell.text)
                    );
                }
            }
        }
        out.push_str("</tr>");
    }
    out.push_str("</tbody></table>");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every `data-value` attribute in `svg`, in document order.
    fn data_values(svg: &str) -> Vec<f64> {
        svg.split("data-value=\"")
            .skip(1)
            .map(|rest| rest.split('"').next().unwrap_or("").parse::<f64>())
            .collect::<Result<_, _>>()
            .unwrap_or_else(|e| panic!("unparsable data-value in {svg}: {e}"))
    }

    fn labels(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn money_keeps_small_amounts_visible() {
        assert_eq!(money(0.0042), "$0.0042");
        assert_eq!(money(-0.5), "-$0.5000");
        assert_eq!(money(0.0), "$0.00");
        assert_eq!(money(1234.5), "$1,234.50");
    }

    #[test]
    fn line_chart_writes_every_point_and_each_total_exactly() {
        let days = labels(&["2026-11-01", "2026-11-02", "2026-11-03"]);
        let svg = line_chart(
            "daily",
            "Daily spend",
            &days,
            &[
                Series::new("hybrid", vec![0.1, 0.2, 0.30000000000000004]),
                Series::new("all-closed", vec![1.0, 2.0, 3.0]),
            ],
            Unit::Usd,
            Legend::Sum,
        );
        assert!(svg.starts_with("<svg xmlns=\"http://www.w3.org/2000/svg\""));
        assert!(svg.ends_with("</svg>"));
        assert_eq!(svg.matches("<polyline").count(), 2);
        assert_eq!(svg.matches("<circle").count(), 6);
        // Points in order, then the two legend totals.
        let total_hybrid: f64 = [0.1, 0.2, 0.30000000000000004].iter().sum();
        assert_eq!(
            data_values(&svg),
            vec![
                0.1,
                0.2,
                0.30000000000000004,
                1.0,
                2.0,
                3.0,
                total_hybrid,
                6.0
            ]
        );
        assert!(svg.contains("data-x=\"2026-11-02\""));
        assert!(svg.contains("all-closed $6.00"), "{svg}");
    }

    #[test]
    fn line_chart_puts_negative_values_below_a_zero_line() {
        let days = labels(&["a", "b"]);
        let svg = line_chart(
            "cum",
            "Savings",
            &days,
            &[Series::new("savings", vec![-5.0, 10.0])],
            Unit::Usd,
            Legend::Last,
        );
        // The legend shows where the running total ends.
        assert!(
            svg.contains("data-value=\"10\" x=") && svg.contains("savings $10.00"),
            "{svg}"
        );
        // The axis runs from -$5.00 to $10.00 and a zero line is drawn.
        assert!(svg.contains(">-$5.00</text>"), "{svg}");
        assert!(svg.contains(">$10.00</text>"), "{svg}");
        assert_eq!(svg.matches("stroke=\"#888\"").count(), 1);
        // The first point sits lower on the page (larger y) than the second.
        let cy: Vec<f64> = svg
            .split("cy=\"")
            .skip(1)
            .map(|r| {
                r.split('"')
                    .next()
                    .unwrap_or("")
                    .parse()
                    .unwrap_or(f64::NAN)
            })
            .collect();
        assert!(cy[0] > cy[1], "{cy:?}");
    }

    #[test]
    fn long_ranges_label_about_eight_days_without_crowding_the_last() {
        let days: Vec<String> = (1..=30).map(|d| format!("d{d:02}")).collect();
        let svg = line_chart(
            "x",
            "X",
            &days,
            &[Series::new("s", vec![1.0; 30])],
            Unit::Usd,
            Legend::Sum,
        );
        let shown: Vec<&str> = days
            .iter()
            .filter(|d| svg.contains(&format!(">{d}</text>")))
            .map(String::as_str)
            .collect();
        assert_eq!(
            shown,
            ["d01", "d05", "d09", "d13", "d17", "d21", "d25", "d30"]
        );
        // Every point is still drawn.
        assert_eq!(svg.matches("<circle").count(), 30);
    }

    #[test]
    fn empty_charts_say_so_and_stay_valid() {
        for svg in [
            line_chart("x", "X", &[], &[], Unit::Usd, Legend::Sum),
            bar_chart("y", "Y", &[], &[Series::new("s", vec![])], Unit::Count),
        ] {
            assert!(svg.contains("no requests in this range"), "{svg}");
            assert!(svg.ends_with("</svg>"));
            assert!(data_values(&svg).is_empty());
        }
    }

    #[test]
    fn bar_chart_scales_bars_to_the_largest_value() {
        let cats = labels(&["legal", "support"]);
        let svg = bar_chart(
            "teams",
            "Spend by team",
            &cats,
            &[Series::new("spend", vec![2.5, 10.0])],
            Unit::Usd,
        );
        assert_eq!(data_values(&svg), vec![2.5, 10.0]);
        let widths: Vec<f64> = svg
            .split("class=\"bar\"")
            .skip(1)
            .map(|r| {
                r.split("width=\"")
                    .nth(1)
                    .and_then(|w| w.split('"').next())
                    .and_then(|w| w.parse().ok())
                    .unwrap_or(f64::NAN)
            })
            .collect();
        assert_eq!(widths.len(), 2);
        assert!((widths[1] / widths[0] - 4.0).abs() < 0.01, "{widths:?}");
        assert!(svg.contains("data-category=\"support\""));
        // A single series needs no legend.
        assert!(!svg.contains("class=\"total\""));
    }

    #[test]
    fn grouped_bars_have_a_legend_with_totals() {
        let cats = labels(&["public", "confidential"]);
        let svg = bar_chart(
            "privacy",
            "Privacy",
            &cats,
            &[
                Series::new("local", vec![3.0, 2.0]),
                Series::new("api", vec![4.0, 0.0]),
            ],
            Unit::Count,
        );
        assert_eq!(svg.matches("class=\"bar\"").count(), 4);
        assert_eq!(data_values(&svg), vec![3.0, 4.0, 2.0, 0.0, 5.0, 4.0]);
    }

    #[test]
    fn text_is_escaped_everywhere() {
        let cats = labels(&["<script>\"x\"&"]);
        let svg = bar_chart(
            "t",
            "A & B",
            &cats,
            &[Series::new("s'", vec![1.0])],
            Unit::Count,
        );
        assert!(!svg.contains("<script>"));
        assert!(svg.contains("&lt;script&gt;&quot;x&quot;&amp;"));
        assert!(svg.contains("A &amp; B"));
        assert!(svg.contains("data-series=\"s&#39;\""));
        let html = table("p", "<b>", &["backend"], &[vec![Cell::text("<i>")]]);
        assert!(html.contains("<caption>&lt;b&gt;</caption>"));
        assert!(html.contains("&lt;i&gt;"));
    }

    #[test]
    fn table_cells_carry_exact_values() {
        let html = table(
            "lat",
            "Latency",
            &["backend", "p50"],
            &[
                vec![Cell::text("local"), Cell::num(12.25, Unit::Millis)],
                vec![Cell::text("gpt"), Cell::opt(None, Unit::Millis)],
            ],
        );
        assert!(
            html.contains("<td class=\"num\" data-column=\"p50\" data-value=\"12.25\">12 ms</td>")
        );
        assert!(html.contains("<td data-column=\"p50\">-</td>"));
        assert_eq!(html.matches("<tr>").count(), 3);
        let empty = table("e", "E", &["a", "b"], &[]);
        assert!(empty.contains("colspan=\"2\">no requests in this range"));
    }
}
