//! CIDR blocks: validating the ones users and roles are configured with, and
//! checking a client address against them.
//!
//! A block is written `10.0.0.0/8` or `2001:db8::/32`; a bare address means
//! that address alone (`/32` or `/128`). Blocks are stored as given (trimmed).

use std::net::{IpAddr, SocketAddr};

use crate::error::AuthError;

/// Longest value quoted back in an error.
const QUOTE_MAX: usize = 64;

pub(crate) use bulwark_shared::cidr::{parse_block, IpNet};

/// `list` trimmed, without empties or repeats (order kept), every entry a
/// valid block; otherwise InvalidArgument naming the first bad value.
pub(crate) fn validate_blocks(list: &[String]) -> Result<Vec<String>, AuthError> {
    let mut out: Vec<String> = Vec::with_capacity(list.len());
    for raw in list {
        let s = raw.trim();
        if s.is_empty() || out.iter().any(|o| o == s) {
            continue;
        }
        if parse_block(s).is_none() {
            return Err(AuthError::invalid(format!(
                "invalid CIDR block or IP address {:?}",
                quote(s)
            )));
        }
        out.push(s.to_string());
    }
    Ok(out)
}

/// Checks that every block of `inner` lies within one of `outer`; names the
/// first that does not. Both lists must have been validated.
pub(crate) fn check_subset(
    outer: &[String],
    inner: &[String],
    what: &str,
) -> Result<(), AuthError> {
    let outer: Vec<IpNet> = outer.iter().filter_map(|b| parse_block(b)).collect();
    for block in inner {
        let Some(net) = parse_block(block) else {
            return Err(AuthError::invalid(format!(
                "invalid CIDR block or IP address {:?}",
                quote(block)
            )));
        };
        if !outer.iter().any(|o| o.contains(&net)) {
            return Err(AuthError::invalid(format!(
                "CIDR block {:?} is not within the role's {what}",
                quote(block)
            )));
        }
    }
    Ok(())
}

/// The client address as the gateway reports it: `ip`, `ip:port` or
/// `[ipv6]:port`; IPv4-mapped IPv6 addresses count as IPv4.
pub(crate) fn parse_addr(remote_ip: &str) -> Option<IpAddr> {
    let s = remote_ip.trim();
    let ip = s
        .parse::<IpAddr>()
        .ok()
        .or_else(|| s.parse::<SocketAddr>().ok().map(|a| a.ip()))?;
    Some(ip.to_canonical())
}

/// Whether `remote_ip` lies in one of `blocks`. An unknown or unparsable
/// address lies in none.
pub(crate) fn allows(blocks: &[String], remote_ip: &str) -> bool {
    parse_addr(remote_ip).is_some_and(|ip| bulwark_shared::cidr::contains(blocks, ip))
}

/// A user-supplied value, cut short for an error message.
pub(crate) fn quote(s: &str) -> &str {
    match s.char_indices().nth(QUOTE_MAX) {
        Some((i, _)) => &s[..i],
        None => s,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strings(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn blocks_are_validated_and_normalized() {
        assert_eq!(
            validate_blocks(&strings(&[
                " 10.0.0.0/8",
                "",
                "10.0.0.0/8",
                "1.2.3.4",
                "::1"
            ]))
            .unwrap(),
            ["10.0.0.0/8", "1.2.3.4", "::1"]
        );
        for bad in [
            "10.0.0.0/33",
            "nope",
            "1.2.3",
            "10.0.0.0/",
            "/8",
            "1.2.3.4:80",
        ] {
            let e = validate_blocks(&strings(&["10.0.0.0/8", bad])).unwrap_err();
            assert!(matches!(e, AuthError::InvalidRequest(_)));
            assert_eq!(
                e.to_string(),
                format!("invalid CIDR block or IP address {:?}", bad)
            );
        }
        let long = "x".repeat(500);
        let e = validate_blocks(&[long]).unwrap_err().to_string();
        assert!(e.len() < 120, "{e}");
    }

    #[test]
    fn addresses_match_blocks() {
        let blocks = strings(&["10.0.0.0/8", "192.168.1.7", "2001:db8::/32"]);
        for ok in [
            "10.1.2.3",
            "10.1.2.3:5555",
            "192.168.1.7",
            "::ffff:10.0.0.1",
            "2001:db8::1",
            "[2001:db8::1]:443",
        ] {
            assert!(allows(&blocks, ok), "{ok}");
        }
        for no in [
            "11.0.0.1",
            "192.168.1.8",
            "",
            "unknown",
            "2001:db9::1",
            "::1",
        ] {
            assert!(!allows(&blocks, no), "{no}");
        }
        assert!(!allows(&[], "10.0.0.1"));
    }

    #[test]
    fn subsets() {
        let role = strings(&["10.0.0.0/8", "192.168.0.0/16"]);
        assert!(check_subset(&role, &strings(&["10.1.0.0/16", "192.168.3.4"]), "x").is_ok());
        let e = check_subset(
            &role,
            &strings(&["10.0.0.0/8", "11.0.0.0/8"]),
            "secret_id_bound_cidrs",
        )
        .unwrap_err();
        assert_eq!(
            e.to_string(),
            "CIDR block \"11.0.0.0/8\" is not within the role's secret_id_bound_cidrs"
        );
        assert!(check_subset(&role, &strings(&["0.0.0.0/0"]), "x").is_err());
    }
}
