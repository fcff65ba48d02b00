//! Policy text → path rules.
//!
//! A policy is HCL or JSON (text whose first non-blank character is `{`), as
//! Vault accepts it:
//!
//! ```hcl
//! path "secret/*" {
//!   capabilities = ["read", "list"]
//! }
//! ```
//!
//! ```json
//! {"path": {"secret/*": {"capabilities": ["read", "list"]}}}
//! ```
//!
//! Each `path "<pattern>"` block may hold `capabilities`, the legacy
//! `policy = "deny" | "read" | "write" | "sudo"`, `allowed_parameters`,
//! `denied_parameters` (maps of parameter name → list of values),
//! `required_parameters` (a list of names, as in Vault), `min_wrapping_ttl`,
//! `max_wrapping_ttl` (seconds or duration strings) and a free-text `comment`.
//! At the top level only `path` blocks and Vault's optional `name = "..."`
//! attribute are allowed. Anything else is an error, as are unknown
//! capabilities and `+*` in a pattern. A syntactically valid policy with no
//! rule at all is accepted (Vault does too).
//!
//! The parameter and wrapping-TTL constraints are parsed, validated and kept
//! in each [`PathRule`] but **not enforced yet**: the authorization decision
//! ([`crate::acl`]) looks at capabilities only, as the gRPC contract carries
//! no request data or wrap TTL.
//!
//! Patterns containing identity templates (`{{identity.entity.id}}`, …) are
//! kept verbatim; since there is no identity store yet they never match (see
//! [`PathRule::is_templated`]).
//!
//! The `hcl` crate implements HCL2; Vault parses HCL1. Every policy form
//! Vault documents (block syntax, `key = value`, object literals with quoted
//! keys, comments) is common to both.

use std::collections::{BTreeMap, HashSet};
use std::fmt;
use std::time::Duration;

use hcl::{Expression, ObjectKey, Structure};
use serde_json::Value;

/// One capability a path rule can carry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Capability {
    Create,
    Read,
    Update,
    Patch,
    Delete,
    List,
    Sudo,
    Deny,
    Subscribe,
}

impl Capability {
    /// Every capability.
    pub const ALL: [Capability; 9] = [
        Capability::Create,
        Capability::Read,
        Capability::Update,
        Capability::Patch,
        Capability::Delete,
        Capability::List,
        Capability::Sudo,
        Capability::Deny,
        Capability::Subscribe,
    ];

    /// The capability's name in policy text (`"read"`, `"sudo"`, …).
    pub fn as_str(self) -> &'static str {
        match self {
            Capability::Create => "create",
            Capability::Read => "read",
            Capability::Update => "update",
            Capability::Patch => "patch",
            Capability::Delete => "delete",
            Capability::List => "list",
            Capability::Sudo => "sudo",
            Capability::Deny => "deny",
            Capability::Subscribe => "subscribe",
        }
    }

    /// Parses a capability name (exact, lower-case, as Vault requires).
    pub fn from_name(name: &str) -> Option<Capability> {
        Capability::ALL.into_iter().find(|c| c.as_str() == name)
    }

    fn bit(self) -> u16 {
        1 << (self as u16)
    }
}

impl fmt::Display for Capability {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A set of capabilities (a bitmap, cheap to copy and union).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct CapabilitySet(u16);

impl CapabilitySet {
    /// The empty set.
    pub const EMPTY: CapabilitySet = CapabilitySet(0);

    /// Whether `cap` is in the set.
    pub fn contains(self, cap: Capability) -> bool {
        self.0 & cap.bit() != 0
    }

    /// Adds `cap`.
    pub fn insert(&mut self, cap: Capability) {
        self.0 |= cap.bit();
    }

    /// The union of both sets.
    pub fn union(self, other: CapabilitySet) -> CapabilitySet {
        CapabilitySet(self.0 | other.0)
    }

    /// Whether the set holds no capability.
    pub fn is_empty(self) -> bool {
        self.0 == 0
    }

    /// The capabilities in the set, in [`Capability::ALL`] order.
    pub fn iter(self) -> impl Iterator<Item = Capability> {
        Capability::ALL
            .into_iter()
            .filter(move |c| self.contains(*c))
    }

    /// The names in the set, sorted alphabetically (Vault's output order).
    pub fn names(self) -> Vec<String> {
        let mut names: Vec<String> = self.iter().map(|c| c.as_str().to_string()).collect();
        names.sort_unstable();
        names
    }
}

impl FromIterator<Capability> for CapabilitySet {
    fn from_iter<I: IntoIterator<Item = Capability>>(iter: I) -> Self {
        let mut set = CapabilitySet::EMPTY;
        for cap in iter {
            set.insert(cap);
        }
        set
    }
}

/// Parameter constraints of a rule: lower-cased parameter name → values
/// (`*` as the name means every parameter; an empty list means any value).
pub type ParameterMap = BTreeMap<String, Vec<Value>>;

/// One `path "<pattern>" { ... }` block.
#[derive(Debug, Clone, PartialEq)]
pub struct PathRule {
    /// The pattern as written, without a leading `/`: exact (`secret/foo`),
    /// glob (`secret/*`), segment (`secret/+/x`), or both (`secret/+/x/*`).
    pub path: String,
    /// The capabilities granted; `deny` alone when the rule denies.
    pub capabilities: CapabilitySet,
    /// `allowed_parameters` (kept, not enforced yet).
    pub allowed_parameters: Option<ParameterMap>,
    /// `denied_parameters` (kept, not enforced yet).
    pub denied_parameters: Option<ParameterMap>,
    /// `required_parameters` (kept, not enforced yet).
    pub required_parameters: Vec<String>,
    /// `min_wrapping_ttl` (kept, not enforced yet).
    pub min_wrapping_ttl: Option<Duration>,
    /// `max_wrapping_ttl` (kept, not enforced yet).
    pub max_wrapping_ttl: Option<Duration>,
}

impl PathRule {
    /// Whether the pattern uses identity templating (`{{...}}`). Such rules
    /// never match until an identity store exists.
    pub fn is_templated(&self) -> bool {
        self.path.contains("{{")
    }
}

/// The rules of one policy, in the order written.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ParsedPolicy {
    /// The `path` blocks, in order.
    pub rules: Vec<PathRule>,
}

/// Why a policy text was refused. For syntax errors the message carries the
/// parser's line and column.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("failed to parse policy: {0}")]
pub struct ParseError(String);

impl ParseError {
    /// The reason, without the `failed to parse policy:` prefix.
    pub fn reason(&self) -> &str {
        &self.0
    }
}

/// A path block before validation: its pattern and its key/value pairs.
struct RawRule {
    pattern: String,
    attrs: Vec<(String, Value)>,
}

/// Parses HCL or JSON policy text into rules.
pub fn parse_policy(text: &str) -> Result<ParsedPolicy, ParseError> {
    let raw = if text.trim_start().starts_with('{') {
        json_rules(text)?
    } else {
        hcl_rules(text)?
    };
    let rules = raw
        .into_iter()
        .map(build_rule)
        .collect::<Result<Vec<_>, _>>()?;
    Ok(ParsedPolicy { rules })
}

fn hcl_rules(text: &str) -> Result<Vec<RawRule>, ParseError> {
    if text.trim().is_empty() {
        return Ok(Vec::new());
    }
    // hcl's parser recurses per nesting level: refuse deep text before it
    // can overflow the stack (found by the fuzz targets, issue 13).
    bulwark_shared::hcl_depth::check(text).map_err(|e| ParseError(e.to_string()))?;
    let body = hcl::parse(text).map_err(|e| match e {
        // Not `Display`: it pads a caret to the column, which panics past
        // column 65535 (found by the fuzz targets, issue 13).
        hcl::Error::Parse(p) => ParseError(format!(
            "line {}, column {}: {}",
            p.location().line(),
            p.location().column(),
            p.message()
        )),
        other => ParseError(other.to_string()),
    })?;
    let mut out = Vec::new();
    for structure in body.iter() {
        match structure {
            Structure::Attribute(attr) => {
                let value = expr_to_json(attr.expr())
                    .map_err(|m| ParseError(format!("{}: {m}", attr.key())))?;
                top_level_attribute(attr.key(), &value)?;
            }
            Structure::Block(block) => {
                if block.identifier() != "path" {
                    return Err(ParseError(format!(
                        "invalid block {:?}: only \"path\" blocks are allowed",
                        block.identifier()
                    )));
                }
                let [label] = block.labels() else {
                    return Err(ParseError(format!(
                        "a path block needs exactly one label (the path pattern), found {}",
                        block.labels().len()
                    )));
                };
                let pattern = label.as_str().to_string();
                let mut attrs = Vec::new();
                for inner in block.body().iter() {
                    match inner {
                        Structure::Attribute(a) => {
                            let value = expr_to_json(a.expr()).map_err(|m| {
                                ParseError(format!("path {pattern:?}: {}: {m}", a.key()))
                            })?;
                            attrs.push((a.key().to_string(), value));
                        }
                        Structure::Block(b) => {
                            return Err(ParseError(format!(
                                "path {pattern:?}: invalid key {:?}",
                                b.identifier()
                            )));
                        }
                    }
                }
                out.push(RawRule { pattern, attrs });
            }
        }
    }
    Ok(out)
}

/// Top-level attributes: only Vault's informational `name`.
fn top_level_attribute(key: &str, value: &Value) -> Result<(), ParseError> {
    match (key, value) {
        ("name", Value::String(_)) => Ok(()),
        ("name", _) => Err(ParseError("name: must be a string".into())),
        (other, _) => Err(ParseError(format!("invalid key {other:?}"))),
    }
}

/// Converts a literal HCL expression to JSON; anything that would need
/// evaluation (variables, function calls, operators) is refused.
fn expr_to_json(expr: &Expression) -> Result<Value, String> {
    Ok(match expr {
        Expression::Null => Value::Null,
        Expression::Bool(b) => Value::Bool(*b),
        Expression::Number(n) => {
            if let Some(u) = n.as_u64() {
                Value::from(u)
            } else if let Some(i) = n.as_i64() {
                Value::from(i)
            } else {
                n.as_f64()
                    .and_then(serde_json::Number::from_f64)
                    .map(Value::Number)
                    .ok_or_else(|| "invalid number".to_string())?
            }
        }
        Expression::String(s) => Value::String(s.clone()),
        // HCL1 has no interpolation: keep a template's text literally.
        Expression::TemplateExpr(t) => Value::String(t.to_string()),
        Expression::Array(items) => Value::Array(
            items
                .iter()
                .map(expr_to_json)
                .collect::<Result<Vec<_>, _>>()?,
        ),
        Expression::Object(object) => {
            let mut map = serde_json::Map::new();
            for (key, value) in object {
                let key = match key {
                    ObjectKey::Identifier(ident) => ident.as_str().to_string(),
                    ObjectKey::Expression(Expression::String(s)) => s.clone(),
                    _ => return Err("object keys must be names or quoted strings".into()),
                };
                if map.insert(key.clone(), expr_to_json(value)?).is_some() {
                    return Err(format!("duplicate key {key:?}"));
                }
            }
            Value::Object(map)
        }
        Expression::Parenthesis(inner) => expr_to_json(inner)?,
        _ => {
            return Err(
                "only literal strings, numbers, booleans, lists and objects are allowed".into(),
            )
        }
    })
}

fn json_rules(text: &str) -> Result<Vec<RawRule>, ParseError> {
    let root: Value = serde_json::from_str(text).map_err(|e| ParseError(e.to_string()))?;
    let Value::Object(top) = root else {
        return Err(ParseError("does not contain a root object".into()));
    };
    let mut out = Vec::new();
    for (key, value) in top {
        if key == "path" {
            json_paths(&value, &mut out)?;
        } else {
            top_level_attribute(&key, &value)?;
        }
    }
    Ok(out)
}

/// `"path"`'s value: `{"<pattern>": {...}}`, or a list of such objects (the
/// HCL1 JSON form of repeated blocks). A pattern's body may itself be a list
/// of objects.
fn json_paths(value: &Value, out: &mut Vec<RawRule>) -> Result<(), ParseError> {
    match value {
        Value::Object(patterns) => {
            for (pattern, body) in patterns {
                let bodies: Vec<&Value> = match body {
                    Value::Array(items) => items.iter().collect(),
                    other => vec![other],
                };
                for body in bodies {
                    let Value::Object(attrs) = body else {
                        return Err(ParseError(format!("path {pattern:?}: must be an object")));
                    };
                    out.push(RawRule {
                        pattern: pattern.clone(),
                        attrs: attrs.iter().map(|(k, v)| (k.clone(), v.clone())).collect(),
                    });
                }
            }
            Ok(())
        }
        Value::Array(items) => items.iter().try_for_each(|item| json_paths(item, out)),
        _ => Err(ParseError(
            "\"path\" must be an object of path patterns".into(),
        )),
    }
}

/// Validates one path block and turns it into a [`PathRule`].
fn build_rule(raw: RawRule) -> Result<PathRule, ParseError> {
    let RawRule { pattern, attrs } = raw;
    let err = |msg: String| ParseError(format!("path {pattern:?}: {msg}"));

    let mut seen = HashSet::new();
    let mut capabilities = CapabilitySet::EMPTY;
    let mut legacy: Option<String> = None;
    let mut allowed_parameters = None;
    let mut denied_parameters = None;
    let mut required_parameters = Vec::new();
    let mut min_wrapping_ttl = None;
    let mut max_wrapping_ttl = None;

    for (key, value) in attrs {
        if !seen.insert(key.clone()) {
            return Err(err(format!("duplicate key {key:?}")));
        }
        match key.as_str() {
            "capabilities" => {
                for name in string_list(&value).map_err(|m| err(format!("capabilities: {m}")))? {
                    let cap = Capability::from_name(&name)
                        .ok_or_else(|| err(format!("invalid capability {name:?}")))?;
                    capabilities.insert(cap);
                }
            }
            "policy" => match value {
                Value::String(s) => legacy = Some(s),
                _ => return Err(err("policy: must be a string".into())),
            },
            "allowed_parameters" => {
                allowed_parameters = Some(
                    parameter_map(&value).map_err(|m| err(format!("allowed_parameters: {m}")))?,
                );
            }
            "denied_parameters" => {
                denied_parameters = Some(
                    parameter_map(&value).map_err(|m| err(format!("denied_parameters: {m}")))?,
                );
            }
            "required_parameters" => {
                required_parameters =
                    string_list(&value).map_err(|m| err(format!("required_parameters: {m}")))?;
            }
            "min_wrapping_ttl" => {
                min_wrapping_ttl = bulwark_shared::ttl::parse_duration_value(&value)
                    .map_err(|e| err(format!("error parsing min_wrapping_ttl: {e}")))?;
            }
            "max_wrapping_ttl" => {
                max_wrapping_ttl = bulwark_shared::ttl::parse_duration_value(&value)
                    .map_err(|e| err(format!("error parsing max_wrapping_ttl: {e}")))?;
            }
            "comment" => {
                if !matches!(value, Value::String(_) | Value::Null) {
                    return Err(err("comment: must be a string".into()));
                }
            }
            other => return Err(err(format!("invalid key {other:?}"))),
        }
    }

    // The pre-0.2 `policy = "..."` form, mapped as Vault maps it.
    if let Some(policy) = legacy.filter(|p| !p.is_empty()) {
        use Capability::*;
        let granted: &[Capability] = match policy.as_str() {
            "deny" => &[Deny],
            "read" => &[Read, List],
            "write" => &[Create, Read, Update, Delete, List],
            "sudo" => &[Create, Read, Update, Delete, List, Sudo],
            other => return Err(err(format!("invalid policy {other:?}"))),
        };
        capabilities = capabilities.union(granted.iter().copied().collect());
    }

    // `deny` excludes everything else, parameter constraints included.
    if capabilities.contains(Capability::Deny) {
        capabilities = [Capability::Deny].into_iter().collect();
        allowed_parameters = None;
        denied_parameters = None;
    }

    if let (Some(min), Some(max)) = (min_wrapping_ttl, max_wrapping_ttl) {
        if max < min {
            return Err(err(
                "max_wrapping_ttl cannot be less than min_wrapping_ttl".into()
            ));
        }
    }

    // Paths in Vault start after the `/` of the API path.
    let path = pattern.strip_prefix('/').unwrap_or(&pattern).to_string();
    if path.contains("+*") {
        return Err(ParseError(format!(
            "path {path:?}: invalid use of wildcards ('+*' is forbidden)"
        )));
    }

    Ok(PathRule {
        path,
        capabilities,
        allowed_parameters,
        denied_parameters,
        required_parameters,
        min_wrapping_ttl,
        max_wrapping_ttl,
    })
}

/// A list of strings (a lone string counts as a list of one, as in HCL1).
fn string_list(value: &Value) -> Result<Vec<String>, String> {
    match value {
        Value::String(s) => Ok(vec![s.clone()]),
        Value::Array(items) => items
            .iter()
            .map(|v| match v {
                Value::String(s) => Ok(s.clone()),
                other => Err(format!("expected a string, found {other}")),
            })
            .collect(),
        Value::Null => Ok(Vec::new()),
        other => Err(format!("expected a list of strings, found {other}")),
    }
}

/// `{"name": [values...]}`; names are lower-cased (Vault matches request
/// parameters case-insensitively); a lone value counts as a list of one.
fn parameter_map(value: &Value) -> Result<ParameterMap, String> {
    let Value::Object(map) = value else {
        return Err("expected a map of parameter names to lists of values".into());
    };
    let mut out = ParameterMap::new();
    for (name, values) in map {
        let values = match values {
            Value::Array(items) => items.clone(),
            Value::Null => Vec::new(),
            other => vec![other.clone()],
        };
        out.entry(name.to_lowercase()).or_default().extend(values);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn caps(rule: &PathRule) -> Vec<String> {
        rule.capabilities.names()
    }

    #[test]
    fn hcl_and_json_forms_parse_alike() {
        let hcl = r#"
            # comment
            path "secret/*" {
              capabilities = ["read", "list"]
            }
            path "/sys/audit" { capabilities = ["update", "sudo"] }
        "#;
        let json = r#"{"path": {
            "secret/*": {"capabilities": ["read", "list"]},
            "/sys/audit": {"capabilities": ["update", "sudo"]}
        }}"#;
        let mut a = parse_policy(hcl).unwrap().rules;
        let mut b = parse_policy(json).unwrap().rules;
        a.sort_by(|x, y| x.path.cmp(&y.path));
        b.sort_by(|x, y| x.path.cmp(&y.path));
        assert_eq!(a, b);
        assert_eq!(a.len(), 2);
        assert_eq!(a[0].path, "secret/*");
        assert_eq!(caps(&a[0]), ["list", "read"]);
        // Leading '/' stripped.
        assert_eq!(a[1].path, "sys/audit");
        assert_eq!(caps(&a[1]), ["sudo", "update"]);
    }

    #[test]
    fn json_list_forms() {
        let json = r#"{"name": "x", "path": [
            {"a": {"capabilities": ["read"]}},
            {"b": [{"capabilities": ["list"]}, {"capabilities": ["update"]}]}
        ]}"#;
        let rules = parse_policy(json).unwrap().rules;
        let summary: Vec<(String, Vec<String>)> =
            rules.iter().map(|r| (r.path.clone(), caps(r))).collect();
        assert_eq!(
            summary,
            [
                ("a".to_string(), vec!["read".to_string()]),
                ("b".to_string(), vec!["list".to_string()]),
                ("b".to_string(), vec!["update".to_string()]),
            ]
        );
    }

    #[test]
    fn hcl_syntax_error_carries_line_and_column() {
        let text = "path \"secret/*\" {\n  capabilities = [\"read\"\n}\n";
        let e = parse_policy(text).unwrap_err().to_string();
        assert!(e.starts_with("failed to parse policy: "), "{e}");
        assert!(e.contains("line 3"), "{e}");
        assert!(e.contains("column"), "{e}");
    }

    #[test]
    fn json_syntax_error_carries_line_and_column() {
        let e = parse_policy("{\"path\": {\n  \"a\": }\n}")
            .unwrap_err()
            .to_string();
        assert!(e.contains("line 2") && e.contains("column"), "{e}");
    }

    #[test]
    fn refusals() {
        let cases = [
            (
                r#"path "a" { capabilities = ["read", "fly"] }"#,
                r#"path "a": invalid capability "fly""#,
            ),
            (
                "path \"a\" {\n capabilities = [\"read\"]\n colour = \"red\"\n}",
                r#"path "a": invalid key "colour""#,
            ),
            (
                "path \"a\" {\n control_group {\n ttl = 1\n }\n}",
                r#"path "a": invalid key "control_group""#,
            ),
            (
                r#"secret "a" { capabilities = ["read"] }"#,
                r#"invalid block "secret""#,
            ),
            (r#"path { capabilities = ["read"] }"#, "exactly one label"),
            (
                r#"path "a" "b" { capabilities = ["read"] }"#,
                "exactly one label",
            ),
            (r#"other = "x""#, r#"invalid key "other""#),
            (
                r#"path "a/+*" { capabilities = ["read"] }"#,
                "'+*' is forbidden",
            ),
            (
                r#"path "a" { policy = "admin" }"#,
                r#"invalid policy "admin""#,
            ),
            (r#"path "a" { capabilities = [var.x] }"#, "only literal"),
            (
                "path \"a\" {\n min_wrapping_ttl = \"1h\"\n max_wrapping_ttl = \"1m\"\n}",
                "cannot be less than",
            ),
            (
                "path \"a\" {\n min_wrapping_ttl = \"soon\"\n}",
                "min_wrapping_ttl",
            ),
            (
                "path \"a\" {\n capabilities = [\"read\"]\n capabilities = [\"list\"]\n}",
                "redefined attribute",
            ),
            (
                r#"{"path": {"a": {"capabilities": ["read"], "colour": 1}}}"#,
                r#"invalid key "colour""#,
            ),
            (r#"{"paths": {}}"#, r#"invalid key "paths""#),
            (
                r#"{"path": {"a": {"capabilities": "nope"}}}"#,
                "invalid capability",
            ),
            (
                r#"{"path": {"a": {"capabilities": [1]}}}"#,
                "expected a string",
            ),
            (r#"{"path": "a"}"#, "must be an object"),
        ];
        for (text, expected) in cases {
            let e = parse_policy(text).expect_err(text).to_string();
            assert!(e.contains(expected), "{text:?} → {e:?}");
        }
    }

    #[test]
    fn crlf_and_compact_forms() {
        let text =
            "path \"a\" {\r\n  capabilities = [\r\n    \"read\",\r\n    \"list\",\r\n  ]\r\n}\r\n\
                    path \"b\" { allowed_parameters = { \"x\" = [] } }\r\n\
                    path c { capabilities = [\"read\"] }\n";
        let rules = parse_policy(text).unwrap().rules;
        assert_eq!(caps(&rules[0]), ["list", "read"]);
        assert!(rules[1]
            .allowed_parameters
            .as_ref()
            .unwrap()
            .contains_key("x"));
        assert_eq!(rules[2].path, "c");
    }

    #[test]
    fn malformed_inputs_are_errors_not_panics() {
        for text in [
            "{",
            "}",
            "[",
            "\"",
            "path",
            "path \"a\"",
            "path \"a\" {",
            "path \"a\" }",
            "=",
            "path \"a\" { capabilities = }",
            "\u{0}",
            "path \"a\" { capabilities = [\"read\"",
            "{\"path\": [1]}",
            "[]",
            "{\"path\": {\"a\": 1}}",
            "path \"${x}\" {}",
            "\u{feff}path \"a\" {}",
        ] {
            assert!(parse_policy(text).is_err(), "{text:?}");
        }
    }

    #[test]
    fn empty_and_comment_only_policies_have_no_rules() {
        for text in ["", "   \n", "# nothing here\n", "{}", r#"name = "empty""#] {
            assert!(parse_policy(text).unwrap().rules.is_empty(), "{text:?}");
        }
    }

    #[test]
    fn legacy_policy_form() {
        let text = r#"
            path "d" { policy = "deny" }
            path "r" { policy = "read" }
            path "w" { policy = "write" }
            path "s" { policy = "sudo" }
            path "x" {
              policy = "read"
              capabilities = ["update"]
            }
        "#;
        let rules = parse_policy(text).unwrap().rules;
        let got: Vec<Vec<String>> = rules.iter().map(caps).collect();
        assert_eq!(
            got,
            [
                vec!["deny"],
                vec!["list", "read"],
                vec!["create", "delete", "list", "read", "update"],
                vec!["create", "delete", "list", "read", "sudo", "update"],
                vec!["list", "read", "update"],
            ]
        );
    }

    #[test]
    fn deny_excludes_everything_else() {
        let rules = parse_policy(r#"path "a" { capabilities = ["read", "deny", "sudo"] }"#)
            .unwrap()
            .rules;
        assert_eq!(caps(&rules[0]), ["deny"]);
    }

    #[test]
    fn every_capability_is_known() {
        let text = r#"path "a" { capabilities = ["create", "read", "update", "patch", "delete", "list", "sudo", "subscribe"] }"#;
        let rules = parse_policy(text).unwrap().rules;
        assert_eq!(
            caps(&rules[0]),
            [
                "create",
                "delete",
                "list",
                "patch",
                "read",
                "subscribe",
                "sudo",
                "update"
            ]
        );
    }

    #[test]
    fn parameter_constraints_and_ttls_are_kept() {
        let text = r#"
            path "secret/foo" {
              capabilities = ["create"]
              comment = "constrained"
              allowed_parameters = {
                "Bar" = ["zip", "zap"]
                "*"   = []
                n     = [1, true]
              }
              denied_parameters = {
                "baz" = []
              }
              required_parameters = ["bar"]
              min_wrapping_ttl = "1s"
              max_wrapping_ttl = 90
            }
        "#;
        let rule = &parse_policy(text).unwrap().rules[0];
        let allowed = rule.allowed_parameters.as_ref().unwrap();
        assert_eq!(
            allowed.get("bar").unwrap(),
            &vec![Value::from("zip"), Value::from("zap")]
        );
        assert_eq!(allowed.get("*").unwrap(), &Vec::<Value>::new());
        assert_eq!(
            allowed.get("n").unwrap(),
            &vec![Value::from(1), Value::from(true)]
        );
        assert!(rule.denied_parameters.as_ref().unwrap().contains_key("baz"));
        assert_eq!(rule.required_parameters, ["bar"]);
        assert_eq!(rule.min_wrapping_ttl, Some(Duration::from_secs(1)));
        assert_eq!(rule.max_wrapping_ttl, Some(Duration::from_secs(90)));
    }

    #[test]
    fn templated_paths_are_kept() {
        let rules = parse_policy(
            r#"path "identity/entity/id/{{identity.entity.id}}" { capabilities = ["read"] }"#,
        )
        .unwrap()
        .rules;
        assert_eq!(rules[0].path, "identity/entity/id/{{identity.entity.id}}");
        assert!(rules[0].is_templated());
    }

    #[test]
    fn default_policy_text_parses() {
        let rules = parse_policy(crate::store::DEFAULT_POLICY).unwrap().rules;
        assert!(rules.iter().any(|r| r.path == "auth/token/lookup-self"
            && r.capabilities == [Capability::Read].into_iter().collect()));
        assert!(rules.iter().any(|r| r.path == "cubbyhole/*"));
    }
}
