//! Fuzz targets (issue 13) for unseal key handling and Shamir sharing,
//! through the crate's public API (`SealCore` on in-memory storage).
//!
//! * `unseal_any_threshold_subset`: after `init(n, t)`, any `t` distinct
//!   shares in any order, with repeats, unseal; `t - 1` do not.
//! * `unseal_refuses_garbage`: arbitrary bytes, and valid shares with one
//!   bit flipped, truncated or extended, are refused with a clean error
//!   that resets the progress; they never reach the Shamir combination.
//!
//! (Unseal keys arrive as hex or base64 text; that decoding is in the
//! gateway and fuzzed there: `gateway/tests/fuzz_gateway.rs`.)
//!
//! Cases per target: `BULWARK_FUZZ_CASES` (small by default; see FUZZING.md).

use bulwark_seal::{SealCore, SealError};
use bulwark_shared::storage::{Database, StorageConfig};
use proptest::prelude::*;
use proptest::test_runner::Config;
use zeroize::Zeroizing;

/// `BULWARK_FUZZ_CASES` cases, else `default`; no failure files (failures
/// become explicit regression tests).
fn cfg(default: u32) -> Config {
    let cases = std::env::var("BULWARK_FUZZ_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default);
    Config {
        cases,
        failure_persistence: None,
        ..Config::default()
    }
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
}

/// A fresh, initialized core with `shares` / `threshold`, and its keys.
async fn initialized(shares: u32, threshold: u32) -> (Database, SealCore, Vec<Zeroizing<Vec<u8>>>) {
    let db = Database::connect(&StorageConfig::SqliteMemory)
        .await
        .expect("in-memory database");
    let core = SealCore::load(db.namespace("seal").await.expect("namespace"), db.kind())
        .await
        .expect("load");
    let out = core.init(shares, threshold, "").await.expect("init");
    assert_eq!(out.keys.len(), shares as usize);
    (db, core, out.keys)
}

/// `(shares, threshold)` as Vault allows them (a threshold of one only
/// with a single share), kept small enough to be quick.
fn config() -> impl Strategy<Value = (u32, u32)> {
    prop_oneof![
        Just((1u32, 1u32)),
        (2u32..12).prop_flat_map(|n| (Just(n), 2..=n)),
        Just((255, 2)),
    ]
}

proptest! {
    #![proptest_config(cfg(256))]

    #[test]
    fn unseal_any_threshold_subset(
        (n, t) in config(),
        picks in prop::collection::vec(any::<prop::sample::Index>(), 300),
        repeat_every in 1..6usize,
    ) {
        let rt = runtime();
        rt.block_on(async {
            let (_db, core, keys) = initialized(n, t).await;
            // `t` distinct shares in a random order (a Fisher-Yates shuffle).
            let mut idx: Vec<usize> = (0..keys.len()).collect();
            for (i, p) in picks.iter().enumerate().take(idx.len()) {
                let j = i + p.index(idx.len() - i);
                idx.swap(i, j);
            }
            let chosen = idx[..t as usize].to_vec();
            prop_assert_eq!(chosen.len(), t as usize);
            for (k, i) in chosen.iter().enumerate() {
                let st = core.unseal(&keys[*i], false).await.map_err(|e| TestCaseError::fail(e.to_string()))?;
                let last = k + 1 == t as usize;
                prop_assert_eq!(st.sealed, !last, "after {} of {}", k + 1, t);
                if !last {
                    prop_assert_eq!(st.progress, k as u32 + 1);
                    // The same share again counts once.
                    if k % repeat_every == 0 {
                        let again = core.unseal(&keys[*i], false).await.map_err(|e| TestCaseError::fail(e.to_string()))?;
                        prop_assert_eq!(again.progress, k as u32 + 1);
                        prop_assert!(again.sealed);
                    }
                }
            }
            // Sealed again, `t - 1` shares are not enough.
            core.seal().await.map_err(|e| TestCaseError::fail(e.to_string()))?;
            for (k, i) in chosen.iter().take(t as usize - 1).enumerate() {
                let st = core.unseal(&keys[*i], false).await.map_err(|e| TestCaseError::fail(e.to_string()))?;
                prop_assert!(st.sealed);
                prop_assert_eq!(st.progress, k as u32 + 1);
            }
            Ok(())
        })?;
    }

    #[test]
    fn unseal_refuses_garbage(
        (n, t) in config(),
        junk in prop::collection::vec(
            prop_oneof![
                prop::collection::vec(any::<u8>(), 0..80),
                prop::collection::vec(any::<u8>(), 32..=33),
                Just(Vec::new()),
            ],
            1..6,
        ),
        tamper in prop::collection::vec((any::<prop::sample::Index>(), any::<usize>(), 0..4u8), 1..4),
    ) {
        let rt = runtime();
        rt.block_on(async {
            let (_db, core, keys) = initialized(n, t).await;
            // Some progress first, so that a refusal can be seen to reset it.
            let warm_up = t > 1;
            if warm_up {
                core.unseal(&keys[0], false).await.map_err(|e| TestCaseError::fail(e.to_string()))?;
            }
            let mut hostile: Vec<Vec<u8>> = junk;
            for (which, at, how) in &tamper {
                let mut k = keys[which.index(keys.len())].to_vec();
                match how {
                    0 => {
                        let i = at % k.len();
                        k[i] ^= 1 << (at % 8);
                    }
                    1 => k.truncate(at % k.len()),
                    2 => k.push(*at as u8),
                    _ => k.insert(0, *at as u8),
                }
                hostile.push(k);
            }
            for key in hostile {
                if keys.iter().any(|k| k.as_slice() == key.as_slice()) {
                    continue;
                }
                match core.unseal(&key, false).await {
                    Err(SealError::MissingKey) => prop_assert!(key.is_empty()),
                    Err(SealError::BadKey(_)) => {}
                    other => prop_assert!(false, "{:?} for {:?}", other.map(|s| s.sealed), key),
                }
                let st = core.status().await.map_err(|e| TestCaseError::fail(e.to_string()))?;
                prop_assert!(st.sealed);
                if !key.is_empty() {
                    prop_assert_eq!(st.progress, 0, "a refused key resets the progress");
                }
            }
            // The real keys still work afterwards.
            for (k, key) in keys.iter().take(t as usize).enumerate() {
                let st = core.unseal(key, false).await.map_err(|e| TestCaseError::fail(e.to_string()))?;
                prop_assert_eq!(st.sealed, k + 1 < t as usize);
            }
            Ok(())
        })?;
    }
}
