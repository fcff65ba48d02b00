//! CIDR blocks as Vault's `*_bound_cidrs` take them: `10.0.0.0/8`,
//! `2001:db8::/32`, or a bare address meaning that address alone.

use std::net::IpAddr;

pub use ipnet::IpNet;

/// Parses one block (or bare address); `None` if it is neither.
pub fn parse_block(raw: &str) -> Option<IpNet> {
    let s = raw.trim();
    if s.contains('/') {
        s.parse::<IpNet>().ok()
    } else {
        s.parse::<IpAddr>().ok().map(IpNet::from)
    }
}

/// Whether `ip` lies in one of `blocks` (unparsable blocks match nothing;
/// IPv4-mapped IPv6 addresses count as IPv4).
pub fn contains(blocks: &[String], ip: IpAddr) -> bool {
    let ip = ip.to_canonical();
    blocks
        .iter()
        .filter_map(|b| parse_block(b))
        .any(|net| net.contains(&ip))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blocks_and_addresses() {
        let blocks = vec![
            "10.0.0.0/8".to_string(),
            " 127.0.0.1 ".to_string(),
            "junk".to_string(),
        ];
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        assert!(contains(&blocks, ip("10.9.8.7")));
        assert!(contains(&blocks, ip("127.0.0.1")));
        assert!(contains(&blocks, ip("::ffff:10.0.0.1")));
        assert!(!contains(&blocks, ip("127.0.0.2")));
        assert!(parse_block("300.0.0.0/8").is_none());
        assert!(parse_block("2001:db8::/32").is_some());
    }
}
