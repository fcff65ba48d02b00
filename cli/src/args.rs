//! Vault's CLI uses Go's flag syntax, where `-dev` and `--dev` mean the same.
//! We accept both by rewriting single-dash long flags before clap sees them.

/// Rewrites `-flag` / `-flag=value` into `--flag` / `--flag=value`. Short
/// flags (`-h`), `--` and everything after it, and values are left alone.
pub fn normalize(args: impl IntoIterator<Item = String>) -> Vec<String> {
    let mut out = Vec::new();
    let mut passthrough = false;
    for (i, a) in args.into_iter().enumerate() {
        if i == 0 || passthrough {
            out.push(a);
            continue;
        }
        if a == "--" {
            passthrough = true;
            out.push(a);
            continue;
        }
        let name_len = a[1..].split('=').next().map_or(0, str::len);
        if a.starts_with('-')
            && !a.starts_with("--")
            && name_len > 1
            && a[1..].starts_with(|c: char| c.is_ascii_alphabetic())
        {
            out.push(format!("-{a}"));
        } else {
            out.push(a);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn n(args: &[&str]) -> Vec<String> {
        normalize(args.iter().map(|s| s.to_string()))
    }

    #[test]
    fn go_style_flags() {
        assert_eq!(n(&["b", "server", "-dev"]), vec!["b", "server", "--dev"]);
        assert_eq!(
            n(&["b", "server", "-dev-root-token-id=root", "--target", "seal"]),
            vec![
                "b",
                "server",
                "--dev-root-token-id=root",
                "--target",
                "seal"
            ]
        );
        assert_eq!(n(&["b", "-h"]), vec!["b", "-h"]);
        assert_eq!(n(&["b", "x", "--", "-dev"]), vec!["b", "x", "--", "-dev"]);
        assert_eq!(n(&["b", "x", "-5"]), vec!["b", "x", "-5"]);
    }
}
