//! Rendering in Vault's output formats.
//!
//! * `table`: Vault's columnized `Key    Value` tables (four-space gutter,
//!   `---` separators), values printed the way Go's `%v` prints them.
//! * `json`: pretty-printed with two-space indentation, like Go's
//!   `json.MarshalIndent`.
//! * `yaml`: a small YAML emitter for JSON values written here (serde_yaml is
//!   not a workspace dependency); block style, strings quoted when needed.
//! * `raw`: the value as-is (used by `read` and `-field`).

use serde::Serialize;
use serde_json::{Map, Value};

/// An output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// Columnized tables.
    Table,
    /// Pretty JSON.
    Json,
    /// YAML.
    Yaml,
    /// Unformatted.
    Raw,
}

impl Format {
    /// Parses `-format` / `VAULT_FORMAT`.
    pub fn parse(s: &str) -> Option<Format> {
        match s.to_ascii_lowercase().as_str() {
            "table" | "" => Some(Format::Table),
            "json" => Some(Format::Json),
            "yaml" | "yml" => Some(Format::Yaml),
            "raw" => Some(Format::Raw),
            _ => None,
        }
    }
}

/// Vault's `-format=json` envelope for a secret: fixed key order.
#[derive(Serialize)]
struct SecretOut<'a> {
    request_id: &'a Value,
    lease_id: &'a Value,
    lease_duration: &'a Value,
    renewable: &'a Value,
    data: &'a Value,
    warnings: &'a Value,
    #[serde(skip_serializing_if = "is_null")]
    auth: &'a Value,
    #[serde(skip_serializing_if = "is_null")]
    wrap_info: &'a Value,
    #[serde(skip_serializing_if = "is_empty_str")]
    mount_type: &'a Value,
}

fn is_null(v: &&Value) -> bool {
    v.is_null()
}

fn is_empty_str(v: &&Value) -> bool {
    v.is_null() || v.as_str() == Some("")
}

const NULL: Value = Value::Null;

/// Prints a response envelope as JSON (in Vault's key order) or YAML.
pub fn print_envelope(format: Format, body: &Value) {
    let g = |k: &str| body.get(k).unwrap_or(&NULL);
    let out = SecretOut {
        request_id: g("request_id"),
        lease_id: g("lease_id"),
        lease_duration: g("lease_duration"),
        renewable: g("renewable"),
        data: g("data"),
        warnings: g("warnings"),
        auth: g("auth"),
        wrap_info: g("wrap_info"),
        mount_type: g("mount_type"),
    };
    print_structured(format, &out);
}

/// Pretty JSON with a trailing newline.
pub fn json(v: &impl Serialize) -> String {
    let mut s = serde_json::to_string_pretty(v).unwrap_or_else(|_| "null".into());
    s.push('\n');
    s
}

/// Prints a value as JSON or YAML (the non-table formats).
pub fn print_structured(format: Format, v: &impl Serialize) {
    match format {
        Format::Yaml => {
            let v = serde_json::to_value(v).unwrap_or(Value::Null);
            print!("{}", yaml(&v));
        }
        _ => print!("{}", json(v)),
    }
}

/// Go's `%v` rendering of a JSON value, as Vault's tables show it.
pub fn go_fmt(v: &Value) -> String {
    match v {
        Value::Null => "<nil>".into(),
        Value::String(s) => s.clone(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => n.to_string(),
        Value::Array(a) => format!("[{}]", a.iter().map(go_fmt).collect::<Vec<_>>().join(" ")),
        Value::Object(m) => format!(
            "map[{}]",
            m.iter()
                .map(|(k, v)| format!("{k}:{}", go_fmt(v)))
                .collect::<Vec<_>>()
                .join(" ")
        ),
    }
}

/// Go's `%q` rendering of a list of strings: `["a" "b"]`.
pub fn go_quoted_list(v: &Value) -> String {
    let items: Vec<String> = v
        .as_array()
        .map(|a| {
            a.iter()
                .map(|x| {
                    format!(
                        "{:?}",
                        x.as_str().map_or_else(|| x.to_string(), str::to_string)
                    )
                })
                .collect()
        })
        .unwrap_or_default();
    format!("[{}]", items.join(" "))
}

/// Vault's `humanDuration` of a number of seconds: `768h`, `1m30s`, `0s`.
pub fn human_duration(secs: i64) -> String {
    if secs == 0 {
        return "0s".into();
    }
    let neg = secs < 0;
    let mut s = secs.unsigned_abs();
    let h = s / 3600;
    s %= 3600;
    let m = s / 60;
    s %= 60;
    let mut out = String::new();
    if neg {
        out.push('-');
    }
    if h > 0 {
        out.push_str(&format!("{h}h{m}m{s}s"));
    } else if m > 0 {
        out.push_str(&format!("{m}m{s}s"));
    } else {
        out.push_str(&format!("{s}s"));
    }
    if out.ends_with("m0s") {
        out.truncate(out.len() - 2);
    }
    if let Some(i) = out.find("h0m") {
        out.replace_range(i + 1..i + 3, "");
    }
    out
}

/// Value of a JSON number or numeric string as seconds.
pub fn as_secs(v: &Value) -> Option<i64> {
    v.as_i64()
        .or_else(|| v.as_str().and_then(|s| s.parse().ok()))
}

fn looks_like_duration(k: &str) -> bool {
    k == "period" || k.ends_with("_period") || k == "ttl" || k.ends_with("_ttl")
}

/// One table cell for a data key, with Vault's TTL humanization.
pub fn cell(key: &str, v: &Value) -> String {
    if looks_like_duration(key) {
        if let Some(n) = as_secs(v) {
            return human_duration(n);
        }
    }
    go_fmt(v)
}

/// Columnizes rows (first row is the header) with Vault's four-space gutter.
pub fn columns(rows: &[Vec<String>]) -> String {
    let ncol = rows.iter().map(Vec::len).max().unwrap_or(0);
    let mut widths = vec![0; ncol];
    for r in rows {
        for (i, c) in r.iter().enumerate() {
            widths[i] = widths[i].max(c.chars().count());
        }
    }
    let mut out = String::new();
    for r in rows {
        let mut line = String::new();
        for (i, c) in r.iter().enumerate() {
            line.push_str(c);
            if i + 1 < r.len() {
                let pad = widths[i] - c.chars().count() + 4;
                line.push_str(&" ".repeat(pad));
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

/// A table with headers and `---` underlines.
pub fn table(headers: &[&str], rows: Vec<Vec<String>>) -> String {
    let mut all = vec![
        headers.iter().map(|h| h.to_string()).collect::<Vec<_>>(),
        headers.iter().map(|h| "-".repeat(h.len())).collect(),
    ];
    all.extend(rows);
    columns(&all)
}

/// The `Key / Value` table.
pub fn kv_table(rows: Vec<(String, String)>) -> String {
    table(
        &["Key", "Value"],
        rows.into_iter().map(|(k, v)| vec![k, v]).collect(),
    )
}

/// Rows for a data map, sorted by key.
pub fn data_rows(m: &Map<String, Value>) -> Vec<(String, String)> {
    let mut keys: Vec<&String> = m.keys().collect();
    keys.sort();
    keys.into_iter()
        .map(|k| (k.clone(), cell(k, &m[k])))
        .collect()
}

/// Vault's `padEqualSigns`: centers a section header in `=` signs.
pub fn pad_equal_signs(header: &str, total: usize) -> String {
    // At least two signs on each side, as in `== Secret Path ==`.
    let mut eq = total.saturating_sub(header.len() + 2).max(4);
    if eq % 2 == 1 {
        eq += 1;
    }
    let side = "=".repeat(eq / 2);
    format!("{side} {header} {side}")
}

/// Vault's `getHeaderForMap`: header width from the longest key.
pub fn header_for_map(header: &str, m: &Map<String, Value>) -> String {
    let max = m.keys().map(String::len).max().unwrap_or(0);
    pad_equal_signs(header, max + 4 + 5)
}

/// Table rows for a full secret envelope (Vault's `OutputSecret`): lease
/// info, auth info, then sorted data keys.
pub fn secret_rows(body: &Value) -> Vec<(String, String)> {
    let mut rows = Vec::new();
    let lease = body.get("lease_duration").and_then(as_secs).unwrap_or(0);
    if lease > 0 {
        let lease_id = body.get("lease_id").and_then(Value::as_str).unwrap_or("");
        if lease_id.is_empty() {
            rows.push(("refresh_interval".into(), human_duration(lease)));
        } else {
            rows.push(("lease_id".into(), lease_id.to_string()));
            rows.push(("lease_duration".into(), human_duration(lease)));
            let ren = body
                .get("renewable")
                .and_then(Value::as_bool)
                .unwrap_or(false);
            rows.push(("lease_renewable".into(), ren.to_string()));
        }
    }
    if let Some(auth) = body.get("auth").filter(|a| a.is_object()) {
        rows.extend(auth_rows(auth));
    }
    if let Some(w) = body.get("wrap_info").filter(|a| a.is_object()) {
        let g = |k: &str| w.get(k).map(go_fmt).unwrap_or_default();
        rows.push(("wrapping_token:".into(), g("token")));
        rows.push(("wrapping_accessor:".into(), g("accessor")));
        rows.push((
            "wrapping_token_ttl:".into(),
            human_duration(w.get("ttl").and_then(as_secs).unwrap_or(0)),
        ));
        rows.push(("wrapping_token_creation_time:".into(), g("creation_time")));
        rows.push(("wrapping_token_creation_path:".into(), g("creation_path")));
        if let Some(a) = w.get("wrapped_accessor").and_then(Value::as_str) {
            rows.push(("wrapped_accessor:".into(), a.to_string()));
        }
    }
    if let Some(Value::Object(d)) = body.get("data") {
        rows.extend(data_rows(d));
    }
    rows
}

/// Rows for an `auth` block (token create / login / renew).
pub fn auth_rows(auth: &Value) -> Vec<(String, String)> {
    let g = |k: &str| auth.get(k).unwrap_or(&NULL);
    let dur = as_secs(g("lease_duration")).unwrap_or(0);
    let mut rows = vec![
        ("token".to_string(), go_fmt(g("client_token"))),
        ("token_accessor".to_string(), go_fmt(g("accessor"))),
        (
            "token_duration".to_string(),
            if dur == 0 {
                "∞".to_string()
            } else {
                human_duration(dur)
            },
        ),
        (
            "token_renewable".to_string(),
            g("renewable").as_bool().unwrap_or(false).to_string(),
        ),
        (
            "token_policies".to_string(),
            go_quoted_list(if g("token_policies").is_null() {
                g("policies")
            } else {
                g("token_policies")
            }),
        ),
        (
            "identity_policies".to_string(),
            go_quoted_list(g("identity_policies")),
        ),
        ("policies".to_string(), go_quoted_list(g("policies"))),
    ];
    if let Some(Value::Object(meta)) = auth.get("metadata") {
        let mut keys: Vec<&String> = meta.keys().collect();
        keys.sort();
        for k in keys {
            rows.push((format!("token_meta_{k}"), go_fmt(&meta[k])));
        }
    }
    rows
}

/// A minimal YAML emitter for JSON values (block style).
pub fn yaml(v: &Value) -> String {
    let mut out = String::new();
    match v {
        Value::Object(m) if !m.is_empty() => yaml_map(m, 0, &mut out),
        Value::Array(a) if !a.is_empty() => yaml_seq(a, 0, &mut out),
        other => {
            out.push_str(&yaml_scalar(other));
            out.push('\n');
        }
    }
    out
}

fn yaml_scalar(v: &Value) -> String {
    match v {
        Value::Null => "null".into(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => n.to_string(),
        Value::String(s) => yaml_string(s),
        Value::Array(_) => "[]".into(),
        Value::Object(_) => "{}".into(),
    }
}

fn yaml_string(s: &str) -> String {
    let plain = !s.is_empty()
        && !s.starts_with(|c: char| c.is_whitespace() || "-?:,[]{}#&*!|>'\"%@`".contains(c))
        && !s.ends_with(char::is_whitespace)
        && !s.contains(": ")
        && !s.contains(" #")
        && !s.contains(['\n', '\t'])
        && !matches!(
            s.to_ascii_lowercase().as_str(),
            "true" | "false" | "yes" | "no" | "on" | "off" | "null" | "~" | "y" | "n"
        )
        && s.parse::<f64>().is_err();
    if plain {
        s.to_string()
    } else {
        serde_json::to_string(s).unwrap_or_default()
    }
}

fn yaml_map(m: &Map<String, Value>, indent: usize, out: &mut String) {
    let pad = " ".repeat(indent);
    for (k, v) in m {
        out.push_str(&format!("{pad}{}:", yaml_string(k)));
        yaml_child(v, indent, out);
    }
}

fn yaml_seq(a: &[Value], indent: usize, out: &mut String) {
    let pad = " ".repeat(indent);
    for v in a {
        out.push_str(&format!("{pad}-"));
        yaml_child(v, indent, out);
    }
}

fn yaml_child(v: &Value, indent: usize, out: &mut String) {
    match v {
        Value::Object(m) if !m.is_empty() => {
            out.push('\n');
            yaml_map(m, indent + 2, out);
        }
        Value::Array(a) if !a.is_empty() => {
            out.push('\n');
            yaml_seq(a, indent + 2, out);
        }
        other => {
            out.push(' ');
            out.push_str(&yaml_scalar(other));
            out.push('\n');
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn durations() {
        assert_eq!(human_duration(2_764_800), "768h");
        assert_eq!(human_duration(90), "1m30s");
        assert_eq!(human_duration(3600), "1h");
        assert_eq!(human_duration(3660), "1h1m");
        assert_eq!(human_duration(0), "0s");
    }

    #[test]
    fn headers() {
        assert_eq!(pad_equal_signs("Secret Path", 17), "== Secret Path ==");
        assert_eq!(pad_equal_signs("Secret Path", 15), "== Secret Path ==");
        let m = json!({"custom_metadata": 1});
        assert_eq!(
            header_for_map("Metadata", m.as_object().unwrap()),
            "======= Metadata ======="
        );
        let d = json!({"passcode": 1});
        assert_eq!(
            header_for_map("Data", d.as_object().unwrap()),
            "====== Data ======"
        );
    }

    #[test]
    fn tables() {
        let t = kv_table(vec![("password".into(), "x".into())]);
        assert_eq!(t, "Key         Value\n---         -----\npassword    x\n");
    }

    #[test]
    fn yaml_emitter() {
        let v = json!({"a": {"b": [1, "x"], "c": null}, "d": "true", "e": []});
        assert_eq!(
            yaml(&v),
            "a:\n  b:\n    - 1\n    - x\n  c: null\nd: \"true\"\ne: []\n"
        );
    }
}
