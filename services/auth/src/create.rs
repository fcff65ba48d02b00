//! CreateToken: checks a request against its parent, decides the new token's
//! policies, TTL and name ([`plan`], pure), then writes it.
//!
//! Vault's rules, as `auth/token/create` applies them:
//! * policies are trimmed, lower-cased, deduplicated and sorted; none given
//!   means the parent's as they are; `root` stands alone; otherwise `default`
//!   is added (for a parent without root or sudo, only if the parent has it)
//!   and `no_default_policy` removes it;
//! * a parent without `root` or sudo may only grant policies it holds itself
//!   (`default` aside), and only a root parent may create a root token;
//! * orphans and periodic tokens need root or sudo, a chosen `id` needs root;
//! * the TTL is the period for periodic tokens, else the request's or the
//!   system default (768h), capped by `explicit_max_ttl` and the system max;
//!   a root token asked for no TTL never expires (unless `explicit_max_ttl`);
//! * a parent that has a use limit cannot create tokens;
//! * batch tokens (`type: batch`) cannot have `explicit_max_ttl`, `num_uses`
//!   or `period`, cannot be root tokens and are never renewable; a batch
//!   parent cannot create tokens at all;
//! * a child (not an orphan) inherits its parent's bound CIDRs.

use bulwark_proto::auth::v1::{CreateTokenRequest, TokenEntry};
use zeroize::Zeroizing;

use crate::error::AuthError;
use crate::record::{
    new_accessor, new_token_of, TokenRecord, TokenRef, BATCH_TYPE, SERVICE_PREFIX, SERVICE_TYPE,
};
use crate::store::{accessor_path, child_path, TokenStore, SYSTEM_DEFAULT_TTL, SYSTEM_MAX_TTL};

const DUPLICATE_ID: &str = "cannot create a token with a duplicate ID";

/// The path recorded when the request names none.
const DEFAULT_PATH: &str = "auth/token/create";

/// A newly created token: returned once, never stored.
pub struct Created {
    /// The token itself.
    pub token: Zeroizing<String>,
    /// Its entry (`id` = the token).
    pub entry: TokenEntry,
    /// Adjustments the caller should hear of (capped TTLs).
    pub warnings: Vec<String>,
}

impl std::fmt::Debug for Created {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Created")
            .field("accessor", &self.entry.accessor)
            .field("warnings", &self.warnings)
            .finish_non_exhaustive()
    }
}

/// What the new token will be, before it has a value or an accessor.
#[derive(Debug)]
pub(crate) struct Plan {
    /// The record, with `accessor` and `parent` still empty.
    pub record: TokenRecord,
    pub warnings: Vec<String>,
}

/// The capped-TTL warning, worded as Vault words it.
pub(crate) fn ttl_capped_warning(requested: i64, max: i64) -> String {
    format!(
        "TTL of \"{requested}s\" exceeded the effective max_ttl of \"{max}s\"; \
         TTL value is capped accordingly"
    )
}

/// The capped-period warning, worded as Vault words it.
pub(crate) fn period_capped_warning(requested: i64, max: i64) -> String {
    format!(
        "period of \"{requested}s\" exceeded the effective max_ttl of \"{max}s\"; \
         period value is capped accordingly"
    )
}

/// Trimmed, lower-cased, without empties, deduplicated and sorted.
pub(crate) fn normalize_policies(policies: &[String]) -> Vec<String> {
    let mut out: Vec<String> = policies
        .iter()
        .map(|p| p.trim().to_lowercase())
        .filter(|p| !p.is_empty())
        .collect();
    out.sort();
    out.dedup();
    out
}

/// Vault's display name for tokens created by a token: `token` or
/// `token-<name>`, every character outside `[A-Za-z0-9-]` made `-`, and one
/// trailing `-` trimmed.
pub(crate) fn child_display_name(name: &str) -> String {
    if name.is_empty() {
        return "token".to_string();
    }
    let full: String = "token-"
        .chars()
        .chain(name.chars())
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' {
                c
            } else {
                '-'
            }
        })
        .collect();
    match full.strip_suffix('-') {
        Some(trimmed) => trimmed.to_string(),
        None => full,
    }
}

fn validate_custom_id(id: &str) -> Result<(), AuthError> {
    if id.len() > 256 || id.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(AuthError::invalid(
            "custom token ID must be at most 256 printable characters without spaces",
        ));
    }
    if id.contains('.') && !id.starts_with(SERVICE_PREFIX) {
        return Err(AuthError::invalid(
            "custom token ID cannot have a '.' in the value",
        ));
    }
    Ok(())
}

/// The new token's policies, Vault's way. `privileged`: the parent is root
/// or the caller has sudo (or the system mints the token).
fn policies(
    req: &CreateTokenRequest,
    parent: Option<&TokenRecord>,
    privileged: bool,
) -> Result<Vec<String>, AuthError> {
    let requested = normalize_policies(&req.policies);
    let (mut policies, add_default) = match parent {
        // No policies asked for: the parent's, `default` only if it has it.
        Some(p) if requested.is_empty() => (normalize_policies(&p.policies), false),
        Some(p) if !privileged => {
            let held = normalize_policies(&p.policies);
            if requested
                .iter()
                .any(|r| r != "default" && !held.contains(r))
            {
                return Err(AuthError::invalid(
                    "child policies must be subset of parent",
                ));
            }
            (requested, held.iter().any(|h| h == "default"))
        }
        _ => (requested, true),
    };
    if policies.iter().any(|p| p == "root") {
        // Only a root token can make another; sudo is not enough.
        if parent.is_some_and(|p| !p.is_root()) {
            return Err(AuthError::invalid(
                "root tokens may not be created without parent token being root",
            ));
        }
        return Ok(vec!["root".to_string()]);
    }
    if req.no_default_policy {
        policies.retain(|p| p != "default");
    } else if add_default && !policies.iter().any(|p| p == "default") {
        policies.push("default".to_string());
        policies.sort();
    }
    Ok(policies)
}

/// Checks `req` against `parent` (`None` for system-minted tokens) and
/// decides the new token at `now`.
pub(crate) fn plan(
    req: &CreateTokenRequest,
    parent: Option<&TokenRecord>,
    now: i64,
) -> Result<Plan, AuthError> {
    for (value, name) in [
        (req.ttl, "ttl"),
        (req.explicit_max_ttl, "explicit_max_ttl"),
        (req.period, "period"),
    ] {
        if value < 0 {
            return Err(AuthError::invalid(format!("{name} must be positive")));
        }
    }
    if req.num_uses < 0 {
        return Err(AuthError::invalid("number of uses cannot be negative"));
    }
    let batch = match req.r#type.as_str() {
        "" | SERVICE_TYPE => false,
        BATCH_TYPE => true,
        other => {
            return Err(AuthError::invalid(format!(
                "invalid 'type' value {other:?}; must be \"service\" or \"batch\""
            )))
        }
    };
    if parent.is_some_and(TokenRecord::is_batch) {
        return Err(AuthError::invalid("batch tokens cannot create more tokens"));
    }
    if batch {
        for (value, name) in [
            (req.explicit_max_ttl, "explicit_max_ttl"),
            (req.num_uses, "num_uses"),
            (req.period, "period"),
        ] {
            if value != 0 {
                return Err(AuthError::invalid(format!(
                    "batch tokens cannot have {name:?} set"
                )));
            }
        }
        if !req.id.is_empty() {
            // Vault ignores the id of a batch token; refusing says so.
            return Err(AuthError::invalid("batch tokens cannot have a custom ID"));
        }
    }

    let parent_is_root = parent.is_some_and(TokenRecord::is_root);
    // The system minting a token (a login) may do what root may.
    let privileged = parent.is_none() || parent_is_root || req.parent_has_sudo;
    if parent.is_some_and(|p| p.num_uses > 0) {
        return Err(AuthError::invalid(
            "restricted use token cannot generate child tokens",
        ));
    }
    if req.no_parent && !privileged {
        return Err(AuthError::invalid(
            "root or sudo privileges required to create orphan token",
        ));
    }
    if req.period > 0 && !privileged {
        return Err(AuthError::invalid(
            "root or sudo privileges required to create periodic token",
        ));
    }
    if !req.id.is_empty() {
        if !parent_is_root {
            return Err(AuthError::invalid(
                "root privileges required to specify token id",
            ));
        }
        validate_custom_id(&req.id)?;
    }

    let policies = policies(req, parent, privileged)?;
    let is_root = policies == ["root"];
    if batch && is_root {
        return Err(AuthError::invalid("batch tokens cannot be root tokens"));
    }

    // TTL, as Vault's CalculateTTL: the max is the system's, or the explicit
    // max if lower; a period is capped by it and is the TTL.
    let mut warnings = Vec::new();
    let explicit = req.explicit_max_ttl;
    let max = if explicit > 0 {
        explicit.min(SYSTEM_MAX_TTL)
    } else {
        SYSTEM_MAX_TTL
    };
    let mut period = req.period;
    if period > max {
        warnings.push(period_capped_warning(period, max));
        period = max;
    }
    let ttl = if period > 0 {
        period
    } else if req.ttl == 0 && is_root {
        // A root token asked for no TTL never expires, unless an explicit
        // max says otherwise.
        explicit
    } else {
        let wanted = if req.ttl > 0 {
            req.ttl
        } else {
            SYSTEM_DEFAULT_TTL
        };
        if wanted > max {
            warnings.push(ttl_capped_warning(wanted, max));
            max
        } else {
            wanted
        }
    };
    if ttl == 0 && parent.is_some_and(|p| p.expire_time != 0) {
        return Err(AuthError::invalid(
            "expiring root tokens cannot create non-expiring root tokens",
        ));
    }

    let display_name = match parent {
        Some(_) => child_display_name(&req.display_name),
        None => req.display_name.clone(),
    };
    let orphan = req.no_parent || parent.is_none();
    // A child is bound where its parent is (so a bound token cannot escape
    // through a child); a token that never expires is bound nowhere, as in
    // Vault.
    let bound_cidrs = match parent {
        Some(p) if !orphan && ttl != 0 => p.bound_cidrs.clone(),
        _ => Vec::new(),
    };
    let record = TokenRecord {
        accessor: String::new(),
        policies,
        meta: req
            .meta
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect(),
        display_name,
        path: if req.path.is_empty() {
            DEFAULT_PATH.to_string()
        } else {
            req.path.clone()
        },
        creation_time: now,
        creation_ttl: ttl,
        expire_time: if ttl == 0 { 0 } else { now + ttl },
        explicit_max_ttl: explicit,
        period,
        num_uses: req.num_uses,
        orphan,
        // A token that never expires has nothing to renew; nor has a batch
        // token anything to renew.
        renewable: req.renewable.unwrap_or(true) && ttl != 0 && !batch,
        token_type: if batch { BATCH_TYPE } else { SERVICE_TYPE }.to_string(),
        parent: None,
        last_renewal_time: 0,
        used_up: false,
        max_ttl: 0,
        bound_cidrs,
    };
    Ok(Plan { record, warnings })
}

impl TokenStore {
    /// Creates a token under `req.parent_token` (or, when that is empty, a
    /// system-minted orphan) and returns it, the only time it is ever shown.
    pub async fn create(&self, req: &CreateTokenRequest) -> Result<Created, AuthError> {
        let parent = if req.parent_token.is_empty() {
            None
        } else {
            Some(
                self.find(TokenRef::Token(&req.parent_token))
                    .await?
                    .ok_or(AuthError::PermissionDenied)?,
            )
        };
        let Plan {
            mut record,
            warnings,
        } = plan(req, parent.as_ref().map(|p| &p.record), self.now())?;
        if !record.orphan {
            record.parent = parent.as_ref().map(|p| p.hash.clone());
        }
        let custom = (!req.id.is_empty()).then_some(req.id.as_str());
        self.issue(record, custom, warnings).await
    }

    /// Writes a planned token (`record`, its parent set, accessor still
    /// empty) under a fresh value of its type, or under `custom`, and returns
    /// it. Every token, created or minted by a login, is written here.
    pub(crate) async fn issue(
        &self,
        record: TokenRecord,
        custom: Option<&str>,
        warnings: Vec<String>,
    ) -> Result<Created, AuthError> {
        // A random token colliding is as good as impossible; a chosen one is
        // refused if it exists.
        for _ in 0..3 {
            let token = Zeroizing::new(match custom {
                Some(id) => id.to_string(),
                None => new_token_of(&record.token_type),
            });
            let hash = self.hash(&token).await?;
            if self.read(&hash).await?.is_some() {
                if custom.is_some() {
                    return Err(AuthError::invalid(DUPLICATE_ID));
                }
                continue;
            }
            if let Some(stored) = self.insert(&hash, record.clone()).await? {
                // The parent may have been revoked while this token was being
                // written: then the token goes too (revocation lists the links
                // before it deletes, and the link was written first).
                if let Some(p) = &stored.parent {
                    if self.read(p).await?.is_none() {
                        self.revoke_tree(&hash).await?;
                        return Err(AuthError::PermissionDenied);
                    }
                }
                let entry = stored.entry(&token, self.now());
                return Ok(Created {
                    token,
                    entry,
                    warnings,
                });
            }
            if custom.is_some() {
                return Err(AuthError::invalid(DUPLICATE_ID));
            }
        }
        Err(AuthError::Internal("token values collided"))
    }

    /// Writes a new token at `hash`: a fresh accessor, the link from its
    /// parent, then the record (create-only). `None` if a record exists at
    /// `hash` already (everything written here is undone).
    pub(crate) async fn insert(
        &self,
        hash: &str,
        mut record: TokenRecord,
    ) -> Result<Option<TokenRecord>, AuthError> {
        let mut accessor = None;
        for _ in 0..5 {
            let candidate = new_accessor();
            if self
                .barrier
                .create(&accessor_path(&candidate), hash.as_bytes())
                .await?
            {
                accessor = Some(candidate);
                break;
            }
        }
        record.accessor = accessor.ok_or(AuthError::Corrupt("accessor"))?;
        let link = match &record.parent {
            Some(p) => {
                let path = child_path(p, hash);
                self.barrier.create(&path, b"1").await?.then_some(path)
            }
            None => None,
        };
        if self.create_record(hash, &record).await? {
            return Ok(Some(record));
        }
        self.barrier
            .delete(&accessor_path(&record.accessor))
            .await?;
        if let Some(path) = link {
            self.barrier.delete(&path).await?;
        }
        Ok(None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_util::{harness, Harness};

    const NOW: i64 = 1_700_000_000;

    /// A parent with `policies`; root parents never expire, others in an hour.
    fn parent(policies: &[&str]) -> TokenRecord {
        let ttl = if policies == ["root"] { 0 } else { 3600 };
        TokenRecord {
            accessor: "acc".into(),
            policies: policies.iter().map(|p| p.to_string()).collect(),
            meta: Default::default(),
            display_name: "token".into(),
            path: DEFAULT_PATH.into(),
            creation_time: NOW,
            creation_ttl: ttl,
            expire_time: if ttl == 0 { 0 } else { NOW + ttl },
            explicit_max_ttl: 0,
            period: 0,
            num_uses: 0,
            orphan: true,
            renewable: true,
            token_type: SERVICE_TYPE.into(),
            parent: None,
            last_renewal_time: 0,
            used_up: false,
            max_ttl: 0,
            bound_cidrs: Vec::new(),
        }
    }

    fn req(policies: &[&str]) -> CreateTokenRequest {
        CreateTokenRequest {
            parent_token: "p".into(),
            policies: policies.iter().map(|p| p.to_string()).collect(),
            ..Default::default()
        }
    }

    fn policies_of(r: &CreateTokenRequest, p: Option<&TokenRecord>) -> Result<Vec<String>, String> {
        plan(r, p, NOW)
            .map(|p| p.record.policies)
            .map_err(|e| e.to_string())
    }

    #[test]
    fn policies() {
        let root = parent(&["root"]);
        let dev = parent(&["default", "dev", "ops"]);
        let dev_only = parent(&["dev"]);
        let ok = |v: &[&str]| Ok(v.iter().map(|s| s.to_string()).collect::<Vec<_>>());
        let subset = Err("child policies must be subset of parent".to_string());
        // (request, no_default_policy, sudo, parent, expected)
        type Case<'a> = (
            &'a [&'a str],
            bool,
            bool,
            Option<&'a TokenRecord>,
            Result<Vec<String>, String>,
        );
        let cases: Vec<Case> = vec![
            (
                &[" Dev", "ops ", "dev", ""],
                false,
                false,
                Some(&dev),
                ok(&["default", "dev", "ops"]),
            ),
            (&["dev"], true, false, Some(&dev), ok(&["dev"])),
            (
                &[],
                false,
                false,
                Some(&dev),
                ok(&["default", "dev", "ops"]),
            ),
            (&[], true, false, Some(&dev), ok(&["dev", "ops"])),
            (&["default"], true, false, Some(&dev), ok(&[])),
            (&["admin"], false, false, Some(&dev), subset.clone()),
            (&["dev", "admin"], false, false, Some(&dev), subset),
            (
                &["admin"],
                false,
                true,
                Some(&dev),
                ok(&["admin", "default"]),
            ),
            (
                &["default"],
                false,
                false,
                Some(&dev_only),
                ok(&["default"]),
            ),
            // A parent without `default` passes it on only when asked.
            (&["dev"], false, false, Some(&dev_only), ok(&["dev"])),
            (&[], false, false, Some(&dev_only), ok(&["dev"])),
            (&[], false, false, Some(&root), ok(&["root"])),
            (&["root", "dev"], false, false, Some(&root), ok(&["root"])),
            (
                &["admin"],
                false,
                false,
                Some(&root),
                ok(&["admin", "default"]),
            ),
            (
                &["root"],
                false,
                true,
                Some(&dev),
                Err("root tokens may not be created without parent token being root".into()),
            ),
            (&[], false, false, None, ok(&["default"])),
            (&["web"], true, false, None, ok(&["web"])),
        ];
        for (policies, no_default, sudo, p, expected) in cases {
            let mut r = req(policies);
            r.no_default_policy = no_default;
            r.parent_has_sudo = sudo;
            assert_eq!(
                policies_of(&r, p),
                expected,
                "{policies:?} {no_default} {sudo}"
            );
        }
    }

    #[test]
    fn privileges() {
        let dev = parent(&["dev"]);
        let root = parent(&["root"]);
        let check = |r: CreateTokenRequest, p: &TokenRecord| {
            plan(&r, Some(p), NOW)
                .map(|_| ())
                .map_err(|e| e.to_string())
        };
        let orphan = CreateTokenRequest {
            no_parent: true,
            ..req(&[])
        };
        assert_eq!(
            check(orphan.clone(), &dev),
            Err("root or sudo privileges required to create orphan token".into())
        );
        assert_eq!(
            check(
                CreateTokenRequest {
                    parent_has_sudo: true,
                    ..orphan.clone()
                },
                &dev
            ),
            Ok(())
        );
        assert_eq!(check(orphan, &root), Ok(()));
        let periodic = CreateTokenRequest {
            period: 60,
            ..req(&[])
        };
        assert_eq!(
            check(periodic.clone(), &dev),
            Err("root or sudo privileges required to create periodic token".into())
        );
        assert_eq!(
            check(
                CreateTokenRequest {
                    parent_has_sudo: true,
                    ..periodic
                },
                &dev
            ),
            Ok(())
        );
        let id = CreateTokenRequest {
            id: "mine".into(),
            ..req(&[])
        };
        assert_eq!(
            check(
                CreateTokenRequest {
                    parent_has_sudo: true,
                    ..id.clone()
                },
                &dev
            ),
            Err("root privileges required to specify token id".into())
        );
        assert_eq!(check(id, &root), Ok(()));
        for (bad, msg) in [
            ("a.b", "custom token ID cannot have a '.' in the value"),
            (
                "has space",
                "custom token ID must be at most 256 printable characters without spaces",
            ),
        ] {
            let r = CreateTokenRequest {
                id: bad.into(),
                ..req(&[])
            };
            assert_eq!(check(r, &root), Err(msg.into()));
        }
        let r = CreateTokenRequest {
            id: "hvs.custom".into(),
            ..req(&[])
        };
        assert_eq!(check(r, &root), Ok(()));
        let mut limited = parent(&["root"]);
        limited.num_uses = 3;
        assert_eq!(
            check(req(&[]), &limited),
            Err("restricted use token cannot generate child tokens".into())
        );
        for r in [
            CreateTokenRequest {
                ttl: -1,
                ..req(&[])
            },
            CreateTokenRequest {
                explicit_max_ttl: -1,
                ..req(&[])
            },
            CreateTokenRequest {
                period: -1,
                ..req(&[])
            },
            CreateTokenRequest {
                num_uses: -1,
                ..req(&[])
            },
            CreateTokenRequest {
                r#type: "other".into(),
                ..req(&[])
            },
        ] {
            assert!(check(r, &root).is_err());
        }
        let batch = |adjust: fn(&mut CreateTokenRequest)| {
            let mut r = CreateTokenRequest {
                r#type: "batch".into(),
                ..req(&["dev"])
            };
            adjust(&mut r);
            r
        };
        assert_eq!(check(batch(|_| {}), &root), Ok(()));
        assert_eq!(check(batch(|_| {}), &dev), Ok(()));
        for (adjust, msg) in [
            (
                (|r| r.explicit_max_ttl = 60) as fn(&mut CreateTokenRequest),
                "batch tokens cannot have \"explicit_max_ttl\" set",
            ),
            (
                |r| r.num_uses = 2,
                "batch tokens cannot have \"num_uses\" set",
            ),
            (|r| r.period = 60, "batch tokens cannot have \"period\" set"),
            (
                |r| r.id = "custom".into(),
                "batch tokens cannot have a custom ID",
            ),
            (
                |r| r.policies = vec!["root".into()],
                "batch tokens cannot be root tokens",
            ),
            (|r| r.policies.clear(), "batch tokens cannot be root tokens"),
        ] {
            assert_eq!(check(batch(adjust), &root), Err(msg.into()));
        }
        let mut batch_parent = parent(&["dev"]);
        batch_parent.token_type = BATCH_TYPE.into();
        assert_eq!(
            check(req(&["dev"]), &batch_parent),
            Err("batch tokens cannot create more tokens".into())
        );
        assert_eq!(
            check(
                CreateTokenRequest {
                    r#type: "service".into(),
                    ..req(&[])
                },
                &root
            ),
            Ok(())
        );
    }

    #[test]
    fn ttls() {
        let dev = parent(&["dev"]);
        let root = parent(&["root"]);
        // (ttl, explicit_max_ttl, period, parent, expected ttl, warned)
        let cases = [
            (0, 0, 0, &dev, SYSTEM_DEFAULT_TTL, false),
            (3600, 0, 0, &dev, 3600, false),
            (3600, 60, 0, &dev, 60, true),
            (0, 60, 0, &dev, 60, true),
            (SYSTEM_MAX_TTL + 1, 0, 0, &dev, SYSTEM_MAX_TTL, true),
            (0, 0, 0, &root, 0, false),
            (0, 120, 0, &root, 120, false),
            (30, 0, 0, &root, 30, false),
        ];
        for (ttl, explicit_max_ttl, period, p, expected, warned) in cases {
            let r = CreateTokenRequest {
                ttl,
                explicit_max_ttl,
                period,
                parent_has_sudo: true,
                ..req(if p.is_root() { &[] } else { &["dev"] })
            };
            let plan = plan(&r, Some(p), NOW).unwrap();
            assert_eq!(
                plan.record.creation_ttl, expected,
                "{ttl} {explicit_max_ttl} {period}"
            );
            assert_eq!(
                plan.record.expire_time,
                if expected == 0 { 0 } else { NOW + expected }
            );
            assert_eq!(!plan.warnings.is_empty(), warned, "{:?}", plan.warnings);
            assert_eq!(plan.record.renewable, expected != 0);
        }
        // Periodic: the period is the TTL, whatever the ttl asked for.
        let r = CreateTokenRequest {
            ttl: 10,
            period: 600,
            parent_has_sudo: true,
            ..req(&["dev"])
        };
        let p = plan(&r, Some(&dev), NOW).unwrap().record;
        assert_eq!((p.creation_ttl, p.period), (600, 600));
        let r = CreateTokenRequest {
            period: SYSTEM_MAX_TTL * 2,
            ..req(&[])
        };
        let p = plan(&r, Some(&root), NOW).unwrap();
        assert_eq!(p.record.period, SYSTEM_MAX_TTL);
        assert_eq!(p.warnings.len(), 1);
        let r = CreateTokenRequest {
            period: 600,
            explicit_max_ttl: 60,
            ..req(&[])
        };
        let p = plan(&r, Some(&root), NOW).unwrap();
        assert_eq!((p.record.period, p.record.creation_ttl), (60, 60));
        // An expiring root token cannot make one that never expires.
        let mut expiring_root = parent(&["root"]);
        expiring_root.expire_time = NOW + 60;
        let err = plan(&req(&[]), Some(&expiring_root), NOW).unwrap_err();
        assert_eq!(
            err.to_string(),
            "expiring root tokens cannot create non-expiring root tokens"
        );
        let r = CreateTokenRequest {
            ttl: 30,
            ..req(&[])
        };
        assert_eq!(
            plan(&r, Some(&expiring_root), NOW)
                .unwrap()
                .record
                .creation_ttl,
            30
        );
        assert_eq!(
            ttl_capped_warning(3600, 60),
            "TTL of \"3600s\" exceeded the effective max_ttl of \"60s\"; TTL value is capped accordingly"
        );
    }

    #[test]
    fn names_and_flags() {
        for (given, expected) in [
            ("", "token"),
            ("web", "token-web"),
            ("my app!", "token-my-app"),
            ("my  app", "token-my--app"),
            ("a__b--c", "token-a--b--c"),
            ("ü", "token-"),
        ] {
            assert_eq!(child_display_name(given), expected, "{given:?}");
        }
        let dev = parent(&["dev"]);
        let r = CreateTokenRequest {
            display_name: "web".into(),
            renewable: Some(false),
            ..req(&[])
        };
        let p = plan(&r, Some(&dev), NOW).unwrap().record;
        assert_eq!(
            (p.display_name.as_str(), p.renewable, p.orphan),
            ("token-web", false, false)
        );
        assert_eq!(p.path, DEFAULT_PATH);
        let r = CreateTokenRequest {
            parent_token: String::new(),
            display_name: "userpass-alice".into(),
            path: "auth/userpass/login/alice".into(),
            ..Default::default()
        };
        let p = plan(&r, None, NOW).unwrap().record;
        assert_eq!(p.display_name, "userpass-alice");
        assert_eq!(p.path, "auth/userpass/login/alice");
        assert!(p.orphan && p.renewable);
    }

    #[tokio::test]
    async fn create_with_ttl_and_lookup() {
        let Harness { store, root, .. } = harness().await;
        let now = store.now();
        let created = store
            .create(&CreateTokenRequest {
                parent_token: root.clone(),
                policies: vec!["Dev".into(), "ops".into()],
                meta: [("owner".to_string(), "alice".to_string())].into(),
                ttl: 3600,
                display_name: "web".into(),
                num_uses: 5,
                ..Default::default()
            })
            .await
            .unwrap();
        assert!(created.token.starts_with("hvs."));
        assert_eq!(created.token.len(), 28);
        assert_eq!(created.entry.id, created.token.as_str());
        assert!(created.warnings.is_empty());
        let e = store.lookup(TokenRef::Token(&created.token)).await.unwrap();
        assert_eq!(e.id, created.token.as_str());
        assert_eq!(e.accessor.len(), 24);
        assert_eq!(e.policies, ["default", "dev", "ops"]);
        assert_eq!(e.meta.get("owner").map(String::as_str), Some("alice"));
        assert_eq!(e.display_name, "token-web");
        assert_eq!(e.path, "auth/token/create");
        assert_eq!(e.creation_ttl, 3600);
        assert!((now..=now + 1).contains(&e.creation_time));
        assert_eq!(e.expire_time, e.creation_time + 3600);
        assert!((3598..=3600).contains(&e.ttl));
        assert_eq!(e.issue_time, e.creation_time);
        assert_eq!(e.num_uses, 5);
        assert!(!e.orphan && e.renewable);
        assert_eq!(e.r#type, "service");
        assert_eq!(e.last_renewal_time, 0);
        // The same through the accessor, without the id.
        let a = store.lookup(TokenRef::Accessor(&e.accessor)).await.unwrap();
        assert_eq!(
            a,
            TokenEntry {
                id: String::new(),
                ..e
            }
        );
    }

    #[tokio::test]
    async fn default_policy_added_or_not() {
        let Harness { store, root, .. } = harness().await;
        let mk = |no_default_policy| CreateTokenRequest {
            parent_token: root.clone(),
            policies: vec!["dev".into()],
            no_default_policy,
            ..Default::default()
        };
        assert_eq!(
            store.create(&mk(false)).await.unwrap().entry.policies,
            ["default", "dev"]
        );
        assert_eq!(
            store.create(&mk(true)).await.unwrap().entry.policies,
            ["dev"]
        );
        // A root child inherits root alone, without default, and never expires.
        let child = store
            .create(&CreateTokenRequest {
                parent_token: root.clone(),
                ..Default::default()
            })
            .await
            .unwrap();
        assert_eq!(child.entry.policies, ["root"]);
        assert_eq!(
            (
                child.entry.ttl,
                child.entry.expire_time,
                child.entry.renewable
            ),
            (0, 0, false)
        );
    }

    #[tokio::test]
    async fn subset_rule() {
        let Harness { store, root, .. } = harness().await;
        let dev = store
            .create(&CreateTokenRequest {
                parent_token: root.clone(),
                policies: vec!["dev".into(), "ops".into()],
                ..Default::default()
            })
            .await
            .unwrap();
        let child = |policies: &[&str], parent_has_sudo| CreateTokenRequest {
            parent_token: dev.token.to_string(),
            policies: policies.iter().map(|p| p.to_string()).collect(),
            parent_has_sudo,
            ..Default::default()
        };
        let ok = store
            .create(&child(&["ops", "default"], false))
            .await
            .unwrap();
        assert_eq!(ok.entry.policies, ["default", "ops"]);
        let inherited = store.create(&child(&[], false)).await.unwrap();
        assert_eq!(inherited.entry.policies, ["default", "dev", "ops"]);
        let err = store.create(&child(&["admin"], false)).await.unwrap_err();
        assert_eq!(err.to_string(), "child policies must be subset of parent");
        assert_eq!(
            tonic::Status::from(err).code(),
            tonic::Code::InvalidArgument
        );
        let sudo = store.create(&child(&["admin"], true)).await.unwrap();
        assert_eq!(sudo.entry.policies, ["admin", "default"]);
        assert!(store.create(&child(&["root"], true)).await.is_err());
    }

    #[tokio::test]
    async fn orphan_needs_sudo() {
        let Harness { store, root, .. } = harness().await;
        let dev = store
            .create(&CreateTokenRequest {
                parent_token: root.clone(),
                policies: vec!["dev".into()],
                ..Default::default()
            })
            .await
            .unwrap();
        let orphan = |parent_has_sudo| CreateTokenRequest {
            parent_token: dev.token.to_string(),
            no_parent: true,
            parent_has_sudo,
            ..Default::default()
        };
        let err = store.create(&orphan(false)).await.unwrap_err();
        assert_eq!(
            err.to_string(),
            "root or sudo privileges required to create orphan token"
        );
        let made = store.create(&orphan(true)).await.unwrap();
        assert!(made.entry.orphan);
        // A system-minted token is always an orphan.
        let login = store
            .create(&CreateTokenRequest {
                display_name: "userpass-alice".into(),
                policies: vec!["dev".into()],
                ..Default::default()
            })
            .await
            .unwrap();
        assert!(login.entry.orphan);
        assert_eq!(login.entry.display_name, "userpass-alice");
    }

    #[tokio::test]
    async fn parent_must_be_valid() {
        let Harness { store, root, .. } = harness().await;
        let err = store
            .create(&CreateTokenRequest {
                parent_token: "hvs.nope".into(),
                ..Default::default()
            })
            .await
            .unwrap_err();
        assert!(matches!(err, AuthError::PermissionDenied));
        let limited = store
            .create(&CreateTokenRequest {
                parent_token: root.clone(),
                num_uses: 3,
                ..Default::default()
            })
            .await
            .unwrap();
        let err = store
            .create(&CreateTokenRequest {
                parent_token: limited.token.to_string(),
                ..Default::default()
            })
            .await
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            "restricted use token cannot generate child tokens"
        );
    }

    #[tokio::test]
    async fn batch_tokens() {
        let Harness { store, root, .. } = harness().await;
        let parent = store
            .create(&CreateTokenRequest {
                parent_token: root.clone(),
                policies: vec!["dev".into()],
                ..Default::default()
            })
            .await
            .unwrap();
        let batch = store
            .create(&CreateTokenRequest {
                parent_token: parent.token.to_string(),
                policies: vec!["dev".into()],
                ttl: 60,
                r#type: "batch".into(),
                ..Default::default()
            })
            .await
            .unwrap();
        assert!(batch.token.starts_with("hvb."));
        let e = &batch.entry;
        assert_eq!(
            (
                e.accessor.as_str(),
                e.r#type.as_str(),
                e.renewable,
                e.orphan
            ),
            ("", "batch", false, false)
        );
        assert_eq!(e.ttl, 60);
        // Usable, looked up by value (never by an accessor), not listed.
        let auth = store.authenticate(&batch.token, "").await.unwrap();
        assert_eq!((auth.accessor.as_str(), auth.policies.len()), ("", 2));
        assert_eq!(
            store
                .lookup(TokenRef::Token(&batch.token))
                .await
                .unwrap()
                .accessor,
            ""
        );
        let hash = store.hash(&batch.token).await.unwrap();
        let internal = store.read(&hash).await.unwrap().unwrap().accessor;
        assert!(matches!(
            store.lookup(TokenRef::Accessor(&internal)).await,
            Err(AuthError::InvalidAccessor)
        ));
        assert!(!store.list_accessors().await.unwrap().contains(&internal));
        // Not renewable, not revocable by itself, no children.
        let e = store
            .renew(TokenRef::Token(&batch.token), 0)
            .await
            .unwrap_err();
        assert_eq!(
            tonic::Status::from(e).message(),
            "batch tokens cannot be renewed"
        );
        let e = store
            .revoke(TokenRef::Token(&batch.token), false)
            .await
            .unwrap_err();
        let s = tonic::Status::from(e);
        assert_eq!(
            (s.code(), s.message()),
            (
                tonic::Code::InvalidArgument,
                "batch tokens cannot be revoked"
            )
        );
        assert!(store
            .revoke(TokenRef::Token(&batch.token), true)
            .await
            .is_err());
        assert!(store
            .revoke(TokenRef::Accessor(&internal), false)
            .await
            .unwrap()
            .is_empty());
        let e = store
            .create(&CreateTokenRequest {
                parent_token: batch.token.to_string(),
                ..Default::default()
            })
            .await
            .unwrap_err();
        assert_eq!(e.to_string(), "batch tokens cannot create more tokens");
        assert!(store.authenticate(&batch.token, "").await.is_ok());
        // It goes with its parent, announced.
        let (_, mut events) = store.subscribe_revocations();
        let revoked = store
            .revoke(TokenRef::Token(&parent.token), false)
            .await
            .unwrap();
        assert!(revoked.contains(&internal));
        assert!(events.recv().await.unwrap().accessors.contains(&internal));
        assert!(store.authenticate(&batch.token, "").await.is_err());
        // An orphan batch token expires at its TTL.
        let orphan = store
            .create(&CreateTokenRequest {
                parent_token: root.clone(),
                policies: vec!["dev".into()],
                ttl: 30,
                no_parent: true,
                r#type: "batch".into(),
                ..Default::default()
            })
            .await
            .unwrap();
        assert!(orphan.entry.orphan);
        store.clock.advance(30);
        assert!(store.authenticate(&orphan.token, "").await.is_err());
        assert_eq!(store.sweep().await.unwrap(), 0);
    }

    #[tokio::test]
    async fn custom_id_only_from_root() {
        let Harness { store, root, .. } = harness().await;
        let made = store
            .create(&CreateTokenRequest {
                parent_token: root.clone(),
                id: "my-token".into(),
                policies: vec!["dev".into()],
                ..Default::default()
            })
            .await
            .unwrap();
        assert_eq!(made.token.as_str(), "my-token");
        assert_eq!(
            store.authenticate("my-token", "").await.unwrap().policies,
            ["default", "dev"]
        );
        // Taken.
        let again = store
            .create(&CreateTokenRequest {
                parent_token: root.clone(),
                id: "my-token".into(),
                ..Default::default()
            })
            .await
            .unwrap_err();
        assert_eq!(again.to_string(), DUPLICATE_ID);
        // Only a root parent may choose, even with sudo.
        let err = store
            .create(&CreateTokenRequest {
                parent_token: made.token.to_string(),
                parent_has_sudo: true,
                id: "other".into(),
                ..Default::default()
            })
            .await
            .unwrap_err();
        assert!(matches!(err, AuthError::InvalidRequest(_)));
        let err = store
            .create(&CreateTokenRequest {
                id: "system".into(),
                ..Default::default()
            })
            .await
            .unwrap_err();
        assert!(matches!(err, AuthError::InvalidRequest(_)));
    }
}
