//! Decoding a Vault API request: the operation (from the verb and `?list=`),
//! the client token, and the JSON body with Vault's size limit and errors.

use axum::body::Body;
use axum::http::{HeaderMap, Method, StatusCode};
use serde_json::{Map, Value};

use crate::error::ApiError;

/// Vault's request size limit (32 MiB).
pub const MAX_REQUEST_BYTES: usize = 32 * 1024 * 1024;

/// What a request asks to do, as ACLs and backends see it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Operation {
    Read,
    List,
    /// POST and PUT; create vs update is decided later by an existence check.
    Write,
    Delete,
    Patch,
    Head,
    Options,
}

/// Maps the HTTP verb (and `?list=`) to an operation. `LIST` is Vault's verb
/// for listing, used by hvac, node-vault and vaultrs.
pub fn operation(method: &Method, query: &[(String, String)]) -> Result<Operation, ApiError> {
    let op = match method.as_str() {
        "GET" => match query.iter().find(|(k, _)| k == "list") {
            Some((_, v)) => {
                if parse_bool(v)
                    .ok_or_else(|| ApiError::bad_request(format!("invalid list value {v:?}")))?
                {
                    Operation::List
                } else {
                    Operation::Read
                }
            }
            None => Operation::Read,
        },
        "LIST" => Operation::List,
        "POST" | "PUT" => Operation::Write,
        "DELETE" => Operation::Delete,
        "PATCH" => Operation::Patch,
        "HEAD" => Operation::Head,
        "OPTIONS" => Operation::Options,
        _ => {
            return Err(ApiError::new(
                StatusCode::METHOD_NOT_ALLOWED,
                "unsupported operation",
            ))
        }
    };
    Ok(op)
}

/// Go's `strconv.ParseBool`.
pub fn parse_bool(s: &str) -> Option<bool> {
    match s {
        "1" | "t" | "T" | "true" | "TRUE" | "True" => Some(true),
        "0" | "f" | "F" | "false" | "FALSE" | "False" => Some(false),
        _ => None,
    }
}

/// The client token: `X-Vault-Token`, else `Authorization: Bearer <token>`.
pub fn client_token(headers: &HeaderMap) -> Option<String> {
    if let Some(v) = headers.get("x-vault-token") {
        let t = v.to_str().ok()?.trim();
        return (!t.is_empty()).then(|| t.to_string());
    }
    let auth = headers
        .get(axum::http::header::AUTHORIZATION)?
        .to_str()
        .ok()?;
    let (scheme, token) = auth.trim().split_once(' ')?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then(|| token.to_string())
}

/// Reads the body, refusing more than [`MAX_REQUEST_BYTES`] with 413.
pub async fn read_body(headers: &HeaderMap, body: Body) -> Result<bytes::Bytes, ApiError> {
    let too_large = || {
        ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("request body is larger than the limit of {MAX_REQUEST_BYTES} bytes"),
        )
    };
    if let Some(len) = headers
        .get(axum::http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok())
    {
        if len > MAX_REQUEST_BYTES as u64 {
            return Err(too_large());
        }
    }
    axum::body::to_bytes(body, MAX_REQUEST_BYTES)
        .await
        .map_err(|e| {
            let limited = std::error::Error::source(&e)
                .is_some_and(|s| s.is::<http_body_util::LengthLimitError>());
            if limited {
                too_large()
            } else {
                ApiError::bad_request(format!("failed to read request body: {e}"))
            }
        })
}

/// Parses a body as a JSON object. Empty means `{}`; anything but an object
/// is a 400, as in Vault.
pub fn json_object(body: &[u8]) -> Result<Map<String, Value>, ApiError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(Map::new());
    }
    match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(m)) => Ok(m),
        Ok(_) => Err(ApiError::bad_request(
            "failed to parse JSON input: request body must be a JSON object",
        )),
        Err(e) => Err(ApiError::bad_request(format!(
            "failed to parse JSON input: {e}"
        ))),
    }
}

/// Typed access to request fields, treating JSON `null` as absent (clients
/// such as hvac send `null` for every unset parameter).
pub struct Fields<'a>(pub &'a Map<String, Value>);

impl Fields<'_> {
    fn get(&self, key: &str) -> Option<&Value> {
        self.0.get(key).filter(|v| !v.is_null())
    }

    pub fn string(&self, key: &str) -> Result<Option<String>, ApiError> {
        match self.get(key) {
            None => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.clone())),
            Some(Value::Number(n)) => Ok(Some(n.to_string())),
            Some(Value::Bool(b)) => Ok(Some(b.to_string())),
            Some(_) => Err(ApiError::bad_request(format!(
                "field {key:?} must be a string"
            ))),
        }
    }

    pub fn bool(&self, key: &str) -> Result<Option<bool>, ApiError> {
        match self.get(key) {
            None => Ok(None),
            Some(Value::Bool(b)) => Ok(Some(*b)),
            Some(Value::String(s)) => parse_bool(s)
                .map(Some)
                .ok_or_else(|| ApiError::bad_request(format!("field {key:?} must be a boolean"))),
            Some(_) => Err(ApiError::bad_request(format!(
                "field {key:?} must be a boolean"
            ))),
        }
    }

    pub fn u32(&self, key: &str) -> Result<Option<u32>, ApiError> {
        let bad = || ApiError::bad_request(format!("field {key:?} must be a non-negative integer"));
        match self.get(key) {
            None => Ok(None),
            Some(Value::Number(n)) => n
                .as_u64()
                .and_then(|v| u32::try_from(v).ok())
                .map(Some)
                .ok_or_else(bad),
            Some(Value::String(s)) => s.trim().parse::<u32>().map(Some).map_err(|_| bad()),
            Some(_) => Err(bad()),
        }
    }

    /// A duration (whole seconds or a Go duration string) in seconds.
    pub fn duration_secs(&self, key: &str) -> Result<Option<u64>, ApiError> {
        match self.get(key) {
            None => Ok(None),
            Some(v) => bulwark_shared::ttl::parse_duration_value(v)
                .map(|d| d.map(|d| d.as_secs()))
                .map_err(|e| ApiError::bad_request(format!("{key}: {e}"))),
        }
    }

    /// A map of strings (numbers and booleans are taken as their text, as
    /// Vault's weak decoding does).
    pub fn string_map(
        &self,
        key: &str,
    ) -> Result<Option<std::collections::BTreeMap<String, String>>, ApiError> {
        match self.get(key) {
            None => Ok(None),
            Some(Value::Object(m)) => m
                .iter()
                .map(|(k, v)| match v {
                    Value::String(s) => Ok((k.clone(), s.clone())),
                    Value::Number(n) => Ok((k.clone(), n.to_string())),
                    Value::Bool(b) => Ok((k.clone(), b.to_string())),
                    _ => Err(ApiError::bad_request(format!(
                        "{key} values must be strings"
                    ))),
                })
                .collect::<Result<_, _>>()
                .map(Some),
            Some(_) => Err(ApiError::bad_request(format!(
                "{key} must be a map of strings"
            ))),
        }
    }

    /// Whether the body carries `key` (a JSON `null` does not count).
    pub fn present(&self, key: &str) -> bool {
        self.get(key).is_some()
    }

    /// A duration in seconds from the first of `keys` present (a name and
    /// its legacy aliases).
    pub fn secs(&self, keys: &[&str]) -> Result<Option<i64>, ApiError> {
        for k in keys {
            if let Some(v) = self.duration_secs(k)? {
                return i64::try_from(v)
                    .map(Some)
                    .map_err(|_| ApiError::bad_request(format!("{k}: duration out of range")));
            }
        }
        Ok(None)
    }

    /// A list from the first of `keys` present.
    pub fn list_any(&self, keys: &[&str]) -> Result<Option<Vec<String>>, ApiError> {
        for k in keys {
            if self.present(k) {
                return self.string_list(k).map(Some);
            }
        }
        Ok(None)
    }

    pub fn string_list(&self, key: &str) -> Result<Vec<String>, ApiError> {
        match self.get(key) {
            None => Ok(vec![]),
            Some(Value::Array(items)) => items
                .iter()
                .map(|v| match v {
                    Value::String(s) => Ok(s.clone()),
                    _ => Err(ApiError::bad_request(format!(
                        "field {key:?} must be a list of strings"
                    ))),
                })
                .collect(),
            Some(Value::String(s)) => Ok(s
                .split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(String::from)
                .collect()),
            Some(_) => Err(ApiError::bad_request(format!(
                "field {key:?} must be a list of strings"
            ))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn operations() {
        let q = |v: &str| vec![("list".to_string(), v.to_string())];
        assert_eq!(operation(&Method::GET, &[]).unwrap(), Operation::Read);
        assert_eq!(
            operation(&Method::GET, &q("true")).unwrap(),
            Operation::List
        );
        assert_eq!(
            operation(&Method::GET, &q("false")).unwrap(),
            Operation::Read
        );
        assert_eq!(
            operation(&Method::GET, &q("maybe")).unwrap_err().status,
            400
        );
        assert_eq!(
            operation(&Method::from_bytes(b"LIST").unwrap(), &[]).unwrap(),
            Operation::List
        );
        assert_eq!(operation(&Method::PUT, &[]).unwrap(), Operation::Write);
        assert_eq!(operation(&Method::TRACE, &[]).unwrap_err().status, 405);
    }

    #[test]
    fn tokens() {
        let mut h = HeaderMap::new();
        assert_eq!(client_token(&h), None);
        h.insert("authorization", "Bearer abc".parse().unwrap());
        assert_eq!(client_token(&h).as_deref(), Some("abc"));
        h.insert("authorization", "Basic abc".parse().unwrap());
        assert_eq!(client_token(&h), None);
        h.insert("x-vault-token", "xyz".parse().unwrap());
        assert_eq!(client_token(&h).as_deref(), Some("xyz"));
    }

    #[test]
    fn bodies() {
        assert!(json_object(b"").unwrap().is_empty());
        assert!(json_object(b"  \n").unwrap().is_empty());
        assert_eq!(json_object(br#"{"a":1}"#).unwrap()["a"], json!(1));
        assert_eq!(json_object(b"{nope").unwrap_err().status, 400);
        assert_eq!(json_object(b"[1,2]").unwrap_err().status, 400);
        assert_eq!(json_object(b"42").unwrap_err().status, 400);
    }

    #[test]
    fn fields_treat_null_as_absent() {
        let m =
            json_object(br#"{"a":null,"n":5,"s":"7","b":"true","l":"x, y","bad":[1]}"#).unwrap();
        let f = Fields(&m);
        assert_eq!(f.u32("a").unwrap(), None);
        assert_eq!(f.u32("n").unwrap(), Some(5));
        assert_eq!(f.u32("s").unwrap(), Some(7));
        assert_eq!(f.bool("b").unwrap(), Some(true));
        assert_eq!(f.string_list("l").unwrap(), vec!["x", "y"]);
        assert!(f.u32("bad").is_err());
        assert!(f.string_list("bad").is_err());
        assert!(f.u32("b").is_err());
    }
}
