//! The bulk-report CSV dialect (`IP,Category[,Protocol[,Comment]]`, `,` or
//! `;`, optional header), read one line at a time so the HTTP bulk report
//! and `sikker admin import reports` share one parser and an import streams.

use super::reports::{ReportRow, RowError};

/// What one line of the file is.
#[derive(Debug, PartialEq, Eq)]
pub enum CsvLine {
    /// Blank, or the header row.
    Skip,
    Row(ReportRow),
    /// A row that cannot become a report (its number and why).
    Bad(RowError),
}

/// Reads lines in file order; the first non-blank line fixes the delimiter
/// and may be a header.
#[derive(Debug, Default)]
pub struct CsvReader {
    delimiter: Option<u8>,
}

impl CsvReader {
    pub fn new() -> Self {
        Self::default()
    }

    /// Parses line `n` (1-based). `Err` is malformed CSV (an unbalanced
    /// quote): the bulk report refuses the file, an import that line.
    pub fn line(&mut self, n: usize, line: &str) -> Result<CsvLine, String> {
        let line = if n == 1 {
            line.strip_prefix('\u{feff}').unwrap_or(line)
        } else {
            line
        };
        let line = line.strip_suffix('\r').unwrap_or(line);
        if line.trim().is_empty() {
            return Ok(CsvLine::Skip);
        }
        let first = self.delimiter.is_none();
        let delimiter = *self.delimiter.get_or_insert_with(|| {
            if line.matches(';').count() > line.matches(',').count() {
                b';'
            } else {
                b','
            }
        });
        let fields: Vec<String> = if line.contains('"') {
            if line.matches('"').count() % 2 == 1 {
                return Err(format!("malformed CSV: unbalanced quote on line {n}"));
            }
            csv::ReaderBuilder::new()
                .has_headers(false)
                .flexible(true)
                .delimiter(delimiter)
                .from_reader(line.as_bytes())
                .records()
                .next()
                .transpose()
                .map_err(|e| format!("malformed CSV on line {n}: {e}"))?
                .map(|r| r.iter().map(|f| f.trim().to_owned()).collect())
                .unwrap_or_default()
        } else {
            // Without quotes a record is a plain split (the fast path of imports).
            line.split(char::from(delimiter))
                .map(|f| f.trim().to_owned())
                .collect()
        };
        let get = |k: usize| fields.get(k).cloned().unwrap_or_default();
        if first && get(0).parse::<crate::domain::IpKey>().is_err() {
            return Ok(CsvLine::Skip); // header row
        }
        if fields.len() < 2 {
            return Ok(CsvLine::Bad(RowError {
                row: n,
                ip: get(0),
                error: "Missing category".into(),
            }));
        }
        let opt = |k: usize| Some(get(k)).filter(|s| !s.is_empty());
        Ok(CsvLine::Row(ReportRow {
            ip: get(0),
            category: get(1),
            protocol: opt(2),
            comment: opt(3),
            at_ms: None,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn all(text: &str) -> Vec<Result<CsvLine, String>> {
        let mut r = CsvReader::new();
        text.split('\n')
            .enumerate()
            .map(|(i, l)| r.line(i + 1, l))
            .collect()
    }

    #[test]
    fn header_delimiter_quotes_and_numbering() {
        let out = all("\u{feff}IP,Category\r\n1.2.3.4,brute_force,ssh,\"a, quoted\"\n\n9.9.9.9\n");
        assert_eq!(out[0], Ok(CsvLine::Skip));
        let Ok(CsvLine::Row(r)) = &out[1] else {
            panic!("{out:?}")
        };
        assert_eq!(r.comment.as_deref(), Some("a, quoted"));
        assert_eq!(r.protocol.as_deref(), Some("ssh"));
        assert_eq!(out[2], Ok(CsvLine::Skip));
        assert!(matches!(&out[3], Ok(CsvLine::Bad(e)) if e.row == 4));
        let out = all("1.2.3.4;ddos;http;x");
        assert!(matches!(&out[0], Ok(CsvLine::Row(r)) if r.category == "ddos"));
        assert!(all("1.2.3.4,1,ssh,\"never closed")[0].is_err());
    }
}
