//! The compiled ACL of a set of policies, and Vault's matching algorithm.
//!
//! Rules of every policy in the set are merged **by pattern string**: the
//! capabilities of the same pattern in several policies are unioned (`deny`
//! in any of them wins), different patterns are never merged. A request path
//! is then resolved to exactly one merged pattern:
//!
//! 1. an exact rule equal to the path (for LIST, also the path without its
//!    trailing `/`);
//! 2. otherwise, among the matching glob (`secret/*`) and segment
//!    (`secret/+/x`, `secret/+/x/*`) rules, the one of highest priority. P1 is
//!    lower than P2 if, in order: (a) its first `+`/`*` comes earlier; (b) it
//!    ends in `*` and P2 does not; (c) it has more `+` segments; (d) it is
//!    shorter; (e) it is lexicographically smaller.
//!
//! The winning set then decides alone: lower-priority matches are ignored
//! even when they grant more. `deny` denies everything, `sudo` is needed in
//! addition to the operation's capability on root-protected paths, and a set
//! holding the `root` policy may do everything.
//!
//! `*` is special only as the last character; `+` is special only as a whole
//! segment and matches exactly one non-empty segment. Patterns with identity
//! templates (`{{...}}`) never match (there is no identity store yet).
//!
//! Exact rules live in a hash map and pure globs in a byte-wise prefix tree,
//! so matching costs O(path length) in those; segment rules are scanned.

use std::cmp::Reverse;
use std::collections::HashMap;

use crate::parse::{Capability, CapabilitySet, ParsedPolicy, PathRule};

/// The name of the built-in policy that may do everything.
pub const ROOT_POLICY: &str = "root";

/// What a request does to a path, as the gateway classifies it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Operation {
    Read,
    List,
    Create,
    Update,
    Delete,
    Patch,
}

impl Operation {
    /// The proto operation as an ACL operation; `OPERATION_UNSPECIFIED` and
    /// unknown values are `None`.
    pub fn from_proto(value: i32) -> Option<Operation> {
        use bulwark_proto::policy::v1::Operation as P;
        match P::try_from(value) {
            Ok(P::Read) => Some(Operation::Read),
            Ok(P::List) => Some(Operation::List),
            Ok(P::Create) => Some(Operation::Create),
            Ok(P::Update) => Some(Operation::Update),
            Ok(P::Delete) => Some(Operation::Delete),
            Ok(P::Patch) => Some(Operation::Patch),
            Ok(P::Unspecified) | Err(_) => None,
        }
    }

    /// The capability this operation needs.
    pub fn capability(self) -> Capability {
        match self {
            Operation::Read => Capability::Read,
            Operation::List => Capability::List,
            Operation::Create => Capability::Create,
            Operation::Update => Capability::Update,
            Operation::Delete => Capability::Delete,
            Operation::Patch => Capability::Patch,
        }
    }
}

/// The answer to "may these policies do this operation on this path?".
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    /// The operation may proceed.
    pub allowed: bool,
    /// The set holds the `root` policy.
    pub root: bool,
    /// The capabilities of the winning rule, sorted; `["root"]` for root and
    /// `["deny"]` when the rule denies or nothing matched.
    pub capabilities: Vec<String>,
    /// The policies whose rule at the winning pattern granted the operation
    /// (sorted); empty when denied.
    pub granting_policies: Vec<String>,
}

/// The merged permissions of one pattern string.
#[derive(Debug, Clone, Default)]
struct Permissions {
    capabilities: CapabilitySet,
    /// Which policy contributed which capabilities.
    grants: Vec<(String, CapabilitySet)>,
}

impl Permissions {
    /// Merges one policy's rule, as Vault does: an existing `deny` stays
    /// alone, a new `deny` replaces everything, otherwise a union.
    fn merge(&mut self, policy: &str, caps: CapabilitySet) {
        if self.capabilities.contains(Capability::Deny) {
            return;
        }
        if caps.contains(Capability::Deny) {
            self.capabilities = caps;
        } else {
            self.capabilities = self.capabilities.union(caps);
        }
        self.grants.push((policy.to_string(), caps));
    }
}

/// A rule with `+` segments (and maybe a trailing `*`).
#[derive(Debug)]
struct SegmentRule {
    /// The pattern without its trailing `*`.
    path: String,
    parts: Vec<String>,
    is_prefix: bool,
    /// Byte position of the first `+` (Vault: `strings.Index(path, "+")`).
    first_wildcard: usize,
    wildcards: usize,
    perms: Permissions,
}

impl SegmentRule {
    fn new(pattern: String, perms: Permissions) -> Self {
        let (path, is_prefix) = match pattern.strip_suffix('*') {
            Some(p) => (p.to_string(), true),
            None => (pattern.clone(), false),
        };
        let parts: Vec<String> = path.split('/').map(str::to_string).collect();
        SegmentRule {
            first_wildcard: pattern.find('+').unwrap_or(pattern.len()),
            wildcards: parts.iter().filter(|p| *p == "+").count(),
            parts,
            is_prefix,
            path,
            perms,
        }
    }

    fn matches(&self, path_parts: &[&str]) -> bool {
        if path_parts.len() < self.parts.len()
            || (!self.is_prefix && path_parts.len() != self.parts.len())
        {
            return false;
        }
        let last = self.parts.len() - 1;
        self.parts
            .iter()
            .zip(path_parts)
            .enumerate()
            .all(|(i, (want, got))| {
                if want == "+" {
                    !got.is_empty()
                } else {
                    want == got || (self.is_prefix && i == last && got.starts_with(want.as_str()))
                }
            })
    }

    fn priority(&self) -> Priority<'_> {
        Priority {
            first_wildcard: self.first_wildcard,
            not_prefix: !self.is_prefix,
            fewer_wildcards: Reverse(self.wildcards),
            len: self.path.len(),
            path: &self.path,
        }
    }
}

/// The `+` rules indexed by their parts, all but the last: a lookup walks
/// the path's segments (a literal child, and the `+` child for a non-empty
/// segment), so it meets only the rules whose leading parts fit, however
/// many policies the set holds; [`SegmentRule::matches`] then decides.
#[derive(Debug, Default)]
struct SegmentIndex {
    nodes: Vec<SegmentNode>,
}

#[derive(Debug, Default)]
struct SegmentNode {
    literal: HashMap<String, usize>,
    plus: Option<usize>,
    /// Rules whose leading parts end here.
    rules: Vec<usize>,
}

impl SegmentIndex {
    fn new(rules: &[SegmentRule]) -> Self {
        let mut index = SegmentIndex {
            nodes: vec![SegmentNode::default()],
        };
        for (i, rule) in rules.iter().enumerate() {
            let lead = &rule.parts[..rule.parts.len().saturating_sub(1)];
            let mut node = 0;
            for part in lead {
                let next = if part == "+" {
                    index.nodes[node].plus
                } else {
                    index.nodes[node].literal.get(part).copied()
                };
                node = match next {
                    Some(n) => n,
                    None => {
                        let n = index.nodes.len();
                        index.nodes.push(SegmentNode::default());
                        if part == "+" {
                            index.nodes[node].plus = Some(n);
                        } else {
                            index.nodes[node].literal.insert(part.clone(), n);
                        }
                        n
                    }
                };
            }
            index.nodes[node].rules.push(i);
        }
        index
    }

    /// The rules whose leading parts fit `parts` (a superset of the
    /// matching ones).
    fn candidates(&self, parts: &[&str]) -> Vec<usize> {
        let mut out = Vec::new();
        let mut frontier = vec![0usize];
        for part in parts {
            let mut next = Vec::new();
            for &n in &frontier {
                let node = &self.nodes[n];
                out.extend_from_slice(&node.rules);
                next.extend(node.literal.get(*part).copied());
                if !part.is_empty() {
                    next.extend(node.plus);
                }
            }
            if next.is_empty() {
                return out;
            }
            frontier = next;
        }
        for &n in &frontier {
            out.extend_from_slice(&self.nodes[n].rules);
        }
        out
    }
}

/// Priority of a non-exact candidate: the greatest wins. Field order is
/// Vault's tie-break order (a) to (e).
#[derive(Debug, PartialEq, Eq, PartialOrd, Ord)]
struct Priority<'a> {
    first_wildcard: usize,
    not_prefix: bool,
    fewer_wildcards: Reverse<usize>,
    len: usize,
    path: &'a str,
}

/// A byte-wise prefix tree answering "the longest stored key that is a
/// prefix of this path".
#[derive(Debug)]
struct PrefixTree<T> {
    nodes: Vec<TrieNode<T>>,
}

#[derive(Debug)]
struct TrieNode<T> {
    /// Sorted by byte.
    children: Vec<(u8, usize)>,
    value: Option<T>,
}

impl<T> TrieNode<T> {
    fn child(&self, b: u8) -> Option<usize> {
        self.children
            .binary_search_by_key(&b, |(k, _)| *k)
            .ok()
            .map(|i| self.children[i].1)
    }
}

impl<T> PrefixTree<T> {
    fn new() -> Self {
        PrefixTree {
            nodes: vec![TrieNode {
                children: Vec::new(),
                value: None,
            }],
        }
    }

    /// The slot for `key`, created empty if absent.
    fn slot(&mut self, key: &str) -> &mut Option<T> {
        let mut node = 0;
        for b in key.bytes() {
            node = match self.nodes[node]
                .children
                .binary_search_by_key(&b, |(k, _)| *k)
            {
                Ok(i) => self.nodes[node].children[i].1,
                Err(i) => {
                    let id = self.nodes.len();
                    self.nodes.push(TrieNode {
                        children: Vec::new(),
                        value: None,
                    });
                    self.nodes[node].children.insert(i, (b, id));
                    id
                }
            };
        }
        &mut self.nodes[node].value
    }

    /// The value of the longest key that prefixes `path`, with that key's length.
    fn longest_prefix(&self, path: &str) -> Option<(usize, &T)> {
        let mut best = self.nodes[0].value.as_ref().map(|v| (0, v));
        let mut node = 0;
        for (i, b) in path.bytes().enumerate() {
            match self.nodes[node].child(b) {
                Some(next) => node = next,
                None => break,
            }
            if let Some(v) = &self.nodes[node].value {
                best = Some((i + 1, v));
            }
        }
        best
    }
}

/// The compiled ACL of a set of policies.
#[derive(Debug)]
pub struct Acl {
    root: bool,
    exact: HashMap<String, Permissions>,
    globs: PrefixTree<Permissions>,
    segments: Vec<SegmentRule>,
    segment_index: SegmentIndex,
    /// Every non-exact pattern's fixed part (up to its first `+` or `*`) with
    /// the pattern's merged capabilities, for [`Acl::has_access_under`].
    wildcard_prefixes: Vec<(String, CapabilitySet)>,
}

impl Acl {
    /// Compiles `(name, policy)` pairs. A pair named [`ROOT_POLICY`] makes the
    /// ACL allow everything.
    pub fn new<'a>(policies: impl IntoIterator<Item = (&'a str, &'a ParsedPolicy)>) -> Acl {
        let mut acl = Acl {
            root: false,
            exact: HashMap::new(),
            globs: PrefixTree::new(),
            segments: Vec::new(),
            segment_index: SegmentIndex::default(),
            wildcard_prefixes: Vec::new(),
        };
        let mut wildcards: HashMap<String, Permissions> = HashMap::new();
        let mut segments: HashMap<String, Permissions> = HashMap::new();
        for (name, policy) in policies {
            if name == ROOT_POLICY {
                acl.root = true;
            }
            for rule in policy.rules.iter().filter(|r| !r.is_templated()) {
                let perms = match classify(rule) {
                    Kind::Exact => acl.exact.entry(rule.path.clone()).or_default(),
                    Kind::Glob(prefix) => acl
                        .globs
                        .slot(prefix)
                        .get_or_insert_with(Permissions::default),
                    Kind::Segment => segments.entry(rule.path.clone()).or_default(),
                };
                perms.merge(name, rule.capabilities);
                if !matches!(classify(rule), Kind::Exact) {
                    // Merged per pattern, as the rules are: a `deny` at one
                    // pattern must not hide a grant at another one with the
                    // same fixed part (found by the fuzz targets, issue 13).
                    wildcards
                        .entry(rule.path.clone())
                        .or_default()
                        .merge(name, rule.capabilities);
                }
            }
        }
        acl.wildcard_prefixes = wildcards
            .into_iter()
            .map(|(pattern, p)| {
                let fixed = pattern.find(['+', '*']).map_or(pattern.len(), |i| i);
                (pattern[..fixed].to_string(), p.capabilities)
            })
            .collect();
        acl.segments = segments
            .into_iter()
            .map(|(pattern, perms)| SegmentRule::new(pattern, perms))
            .collect();
        acl.segment_index = SegmentIndex::new(&acl.segments);
        acl
    }

    /// Whether the set holds the `root` policy.
    pub fn is_root(&self) -> bool {
        self.root
    }

    /// Whether any rule grants a capability (other than `deny`) on some path
    /// under `mount` (`secret/`): the rule governing the mount path itself
    /// (resolved as a LIST, as Vault's `hasMountAccess` does first, so an
    /// exact `secret` counts), a rule for a path inside the mount, or a
    /// wildcard rule whose fixed part covers the mount or lies inside it.
    pub fn has_access_under(&self, mount: &str) -> bool {
        if self.root {
            return true;
        }
        let grants = |c: &CapabilitySet| !c.is_empty() && !c.contains(Capability::Deny);
        self.lookup(normalize(mount), true)
            .is_some_and(|p| grants(&p.capabilities))
            || self
                .exact
                .iter()
                .any(|(path, p)| path.starts_with(mount) && grants(&p.capabilities))
            || self.wildcard_prefixes.iter().any(|(fixed, caps)| {
                (fixed.starts_with(mount) || mount.starts_with(fixed.as_str())) && grants(caps)
            })
    }

    /// The capabilities on `path`, sorted: `["root"]` for root, `["deny"]`
    /// when denied or nothing matches. As Vault's `sys/capabilities*`, this
    /// resolves the path the way a LIST does (an exact rule `foo` also covers
    /// `foo/`).
    pub fn capabilities(&self, path: &str) -> Vec<String> {
        if self.root {
            return vec![ROOT_POLICY.to_string()];
        }
        report(self.lookup(normalize(path), true))
    }

    /// Decides whether `op` on `path` is allowed; `needs_sudo` marks a
    /// root-protected path, where `sudo` is required as well.
    pub fn authorize(&self, path: &str, op: Operation, needs_sudo: bool) -> Decision {
        if self.root {
            return Decision {
                allowed: true,
                root: true,
                capabilities: vec![ROOT_POLICY.to_string()],
                granting_policies: vec![ROOT_POLICY.to_string()],
            };
        }
        let perms = self.lookup(normalize(path), op == Operation::List);
        let caps = perms.map(|p| p.capabilities).unwrap_or_default();
        let needed = op.capability();
        let allowed = !caps.contains(Capability::Deny)
            && caps.contains(needed)
            && (!needs_sudo || caps.contains(Capability::Sudo));
        let mut granting_policies: Vec<String> = match perms {
            Some(p) if allowed => p
                .grants
                .iter()
                .filter(|(_, c)| c.contains(needed))
                .map(|(name, _)| name.clone())
                .collect(),
            _ => Vec::new(),
        };
        granting_policies.sort_unstable();
        granting_policies.dedup();
        Decision {
            allowed,
            root: false,
            capabilities: report(perms),
            granting_policies,
        }
    }

    /// The merged permissions governing `path`.
    fn lookup(&self, path: &str, list: bool) -> Option<&Permissions> {
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

    fn non_exact(&self, path: &str) -> Option<&Permissions> {
        let mut best: Option<(Priority<'_>, &Permissions)> =
            self.globs.longest_prefix(path).map(|(len, perms)| {
                let prefix = path.get(..len).unwrap_or(path);
                let prio = Priority {
                    first_wildcard: len,
                    not_prefix: false,
                    fewer_wildcards: Reverse(0),
                    len,
                    path: prefix,
                };
                (prio, perms)
            });
        if self.segments.is_empty() {
            return best.map(|(_, p)| p);
        }
        let parts: Vec<&str> = path.split('/').collect();
        let candidates = self.segment_index.candidates(&parts);
        let rules = candidates.iter().filter_map(|&i| self.segments.get(i));
        for rule in rules.filter(|r| r.matches(&parts)) {
            let prio = rule.priority();
            if best.as_ref().is_none_or(|(b, _)| prio > *b) {
                best = Some((prio, &rule.perms));
            }
        }
        best.map(|(_, p)| p)
    }
}

enum Kind<'a> {
    Exact,
    /// A pure glob, with its prefix (the pattern without the `*`).
    Glob(&'a str),
    Segment,
}

/// Vault's classification: `+` counts only as a whole segment (or a segment
/// start, `/+x`, which then matches literally); `*` only at the end.
fn classify(rule: &PathRule) -> Kind<'_> {
    let p = rule.path.as_str();
    if p == "+" || p.contains("/+") || p.starts_with("+/") {
        Kind::Segment
    } else if let Some(prefix) = p.strip_suffix('*') {
        Kind::Glob(prefix)
    } else {
        Kind::Exact
    }
}

/// Request paths are matched without leading slashes.
fn normalize(path: &str) -> &str {
    path.trim_start_matches('/')
}

/// The capability list reported for a winning rule.
fn report(perms: Option<&Permissions>) -> Vec<String> {
    match perms.map(|p| p.capabilities) {
        Some(c) if !c.is_empty() && !c.contains(Capability::Deny) => c.names(),
        _ => vec![Capability::Deny.as_str().to_string()],
    }
}

#[cfg(test)]
mod tests {
    use super::Operation::*;
    use super::*;
    use crate::parse::parse_policy;

    /// One policy of a test case.
    #[derive(Debug, Clone, Copy)]
    enum P {
        /// A policy with this HCL text (named `p<index>`).
        Hcl(&'static str),
        /// The built-in `root`.
        Root,
        /// The built-in `default`, with Vault's shipped text.
        Default,
        /// A name on the token that matches no stored policy.
        Missing,
    }
    use P::*;

    /// Compiles the policies of a case the way the store does: missing names
    /// contribute nothing.
    fn acl_for(policies: &[P]) -> Acl {
        let parsed: Vec<(String, ParsedPolicy)> = policies
            .iter()
            .enumerate()
            .filter_map(|(i, p)| match p {
                Hcl(text) => Some((format!("p{i}"), parse_policy(text).unwrap())),
                Root => Some((ROOT_POLICY.to_string(), ParsedPolicy::default())),
                Default => Some((
                    "default".to_string(),
                    parse_policy(crate::store::DEFAULT_POLICY).unwrap(),
                )),
                Missing => None,
            })
            .collect();
        Acl::new(parsed.iter().map(|(n, p)| (n.as_str(), p)))
    }

    const SECRET_READ: &str = r#"path "secret/*" { capabilities = ["read"] }"#;
    const SEG_TEAMB: &str = r#"path "secret/+/teamb" { capabilities = ["read"] }"#;
    const PREC_A: &str = r#"
        path "secret/a*" { capabilities = ["read"] }
        path "secret/+" { capabilities = ["list"] }
        path "foo/bar/+/baz" { capabilities = ["update"] }
        path "foo/+/bar/baz" { capabilities = ["delete"] }
    "#;
    const PREC_B: &str = r#"
        path "secret/+" { capabilities = ["read"] }
        path "secret/*" { capabilities = ["list"] }
        path "kv/+/bar" { capabilities = ["read"] }
        path "kv/+/ba*" { capabilities = ["list"] }
    "#;
    const PREC_C: &str = r#"
        path "secret/+/+/c" { capabilities = ["read"] }
        path "secret/+/b/c" { capabilities = ["list"] }
    "#;
    const PREC_D: &str = r#"
        path "secret/+/bar/ba*" { capabilities = ["read"] }
        path "secret/+/bar/b*" { capabilities = ["list"] }
    "#;
    const PREC_E1: &str = r#"path "+/a/+" { capabilities = ["read"] }"#;
    const PREC_E2: &str = r#"path "+/+/b" { capabilities = ["list"] }"#;
    const SHADOW: &str = r#"
        path "secret/*" { capabilities = ["read"] }
        path "secret/foo" { capabilities = ["list"] }
    "#;
    const SECRET_DENY: &str = r#"path "secret/*" { capabilities = ["deny"] }"#;
    const SECRET_LIST: &str = r#"path "secret/*" { capabilities = ["list"] }"#;
    const FOO_GLOB_LIST: &str = r#"path "secret/foo*" { capabilities = ["list"] }"#;
    const AUDIT_UPDATE: &str = r#"path "sys/audit" { capabilities = ["update"] }"#;
    const AUDIT_SUDO: &str = r#"path "sys/audit" { capabilities = ["update", "sudo"] }"#;
    const AUDIT_SUDO_ONLY: &str = r#"path "sys/audit" { capabilities = ["sudo"] }"#;
    const AUDIT_SUDO_DENY: &str = r#"path "sys/*" { capabilities = ["deny"] }
        path "sys/audit" { capabilities = ["update", "sudo"] }"#;
    const AUDIT_DENY: &str = r#"path "sys/audit" { capabilities = ["deny"] }"#;
    const EXACT_LIST: &str = r#"path "secret/foo" { capabilities = ["list"] }"#;
    const EXACT_SLASH_DENY: &str = r#"
        path "secret/foo" { capabilities = ["list"] }
        path "secret/foo/" { capabilities = ["deny"] }
    "#;
    const MIDDLE_STAR: &str = r#"path "secret/*/foo" { capabilities = ["read"] }"#;
    const EVERYTHING: &str = r#"path "*" { capabilities = ["read"] }"#;
    const LEGACY_WRITE: &str = r#"path "secret/*" { policy = "write" }"#;
    const SEG_GLOB: &str = r#"path "secret/+/teamb/*" { capabilities = ["read"] }"#;
    const LITERAL_PLUS: &str = r#"path "a/+b" { capabilities = ["read"] }"#;

    /// `(policies, path, operation, needs_sudo, expected allowed)`. Drives
    /// both `authorize` and `capabilities`.
    #[rustfmt::skip]
    const CASES: &[(&[P], &str, Operation, bool, bool)] = &[
        // `*` globs: prefix match, only at the end.
        (&[Hcl(SECRET_READ)], "secret/foo", Read, false, true),
        (&[Hcl(SECRET_READ)], "secret/foo/bar/baz", Read, false, true),
        (&[Hcl(SECRET_READ)], "secret/", Read, false, true),
        (&[Hcl(SECRET_READ)], "secret", Read, false, false),
        (&[Hcl(SECRET_READ)], "secretary", Read, false, false),
        (&[Hcl(SECRET_READ)], "secret/foo", Update, false, false),
        (&[Hcl(SECRET_READ)], "/secret/foo", Read, false, true),
        (&[Hcl(FOO_GLOB_LIST)], "secret/foo", List, false, true),
        (&[Hcl(FOO_GLOB_LIST)], "secret/food", List, false, true),
        (&[Hcl(FOO_GLOB_LIST)], "secret/foo/x/", List, false, true),
        (&[Hcl(FOO_GLOB_LIST)], "secret/fo", List, false, false),
        (&[Hcl(EVERYTHING)], "anything/at/all", Read, false, true),
        (&[Hcl(EVERYTHING)], "", Read, false, true),
        // `*` in the middle is a literal character.
        (&[Hcl(MIDDLE_STAR)], "secret/x/foo", Read, false, false),
        (&[Hcl(MIDDLE_STAR)], "secret/*/foo", Read, false, true),
        // `+`: exactly one non-empty segment, never crossing `/`.
        (&[Hcl(SEG_TEAMB)], "secret/a/teamb", Read, false, true),
        (&[Hcl(SEG_TEAMB)], "secret/a/b/teamb", Read, false, false),
        (&[Hcl(SEG_TEAMB)], "secret//teamb", Read, false, false),
        (&[Hcl(SEG_TEAMB)], "secret/a/teamb/x", Read, false, false),
        (&[Hcl(SEG_TEAMB)], "secret/a/teambx", Read, false, false),
        (&[Hcl(SEG_GLOB)], "secret/a/teamb/x/y", Read, false, true),
        (&[Hcl(SEG_GLOB)], "secret/a/teamb/", Read, false, true),
        (&[Hcl(SEG_GLOB)], "secret/a/teamb", Read, false, false),
        (&[Hcl(SEG_GLOB)], "secret/a/b/teamb/x", Read, false, false),
        (&[Hcl(LITERAL_PLUS)], "a/+b", Read, false, true),
        (&[Hcl(LITERAL_PLUS)], "a/xb", Read, false, false),
        // (a) the later first wildcard wins.
        (&[Hcl(PREC_A)], "secret/ab", Read, false, true),
        (&[Hcl(PREC_A)], "secret/ab", List, false, false),
        (&[Hcl(PREC_A)], "secret/x", List, false, true),
        (&[Hcl(PREC_A)], "foo/bar/bar/baz", Update, false, true),
        (&[Hcl(PREC_A)], "foo/bar/bar/baz", Delete, false, false),
        // (b) not ending in `*` beats ending in `*`.
        (&[Hcl(PREC_B)], "secret/x", Read, false, true),
        (&[Hcl(PREC_B)], "secret/x", List, false, false),
        (&[Hcl(PREC_B)], "secret/x/y", List, false, true),
        (&[Hcl(PREC_B)], "secret/x/y", Read, false, false),
        (&[Hcl(PREC_B)], "kv/x/bar", Read, false, true),
        (&[Hcl(PREC_B)], "kv/x/bar", List, false, false),
        (&[Hcl(PREC_B)], "kv/x/baz", List, false, true),
        // (c) fewer `+` wins.
        (&[Hcl(PREC_C)], "secret/a/b/c", List, false, true),
        (&[Hcl(PREC_C)], "secret/a/b/c", Read, false, false),
        (&[Hcl(PREC_C)], "secret/a/x/c", Read, false, true),
        // (d) longer wins.
        (&[Hcl(PREC_D)], "secret/x/bar/baz", Read, false, true),
        (&[Hcl(PREC_D)], "secret/x/bar/baz", List, false, false),
        (&[Hcl(PREC_D)], "secret/x/bar/bu", List, false, true),
        // (e) lexicographically larger wins, whatever the policy order.
        (&[Hcl(PREC_E1), Hcl(PREC_E2)], "x/a/b", Read, false, true),
        (&[Hcl(PREC_E1), Hcl(PREC_E2)], "x/a/b", List, false, false),
        (&[Hcl(PREC_E2), Hcl(PREC_E1)], "x/a/b", Read, false, true),
        (&[Hcl(PREC_E2), Hcl(PREC_E1)], "x/a/b", List, false, false),
        (&[Hcl(PREC_E1), Hcl(PREC_E2)], "x/y/b", List, false, true),
        // The shadowing trap: a more specific pattern hides a broader one.
        (&[Hcl(SHADOW)], "secret/foo", Read, false, false),
        (&[Hcl(SHADOW)], "secret/foo", List, false, true),
        (&[Hcl(SHADOW)], "secret/bar", Read, false, true),
        // Same pattern across policies: union; `deny` anywhere wins.
        (&[Hcl(SECRET_READ), Hcl(SECRET_LIST)], "secret/x", Read, false, true),
        (&[Hcl(SECRET_READ), Hcl(SECRET_LIST)], "secret/x", List, false, true),
        (&[Hcl(SECRET_READ), Hcl(SECRET_DENY)], "secret/x", Read, false, false),
        (&[Hcl(SECRET_DENY), Hcl(SECRET_READ)], "secret/x", Read, false, false),
        // Different patterns across policies are never merged.
        (&[Hcl(SECRET_READ), Hcl(FOO_GLOB_LIST)], "secret/foo", Read, false, false),
        (&[Hcl(SECRET_READ), Hcl(FOO_GLOB_LIST)], "secret/foo", List, false, true),
        // sudo on root-protected paths.
        (&[Hcl(AUDIT_UPDATE)], "sys/audit", Update, false, true),
        (&[Hcl(AUDIT_UPDATE)], "sys/audit", Update, true, false),
        (&[Hcl(AUDIT_SUDO)], "sys/audit", Update, true, true),
        (&[Hcl(AUDIT_SUDO_ONLY)], "sys/audit", Update, true, false),
        (&[Hcl(AUDIT_SUDO), Hcl(AUDIT_DENY)], "sys/audit", Update, true, false),
        (&[Hcl(AUDIT_SUDO_DENY)], "sys/audit", Update, true, true),
        (&[Hcl(AUDIT_SUDO_DENY)], "sys/mounts", Read, false, false),
        // LIST on a trailing-slash path falls back to the exact rule without it.
        (&[Hcl(EXACT_LIST)], "secret/foo/", List, false, true),
        (&[Hcl(EXACT_LIST)], "secret/foo", List, false, true),
        (&[Hcl(EXACT_SLASH_DENY)], "secret/foo/", List, false, false),
        // Legacy `policy = "write"`.
        (&[Hcl(LEGACY_WRITE)], "secret/x", Create, false, true),
        (&[Hcl(LEGACY_WRITE)], "secret/x", Delete, false, true),
        (&[Hcl(LEGACY_WRITE)], "secret/x", Patch, false, false),
        // root may do everything, sudo included, even beside other policies.
        (&[Root], "sys/raw/anything", Delete, true, true),
        (&[Root, Hcl(SECRET_DENY)], "secret/x", Read, false, true),
        // Unknown names grant nothing; no policy, nothing.
        (&[Missing], "secret/x", Read, false, false),
        (&[Missing, Hcl(SECRET_READ)], "secret/x", Read, false, true),
        (&[], "secret/x", Read, false, false),
        // The default policy.
        (&[Default], "auth/token/lookup-self", Read, false, true),
        (&[Default], "auth/token/lookup-self", Update, false, false),
        (&[Default], "auth/token/renew-self", Update, false, true),
        (&[Default], "sys/capabilities-self", Update, false, true),
        (&[Default], "cubbyhole/x", Create, false, true),
        (&[Default], "cubbyhole/x/y", Delete, false, true),
        (&[Default], "cubbyhole/", List, false, true),
        (&[Default], "cubbyhole/x", Patch, false, false),
        (&[Default], "sys/tools/hash/sha2-256", Update, false, true),
        (&[Default], "identity/oidc/provider/p1/authorize", Read, false, true),
        (&[Default], "identity/entity/id/{{identity.entity.id}}", Read, false, false),
        (&[Default], "secret/foo", Read, false, false),
        (&[Default, Hcl(SECRET_READ)], "secret/foo", Read, false, true),
    ];

    #[test]
    fn decision_table_drives_authorize_and_capabilities() {
        for (i, &(policies, path, op, sudo, expected)) in CASES.iter().enumerate() {
            let acl = acl_for(policies);
            let ctx = format!("case {i}: {policies:?} {op:?} {path:?} sudo={sudo}");

            let d = acl.authorize(path, op, sudo);
            assert_eq!(d.allowed, expected, "authorize, {ctx}: {d:?}");

            let caps = acl.capabilities(path);
            let has = |c: &str| caps.iter().any(|x| x == c);
            let via_caps = has("root") || (has(op.capability().as_str()) && (!sudo || has("sudo")));
            assert_eq!(via_caps, expected, "capabilities, {ctx}: {caps:?}");

            // Same rule resolution, same report.
            if op == List || !path.ends_with('/') {
                assert_eq!(d.capabilities, caps, "{ctx}");
            }
            let mut sorted = caps.clone();
            sorted.sort();
            assert_eq!(sorted, caps, "{ctx}");
            if !d.root {
                assert_eq!(d.allowed, !d.granting_policies.is_empty(), "{ctx}");
            }
        }
    }

    #[test]
    fn capability_reports() {
        let acl = acl_for(&[Hcl(
            r#"path "a" { capabilities = ["update", "read", "sudo", "create"] }
            path "b" { capabilities = [] }"#,
        )]);
        assert_eq!(acl.capabilities("a"), ["create", "read", "sudo", "update"]);
        // A rule with no capability, or no rule: deny.
        assert_eq!(acl.capabilities("b"), ["deny"]);
        assert_eq!(acl.capabilities("c"), ["deny"]);
        assert_eq!(acl_for(&[Root]).capabilities("c"), ["root"]);
        let d = acl_for(&[Root]).authorize("x", Read, true);
        assert!(d.allowed && d.root);
        assert_eq!(d.granting_policies, ["root"]);
        assert_eq!(d.capabilities, ["root"]);
    }

    #[test]
    fn granting_policies_name_the_policies_that_granted_the_operation() {
        let acl = acl_for(&[
            Hcl(SECRET_READ),
            Hcl(r#"path "secret/*" { capabilities = ["read", "list"] }"#),
            Hcl(r#"path "secret/foo" { capabilities = ["read"] }"#),
        ]);
        let d = acl.authorize("secret/x", Read, false);
        assert_eq!(d.granting_policies, ["p0", "p1"]);
        assert_eq!(d.capabilities, ["list", "read"]);
        assert_eq!(
            acl.authorize("secret/x", List, false).granting_policies,
            ["p1"]
        );
        assert_eq!(
            acl.authorize("secret/foo", Read, false).granting_policies,
            ["p2"]
        );
        assert!(acl
            .authorize("secret/x", Update, false)
            .granting_policies
            .is_empty());
    }

    /// Vault's `sys/capabilities` resolves paths as a LIST would, so on a
    /// trailing-slash path covered only by the slash-less exact rule it
    /// reports capabilities a READ there would not get. Kept as Vault has it.
    #[test]
    fn capabilities_use_the_list_fallback_like_vault() {
        let acl = acl_for(&[Hcl(
            r#"path "secret/foo" { capabilities = ["read", "list"] }"#,
        )]);
        assert_eq!(acl.capabilities("secret/foo/"), ["list", "read"]);
        assert!(acl.authorize("secret/foo/", List, false).allowed);
        assert!(!acl.authorize("secret/foo/", Read, false).allowed);
    }

    #[test]
    fn many_exact_rules() {
        let text: String = (0..20_000)
            .map(|i| format!("path \"kv/item{i}\" {{ capabilities = [\"read\"] }}\n"))
            .collect();
        let policy = parse_policy(&text).unwrap();
        let acl = Acl::new([("big", &policy)]);
        assert!(acl.authorize("kv/item19999", Read, false).allowed);
        assert!(!acl.authorize("kv/item20000", Read, false).allowed);
    }

    #[test]
    fn prefix_tree_finds_the_longest_prefix() {
        let mut t = PrefixTree::new();
        *t.slot("a/") = Some(1);
        *t.slot("a/bc") = Some(2);
        *t.slot("") = Some(0);
        assert_eq!(
            t.longest_prefix("a/bcd").map(|(l, v)| (l, *v)),
            Some((4, 2))
        );
        assert_eq!(t.longest_prefix("a/b").map(|(l, v)| (l, *v)), Some((2, 1)));
        assert_eq!(t.longest_prefix("zzz").map(|(l, v)| (l, *v)), Some((0, 0)));
    }

    #[test]
    fn access_under_a_mount() {
        let check = |hcl: &str, mount: &str| {
            let p = crate::parse::parse_policy(hcl).unwrap();
            Acl::new([("p", &p)]).has_access_under(mount)
        };
        assert!(check(
            r#"path "secret/data/app" { capabilities = ["read"] }"#,
            "secret/"
        ));
        assert!(check(
            r#"path "secret/*" { capabilities = ["list"] }"#,
            "secret/"
        ));
        assert!(check(r#"path "*" { capabilities = ["read"] }"#, "secret/"));
        assert!(check(
            r#"path "secret/+/app" { capabilities = ["read"] }"#,
            "secret/"
        ));
        assert!(!check(
            r#"path "secret/data/app" { capabilities = ["deny"] }"#,
            "secret/"
        ));
        assert!(!check(
            r#"path "other/*" { capabilities = ["read"] }"#,
            "secret/"
        ));
        assert!(!check(
            r#"path "secretive/x" { capabilities = ["read"] }"#,
            "secret/"
        ));
    }
}
