//! The registry's behaviour, RPC by RPC, with a test engine and the store's
//! test clock; manager passes are run by hand (`expire_due`).

use std::sync::Arc;

use bulwark_proto::auth::v1::leases_server::Leases;
use bulwark_proto::auth::v1::{
    CountLeasesRequest, LeaseEmpty, LeaseRequest, ListLeasesRequest, RegisterLeaseRequest,
    RenewLeaseRequest, RevokeLeaseRequest, RevokePrefixRequest,
};
use bulwark_shared::barrier::Barrier;
use bulwark_shared::keyring::Keyring;
use bulwark_shared::storage::Database;
use tonic::Request;
use zeroize::Zeroizing;

use super::engine::test_engine::TestEngine;
use super::record::{index_path, lease_hash, owner_prefix, record_path};
use super::*;
use crate::record::TokenRef;
use crate::store::token_path;
use crate::test_util::{create, harness, Harness};

pub(crate) struct Fixture {
    pub db: Database,
    pub store: Arc<TokenStore>,
    pub root: String,
    pub engine: Arc<TestEngine>,
    pub reg: Arc<LeaseRegistry>,
}

pub(crate) async fn fixture() -> Fixture {
    let Harness { db, store, root } = harness().await;
    let engine = Arc::new(TestEngine::default());
    let reg = Arc::new(LeaseRegistry::new(
        store.clone(),
        Engines::new(engine.clone()),
    ));
    Fixture {
        db,
        store,
        root,
        engine,
        reg,
    }
}

pub(crate) fn lease_req(token: &str, path: &str, ttl: i64, max_ttl: i64) -> RegisterLeaseRequest {
    RegisterLeaseRequest {
        path: path.to_string(),
        client_token: token.to_string(),
        ttl,
        max_ttl,
        renewable: true,
        engine: DYNAMIC_DB.into(),
        engine_mount: "mount-uuid".into(),
        revoke_data: format!("data:{path}:{ttl}").into_bytes(),
    }
}

/// One manager pass, lock held.
async fn pass(reg: &LeaseRegistry) -> usize {
    reg.expire_due(&|| true).await.unwrap()
}

fn is_invalid_lease(r: Result<impl std::fmt::Debug, AuthError>) -> bool {
    matches!(r, Err(AuthError::InvalidLease))
}

async fn stored(store: &TokenStore, id: &str) -> Option<LeaseRecord> {
    store.read_lease(&lease_hash(id)).await.unwrap()
}

#[tokio::test]
async fn register_lookup_and_renew_capped_by_max() {
    let Fixture {
        store,
        root,
        engine,
        reg,
        ..
    } = fixture().await;
    let issued = reg
        .register(&lease_req(&root, "database/creds/app", 60, 100))
        .await
        .unwrap();
    let (path, random) = issued.id.rsplit_once('/').unwrap();
    assert_eq!(path, "database/creds/app");
    assert_eq!(random.len(), 24);
    assert!(random.bytes().all(|b| b.is_ascii_alphanumeric()));
    let t0 = issued.issue_time;
    assert_eq!(
        (issued.expire_time, issued.ttl, issued.last_renewal),
        (t0 + 60, 60, 0)
    );
    assert!(issued.renewable);
    assert_eq!(reg.lookup(&issued.id).await.unwrap(), issued);

    store.clock.advance(30);
    assert_eq!(reg.lookup(&issued.id).await.unwrap().ttl, 30);
    // Increment 0: the original TTL, from now.
    let renewed = reg.renew(&issued.id, 0).await.unwrap();
    assert_eq!(
        (renewed.expire_time, renewed.ttl, renewed.last_renewal),
        (t0 + 90, 60, t0 + 30)
    );
    assert_eq!(renewed.issue_time, t0);
    let data = b"data:database/creds/app:60".to_vec();
    assert_eq!(
        engine.renewed.lock().unwrap().clone(),
        [(data.clone(), t0 + 90)]
    );
    // Never past the max.
    let capped = reg.renew(&issued.id, 1000).await.unwrap();
    assert_eq!((capped.expire_time, capped.ttl), (t0 + 100, 70));
    // A shorter increment shortens it (as in Vault).
    let short = reg.renew(&issued.id, 5).await.unwrap();
    assert_eq!(short.expire_time, t0 + 35);
    assert!(matches!(
        reg.renew(&issued.id, -1).await,
        Err(AuthError::InvalidRequest(_))
    ));
    // The engine refuses: its error, the lease unchanged.
    engine.set_down(true);
    let e = reg.renew(&issued.id, 50).await.unwrap_err();
    let status = Status::from(e);
    assert_eq!(
        (status.code(), status.message()),
        (tonic::Code::Unavailable, "database unreachable")
    );
    assert_eq!(reg.lookup(&issued.id).await.unwrap().expire_time, t0 + 35);
    engine.set_down(false);
    // Expired: invalid, for lookups and renewals alike.
    store.clock.advance(5);
    assert!(is_invalid_lease(reg.lookup(&issued.id).await));
    assert!(is_invalid_lease(reg.renew(&issued.id, 0).await));
}

#[tokio::test]
async fn registration_rules() {
    let Fixture {
        store, root, reg, ..
    } = fixture().await;
    // Unknown or expired tokens own nothing.
    assert!(matches!(
        reg.register(&lease_req("hvs.unknown", "db/creds/x", 60, 0))
            .await,
        Err(AuthError::PermissionDenied)
    ));
    assert!(matches!(
        reg.register(&lease_req("", "db/creds/x", 60, 0)).await,
        Err(AuthError::PermissionDenied)
    ));
    let short = create(&store, &root, |r| r.ttl = 5).await;
    store.clock.advance(5);
    assert!(matches!(
        reg.register(&lease_req(&short.token, "db/creds/x", 60, 0))
            .await,
        Err(AuthError::PermissionDenied)
    ));
    for path in ["", "/db", "db/", "db//x", "db/../x", &"a".repeat(513)] {
        assert!(
            matches!(
                reg.register(&lease_req(&root, path, 60, 0)).await,
                Err(AuthError::InvalidRequest(_))
            ),
            "{path}"
        );
    }
    let bad = [
        RegisterLeaseRequest {
            engine: "kv".into(),
            ..lease_req(&root, "db/creds/x", 60, 0)
        },
        RegisterLeaseRequest {
            engine_mount: String::new(),
            ..lease_req(&root, "db/creds/x", 60, 0)
        },
        RegisterLeaseRequest {
            revoke_data: vec![0; MAX_REVOKE_DATA + 1],
            ..lease_req(&root, "db/creds/x", 60, 0)
        },
        lease_req(&root, "db/creds/x", -1, 0),
        lease_req(&root, "db/creds/x", 1, -1),
    ];
    for req in bad {
        assert!(matches!(
            reg.register(&req).await,
            Err(AuthError::InvalidRequest(_))
        ));
    }
    // TTL 0: the system default; never past the max.
    let l = reg
        .register(&lease_req(&root, "db/creds/x", 0, 0))
        .await
        .unwrap();
    assert_eq!(l.ttl, SYSTEM_DEFAULT_TTL);
    let l = reg
        .register(&lease_req(&root, "db/creds/x", 600, 60))
        .await
        .unwrap();
    assert_eq!(l.ttl, 60);
    // A child token's lease.
    let child = create(&store, &root, |_| {}).await;
    assert!(reg
        .register(&lease_req(&child.token, "db/creds/x", 60, 0))
        .await
        .is_ok());
}

#[tokio::test]
async fn not_renewable() {
    let Fixture { root, reg, .. } = fixture().await;
    let l = reg
        .register(&RegisterLeaseRequest {
            renewable: false,
            ..lease_req(&root, "db/creds/x", 60, 0)
        })
        .await
        .unwrap();
    assert!(!l.renewable);
    let e = reg.renew(&l.id, 10).await.unwrap_err();
    assert!(matches!(e, AuthError::NotRenewable));
    assert_eq!(Status::from(e).message(), "lease is not renewable");
    assert!(reg.lookup(&l.id).await.is_ok());
}

#[tokio::test]
async fn invalid_lease_ids() {
    let Fixture { root, reg, .. } = fixture().await;
    let l = reg
        .register(&lease_req(&root, "db/creds/x", 60, 0))
        .await
        .unwrap();
    let unknown = format!("db/creds/x/{}", "A".repeat(24));
    let long = format!("{}/{}", "a".repeat(600), "A".repeat(24));
    let traversal = format!("db/../x/{}", "A".repeat(24));
    let prefix_only = "db/creds/x".to_string();
    let with_slash = format!("{}/", l.id);
    for id in [
        "",
        "x",
        &unknown,
        &long,
        &traversal,
        &prefix_only,
        &with_slash,
    ] {
        let e = reg.lookup(id).await.unwrap_err();
        let s = Status::from(e);
        assert_eq!(
            (s.code(), s.message()),
            (tonic::Code::InvalidArgument, "invalid lease"),
            "{id}"
        );
        assert!(is_invalid_lease(reg.renew(id, 0).await), "{id}");
        // Revoking what does not exist is not an error (as in Vault).
        reg.revoke(id, true).await.unwrap();
    }
    assert!(reg.lookup(&l.id).await.is_ok());
}

#[tokio::test]
async fn revoke_sync_and_async() {
    let Fixture {
        db,
        store,
        root,
        engine,
        reg,
    } = fixture().await;
    let a = reg
        .register(&lease_req(&root, "db/creds/a", 60, 0))
        .await
        .unwrap();
    reg.revoke(&a.id, true).await.unwrap();
    assert_eq!(engine.revoked(), [b"data:db/creds/a:60".to_vec()]);
    assert!(is_invalid_lease(reg.lookup(&a.id).await));
    assert!(stored(&store, &a.id).await.is_none());
    assert!(reg.list("db/creds/a/").await.unwrap().is_empty());
    // Nothing of it is left: record, path index, owner index, queue entry.
    let raw = db.namespace("auth").await.unwrap();
    assert!(raw
        .get(&record_path(&lease_hash(&a.id)))
        .await
        .unwrap()
        .is_none());
    assert!(raw.get(&index_path(&a.id)).await.unwrap().is_none());
    let owner = store.hash(&root).await.unwrap();
    assert!(raw.list(&owner_prefix(&owner)).await.unwrap().is_empty());
    // Again: fine.
    reg.revoke(&a.id, true).await.unwrap();

    // Engine down, sync: UNAVAILABLE with the reason, the lease queued.
    engine.set_down(true);
    let b = reg
        .register(&lease_req(&root, "db/creds/b", 60, 0))
        .await
        .unwrap();
    let s = Status::from(reg.revoke(&b.id, true).await.unwrap_err());
    assert_eq!(
        (s.code(), s.message()),
        (
            tonic::Code::Unavailable,
            "failed to revoke lease: database unreachable"
        )
    );
    assert!(!s.message().contains("data:"));
    let rec = stored(&store, &b.id).await.unwrap();
    assert_eq!(rec.attempts(), 1);
    assert!(is_invalid_lease(reg.lookup(&b.id).await));
    assert!(is_invalid_lease(reg.renew(&b.id, 0).await));
    // Engine down, async: OK, queued.
    let c = reg
        .register(&lease_req(&root, "db/creds/c", 60, 0))
        .await
        .unwrap();
    reg.revoke(&c.id, false).await.unwrap();
    assert!(matches!(
        stored(&store, &c.id).await.unwrap().state,
        LeaseState::Revoking { attempts: 1, .. }
    ));
    assert!(is_invalid_lease(reg.lookup(&c.id).await));
    // Still listed until actually revoked (as Vault).
    assert_eq!(reg.list("db/creds/").await.unwrap(), ["b/", "c/"]);

    // The engine is back: the manager finishes both.
    engine.set_down(false);
    store.clock.advance(1);
    assert_eq!(pass(&reg).await, 2);
    assert!(stored(&store, &b.id).await.is_none());
    assert!(stored(&store, &c.id).await.is_none());
    assert!(reg.list("").await.unwrap().is_empty());
}

#[tokio::test]
async fn expiry_with_a_failing_engine_backs_off_and_never_forgets() {
    let Fixture {
        store,
        root,
        engine,
        reg,
        ..
    } = fixture().await;
    let l = reg
        .register(&lease_req(&root, "db/creds/a", 10, 0))
        .await
        .unwrap();
    let keep = reg
        .register(&lease_req(&root, "db/creds/b", 1000, 0))
        .await
        .unwrap();
    assert_eq!(pass(&reg).await, 0);
    assert_eq!(engine.calls(), 0);
    engine.set_down(true);
    store.clock.advance(10);
    let mut delays = Vec::new();
    let mut calls = 0;
    for attempt in 1..=9u32 {
        assert_eq!(pass(&reg).await, 0);
        calls += 1;
        assert_eq!(engine.calls(), calls, "attempt {attempt}");
        let rec = stored(&store, &l.id).await.expect("never dropped");
        let LeaseState::Revoking { attempts, next_try } = rec.state else {
            panic!("not revoking: {rec:?}");
        };
        assert_eq!(attempts, attempt);
        let delay = next_try - store.now();
        delays.push(delay);
        // Not before its time.
        store.clock.advance(delay - 1);
        assert_eq!(pass(&reg).await, 0);
        assert_eq!(engine.calls(), calls);
        store.clock.advance(1);
    }
    assert_eq!(delays, [1, 2, 4, 8, 16, 32, 60, 60, 60]);
    // Back: revoked on the next try, and gone.
    engine.set_down(false);
    assert_eq!(pass(&reg).await, 1);
    assert!(stored(&store, &l.id).await.is_none());
    assert_eq!(engine.revoked(), [b"data:db/creds/a:10".to_vec()]);
    // The other lease was never touched.
    assert!(reg.lookup(&keep.id).await.is_ok());
}

#[tokio::test]
async fn renewal_moves_the_expiry() {
    let Fixture {
        store,
        root,
        engine,
        reg,
        ..
    } = fixture().await;
    let l = reg
        .register(&lease_req(&root, "db/creds/a", 10, 100))
        .await
        .unwrap();
    assert_eq!(pass(&reg).await, 0);
    store.clock.advance(8);
    reg.renew(&l.id, 20).await.unwrap();
    store.clock.advance(5);
    assert_eq!(pass(&reg).await, 0);
    assert!(reg.lookup(&l.id).await.is_ok());
    store.clock.advance(15);
    assert_eq!(pass(&reg).await, 1);
    assert_eq!(engine.calls(), 1);
}

#[tokio::test]
async fn revoke_prefix_sync_async_and_force() {
    let Fixture {
        store,
        root,
        engine,
        reg,
        ..
    } = fixture().await;
    let mut ids = Vec::new();
    for path in [
        "db/creds/a",
        "db/creds/a",
        "db/creds/a/deeper",
        "db/creds/ab",
        "db/creds/b",
        "db/creds/c",
        "db/creds/c",
    ] {
        ids.push(
            reg.register(&lease_req(&root, path, 60, 0))
                .await
                .unwrap()
                .id,
        );
    }
    assert!(matches!(
        reg.revoke_prefix("", false, true).await,
        Err(AuthError::InvalidRequest(_))
    ));
    // Vault's prefixes are directories: `db/creds/a` is not `db/creds/ab`.
    assert_eq!(
        reg.revoke_prefix("db/creds/a", false, true).await.unwrap(),
        3
    );
    assert_eq!(engine.revoked().len(), 3);
    assert!(reg.lookup(&ids[3]).await.is_ok());
    assert_eq!(reg.list("db/creds/").await.unwrap(), ["ab/", "b/", "c/"]);
    // A prefix that is a whole lease id revokes that lease.
    assert_eq!(reg.revoke_prefix(&ids[3], false, true).await.unwrap(), 1);
    assert!(is_invalid_lease(reg.lookup(&ids[3]).await));
    assert_eq!(
        reg.revoke_prefix("db/creds/nothing/", false, true)
            .await
            .unwrap(),
        0
    );

    // Engine down: without force the call fails and the lease stays queued…
    engine.set_down(true);
    let s = Status::from(
        reg.revoke_prefix("db/creds/b/", false, true)
            .await
            .unwrap_err(),
    );
    assert_eq!(s.code(), tonic::Code::Unavailable);
    assert!(s.message().contains("1 of 1 leases"), "{}", s.message());
    assert!(s.message().contains("database unreachable"));
    assert!(stored(&store, &ids[4]).await.is_some());
    // …with force it is deleted anyway.
    assert_eq!(
        reg.revoke_prefix("db/creds/b", true, true).await.unwrap(),
        1
    );
    assert!(stored(&store, &ids[4]).await.is_none());
    // Async: queued, revoked by the manager once the engine is back.
    let calls = engine.calls();
    assert_eq!(
        reg.revoke_prefix("db/creds/c", false, false).await.unwrap(),
        2
    );
    assert_eq!(engine.calls(), calls);
    assert!(is_invalid_lease(reg.lookup(&ids[5]).await));
    engine.set_down(false);
    assert_eq!(pass(&reg).await, 2);
    assert!(reg.list("").await.unwrap().is_empty());
}

#[tokio::test]
async fn list_keys_vault_style() {
    let Fixture { root, reg, .. } = fixture().await;
    let mut a = Vec::new();
    for _ in 0..2 {
        a.push(
            reg.register(&lease_req(&root, "database/creds/a", 60, 0))
                .await
                .unwrap()
                .id,
        );
    }
    reg.register(&lease_req(&root, "database/creds/b", 60, 0))
        .await
        .unwrap();
    reg.register(&lease_req(&root, "other/x", 60, 0))
        .await
        .unwrap();
    assert_eq!(reg.list("").await.unwrap(), ["database/", "other/"]);
    assert_eq!(reg.list("database/").await.unwrap(), ["creds/"]);
    assert_eq!(reg.list("database/creds/").await.unwrap(), ["a/", "b/"]);
    let mut randoms: Vec<String> = a
        .iter()
        .map(|id| id.rsplit_once('/').unwrap().1.to_string())
        .collect();
    randoms.sort();
    assert_eq!(reg.list("database/creds/a/").await.unwrap(), randoms);
    // Without the trailing slash: the same directory.
    assert_eq!(reg.list("database/creds/a").await.unwrap(), randoms);
    assert!(reg.list("nothing/").await.unwrap().is_empty());
    assert!(reg.list("database/cr").await.unwrap().is_empty());
}

#[tokio::test]
async fn revoking_a_token_revokes_its_leases_and_its_childrens() {
    let Fixture {
        store,
        root,
        engine,
        reg,
        ..
    } = fixture().await;
    let parent = create(&store, &root, |_| {}).await;
    let child = create(&store, &parent.token, |_| {}).await;
    let grandchild = create(&store, &child.token, |_| {}).await;
    let other = create(&store, &root, |_| {}).await;
    let lp = reg
        .register(&lease_req(&parent.token, "db/creds/p", 60, 0))
        .await
        .unwrap();
    let lc = reg
        .register(&lease_req(&child.token, "db/creds/c", 60, 0))
        .await
        .unwrap();
    let lg = reg
        .register(&lease_req(&grandchild.token, "db/creds/g", 60, 0))
        .await
        .unwrap();
    let lo = reg
        .register(&lease_req(&other.token, "db/creds/o", 60, 0))
        .await
        .unwrap();
    let lr = reg
        .register(&lease_req(&root, "db/creds/r", 60, 0))
        .await
        .unwrap();
    assert_eq!(pass(&reg).await, 0);

    store
        .revoke(TokenRef::Token(&parent.token), false)
        .await
        .unwrap();
    // At once: not visible, not renewable.
    for l in [&lp, &lc, &lg] {
        assert!(is_invalid_lease(reg.lookup(&l.id).await));
        assert!(is_invalid_lease(reg.renew(&l.id, 0).await));
    }
    assert!(reg.lookup(&lo.id).await.is_ok());
    assert!(reg.lookup(&lr.id).await.is_ok());
    assert_eq!(engine.calls(), 0);
    // Then revoked by the manager.
    assert_eq!(pass(&reg).await, 3);
    let mut revoked = engine.revoked();
    revoked.sort();
    assert_eq!(
        revoked,
        [
            b"data:db/creds/c:60".to_vec(),
            b"data:db/creds/g:60".to_vec(),
            b"data:db/creds/p:60".to_vec(),
        ]
    );
    assert_eq!(reg.list("db/creds/").await.unwrap(), ["o/", "r/"]);

    // By accessor, orphaning the children: only the token's own leases go.
    let t = create(&store, &root, |_| {}).await;
    let kid = create(&store, &t.token, |_| {}).await;
    let lt = reg
        .register(&lease_req(&t.token, "db/creds/t", 60, 0))
        .await
        .unwrap();
    let lk = reg
        .register(&lease_req(&kid.token, "db/creds/k", 60, 0))
        .await
        .unwrap();
    store
        .revoke(TokenRef::Accessor(&t.entry.accessor), true)
        .await
        .unwrap();
    assert!(is_invalid_lease(reg.lookup(&lt.id).await));
    assert!(reg.lookup(&lk.id).await.is_ok());

    // An expired token's leases go with it, even before the token sweep.
    let short = create(&store, &root, |r| r.ttl = 5).await;
    let ls = reg
        .register(&lease_req(&short.token, "db/creds/s", 600, 0))
        .await
        .unwrap();
    store.clock.advance(6);
    assert!(is_invalid_lease(reg.lookup(&ls.id).await));
    assert_eq!(pass(&reg).await, 2);
    assert!(stored(&store, &ls.id).await.is_none());
    assert!(stored(&store, &lt.id).await.is_none());
}

#[tokio::test]
async fn a_registration_racing_its_tokens_revocation_does_not_survive() {
    let Fixture {
        store, root, reg, ..
    } = fixture().await;
    let t = create(&store, &root, |_| {}).await;
    // The owner goes between the check and the write: simulated by deleting
    // the token record without its revocation hook having seen the lease.
    let hash = store.hash(&t.token).await.unwrap();
    let l = reg
        .register(&lease_req(&t.token, "db/creds/x", 60, 0))
        .await
        .unwrap();
    store.barrier.delete(&token_path(&hash)).await.unwrap();
    // Found on first use…
    assert!(is_invalid_lease(reg.lookup(&l.id).await));
    assert!(matches!(
        stored(&store, &l.id).await.unwrap().state,
        LeaseState::Revoking { .. }
    ));
    // …and a registration by a token that is gone is refused.
    assert!(matches!(
        reg.register(&lease_req(&t.token, "db/creds/x", 60, 0))
            .await,
        Err(AuthError::PermissionDenied)
    ));
}

#[tokio::test]
async fn restart_rebuilds_the_queue_and_still_expires() {
    let Fixture {
        db,
        root,
        engine,
        reg,
        store,
    } = fixture().await;
    let short = reg
        .register(&lease_req(&root, "db/creds/a", 10, 0))
        .await
        .unwrap();
    let long = reg
        .register(&lease_req(&root, "db/creds/b", 1000, 0))
        .await
        .unwrap();
    engine.set_down(true);
    let failing = reg
        .register(&lease_req(&root, "db/creds/c", 1000, 0))
        .await
        .unwrap();
    reg.revoke(&failing.id, false).await.unwrap();
    engine.set_down(false);
    drop(reg);
    drop(store);

    // A new process over the same storage.
    let keyring = Keyring::new();
    keyring.install(1, [(1, Zeroizing::new([7u8; 32]))]);
    let store2 = Arc::new(TokenStore::new(Barrier::new(
        db.namespace("auth").await.unwrap(),
        keyring,
    )));
    let engine2 = Arc::new(TestEngine::default());
    let reg2 = LeaseRegistry::new(store2.clone(), Engines::new(engine2.clone()));
    assert!(!reg2.queue().loaded);
    assert!(reg2.lookup(&short.id).await.is_ok());
    store2.clock.advance(1);
    // The queued revocation is retried after the restart.
    assert_eq!(reg2.expire_due(&|| true).await.unwrap(), 1);
    assert!(reg2.queue().loaded);
    assert_eq!(engine2.revoked(), [b"data:db/creds/c:1000".to_vec()]);
    store2.clock.advance(10);
    assert_eq!(reg2.expire_due(&|| true).await.unwrap(), 1);
    assert!(is_invalid_lease(reg2.lookup(&short.id).await));
    assert!(reg2.lookup(&long.id).await.is_ok());
    // Sealing forgets the queue; unsealing rebuilds it.
    reg2.unload();
    store2.clock.advance(1000);
    assert_eq!(reg2.expire_due(&|| true).await.unwrap(), 1);
    assert_eq!(engine2.calls(), 3);
}

#[tokio::test]
async fn changes_made_by_another_replica_reach_the_manager() {
    let Fixture {
        db,
        store,
        root,
        engine,
        reg,
    } = fixture().await;
    // The manager replica has its queue loaded.
    assert_eq!(pass(&reg).await, 0);
    let keyring = Keyring::new();
    keyring.install(1, [(1, Zeroizing::new([7u8; 32]))]);
    let other_store = Arc::new(TokenStore::new(Barrier::new(
        db.namespace("auth").await.unwrap(),
        keyring,
    )));
    let other = LeaseRegistry::new(
        other_store.clone(),
        Engines::new(Arc::new(TestEngine::default())),
    );
    // Registered on the other replica, expiring on this one's watch.
    let a = other
        .register(&lease_req(&root, "db/creds/a", 10, 0))
        .await
        .unwrap();
    // Registered here, renewed shorter there.
    let b = reg
        .register(&lease_req(&root, "db/creds/b", 1000, 0))
        .await
        .unwrap();
    other.renew(&b.id, 5).await.unwrap();
    // Revoked asynchronously there (queued).
    let c = reg
        .register(&lease_req(&root, "db/creds/c", 1000, 0))
        .await
        .unwrap();
    other.revoke_prefix(&c.id, false, false).await.unwrap();
    assert_eq!(pass(&reg).await, 1);
    store.clock.advance(10);
    assert_eq!(pass(&reg).await, 2);
    let mut revoked = engine.revoked();
    revoked.sort();
    assert_eq!(
        revoked,
        [
            b"data:db/creds/a:10".to_vec(),
            b"data:db/creds/b:1000".to_vec(),
            b"data:db/creds/c:1000".to_vec(),
        ]
    );
    assert!(is_invalid_lease(reg.lookup(&a.id).await));
    // Markers are consumed.
    assert!(store
        .barrier
        .list("lease-pending/")
        .await
        .unwrap()
        .is_empty());
}

#[tokio::test]
async fn tidy_drops_dangling_entries_and_revokes_orphaned_leases() {
    let Fixture {
        store,
        root,
        engine,
        reg,
        ..
    } = fixture().await;
    let t = create(&store, &root, |_| {}).await;
    let orphaned = reg
        .register(&lease_req(&t.token, "db/creds/o", 60, 0))
        .await
        .unwrap();
    let fine = reg
        .register(&lease_req(&root, "db/creds/f", 60, 0))
        .await
        .unwrap();
    // A token gone without its hook, and index entries pointing at nothing.
    let hash = store.hash(&t.token).await.unwrap();
    store.barrier.delete(&token_path(&hash)).await.unwrap();
    let ghost = format!("db/creds/g/{}", "A".repeat(24));
    store.barrier.put(&index_path(&ghost), b"x").await.unwrap();
    store
        .barrier
        .put(&format!("lease-token/{hash}/{}", "0".repeat(64)), b"")
        .await
        .unwrap();
    let report = reg.tidy().await.unwrap();
    assert_eq!(
        report,
        TidyReport {
            dangling: 2,
            orphaned: 1
        }
    );
    assert_eq!(reg.list("db/creds/").await.unwrap(), ["f/", "o/"]);
    assert_eq!(pass(&reg).await, 1);
    assert!(stored(&store, &orphaned.id).await.is_none());
    assert_eq!(engine.revoked(), [b"data:db/creds/o:60".to_vec()]);
    assert!(reg.lookup(&fine.id).await.is_ok());
    assert_eq!(reg.tidy().await.unwrap(), TidyReport::default());
}

#[tokio::test]
async fn sealed_refuses_everything() {
    let Fixture {
        store, root, reg, ..
    } = fixture().await;
    let l = reg
        .register(&lease_req(&root, "db/creds/a", 60, 0))
        .await
        .unwrap();
    store.barrier.keyring().clear();
    let sealed = |e: AuthError| assert!(e.is_sealed(), "{e:?}");
    sealed(
        reg.register(&lease_req(&root, "db/creds/a", 60, 0))
            .await
            .unwrap_err(),
    );
    sealed(reg.lookup(&l.id).await.unwrap_err());
    sealed(reg.lookup("garbage").await.unwrap_err());
    sealed(reg.renew(&l.id, -1).await.unwrap_err());
    sealed(reg.revoke("garbage", true).await.unwrap_err());
    sealed(reg.revoke_prefix("", false, true).await.unwrap_err());
    sealed(reg.list("").await.unwrap_err());
    sealed(reg.tidy().await.unwrap_err());
    sealed(reg.expire_due(&|| true).await.unwrap_err());
    let svc = LeasesService::new(reg.clone());
    let s = svc
        .lookup_lease(Request::new(LeaseRequest::default()))
        .await
        .unwrap_err();
    assert_eq!(
        (s.code(), s.message()),
        (tonic::Code::Unavailable, "Vault is sealed")
    );
}

#[tokio::test]
async fn stored_bytes_hold_neither_tokens_nor_engine_data() {
    let Fixture {
        db,
        store,
        root,
        reg,
        ..
    } = fixture().await;
    let t = create(&store, &root, |_| {}).await;
    let mut req = lease_req(&t.token, "db/creds/a", 60, 0);
    req.revoke_data = b"SECRET-ENGINE-DATA".to_vec();
    let l = reg.register(&req).await.unwrap();
    reg.renew(&l.id, 10).await.unwrap();
    let raw = db.namespace("auth").await.unwrap();
    let mut pending = vec![String::new()];
    let mut seen = 0;
    while let Some(prefix) = pending.pop() {
        for entry in raw.list(&prefix).await.unwrap() {
            let full = format!("{prefix}{entry}");
            if entry.ends_with('/') {
                pending.push(full);
                continue;
            }
            seen += 1;
            assert!(!full.contains(&*t.token), "{full}");
            let value = raw.get(&full).await.unwrap().unwrap();
            for needle in [&b"SECRET-ENGINE-DATA"[..], t.token.as_bytes()] {
                assert!(
                    !value.windows(needle.len()).any(|w| w == needle),
                    "clear text at {full}"
                );
            }
        }
    }
    assert!(seen >= 6);
    // Nor does a record's Debug.
    let rec = stored(&store, &l.id).await.unwrap();
    let text = format!("{rec:?}");
    assert!(
        !text.contains("SECRET") && !text.contains(&rec.owner),
        "{text}"
    );
}

#[tokio::test]
async fn rpcs_map_requests_and_errors() {
    let Fixture {
        store,
        root,
        engine,
        reg,
        ..
    } = fixture().await;
    let svc = LeasesService::new(reg.clone());
    let l = svc
        .register_lease(Request::new(lease_req(&root, "db/creds/a", 60, 0)))
        .await
        .unwrap()
        .into_inner();
    let s = svc
        .register_lease(Request::new(lease_req("hvs.nope", "db/creds/a", 60, 0)))
        .await
        .unwrap_err();
    assert_eq!(s.code(), tonic::Code::PermissionDenied);
    let looked = svc
        .lookup_lease(Request::new(LeaseRequest {
            lease_id: l.id.clone(),
        }))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(looked, l);
    let renewed = svc
        .renew_lease(Request::new(RenewLeaseRequest {
            lease_id: l.id.clone(),
            increment: 30,
        }))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(renewed.ttl, 30);
    let keys = svc
        .list_leases(Request::new(ListLeasesRequest {
            prefix: "db/creds/".into(),
        }))
        .await
        .unwrap()
        .into_inner()
        .keys;
    assert_eq!(keys, ["a/"]);
    svc.tidy_leases(Request::new(LeaseEmpty {})).await.unwrap();
    engine.set_down(true);
    let s = svc
        .revoke_lease(Request::new(RevokeLeaseRequest {
            lease_id: l.id.clone(),
            sync: true,
        }))
        .await
        .unwrap_err();
    assert_eq!(s.code(), tonic::Code::Unavailable);
    engine.set_down(false);
    let n = svc
        .revoke_prefix(Request::new(RevokePrefixRequest {
            prefix: "db/creds".into(),
            force: false,
            sync: true,
        }))
        .await
        .unwrap()
        .into_inner()
        .revoked;
    assert_eq!(n, 1);
    svc.revoke_lease(Request::new(RevokeLeaseRequest {
        lease_id: l.id.clone(),
        sync: false,
    }))
    .await
    .unwrap();
    let s = svc
        .lookup_lease(Request::new(LeaseRequest { lease_id: l.id }))
        .await
        .unwrap_err();
    assert_eq!(
        (s.code(), s.message()),
        (tonic::Code::InvalidArgument, "invalid lease")
    );
    drop(store);
}

#[tokio::test]
async fn count_leases_by_prefix_until_they_are_gone() {
    let Fixture {
        store,
        root,
        engine,
        reg,
        ..
    } = fixture().await;
    let svc = LeasesService::new(reg.clone());
    let count = |prefix: &str| {
        let req = Request::new(CountLeasesRequest {
            prefix: prefix.to_string(),
        });
        let svc = &svc;
        async move { svc.count_leases(req).await.map(|r| r.into_inner().count) }
    };
    assert_eq!(count("").await.unwrap(), 0);
    let mut app = Vec::new();
    for _ in 0..3 {
        app.push(
            reg.register(&lease_req(&root, "database/creds/app", 60, 0))
                .await
                .unwrap()
                .id,
        );
    }
    reg.register(&lease_req(&root, "database/creds/application", 60, 0))
        .await
        .unwrap();
    reg.register(&lease_req(&root, "other/creds/app", 60, 0))
        .await
        .unwrap();
    assert_eq!(count("").await.unwrap(), 5);
    assert_eq!(count("database/").await.unwrap(), 4);
    assert_eq!(count("database/creds/app/").await.unwrap(), 3);
    // A raw prefix: a glob over role names.
    assert_eq!(count("database/creds/app").await.unwrap(), 4);
    assert_eq!(count("nothing/").await.unwrap(), 0);
    // LIKE wildcards in a prefix are literal.
    assert_eq!(count("database/creds/%").await.unwrap(), 0);
    assert_eq!(count("database/creds/ap_/").await.unwrap(), 0);
    // A lease whose engine fails to revoke it still counts; once revoked, not.
    engine.set_down(true);
    assert!(reg.revoke(&app[0], true).await.is_err());
    assert_eq!(count("database/creds/app/").await.unwrap(), 3);
    engine.set_down(false);
    reg.revoke(&app[0], true).await.unwrap();
    assert_eq!(count("database/creds/app/").await.unwrap(), 2);
    // Revoking the owner: counted until the manager has revoked them.
    let t = create(&store, &root, |_| {}).await;
    reg.register(&lease_req(&t.token, "database/creds/app", 60, 0))
        .await
        .unwrap();
    assert_eq!(count("database/creds/app/").await.unwrap(), 3);
    store
        .revoke(TokenRef::Token(&t.token), false)
        .await
        .unwrap();
    assert_eq!(count("database/creds/app/").await.unwrap(), 3);
    assert_eq!(pass(&reg).await, 1);
    assert_eq!(count("database/creds/app/").await.unwrap(), 2);
    // Bad prefixes.
    for bad in ["a/../b", "a\nb", &"x".repeat(600)] {
        let s = count(bad).await.unwrap_err();
        assert_eq!(s.code(), tonic::Code::InvalidArgument, "{bad:?}");
    }
    // Only the gateway may ask.
    let allow = crate::allow_list();
    for name in bulwark_shared::ServiceName::ALL {
        assert_eq!(
            allow.permits("/bulwark.auth.v1.Leases/CountLeases", name),
            name == bulwark_shared::ServiceName::Gateway,
            "{name:?}"
        );
    }
    // Sealed: refused before looking.
    store.barrier.keyring().clear();
    let s = count("").await.unwrap_err();
    assert_eq!(s.code(), tonic::Code::Unavailable);
}
