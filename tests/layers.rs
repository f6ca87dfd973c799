//! The layer table of `src/lib.rs`'s tour, held. Every source file of the crate and of the load
//! tester is found the way rustc finds it (from `lib.rs`/`main.rs` through `mod` declarations,
//! `#[path]` included, so `super::` resolves against the real module path) and parsed with syn;
//! every path into our own modules is collected (`use` trees, paths in code and types, and the
//! tokens of macro bodies, which syn leaves unparsed) and checked against the table, which is
//! read from the tour itself so it is written once.
//!
//! While the code is being moved into its layers, [`TOLERATED`] lists the edges known to break
//! the table. A tolerated edge that no longer exists fails the test too, so the list can only
//! shrink and never goes stale.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::path::{Path, PathBuf};

use proc_macro2::{Spacing, TokenStream, TokenTree};
use syn::spanned::Spanned;
use syn::visit::Visit;

/// Known violations of the table, `file -> module` (a module of ours, or `::name` for an
/// external crate the row forbids). Whoever removes a violation removes its line.
const TOLERATED: &[&str] = &[];

const ROOT: &str = env!("CARGO_MANIFEST_DIR");

/// One row of the table: what `layer` may use of ours, and which crates it may not use.
#[derive(Debug)]
struct Rule {
    allowed: Allowed,
    forbidden_crates: BTreeSet<String>,
}

#[derive(Debug, PartialEq)]
enum Allowed {
    Anything,
    Only(BTreeSet<String>),
}

/// The table in the order written (bottom layer first).
struct Table(Vec<(String, Rule)>);

impl Table {
    fn rule(&self, layer: &str) -> Option<&Rule> {
        self.0.iter().find(|(name, _)| name == layer).map(|(_, rule)| rule)
    }

    fn allows(&self, from: &str, to: &Target) -> bool {
        let Some(rule) = self.rule(from) else { return false };
        match to {
            Target::Crate(name) => !rule.forbidden_crates.contains(name),
            Target::Module(m) if m == from => true,
            Target::Module(m) => match &rule.allowed {
                Allowed::Anything => self.rule(m).is_some() && m != "loadtest",
                Allowed::Only(set) => set.contains(m),
            },
        }
    }
}

/// Reads the table under "## Layers" in `src/lib.rs`'s `//!` comment.
fn read_table() -> Table {
    let text = std::fs::read_to_string(Path::new(ROOT).join("src/lib.rs")).unwrap();
    let doc: Vec<&str> = text.lines().filter_map(|l| l.strip_prefix("//!")).map(str::trim).collect();
    let start = doc.iter().position(|l| *l == "## Layers").expect("src/lib.rs's tour has no '## Layers' section");
    let mut rows = Vec::new();
    for line in doc[start..].iter().skip_while(|l| !l.starts_with('|')).take_while(|l| l.starts_with('|')) {
        let cells: Vec<&str> = line.trim_matches('|').split('|').map(str::trim).collect();
        if cells.len() != 3 || cells[0] == "module" || cells[0].starts_with("---") {
            continue;
        }
        let name =
            backticked(cells[0]).into_iter().next().unwrap_or_else(|| panic!("layer row without a name: {line}"));
        let allowed = match cells[1] {
            "anything" => Allowed::Anything,
            "nothing" => Allowed::Only(BTreeSet::new()),
            names => Allowed::Only(backticked(names).into_iter().collect()),
        };
        rows.push((name, Rule { allowed, forbidden_crates: backticked(cells[2]).into_iter().collect() }));
    }
    assert!(!rows.is_empty(), "src/lib.rs's '## Layers' section has no table");
    Table(rows)
}

/// The `code` spans of a table cell.
fn backticked(cell: &str) -> Vec<String> {
    cell.split('`').skip(1).step_by(2).map(str::to_string).collect()
}

/// Where a path leads: one of our modules (by its layer), or an external crate.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Target {
    Module(String),
    Crate(String),
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Target::Module(m) => f.write_str(m),
            Target::Crate(c) => write!(f, "::{c}"),
        }
    }
}

/// One path into a module of ours (or a watched crate), where it was found.
#[derive(Debug)]
struct Reference {
    line: usize,
    target: Target,
}

/// How a source file names our crate's modules.
#[derive(Clone, Copy)]
enum Crate {
    /// The library itself: `crate::x`, `super::x`, `self::x`.
    Library,
    /// The load tester: `chunkyard::x` (its own `crate::` is itself, not ours).
    LoadTester,
}

/// Collects the references of one file whose module path is `module`.
struct Collector<'a> {
    krate: Crate,
    module: Vec<String>,
    watched_crates: &'a BTreeSet<String>,
    refs: Vec<Reference>,
}

impl Collector<'_> {
    /// Resolves a path given as its segments (`$crate` counts as `crate`).
    fn resolve(&self, segments: &[String]) -> Option<Target> {
        let first = segments.first()?.as_str();
        let absolute: Vec<String> = match (self.krate, first) {
            (Crate::Library, "crate") => segments[1..].to_vec(),
            (Crate::Library, "self") => self.module.iter().chain(&segments[1..]).cloned().collect(),
            (Crate::Library, "super") => {
                let ups = segments.iter().take_while(|s| *s == "super").count();
                let kept = self.module.len().checked_sub(ups).expect("super:: above the crate root");
                self.module[..kept].iter().chain(&segments[ups..]).cloned().collect()
            }
            (Crate::LoadTester, "chunkyard") => segments[1..].to_vec(),
            (_, name) if segments.len() > 1 && self.watched_crates.contains(name) => {
                return Some(Target::Crate(name.to_string()));
            }
            _ => return None,
        };
        // `crate::` alone (as in `pub(crate)`) names no module.
        absolute.into_iter().next().map(Target::Module)
    }

    fn record(&mut self, line: usize, segments: &[String]) {
        if let Some(target) = self.resolve(segments) {
            self.refs.push(Reference { line, target });
        }
    }

    fn use_tree(&mut self, prefix: &mut Vec<String>, tree: &syn::UseTree) {
        let line = tree.span().start().line;
        match tree {
            syn::UseTree::Path(p) => {
                prefix.push(p.ident.to_string());
                self.use_tree(prefix, &p.tree);
                prefix.pop();
            }
            syn::UseTree::Name(n) => self.use_leaf(line, prefix, &n.ident),
            syn::UseTree::Rename(r) => self.use_leaf(line, prefix, &r.ident),
            syn::UseTree::Glob(_) => {
                prefix.push("*".to_string());
                self.record(line, prefix);
                prefix.pop();
            }
            syn::UseTree::Group(g) => g.items.iter().for_each(|t| self.use_tree(prefix, t)),
        }
    }

    fn use_leaf(&mut self, line: usize, prefix: &[String], ident: &syn::Ident) {
        let mut full = prefix.to_vec();
        if ident != "self" {
            full.push(ident.to_string());
        }
        self.record(line, &full);
    }

    /// Paths in a token stream that syn does not parse (macro bodies, attribute arguments):
    /// every run `ident :: ident :: ...`, in nested groups too.
    fn tokens(&mut self, stream: TokenStream) {
        let tokens: Vec<TokenTree> = stream.into_iter().collect();
        let mut i = 0;
        while i < tokens.len() {
            match &tokens[i] {
                TokenTree::Group(g) => self.tokens(g.stream()),
                TokenTree::Ident(first) => {
                    let mut segments = vec![first.to_string()];
                    while let (Some(TokenTree::Punct(a)), Some(TokenTree::Punct(b)), Some(TokenTree::Ident(next))) =
                        (tokens.get(i + 1), tokens.get(i + 2), tokens.get(i + 3))
                    {
                        if a.as_char() != ':' || a.spacing() != Spacing::Joint || b.as_char() != ':' {
                            break;
                        }
                        segments.push(next.to_string());
                        i += 3;
                    }
                    self.record(first.span().start().line, &segments);
                }
                _ => {}
            }
            i += 1;
        }
    }
}

impl<'ast> Visit<'ast> for Collector<'_> {
    fn visit_item_use(&mut self, item: &'ast syn::ItemUse) {
        self.use_tree(&mut Vec::new(), &item.tree);
    }

    fn visit_path(&mut self, path: &'ast syn::Path) {
        let segments: Vec<String> = path.segments.iter().map(|s| s.ident.to_string()).collect();
        self.record(path.span().start().line, &segments);
        syn::visit::visit_path(self, path);
    }

    fn visit_macro(&mut self, mac: &'ast syn::Macro) {
        self.tokens(mac.tokens.clone());
        syn::visit::visit_macro(self, mac);
    }

    fn visit_meta_list(&mut self, list: &'ast syn::MetaList) {
        self.tokens(list.tokens.clone());
        syn::visit::visit_meta_list(self, list);
    }

    fn visit_item_mod(&mut self, item: &'ast syn::ItemMod) {
        // Inline modules (`mod tests { ... }`) deepen the path `super::` climbs; file modules
        // are collected as files of their own.
        if item.content.is_some() {
            self.module.push(item.ident.to_string());
            syn::visit::visit_item_mod(self, item);
            self.module.pop();
        }
    }
}

/// A source file of the module tree.
struct SourceFile {
    path: PathBuf,
    module: Vec<String>,
    ast: syn::File,
}

impl SourceFile {
    /// Relative to the repository, as messages and [`TOLERATED`] name it.
    fn name(&self) -> String {
        self.path.strip_prefix(ROOT).unwrap_or(&self.path).display().to_string()
    }
}

/// Every file of the crate rooted at `root`, with its module path, following `mod` items as
/// rustc does: `#[path]` is relative to the declaring file's folder; otherwise a module of
/// `lib.rs`, `main.rs`, `mod.rs` or a `#[path]` file lives beside it, one of `foo.rs` below
/// `foo/`.
fn module_tree(root: &Path) -> Vec<SourceFile> {
    let mut files = Vec::new();
    walk(root.to_path_buf(), Vec::new(), true, &mut files);
    files
}

fn walk(path: PathBuf, module: Vec<String>, owns_dir: bool, out: &mut Vec<SourceFile>) {
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let ast = syn::parse_file(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let dir = path.parent().unwrap().to_path_buf();
    let child_dir = if owns_dir { dir.clone() } else { dir.join(path.file_stem().unwrap()) };
    declared_modules(&ast.items, &dir, child_dir, &module, out);
    out.push(SourceFile { path, module, ast });
}

fn declared_modules(items: &[syn::Item], dir: &Path, child_dir: PathBuf, module: &[String], out: &mut Vec<SourceFile>) {
    for item in items {
        let syn::Item::Mod(m) = item else { continue };
        let mut sub = module.to_vec();
        sub.push(m.ident.to_string());
        let name = m.ident.to_string();
        match (&m.content, path_attribute(m)) {
            (Some((_, inner)), _) => declared_modules(inner, dir, child_dir.join(&name), &sub, out),
            (None, Some(p)) => walk(dir.join(p), sub, true, out),
            (None, None) => {
                let flat = child_dir.join(format!("{name}.rs"));
                let (file, owns) =
                    if flat.exists() { (flat, false) } else { (child_dir.join(&name).join("mod.rs"), true) };
                walk(file, sub, owns, out);
            }
        }
    }
}

fn path_attribute(m: &syn::ItemMod) -> Option<String> {
    m.attrs.iter().find(|a| a.path().is_ident("path")).map(|a| match &a.meta {
        syn::Meta::NameValue(syn::MetaNameValue {
            value: syn::Expr::Lit(syn::ExprLit { lit: syn::Lit::Str(s), .. }),
            ..
        }) => s.value(),
        _ => panic!("#[path] of mod {} is no string", m.ident),
    })
}

/// A reference the table does not allow.
#[derive(Debug)]
struct Violation {
    file: String,
    line: usize,
    from: String,
    to: Target,
}

impl Violation {
    /// The key [`TOLERATED`] uses.
    fn key(&self) -> String {
        format!("{} -> {}", self.file, self.to)
    }
}

/// The layer of a file (its top module; the load tester is one layer), `None` for crate roots.
fn layer(krate: Crate, file: &SourceFile) -> Option<String> {
    match krate {
        Crate::LoadTester => Some("loadtest".to_string()),
        Crate::Library => file.module.first().cloned(),
    }
}

fn references(krate: Crate, file: &SourceFile, watched_crates: &BTreeSet<String>) -> Vec<Reference> {
    let mut c = Collector { krate, module: file.module.clone(), watched_crates, refs: Vec::new() };
    c.visit_file(&file.ast);
    c.refs
}

/// Every violation in the crate rooted at `root`.
fn violations(table: &Table, krate: Crate, root: &Path) -> Vec<Violation> {
    let watched: BTreeSet<String> = table.0.iter().flat_map(|(_, r)| r.forbidden_crates.iter().cloned()).collect();
    let mut found = Vec::new();
    for file in module_tree(root) {
        let Some(from) = layer(krate, &file) else { continue };
        assert!(table.rule(&from).is_some(), "{}: module `{from}` has no row in src/lib.rs's layer table", file.name());
        for r in references(krate, &file, &watched) {
            if !table.allows(&from, &r.target) {
                found.push(Violation { file: file.name(), line: r.line, from: from.clone(), to: r.target });
            }
        }
    }
    found
}

/// Every `.rs` file below `dir`.
fn rust_files(dir: &Path, out: &mut BTreeSet<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.insert(path);
        }
    }
}

#[test]
fn every_reference_between_modules_follows_the_layer_table() {
    let table = read_table();
    let mut found = violations(&table, Crate::Library, &Path::new(ROOT).join("src/lib.rs"));
    found.extend(violations(&table, Crate::LoadTester, &Path::new(ROOT).join("loadtest/src/main.rs")));

    let tolerated: BTreeSet<&str> = TOLERATED.iter().copied().collect();
    assert_eq!(tolerated.len(), TOLERATED.len(), "TOLERATED lists an edge twice");
    let mut problems = Vec::new();
    let mut seen = BTreeSet::new();
    for v in &found {
        if !tolerated.contains(v.key().as_str()) && seen.insert((&v.file, v.line, &v.to)) {
            let why = match (&v.to, &table.rule(&v.from).unwrap().allowed) {
                (Target::Crate(c), _) => format!("{} may not use the {c} crate", v.from),
                (_, Allowed::Only(s)) if s.is_empty() => format!("{} may use nothing of ours", v.from),
                (_, Allowed::Only(s)) => {
                    format!("{} may use: {}", v.from, s.iter().cloned().collect::<Vec<_>>().join(", "))
                }
                (_, Allowed::Anything) => format!("{} is no row of the table", v.to),
            };
            problems.push(format!("{}:{}: {} -> {} is not allowed ({why})", v.file, v.line, v.from, v.to));
        }
    }
    let present: BTreeSet<String> = found.iter().map(Violation::key).collect();
    for t in &tolerated {
        if !present.contains(*t) {
            problems
                .push(format!("TOLERATED lists `{t}`, which no longer exists: remove its line from tests/layers.rs"));
        }
    }
    assert!(problems.is_empty(), "the layer table in src/lib.rs's tour is broken:\n  {}\n", problems.join("\n  "));
}

/// The module tree reaches every source file, so none goes unchecked.
#[test]
fn the_module_tree_covers_every_source_file() {
    for (root, dir) in [("src/lib.rs", "src"), ("loadtest/src/main.rs", "loadtest/src")] {
        let mut on_disk = BTreeSet::new();
        rust_files(&Path::new(ROOT).join(dir), &mut on_disk);
        let reached: BTreeSet<PathBuf> = module_tree(&Path::new(ROOT).join(root))
            .iter()
            .chain(&module_tree(&Path::new(ROOT).join(dir).join("main.rs")))
            .map(|f| f.path.canonicalize().unwrap())
            .collect();
        let missed: Vec<_> = on_disk.iter().filter(|p| !reached.contains(&p.canonicalize().unwrap())).collect();
        assert!(missed.is_empty(), "no mod declaration reaches {missed:?}");
    }
}

/// The rules the table must keep, whatever else changes in it; and it points one way.
#[test]
fn the_table_keeps_the_fixed_rules_and_has_no_cycle() {
    let table = read_table();
    let only = |layer: &str| match &table.rule(layer).unwrap_or_else(|| panic!("no row for {layer}")).allowed {
        Allowed::Only(s) => s.iter().map(String::as_str).collect::<Vec<_>>(),
        Allowed::Anything => panic!("{layer} may use anything"),
    };
    assert_eq!(only("format"), Vec::<&str>::new(), "format/ uses nothing of ours");
    assert_eq!(only("client"), ["format"], "client/ uses format/ only");
    assert_eq!(only("loadtest"), ["client"], "the load tester uses chunkyard::client only");
    for leaf in ["failpoint", "config", "metrics"] {
        assert!(only("store").contains(&leaf));
    }
    assert!(only("store").iter().all(|m| ["format", "failpoint", "config", "metrics"].contains(m)));
    assert!(!only("actors").contains(&"http"), "actors/ never HTTP");
    for c in ["http", "hyper", "h2"] {
        assert!(table.rule("actors").unwrap().forbidden_crates.contains(c), "actors/ may not use the {c} crate");
    }
    assert!(only("protocol").contains(&"actors") && !only("protocol").contains(&"store"));
    assert!(only("server").contains(&"protocol") && !only("server").contains(&"actors"));

    // Every row names only rows above it: no cycle, and nothing leans on `cli` or `testing`.
    for (i, (layer, rule)) in table.0.iter().enumerate() {
        if let Allowed::Only(set) = &rule.allowed {
            for m in set {
                let above = table.0[..i].iter().any(|(name, _)| name == m);
                assert!(above, "{layer} may use {m}, which is not a row above it");
            }
        }
    }
}

/// The collector finds each way a path can name a module, and the check fails on an edge
/// added by hand.
#[test]
fn a_forbidden_reference_is_found_in_every_form() {
    let table = read_table();
    let source = r#"
        use crate::server::Server;
        use crate::{format::Digest, store::{self, Datastore}};
        use super::super::protocol::x;
        fn f() -> crate::actors::Msg {
            let _ = crate::jobs::run();
            assert!(matches!(y, crate::cli::Z));
            h2::client::handshake();
        }
        mod tests {
            use super::*;
            use super::super::super::http::ApiError;
        }
        #[error(transparent = crate::config::X)]
        struct E;
    "#;
    let ast = syn::parse_file(source).unwrap();
    let file =
        SourceFile { path: PathBuf::from("src/format/blob.rs"), module: vec!["format".into(), "blob".into()], ast };
    let watched = ["h2".to_string()].into();
    let found: Vec<(usize, String)> =
        references(Crate::Library, &file, &watched).into_iter().map(|r| (r.line, r.target.to_string())).collect();
    let expected = [
        (2, "server"),
        (3, "format"),
        (3, "store"),
        (3, "store"),
        (4, "protocol"),
        (5, "actors"),
        (6, "jobs"),
        (7, "cli"),
        (8, "::h2"),
        (11, "format"),
        (12, "http"),
        (14, "config"),
    ];
    let expected: Vec<(usize, String)> = expected.iter().map(|(l, t)| (*l, t.to_string())).collect();
    assert_eq!(found, expected);
    for (_, target) in expected.iter().filter(|(_, t)| t != "format" && !t.starts_with("::")) {
        assert!(!table.allows("format", &Target::Module(target.clone())), "format may not use {target}");
    }
    assert!(!table.allows("actors", &Target::Crate("h2".into())));

    let loadtest = syn::parse_file("use chunkyard::{client::HttpClient, format::Digest};").unwrap();
    let file = SourceFile { path: PathBuf::from("loadtest/src/run.rs"), module: vec!["run".into()], ast: loadtest };
    let targets: Vec<String> = references(Crate::LoadTester, &file, &BTreeSet::new())
        .into_iter()
        .filter(|r| !table.allows("loadtest", &r.target))
        .map(|r| r.target.to_string())
        .collect();
    assert_eq!(targets, ["format"]);
}

/// Paths the collector must not take for ours.
#[test]
fn external_and_local_paths_are_not_references() {
    let source = r#"
        use metrics::counter;
        use std::io;
        pub(crate) fn f(x: self::Local) { let _ = Self::new(); super::sibling(); }
    "#;
    let ast = syn::parse_file(source).unwrap();
    let file = SourceFile { path: PathBuf::from("src/store/gc.rs"), module: vec!["store".into(), "gc".into()], ast };
    let targets: BTreeMap<String, usize> =
        references(Crate::Library, &file, &BTreeSet::new()).into_iter().fold(BTreeMap::new(), |mut m, r| {
            *m.entry(r.target.to_string()).or_default() += 1;
            m
        });
    assert_eq!(targets, [("store".to_string(), 2)].into());
}
