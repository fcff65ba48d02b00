//! Vault's response envelope for logical endpoints. Every key is always
//! emitted (null, "" or 0 when empty), as Vault's clients expect.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use serde_json::Value;

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct WrapInfo {
    pub token: String,
    pub accessor: String,
    pub ttl: u64,
    pub creation_time: String,
    pub creation_path: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub wrapped_accessor: String,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Envelope {
    pub request_id: String,
    pub lease_id: String,
    pub renewable: bool,
    pub lease_duration: u64,
    pub data: Option<Value>,
    pub wrap_info: Option<WrapInfo>,
    pub warnings: Option<Vec<String>>,
    pub auth: Option<Value>,
    pub mount_type: String,
}

impl Envelope {
    /// An empty envelope carrying the id of the request being served.
    pub fn new(mount_type: &str) -> Self {
        Envelope {
            request_id: crate::observe::request_id(),
            lease_id: String::new(),
            renewable: false,
            lease_duration: 0,
            data: None,
            wrap_info: None,
            warnings: None,
            auth: None,
            mount_type: mount_type.to_string(),
        }
    }

    /// An envelope carrying `data`.
    pub fn data(data: Value, mount_type: &str) -> Self {
        Envelope {
            data: Some(data),
            ..Envelope::new(mount_type)
        }
    }

    /// An envelope carrying an `auth` block (token create, login, renew).
    pub fn auth(auth: Value, mount_type: &str) -> Self {
        Envelope {
            auth: Some(auth),
            ..Envelope::new(mount_type)
        }
    }

    pub fn with_warnings(mut self, warnings: Vec<String>) -> Self {
        if !warnings.is_empty() {
            self.warnings = Some(warnings);
        }
        self
    }

    /// Copies `data`'s keys to the top level as well, as Vault does for a
    /// few sys routes (`sys/mounts`, `sys/policy`, …).
    pub fn with_top_level_data(self) -> Response {
        let mut v = serde_json::to_value(&self).expect("envelope serializes");
        if let (Some(Value::Object(data)), Value::Object(top)) = (self.data, &mut v) {
            for (k, val) in data {
                top.entry(k).or_insert(val);
            }
        }
        (StatusCode::OK, axum::Json(v)).into_response()
    }
}

impl IntoResponse for Envelope {
    fn into_response(self) -> Response {
        (StatusCode::OK, axum::Json(self)).into_response()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn every_key_is_present() {
        let v = serde_json::to_value(Envelope::data(json!({"a": 1}), "kv")).unwrap();
        for k in [
            "request_id",
            "lease_id",
            "renewable",
            "lease_duration",
            "data",
            "wrap_info",
            "warnings",
            "auth",
            "mount_type",
        ] {
            assert!(v.get(k).is_some(), "{k}");
        }
        assert_eq!(v["wrap_info"], Value::Null);
    }
}
