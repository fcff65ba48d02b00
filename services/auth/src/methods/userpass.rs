//! userpass: users with a password (argon2id, or a bcrypt hash given as
//! is) and token parameters, under `method/<uuid>/user/<name>`.
//!
//! A login with an unknown user or a wrong password gets the same answer
//! ("invalid username or password", a Vault 400) after the same work: an
//! unknown user's password is checked against a dummy argon2id hash. Hashes
//! are computed and checked on the blocking pool. Five failures lock the
//! user (see [`super::Lockout`]). A user with `token_bound_cidrs` can log in
//! only from those blocks (403, as Vault).

use std::fmt;
use std::sync::OnceLock;

use argon2::password_hash::{PasswordHash, PasswordHasher, SaltString};
use argon2::{Algorithm, Argon2, Version};
use bulwark_proto::auth::v1::{
    CreateTokenResponse, ItemRequest, MountRequest, User, UserpassLoginRequest, WriteUserRequest,
};
use rand::RngCore;
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use super::{check_mount, login_context, LockKey, Login, MethodsService, Params, MAX_NAME_LEN};
use crate::cidr;
use crate::error::AuthError;

/// The cost of the argon2id hashes of stored passwords: m = 19 456 KiB
/// (19 MiB) of memory, t = 2 passes, p = 1 lane. This is OWASP's
/// recommended minimum for argon2id (Password Storage Cheat Sheet); every
/// login pays it once, on the blocking pool, and it bounds the login rate
/// one core can sustain (the benchmark figure depends on it). Stored hashes
/// carry their own parameters, so changing these affects new passwords only.
pub(crate) const ARGON2_COST: Argon2Cost = Argon2Cost {
    m_kib: 19_456,
    t: 2,
    p: 1,
};

/// Parameters of argon2id.
pub(crate) struct Argon2Cost {
    /// Memory, KiB.
    pub m_kib: u32,
    /// Passes.
    pub t: u32,
    /// Lanes.
    pub p: u32,
}

const INVALID_LOGIN: &str = "invalid username or password";

fn user_path(uuid: &str, name: &str) -> String {
    format!("method/{uuid}/user/{name}")
}

fn users_prefix(uuid: &str) -> String {
    format!("method/{uuid}/user/")
}

/// A userpass name: trimmed, lower-cased, 1 to 128 of `[a-z0-9_.@-]`.
fn user_name(raw: &str) -> Result<String, AuthError> {
    let name = raw.trim().to_lowercase();
    if name.is_empty()
        || name.len() > MAX_NAME_LEN
        || !name.bytes().all(|b| {
            b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'_' | b'.' | b'@' | b'-')
        })
    {
        return Err(AuthError::invalid("invalid username"));
    }
    Ok(name)
}

/// One user as stored.
#[derive(Clone, Serialize, Deserialize)]
struct UserRecord {
    name: String,
    /// An argon2id PHC string, or a bcrypt hash.
    password_hash: String,
    #[serde(default)]
    token: Params,
}

impl fmt::Debug for UserRecord {
    // By hand: never print the hash.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("UserRecord")
            .field("name", &self.name)
            .field("token", &self.token)
            .finish_non_exhaustive()
    }
}

fn argon2id() -> Argon2<'static> {
    let params = argon2::Params::new(ARGON2_COST.m_kib, ARGON2_COST.t, ARGON2_COST.p, None)
        .expect("the argon2 cost constants are valid");
    Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
}

/// A new argon2id PHC string for `password` (CPU-heavy: call it on the
/// blocking pool).
fn hash_password(password: &[u8]) -> Result<String, AuthError> {
    let mut salt = [0u8; 16];
    rand::rngs::OsRng.fill_bytes(&mut salt);
    let salt = SaltString::encode_b64(&salt).map_err(|_| AuthError::Internal("salt"))?;
    argon2id()
        .hash_password(password, &salt)
        .map(|h| h.to_string())
        .map_err(|_| AuthError::Internal("password hashing"))
}

/// Whether `hash` looks like a bcrypt hash the bcrypt crate can check.
fn is_bcrypt(hash: &str) -> bool {
    ["$2a$", "$2b$", "$2y$"].iter().any(|p| hash.starts_with(p))
        && hash.len() == 60
        && hash
            .parse::<bcrypt::HashParts>()
            .is_ok_and(|parts| (4..=31).contains(&parts.get_cost()))
}

/// Argon2 working memory kept for reuse, one buffer per hashing slot (see
/// [`hashing_slots`]). A fresh 19 MiB allocation per login, freed right
/// after, is what glibc's malloc keeps in per-thread arenas instead of
/// returning: 64 concurrent logins left 3.9 GB of RSS. Reused buffers keep
/// it at one per core.
fn argon2_memory() -> &'static std::sync::Mutex<Vec<Vec<argon2::Block>>> {
    static POOL: OnceLock<std::sync::Mutex<Vec<Vec<argon2::Block>>>> = OnceLock::new();
    POOL.get_or_init(Default::default)
}

/// The most argon2 memory a stored hash may ask for: ours use 19 MiB; only
/// our own hashes are stored (given hashes must be bcrypt).
const MAX_ARGON2_BLOCKS: usize = 64 * 1024;

/// Verifies an argon2 PHC hash with working memory from [`argon2_memory`].
fn verify_argon2(stored: &str, password: &[u8]) -> bool {
    use subtle::ConstantTimeEq;
    let Ok(h) = PasswordHash::new(stored) else {
        return false;
    };
    let (Some(salt), Some(expected)) = (h.salt, h.hash) else {
        return false;
    };
    let (Ok(algorithm), Ok(params)) = (
        Algorithm::try_from(h.algorithm),
        argon2::Params::try_from(&h),
    ) else {
        return false;
    };
    let version = match h.version.map(Version::try_from).transpose() {
        Ok(v) => v.unwrap_or_default(),
        Err(_) => return false,
    };
    let blocks = params.block_count();
    if blocks > MAX_ARGON2_BLOCKS {
        return false;
    }
    let mut salt_buf = [0u8; 64];
    let Ok(salt) = salt.decode_b64(&mut salt_buf) else {
        return false;
    };
    let mut memory = argon2_memory()
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .pop()
        .unwrap_or_default();
    if memory.len() < blocks {
        memory.resize(blocks, argon2::Block::default());
    }
    let mut out = Zeroizing::new(vec![0u8; expected.len()]);
    let computed = Argon2::new(algorithm, version, params)
        .hash_password_into_with_memory(password, salt, &mut out, &mut memory[..blocks])
        .is_ok();
    // The blocks hold values derived from the password: wipe them before
    // they wait for the next login.
    for b in memory.iter_mut().take(blocks) {
        *b = argon2::Block::default();
    }
    argon2_memory()
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .push(memory);
    computed && bool::from(expected.as_bytes().ct_eq(&out))
}

/// Whether `password` matches `stored` (argon2 PHC or bcrypt). CPU-heavy.
fn verify_password(stored: &str, password: &[u8]) -> bool {
    let start = std::time::Instant::now();
    let ok = check_password(stored, password);
    bulwark_shared::metrics::metrics()
        .password_check
        .observe(start.elapsed().as_secs_f64());
    ok
}

/// The check itself: argon2 PHC (ours) or bcrypt (given hashes).
fn check_password(stored: &str, password: &[u8]) -> bool {
    if stored.starts_with("$argon2") {
        // The hash carries its own parameters.
        verify_argon2(stored, password)
    } else if is_bcrypt(stored) {
        bcrypt::verify(password, stored).unwrap_or(false)
    } else {
        false
    }
}

/// An argon2id hash of nothing anyone knows, checked for unknown users so
/// that they cost what known ones do.
fn dummy_hash() -> &'static str {
    static DUMMY: OnceLock<String> = OnceLock::new();
    DUMMY.get_or_init(|| {
        let mut secret = Zeroizing::new([0u8; 32]);
        rand::rngs::OsRng.fill_bytes(secret.as_mut_slice());
        // An unknown user never matches (see `user_login`), so a failure
        // here only costs the timing equalization.
        hash_password(secret.as_slice()).unwrap_or_default()
    })
}

/// Password hashes computed at once: one per core. Each argon2id run holds
/// its memory cost (19 MiB) for its whole length, so unbounded logins under
/// load (64 at once measured 3.9 GB of RSS) would grow memory instead of
/// queueing; past the cores they only slow each other down anyway.
fn hashing_slots() -> &'static tokio::sync::Semaphore {
    static SLOTS: OnceLock<tokio::sync::Semaphore> = OnceLock::new();
    SLOTS.get_or_init(|| {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        tokio::sync::Semaphore::new(cores)
    })
}

/// Runs CPU-heavy hashing on the blocking pool, at most one per core.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> T + Send + 'static,
) -> Result<T, AuthError> {
    let _slot = hashing_slots()
        .acquire()
        .await
        .map_err(|_| AuthError::Internal("password hashing slots"))?;
    // The hashing span stays in the caller's trace.
    let span = tracing::info_span!("crypto.password_hash");
    tokio::task::spawn_blocking(move || span.in_scope(f))
        .await
        .map_err(|_| AuthError::Internal("password hashing task"))
}

impl MethodsService {
    async fn get_user(&self, uuid: &str, name: &str) -> Result<Option<UserRecord>, AuthError> {
        self.get_record(&user_path(uuid, name)).await
    }

    /// WriteUser: creates or replaces a user (the gateway sends the merged
    /// whole user). A new password is hashed; without one the stored hash is
    /// kept, and a new user needs one.
    pub(crate) async fn user_write(&self, req: WriteUserRequest) -> Result<(), AuthError> {
        let mount = check_mount(req.mount)?;
        let password = Zeroizing::new(req.password);
        let password_hash = Zeroizing::new(req.password_hash);
        let user = req.user.ok_or_else(|| AuthError::invalid("missing user"))?;
        let name = user_name(&user.name)?;
        let token = Params::from_proto(user.token)?;
        if !password.is_empty() && !password_hash.is_empty() {
            return Err(AuthError::invalid(
                "only one of password or password_hash can be given",
            ));
        }
        let new_hash = if !password.is_empty() {
            Some(blocking(move || hash_password(password.as_bytes())).await??)
        } else if !password_hash.is_empty() {
            if !is_bcrypt(&password_hash) {
                return Err(AuthError::invalid(
                    "password_hash must be a bcrypt hash ($2a$, $2b$ or $2y$)",
                ));
            }
            Some(password_hash.to_string())
        } else {
            None
        };
        let password_hash = match new_hash {
            Some(h) => h,
            None => match self.get_user(&mount.uuid, &name).await? {
                Some(existing) => existing.password_hash,
                None => return Err(AuthError::invalid("missing password")),
            },
        };
        let record = UserRecord {
            name: name.clone(),
            password_hash,
            token,
        };
        self.put_record(&user_path(&mount.uuid, &name), &record)
            .await
    }

    /// ReadUser: the user without any hash.
    pub(crate) async fn user_read(&self, req: ItemRequest) -> Result<User, AuthError> {
        let mount = check_mount(req.mount)?;
        let name = user_name(&req.name)?;
        let user = self
            .get_user(&mount.uuid, &name)
            .await?
            .ok_or_else(|| AuthError::NotFound(format!("user {name:?} not found")))?;
        Ok(User {
            name: user.name,
            token: Some(user.token.to_proto()),
        })
    }

    /// DeleteUser: idempotent.
    pub(crate) async fn user_delete(&self, req: ItemRequest) -> Result<(), AuthError> {
        let mount = check_mount(req.mount)?;
        let name = user_name(&req.name)?;
        self.store
            .barrier
            .delete(&user_path(&mount.uuid, &name))
            .await?;
        self.lockout
            .succeeded(&LockKey::new(&mount.uuid, "user", &name));
        Ok(())
    }

    /// ListUsers: sorted names.
    pub(crate) async fn user_list(&self, req: MountRequest) -> Result<Vec<String>, AuthError> {
        let mount = check_mount(req.mount)?;
        self.list_leaves(&users_prefix(&mount.uuid)).await
    }

    /// UserpassLogin.
    pub(crate) async fn user_login(
        &self,
        req: UserpassLoginRequest,
    ) -> Result<CreateTokenResponse, AuthError> {
        let password = Zeroizing::new(req.password);
        let (mount, remote_ip) = login_context(req.context)?;
        if password.is_empty() {
            return Err(AuthError::invalid("missing password"));
        }
        // An impossible name is an unknown user, answered the same way.
        let name = user_name(&req.username).ok();
        let key = LockKey::new(
            &mount.uuid,
            "user",
            name.as_deref().unwrap_or(req.username.as_str()),
        );
        if self.lockout.is_locked(&key) {
            return Err(AuthError::PermissionDenied);
        }
        let user = match &name {
            Some(n) => self.get_user(&mount.uuid, n).await?,
            None => None,
        };
        let stored = user.as_ref().map(|u| u.password_hash.clone());
        let matched = blocking(move || match stored {
            Some(hash) => verify_password(&hash, password.as_bytes()),
            None => {
                let _ = verify_password(dummy_hash(), password.as_bytes());
                false
            }
        })
        .await?;
        let user = match user {
            Some(u) if matched => u,
            _ => {
                self.lockout.failed(&key);
                return Err(AuthError::invalid(INVALID_LOGIN));
            }
        };
        self.lockout.succeeded(&key);
        if !user.token.bound_cidrs.is_empty() && !cidr::allows(&user.token.bound_cidrs, &remote_ip)
        {
            return Err(AuthError::PermissionDenied);
        }
        let login = Login {
            display_name: format!("userpass-{}", user.name),
            path: format!("auth/{}login/{}", mount.path, user.name),
            meta: [("username".to_string(), user.name.clone())].into(),
            bound_cidrs: user.token.bound_cidrs.clone(),
        };
        self.mint(&mount, &user.token, login).await
    }
}

#[cfg(test)]
mod tests {
    use super::super::testing::*;
    use super::super::{LOCKOUT_DURATION, LOCKOUT_THRESHOLD};
    use super::*;
    use crate::record::TokenRef;
    use bulwark_proto::auth::v1::{Mount, TokenParams};
    use tonic::Request;

    use super::super::Methods;

    fn write(m: &Mount, name: &str, password: &str, token: TokenParams) -> WriteUserRequest {
        WriteUserRequest {
            mount: Some(m.clone()),
            user: Some(User {
                name: name.into(),
                token: Some(token),
            }),
            password: password.into(),
            password_hash: String::new(),
        }
    }

    fn item(m: &Mount, name: &str) -> ItemRequest {
        ItemRequest {
            mount: Some(m.clone()),
            name: name.into(),
        }
    }

    fn login(m: &Mount, user: &str, password: &str, ip: &str) -> UserpassLoginRequest {
        UserpassLoginRequest {
            context: ctx(m, ip),
            username: user.into(),
            password: password.into(),
        }
    }

    #[test]
    fn argon2_cost_is_the_documented_one() {
        let hash = hash_password(b"pw").unwrap();
        assert!(
            hash.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"),
            "{hash}"
        );
        assert!(verify_password(&hash, b"pw"));
        assert!(!verify_password(&hash, b"pW"));
        assert!(!verify_password("plain", b"plain"));
        // The pooled-memory verifier agrees with the crate's own, for our
        // cost and for a hash made with other parameters and a longer output.
        use argon2::password_hash::PasswordVerifier;
        let parsed = PasswordHash::new(&hash).unwrap();
        assert!(Argon2::default().verify_password(b"pw", &parsed).is_ok());
        let other = Argon2::new(
            Algorithm::Argon2i,
            Version::V0x10,
            argon2::Params::new(64, 3, 1, Some(48)).unwrap(),
        )
        .hash_password(b"other", &SaltString::encode_b64(&[9u8; 16]).unwrap())
        .unwrap()
        .to_string();
        assert!(verify_password(&other, b"other"));
        assert!(!verify_password(&other, b"Other"));
        // Reused memory: a second round gives the same answers.
        assert!(verify_password(&hash, b"pw"));
        assert!(!verify_password(&hash, b"pW"));
        // A hash asking for more memory than ours ever do is refused.
        let greedy = hash.replace("m=19456", "m=4194304");
        assert!(!verify_password(&greedy, b"pw"));
        assert!(!verify_password("", b""));
        assert!(!verify_password(dummy_hash(), b""));
    }

    #[test]
    fn names() {
        assert_eq!(user_name(" Alice.B@x-1_2 ").unwrap(), "alice.b@x-1_2");
        for bad in ["", "  ", "a/b", "a b", "ä", "a:b", &"x".repeat(129)] {
            assert_eq!(invalid(user_name(bad)), "invalid username", "{bad:?}");
        }
    }

    #[test]
    fn debug_hides_the_hash() {
        let u = UserRecord {
            name: "alice".into(),
            password_hash: "$argon2id$secret-hash".into(),
            token: Params::default(),
        };
        let text = format!("{u:?}");
        assert!(
            text.contains("alice") && !text.contains("secret-hash"),
            "{text}"
        );
    }

    #[tokio::test]
    async fn write_read_list_delete() {
        let (_h, svc) = service().await;
        let m = mount("userpass/");
        let token = TokenParams {
            policies: strings(&["Web", "ops", "web"]),
            ttl: 60,
            bound_cidrs: strings(&["10.0.0.0/8"]),
            ..Default::default()
        };
        svc.user_write(write(&m, "Alice", "s3cret", token))
            .await
            .unwrap();
        svc.user_write(write(&m, "bob", "pw", TokenParams::default()))
            .await
            .unwrap();
        let alice = svc.user_read(item(&m, "ALICE ")).await.unwrap();
        assert_eq!(alice.name, "alice");
        let t = alice.token.unwrap();
        assert_eq!(t.policies, ["ops", "web"]);
        assert_eq!((t.ttl, t.bound_cidrs.len()), (60, 1));
        assert_eq!(
            svc.user_list(MountRequest {
                mount: Some(m.clone())
            })
            .await
            .unwrap(),
            ["alice", "bob"]
        );
        // The stored record holds a hash, never the password.
        let raw = svc
            .store
            .barrier
            .get("method/uuid-userpass/user/alice")
            .await
            .unwrap()
            .unwrap();
        let text = String::from_utf8(raw.to_vec()).unwrap();
        assert!(
            text.contains("$argon2id$") && !text.contains("s3cret"),
            "{text}"
        );
        // An update without a password keeps it.
        svc.user_write(write(
            &m,
            "alice",
            "",
            TokenParams {
                policies: strings(&["admin"]),
                ..Default::default()
            },
        ))
        .await
        .unwrap();
        assert_eq!(
            svc.user_read(item(&m, "alice"))
                .await
                .unwrap()
                .token
                .unwrap()
                .policies,
            ["admin"]
        );
        assert!(svc
            .user_login(login(&m, "alice", "s3cret", ""))
            .await
            .is_ok());
        // Another mount is another namespace.
        let other = mount("other/");
        assert!(matches!(
            svc.user_read(item(&other, "alice")).await,
            Err(AuthError::NotFound(_))
        ));
        svc.user_delete(item(&m, "alice")).await.unwrap();
        svc.user_delete(item(&m, "alice")).await.unwrap();
        let e = svc
            .read_user(Request::new(item(&m, "alice")))
            .await
            .unwrap_err();
        assert_eq!(e.code(), tonic::Code::NotFound);
        assert_eq!(
            svc.user_list(MountRequest { mount: Some(m) })
                .await
                .unwrap(),
            ["bob"]
        );
    }

    #[tokio::test]
    async fn bad_writes() {
        let (_h, svc) = service().await;
        let m = mount("userpass/");
        let ok = TokenParams::default();
        assert_eq!(
            invalid(svc.user_write(write(&m, "new", "", ok.clone())).await),
            "missing password"
        );
        assert_eq!(
            invalid(
                svc.user_write(write(&m, "bad/name", "pw", ok.clone()))
                    .await
            ),
            "invalid username"
        );
        let mut both = write(&m, "x", "pw", ok.clone());
        both.password_hash = "$2b$04$abcdefghijklmnopqrstuu5Jn0b0vMHJmXWJt3GUn0xyCKd1yjXoS".into();
        assert!(invalid(svc.user_write(both).await).starts_with("only one of"));
        for bad_hash in [
            "plain",
            "$2x$04$abcdefghijklmnopqrstuu5Jn0b0vMHJmXWJt3GUn0xyCKd1yjXoS",
            "$2b$04$short",
            "$2b$99$abcdefghijklmnopqrstuu5Jn0b0vMHJmXWJt3GUn0xyCKd1yjXoS",
            "$argon2id$v=19$m=8,t=1,p=1$c2FsdHNhbHQ$aGFzaGhhc2g",
        ] {
            let mut w = write(&m, "x", "", ok.clone());
            w.password_hash = bad_hash.into();
            let msg = invalid(svc.user_write(w).await);
            assert!(
                msg.starts_with("password_hash must be a bcrypt hash"),
                "{msg}"
            );
            assert!(!msg.contains(bad_hash));
        }
        let bad_params = TokenParams {
            bound_cidrs: strings(&["10.0.0.0/40"]),
            ..Default::default()
        };
        assert_eq!(
            invalid(svc.user_write(write(&m, "x", "pw", bad_params)).await),
            "invalid CIDR block or IP address \"10.0.0.0/40\""
        );
        let bad_params = TokenParams {
            ttl: -1,
            ..Default::default()
        };
        assert!(svc
            .user_write(write(&m, "x", "pw", bad_params))
            .await
            .is_err());
        let mut no_user = write(&m, "x", "pw", ok.clone());
        no_user.user = None;
        assert_eq!(invalid(svc.user_write(no_user).await), "missing user");
        let mut no_mount = write(&m, "x", "pw", ok);
        no_mount.mount = None;
        assert_eq!(invalid(svc.user_write(no_mount).await), "missing mount");
        assert_eq!(
            invalid(svc.user_read(item(&m, "a b")).await),
            "invalid username"
        );
        assert!(svc
            .user_list(MountRequest { mount: Some(m) })
            .await
            .unwrap()
            .is_empty());
    }

    #[tokio::test]
    async fn login_mints_a_userpass_token() {
        let (h, svc) = service().await;
        let m = Mount {
            default_ttl: 3600,
            ..mount("userpass/")
        };
        let token = TokenParams {
            policies: strings(&["dev"]),
            num_uses: 5,
            ..Default::default()
        };
        svc.user_write(write(&m, "alice", "correct horse", token))
            .await
            .unwrap();
        let made = svc
            .userpass_login(Request::new(login(&m, "Alice", "correct horse", "1.2.3.4")))
            .await
            .unwrap()
            .into_inner();
        assert!(made.token.starts_with("hvs."));
        let e = made.entry.unwrap();
        assert_eq!(e.policies, ["default", "dev"]);
        assert_eq!(e.display_name, "userpass-alice");
        assert_eq!(e.path, "auth/userpass/login/alice");
        assert_eq!(e.meta.get("username").map(String::as_str), Some("alice"));
        assert_eq!(
            (e.ttl, e.num_uses, e.orphan, e.renewable),
            (3600, 5, true, true)
        );
        assert_eq!(e.r#type, "service");
        let looked = h.store.lookup(TokenRef::Token(&made.token)).await.unwrap();
        assert_eq!(looked.accessor, e.accessor);
    }

    #[tokio::test]
    async fn bcrypt_hashes_log_in() {
        let (_h, svc) = service().await;
        let m = mount("userpass/");
        let hash = bcrypt::hash("hunter2", 4).unwrap();
        let mut w = write(&m, "carol", "", TokenParams::default());
        w.password_hash = hash.replacen("$2b$", "$2y$", 1);
        svc.user_write(w).await.unwrap();
        assert!(svc
            .user_login(login(&m, "carol", "hunter2", ""))
            .await
            .is_ok());
        assert_eq!(
            invalid(svc.user_login(login(&m, "carol", "hunter3", "")).await),
            INVALID_LOGIN
        );
    }

    #[tokio::test]
    async fn unknown_user_and_wrong_password_look_alike() {
        let (_h, svc) = service().await;
        let m = mount("userpass/");
        svc.user_write(write(&m, "alice", "pw", TokenParams::default()))
            .await
            .unwrap();
        for (user, pw) in [("alice", "wrong"), ("nobody", "pw"), ("bad name!", "pw")] {
            let s = svc
                .userpass_login(Request::new(login(&m, user, pw, "")))
                .await
                .unwrap_err();
            assert_eq!(
                (s.code(), s.message()),
                (tonic::Code::InvalidArgument, INVALID_LOGIN),
                "{user}"
            );
        }
        assert_eq!(
            invalid(svc.user_login(login(&m, "alice", "", "")).await),
            "missing password"
        );
        let mut no_ctx = login(&m, "alice", "pw", "");
        no_ctx.context = None;
        assert_eq!(
            invalid(svc.user_login(no_ctx).await),
            "missing login context"
        );
    }

    #[tokio::test]
    async fn lockout_after_five_failures() {
        let (h, svc) = service().await;
        let m = mount("userpass/");
        svc.user_write(write(&m, "alice", "pw", TokenParams::default()))
            .await
            .unwrap();
        // A success resets the count.
        for _ in 0..LOCKOUT_THRESHOLD - 1 {
            assert!(svc.user_login(login(&m, "alice", "no", "")).await.is_err());
        }
        assert!(svc.user_login(login(&m, "alice", "pw", "")).await.is_ok());
        for _ in 0..LOCKOUT_THRESHOLD {
            assert_eq!(
                invalid(svc.user_login(login(&m, "alice", "no", "")).await),
                INVALID_LOGIN
            );
        }
        // Locked: even the right password is refused, with a 403.
        let s = svc
            .userpass_login(Request::new(login(&m, "alice", "pw", "")))
            .await
            .unwrap_err();
        assert_eq!(
            (s.code(), s.message()),
            (tonic::Code::PermissionDenied, "permission denied")
        );
        // Other users and mounts are not locked.
        svc.user_write(write(&m, "bob", "pw", TokenParams::default()))
            .await
            .unwrap();
        assert!(svc.user_login(login(&m, "bob", "pw", "")).await.is_ok());
        // Unknown users lock the same way.
        for _ in 0..LOCKOUT_THRESHOLD {
            assert!(svc.user_login(login(&m, "ghost", "x", "")).await.is_err());
        }
        assert!(matches!(
            svc.user_login(login(&m, "ghost", "x", "")).await,
            Err(AuthError::PermissionDenied)
        ));
        h.store.clock.advance(LOCKOUT_DURATION);
        assert!(svc.user_login(login(&m, "alice", "pw", "")).await.is_ok());
    }

    #[tokio::test]
    async fn bound_cidrs_limit_login_and_token() {
        let (h, svc) = service().await;
        let m = mount("userpass/");
        let token = TokenParams {
            bound_cidrs: strings(&["10.0.0.0/8"]),
            ..Default::default()
        };
        svc.user_write(write(&m, "alice", "pw", token))
            .await
            .unwrap();
        for ip in ["", "192.168.0.1"] {
            assert!(matches!(
                svc.user_login(login(&m, "alice", "pw", ip)).await,
                Err(AuthError::PermissionDenied)
            ));
        }
        let made = svc
            .user_login(login(&m, "alice", "pw", "10.1.1.1"))
            .await
            .unwrap();
        assert_eq!(made.entry.unwrap().bound_cidrs, ["10.0.0.0/8"]);
        assert!(h.store.authenticate(&made.token, "10.2.2.2").await.is_ok());
        assert!(h.store.authenticate(&made.token, "11.2.2.2").await.is_err());
    }

    #[tokio::test]
    async fn no_password_in_debug_or_storage() {
        let (h, svc) = service().await;
        let m = mount("userpass/");
        svc.user_write(write(
            &m,
            "alice",
            "plaintext-marker-pw",
            TokenParams::default(),
        ))
        .await
        .unwrap();
        svc.user_login(login(&m, "alice", "plaintext-marker-pw", ""))
            .await
            .unwrap();
        let raw = h.db.namespace("auth").await.unwrap();
        let mut pending = vec![String::new()];
        while let Some(prefix) = pending.pop() {
            for entry in raw.list(&prefix).await.unwrap() {
                let full = format!("{prefix}{entry}");
                if entry.ends_with('/') {
                    pending.push(full);
                    continue;
                }
                let value = raw.get(&full).await.unwrap().unwrap();
                assert!(!full.contains("plaintext-marker"));
                assert!(
                    !value.windows(16).any(|w| w == b"plaintext-marker"),
                    "{full}"
                );
            }
        }
    }
}
