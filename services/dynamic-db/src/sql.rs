//! SQL text: splitting a role's statements, filling in their placeholders,
//! quoting identifiers and literals, and the timestamp format Vault uses for
//! `{{expiration}}`.

use zeroize::Zeroizing;

/// The SQL dialect of a plugin.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    Postgres,
    MySql,
}

/// Splits statements on `;`, but never inside a quoted string or identifier
/// (`'…'`, `"…"`, MySQL `` `…` ``), a PostgreSQL dollar-quoted body
/// (`$$…$$`, `$tag$…$tag$`) or a comment. Each element of `statements` may
/// hold several statements. A MySQL element that contains the word `END`
/// (a compound statement) runs unsplit, as in Vault. Empty pieces are
/// dropped; pieces are trimmed.
pub fn split(statements: &[String], dialect: Dialect) -> Vec<String> {
    let mut out = Vec::new();
    for element in statements {
        if dialect == Dialect::MySql && has_word(element, "END") {
            let trimmed = element.trim().trim_end_matches(';').trim();
            if !trimmed.is_empty() {
                out.push(trimmed.to_string());
            }
            continue;
        }
        for piece in split_one(element, dialect) {
            let piece = piece.trim();
            if !piece.is_empty() {
                out.push(piece.to_string());
            }
        }
    }
    out
}

fn has_word(text: &str, word: &str) -> bool {
    text.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .any(|w| w.eq_ignore_ascii_case(word))
}

fn split_one(s: &str, dialect: Dialect) -> Vec<&str> {
    let bytes = s.as_bytes();
    let mut pieces = Vec::new();
    let mut start = 0;
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b';' => {
                pieces.push(&s[start..i]);
                start = i + 1;
                i += 1;
            }
            q @ (b'\'' | b'"') => i = skip_quoted(bytes, i, q, dialect == Dialect::MySql),
            b'`' if dialect == Dialect::MySql => i = skip_quoted(bytes, i, b'`', false),
            b'-' if bytes.get(i + 1) == Some(&b'-') => {
                i = bytes[i..]
                    .iter()
                    .position(|&b| b == b'\n')
                    .map_or(bytes.len(), |p| i + p + 1);
            }
            b'#' if dialect == Dialect::MySql => {
                i = bytes[i..]
                    .iter()
                    .position(|&b| b == b'\n')
                    .map_or(bytes.len(), |p| i + p + 1);
            }
            b'/' if bytes.get(i + 1) == Some(&b'*') => {
                i = s[i + 2..].find("*/").map_or(bytes.len(), |p| i + 2 + p + 2);
            }
            b'$' if dialect == Dialect::Postgres => {
                let preceded_by_word =
                    i > 0 && (bytes[i - 1].is_ascii_alphanumeric() || bytes[i - 1] == b'_');
                match dollar_tag(&s[i..]) {
                    Some(tag) if !preceded_by_word => {
                        let body = i + tag.len();
                        i = s[body..]
                            .find(tag)
                            .map_or(bytes.len(), |p| body + p + tag.len());
                    }
                    _ => i += 1,
                }
            }
            _ => i += 1,
        }
    }
    pieces.push(&s[start..]);
    pieces
}

/// The index just past the quoted run that starts at `open`; a doubled
/// quote stays inside, as does a backslash-escaped one where `backslash`.
fn skip_quoted(bytes: &[u8], open: usize, quote: u8, backslash: bool) -> usize {
    let mut i = open + 1;
    while i < bytes.len() {
        let b = bytes[i];
        if backslash && b == b'\\' {
            i += 2;
        } else if b == quote {
            if bytes.get(i + 1) == Some(&quote) {
                i += 2;
            } else {
                return i + 1;
            }
        } else {
            i += 1;
        }
    }
    bytes.len()
}

/// `$$` or `$tag$` at the start of `s`.
fn dollar_tag(s: &str) -> Option<&str> {
    let rest = s.get(1..)?;
    let end = rest.find('$')?;
    let tag = &rest[..end];
    let valid = tag
        .chars()
        .enumerate()
        .all(|(n, c)| c == '_' || c.is_ascii_alphabetic() || (n > 0 && c.is_ascii_digit()));
    valid.then(|| &s[..end + 2])
}

/// The values a statement's placeholders stand for.
#[derive(Default)]
pub struct Placeholders<'a> {
    /// `{{name}}` and `{{username}}`.
    pub name: &'a str,
    pub password: Option<&'a str>,
    pub expiration: Option<&'a str>,
}

/// Fills in `{{name}}`, `{{username}}`, `{{password}}` and `{{expiration}}`.
/// The result may hold a password: it is zeroized on drop.
pub fn fill(statement: &str, values: &Placeholders<'_>) -> Zeroizing<String> {
    let mut out = Zeroizing::new(statement.replace("{{name}}", values.name));
    *out = out.replace("{{username}}", values.name);
    if let Some(p) = values.password {
        *out = out.replace("{{password}}", p);
    }
    if let Some(e) = values.expiration {
        *out = out.replace("{{expiration}}", e);
    }
    out
}

/// A PostgreSQL identifier in double quotes (`"` doubled).
pub fn pg_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// A MySQL string literal (as used for user names) in single quotes.
pub fn my_literal(value: &str) -> String {
    format!("'{}'", value.replace('\\', "\\\\").replace('\'', "''"))
}

/// Vault's `{{expiration}}`: `2006-01-02 15:04:05-0700`, in UTC.
pub fn expiration(unix: i64) -> String {
    chrono::DateTime::from_timestamp(unix, 0)
        .unwrap_or_default()
        .format("%Y-%m-%d %H:%M:%S%z")
        .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(dialect: Dialect, input: &[&str], want: &[&str]) {
        let input: Vec<String> = input.iter().map(|s| s.to_string()).collect();
        assert_eq!(split(&input, dialect), want, "{input:?}");
    }

    #[test]
    fn splitting() {
        use Dialect::*;
        check(
            Postgres,
            &["CREATE ROLE \"{{name}}\"; GRANT SELECT ON ALL TABLES IN SCHEMA public TO \"{{name}}\";"],
            &[
                "CREATE ROLE \"{{name}}\"",
                "GRANT SELECT ON ALL TABLES IN SCHEMA public TO \"{{name}}\"",
            ],
        );
        check(Postgres, &["a", " b ;; ", ""], &["a", "b"]);
        check(
            Postgres,
            &["SELECT 'a;b'; SELECT 'it''s;'"],
            &["SELECT 'a;b'", "SELECT 'it''s;'"],
        );
        check(
            Postgres,
            &["SELECT \"a;\"\"b\"; x"],
            &["SELECT \"a;\"\"b\"", "x"],
        );
        check(
            Postgres,
            &["DO $$ BEGIN PERFORM 1; PERFORM 2; END $$; SELECT 1"],
            &["DO $$ BEGIN PERFORM 1; PERFORM 2; END $$", "SELECT 1"],
        );
        check(
            Postgres,
            &["CREATE FUNCTION f() RETURNS int AS $body$ SELECT 1; $body$ LANGUAGE sql; x"],
            &[
                "CREATE FUNCTION f() RETURNS int AS $body$ SELECT 1; $body$ LANGUAGE sql",
                "x",
            ],
        );
        check(
            Postgres,
            &["SELECT $1; SELECT a$b; x"],
            &["SELECT $1", "SELECT a$b", "x"],
        );
        check(
            Postgres,
            &["-- a; b\nSELECT 1; /* c; d */ SELECT 2"],
            &["-- a; b\nSELECT 1", "/* c; d */ SELECT 2"],
        );
        check(
            MySql,
            &["CREATE USER '{{name}}'@'%' IDENTIFIED BY '{{password}}';GRANT SELECT ON *.* TO '{{name}}'@'%';"],
            &[
                "CREATE USER '{{name}}'@'%' IDENTIFIED BY '{{password}}'",
                "GRANT SELECT ON *.* TO '{{name}}'@'%'",
            ],
        );
        check(
            MySql,
            &["SELECT 'a\\';b'; SELECT `x;y`"],
            &["SELECT 'a\\';b'", "SELECT `x;y`"],
        );
        check(
            MySql,
            &["CREATE PROCEDURE p() BEGIN SELECT 1; SELECT 2; END;"],
            &["CREATE PROCEDURE p() BEGIN SELECT 1; SELECT 2; END"],
        );
        // An unterminated quote keeps the rest together.
        check(Postgres, &["SELECT 'a; b"], &["SELECT 'a; b"]);
    }

    #[test]
    fn placeholders() {
        let s = fill(
            "CREATE ROLE \"{{name}}\" PASSWORD '{{password}}' VALID UNTIL '{{expiration}}'; -- {{username}}",
            &Placeholders {
                name: "v-x",
                password: Some("pw"),
                expiration: Some("2030-01-01 00:00:00+0000"),
            },
        );
        assert_eq!(
            s.as_str(),
            "CREATE ROLE \"v-x\" PASSWORD 'pw' VALID UNTIL '2030-01-01 00:00:00+0000'; -- v-x"
        );
    }

    #[test]
    fn quoting_and_time() {
        assert_eq!(pg_ident("a\"b"), "\"a\"\"b\"");
        assert_eq!(my_literal("a'b\\"), "'a''b\\\\'");
        assert_eq!(expiration(0), "1970-01-01 00:00:00+0000");
        assert_eq!(expiration(1_700_000_000), "2023-11-14 22:13:20+0000");
    }
}
