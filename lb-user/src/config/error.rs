//! Config errors that point at the offending text: file:line:column, the line
//! itself with a caret, and what to do about it.

use std::{fmt, ops::Range, path::Path};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    pub file: String,
    pub line: usize,
    pub column: usize,
    pub message: String,
    pub hint: String,
    source_line: String,
    width: usize,
}

impl ConfigError {
    /// An error at byte range `span` of `text`.
    pub fn at(file: &Path, text: &str, span: Range<usize>, message: String, hint: &str) -> Self {
        // Point at the first non-blank character: table spans start at the
        // whitespace before a `[[header]]`.
        let mut start = span.start.min(text.len());
        let skipped = text[start..span.end.min(text.len())].len()
            - text[start..span.end.min(text.len())].trim_start().len();
        if skipped < span.end.min(text.len()) - start {
            start += skipped;
        }
        let line_start = text[..start].rfind('\n').map_or(0, |i| i + 1);
        let line_end = text[start..].find('\n').map_or(text.len(), |i| start + i);
        let line = text[..start].matches('\n').count() + 1;
        let column = text[line_start..start].chars().count() + 1;
        let width = text[start..span.end.clamp(start, line_end)]
            .chars()
            .count()
            .max(1);
        Self {
            file: file.display().to_string(),
            line,
            column,
            message,
            hint: hint.to_string(),
            source_line: text[line_start..line_end].to_string(),
            width,
        }
    }

    /// An error about the file as a whole (unreadable, missing section).
    pub fn whole(file: &Path, message: String, hint: &str) -> Self {
        Self {
            file: file.display().to_string(),
            line: 1,
            column: 1,
            message,
            hint: hint.to_string(),
            source_line: String::new(),
            width: 0,
        }
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "{}:{}:{}: error: {}",
            self.file, self.line, self.column, self.message
        )?;
        if !self.source_line.is_empty() {
            let gutter = self.line.to_string().len();
            writeln!(f, "{:gutter$} |", "")?;
            writeln!(f, "{} | {}", self.line, self.source_line)?;
            writeln!(
                f,
                "{:gutter$} | {}{}",
                "",
                " ".repeat(self.column - 1),
                "^".repeat(self.width)
            )?;
        }
        write!(f, "  hint: {}", self.hint)
    }
}

impl std::error::Error for ConfigError {}
