//! From the gateway's entry (every value in the clear) to one device's line:
//! elision of list responses, HMAC of the sensitive fields under the device's
//! salt, and formatting as JSON (with `time` first) or JSONx, after the
//! device's prefix.
//!
//! Hashed, unless `log_raw`: `auth.client_token`, `request.client_token`,
//! `response.auth.client_token`, `response.wrap_info.token`; with
//! `hmac_accessor` also `auth.accessor`, `request.client_token_accessor`,
//! `response.auth.accessor`, `response.wrap_info.accessor` and
//! `response.wrap_info.wrapped_accessor`; and every string at any depth under
//! `request.data` and `response.data`, except under the mount's non-HMAC keys.
//! Empty strings stay empty.

use std::fmt::Write as _;

use hmac::{Hmac, Mac};
use rand::RngCore;
use serde_json::{Map, Value};
use sha2::Sha256;
use zeroize::Zeroizing;

use crate::options::{Format, FormatOptions};

/// The prefix of every hashed value.
pub const HMAC_PREFIX: &str = "hmac-sha256:";

/// A device's HMAC key: 32 random bytes made when it is enabled, zeroized
/// when dropped.
#[derive(Clone)]
pub struct Salt(Zeroizing<[u8; 32]>);

impl std::fmt::Debug for Salt {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Salt(..)")
    }
}

impl Salt {
    /// A fresh random salt.
    pub fn generate() -> Salt {
        let mut key = Zeroizing::new([0u8; 32]);
        rand::rngs::OsRng.fill_bytes(key.as_mut_slice());
        Salt(key)
    }

    /// The salt as stored (hex).
    pub fn to_hex(&self) -> Zeroizing<String> {
        Zeroizing::new(hex::encode(self.0.as_slice()))
    }

    /// Reads a stored salt; `None` unless it is 64 hex digits.
    pub fn from_hex(s: &str) -> Option<Salt> {
        let mut key = Zeroizing::new([0u8; 32]);
        hex::decode_to_slice(s, key.as_mut_slice()).ok()?;
        Some(Salt(key))
    }

    /// `hmac-sha256:<hex of HMAC-SHA256(salt, input)>`.
    pub fn hash(&self, input: &str) -> String {
        let mut mac = Hmac::<Sha256>::new_from_slice(self.0.as_slice())
            .expect("HMAC accepts keys of any length");
        mac.update(input.as_bytes());
        let digest = mac.finalize().into_bytes();
        let mut out = String::with_capacity(HMAC_PREFIX.len() + 64);
        out.push_str(HMAC_PREFIX);
        out.push_str(&hex::encode(digest));
        out
    }
}

/// The top-level keys of `request.data` and `response.data` left unhashed
/// (the mount's `audit_non_hmac_request_keys` / `…_response_keys`).
#[derive(Debug, Clone, Copy, Default)]
pub struct NonHmacKeys<'a> {
    pub request: &'a [String],
    pub response: &'a [String],
}

impl<'a> NonHmacKeys<'a> {
    /// The keys left unhashed under `parent.data` (`request` or `response`).
    pub(crate) fn data_skip(&self, parent: &str) -> &'a [String] {
        if parent == "request" {
            self.request
        } else {
            self.response
        }
    }
}

/// One device's view of `entry`: elided and hashed as `options` say.
pub fn prepare(
    mut entry: Map<String, Value>,
    salt: &Salt,
    options: &FormatOptions,
    non_hmac: NonHmacKeys<'_>,
) -> Map<String, Value> {
    if options.elide_list_responses {
        elide_list_response(&mut entry);
    }
    if !options.log_raw {
        hash_entry(&mut entry, salt, options.hmac_accessor, non_hmac);
    }
    entry
}

/// A response to a list operation keeps only the number of its keys.
fn elide_list_response(entry: &mut Map<String, Value>) {
    let is_list = entry
        .get("request")
        .and_then(|r| r.get("operation"))
        .and_then(Value::as_str)
        == Some("list");
    if !is_list {
        return;
    }
    if let Some(data) = entry.get_mut("response").and_then(|r| r.get_mut("data")) {
        elide_list_data(data);
    }
}

/// The `data` of a list response, its `keys` (and `key_info`) counted.
pub(crate) fn elide_list_data(data: &mut Value) {
    let Value::Object(data) = data else {
        return;
    };
    if let Some(keys) = data.get_mut("keys") {
        if let Value::Array(items) = keys {
            *keys = Value::from(items.len());
        }
    }
    if let Some(info) = data.get_mut("key_info") {
        if let Value::Object(items) = info {
            *info = Value::from(items.len());
        }
    }
}

/// The members hashed like tokens (unless `log_raw`).
pub(crate) const TOKEN_FIELDS: &[&[&str]] = &[
    &["auth", "client_token"],
    &["request", "client_token"],
    &["response", "auth", "client_token"],
    &["response", "wrap_info", "token"],
];

/// The members hashed too with `hmac_accessor`.
pub(crate) const ACCESSOR_FIELDS: &[&[&str]] = &[
    &["auth", "accessor"],
    &["request", "client_token_accessor"],
    &["response", "auth", "accessor"],
    &["response", "wrap_info", "accessor"],
    &["response", "wrap_info", "wrapped_accessor"],
];

/// The objects whose `data` member is hashed whole (unless `log_raw`).
pub(crate) const DATA_PARENTS: &[&str] = &["request", "response"];

fn hash_entry(
    entry: &mut Map<String, Value>,
    salt: &Salt,
    hmac_accessor: bool,
    non_hmac: NonHmacKeys<'_>,
) {
    let fields = TOKEN_FIELDS
        .iter()
        .chain(if hmac_accessor { ACCESSOR_FIELDS } else { &[] });
    for field in fields {
        if let Some(value) = lookup(entry, field) {
            hash_string(value, salt);
        }
    }
    for parent in DATA_PARENTS {
        if let Some(data) = lookup(entry, &[parent, "data"]) {
            hash_data(data, salt, non_hmac.data_skip(parent));
        }
    }
}

/// The value at `path` (object keys), if every step is an object.
fn lookup<'a>(entry: &'a mut Map<String, Value>, path: &[&str]) -> Option<&'a mut Value> {
    let (first, rest) = path.split_first()?;
    let mut value = entry.get_mut(*first)?;
    for key in rest {
        value = value.as_object_mut()?.get_mut(*key)?;
    }
    Some(value)
}

/// Hashes `value` if it is a non-empty string.
fn hash_string(value: &mut Value, salt: &Salt) {
    if let Value::String(s) = value {
        if !s.is_empty() {
            *s = salt.hash(s);
        }
    }
}

/// Hashes every string in `data` but under its top-level keys in `skip`.
pub(crate) fn hash_data(data: &mut Value, salt: &Salt, skip: &[String]) {
    match data {
        Value::Object(map) => {
            for (key, value) in map.iter_mut() {
                if !skip.iter().any(|s| s == key) {
                    hash_all(value, salt);
                }
            }
        }
        other => hash_all(other, salt),
    }
}

/// Hashes every string at any depth (values only, never keys).
fn hash_all(value: &mut Value, salt: &Salt) {
    match value {
        Value::String(_) => hash_string(value, salt),
        Value::Array(items) => items.iter_mut().for_each(|v| hash_all(v, salt)),
        Value::Object(map) => map.values_mut().for_each(|v| hash_all(v, salt)),
        Value::Null | Value::Bool(_) | Value::Number(_) => {}
    }
}

/// The line a device writes: prefix, the entry (`time` first), newline.
pub fn render(mut entry: Map<String, Value>, options: &FormatOptions) -> Vec<u8> {
    let time = entry.remove("time").unwrap_or_else(|| {
        Value::String(chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Nanos, true))
    });
    match options.format {
        Format::Json => {
            let mut out = Vec::with_capacity(options.prefix.len() + 1024);
            out.extend_from_slice(options.prefix.as_bytes());
            out.extend_from_slice(b"{\"time\":");
            push_json(&mut out, &time);
            for (key, value) in &entry {
                out.push(b',');
                push_json(&mut out, key);
                out.push(b':');
                push_json(&mut out, value);
            }
            out.extend_from_slice(b"}\n");
            out
        }
        Format::JsonX => {
            let mut out = options.prefix.clone();
            out.push_str(
                "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\
                 <json:object xsi:schemaLocation=\"http://www.datapower.com/schemas/json jsonx.xsd\" \
                 xmlns:xsi=\"http://www.w3.org/2001/XMLSchema-instance\" \
                 xmlns:json=\"http://www.ibm.com/xmlns/prod/2009/jsonx\">",
            );
            jsonx(&mut out, Some("time"), &time);
            for (key, value) in &entry {
                jsonx(&mut out, Some(key), value);
            }
            out.push_str("</json:object>\n");
            out.into_bytes()
        }
    }
}

/// Appends `value` as JSON. Strings and JSON values always serialize; should
/// one ever fail, `null` keeps the line valid JSON.
pub(crate) fn push_json<T: serde::Serialize + ?Sized>(out: &mut Vec<u8>, value: &T) {
    let mark = out.len();
    if serde_json::to_writer(&mut *out, value).is_err() {
        out.truncate(mark);
        out.extend_from_slice(b"null");
    }
}

/// One JSON value as a JSONx element.
fn jsonx(out: &mut String, name: Option<&str>, value: &Value) {
    let tag = match value {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    };
    out.push_str("<json:");
    out.push_str(tag);
    if let Some(name) = name {
        out.push_str(" name=\"");
        escape_xml(out, name);
        out.push('"');
    }
    match value {
        Value::Null => {
            out.push_str("/>");
            return;
        }
        Value::Bool(b) => {
            let _ = write!(out, ">{b}");
        }
        Value::Number(n) => {
            let _ = write!(out, ">{n}");
        }
        Value::String(s) => {
            out.push('>');
            escape_xml(out, s);
        }
        Value::Array(items) => {
            out.push('>');
            for item in items {
                jsonx(out, None, item);
            }
        }
        Value::Object(map) => {
            out.push('>');
            for (key, item) in map {
                jsonx(out, Some(key), item);
            }
        }
    }
    out.push_str("</json:");
    out.push_str(tag);
    out.push('>');
}

/// XML-escapes `s` into `out`; line breaks become character references (one
/// document per line) and characters XML cannot carry become U+FFFD.
fn escape_xml(out: &mut String, s: &str) {
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            '\t' => out.push_str("&#x9;"),
            '\n' => out.push_str("&#xA;"),
            '\r' => out.push_str("&#xD;"),
            c if (c as u32) < 0x20 || c == '\u{FFFE}' || c == '\u{FFFF}' => out.push('\u{FFFD}'),
            c => out.push(c),
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use serde_json::json;

    pub(crate) fn salt() -> Salt {
        Salt::from_hex(&"07".repeat(32)).unwrap()
    }

    fn object(v: Value) -> Map<String, Value> {
        match v {
            Value::Object(m) => m,
            _ => panic!("not an object"),
        }
    }

    /// A list response's entry with every member that is hashed or elided.
    pub(crate) fn sample() -> Map<String, Value> {
        object(json!({
            "type": "response",
            "time": "2024-01-02T03:04:05.123456789Z",
            "auth": {"client_token": "s.tok", "accessor": "acc", "display_name": "root",
                     "policies": ["root"], "metadata": {"user": "bob"}},
            "request": {"operation": "list", "path": "secret/", "client_token": "s.tok",
                        "client_token_accessor": "acc", "remote_address": "127.0.0.1",
                        "data": {"password": "hunter2", "keep": "visible", "n": 3,
                                 "nested": {"deep": ["x", 1, true, null, ""]}}},
            "response": {
                "auth": {"client_token": "s.new", "accessor": "acc2"},
                "wrap_info": {"token": "s.wrap", "accessor": "wacc", "wrapped_accessor": "wa",
                              "ttl": 60},
                "data": {"keys": ["a", "b/"], "key_info": {"a": {}, "b/": {}}, "note": ""}
            },
            "error": "permission denied"
        }))
    }

    #[test]
    fn hmac_matches_a_known_vector() {
        // RFC 4231 test case 2: key "Jefe".
        let mut mac = Hmac::<Sha256>::new_from_slice(b"Jefe").unwrap();
        mac.update(b"what do ya want for nothing?");
        assert_eq!(
            hex::encode(mac.finalize().into_bytes()),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
        let s = salt();
        let h = s.hash("hunter2");
        assert!(h.starts_with(HMAC_PREFIX));
        assert_eq!(h.len(), HMAC_PREFIX.len() + 64);
        assert_eq!(h, s.hash("hunter2"));
        assert_ne!(h, Salt::generate().hash("hunter2"));
        assert_eq!(Salt::from_hex(&s.to_hex()).unwrap().hash("x"), s.hash("x"));
        assert!(Salt::from_hex("abc").is_none());
        assert_eq!(format!("{s:?}"), "Salt(..)");
    }

    #[test]
    fn hashes_what_vault_hashes() {
        let s = salt();
        let keep = vec!["keep".to_string()];
        let out = prepare(
            sample(),
            &s,
            &FormatOptions::default(),
            NonHmacKeys {
                request: &keep,
                response: &[],
            },
        );
        let v = Value::Object(out);
        assert_eq!(v["auth"]["client_token"], s.hash("s.tok"));
        assert_eq!(v["auth"]["accessor"], s.hash("acc"));
        assert_eq!(v["auth"]["display_name"], "root");
        assert_eq!(v["auth"]["metadata"]["user"], "bob");
        assert_eq!(v["auth"]["policies"][0], "root");
        assert_eq!(v["request"]["client_token"], s.hash("s.tok"));
        assert_eq!(v["request"]["client_token_accessor"], s.hash("acc"));
        assert_eq!(v["request"]["path"], "secret/");
        assert_eq!(v["request"]["remote_address"], "127.0.0.1");
        assert_eq!(v["request"]["data"]["password"], s.hash("hunter2"));
        assert_eq!(v["request"]["data"]["keep"], "visible");
        assert_eq!(v["request"]["data"]["n"], 3);
        assert_eq!(
            v["request"]["data"]["nested"]["deep"],
            json!([s.hash("x"), 1, true, null, ""])
        );
        assert_eq!(v["response"]["auth"]["client_token"], s.hash("s.new"));
        assert_eq!(v["response"]["auth"]["accessor"], s.hash("acc2"));
        assert_eq!(v["response"]["wrap_info"]["token"], s.hash("s.wrap"));
        assert_eq!(v["response"]["wrap_info"]["accessor"], s.hash("wacc"));
        assert_eq!(v["response"]["wrap_info"]["wrapped_accessor"], s.hash("wa"));
        assert_eq!(v["response"]["wrap_info"]["ttl"], 60);
        assert_eq!(
            v["response"]["data"]["keys"],
            json!([s.hash("a"), s.hash("b/")])
        );
        assert_eq!(v["response"]["data"]["note"], "");
        assert_eq!(v["error"], "permission denied");
    }

    #[test]
    fn accessors_raw_and_elision() {
        let s = salt();
        let no_accessor = FormatOptions {
            hmac_accessor: false,
            ..FormatOptions::default()
        };
        let v = Value::Object(prepare(sample(), &s, &no_accessor, NonHmacKeys::default()));
        assert_eq!(v["auth"]["client_token"], s.hash("s.tok"));
        assert_eq!(v["auth"]["accessor"], "acc");
        assert_eq!(v["request"]["client_token_accessor"], "acc");
        assert_eq!(v["response"]["auth"]["accessor"], "acc2");
        assert_eq!(v["response"]["wrap_info"]["accessor"], "wacc");
        assert_eq!(v["response"]["wrap_info"]["wrapped_accessor"], "wa");

        let raw = FormatOptions {
            log_raw: true,
            ..FormatOptions::default()
        };
        let v = Value::Object(prepare(sample(), &s, &raw, NonHmacKeys::default()));
        assert_eq!(v, Value::Object(sample()));

        let elide = FormatOptions {
            elide_list_responses: true,
            ..FormatOptions::default()
        };
        let v = Value::Object(prepare(sample(), &s, &elide, NonHmacKeys::default()));
        assert_eq!(v["response"]["data"]["keys"], 2);
        assert_eq!(v["response"]["data"]["key_info"], 2);
        // Not a list: untouched.
        let mut read = sample();
        read["request"]["operation"] = json!("read");
        let v = Value::Object(prepare(read, &s, &elide, NonHmacKeys::default()));
        assert!(v["response"]["data"]["keys"].is_array());
    }

    #[test]
    fn json_lines_start_with_time() {
        let line = render(sample(), &FormatOptions::default());
        let text = String::from_utf8(line).unwrap();
        assert!(text.starts_with("{\"time\":\"2024-01-02T03:04:05.123456789Z\",\"auth\":"));
        assert!(text.ends_with("}\n"));
        assert_eq!(text.matches('\n').count(), 1);
        let back: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(back, Value::Object(sample()));

        // Only a time; or none at all (then now).
        let only = render(object(json!({"time": "t"})), &FormatOptions::default());
        assert_eq!(only, b"{\"time\":\"t\"}\n");
        let none = render(
            object(json!({"type": "request"})),
            &FormatOptions::default(),
        );
        let text = String::from_utf8(none).unwrap();
        assert!(text.starts_with("{\"time\":\""), "{text}");
        assert!(text.ends_with("\",\"type\":\"request\"}\n"), "{text}");

        let prefixed = FormatOptions {
            prefix: "AUDIT: ".into(),
            ..FormatOptions::default()
        };
        assert_eq!(
            render(object(json!({"time": "t", "a": 1})), &prefixed),
            b"AUDIT: {\"time\":\"t\",\"a\":1}\n"
        );
    }

    #[test]
    fn jsonx_is_faithful() {
        let options = FormatOptions {
            format: Format::JsonX,
            ..FormatOptions::default()
        };
        let entry = object(json!({
            "time": "t", "type": "request",
            "request": {"n": 1.5, "ok": false, "none": null, "list": ["a<b", "x\ny"],
                        "q": "\"it's\" & more"}
        }));
        let line = String::from_utf8(render(entry, &options)).unwrap();
        assert!(line.starts_with("<?xml version=\"1.0\" encoding=\"UTF-8\"?><json:object "));
        assert!(line.ends_with("</json:object>\n"));
        assert_eq!(line.matches('\n').count(), 1);
        let body = line
            .split_once("jsonx\">")
            .map(|(_, b)| b)
            .unwrap()
            .trim_end();
        assert_eq!(
            body,
            "<json:string name=\"time\">t</json:string>\
             <json:object name=\"request\">\
             <json:array name=\"list\"><json:string>a&lt;b</json:string><json:string>x&#xA;y</json:string></json:array>\
             <json:number name=\"n\">1.5</json:number>\
             <json:null name=\"none\"/>\
             <json:boolean name=\"ok\">false</json:boolean>\
             <json:string name=\"q\">&quot;it&apos;s&quot; &amp; more</json:string>\
             </json:object>\
             <json:string name=\"type\">request</json:string>\
             </json:object>"
        );
    }
}
