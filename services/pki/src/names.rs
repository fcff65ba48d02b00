//! Vault's role name rules (`validateNames`): which common names and DNS
//! SANs a role allows.

use crate::error::PkiError;
use crate::store::RoleRecord;

/// Whether `name` is a valid hostname: labels of letters, digits and `-`
/// (not at either end), at most 63 bytes each, 253 in all; a leading `*.`
/// wildcard label is accepted.
pub fn is_hostname(name: &str) -> bool {
    let name = name.strip_prefix("*.").unwrap_or(name);
    let name = name.strip_suffix('.').unwrap_or(name);
    !name.is_empty()
        && name.len() <= 253
        && name.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-')
        })
}

/// Shell-style glob with `*` only (Vault's `glob.Glob`): `*` matches any run
/// of characters, including dots.
pub fn glob_match(pattern: &str, name: &str) -> bool {
    let parts: Vec<&str> = pattern.split('*').collect();
    if parts.len() == 1 {
        return pattern == name;
    }
    let (first, last) = (parts[0], parts[parts.len() - 1]);
    if !name.starts_with(first) || name.len() < first.len() + last.len() || !name.ends_with(last) {
        return false;
    }
    let mut rest = &name[first.len()..name.len() - last.len()];
    for middle in &parts[1..parts.len() - 1] {
        match rest.find(middle) {
            Some(at) => rest = &rest[at + middle.len()..],
            None => return false,
        }
    }
    true
}

/// Whether `role` allows the DNS name (or common name) `name`.
pub fn name_allowed(role: &RoleRecord, name: &str) -> bool {
    let name = name.to_ascii_lowercase();
    if role.enforce_hostnames && !is_hostname(&name) {
        return false;
    }
    if role.allow_any_name {
        return true;
    }
    if role.allow_localhost && (name == "localhost" || name == "localdomain") {
        return true;
    }
    // A wildcard name is checked by its base (`*.a.b` → `a.b` must be a
    // subdomain of an allowed domain, as Vault does for allow_subdomains).
    let (wildcard, base) = match name.strip_prefix("*.") {
        Some(base) => (true, base),
        None => (false, name.as_str()),
    };
    role.allowed_domains.iter().any(|domain| {
        let domain = domain.trim().to_ascii_lowercase();
        if domain.is_empty() {
            return false;
        }
        if role.allow_bare_domains && !wildcard && name == domain {
            return true;
        }
        if role.allow_subdomains {
            let d = domain.strip_prefix("*.").unwrap_or(&domain);
            if (wildcard && base == d) || name.ends_with(&format!(".{d}")) {
                return true;
            }
        }
        role.allow_glob_domains && domain.contains('*') && glob_match(&domain, &name)
    })
}

/// Refuses the first name `role` does not allow, with Vault's wording.
pub fn check_names(role: &RoleRecord, common_name: &str, dns: &[String]) -> Result<(), PkiError> {
    if !common_name.is_empty() && !name_allowed(role, common_name) {
        return Err(PkiError::invalid(format!(
            "common name {common_name} not allowed by this role"
        )));
    }
    for name in dns {
        if !name_allowed(role, name) {
            return Err(PkiError::invalid(format!(
                "subject alternate name {name} not allowed by this role"
            )));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn role(domains: &[&str]) -> RoleRecord {
        RoleRecord {
            allowed_domains: domains.iter().map(|d| d.to_string()).collect(),
            enforce_hostnames: true,
            allow_localhost: true,
            ..RoleRecord::default()
        }
    }

    #[test]
    fn hostnames() {
        for ok in ["a.b", "x-1.example.com", "*.example.com", "localhost"] {
            assert!(is_hostname(ok), "{ok}");
        }
        for bad in ["", "-a.b", "a..b", "a_b.c", "a b", "*", "a.*.b"] {
            assert!(!is_hostname(bad), "{bad}");
        }
    }

    #[test]
    fn globs() {
        assert!(glob_match("*.example.com", "a.b.example.com"));
        assert!(glob_match("foo-*-bar.com", "foo-x-bar.com"));
        assert!(!glob_match("foo-*-bar.com", "foo-x-baz.com"));
        assert!(glob_match("exact.com", "exact.com"));
    }

    #[test]
    fn subdomains_only_when_allowed() {
        let mut r = role(&["mycompany.internal"]);
        assert!(!name_allowed(&r, "evil.com"));
        assert!(!name_allowed(&r, "web.mycompany.internal"));
        assert!(!name_allowed(&r, "mycompany.internal"));
        r.allow_subdomains = true;
        assert!(name_allowed(&r, "web.mycompany.internal"));
        assert!(name_allowed(&r, "*.mycompany.internal"));
        assert!(!name_allowed(&r, "evil.com"));
        assert!(!name_allowed(&r, "evilmycompany.internal"));
        assert!(!name_allowed(&r, "mycompany.internal"));
        r.allow_bare_domains = true;
        assert!(name_allowed(&r, "mycompany.internal"));
        assert!(name_allowed(&r, "localhost"));
        r.allow_localhost = false;
        assert!(!name_allowed(&r, "localhost"));
    }

    #[test]
    fn globs_any_and_hostnames() {
        let mut r = role(&["*.svc.local"]);
        assert!(!name_allowed(&r, "a.svc.local"));
        r.allow_glob_domains = true;
        assert!(name_allowed(&r, "a.svc.local"));
        r.allow_any_name = true;
        assert!(name_allowed(&r, "anything.example"));
        assert!(!name_allowed(&r, "not a hostname"));
        r.enforce_hostnames = false;
        assert!(name_allowed(&r, "not a hostname"));
        let e = check_names(&role(&["a.b"]), "evil.com", &[]).expect_err("refused");
        assert!(e.to_string().contains("evil.com not allowed"));
    }
}
