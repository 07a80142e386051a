//! Source allow-lists (`statsd.allow`, `http.allow`): which peers may send.
//!
//! Owns: matching a peer address against the configured networks, IPv4-mapped IPv6 peers
//! included (on a dual-stack `[::]` socket an IPv4 sender arrives as `::ffff:a.b.c.d` and
//! must match `10.0.0.0/8`). Must never: allocate or lock per check (UDP readers call it per
//! datagram).

use ipnet::IpNet;
use std::net::IpAddr;

/// The allowed source networks; empty allows any source.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AllowList(Vec<IpNet>);

impl AllowList {
    pub fn new(networks: Vec<IpNet>) -> Self {
        AllowList(networks)
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Whether `ip` may send: always when the list is empty; an IPv4-mapped IPv6 address is
    /// also matched as the IPv4 address it carries.
    pub fn permits(&self, ip: IpAddr) -> bool {
        if self.0.is_empty() {
            return true;
        }
        let mapped = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4),
            IpAddr::V4(_) => None,
        };
        self.0
            .iter()
            .any(|net| net.contains(&ip) || mapped.is_some_and(|v4| net.contains(&v4)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn list(nets: &[&str]) -> AllowList {
        AllowList::new(nets.iter().map(|n| n.parse().unwrap()).collect())
    }

    #[test]
    fn empty_permits_everyone() {
        assert!(AllowList::default().permits("203.0.113.9".parse().unwrap()));
    }

    #[test]
    fn ipv4_mapped_peers_match_ipv4_networks() {
        let l = list(&["10.0.0.0/8"]);
        assert!(l.permits("10.1.2.3".parse().unwrap()));
        assert!(l.permits("::ffff:10.1.2.3".parse().unwrap()));
        assert!(!l.permits("::ffff:192.168.1.1".parse().unwrap()));
        assert!(!l.permits("192.168.1.1".parse().unwrap()));
    }

    #[test]
    fn ipv6_networks_still_match_ipv6_peers() {
        let l = list(&["fd00::/8", "::1/128"]);
        assert!(l.permits("fd00::5".parse().unwrap()));
        assert!(l.permits("::1".parse().unwrap()));
        assert!(!l.permits("127.0.0.1".parse().unwrap()));
        // A mapped network written as IPv6 keeps matching mapped peers literally.
        assert!(list(&["::ffff:10.0.0.0/104"]).permits("::ffff:10.0.0.1".parse().unwrap()));
    }
}
