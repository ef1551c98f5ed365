//! One text renderer for every `lb show` view: a row type names its
//! columns and its cells; the same value is what `--json` serializes, so
//! the table and the JSON cannot drift apart.

use serde::Serialize;

/// A text column: heading, width (0: as wide as its cell), alignment.
pub struct Col {
    pub name: &'static str,
    pub width: usize,
    pub right: bool,
}

pub const fn left(name: &'static str, width: usize) -> Col {
    Col {
        name,
        width,
        right: false,
    }
}

pub const fn right(name: &'static str, width: usize) -> Col {
    Col {
        name,
        width,
        right: true,
    }
}

/// One row of a view.
pub trait Row: Serialize {
    const COLS: &'static [Col];
    /// Rows in groups (ipvsadm's service lines above its `->` backend
    /// lines) give the heading of the group and of each group line.
    const GROUP_COLS: Option<&'static [Col]> = None;
    fn cells(&self) -> Vec<String>;
    /// The cells of this row's group line.
    fn group(&self) -> Vec<String> {
        Vec::new()
    }
}

fn line(cols: &[Col], cells: impl IntoIterator<Item = String>) -> String {
    let mut s = String::new();
    for (i, (c, v)) in cols.iter().zip(cells).enumerate() {
        if i > 0 {
            s.push(' ');
        }
        if c.right {
            s.push_str(&format!("{v:>w$}", w = c.width));
        } else {
            s.push_str(&format!("{v:<w$}", w = c.width));
        }
    }
    s.truncate(s.trim_end().len());
    s.push('\n');
    s
}

fn heading(cols: &[Col]) -> Vec<String> {
    cols.iter().map(|c| c.name.to_string()).collect()
}

/// The rows as a table with a heading line.
pub fn text<R: Row>(rows: &[R]) -> String {
    let mut s = String::new();
    let indent = match R::GROUP_COLS {
        Some(g) => {
            s.push_str(&line(g, heading(g)));
            "  -> "
        }
        None => "",
    };
    s.push_str(indent);
    s.push_str(&line(R::COLS, heading(R::COLS)));
    let mut group = None;
    for r in rows {
        if let Some(g) = R::GROUP_COLS {
            let cells = r.group();
            if group.as_ref() != Some(&cells) {
                s.push_str(&line(g, cells.clone()));
                group = Some(cells);
            }
        }
        s.push_str(indent);
        s.push_str(&line(R::COLS, r.cells()));
    }
    s
}

/// "1.5s ago", or "-" for never.
pub fn ago(ms: u64, now: u64) -> String {
    if ms == 0 {
        return "-".into();
    }
    let d = now.saturating_sub(ms);
    if d < 10_000 {
        format!("{:.1}s ago", d as f64 / 1000.0)
    } else {
        format!("{}s ago", d / 1000)
    }
}

pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Serialize)]
    struct R {
        g: &'static str,
        a: &'static str,
        n: u32,
    }

    impl Row for R {
        const COLS: &'static [Col] = &[left("A", 4), right("N", 3)];
        const GROUP_COLS: Option<&'static [Col]> = Some(&[left("G", 0)]);
        fn cells(&self) -> Vec<String> {
            vec![self.a.into(), self.n.to_string()]
        }
        fn group(&self) -> Vec<String> {
            vec![self.g.into()]
        }
    }

    #[test]
    fn groups_print_once_above_their_rows() {
        let rows = [
            R {
                g: "x",
                a: "a",
                n: 1,
            },
            R {
                g: "x",
                a: "b",
                n: 22,
            },
            R {
                g: "y",
                a: "c",
                n: 3,
            },
        ];
        assert_eq!(
            text(&rows),
            "G\n  -> A      N\nx\n  -> a      1\n  -> b     22\ny\n  -> c      3\n"
        );
    }
}
