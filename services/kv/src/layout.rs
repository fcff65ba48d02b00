//! Where everything lives in the `kv` storage namespace, and what a mount id
//! or a key path may look like.
//!
//! Every key is a plaintext path; every value is sealed by the barrier.
//!
//! ```text
//! m/<mount>/v1/<path>          kv v1 and cubbyhole entry (a JSON object)
//! m/<mount>/meta/<path>        kv v2 key metadata (JSON `KeyRecord`)
//! m/<mount>/ver/<path>/<id>    kv v2 version data (a JSON object)
//! m/<mount>/config             kv v2 mount configuration (JSON `ConfigRecord`)
//! ```
//!
//! `<mount>` is the mount's UUID; every cubbyhole lives under the mount id
//! [`CUBBYHOLE_MOUNT`], its paths prefixed by the owning token's accessor
//! (`<accessor>/<key>`). A version's data is stored under a random `<id>`
//! chosen by the writer and named by the version's entry in the metadata:
//! two writers racing for the same version number each write a key of their
//! own, so the loser can never overwrite the winner's data. Since `<id>` holds
//! no `/`, the keys of different paths never collide (`ver/a/<id>` is always
//! a version of `a`).

use crate::error::KvError;

/// The longest key path accepted, in bytes.
pub const MAX_PATH_LEN: usize = 4096;
/// The longest mount id accepted, in bytes.
pub const MAX_MOUNT_LEN: usize = 256;
/// The mount id under which every cubbyhole is stored, whatever mount id the
/// request names.
pub const CUBBYHOLE_MOUNT: &str = "cubbyhole";

/// The kind of a mount, as far as storage is concerned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Flat key/value entries.
    KvV1,
    /// Versioned keys with metadata.
    KvV2,
    /// Flat entries, per token: paths start with the token's accessor.
    Cubbyhole,
}

/// Refuses an empty mount id, or one holding `/` or a NUL byte.
pub fn check_mount(mount: &str) -> Result<(), KvError> {
    if mount.is_empty() {
        return Err(KvError::Invalid("missing mount id".into()));
    }
    if mount.len() > MAX_MOUNT_LEN || mount.contains(['/', '\0']) {
        return Err(KvError::Invalid("invalid mount id".into()));
    }
    Ok(())
}

/// The rules every path follows, data key or folder: no leading `/`, no `..`
/// segment, no NUL byte, at most [`MAX_PATH_LEN`] bytes.
fn check_path(path: &str) -> Result<(), KvError> {
    if path.len() > MAX_PATH_LEN {
        return Err(KvError::Invalid(format!(
            "path is too long: {} bytes (at most {MAX_PATH_LEN})",
            path.len()
        )));
    }
    if path.starts_with('/') {
        return Err(KvError::Invalid("path must not start with \"/\"".into()));
    }
    if path.split('/').any(|segment| segment == "..") {
        return Err(KvError::Invalid(
            "path must not contain \"..\" segments".into(),
        ));
    }
    if path.contains('\0') {
        return Err(KvError::Invalid("path must not contain NUL bytes".into()));
    }
    Ok(())
}

/// A key path for a data operation: non-empty, no leading `/`, no `..`
/// segment, no NUL byte, at most [`MAX_PATH_LEN`] bytes.
pub fn check_key(path: &str) -> Result<(), KvError> {
    if path.is_empty() {
        return Err(KvError::Invalid("missing path".into()));
    }
    check_path(path)
}

/// A folder to list: `""` (the root), `a` or `a/`. Returns it with a
/// trailing `/` (or empty for the root).
pub fn folder(path: &str) -> Result<String, KvError> {
    check_path(path)?;
    let mut folder = path.to_string();
    if !folder.is_empty() && !folder.ends_with('/') {
        folder.push('/');
    }
    Ok(folder)
}

/// The accessor a cubbyhole path starts with (`<accessor>/...`).
pub fn cubbyhole_accessor(path: &str) -> Result<&str, KvError> {
    match path.split_once('/') {
        Some((accessor, _)) if !accessor.is_empty() => Ok(accessor),
        _ => Err(KvError::Invalid(
            "cubbyhole path must start with the token accessor".into(),
        )),
    }
}

/// Whether `accessor` can name a cubbyhole (non-empty, no `/`, no NUL).
pub fn plausible_accessor(accessor: &str) -> bool {
    !accessor.is_empty() && accessor.len() <= MAX_MOUNT_LEN && !accessor.contains(['/', '\0'])
}

/// Everything of one mount.
pub fn mount_prefix(mount: &str) -> String {
    format!("m/{mount}/")
}

/// A kv v1 or cubbyhole entry.
pub fn entry_key(mount: &str, path: &str) -> String {
    format!("m/{mount}/v1/{path}")
}

/// The kv v1 or cubbyhole entries under `folder` (as made by [`folder`]).
pub fn entry_folder(mount: &str, folder: &str) -> String {
    format!("m/{mount}/v1/{folder}")
}

/// Every cubbyhole entry of one token.
pub fn cubbyhole_prefix(accessor: &str) -> String {
    format!("m/{CUBBYHOLE_MOUNT}/v1/{accessor}/")
}

/// A kv v2 key's metadata record.
pub fn meta_key(mount: &str, path: &str) -> String {
    format!("m/{mount}/meta/{path}")
}

/// The kv v2 metadata records under `folder` (as made by [`folder`]).
pub fn meta_folder(mount: &str, folder: &str) -> String {
    format!("m/{mount}/meta/{folder}")
}

/// The data of one version of a kv v2 key, stored under `id`.
pub fn version_key(mount: &str, path: &str, id: &str) -> String {
    format!("m/{mount}/ver/{path}/{id}")
}

/// A kv v2 mount's configuration.
pub fn config_key(mount: &str) -> String {
    format!("m/{mount}/config")
}

/// A fresh, random id for a version's data: 128 bits, lower-case hex.
pub fn new_data_id() -> String {
    format!("{:032x}", rand::random::<u128>())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mount_ids() {
        for ok in ["0b4c6a8e-1f4e-4d43-9a57-3c0f8f0e2d11", "cubbyhole", "x"] {
            assert!(check_mount(ok).is_ok(), "{ok}");
        }
        let long = "a".repeat(MAX_MOUNT_LEN + 1);
        for bad in ["", "a/b", "/", "a\0", long.as_str()] {
            assert!(
                matches!(check_mount(bad), Err(KvError::Invalid(_))),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn key_paths() {
        let max = "a".repeat(MAX_PATH_LEN);
        for ok in ["a", "a/b", "a/b/", "a..b", "a/.b", "...", max.as_str()] {
            assert!(check_key(ok).is_ok(), "{ok:?}");
        }
        let long = "a".repeat(MAX_PATH_LEN + 1);
        for bad in [
            "",
            "/a",
            "..",
            "a/..",
            "../a",
            "a/../b",
            "a\0b",
            long.as_str(),
        ] {
            assert!(
                matches!(check_key(bad), Err(KvError::Invalid(_))),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn folders() {
        let cases = [("", ""), ("a", "a/"), ("a/", "a/"), ("a/b", "a/b/")];
        for (input, want) in cases {
            assert_eq!(folder(input).unwrap(), want, "{input:?}");
        }
        for bad in ["/", "/a", "a/../"] {
            assert!(folder(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn cubbyhole_paths() {
        assert_eq!(cubbyhole_accessor("acc/x").unwrap(), "acc");
        assert_eq!(cubbyhole_accessor("acc/").unwrap(), "acc");
        for bad in ["acc", "", "/x"] {
            assert!(cubbyhole_accessor(bad).is_err(), "{bad:?}");
        }
        assert!(plausible_accessor("hmm0123"));
        for bad in ["", "a/b", "a\0"] {
            assert!(!plausible_accessor(bad), "{bad:?}");
        }
    }

    #[test]
    fn data_ids_are_unique_and_slash_free() {
        let a = new_data_id();
        let b = new_data_id();
        assert_ne!(a, b);
        assert_eq!(a.len(), 32);
        assert!(!a.contains('/'));
    }
}
