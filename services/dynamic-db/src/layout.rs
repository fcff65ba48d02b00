//! Where everything lives in the `dynamic-db` storage namespace, what is
//! stored there, and what names may look like.
//!
//! ```text
//! m/<mount>/config/<name>        connection (JSON `ConfigRecord`, with its password)
//! m/<mount>/role/<name>          dynamic role (JSON `RoleRecord`)
//! m/<mount>/static-role/<name>   static role (JSON `StaticRoleRecord`, with its password)
//! ```
//!
//! `<mount>` is the mount's UUID. Every value is sealed by the barrier, so the
//! passwords in connection and static-role records never reach storage in
//! the clear. Records are never returned as stored: the service builds its
//! answers without the passwords.

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use zeroize::Zeroizing;

use crate::error::DbError;

/// The longest mount id accepted, in bytes.
pub const MAX_MOUNT_LEN: usize = 256;
/// The longest config or role name accepted, in bytes.
pub const MAX_NAME_LEN: usize = 256;

/// A password held in memory: zeroized on drop, never printed.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Secret(Zeroizing<String>);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Secret(Zeroizing::new(value.into()))
    }

    pub fn expose(&self) -> &str {
        self.0.as_str()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(if self.is_empty() {
            "\"\""
        } else {
            "<redacted>"
        })
    }
}

impl Serialize for Secret {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.expose())
    }
}

impl<'de> Deserialize<'de> for Secret {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Ok(Secret(Zeroizing::new(String::deserialize(d)?)))
    }
}

/// A stored connection.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct ConfigRecord {
    pub plugin_name: String,
    pub connection_url: String,
    pub username: String,
    pub password: Secret,
    pub allowed_roles: Vec<String>,
    /// 0 = the default (4).
    pub max_open_connections: i64,
    pub max_idle_connections: i64,
    /// Seconds; 0 = unlimited.
    pub max_connection_lifetime: i64,
    pub username_template: String,
    pub password_policy: String,
    pub root_rotation_statements: Vec<String>,
    pub verify_connection: bool,
}

/// A stored dynamic role.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct RoleRecord {
    pub db_name: String,
    pub creation_statements: Vec<String>,
    pub revocation_statements: Vec<String>,
    pub rollback_statements: Vec<String>,
    pub renew_statements: Vec<String>,
    /// Seconds; 0 = the mount's.
    pub default_ttl: i64,
    pub max_ttl: i64,
}

/// A stored static role, with the password this service last set.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct StaticRoleRecord {
    pub db_name: String,
    pub username: String,
    /// Seconds.
    pub rotation_period: i64,
    pub rotation_statements: Vec<String>,
    pub password: Secret,
    /// Unix seconds of the last rotation (0 = never).
    pub last_vault_rotation: i64,
    /// A rotation under way: set before the database is changed, cleared
    /// once the new password is recorded (so two replicas never rotate the
    /// same role at once).
    pub pending_since: i64,
}

/// Refuses an empty mount id, or one holding `/` or a NUL byte.
pub fn check_mount(mount: &str) -> Result<(), DbError> {
    if mount.is_empty() {
        return Err(DbError::Invalid("missing mount id".into()));
    }
    if mount.len() > MAX_MOUNT_LEN || mount.contains(['/', '\0']) {
        return Err(DbError::Invalid("invalid mount id".into()));
    }
    Ok(())
}

/// Vault's name rule (`\w(([\w-.]+)?\w)?`): word characters, with `-` and
/// `.` inside.
pub fn check_name(what: &str, name: &str) -> Result<(), DbError> {
    if name.is_empty() {
        return Err(DbError::Invalid(format!("missing {what} name")));
    }
    let word = |c: char| c.is_ascii_alphanumeric() || c == '_';
    let ok = name.len() <= MAX_NAME_LEN
        && name.chars().all(|c| word(c) || c == '-' || c == '.')
        && name.starts_with(word)
        && name.ends_with(word);
    if ok {
        Ok(())
    } else {
        Err(DbError::Invalid(format!("invalid {what} name {name:?}")))
    }
}

pub fn mount_prefix(mount: &str) -> String {
    format!("m/{mount}/")
}

pub fn config_folder(mount: &str) -> String {
    format!("m/{mount}/config/")
}

pub fn config_key(mount: &str, name: &str) -> String {
    format!("m/{mount}/config/{name}")
}

pub fn role_folder(mount: &str) -> String {
    format!("m/{mount}/role/")
}

pub fn role_key(mount: &str, name: &str) -> String {
    format!("m/{mount}/role/{name}")
}

pub fn static_folder(mount: &str) -> String {
    format!("m/{mount}/static-role/")
}

pub fn static_key(mount: &str, name: &str) -> String {
    format!("m/{mount}/static-role/{name}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        for good in ["a", "readonly", "my-role.v2", "a_b", "_x_"] {
            assert!(check_name("role", good).is_ok(), "{good}");
        }
        for bad in ["", "-a", "a-", ".a", "a/b", "a b", "a\"b", "a'b", "é"] {
            assert!(check_name("role", bad).is_err(), "{bad:?}");
        }
        assert!(check_mount("").is_err());
        assert!(check_mount("a/b").is_err());
        assert!(check_mount("8c7e-uuid").is_ok());
    }

    #[test]
    fn secrets_never_print() {
        let c = ConfigRecord {
            password: Secret::new("hunter2-secret"),
            ..Default::default()
        };
        let printed = format!("{c:?}");
        assert!(!printed.contains("hunter2"), "{printed}");
        assert!(printed.contains("<redacted>"));
        let s = StaticRoleRecord {
            password: Secret::new("another-secret"),
            ..Default::default()
        };
        assert!(!format!("{s:?}").contains("another-secret"));
        // Round trip through the stored form.
        let json = serde_json::to_string(&c).unwrap();
        let back: ConfigRecord = serde_json::from_str(&json).unwrap();
        assert_eq!(back.password.expose(), "hunter2-secret");
    }
}
