//! Which module of a crate names which, read from its source files, and the
//! circles among them.
//!
//! A module depends on another when its code names it: `use crate::x`,
//! `crate::x::y`, `super::x`, `self::x` or a child module by name. Files are
//! the nodes (an inline module such as `mod tests { .. }` belongs to its
//! file). A module naming one that contains it (`super::x`, an item of the
//! crate root) is not an edge: the container declares it, so containment is
//! not a circle. Every strongly connected component of more than one file is a
//! circle: its modules cannot be understood, tested or moved one without the
//! others.
//!
//! The reading is lexical (comments, strings and char literals skipped, then
//! paths found among the tokens), which is all a `use` or a path needs; it
//! does not expand macros.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// A module's path inside its crate: empty for the crate root.
type ModulePath = Vec<String>;

/// One circle: each file in it, with the files of the circle it names.
pub type Circle = Vec<(PathBuf, Vec<PathBuf>)>;

/// The circles among the modules of the library crate under `src` (files
/// named relative to `src`). `main.rs` next to a `lib.rs`, and `bin/`, are
/// crates of their own.
pub fn circles(src: &Path) -> Vec<Circle> {
    let edges = graph(src);
    strongly_connected(&edges)
        .into_iter()
        .filter(|component| component.len() > 1)
        .map(|component| {
            let members: BTreeSet<&PathBuf> = component.iter().collect();
            component
                .iter()
                .map(|file| {
                    let named = edges[file]
                        .iter()
                        .filter(|t| members.contains(t))
                        .cloned()
                        .collect();
                    (file.clone(), named)
                })
                .collect()
        })
        .collect()
}

/// A token of Rust source, as far as paths need.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Token {
    /// An identifier or keyword.
    Ident(String),
    /// `::`.
    Colons,
    /// Any other punctuation character.
    Punct(char),
}

/// The tokens of `src`, without comments, strings, char literals and
/// lifetimes' quotes.
fn tokens(src: &str) -> Vec<Token> {
    let chars: Vec<char> = src.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while let Some(&c) = chars.get(i) {
        let next = chars.get(i + 1).copied();
        if c == '/' && next == Some('/') {
            while chars.get(i).is_some_and(|&c| c != '\n') {
                i += 1;
            }
        } else if c == '/' && next == Some('*') {
            i = after_block_comment(&chars, i);
        } else if c == '"' {
            i = after_string(&chars, i);
        } else if c == '\'' {
            i = after_quote(&chars, i);
        } else if c.is_alphanumeric() || c == '_' {
            let start = i;
            while chars
                .get(i)
                .is_some_and(|&c| c.is_alphanumeric() || c == '_')
            {
                i += 1;
            }
            let word: String = chars[start..i].iter().collect();
            match raw_string_end(&chars, &word, i) {
                Some(end) => i = end,
                None => out.push(Token::Ident(word)),
            }
        } else if c == ':' && next == Some(':') {
            out.push(Token::Colons);
            i += 2;
        } else {
            if !c.is_whitespace() {
                out.push(Token::Punct(c));
            }
            i += 1;
        }
    }
    out
}

/// The index after the (possibly nested) block comment starting at `i`.
fn after_block_comment(chars: &[char], mut i: usize) -> usize {
    let mut depth = 0usize;
    while i < chars.len() {
        match (chars[i], chars.get(i + 1)) {
            ('/', Some('*')) => {
                depth += 1;
                i += 2;
            }
            ('*', Some('/')) => {
                depth -= 1;
                i += 2;
                if depth == 0 {
                    return i;
                }
            }
            _ => i += 1,
        }
    }
    i
}

/// The index after the string literal whose opening quote is at `i`.
fn after_string(chars: &[char], mut i: usize) -> usize {
    i += 1;
    while let Some(&c) = chars.get(i) {
        match c {
            '\\' => i += 2,
            '"' => return i + 1,
            _ => i += 1,
        }
    }
    i
}

/// The index after a char literal at `i`, or after the quote of a lifetime
/// (whose name is then read as an identifier).
fn after_quote(chars: &[char], i: usize) -> usize {
    match (chars.get(i + 1), chars.get(i + 2)) {
        (Some('\\'), _) => {
            let mut j = i + 3;
            while chars.get(j).is_some_and(|&c| c != '\'') {
                j += 1;
            }
            j + 1
        }
        (Some(_), Some('\'')) => i + 3,
        _ => i + 1,
    }
}

/// When `word` (just read, ending before `i`) opens a raw string (`r"`,
/// `r#"`, `br"`), the index after that string.
fn raw_string_end(chars: &[char], word: &str, i: usize) -> Option<usize> {
    if word != "r" && word != "br" {
        return None;
    }
    let hashes = chars[i..].iter().take_while(|&&c| c == '#').count();
    if chars.get(i + hashes) != Some(&'"') {
        return None;
    }
    let mut j = i + hashes + 1;
    while j < chars.len() {
        if chars[j] == '"'
            && chars[j + 1..]
                .iter()
                .take(hashes)
                .filter(|&&c| c == '#')
                .count()
                == hashes
        {
            return Some(j + 1 + hashes);
        }
        j += 1;
    }
    Some(j)
}

/// What one file says: its inline modules and the paths it names, each path
/// with the inline module it is written in.
#[derive(Default)]
struct Reading {
    /// Inline modules, as paths below the file's module.
    inline: Vec<ModulePath>,
    /// (inline module, path) of every path named.
    paths: Vec<(ModulePath, Vec<String>)>,
}

/// Reads the inline modules and named paths of one file's tokens.
fn read(tokens: &[Token]) -> Reading {
    let mut reading = Reading::default();
    let mut depth = 0usize;
    let mut open: Vec<(String, usize)> = Vec::new();
    let mut pending = None;
    let mut i = 0;
    while i < tokens.len() {
        let inner: ModulePath = open.iter().map(|(name, _)| name.clone()).collect();
        match &tokens[i] {
            Token::Ident(word) if word == "mod" => {
                if let (Some(Token::Ident(name)), Some(Token::Punct('{'))) =
                    (tokens.get(i + 1), tokens.get(i + 2))
                {
                    pending = Some(name.clone());
                }
            }
            Token::Ident(word) if word == "use" => {
                i += 1;
                let mut named = Vec::new();
                use_tree(tokens, &mut i, &[], &mut named);
                reading
                    .paths
                    .extend(named.into_iter().map(|path| (inner.clone(), path)));
                continue;
            }
            Token::Ident(first) if i == 0 || tokens[i - 1] != Token::Colons => {
                let mut path = vec![first.clone()];
                while let (Some(Token::Colons), Some(Token::Ident(next))) =
                    (tokens.get(i + 1), tokens.get(i + 2))
                {
                    path.push(next.clone());
                    i += 2;
                }
                if path.len() > 1 {
                    reading.paths.push((inner, path));
                }
            }
            Token::Punct('{') => {
                depth += 1;
                if let Some(name) = pending.take() {
                    let mut module = inner;
                    module.push(name.clone());
                    reading.inline.push(module);
                    open.push((name, depth));
                }
            }
            Token::Punct('}') => {
                if open.last().is_some_and(|&(_, d)| d == depth) {
                    open.pop();
                }
                depth = depth.saturating_sub(1);
            }
            _ => {}
        }
        i += 1;
    }
    reading
}

/// Reads the use tree at `i` below `prefix`, adding each path it names to
/// `out` (`a::{b, c::d}` names `a::b` and `a::c::d`); leaves `i` after it.
fn use_tree(tokens: &[Token], i: &mut usize, prefix: &[String], out: &mut Vec<Vec<String>>) {
    let mut path = prefix.to_vec();
    while let Some(token) = tokens.get(*i) {
        match token {
            Token::Ident(word) if word == "as" => *i += 2,
            Token::Ident(word) => {
                path.push(word.clone());
                *i += 1;
            }
            Token::Colons | Token::Punct('*') => *i += 1,
            Token::Punct('{') => {
                *i += 1;
                while !matches!(tokens.get(*i), None | Some(Token::Punct('}' | ';'))) {
                    use_tree(tokens, i, &path, out);
                    if tokens.get(*i) == Some(&Token::Punct(',')) {
                        *i += 1;
                    }
                }
                *i += 1;
                return;
            }
            _ => break,
        }
    }
    if tokens.get(*i) == Some(&Token::Punct(';')) {
        *i += 1;
    }
    out.push(path);
}

/// The library's files under `src` by module path.
fn crate_files(src: &Path) -> BTreeMap<ModulePath, PathBuf> {
    let library = src.join("lib.rs").exists();
    let mut files = BTreeMap::new();
    let mut dirs = vec![src.to_owned()];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{dir:?}: {e}")) {
            let path = entry.expect("a directory entry").path();
            let relative = path.strip_prefix(src).expect("under src").to_owned();
            if path.is_dir() {
                if relative != Path::new("bin") {
                    dirs.push(path);
                }
                continue;
            }
            if path.extension().is_none_or(|e| e != "rs")
                || library && relative == Path::new("main.rs")
            {
                continue;
            }
            let mut module: ModulePath = relative
                .with_extension("")
                .iter()
                .map(|part| part.to_string_lossy().into_owned())
                .collect();
            // `lib.rs` (or a lone `main.rs`) is the crate root, `x/mod.rs`
            // is module `x`.
            let root = module.len() == 1 && matches!(module[0].as_str(), "lib" | "main");
            let directory = module.len() > 1 && module.last().is_some_and(|m| m == "mod");
            if root || directory {
                module.pop();
            }
            files.insert(module, relative);
        }
    }
    files
}

/// Each file of the crate under `src` with the files it names.
fn graph(src: &Path) -> BTreeMap<PathBuf, BTreeSet<PathBuf>> {
    let files = crate_files(src);
    let readings: BTreeMap<&ModulePath, Reading> = files
        .iter()
        .map(|(module, file)| {
            let text = std::fs::read_to_string(src.join(file))
                .unwrap_or_else(|e| panic!("read {file:?}: {e}"));
            (module, read(&tokens(&text)))
        })
        .collect();
    let mut modules = files.clone();
    for (&module, reading) in &readings {
        for inline in &reading.inline {
            modules.insert(
                [module.clone(), inline.clone()].concat(),
                files[module].clone(),
            );
        }
    }
    let mut edges: BTreeMap<PathBuf, BTreeSet<PathBuf>> = files
        .values()
        .map(|f| (f.clone(), BTreeSet::new()))
        .collect();
    for (&module, reading) in &readings {
        let containers: BTreeSet<&PathBuf> = (0..=module.len())
            .filter_map(|n| files.get(&module[..n]))
            .collect();
        for (inner, path) in &reading.paths {
            let here = [module.clone(), inner.clone()].concat();
            if let Some(target) = resolve(&here, path, &modules)
                && !containers.contains(target)
            {
                edges
                    .get_mut(&files[module])
                    .expect("every file has edges")
                    .insert(target.clone());
            }
        }
    }
    edges
}

/// The file `path`, named in module `here`, leads to; `None` when it leads
/// out of the crate (another crate, a local item, a prelude name).
fn resolve<'a>(
    here: &[String],
    path: &[String],
    modules: &'a BTreeMap<ModulePath, PathBuf>,
) -> Option<&'a PathBuf> {
    let (mut base, mut rest): (ModulePath, &[String]) = match path.first().map(String::as_str) {
        Some("crate") => (Vec::new(), &path[1..]),
        Some("self" | "super") => (here.to_vec(), path),
        Some(first) if modules.contains_key(&[here, &[first.to_owned()]].concat()) => {
            (here.to_vec(), path)
        }
        _ => return None,
    };
    while let Some(step) = rest.first().filter(|s| *s == "self" || *s == "super") {
        if step == "super" {
            base.pop();
        }
        rest = &rest[1..];
    }
    let full: ModulePath = base.into_iter().chain(rest.iter().cloned()).collect();
    (0..=full.len()).rev().find_map(|n| modules.get(&full[..n]))
}

/// The strongly connected components of `edges` (Tarjan's algorithm).
fn strongly_connected(edges: &BTreeMap<PathBuf, BTreeSet<PathBuf>>) -> Vec<Vec<PathBuf>> {
    struct Walk<'a> {
        edges: &'a BTreeMap<PathBuf, BTreeSet<PathBuf>>,
        index: BTreeMap<&'a PathBuf, usize>,
        low: BTreeMap<&'a PathBuf, usize>,
        stack: Vec<&'a PathBuf>,
        components: Vec<Vec<PathBuf>>,
    }
    impl<'a> Walk<'a> {
        fn visit(&mut self, v: &'a PathBuf) {
            let n = self.index.len();
            self.index.insert(v, n);
            self.low.insert(v, n);
            self.stack.push(v);
            let edges = self.edges;
            for w in &edges[v] {
                if !self.index.contains_key(w) {
                    self.visit(w);
                    let low = self.low[v].min(self.low[w]);
                    self.low.insert(v, low);
                } else if self.stack.contains(&w) {
                    let low = self.low[v].min(self.index[w]);
                    self.low.insert(v, low);
                }
            }
            if self.low[v] == self.index[v] {
                let at = self
                    .stack
                    .iter()
                    .position(|&w| w == v)
                    .expect("v is on the stack");
                let mut component: Vec<PathBuf> = self.stack.drain(at..).cloned().collect();
                component.sort();
                self.components.push(component);
            }
        }
    }
    let mut walk = Walk {
        edges,
        index: BTreeMap::new(),
        low: BTreeMap::new(),
        stack: Vec::new(),
        components: Vec::new(),
    };
    for v in edges.keys() {
        if !walk.index.contains_key(v) {
            walk.visit(v);
        }
    }
    walk.components
}
