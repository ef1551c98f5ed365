//! keepalived.conf as keepalived reads it (lib/parser.c): lines of
//! whitespace-separated words, `{`/`}` blocks (the `{` on the same line or
//! the next), comments from `#` or `!` to the end of the line, quoted
//! strings, `include GLOB` relative to the including file, `$NAME=value`
//! definitions with `$NAME`/`${NAME}` substitution, and `@ID` conditional
//! lines kept only for the given router id.

use std::{
    collections::HashMap,
    path::{Path, PathBuf},
};

/// Where a word came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct At {
    pub file: PathBuf,
    pub line: usize,
}

impl std::fmt::Display for At {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}", self.file.display(), self.line)
    }
}

/// One statement: its keyword, its arguments, and its block if it has one.
#[derive(Debug, Clone)]
pub struct Node {
    pub key: String,
    pub args: Vec<String>,
    pub children: Vec<Node>,
    pub at: At,
}

impl Node {
    /// The first argument, or "".
    pub fn arg(&self) -> &str {
        self.args.first().map_or("", String::as_str)
    }
}

/// A line the reader itself set aside (a conditional line for another
/// router, an include that matched nothing).
#[derive(Debug, Clone)]
pub struct Skipped {
    pub at: At,
    pub why: String,
}

enum Tok {
    Word(String),
    Open,
    Close,
    /// End of a line: a statement's arguments end there.
    Eol,
}

/// Read `path` (and what it includes) into statements.
pub fn read(path: &Path, router_id: Option<&str>) -> std::io::Result<(Vec<Node>, Vec<Skipped>)> {
    let mut toks = Vec::new();
    let mut skipped = Vec::new();
    let mut defs = HashMap::new();
    lines_of(path, router_id, &mut defs, &mut toks, &mut skipped, 0)?;
    let mut i = 0;
    let nodes = block(&toks, &mut i);
    Ok((nodes, skipped))
}

/// Words of one line: comments cut, quotes kept together, braces apart.
fn words(line: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut quoted = false;
    let mut any = false;
    for c in line.chars() {
        match c {
            '"' => {
                quoted = !quoted;
                any = true;
            }
            '#' | '!' if !quoted => break,
            '{' | '}' if !quoted => {
                if any {
                    out.push(std::mem::take(&mut cur));
                    any = false;
                }
                out.push(c.to_string());
            }
            c if c.is_whitespace() && !quoted => {
                if any {
                    out.push(std::mem::take(&mut cur));
                    any = false;
                }
            }
            c => {
                cur.push(c);
                any = true;
            }
        }
    }
    if any {
        out.push(cur);
    }
    out
}

/// `$NAME` and `${NAME}` replaced by their definitions.
fn substitute(line: &str, defs: &HashMap<String, String>) -> String {
    let mut out = String::new();
    let mut rest = line;
    while let Some(i) = rest.find('$') {
        out.push_str(&rest[..i]);
        let after = &rest[i + 1..];
        let (name, used) = if let Some(body) = after.strip_prefix('{') {
            match body.find('}') {
                Some(j) => (&body[..j], j + 2),
                None => ("", 0),
            }
        } else {
            let n = after
                .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .unwrap_or(after.len());
            (&after[..n], n)
        };
        match defs.get(name) {
            Some(v) if !name.is_empty() => {
                out.push_str(v);
                rest = &after[used..];
            }
            _ => {
                out.push('$');
                rest = after;
            }
        }
    }
    out.push_str(rest);
    out
}

fn lines_of(
    path: &Path,
    router_id: Option<&str>,
    defs: &mut HashMap<String, String>,
    out: &mut Vec<(Tok, At)>,
    skipped: &mut Vec<Skipped>,
    depth: usize,
) -> std::io::Result<()> {
    let text = std::fs::read_to_string(path)?;
    let dir = path.parent().unwrap_or(Path::new("."));
    defs.insert("_PWD".into(), dir.display().to_string());
    for (n, raw) in text.lines().enumerate() {
        let at = At {
            file: path.to_path_buf(),
            line: n + 1,
        };
        let mut line = raw.trim_start();
        // Conditional lines: `@ID rest` for router ID, `@^ID rest` for all others.
        if let Some(cond) = line.strip_prefix('@') {
            let (id, rest) = cond.split_once(char::is_whitespace).unwrap_or((cond, ""));
            let (neg, id) = match id.strip_prefix('^') {
                Some(id) => (true, id),
                None => (false, id),
            };
            let mine = router_id == Some(id);
            if mine == neg {
                skipped.push(Skipped {
                    at,
                    why: format!(
                        "conditional line for router id {id:?} left out (give --router-id {id} to keep it)"
                    ),
                });
                continue;
            }
            line = rest.trim_start();
        }
        // `$NAME=value` defines; the value runs to the end of the line.
        if let Some(def) = line.strip_prefix('$')
            && let Some((name, value)) = def.split_once('=')
            && !name.is_empty()
            && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
        {
            let value = substitute(value.trim(), defs);
            defs.insert(name.to_string(), value);
            continue;
        }
        let line = substitute(line, defs);
        let w = words(&line);
        if w.first().map(String::as_str) == Some("include") && depth < 8 {
            let pattern = w.get(1).cloned().unwrap_or_default();
            let full = if Path::new(&pattern).is_absolute() {
                PathBuf::from(&pattern)
            } else {
                dir.join(&pattern)
            };
            let mut matched: Vec<PathBuf> = glob(&full);
            matched.sort();
            if matched.is_empty() {
                skipped.push(Skipped {
                    at,
                    why: format!("include {pattern} matches no file"),
                });
            }
            for f in matched {
                lines_of(&f, router_id, defs, out, skipped, depth + 1)?;
            }
            defs.insert("_PWD".into(), dir.display().to_string());
            continue;
        }
        for word in w {
            let t = match word.as_str() {
                "{" => Tok::Open,
                "}" => Tok::Close,
                _ => Tok::Word(word),
            };
            out.push((t, at.clone()));
        }
        out.push((Tok::Eol, at));
    }
    Ok(())
}

/// The files matching `pattern`, where only the last component may hold
/// `*` and `?` (what keepalived configs use).
fn glob(pattern: &Path) -> Vec<PathBuf> {
    let Some(name) = pattern.file_name().and_then(|n| n.to_str()) else {
        return Vec::new();
    };
    if !name.contains(['*', '?']) {
        return if pattern.is_file() {
            vec![pattern.to_path_buf()]
        } else {
            Vec::new()
        };
    }
    let dir = pattern.parent().unwrap_or(Path::new("."));
    std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| wildcard(name, &e.file_name().to_string_lossy()))
        .map(|e| e.path())
        .filter(|p| p.is_file())
        .collect()
}

fn wildcard(p: &str, s: &str) -> bool {
    let (p, s): (Vec<char>, Vec<char>) = (p.chars().collect(), s.chars().collect());
    fn m(p: &[char], s: &[char]) -> bool {
        match (p.first(), s.first()) {
            (None, None) => true,
            (Some('*'), _) => m(&p[1..], s) || (!s.is_empty() && m(p, &s[1..])),
            (Some('?'), Some(_)) => m(&p[1..], &s[1..]),
            (Some(a), Some(b)) if a == b => m(&p[1..], &s[1..]),
            _ => false,
        }
    }
    m(&p, &s)
}

/// Statements until a `}` (or the end), nesting blocks. A statement's
/// block opens with a `{` on its line or on the next.
fn block(toks: &[(Tok, At)], i: &mut usize) -> Vec<Node> {
    let mut out: Vec<Node> = Vec::new();
    while let Some((t, at)) = toks.get(*i) {
        *i += 1;
        let key = match t {
            Tok::Eol => continue,
            Tok::Close => break,
            // A stray `{` opens an anonymous block; keep its statements.
            Tok::Open => {
                out.extend(block(toks, i));
                continue;
            }
            Tok::Word(w) => w.clone(),
        };
        let mut node = Node {
            key,
            args: Vec::new(),
            children: Vec::new(),
            at: at.clone(),
        };
        while let Some((Tok::Word(w), _)) = toks.get(*i) {
            node.args.push(w.clone());
            *i += 1;
        }
        // The block, if one opens here or at the start of the next lines.
        let mut j = *i;
        while let Some((Tok::Eol, _)) = toks.get(j) {
            j += 1;
        }
        if let Some((Tok::Open, _)) = toks.get(j) {
            *i = j + 1;
            node.children = block(toks, i);
        }
        out.push(node);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str, router: Option<&str>) -> (Vec<Node>, Vec<Skipped>) {
        let dir =
            std::env::temp_dir().join(format!("lb-kad-{}-{}", std::process::id(), text.len()));
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join("keepalived.conf");
        std::fs::write(&p, text).unwrap();
        let r = read(&p, router).unwrap();
        let _ = std::fs::remove_dir_all(&dir);
        r
    }

    #[test]
    fn blocks_comments_quotes_and_braces_anywhere() {
        let (n, _) = parse(
            "! comment\nglobal_defs {\n  router_id r1 # trailing\n}\nvrrp_instance VI_1\n{\n  track_script {# note\n    chk\n  }\n  notify \"/bin/x a\"\n  virtual_ipaddress { 10.0.0.1/24 dev eth0 }\n}\n",
            None,
        );
        assert_eq!(n.len(), 2);
        assert_eq!(n[0].children[0].key, "router_id");
        assert_eq!(n[0].children[0].args, ["r1"]);
        let vi = &n[1];
        assert_eq!((vi.key.as_str(), vi.arg()), ("vrrp_instance", "VI_1"));
        assert_eq!(vi.children[0].key, "track_script");
        assert_eq!(vi.children[0].children[0].key, "chk");
        assert_eq!(vi.children[1].args, ["/bin/x a"]);
        assert_eq!(vi.children[2].children[0].key, "10.0.0.1/24");
        assert_eq!(vi.children[2].children[0].args, ["dev", "eth0"]);
        assert_eq!(vi.children[2].at.line, 11);
    }

    #[test]
    fn definitions_and_conditional_lines() {
        let text = "$IF=eth1\n${IF}x\n@r1 a $IF\n@r2 b\n@^r1 c\n";
        let (n, skipped) = parse(text, Some("r1"));
        let keys: Vec<_> = n.iter().map(|x| (x.key.clone(), x.args.clone())).collect();
        assert_eq!(
            keys,
            [
                ("eth1x".to_string(), vec![]),
                ("a".to_string(), vec!["eth1".to_string()])
            ]
        );
        assert_eq!(skipped.len(), 2);
        assert!(skipped[0].why.contains("r2"));
    }

    #[test]
    fn wildcards() {
        assert!(wildcard("*.conf", "a.conf"));
        assert!(wildcard("vs?.conf", "vs1.conf"));
        assert!(!wildcard("*.conf", "a.conf.bak"));
    }
}
