//! Generic `read`, `write`, `list`, `delete`, `patch` on any API path, and
//! the shared secret printer used by the other command families.

use clap::Args;
use reqwest::Method;
use serde_json::Value;

use super::output::{self, Format};
use super::{parse_kv_args, CliError, Client, CmdResult};

/// `read` arguments.
#[derive(Args, Debug)]
pub struct ReadArgs {
    /// API path to read.
    path: String,
    /// Extra `k=v` pairs sent as query parameters.
    data: Vec<String>,
}

/// `write` / `patch` arguments.
#[derive(Args, Debug)]
pub struct WriteArgs {
    /// Allow the operation with no data (sends an empty body).
    #[arg(short = 'f', long = "force")]
    force: bool,
    /// API path to write.
    path: String,
    /// Data: `k=v`, `k=@file`, `k=-`, `@file.json` or `-`.
    data: Vec<String>,
}

/// `list` arguments.
#[derive(Args, Debug)]
pub struct PathArgs {
    /// API path.
    path: String,
}

/// `delete` arguments.
#[derive(Args, Debug)]
pub struct DeleteArgs {
    /// API path.
    path: String,
    /// Extra `k=v` pairs sent as query parameters.
    data: Vec<String>,
}

/// Looks up `-field` in a secret: data keys first, then the auth/wrap
/// pseudo-fields shown in tables.
fn field_value(body: &Value, data: Option<&Value>, field: &str) -> Option<Value> {
    if let Some(v) = data.and_then(|d| d.get(field)) {
        return Some(v.clone());
    }
    output::secret_rows(body)
        .into_iter()
        .find(|(k, _)| k.trim_end_matches(':') == field)
        .map(|(_, v)| Value::String(v))
}

/// Prints one field's value (Vault's `PrintRawField`).
pub fn print_field(format: Format, v: &Value, field: &str) -> CmdResult {
    let _ = field;
    match format {
        Format::Table | Format::Raw => println!("{}", output::go_fmt(v)),
        f => output::print_structured(f, v),
    }
    Ok(0)
}

/// Prints a secret envelope (Vault's `OutputSecret`), honoring `-field`
/// and `-format`. `data` overrides where `-field` looks (KV v2: data.data).
pub fn output_secret(c: &Client, body: &Value, data: Option<&Value>) -> CmdResult {
    if let Some(field) = &c.cfg.field {
        return match field_value(body, data.or_else(|| body.get("data")), field) {
            Some(v) => print_field(c.cfg.format, &v, field),
            None => Err(CliError::Usage(format!(
                "Field \"{field}\" not present in secret"
            ))),
        };
    }
    match c.cfg.format {
        Format::Table => {
            let rows = output::secret_rows(body);
            if rows.is_empty() {
                return Ok(0);
            }
            print!("{}", output::kv_table(rows));
        }
        Format::Raw => println!("{body}"),
        f => output::print_envelope(f, body),
    }
    if let Some(Value::Array(w)) = body.get("warnings") {
        if c.cfg.format == Format::Table && !w.is_empty() {
            eprintln!("\nWARNING! The following warnings were returned from Vault:\n");
            for x in w {
                eprintln!("  * {}", output::go_fmt(x));
            }
        }
    }
    Ok(0)
}

/// Prints a LIST response: `Keys\n----\n…` or JSON/YAML of the key array.
pub fn output_list(c: &Client, body: &Value) -> CmdResult {
    let keys = body
        .get("data")
        .and_then(|d| d.get("keys"))
        .cloned()
        .unwrap_or(Value::Array(vec![]));
    match c.cfg.format {
        Format::Table => {
            let mut out = String::from("Keys\n----\n");
            for k in keys.as_array().into_iter().flatten() {
                out.push_str(&output::go_fmt(k));
                out.push('\n');
            }
            print!("{out}");
        }
        f => output::print_structured(f, &keys),
    }
    Ok(0)
}

fn query_pairs(data: &[String]) -> Result<Vec<(String, String)>, CliError> {
    Ok(parse_kv_args(data)?
        .into_iter()
        .map(|(k, v)| (k, output::go_fmt(&v)))
        .collect())
}

/// `read PATH [k=v…]`
pub async fn read(c: &Client, a: ReadArgs) -> CmdResult {
    let q = query_pairs(&a.data)?;
    let q: Vec<(&str, String)> = q.iter().map(|(k, v)| (k.as_str(), v.clone())).collect();
    let ctx = format!("reading {}", a.path);
    match c.read(&ctx, &a.path, &q).await? {
        None => {
            eprintln!("No value found at {}", a.path);
            Ok(2)
        }
        Some(r) => {
            let body = r.body.unwrap_or(Value::Null);
            output_secret(c, &body, None)
        }
    }
}

/// `write PATH …` and `patch PATH …`.
pub async fn write(c: &Client, a: WriteArgs, method: Method) -> CmdResult {
    let data = parse_kv_args(&a.data)?;
    if data.is_empty() && !a.force {
        return Err(CliError::Usage(
            "Must supply data or use -force".to_string(),
        ));
    }
    let verb = if method == Method::PATCH {
        "patching"
    } else {
        "writing data to"
    };
    let ctx = format!("{verb} {}", a.path);
    let body = (!data.is_empty()).then_some(Value::Object(data));
    let r = c.call(&ctx, method, &a.path, body.as_ref()).await?;
    match r.body {
        Some(b) if c.cfg.format != Format::Table || has_content(&b) => output_secret(c, &b, None),
        _ => {
            println!("Success! Data written to: {}", a.path);
            Ok(0)
        }
    }
}

fn has_content(b: &Value) -> bool {
    ["data", "auth", "wrap_info"]
        .iter()
        .any(|k| b.get(*k).is_some_and(|v| !v.is_null()))
        || b.get("warnings")
            .and_then(Value::as_array)
            .is_some_and(|w| !w.is_empty())
}

/// `list PATH`
pub async fn list(c: &Client, a: PathArgs) -> CmdResult {
    let ctx = format!("listing {}", a.path);
    match c.list(&ctx, &a.path).await? {
        None => {
            eprintln!("No value found at {}", a.path);
            Ok(2)
        }
        Some(r) => output_list(c, &r.body.unwrap_or(Value::Null)),
    }
}

/// `delete PATH`
pub async fn delete(c: &Client, a: DeleteArgs) -> CmdResult {
    let q = query_pairs(&a.data)?;
    let q: Vec<(&str, String)> = q.iter().map(|(k, v)| (k.as_str(), v.clone())).collect();
    let ctx = format!("deleting {}", a.path);
    let r = c.send(&ctx, Method::DELETE, &a.path, &q, None).await?;
    c.check(&ctx, Method::DELETE, &a.path, r)?;
    println!("Success! Data deleted (if it existed) at: {}", a.path);
    Ok(0)
}
