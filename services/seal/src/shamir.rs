//! Shamir secret sharing of the root key over GF(2^8), through the maintained
//! `blahaj` crate. Shares use Vault's layout: the 32 share bytes followed by
//! the one-byte x coordinate (33 bytes, 66 hex characters). With a single
//! share, the share is the root key itself, as in Vault.

use blahaj::{Share, Sharks};
use zeroize::Zeroizing;

pub const KEY_LEN: usize = 32;

/// Splits `secret` into `shares` shares, any `threshold` of which recover it.
#[tracing::instrument(name = "crypto.shamir.split", skip_all, fields(shares = shares, threshold = threshold))]
pub fn split(secret: &[u8; KEY_LEN], shares: u8, threshold: u8) -> Vec<Zeroizing<Vec<u8>>> {
    if shares == 1 {
        return vec![Zeroizing::new(secret.to_vec())];
    }
    let mut rng = rand::rngs::OsRng;
    Sharks(threshold)
        .dealer_rng(secret, &mut rng)
        .take(usize::from(shares))
        .map(|share| {
            let raw = Zeroizing::new(Vec::from(&share));
            // blahaj: x ‖ y  →  Vault: y ‖ x
            let mut out = Zeroizing::new(Vec::with_capacity(raw.len()));
            out.extend_from_slice(&raw[1..]);
            out.push(raw[0]);
            out
        })
        .collect()
}

/// The length a share must have for a configuration with `shares` shares.
pub fn share_len(shares: u32) -> usize {
    if shares == 1 {
        KEY_LEN
    } else {
        KEY_LEN + 1
    }
}

/// Recovers the secret from `threshold` distinct shares.
#[tracing::instrument(name = "crypto.shamir.combine", skip_all)]
pub fn combine(parts: &[Zeroizing<Vec<u8>>], threshold: u8) -> Option<Zeroizing<[u8; KEY_LEN]>> {
    if threshold == 1 && parts.len() == 1 && parts[0].len() == KEY_LEN {
        let mut out = Zeroizing::new([0u8; KEY_LEN]);
        out.copy_from_slice(&parts[0]);
        return Some(out);
    }
    let shares: Vec<Share> = parts
        .iter()
        .map(|p| {
            let (x, y) = p.split_last()?;
            let mut raw = Zeroizing::new(Vec::with_capacity(p.len()));
            raw.push(*x);
            raw.extend_from_slice(y);
            Share::try_from(raw.as_slice()).ok()
        })
        .collect::<Option<_>>()?;
    let secret = Zeroizing::new(Sharks(threshold).recover(&shares).ok()?);
    if secret.len() != KEY_LEN {
        return None;
    }
    let mut out = Zeroizing::new([0u8; KEY_LEN]);
    out.copy_from_slice(&secret);
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn any_threshold_subset_recovers() {
        let secret = [42u8; KEY_LEN];
        let shares = split(&secret, 5, 3);
        assert_eq!(shares.len(), 5);
        assert!(shares.iter().all(|s| s.len() == 33));
        for combo in [[0, 1, 2], [2, 3, 4], [0, 2, 4], [4, 1, 3]] {
            let picked: Vec<_> = combo.iter().map(|&i| shares[i].clone()).collect();
            assert_eq!(*combine(&picked, 3).unwrap(), secret);
        }
        // Too few shares do not give the secret.
        let two = vec![shares[0].clone(), shares[1].clone()];
        assert_ne!(combine(&two, 3).map(|s| *s), Some(secret));
    }

    #[test]
    fn single_share_is_the_key() {
        let secret = [7u8; KEY_LEN];
        let shares = split(&secret, 1, 1);
        assert_eq!(shares[0].as_slice(), &secret);
        assert_eq!(*combine(&shares, 1).unwrap(), secret);
    }
}
