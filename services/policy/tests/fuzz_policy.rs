//! Fuzz targets (issue 13) for the policy language and the ACL matcher,
//! through the crate's public API only.
//!
//! * `parser_*`: arbitrary text, token soup, mutations of valid policies and
//!   deep nesting never panic; a refusal of text the HCL or JSON parser
//!   cannot read names a line; a generated valid policy parses to exactly
//!   the rules it was generated from.
//! * `acl_*`: random policy sets and request paths, decided by [`Acl`] and by
//!   the small reference model below (a literal transcription of Vault's
//!   `NewACL` / `AllowOperation` / `CheckAllowedFromNonExactPaths`), must
//!   agree on `authorize`, `capabilities` and the granting policies.
//!
//! Cases per target: `BULWARK_FUZZ_CASES` (small by default, so that CI stays
//! quick; set it high for a long run, see FUZZING.md).

use std::collections::{BTreeMap, BTreeSet};

use bulwark_policy::{parse_policy, Acl, Operation, ParsedPolicy};
use proptest::prelude::*;
use proptest::test_runner::Config;

/// The proptest configuration of a target: `BULWARK_FUZZ_CASES` cases, else
/// `default`. No failure files: every failure found becomes an explicit
/// regression test below.
fn cfg(default: u32) -> Config {
    let cases = std::env::var("BULWARK_FUZZ_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default);
    Config {
        cases,
        failure_persistence: None,
        max_shrink_iters: 4096,
        ..Config::default()
    }
}

// ---------------------------------------------------------------------------
// The model: policies as data, rendered to HCL or JSON.
// ---------------------------------------------------------------------------

const CAPS: [&str; 9] = [
    "create",
    "read",
    "update",
    "patch",
    "delete",
    "list",
    "sudo",
    "deny",
    "subscribe",
];
const LEGACY: [&str; 4] = ["deny", "read", "write", "sudo"];

#[derive(Debug, Clone)]
struct Rule {
    pattern: String,
    caps: Vec<&'static str>,
    legacy: Option<&'static str>,
}

impl Rule {
    /// The capabilities the rule grants, as Vault's `parsePaths` computes
    /// them: the legacy form mapped, and `deny` alone when present.
    fn granted(&self) -> BTreeSet<&'static str> {
        let mut set: BTreeSet<&'static str> = self.caps.iter().copied().collect();
        let legacy: &[&'static str] = match self.legacy {
            Some("deny") => &["deny"],
            Some("read") => &["read", "list"],
            Some("write") => &["create", "read", "update", "delete", "list"],
            Some("sudo") => &["create", "read", "update", "delete", "list", "sudo"],
            _ => &[],
        };
        set.extend(legacy);
        if set.contains("deny") {
            return ["deny"].into_iter().collect();
        }
        set
    }

    /// The pattern as Vault keeps it: one leading `/` stripped.
    fn path(&self) -> &str {
        self.pattern.strip_prefix('/').unwrap_or(&self.pattern)
    }
}

#[derive(Debug, Clone)]
struct Policy {
    name: String,
    rules: Vec<Rule>,
}

fn quote(list: &[&str]) -> String {
    list.iter()
        .map(|c| format!("\"{c}\""))
        .collect::<Vec<_>>()
        .join(", ")
}

fn render_hcl(rules: &[Rule]) -> String {
    let mut out = String::from("# generated\n");
    for r in rules {
        out.push_str(&format!("path \"{}\" {{\n", r.pattern));
        out.push_str(&format!("  capabilities = [{}]\n", quote(&r.caps)));
        if let Some(l) = r.legacy {
            out.push_str(&format!("  policy = \"{l}\"\n"));
        }
        out.push_str("}\n");
    }
    out
}

fn render_json(rules: &[Rule]) -> String {
    let items: Vec<serde_json::Value> = rules
        .iter()
        .map(|r| {
            let mut body = serde_json::json!({ "capabilities": r.caps });
            if let Some(l) = r.legacy {
                body["policy"] = serde_json::json!(l);
            }
            serde_json::json!({ r.pattern.clone(): body })
        })
        .collect();
    serde_json::json!({ "path": items }).to_string()
}

/// Segments for rules that tie on every priority but the last (Vault's
/// lexicographic order): `+/a/+` against `+/+/b` on `x/a/b`.
const TIE_SEGMENTS: [&str; 4] = ["a", "b", "+", "+"];

/// Segments of patterns and paths: few enough that rules overlap often.
const SEGMENTS: [&str; 11] = [
    "a", "b", "ab", "abc", "secret", "+", "+", "+b", "a*b", "é", "",
];

fn pattern(pool: &'static [&'static str]) -> BoxedStrategy<String> {
    if std::ptr::eq(pool, &TIE_SEGMENTS[..]) {
        // Three plain segments: ties are likely.
        return prop::collection::vec(prop::sample::select(pool), 3)
            .prop_map(|segs| segs.join("/"))
            .boxed();
    }
    (
        any::<bool>(),
        prop::collection::vec(prop::sample::select(pool), 1..5),
        any::<bool>(),
        prop::sample::select(&["", "", "*", "*", "{{identity.entity.id}}"][..]),
    )
        .prop_map(|(lead, segs, slash, end)| {
            let mut p = String::new();
            if lead {
                p.push('/');
            }
            p.push_str(&segs.join("/"));
            if slash {
                p.push('/');
            }
            p.push_str(end);
            p
        })
        .boxed()
}

fn caps() -> impl Strategy<Value = Vec<&'static str>> {
    // Mostly without `deny`, so that grants are common.
    prop::collection::vec(prop::sample::select(&CAPS[..]), 0..4).prop_map(|mut v| {
        if v.len() == 3 && v.contains(&"deny") {
            v.retain(|c| *c != "deny");
        }
        v
    })
}

fn rule(allow_plus_star: bool, pool: &'static [&'static str]) -> impl Strategy<Value = Rule> {
    (
        pattern(pool),
        caps(),
        prop::option::weighted(0.15, prop::sample::select(&LEGACY[..])),
    )
        .prop_map(move |(mut pattern, caps, legacy)| {
            if !allow_plus_star {
                while pattern.contains("+*") {
                    pattern = pattern.replace("+*", "+");
                }
            }
            Rule {
                pattern,
                caps,
                legacy,
            }
        })
}

fn policies(pool: &'static [&'static str]) -> impl Strategy<Value = Vec<Policy>> {
    prop::collection::vec(
        (prop::collection::vec(rule(false, pool), 0..6), 0..20u8),
        1..4,
    )
    .prop_map(|ps| {
        ps.into_iter()
            .enumerate()
            .map(|(i, (rules, root))| Policy {
                // Now and then the built-in `root`.
                name: if root == 0 {
                    "root".to_string()
                } else {
                    format!("p{i}")
                },
                rules,
            })
            .collect()
    })
}

/// A request path: random segments, or a pattern instantiated (`+` filled,
/// text after a trailing `*`), so that rules match often.
fn request_path(policies: &[Policy]) -> BoxedStrategy<String> {
    let patterns: Vec<String> = policies
        .iter()
        .flat_map(|p| p.rules.iter().map(|r| r.path().to_string()))
        .collect();
    let random = (
        any::<bool>(),
        prop::collection::vec(prop::sample::select(&SEGMENTS[..]), 0..5),
        any::<bool>(),
    )
        .prop_map(|(lead, segs, slash)| {
            let mut p = if lead { "/".to_string() } else { String::new() };
            p.push_str(&segs.join("/"));
            if slash {
                p.push('/');
            }
            p
        });
    if patterns.is_empty() {
        return random.boxed();
    }
    let derived = (
        prop::sample::select(patterns),
        prop::sample::select(&["x", "", "a", "+"][..]),
        prop::sample::select(&["", "", "/", "c/d", "b"][..]),
    )
        .prop_map(|(p, fill, tail)| {
            let p = p.strip_suffix('*').unwrap_or(&p).to_string();
            let filled: Vec<&str> = p
                .split('/')
                .map(|s| if s == "+" { fill } else { s })
                .collect();
            format!("{}{tail}", filled.join("/"))
        });
    prop_oneof![random, derived].boxed()
}

const OPS: [Operation; 6] = [
    Operation::Read,
    Operation::List,
    Operation::Create,
    Operation::Update,
    Operation::Delete,
    Operation::Patch,
];

fn cap_of(op: Operation) -> &'static str {
    match op {
        Operation::Read => "read",
        Operation::List => "list",
        Operation::Create => "create",
        Operation::Update => "update",
        Operation::Delete => "delete",
        Operation::Patch => "patch",
    }
}

// ---------------------------------------------------------------------------
// The reference ACL: Vault's algorithm, written for clarity, not speed.
// ---------------------------------------------------------------------------

#[derive(Debug, Clone, Default)]
struct Perm {
    caps: BTreeSet<&'static str>,
    /// capability → the policies that granted it at this pattern.
    granting: BTreeMap<&'static str, BTreeSet<String>>,
}

#[derive(Default)]
struct Reference {
    root: bool,
    exact: BTreeMap<String, Perm>,
    /// Keyed by the pattern without its trailing `*`.
    prefix: BTreeMap<String, Perm>,
    /// Keyed by the full pattern.
    segment: BTreeMap<String, Perm>,
}

/// One candidate among the non-exact rules (Vault's `wcPathDescr`).
struct Candidate<'a> {
    first_wc_or_glob: usize,
    wildcards: usize,
    is_prefix: bool,
    wc_path: String,
    perm: &'a Perm,
}

/// Vault's `less`: whether `i` has lower priority than `j`.
fn less(i: &Candidate<'_>, j: &Candidate<'_>) -> bool {
    if i.first_wc_or_glob != j.first_wc_or_glob {
        return i.first_wc_or_glob < j.first_wc_or_glob;
    }
    if i.is_prefix != j.is_prefix {
        return i.is_prefix;
    }
    if i.wildcards != j.wildcards {
        return i.wildcards > j.wildcards;
    }
    if i.wc_path.len() != j.wc_path.len() {
        return i.wc_path.len() < j.wc_path.len();
    }
    i.wc_path < j.wc_path
}

impl Reference {
    fn new(policies: &[Policy]) -> Reference {
        let mut r = Reference::default();
        for p in policies {
            if p.name == "root" {
                r.root = true;
            }
            for rule in &p.rules {
                let path = rule.path();
                // Identity templates never match (no identity store).
                if path.contains("{{") {
                    continue;
                }
                let segmented = path == "+" || path.contains("/+") || path.starts_with("+/");
                let slot = if segmented {
                    r.segment.entry(path.to_string())
                } else if let Some(prefix) = path.strip_suffix('*') {
                    r.prefix.entry(prefix.to_string())
                } else {
                    r.exact.entry(path.to_string())
                };
                let granted = rule.granted();
                let perm = slot.or_default();
                // NewACL's merge: an existing deny stays alone; a new deny
                // replaces everything; otherwise a union.
                if perm.caps.contains("deny") {
                    continue;
                }
                if granted.contains("deny") {
                    perm.caps = granted;
                    continue;
                }
                for c in &granted {
                    perm.caps.insert(c);
                    perm.granting.entry(c).or_default().insert(p.name.clone());
                }
            }
        }
        r
    }

    fn non_exact(&self, path: &str) -> Option<&Perm> {
        let mut candidates = Vec::new();
        // The longest matching prefix rule (the radix tree's LongestPrefix).
        if let Some((k, perm)) = self
            .prefix
            .iter()
            .filter(|(k, _)| path.starts_with(k.as_str()))
            .max_by_key(|(k, _)| k.len())
        {
            candidates.push(Candidate {
                first_wc_or_glob: k.len(),
                wildcards: 0,
                is_prefix: true,
                wc_path: k.clone(),
                perm,
            });
        }
        let parts: Vec<&str> = path.split('/').collect();
        'rules: for (full, perm) in &self.segment {
            let (is_prefix, wc_path) = match full.strip_suffix('*') {
                Some(p) => (true, p),
                None => (false, full.as_str()),
            };
            let acl_parts: Vec<&str> = wc_path.split('/').collect();
            if parts.len() < acl_parts.len() || (!is_prefix && parts.len() != acl_parts.len()) {
                continue;
            }
            let mut wildcards = 0;
            for (i, acl_part) in acl_parts.iter().enumerate() {
                if *acl_part == "+" {
                    // Bulwark: `+` needs a non-empty segment. (Vault's loop
                    // takes any, but Go's ServeMux has already cleaned `//`
                    // out of every HTTP path by then.)
                    if parts[i].is_empty() {
                        continue 'rules;
                    }
                    wildcards += 1;
                } else if *acl_part == parts[i]
                    || (is_prefix && i == acl_parts.len() - 1 && parts[i].starts_with(acl_part))
                {
                } else {
                    continue 'rules;
                }
            }
            candidates.push(Candidate {
                first_wc_or_glob: full.find('+').unwrap_or(full.len()),
                wildcards,
                is_prefix,
                wc_path: wc_path.to_string(),
                perm,
            });
        }
        let mut best: Option<Candidate<'_>> = None;
        for c in candidates {
            if best.as_ref().is_none_or(|b| less(b, &c)) {
                best = Some(c);
            }
        }
        best.map(|c| c.perm)
    }

    fn lookup(&self, path: &str, list: bool) -> Option<&Perm> {
        let path = path.trim_start_matches('/');
        if let Some(p) = self.exact.get(path) {
            return Some(p);
        }
        if list {
            if let Some(p) = path.strip_suffix('/').and_then(|s| self.exact.get(s)) {
                return Some(p);
            }
        }
        self.non_exact(path)
    }

    fn report(perm: Option<&Perm>) -> Vec<String> {
        match perm {
            Some(p) if !p.caps.is_empty() && !p.caps.contains("deny") => {
                p.caps.iter().map(|c| c.to_string()).collect()
            }
            _ => vec!["deny".to_string()],
        }
    }

    fn capabilities(&self, path: &str) -> Vec<String> {
        if self.root {
            return vec!["root".into()];
        }
        Self::report(self.lookup(path, true))
    }

    /// `(allowed, capabilities, granting policies)`.
    fn authorize(&self, path: &str, op: Operation, sudo: bool) -> (bool, Vec<String>, Vec<String>) {
        if self.root {
            return (true, vec!["root".into()], vec!["root".into()]);
        }
        let perm = self.lookup(path, op == Operation::List);
        let caps = perm.map(|p| p.caps.clone()).unwrap_or_default();
        let allowed =
            !caps.contains("deny") && caps.contains(cap_of(op)) && (!sudo || caps.contains("sudo"));
        let granting = match perm {
            Some(p) if allowed => p
                .granting
                .get(cap_of(op))
                .map(|s| s.iter().cloned().collect())
                .unwrap_or_default(),
            _ => Vec::new(),
        };
        (allowed, Self::report(perm), granting)
    }
}

fn compile(policies: &[Policy], json: bool) -> Vec<(String, ParsedPolicy)> {
    policies
        .iter()
        .map(|p| {
            let text = if json {
                render_json(&p.rules)
            } else {
                render_hcl(&p.rules)
            };
            let parsed = parse_policy(&text)
                .unwrap_or_else(|e| panic!("generated policy refused: {e}\n{text}"));
            (p.name.clone(), parsed)
        })
        .collect()
}

fn acl_of(compiled: &[(String, ParsedPolicy)]) -> Acl {
    Acl::new(compiled.iter().map(|(n, p)| (n.as_str(), p)))
}

/// Checks `acl` against the reference on `path` for every operation.
fn check_path(acl: &Acl, reference: &Reference, path: &str) -> Result<(), TestCaseError> {
    let got = acl.capabilities(path);
    let want = reference.capabilities(path);
    let mut got_sorted = got.clone();
    got_sorted.sort();
    prop_assert_eq!(&got, &got_sorted, "capabilities sorted");
    prop_assert_eq!(got, want, "capabilities({:?})", path);
    for op in OPS {
        for sudo in [false, true] {
            let d = acl.authorize(path, op, sudo);
            let (allowed, caps, granting) = reference.authorize(path, op, sudo);
            prop_assert_eq!(
                d.allowed,
                allowed,
                "authorize({:?}, {:?}, sudo={})",
                path,
                op,
                sudo
            );
            prop_assert_eq!(&d.capabilities, &caps, "decision caps {:?} {:?}", path, op);
            prop_assert_eq!(
                &d.granting_policies,
                &granting,
                "granting {:?} {:?}",
                path,
                op
            );
        }
    }
    Ok(())
}

/// `has_access_under` must not hide a mount the token can act in: if any
/// operation is allowed on a path below `mount`, the answer is yes.
fn check_mount_access(acl: &Acl, path: &str) -> Result<(), TestCaseError> {
    let path = path.trim_start_matches('/');
    let Some((first, _)) = path.split_once('/') else {
        return Ok(());
    };
    let mount = format!("{first}/");
    let any_allowed = OPS.iter().any(|op| acl.authorize(path, *op, false).allowed);
    if any_allowed {
        prop_assert!(
            acl.has_access_under(&mount),
            "{:?} is reachable but has_access_under({:?}) says no",
            path,
            mount
        );
    }
    Ok(())
}

// ---------------------------------------------------------------------------
// Target 1: the parser.
// ---------------------------------------------------------------------------

/// Pieces of policy text, valid and not, for token soups and insertions.
const TOKENS: [&str; 44] = [
    "path",
    "\"secret/*\"",
    "\"a/+/b\"",
    "{",
    "}",
    "[",
    "]",
    "=",
    ",",
    ":",
    "\n",
    " ",
    "capabilities",
    "\"read\"",
    "\"deny\"",
    "policy",
    "\"write\"",
    "allowed_parameters",
    "min_wrapping_ttl",
    "\"1h\"",
    "max_wrapping_ttl",
    "1e999999",
    "-1",
    "99999999999999999999999999999",
    "0x1F",
    "1.5e-308",
    "# c\n",
    "// c\n",
    "/* c",
    "*/",
    "${",
    "%{",
    "}}",
    "<<EOF\n",
    "EOF\n",
    "\"",
    "\\",
    "\u{0}",
    "\u{feff}",
    "é",
    "𝄞",
    "true",
    "null",
    "name",
];

fn valid_policy_text() -> impl Strategy<Value = String> {
    (
        prop::collection::vec(rule(false, &SEGMENTS), 1..5),
        any::<bool>(),
    )
        .prop_map(|(rules, json)| {
            if json {
                render_json(&rules)
            } else {
                render_hcl(&rules)
            }
        })
}

#[derive(Debug, Clone)]
enum Mutation {
    Delete(usize),
    Flip(usize, u8),
    Insert(usize, &'static str),
    Truncate(usize),
    Duplicate(usize, usize),
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        any::<usize>().prop_map(Mutation::Delete),
        (any::<usize>(), any::<u8>()).prop_map(|(i, b)| Mutation::Flip(i, b)),
        (any::<usize>(), prop::sample::select(&TOKENS[..]))
            .prop_map(|(i, t)| Mutation::Insert(i, t)),
        any::<usize>().prop_map(Mutation::Truncate),
        (any::<usize>(), 0..64usize).prop_map(|(i, n)| Mutation::Duplicate(i, n)),
    ]
}

/// Applies byte-level mutations; the result is made valid UTF-8 lossily
/// (policy text reaches the parser as a `str`).
fn mutate(text: &str, mutations: &[Mutation]) -> String {
    let mut bytes = text.as_bytes().to_vec();
    for m in mutations {
        let at = |i: usize| {
            if bytes.is_empty() {
                0
            } else {
                i % (bytes.len() + 1)
            }
        };
        match *m {
            Mutation::Delete(i) if !bytes.is_empty() => {
                let i = i % bytes.len();
                bytes.remove(i);
            }
            Mutation::Flip(i, b) if !bytes.is_empty() => {
                let i = i % bytes.len();
                bytes[i] = b;
            }
            Mutation::Insert(i, t) => {
                let i = at(i);
                bytes.splice(i..i, t.bytes());
            }
            Mutation::Truncate(i) => {
                let i = at(i);
                bytes.truncate(i);
            }
            Mutation::Duplicate(i, n) => {
                let i = at(i);
                let end = (i + n).min(bytes.len());
                let piece = bytes[i..end].to_vec();
                bytes.splice(i..i, piece);
            }
            _ => {}
        }
    }
    String::from_utf8_lossy(&bytes).into_owned()
}

/// Parses `text`; refusals must be clean and, when the text is not even
/// syntactically valid HCL / JSON, name a line.
fn check_parse(text: &str) -> Result<(), TestCaseError> {
    let Err(e) = parse_policy(text) else {
        return Ok(());
    };
    let msg = e.to_string();
    prop_assert!(msg.starts_with("failed to parse policy: "), "{}", msg);
    prop_assert!(!e.reason().is_empty());
    let json = text.trim_start().starts_with('{');
    let syntax_error = if json {
        serde_json::from_str::<serde_json::Value>(text).is_err()
    } else {
        // Too deep for the parser (never call it then: it would overflow).
        !text.trim().is_empty()
            && (bulwark_shared::hcl_depth::check(text).is_err() || hcl::parse(text).is_err())
    };
    if syntax_error {
        prop_assert!(
            msg.contains("line"),
            "a syntax error without a line: {:?}",
            msg
        );
    }
    Ok(())
}

proptest! {
    #![proptest_config(cfg(2048))]

    #[test]
    fn parser_survives_arbitrary_text(text in any::<String>()) {
        check_parse(&text)?;
    }

    #[test]
    fn parser_survives_token_soup(tokens in prop::collection::vec(prop::sample::select(&TOKENS[..]), 0..40)) {
        check_parse(&tokens.concat())?;
    }

    #[test]
    fn parser_survives_mutated_policies(
        text in valid_policy_text(),
        mutations in prop::collection::vec(mutation(), 1..6),
    ) {
        check_parse(&mutate(&text, &mutations))?;
    }

    #[test]
    fn parser_survives_huge_values(
        value in prop_oneof![
            Just("1e999999".to_string()),
            Just("-1e999999".to_string()),
            Just("\"9999999999999999999h\"".to_string()),
            Just("18446744073709551616".to_string()),
            Just("-9223372036854775809".to_string()),
            "[0-9]{1,400}",
            "-?[0-9]{1,30}\\.[0-9]{0,30}(e[+-]?[0-9]{1,6})?",
            "\"[0-9]{1,40}(\\.[0-9]{1,20})?(ns|us|ms|s|m|h|d)\"",
        ],
        key in prop::sample::select(&["min_wrapping_ttl", "max_wrapping_ttl", "capabilities", "comment"][..]),
    ) {
        check_parse(&format!("path \"a\" {{\n  {key} = {value}\n}}\n"))?;
        check_parse(&format!("{{\"path\": {{\"a\": {{\"{key}\": {value}}}}}}}"))?;
        check_parse(&format!("path \"a\" {{\n  allowed_parameters = {{ \"x\" = [{value}] }}\n}}\n"))?;
    }

    #[test]
    fn generated_policies_round_trip(rules in prop::collection::vec(rule(true, &SEGMENTS), 0..8), json in any::<bool>()) {
        let text = if json { render_json(&rules) } else { render_hcl(&rules) };
        let parsed = parse_policy(&text);
        if let Some(bad) = rules.iter().find(|r| r.path().contains("+*")) {
            let e = parsed.expect_err("'+*' must be refused");
            prop_assert!(e.reason().contains("'+*' is forbidden"), "{} for {:?}", e, bad.pattern);
            return Ok(());
        }
        let parsed = parsed.map_err(|e| TestCaseError::fail(format!("{e}\n{text}")))?;
        prop_assert_eq!(parsed.rules.len(), rules.len());
        for (got, want) in parsed.rules.iter().zip(&rules) {
            prop_assert_eq!(&got.path, want.path());
            let want_caps: Vec<String> = want.granted().iter().map(|c| c.to_string()).collect();
            prop_assert_eq!(got.capabilities.names(), want_caps, "{:?}", want);
        }
    }
}

/// Deep nesting: the parsers must refuse or accept, not overflow the stack.
/// Run on a thread with the stack of a tokio worker (2 MiB) since that is
/// where the policy service parses.
fn on_worker_stack<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    std::thread::Builder::new()
        .stack_size(2 * 1024 * 1024)
        .spawn(f)
        .expect("spawn")
        .join()
        .unwrap_or_else(|p| std::panic::resume_unwind(p))
}

fn nested(depth: usize, kind: u8) -> String {
    match kind % 6 {
        0 => format!("path \"a\" {{ capabilities = {}", "[".repeat(depth)),
        1 => format!(
            "path \"a\" {{ capabilities = {}\"read\"{} }}",
            "[".repeat(depth),
            "]".repeat(depth)
        ),
        2 => format!(
            "path \"a\" {{ allowed_parameters = {}1{} }}",
            "{ x = ".repeat(depth),
            " }".repeat(depth)
        ),
        3 => "{".repeat(depth),
        4 => format!("{{\"path\": {}", "[".repeat(depth)),
        _ => format!("path \"a\" {}", "{ path \"a\" ".repeat(depth)),
    }
}

proptest! {
    #![proptest_config(cfg(256))]

    #[test]
    fn parser_survives_deep_nesting(depth in 1..20_000usize, kind in any::<u8>()) {
        let text = nested(depth, kind);
        let outcome = on_worker_stack(move || {
            let r = parse_policy(&text);
            (r.is_ok(), r.err().map(|e| e.to_string()), text)
        });
        if let (false, Some(msg), text) = outcome {
            // Refused cleanly; a syntax error names its line.
            check_parse(&text)?;
            prop_assert!(!msg.is_empty());
        }
    }
}

// ---------------------------------------------------------------------------
// Target 2: the ACL matcher against the reference.
// ---------------------------------------------------------------------------

proptest! {
    #![proptest_config(cfg(2048))]

    #[test]
    fn acl_matches_the_reference(
        (policies, paths) in prop_oneof![policies(&SEGMENTS[..]), policies(&TIE_SEGMENTS[..])].prop_flat_map(|ps| {
            let paths = prop::collection::vec(request_path(&ps), 1..12);
            (Just(ps), paths)
        }),
        json in any::<bool>(),
    ) {
        let compiled = compile(&policies, json);
        let acl = acl_of(&compiled);
        let reference = Reference::new(&policies);
        prop_assert_eq!(acl.is_root(), reference.root);
        for path in &paths {
            check_path(&acl, &reference, path)?;
            check_mount_access(&acl, path)?;
        }
    }

    /// The policy order never changes a decision.
    #[test]
    fn acl_ignores_policy_order(
        (policies, paths) in prop_oneof![policies(&SEGMENTS[..]), policies(&TIE_SEGMENTS[..])].prop_flat_map(|ps| {
            let paths = prop::collection::vec(request_path(&ps), 1..8);
            (Just(ps), paths)
        }),
    ) {
        let forward = compile(&policies, false);
        let mut backward = forward.clone();
        backward.reverse();
        let (a, b) = (acl_of(&forward), acl_of(&backward));
        for path in &paths {
            prop_assert_eq!(a.capabilities(path), b.capabilities(path));
            for op in OPS {
                prop_assert_eq!(a.authorize(path, op, true), b.authorize(path, op, true));
            }
        }
    }
}

// ---------------------------------------------------------------------------
// Regression tests: inputs the targets found, kept explicitly.
// ---------------------------------------------------------------------------

fn acl_from(policies: &[(&str, &str)]) -> Acl {
    let parsed: Vec<(String, ParsedPolicy)> = policies
        .iter()
        .map(|(n, t)| (n.to_string(), parse_policy(t).expect("parses")))
        .collect();
    acl_of(&parsed)
}

/// Found by `parser_survives_deep_nesting`: a thousand levels of `[`, of
/// `{ x = `, of `1+1+…`, of conditionals or of string interpolations
/// overflowed the stack in the `hcl` crate's recursive parser (the process
/// aborts); now refused with the line.
#[test]
fn regression_deep_nesting_is_refused_not_a_stack_overflow() {
    let n = 1000;
    for text in [
        nested(n, 0),
        nested(n, 1),
        nested(n, 2),
        format!("path \"a\" {{\n comment = 1{}\n}}", "+1".repeat(n)),
        format!("path \"a\" {{\n comment = {}1\n}}", "true ? 1 : ".repeat(n)),
        format!("path \"a\" {{\n comment = {}\n}}", "\"${".repeat(n)),
        format!("path \"a\" {{\n comment = {}true\n}}", "!".repeat(20 * n)),
    ] {
        let got = on_worker_stack(move || parse_policy(&text).map_err(|e| e.to_string()));
        let e = got.expect_err("deep text must be refused");
        assert!(e.contains("nesting deeper than"), "{e}");
        assert!(e.contains("line "), "{e}");
    }
}

/// Found by `parser_survives_mutated_policies`' long inputs: the `hcl`
/// crate's error `Display` pads a caret to the error's column and panics
/// past column 65535. The message is now built from the error's parts.
#[test]
fn regression_syntax_error_past_column_65535_is_an_error_not_a_panic() {
    let text = format!(
        "path \"a\" {{\n  comment = \"{}\" ]\n}}\n",
        "x".repeat(70_000)
    );
    let e = parse_policy(&text).expect_err("a syntax error");
    assert!(
        e.reason().starts_with("line 2, column 700"),
        "{}",
        e.reason()
    );
}

/// Found by `acl_matches_the_reference` (the `has_access_under` check):
/// wildcard rules were merged by their fixed part, so a `deny` at one
/// pattern hid a grant at another pattern with the same fixed part, and
/// `sys/internal/ui/mounts/<mount>` (asked by the Vault CLI before every
/// `kv` command) refused a mount the token can read in.
#[test]
fn regression_deny_at_one_pattern_does_not_hide_a_mount_granted_by_another() {
    let acl = acl_from(&[(
        "p0",
        "path \"a*b*\" { capabilities = [\"deny\"] }\n\
         path \"a*b/+/\" { capabilities = [\"read\"] }\n",
    )]);
    assert!(acl.authorize("a*b/a/", Operation::Read, false).allowed);
    assert!(acl.has_access_under("a*b/"));

    let acl = acl_from(&[
        ("p0", r#"path "secret/*" { capabilities = ["read"] }"#),
        (
            "p1",
            r#"path "secret/+/private" { capabilities = ["deny"] }"#,
        ),
    ]);
    assert!(acl.authorize("secret/foo", Operation::Read, false).allowed);
    assert!(acl.has_access_under("secret/"));
}

/// Found by `acl_matches_the_reference` (the `has_access_under` check): an
/// exact rule on the mount path without its slash grants LIST on `a/`, but
/// the mount was reported unreachable. Vault's `hasMountAccess` first asks
/// for the capabilities on the mount path itself, which covers it.
#[test]
fn regression_exact_rule_on_the_mount_path_reaches_the_mount() {
    let acl = acl_from(&[("p0", r#"path "a" { capabilities = ["list"] }"#)]);
    assert!(acl.authorize("a/", Operation::List, false).allowed);
    assert!(acl.has_access_under("a/"));
}

/// Where Bulwark knowingly differs from Vault 1.15.2+ (VAULT-3825,
/// hashicorp/vault#23874), which resolves a LIST on a path ending in `/`
/// against the non-exact rules on the path *without* the slash first, so
/// that `+/sys/policies/acl` or `secret/metadata/+` grant LIST on
/// `ns/sys/policies/acl/` and `secret/metadata/foo/`. Bulwark follows
/// /work/shared/vault-api.md: the slash is stripped only for exact rules.
/// Changing it moves which rule wins for LIST and `sys/capabilities` both
/// ways, so this test pins the specified behaviour until that is decided.
#[test]
fn list_with_trailing_slash_uses_wildcards_only_as_specified() {
    let acl = acl_from(&[(
        "p0",
        "path \"+/sys/policies/acl\" { capabilities = [\"list\"] }\n\
         path \"secret/metadata/+\" { capabilities = [\"list\"] }\n",
    )]);
    assert!(
        !acl.authorize("ns/sys/policies/acl/", Operation::List, false)
            .allowed
    );
    assert!(
        !acl.authorize("secret/metadata/foo/", Operation::List, false)
            .allowed
    );
    // Without the trailing slash the same rules do grant it.
    assert!(
        acl.authorize("secret/metadata/foo", Operation::List, false)
            .allowed
    );
}
