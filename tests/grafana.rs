//! The Grafana dashboard only queries metrics the server exports (names from
//! `chunkyard::metrics::CATALOGUE`, with `_bucket`/`_sum`/`_count` for histograms), its PromQL
//! parses (promtool), its data source is a template variable, and its panels do not overlap.

#[path = "common/promtool.rs"]
mod promtool;

use std::collections::BTreeSet;

use chunkyard::metrics::{self, CATALOGUE};
use serde_json::Value;

const DASHBOARD: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/grafana/dashboards/chunkyard.json");

fn dashboard() -> Value {
    serde_json::from_str(&std::fs::read_to_string(DASHBOARD).unwrap()).unwrap()
}

/// Every `expr` string anywhere in the dashboard (panels, nested rows).
fn exprs(v: &Value, out: &mut Vec<String>) {
    match v {
        Value::Object(m) => {
            for (k, v) in m {
                match (k.as_str(), v) {
                    ("expr", Value::String(s)) => out.push(s.clone()),
                    _ => exprs(v, out),
                }
            }
        }
        Value::Array(a) => a.iter().for_each(|v| exprs(v, out)),
        _ => {}
    }
}

const KEYWORDS: &[&str] =
    &["by", "without", "on", "ignoring", "group_left", "group_right", "bool", "and", "or", "unless", "offset"];
/// Aggregation operators may be followed by `by (...)` before their parenthesis.
const AGGREGATIONS: &[&str] = &[
    "sum",
    "min",
    "max",
    "avg",
    "group",
    "stddev",
    "stdvar",
    "count",
    "count_values",
    "bottomk",
    "topk",
    "quantile",
    "limitk",
    "limit_ratio",
];

/// The metric names a PromQL expression selects: identifiers that are not functions,
/// aggregation operators, keywords, label names in `by (...)`/matchers, or numbers.
fn metric_names(expr: &str) -> Vec<String> {
    let chars: Vec<char> = expr.chars().collect();
    let mut names = Vec::new();
    let mut i = 0;
    let mut skip_group = false;
    while i < chars.len() {
        let c = chars[i];
        match c {
            '"' | '\'' | '`' => {
                i += 1;
                while i < chars.len() && chars[i] != c {
                    i += if chars[i] == '\\' { 2 } else { 1 };
                }
                i += 1;
            }
            '{' | '[' => {
                let close = if c == '{' { '}' } else { ']' };
                while i < chars.len() && chars[i] != close {
                    if chars[i] == '"' {
                        i += 1;
                        while i < chars.len() && chars[i] != '"' {
                            i += if chars[i] == '\\' { 2 } else { 1 };
                        }
                    }
                    i += 1;
                }
                i += 1;
            }
            '(' if skip_group => {
                while i < chars.len() && chars[i] != ')' {
                    i += 1;
                }
                skip_group = false;
                i += 1;
            }
            '$' => {
                i += 1;
                while i < chars.len() && (chars[i].is_alphanumeric() || chars[i] == '_') {
                    i += 1;
                }
            }
            c if c.is_ascii_digit() || (c == '.' && chars.get(i + 1).is_some_and(|d| d.is_ascii_digit())) => {
                while i < chars.len() && (chars[i].is_ascii_alphanumeric() || chars[i] == '.') {
                    i += 1;
                    if i < chars.len() && matches!(chars[i - 1], 'e' | 'E') && matches!(chars[i], '+' | '-') {
                        i += 1;
                    }
                }
            }
            c if c.is_ascii_alphabetic() || c == '_' || c == ':' => {
                let start = i;
                while i < chars.len() && (chars[i].is_ascii_alphanumeric() || chars[i] == '_' || chars[i] == ':') {
                    i += 1;
                }
                let word: String = chars[start..i].iter().collect();
                let mut j = i;
                while j < chars.len() && chars[j].is_whitespace() {
                    j += 1;
                }
                let is_call = chars.get(j) == Some(&'(');
                if KEYWORDS.contains(&word.as_str()) {
                    skip_group =
                        matches!(word.as_str(), "by" | "without" | "on" | "ignoring" | "group_left" | "group_right");
                } else if !is_call && !AGGREGATIONS.contains(&word.as_str()) {
                    names.push(word);
                }
            }
            _ => i += 1,
        }
    }
    names
}

fn exported() -> BTreeSet<String> {
    CATALOGUE.iter().flat_map(metrics::series_names).collect()
}

#[test]
fn extractor_finds_metrics_and_ignores_labels_functions_and_numbers() {
    let e = r#"histogram_quantile(0.95, sum by (le, stage) (rate(a_bucket{instance=~"$x", q="}"}[$__rate_interval]))) / clamp_min(sum without (x) (b_total offset 5m), 1e-9) + on (job) group_left c"#;
    assert_eq!(metric_names(e), ["a_bucket", "b_total", "c"]);
}

#[test]
fn dashboard_queries_only_exported_metrics() {
    let d = dashboard();
    let mut all = Vec::new();
    exprs(&d["panels"], &mut all);
    assert!(all.len() >= 20, "only {} expressions", all.len());
    let exported = exported();
    let mut used = BTreeSet::new();
    for e in &all {
        let names = metric_names(e);
        assert!(!names.is_empty(), "no metric in {e}");
        for n in names {
            assert!(exported.contains(&n), "dashboard uses `{n}`, which chunkyard does not export (in {e})");
            used.insert(n);
        }
        if e.contains("histogram_quantile") {
            assert!(e.contains("_bucket") && e.contains("le"), "quantile without buckets/le: {e}");
        }
    }
    // the template variables' queries too
    for var in d["templating"]["list"].as_array().unwrap() {
        if let Some(def) = var["definition"].as_str() {
            let inner = def.strip_prefix("label_values(").and_then(|s| s.split(',').next()).expect(def);
            assert!(exported.contains(inner), "variable {} queries {inner}", var["name"]);
        }
    }
    // what issue #5 asks the dashboard to show
    for required in [
        "chunkyard_encoded_bytes_total",
        "chunkyard_written_bytes_total",
        "chunkyard_stage_duration_seconds_bucket",
        "chunkyard_stage_queue_depth",
        "chunkyard_sessions_active",
        "chunkyard_errors_total",
        "chunkyard_datastore_used_bytes",
    ] {
        assert!(used.contains(required), "dashboard lacks {required}");
    }
}

#[test]
fn datasource_is_a_template_variable_and_layout_is_sane() {
    let d = dashboard();
    assert_eq!(d["__inputs"][0]["name"], "DS_PROMETHEUS");
    let vars = d["templating"]["list"].as_array().unwrap();
    let ds = vars.iter().find(|v| v["type"] == "datasource").expect("datasource variable");
    assert_eq!(ds["name"], "datasource");
    assert_eq!(ds["query"], "prometheus");
    let panels = d["panels"].as_array().unwrap();
    let mut boxes = Vec::new();
    for p in panels {
        let g = &p["gridPos"];
        let (x, y, w, h) =
            (g["x"].as_i64().unwrap(), g["y"].as_i64().unwrap(), g["w"].as_i64().unwrap(), g["h"].as_i64().unwrap());
        assert!(x >= 0 && w > 0 && x + w <= 24, "panel {} off the grid", p["title"]);
        for (t, bx, by, bw, bh) in &boxes {
            let overlap = x < bx + bw && *bx < x + w && y < by + bh && *by < y + h;
            assert!(!overlap, "panels {} and {t} overlap", p["title"]);
        }
        boxes.push((p["title"].clone(), x, y, w, h));
        if p["type"] != "row" {
            assert_eq!(p["datasource"]["uid"], "${datasource}", "panel {}", p["title"]);
            for t in p["targets"].as_array().unwrap() {
                assert_eq!(t["datasource"]["uid"], "${datasource}", "panel {}", p["title"]);
            }
        }
    }
    let ids: BTreeSet<_> = panels.iter().map(|p| p["id"].as_i64().unwrap()).collect();
    assert_eq!(ids.len(), panels.len(), "panel ids must be unique");
}

#[test]
fn every_expression_parses_with_promtool() {
    let Some(promtool) = promtool::promtool() else { return };
    let mut all = Vec::new();
    exprs(&dashboard()["panels"], &mut all);
    let mut rules = String::from("groups:\n  - name: dashboard\n    rules:\n");
    for (i, e) in all.iter().enumerate() {
        let e = e.replace("$__rate_interval", "1m").replace("$__range", "1h").replace("$instance", ".*");
        rules.push_str(&format!(
            "      - record: dashboard:expr_{i}\n        expr: {}\n",
            serde_json::to_string(&e).unwrap()
        ));
    }
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("rules.yaml");
    std::fs::write(&file, rules).unwrap();
    let (ok, out) = promtool::run(&promtool, &["check", "rules", file.to_str().unwrap()], b"");
    assert!(ok, "promtool rejects a dashboard expression:\n{out}");
    assert!(out.contains(&format!("{} rules found", all.len())), "{out}");
}
