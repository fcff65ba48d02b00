//! JSON lines straight from the entry's text: the same hashing and elision
//! as [`crate::entry`], without building a tree of the whole entry.
//!
//! An entry is read as its top-level members, each kept as raw JSON text.
//! Only what hashing or elision must look at is parsed further: the members
//! of `auth`, `request` and `response` (and of `response.auth` and
//! `response.wrap_info`), the values to hash, and `request.data` and
//! `response.data` whole. Everything else is copied as it came, so members
//! keep the gateway's order (after `time`, first as always). An entry with
//! a line break anywhere (pretty-printed) takes the tree path, so a line
//! stays one line. JSONx devices take the tree path too.

use std::borrow::Cow;

use serde::de::{Deserialize, Deserializer, MapAccess, Visitor};
use serde_json::value::RawValue;
use serde_json::{Map, Value};

use crate::entry::{self, push_json, NonHmacKeys, Salt};
use crate::options::{Format, FormatOptions};

/// One entry as the gateway sent it, split into its top-level members.
pub struct Entry<'a> {
    text: &'a [u8],
    /// `None`: the entry takes the tree path (see the module docs).
    members: Option<Members<'a>>,
}

impl<'a> Entry<'a> {
    /// `None` unless `text` is a JSON object.
    pub fn parse(text: &'a [u8]) -> Option<Entry<'a>> {
        if text.iter().any(|b| matches!(b, b'\n' | b'\r')) {
            return match serde_json::from_slice::<Value>(text) {
                Ok(Value::Object(_)) => Some(Entry {
                    text,
                    members: None,
                }),
                _ => None,
            };
        }
        let members = serde_json::from_slice::<Members>(text).ok()?;
        Some(Entry {
            text,
            members: Some(members),
        })
    }

    /// The entry as a tree (for the tree path).
    fn tree(&self) -> Map<String, Value> {
        match serde_json::from_slice(self.text) {
            Ok(Value::Object(map)) => map,
            // Checked by `parse`.
            _ => Map::new(),
        }
    }

    /// One device's line for this entry.
    pub fn line(&self, salt: &Salt, options: &FormatOptions, non_hmac: NonHmacKeys<'_>) -> Vec<u8> {
        match (&self.members, options.format) {
            (Some(members), Format::Json) => json_line(members, salt, options, non_hmac),
            _ => entry::render(
                entry::prepare(self.tree(), salt, options, non_hmac),
                options,
            ),
        }
    }
}

/// A member name, borrowed from the text unless it had escapes.
struct Key<'a>(Cow<'a, str>);

impl<'de> Deserialize<'de> for Key<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct KeyVisitor;
        impl<'de> Visitor<'de> for KeyVisitor {
            type Value = Key<'de>;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a member name")
            }
            fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Key<'de>, E> {
                Ok(Key(Cow::Borrowed(v)))
            }
            fn visit_str<E>(self, v: &str) -> Result<Key<'de>, E> {
                Ok(Key(Cow::Owned(v.to_owned())))
            }
            fn visit_string<E>(self, v: String) -> Result<Key<'de>, E> {
                Ok(Key(Cow::Owned(v)))
            }
        }
        d.deserialize_str(KeyVisitor)
    }
}

/// An object's members in order, each value as raw JSON text.
struct Members<'a>(Vec<(Key<'a>, &'a RawValue)>);

impl<'de> Deserialize<'de> for Members<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct MembersVisitor;
        impl<'de> Visitor<'de> for MembersVisitor {
            type Value = Members<'de>;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Members<'de>, A::Error> {
                let mut members = Vec::with_capacity(map.size_hint().unwrap_or(8));
                while let Some(key) = map.next_key::<Key<'de>>()? {
                    let value: &'de RawValue = map.next_value()?;
                    members.push((key, value));
                }
                Ok(Members(members))
            }
        }
        d.deserialize_map(MembersVisitor)
    }
}

impl<'a> Members<'a> {
    /// The members of `raw`, when it is an object.
    fn of(raw: &'a RawValue) -> Option<Members<'a>> {
        if !raw.get().starts_with('{') {
            return None;
        }
        serde_json::from_str(raw.get()).ok()
    }

    /// The last value named `name` (as a parsed map would keep).
    fn get(&self, name: &str) -> Option<&'a RawValue> {
        self.0
            .iter()
            .rev()
            .find(|(k, _)| k.0 == name)
            .map(|(_, v)| *v)
    }
}

/// What one line hashes and elides (see [`entry::TOKEN_FIELDS`] and
/// the rest: the same tables as the tree path).
struct Plan<'p> {
    fields: Vec<&'static [&'static str]>,
    hash_data: bool,
    /// `response.data` is a list response to elide.
    elide: bool,
    non_hmac: NonHmacKeys<'p>,
    salt: &'p Salt,
}

impl Plan<'_> {
    /// Whether the member at `path` is hashed as a string.
    fn hashed(&self, path: &[&str]) -> bool {
        self.fields.contains(&path)
    }

    /// Whether something below the object at `path` is hashed or elided.
    fn opens(&self, path: &[&str]) -> bool {
        self.fields
            .iter()
            .any(|f| f.len() > path.len() && f.starts_with(path))
            || (path.len() == 1 && self.data_of(path[0]))
    }

    /// Whether `parent.data` is parsed (hashed or elided).
    fn data_of(&self, parent: &str) -> bool {
        (self.hash_data && entry::DATA_PARENTS.contains(&parent))
            || (self.elide && parent == "response")
    }
}

fn json_line(
    members: &Members<'_>,
    salt: &Salt,
    options: &FormatOptions,
    non_hmac: NonHmacKeys<'_>,
) -> Vec<u8> {
    let hash = !options.log_raw;
    let mut fields = Vec::new();
    if hash {
        fields.extend_from_slice(entry::TOKEN_FIELDS);
        if options.hmac_accessor {
            fields.extend_from_slice(entry::ACCESSOR_FIELDS);
        }
    }
    let is_list = members
        .get("request")
        .and_then(Members::of)
        .and_then(|r| r.get("operation"))
        .is_some_and(|op| op.get() == "\"list\"");
    let plan = Plan {
        fields,
        hash_data: hash,
        elide: options.elide_list_responses && is_list,
        non_hmac,
        salt,
    };
    let mut out = Vec::with_capacity(options.prefix.len() + members_len(members) + 512);
    out.extend_from_slice(options.prefix.as_bytes());
    out.extend_from_slice(b"{\"time\":");
    match members.get("time") {
        Some(t) => out.extend_from_slice(t.get().as_bytes()),
        None => push_json(
            &mut out,
            &chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Nanos, true),
        ),
    }
    for (key, value) in &members.0 {
        if key.0 == "time" {
            continue;
        }
        out.push(b',');
        push_json(&mut out, &*key.0);
        out.push(b':');
        member(&mut out, &[&*key.0], value, &plan);
    }
    out.extend_from_slice(b"}\n");
    out
}

fn members_len(members: &Members<'_>) -> usize {
    members
        .0
        .iter()
        .map(|(k, v)| k.0.len() + v.get().len() + 4)
        .sum()
}

/// Writes the member at `path` (its value `raw`) as `plan` says.
fn member(out: &mut Vec<u8>, path: &[&str], raw: &RawValue, plan: &Plan<'_>) {
    let copy = |out: &mut Vec<u8>| out.extend_from_slice(raw.get().as_bytes());
    if plan.hashed(path) {
        match serde_json::from_str::<Value>(raw.get()) {
            Ok(Value::String(s)) if !s.is_empty() => push_json(out, &plan.salt.hash(&s)),
            _ => copy(out),
        }
    } else if let [parent, "data"] = path[..] {
        if !plan.data_of(parent) {
            return copy(out);
        }
        let Ok(mut data) = serde_json::from_str::<Value>(raw.get()) else {
            return copy(out);
        };
        if plan.elide && parent == "response" {
            entry::elide_list_data(&mut data);
        }
        if plan.hash_data {
            entry::hash_data(&mut data, plan.salt, plan.non_hmac.data_skip(parent));
        }
        push_json(out, &data);
    } else if !plan.opens(path) {
        copy(out)
    } else if let Some(members) = Members::of(raw) {
        out.push(b'{');
        for (i, (key, value)) in members.0.iter().enumerate() {
            if i > 0 {
                out.push(b',');
            }
            push_json(out, &*key.0);
            out.push(b':');
            let below: Vec<&str> = path.iter().copied().chain([&*key.0]).collect();
            member(out, &below, value, plan);
        }
        out.push(b'}');
    } else {
        copy(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::entry::tests::{salt, sample};
    use serde_json::json;

    fn entries() -> Vec<String> {
        let list = Value::Object(sample());
        let read = json!({
            "time": "t", "type": "response",
            "auth": {"client_token": "", "accessor": 7, "token_ttl": 60},
            "request": {"id": "r", "operation": "read", "client_token": "s.x",
                        "client_token_accessor": "", "data": "not an object",
                        "headers": {"x": ["y"]}},
            "response": {"data": {"data": {"k": "v", "list": ["a", {"b": "c"}]},
                                  "metadata": {"version": 3, "keep": "me"}},
                         "auth": null, "wrap_info": "odd"},
            "error": ""
        });
        vec![
            list.to_string(),
            read.to_string(),
            // Not objects where objects are expected.
            json!({"time": "t", "auth": "x", "request": [1, 2], "response": 3}).to_string(),
            // Escaped names mean the same members.
            r#"{"time":"t","req\u0075est":{"client_\u0074oken":"s.esc","data":{"p\"q":"v"}},"type":"request"}"#.into(),
            // A repeated member: the last one is what a reader keeps.
            r#"{"time":"t","request":{"client_token":"a"},"request":{"client_token":"b"}}"#.into(),
            // Pretty-printed: the tree path.
            serde_json::to_string_pretty(&list).unwrap(),
            // No time: one is added.
            json!({"type": "request", "request": {"client_token": "s.t"}}).to_string(),
            "{}".into(),
        ]
    }

    fn options() -> Vec<FormatOptions> {
        let base = FormatOptions::default();
        vec![
            base.clone(),
            FormatOptions {
                hmac_accessor: false,
                ..base.clone()
            },
            FormatOptions {
                log_raw: true,
                ..base.clone()
            },
            FormatOptions {
                elide_list_responses: true,
                ..base.clone()
            },
            FormatOptions {
                log_raw: true,
                elide_list_responses: true,
                prefix: "audit: ".into(),
                ..base
            },
        ]
    }

    /// A line as a tree, its prefix checked and its (maybe fresh) time
    /// checked for presence and dropped.
    fn tree(line: &[u8], prefix: &str) -> Value {
        let text = std::str::from_utf8(line).unwrap();
        let body = text.strip_prefix(prefix).unwrap();
        assert!(body.starts_with("{\"time\":"), "{body}");
        assert_eq!(body.find('\n'), Some(body.len() - 1), "one line: {body}");
        let mut v: Value = serde_json::from_str(body).unwrap();
        assert!(v.as_object_mut().unwrap().remove("time").is_some());
        v
    }

    #[test]
    fn lines_mean_what_the_tree_path_writes() {
        let salt = salt();
        let keep = ["keep".to_string(), "metadata".to_string()];
        let non_hmac = [
            NonHmacKeys::default(),
            NonHmacKeys {
                request: &keep,
                response: &keep,
            },
        ];
        for text in entries() {
            let e = Entry::parse(text.as_bytes()).expect("an object");
            let Value::Object(map) = serde_json::from_str::<Value>(&text).unwrap() else {
                unreachable!()
            };
            for options in options() {
                for keys in non_hmac {
                    let fast = e.line(&salt, &options, keys);
                    let slow =
                        entry::render(entry::prepare(map.clone(), &salt, &options, keys), &options);
                    assert_eq!(
                        tree(&fast, &options.prefix),
                        tree(&slow, &options.prefix),
                        "{text} with {options:?}"
                    );
                }
            }
        }
    }

    #[test]
    fn secrets_are_hashed_and_the_rest_kept_as_sent() {
        let text = r#"{"time":"t","type":"response","request":{"client_token":"s.tok","n":1.50},"response":{"data":{"password":"hunter2"}}}"#;
        let line = Entry::parse(text.as_bytes()).unwrap().line(
            &salt(),
            &FormatOptions::default(),
            NonHmacKeys::default(),
        );
        let line = String::from_utf8(line).unwrap();
        assert!(
            !line.contains("s.tok") && !line.contains("hunter2"),
            "{line}"
        );
        assert!(line.contains(&salt().hash("hunter2")), "{line}");
        // Members in the order sent, numbers as written.
        assert!(
            line.starts_with(
                r#"{"time":"t","type":"response","request":{"client_token":"hmac-sha256:"#
            ),
            "{line}"
        );
        assert!(line.contains(r#""n":1.50"#), "{line}");
    }

    #[test]
    fn only_objects_are_entries() {
        for bad in ["[]", "\"x\"", "3", "{", "{\"a\":}", "", "{\"a\":1}\n{"] {
            assert!(Entry::parse(bad.as_bytes()).is_none(), "{bad}");
        }
    }
}
