//! Generated credentials: usernames from Vault's username templates (a small
//! subset of Go's `text/template` with Vault's functions) and passwords
//! after Vault's default password policy, both from the operating system's
//! CSPRNG.
//!
//! Supported in a template: text, `{{ … }}` actions (with `{{-`/`-}}`
//! trimming), pipelines (`a | f x`), parentheses, `.RoleName`,
//! `.DisplayName`, string and integer literals, and the functions `random`,
//! `unix_time`, `unix_time_millis`, `truncate`, `truncate_sha256`,
//! `uppercase`, `lowercase`, `replace`, `printf` (`%s`, `%d`, `%v`, `%%`),
//! `sha256` and `uuid`.

use rand::rngs::OsRng;
use rand::seq::SliceRandom;
use rand::Rng;
use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

use crate::layout::Secret;

const ALNUM: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
const UPPER: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ";
const LOWER: &[u8] = b"abcdefghijklmnopqrstuvwxyz";
const DIGITS: &[u8] = b"0123456789";

/// Vault's default PostgreSQL username template.
pub const POSTGRES_DEFAULT: &str = r#"{{ printf "v-%s-%s-%s-%s" (.DisplayName | truncate 8) (.RoleName | truncate 8) (random 20) (unix_time) | truncate 63 }}"#;
/// The MySQL/MariaDB default (32 characters at most, as MySQL 5.7+ allows).
pub const MYSQL_DEFAULT: &str = r#"{{ printf "v-%s-%s-%s-%s" (.DisplayName | truncate 4) (.RoleName | truncate 4) (random 20) (unix_time) | truncate 32 }}"#;
/// Vault's `mysql-legacy-database-plugin` default (16 characters at most).
pub const MYSQL_LEGACY_DEFAULT: &str =
    r#"{{ printf "v-%s-%s" (.RoleName | truncate 4) (random 20) | truncate 16 }}"#;

/// The values a username template may use.
pub struct TemplateData<'a> {
    pub role_name: &'a str,
    pub display_name: &'a str,
}

/// A random password after Vault's default policy: `len` characters
/// (at least 4) from `[A-Za-z0-9-]`, with at least one upper-case letter,
/// one lower-case letter, one digit and one `-`.
pub fn password(len: usize) -> Secret {
    let len = len.max(4);
    let mut rng = OsRng;
    let mut chars: Zeroizing<Vec<u8>> = Zeroizing::new(Vec::with_capacity(len));
    for class in [UPPER, LOWER, DIGITS] {
        chars.push(class[rng.gen_range(0..class.len())]);
    }
    chars.push(b'-');
    let all: Vec<u8> = ALNUM.iter().copied().chain([b'-']).collect();
    while chars.len() < len {
        chars.push(all[rng.gen_range(0..all.len())]);
    }
    chars.shuffle(&mut rng);
    Secret::new(chars.iter().map(|&b| char::from(b)).collect::<String>())
}

/// `n` random alphanumeric characters.
pub fn random_alnum(n: usize) -> String {
    let mut rng = OsRng;
    (0..n)
        .map(|_| char::from(ALNUM[rng.gen_range(0..ALNUM.len())]))
        .collect()
}

/// Renders a username template.
pub fn render(template: &str, data: &TemplateData<'_>) -> Result<String, String> {
    let mut out = String::new();
    let mut rest = template;
    while let Some(start) = rest.find("{{") {
        let mut text = &rest[..start];
        let mut inner = &rest[start + 2..];
        if let Some(trimmed) = inner.strip_prefix('-') {
            text = text.trim_end();
            inner = trimmed;
        }
        out.push_str(text);
        let end = inner
            .find("}}")
            .ok_or_else(|| "unclosed action in username template".to_string())?;
        let mut action = &inner[..end];
        rest = &inner[end + 2..];
        if let Some(trimmed) = action.strip_suffix('-') {
            action = trimmed;
            rest = rest.trim_start();
        }
        let tokens = lex(action)?;
        let mut parser = Parser { tokens, pos: 0 };
        let pipeline = parser.pipeline()?;
        if parser.pos != parser.tokens.len() {
            return Err("unexpected token in username template".into());
        }
        out.push_str(&eval_pipeline(&pipeline, data)?.into_string());
    }
    out.push_str(rest);
    Ok(out)
}

// === lexer and parser ===

#[derive(Debug, Clone, PartialEq)]
enum Token {
    Field(String),
    Ident(String),
    Str(String),
    Int(i64),
    Open,
    Close,
    Pipe,
}

fn lex(s: &str) -> Result<Vec<Token>, String> {
    let mut tokens = Vec::new();
    let mut chars = s.chars().peekable();
    while let Some(&c) = chars.peek() {
        match c {
            c if c.is_whitespace() => {
                chars.next();
            }
            '(' => {
                chars.next();
                tokens.push(Token::Open);
            }
            ')' => {
                chars.next();
                tokens.push(Token::Close);
            }
            '|' => {
                chars.next();
                tokens.push(Token::Pipe);
            }
            '"' => {
                chars.next();
                let mut value = String::new();
                loop {
                    match chars.next() {
                        None => return Err("unterminated string in username template".into()),
                        Some('"') => break,
                        Some('\\') => match chars.next() {
                            Some('n') => value.push('\n'),
                            Some('t') => value.push('\t'),
                            Some(other) => value.push(other),
                            None => return Err("unterminated string in username template".into()),
                        },
                        Some(other) => value.push(other),
                    }
                }
                tokens.push(Token::Str(value));
            }
            '`' => {
                chars.next();
                let mut value = String::new();
                loop {
                    match chars.next() {
                        None => return Err("unterminated string in username template".into()),
                        Some('`') => break,
                        Some(other) => value.push(other),
                    }
                }
                tokens.push(Token::Str(value));
            }
            '.' => {
                chars.next();
                let mut name = String::new();
                while let Some(&c) = chars.peek() {
                    if c.is_alphanumeric() || c == '_' {
                        name.push(c);
                        chars.next();
                    } else {
                        break;
                    }
                }
                tokens.push(Token::Field(name));
            }
            c if c.is_ascii_digit() || c == '-' => {
                let mut digits = String::new();
                digits.push(c);
                chars.next();
                while let Some(&c) = chars.peek() {
                    if c.is_ascii_digit() {
                        digits.push(c);
                        chars.next();
                    } else {
                        break;
                    }
                }
                let n = digits
                    .parse()
                    .map_err(|_| format!("bad number {digits:?} in username template"))?;
                tokens.push(Token::Int(n));
            }
            c if c.is_alphabetic() || c == '_' => {
                let mut name = String::new();
                while let Some(&c) = chars.peek() {
                    if c.is_alphanumeric() || c == '_' {
                        name.push(c);
                        chars.next();
                    } else {
                        break;
                    }
                }
                tokens.push(Token::Ident(name));
            }
            other => return Err(format!("unexpected {other:?} in username template")),
        }
    }
    Ok(tokens)
}

#[derive(Debug)]
enum Operand {
    Field(String),
    Ident(String),
    Str(String),
    Int(i64),
    Group(Vec<Vec<Operand>>),
}

struct Parser {
    tokens: Vec<Token>,
    pos: usize,
}

impl Parser {
    /// Commands separated by `|`, each a list of operands.
    fn pipeline(&mut self) -> Result<Vec<Vec<Operand>>, String> {
        let mut commands = vec![Vec::new()];
        while let Some(token) = self.tokens.get(self.pos).cloned() {
            match token {
                Token::Close => break,
                Token::Pipe => {
                    self.pos += 1;
                    commands.push(Vec::new());
                }
                Token::Open => {
                    self.pos += 1;
                    let inner = self.pipeline()?;
                    if self.tokens.get(self.pos) != Some(&Token::Close) {
                        return Err("unclosed parenthesis in username template".into());
                    }
                    self.pos += 1;
                    push(&mut commands, Operand::Group(inner));
                }
                Token::Field(f) => {
                    self.pos += 1;
                    push(&mut commands, Operand::Field(f));
                }
                Token::Ident(i) => {
                    self.pos += 1;
                    push(&mut commands, Operand::Ident(i));
                }
                Token::Str(s) => {
                    self.pos += 1;
                    push(&mut commands, Operand::Str(s));
                }
                Token::Int(n) => {
                    self.pos += 1;
                    push(&mut commands, Operand::Int(n));
                }
            }
        }
        if commands.iter().any(Vec::is_empty) {
            return Err("empty command in username template".into());
        }
        Ok(commands)
    }
}

fn push(commands: &mut [Vec<Operand>], operand: Operand) {
    if let Some(last) = commands.last_mut() {
        last.push(operand);
    }
}

// === evaluation ===

#[derive(Debug, Clone)]
enum Value {
    Str(String),
    Int(i64),
}

impl Value {
    fn into_string(self) -> String {
        match self {
            Value::Str(s) => s,
            Value::Int(n) => n.to_string(),
        }
    }

    fn int(&self, what: &str) -> Result<usize, String> {
        match self {
            Value::Int(n) if *n >= 0 => usize::try_from(*n).map_err(|_| format!("{what}: too big")),
            Value::Str(s) => s
                .parse()
                .map_err(|_| format!("{what}: expected a number, got {s:?}")),
            Value::Int(_) => Err(format!("{what}: expected a non-negative number")),
        }
    }
}

fn eval_pipeline(commands: &[Vec<Operand>], data: &TemplateData<'_>) -> Result<Value, String> {
    let mut previous: Option<Value> = None;
    for command in commands {
        previous = Some(eval_command(command, previous.take(), data)?);
    }
    previous.ok_or_else(|| "empty action in username template".to_string())
}

fn eval_operand(operand: &Operand, data: &TemplateData<'_>) -> Result<Value, String> {
    Ok(match operand {
        Operand::Field(f) => Value::Str(match f.as_str() {
            "RoleName" => data.role_name.to_string(),
            "DisplayName" => data.display_name.to_string(),
            other => return Err(format!("unknown field .{other} in username template")),
        }),
        Operand::Str(s) => Value::Str(s.clone()),
        Operand::Int(n) => Value::Int(*n),
        Operand::Group(inner) => eval_pipeline(inner, data)?,
        Operand::Ident(name) => call(name, Vec::new())?,
    })
}

fn eval_command(
    command: &[Operand],
    piped: Option<Value>,
    data: &TemplateData<'_>,
) -> Result<Value, String> {
    match command {
        [Operand::Ident(name), rest @ ..] => {
            let mut args = rest
                .iter()
                .map(|o| eval_operand(o, data))
                .collect::<Result<Vec<_>, _>>()?;
            args.extend(piped);
            call(name, args)
        }
        [single] if piped.is_none() => eval_operand(single, data),
        _ => Err("can't give arguments to a non-function in username template".into()),
    }
}

fn arity(name: &str, args: &[Value], n: usize) -> Result<(), String> {
    if args.len() == n {
        Ok(())
    } else {
        Err(format!(
            "{name} takes {n} argument(s), got {} in username template",
            args.len()
        ))
    }
}

fn call(name: &str, args: Vec<Value>) -> Result<Value, String> {
    let now = chrono::Utc::now();
    Ok(match name {
        "random" => {
            arity(name, &args, 1)?;
            let n = args[0].int("random")?;
            if n > 1024 {
                return Err("random: too long".into());
            }
            Value::Str(random_alnum(n))
        }
        "unix_time" => {
            arity(name, &args, 0)?;
            Value::Int(now.timestamp())
        }
        "unix_time_millis" => {
            arity(name, &args, 0)?;
            Value::Int(now.timestamp_millis())
        }
        "truncate" => {
            arity(name, &args, 2)?;
            let n = args[0].int("truncate")?;
            let s = args[1].clone().into_string();
            Value::Str(s.chars().take(n).collect())
        }
        "truncate_sha256" => {
            arity(name, &args, 2)?;
            let n = args[0].int("truncate_sha256")?;
            let s = args[1].clone().into_string();
            if s.chars().count() <= n {
                Value::Str(s)
            } else if n <= 8 {
                return Err("truncate_sha256: length must be more than 8".into());
            } else {
                let digest = hex(&Sha256::digest(s.as_bytes()));
                let head: String = s.chars().take(n - 8).collect();
                Value::Str(format!("{head}{}", &digest[..8]))
            }
        }
        "uppercase" => {
            arity(name, &args, 1)?;
            Value::Str(args[0].clone().into_string().to_uppercase())
        }
        "lowercase" => {
            arity(name, &args, 1)?;
            Value::Str(args[0].clone().into_string().to_lowercase())
        }
        "replace" => {
            arity(name, &args, 3)?;
            let from = args[0].clone().into_string();
            let to = args[1].clone().into_string();
            Value::Str(args[2].clone().into_string().replace(&from, &to))
        }
        "sha256" => {
            arity(name, &args, 1)?;
            Value::Str(hex(&Sha256::digest(
                args[0].clone().into_string().as_bytes(),
            )))
        }
        "uuid" => {
            arity(name, &args, 0)?;
            let mut b: [u8; 16] = OsRng.gen();
            b[6] = (b[6] & 0x0f) | 0x40;
            b[8] = (b[8] & 0x3f) | 0x80;
            let h = hex(&b);
            Value::Str(format!(
                "{}-{}-{}-{}-{}",
                &h[0..8],
                &h[8..12],
                &h[12..16],
                &h[16..20],
                &h[20..32]
            ))
        }
        "printf" => {
            let mut args = args.into_iter();
            let format = args
                .next()
                .ok_or_else(|| "printf needs a format in username template".to_string())?
                .into_string();
            Value::Str(printf(&format, args)?)
        }
        other => return Err(format!("unknown function {other:?} in username template")),
    })
}

fn printf(format: &str, mut args: impl Iterator<Item = Value>) -> Result<String, String> {
    let mut out = String::new();
    let mut chars = format.chars();
    while let Some(c) = chars.next() {
        if c != '%' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('%') => out.push('%'),
            Some('s' | 'd' | 'v') => out.push_str(
                &args
                    .next()
                    .ok_or_else(|| "printf: missing argument".to_string())?
                    .into_string(),
            ),
            other => return Err(format!("printf: unsupported verb {other:?}")),
        }
    }
    Ok(out)
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Replaces every character of a generated username that could break out of
/// a quoted SQL identifier or literal (anything but `[A-Za-z0-9_.-]`) with
/// `_`. Display names come from users; they must never inject SQL.
pub fn sanitize_username(name: &str) -> String {
    name.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.') {
                c
            } else {
                '_'
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn data() -> TemplateData<'static> {
        TemplateData {
            role_name: "readonly-role",
            display_name: "token-alice",
        }
    }

    #[test]
    fn postgres_default_looks_like_vaults() {
        let name = render(POSTGRES_DEFAULT, &data()).unwrap();
        let parts: Vec<&str> = name.split('-').collect();
        // v - token - alic(e…) : display truncated to 8 ("token-al"), role to 8.
        assert!(name.starts_with("v-token-al-readonly-"), "{name}");
        assert!(name.len() <= 63, "{name}");
        let random = parts[parts.len() - 2];
        assert_eq!(random.len(), 20);
        assert!(random.chars().all(|c| c.is_ascii_alphanumeric()));
        let unix: i64 = parts[parts.len() - 1].parse().unwrap();
        assert!((unix - chrono::Utc::now().timestamp()).abs() < 5);
    }

    #[test]
    fn mysql_defaults_fit() {
        let name = render(MYSQL_DEFAULT, &data()).unwrap();
        assert!(name.starts_with("v-toke-read-"), "{name}");
        assert_eq!(name.len(), 32);
        let legacy = render(MYSQL_LEGACY_DEFAULT, &data()).unwrap();
        assert!(legacy.starts_with("v-read-"), "{legacy}");
        assert_eq!(legacy.len(), 16);
    }

    #[test]
    fn template_subset() {
        let check = |t: &str, want: &str| assert_eq!(render(t, &data()).unwrap(), want, "{t}");
        check("{{.RoleName}}", "readonly-role");
        check("x-{{ .DisplayName | uppercase }}-y", "x-TOKEN-ALICE-y");
        check("{{truncate 4 .RoleName}}", "read");
        check("{{ .RoleName | truncate 4 }}", "read");
        check(
            "{{ .RoleName | replace \"-\" \"_\" | lowercase }}",
            "readonly_role",
        );
        check(
            "{{ printf \"%s/%s\" .RoleName .DisplayName }}",
            "readonly-role/token-alice",
        );
        check("a  {{- .RoleName -}}  b", "areadonly-roleb");
        check("{{ printf \"%d%%\" 5 }}", "5%");
    }

    #[test]
    fn template_functions_with_randomness() {
        let r = render("{{random 12}}", &data()).unwrap();
        assert_eq!(r.len(), 12);
        let u = render("{{uuid}}", &data()).unwrap();
        assert_eq!(u.len(), 36);
        let t = render("{{unix_time}}", &data()).unwrap();
        assert!(t.parse::<i64>().is_ok());
        let s = render("{{ .RoleName | truncate_sha256 10 }}", &data()).unwrap();
        assert_eq!(s.len(), 10);
        assert!(s.starts_with("re"));
    }

    #[test]
    fn template_errors() {
        for bad in [
            "{{ .Nope }}",
            "{{ nope }}",
            "{{ truncate }}",
            "{{ .RoleName",
            "{{ (.RoleName }}",
            "{{ \"x }}",
            "{{ printf \"%q\" 1 }}",
            "{{ random -1 }}",
        ] {
            assert!(render(bad, &data()).is_err(), "{bad}");
        }
    }

    #[test]
    fn passwords_follow_the_default_policy() {
        let mut seen = std::collections::HashSet::new();
        for _ in 0..200 {
            let p = password(20);
            let s = p.expose();
            assert_eq!(s.len(), 20);
            assert!(s.chars().any(|c| c.is_ascii_uppercase()));
            assert!(s.chars().any(|c| c.is_ascii_lowercase()));
            assert!(s.chars().any(|c| c.is_ascii_digit()));
            assert!(s.contains('-'));
            assert!(s.chars().all(|c| c.is_ascii_alphanumeric() || c == '-'));
            assert!(seen.insert(s.to_string()));
        }
    }

    #[test]
    fn usernames_are_sanitized() {
        assert_eq!(sanitize_username("v-a'b\"c;d e-1"), "v-a_b_c_d_e-1");
        assert_eq!(sanitize_username("v-token-x.y_z"), "v-token-x.y_z");
    }
}
