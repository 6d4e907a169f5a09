//! Which addresses a callback may not reach: the ranges that lead into the
//! gateway's own network rather than to a service on the internet
//! (loopback, private, link-local with the cloud metadata service, shared
//! CGNAT space, multicast, reserved and documentation ranges), so that a
//! `callback_url` cannot be turned against the machines around the
//! workers. Used on IP literals at `/send` and on every address a name
//! resolves to at delivery time (unless `callbacks.allow_private_addresses`).
//!
//! IPv6 addresses that carry an IPv4 address (IPv4-mapped `::ffff:a.b.c.d`,
//! NAT64 `64:ff9b::a.b.c.d`, 6to4 `2002:AABB:CCDD::`) are judged by the IPv4
//! address they lead to. Ranges that are deprecated or have no business
//! carrying a web service (IPv4-compatible `::a.b.c.d`, site-local, the IETF
//! protocol assignments with Teredo, discard-only, SRv6 SIDs) are refused
//! whole.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// A refused range: its name and CIDR block, e.g. `loopback (127.0.0.0/8)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RefusedRange {
    /// What the range is for, e.g. `private`, `link-local`.
    pub name: &'static str,
    pub network: IpAddr,
    pub prefix: u8,
}

impl fmt::Display for RefusedRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({}/{})", self.name, self.network, self.prefix)
    }
}

/// The refused IPv4 blocks (IANA special-purpose registry, less the few
/// that are globally reachable and harmless to a caller).
const V4: &[(&str, [u8; 4], u8)] = &[
    ("this network", [0, 0, 0, 0], 8),
    ("private", [10, 0, 0, 0], 8),
    ("shared address space (CGNAT)", [100, 64, 0, 0], 10),
    ("loopback", [127, 0, 0, 0], 8),
    ("link-local (cloud metadata)", [169, 254, 0, 0], 16),
    ("private", [172, 16, 0, 0], 12),
    ("IETF protocol assignments", [192, 0, 0, 0], 24),
    ("documentation", [192, 0, 2, 0], 24),
    ("6to4 relay anycast", [192, 88, 99, 0], 24),
    ("private", [192, 168, 0, 0], 16),
    ("benchmarking", [198, 18, 0, 0], 15),
    ("documentation", [198, 51, 100, 0], 24),
    ("documentation", [203, 0, 113, 0], 24),
    ("multicast", [224, 0, 0, 0], 4),
    ("reserved (and broadcast)", [240, 0, 0, 0], 4),
];

/// The refused IPv6 blocks; those that embed an IPv4 address are handled
/// before this table is consulted.
const V6: &[(&str, [u16; 8], u8)] = &[
    ("unspecified", [0, 0, 0, 0, 0, 0, 0, 0], 128),
    ("loopback", [0, 0, 0, 0, 0, 0, 0, 1], 128),
    ("IPv4-compatible (deprecated)", [0, 0, 0, 0, 0, 0, 0, 0], 96),
    ("local-use NAT64", [0x64, 0xff9b, 1, 0, 0, 0, 0, 0], 48),
    ("discard-only", [0x100, 0, 0, 0, 0, 0, 0, 0], 64),
    (
        "IETF protocol assignments (Teredo, ORCHID, benchmarking)",
        [0x2001, 0, 0, 0, 0, 0, 0, 0],
        23,
    ),
    ("documentation", [0x2001, 0xdb8, 0, 0, 0, 0, 0, 0], 32),
    ("documentation", [0x3fff, 0, 0, 0, 0, 0, 0, 0], 20),
    ("segment routing (SRv6)", [0x5f00, 0, 0, 0, 0, 0, 0, 0], 16),
    ("unique local", [0xfc00, 0, 0, 0, 0, 0, 0, 0], 7),
    ("link-local", [0xfe80, 0, 0, 0, 0, 0, 0, 0], 10),
    ("site-local (deprecated)", [0xfec0, 0, 0, 0, 0, 0, 0, 0], 10),
    ("multicast", [0xff00, 0, 0, 0, 0, 0, 0, 0], 8),
];

/// The refused range `ip` is in, or `None` for an address a callback may
/// reach.
pub fn refused_range(ip: IpAddr) -> Option<RefusedRange> {
    match ip {
        IpAddr::V4(v4) => refused_v4(v4),
        IpAddr::V6(v6) => refused_v6(v6),
    }
}

/// Whether a callback may not reach `ip`.
pub fn is_refused(ip: IpAddr) -> bool {
    refused_range(ip).is_some()
}

/// Whether `host` (a name, not an IP literal) is `localhost` or a name
/// under it, which resolvers answer with loopback without asking DNS
/// (RFC 6761). A trailing dot and case are ignored.
pub fn is_localhost_name(host: &str) -> bool {
    let host = host.strip_suffix('.').unwrap_or(host).to_ascii_lowercase();
    host == "localhost" || host.ends_with(".localhost")
}

fn refused_v4(ip: Ipv4Addr) -> Option<RefusedRange> {
    let bits = u32::from(ip);
    V4.iter()
        .find(|(_, network, prefix)| {
            let mask = u32::MAX.checked_shl(32 - u32::from(*prefix)).unwrap_or(0);
            bits & mask == u32::from_be_bytes(*network)
        })
        .map(|&(name, network, prefix)| RefusedRange {
            name,
            network: IpAddr::V4(Ipv4Addr::from(network)),
            prefix,
        })
}

fn refused_v6(ip: Ipv6Addr) -> Option<RefusedRange> {
    if let Some(v4) = embedded_v4(ip) {
        return refused_v4(v4);
    }
    let bits = u128::from(ip);
    V6.iter()
        .find(|(_, network, prefix)| {
            let mask = u128::MAX.checked_shl(128 - u32::from(*prefix)).unwrap_or(0);
            bits & mask == u128::from(Ipv6Addr::from(*network))
        })
        .map(|&(name, network, prefix)| RefusedRange {
            name,
            network: IpAddr::V6(Ipv6Addr::from(network)),
            prefix,
        })
}

/// The IPv4 address an IPv6 address leads to: IPv4-mapped
/// (`::ffff:0:0/96`), NAT64's well-known prefix (`64:ff9b::/96`) and 6to4
/// (`2002::/16`, the IPv4 address in bits 16 to 48).
fn embedded_v4(ip: Ipv6Addr) -> Option<Ipv4Addr> {
    let s = ip.segments();
    let low = || Ipv4Addr::new((s[6] >> 8) as u8, s[6] as u8, (s[7] >> 8) as u8, s[7] as u8);
    match s {
        [0, 0, 0, 0, 0, 0xffff, _, _] | [0x64, 0xff9b, 0, 0, 0, 0, _, _] => Some(low()),
        [0x2002, high, lower, ..] => Some(Ipv4Addr::new(
            (high >> 8) as u8,
            high as u8,
            (lower >> 8) as u8,
            lower as u8,
        )),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refused(text: &str) -> bool {
        is_refused(text.parse().expect("an IP address"))
    }

    fn range_name(text: &str) -> &'static str {
        refused_range(text.parse().expect("an IP address")).map_or("allowed", |r| r.name)
    }

    #[test]
    fn loopback_private_and_metadata_ipv4_are_refused() {
        for ip in [
            "127.0.0.1",
            "127.255.255.254",
            "0.0.0.0",
            "0.1.2.3",
            "10.0.0.1",
            "10.255.255.255",
            "172.16.0.1",
            "172.31.255.255",
            "192.168.1.1",
            "169.254.169.254",
            "169.254.0.1",
            "100.64.0.1",
            "100.127.255.255",
            "100.100.100.200",
            "192.0.0.170",
            "192.0.2.10",
            "198.51.100.7",
            "203.0.113.9",
            "198.18.0.1",
            "198.19.255.255",
            "192.88.99.1",
            "224.0.0.1",
            "239.255.255.250",
            "240.0.0.1",
            "255.255.255.255",
        ] {
            assert!(refused(ip), "{ip} must be refused");
        }
    }

    #[test]
    fn public_ipv4_is_allowed_up_to_the_edges_of_refused_ranges() {
        for ip in [
            "8.8.8.8",
            "1.1.1.1",
            "93.184.216.34",
            "9.255.255.255",
            "11.0.0.0",
            "100.63.255.255",
            "100.128.0.0",
            "126.255.255.255",
            "128.0.0.0",
            "169.253.255.255",
            "169.255.0.0",
            "172.15.255.255",
            "172.32.0.0",
            "192.167.255.255",
            "192.169.0.0",
            "198.17.255.255",
            "198.20.0.0",
            "223.255.255.255",
        ] {
            assert!(!refused(ip), "{ip} must be allowed");
        }
    }

    #[test]
    fn ranges_are_named() {
        assert_eq!(range_name("127.0.0.1"), "loopback");
        assert_eq!(range_name("10.1.2.3"), "private");
        assert_eq!(range_name("169.254.169.254"), "link-local (cloud metadata)");
        assert_eq!(range_name("100.64.1.1"), "shared address space (CGNAT)");
        assert_eq!(range_name("8.8.8.8"), "allowed");
        let range = refused_range("172.20.1.1".parse().expect("ip")).expect("refused");
        assert_eq!(range.to_string(), "private (172.16.0.0/12)");
        let range = refused_range("fd00:ec2::254".parse().expect("ip")).expect("refused");
        assert_eq!(range.to_string(), "unique local (fc00::/7)");
    }

    #[test]
    fn loopback_local_and_special_ipv6_are_refused() {
        for ip in [
            "::1",
            "::",
            "fc00::1",
            "fd12:3456:789a::1",
            "fd00:ec2::254",
            "fe80::1",
            "febf:ffff::1",
            "fec0::1",
            "ff02::1",
            "2001:db8::1",
            "3fff::1",
            "2001::1",
            "2001:0:4136:e378:8000:63bf:3fff:fdd2",
            "2001:2::1",
            "100::1",
            "64:ff9b:1::1",
            "5f00::1",
            "::7f00:1",
            "::a00:1",
        ] {
            assert!(refused(ip), "{ip} must be refused");
        }
    }

    #[test]
    fn ipv6_that_carries_ipv4_is_judged_by_the_ipv4_address() {
        for ip in [
            "::ffff:127.0.0.1",
            "::ffff:10.0.0.1",
            "::ffff:169.254.169.254",
            "64:ff9b::127.0.0.1",
            "64:ff9b::a9fe:a9fe",
            "2002:7f00:1::",
            "2002:a00:1::1",
            "2002:c0a8:101::",
        ] {
            assert!(refused(ip), "{ip} must be refused");
        }
        assert_eq!(
            range_name("::ffff:169.254.169.254"),
            "link-local (cloud metadata)"
        );
        assert_eq!(range_name("2002:a00:1::"), "private");
        for ip in ["::ffff:8.8.8.8", "64:ff9b::808:808", "2002:808:808::1"] {
            assert!(!refused(ip), "{ip} must be allowed");
        }
    }

    #[test]
    fn public_ipv6_is_allowed() {
        for ip in [
            "2606:4700:4700::1111",
            "2a00:1450:4001:82a::200e",
            "2001:200::1",
            "2001:4860:4860::8888",
            "fbff::1",
            "fe7f::1",
            "64:ff9b:2::1",
        ] {
            assert!(!refused(ip), "{ip} must be allowed");
        }
    }

    #[test]
    fn localhost_names_are_recognised() {
        for host in [
            "localhost",
            "LOCALHOST",
            "localhost.",
            "api.localhost",
            "a.b.Localhost.",
        ] {
            assert!(is_localhost_name(host), "{host}");
        }
        for host in [
            "localhost.example.com",
            "mylocalhost",
            "notlocalhost",
            "example.com",
            "localhost.localdomain",
        ] {
            assert!(!is_localhost_name(host), "{host}");
        }
    }
}
