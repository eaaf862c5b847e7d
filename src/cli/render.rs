//! Rendering shared by the commands: findings as text (with the source line and a caret, like
//! rustc), as JSON and as GitHub Actions workflow commands; JSON values; styles.

use std::io::{self, Write};

use anstyle::{AnsiColor, Style};
use ledgit::finding::{Finding, Severity};

pub const BOLD: Style = Style::new().bold();
pub const DIM: Style = Style::new().dimmed();

pub const RED: Style = AnsiColor::Red.on_default().bold();
pub const YELLOW: Style = AnsiColor::Yellow.on_default().bold();
pub const BLUE: Style = AnsiColor::Blue.on_default().bold();

pub const GREEN: Style = AnsiColor::Green.on_default();

/// The output formats of commands that print for people or for scripts.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum TextOrJson {
    /// For people.
    #[default]
    Text,
    /// Stable JSON for scripts.
    Json,
}

/// Standard output that strips colour when it is not a terminal or `NO_COLOR` is set.
pub fn stdout() -> anstream::AutoStream<io::StdoutLock<'static>> {
    anstream::AutoStream::auto(io::stdout().lock())
}

/// Standard output as it is, for machine formats (JSON, CSV): no colour handling to pay for.
pub fn plain_stdout() -> io::StdoutLock<'static> {
    io::stdout().lock()
}

/// Writes one JSON value and a newline.
pub fn json<T: serde::Serialize + ?Sized>(out: &mut dyn Write, value: &T) -> io::Result<()> {
    serde_json::to_writer_pretty(&mut *out, value)?;
    writeln!(out)
}

fn severity_style(s: Severity) -> Style {
    match s {
        Severity::Error => RED,
        Severity::Warning => YELLOW,
    }
}

/// One finding the way rustc shows a diagnostic.
pub fn finding_text(out: &mut dyn Write, f: &Finding) -> io::Result<()> {
    let style = severity_style(f.severity);
    writeln!(
        out,
        "{style}{}[{}]{style:#}{BOLD}: {}{BOLD:#}",
        f.severity, f.code, f.message
    )?;
    let gutter = f.line.to_string().len();
    let pad = " ".repeat(gutter);
    writeln!(
        out,
        "{pad}{BLUE}-->{BLUE:#} {}:{}:{}",
        f.path, f.line, f.column
    )?;
    if let Some(src) = &f.source_line {
        let src = src.replace('\t', " ");
        let col = (f.column as usize).saturating_sub(1);
        let width = src
            .chars()
            .skip(col)
            .take_while(|c| !c.is_whitespace())
            .count()
            .max(1);
        writeln!(out, "{pad} {BLUE}|{BLUE:#}")?;
        writeln!(out, "{BLUE}{}{BLUE:#} {BLUE}|{BLUE:#} {src}", f.line)?;
        writeln!(
            out,
            "{pad} {BLUE}|{BLUE:#} {}{style}{}{style:#}",
            " ".repeat(col),
            "^".repeat(width)
        )?;
    }
    if !f.hint.is_empty() {
        writeln!(out, "{pad} {BLUE}={BLUE:#} {BOLD}hint{BOLD:#}: {}", f.hint)?;
    }
    writeln!(out)
}

/// "2 errors, 1 warning" (or "no findings").
pub fn tally(findings: &[Finding]) -> String {
    let errors = findings
        .iter()
        .filter(|f| f.severity == Severity::Error)
        .count();
    let warnings = findings.len() - errors;
    let plural = |n: usize, word: &str| format!("{n} {word}{}", if n == 1 { "" } else { "s" });
    match (errors, warnings) {
        (0, 0) => "no findings".to_string(),
        (e, 0) => plural(e, "error"),
        (0, w) => plural(w, "warning"),
        (e, w) => format!("{}, {}", plural(e, "error"), plural(w, "warning")),
    }
}

/// A finding as a GitHub Actions workflow command (an annotation on the pull request).
pub fn finding_github(out: &mut dyn Write, f: &Finding) -> io::Result<()> {
    let level = match f.severity {
        Severity::Error => "error",
        Severity::Warning => "warning",
    };
    let mut message = f.message.clone();
    if !f.hint.is_empty() {
        message.push_str("\nhint: ");
        message.push_str(&f.hint);
    }
    writeln!(
        out,
        "::{level} file={},line={},col={},title={}::{}",
        escape_property(&f.path),
        f.line,
        f.column,
        escape_property(&format!("ledgit {}", f.code)),
        escape_data(&message)
    )
}

fn escape_data(s: &str) -> String {
    s.replace('%', "%25")
        .replace('\r', "%0D")
        .replace('\n', "%0A")
}

fn escape_property(s: &str) -> String {
    escape_data(s).replace(':', "%3A").replace(',', "%2C")
}

/// Rows in aligned columns; the first row is the header, in bold.
pub fn table(out: &mut dyn Write, rows: &[Vec<String>]) -> io::Result<()> {
    let columns = rows.iter().map(Vec::len).max().unwrap_or(0);
    let widths: Vec<usize> = (0..columns)
        .map(|c| {
            rows.iter()
                .filter_map(|r| r.get(c))
                .map(|s| s.chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect();
    for (i, row) in rows.iter().enumerate() {
        let mut line = String::new();
        for (c, cell) in row.iter().enumerate() {
            if c + 1 == row.len() {
                line.push_str(cell);
            } else {
                let pad = widths[c] - cell.chars().count();
                line.push_str(cell);
                line.push_str(&" ".repeat(pad + 2));
            }
        }
        if i == 0 {
            writeln!(out, "{BOLD}{line}{BOLD:#}")?;
        } else {
            writeln!(out, "{line}")?;
        }
    }
    Ok(())
}

/// A duration argument that may be zero (`0s`, `15m`), in seconds: clap's value parser.
pub fn seconds_arg(text: &str) -> Result<i64, String> {
    ledgit::support::when::parse_duration(text)
        .ok_or_else(|| format!("`{text}` is not a duration; write one such as 0s, 15m or 1h"))
}

/// A duration argument (`30s`, `5m`, `1h`, `7d`), more than zero: clap's value parser for every
/// duration flag, so that each is read once, with one message.
pub fn duration_arg(text: &str) -> Result<std::time::Duration, String> {
    match seconds_arg(text) {
        Ok(s) if s > 0 => Ok(std::time::Duration::from_secs(s as u64)),
        _ => Err(format!(
            "`{text}` is not a duration; write one such as 30s, 5m or 1h"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use ledgit::finding::Code;

    #[test]
    fn github_commands_escape_their_payload() {
        let f = Finding::new(Code::WrongType, "a,b:c.yaml", 3, 4, "50% wrong\nreally").hint("fix");
        let mut out = Vec::new();
        finding_github(&mut out, &f).unwrap();
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "::error file=a%2Cb%3Ac.yaml,line=3,col=4,title=ledgit wrong-type::50%25 wrong%0Areally%0Ahint: fix\n"
        );
    }
}
