//! Plain tables rendered three ways — aligned text for a terminal, CSV for a
//! spreadsheet, JSON for a program — plus the number formats they share.

use serde::{Deserialize, Serialize};

use crate::error::LedgerError;

/// How `watershed report` prints.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    Table,
    Json,
    Csv,
}

impl std::str::FromStr for Format {
    type Err = LedgerError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "table" => Ok(Format::Table),
            "json" => Ok(Format::Json),
            "csv" => Ok(Format::Csv),
            other => Err(LedgerError::Invalid(format!(
                "unknown format \"{other}\" (expected table, json or csv)"
            ))),
        }
    }
}

/// A titled grid of already formatted cells.
#[derive(Debug, Clone, Default)]
pub struct Table {
    pub title: String,
    pub headers: Vec<String>,
    pub rows: Vec<Vec<String>>,
    /// Lines printed under the table (caveats, totals).
    pub notes: Vec<String>,
}

impl Table {
    pub fn new(title: &str, headers: &[&str]) -> Self {
        Self {
            title: title.to_owned(),
            headers: headers.iter().map(|h| (*h).to_owned()).collect(),
            rows: Vec::new(),
            notes: Vec::new(),
        }
    }

    /// Columns padded to their widest cell; text left, numbers right.
    pub fn to_text(&self) -> String {
        let n = self.headers.len();
        let mut width: Vec<usize> = self.headers.iter().map(|h| h.chars().count()).collect();
        for row in &self.rows {
            for (i, cell) in row.iter().enumerate().take(n) {
                width[i] = width[i].max(cell.chars().count());
            }
        }
        let line = |cells: &[String]| -> String {
            let mut out = String::new();
            for (i, w) in width.iter().enumerate() {
                let cell = cells.get(i).map(String::as_str).unwrap_or("");
                let pad = w.saturating_sub(cell.chars().count());
                if i > 0 {
                    out.push_str("  ");
                }
                if looks_numeric(cell) {
                    out.push_str(&" ".repeat(pad));
                    out.push_str(cell);
                } else {
                    out.push_str(cell);
                    out.push_str(&" ".repeat(pad));
                }
            }
            out.trim_end().to_owned()
        };
        let mut out = String::new();
        if !self.title.is_empty() {
            out.push_str(&self.title);
            out.push('\n');
        }
        out.push_str(&line(&self.headers));
        out.push('\n');
        let rule: Vec<String> = width.iter().map(|w| "-".repeat(*w)).collect();
        out.push_str(&rule.join("  "));
        out.push('\n');
        for row in &self.rows {
            out.push_str(&line(row));
            out.push('\n');
        }
        for note in &self.notes {
            out.push_str(note);
            out.push('\n');
        }
        out
    }

    /// RFC 4180 CSV: header line, then rows; notes are left out.
    pub fn to_csv(&self) -> String {
        let mut out = String::new();
        out.push_str(&csv_line(&self.headers));
        for row in &self.rows {
            out.push_str(&csv_line(row));
        }
        out
    }
}

fn looks_numeric(cell: &str) -> bool {
    let c = cell.trim_start_matches(['-', '$']);
    c.starts_with(|ch: char| ch.is_ascii_digit())
}

fn csv_line(cells: &[String]) -> String {
    let quoted: Vec<String> = cells
        .iter()
        .map(|c| {
            if c.contains([',', '"', '\n', '\r']) {
                format!("\"{}\"", c.replace('"', "\"\""))
            } else {
                c.clone()
            }
        })
        .collect();
    format!("{}\r\n", quoted.join(","))
}

/// `1732.5` -> `$1,732.50`; negative amounts as `-$12.00`.
pub fn usd(v: f64) -> String {
    let cents = (v.abs() * 100.0).round();
    let whole = (cents / 100.0).trunc() as u64;
    let frac = (cents % 100.0) as u64;
    let sign = if v < 0.0 && cents > 0.0 { "-" } else { "" };
    format!("{sign}${}.{frac:02}", group(whole))
}

/// Whole numbers with thousands separators: `80000000` -> `80,000,000`.
pub fn count(v: f64) -> String {
    let r = v.round();
    let sign = if r < 0.0 { "-" } else { "" };
    format!("{sign}{}", group(r.abs() as u64))
}

fn group(n: u64) -> String {
    let s = n.to_string();
    let mut out = String::new();
    for (i, ch) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(ch);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn money_and_counts() {
        assert_eq!(usd(1732.5), "$1,732.50");
        assert_eq!(usd(392.25), "$392.25");
        assert_eq!(usd(0.004), "$0.00");
        assert_eq!(usd(-12.0), "-$12.00");
        assert_eq!(usd(1_000_000.0), "$1,000,000.00");
        assert_eq!(count(80_000_000.0), "80,000,000");
        assert_eq!(count(999.0), "999");
    }

    #[test]
    fn table_and_csv() {
        let mut t = Table::new("T", &["name", "usd"]);
        t.rows.push(vec!["a, \"b\"".into(), "$1.00".into()]);
        t.rows.push(vec!["long name".into(), "$10.00".into()]);
        assert_eq!(
            t.to_text(),
            "T\nname       usd\n---------  ------\na, \"b\"      $1.00\nlong name  $10.00\n"
        );
        assert_eq!(
            t.to_csv(),
            "name,usd\r\n\"a, \"\"b\"\"\",$1.00\r\nlong name,$10.00\r\n"
        );
    }
}
