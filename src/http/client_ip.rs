//! Which address a request came from: the peer, or — only when the peer is a
//! trusted proxy — the nearest untrusted hop in `X-Forwarded-For`.

use std::net::IpAddr;

use http::HeaderMap;
use ipnet::IpNet;

use crate::domain::IpKey;

/// Whether `ip` is one of the trusted proxies.
pub fn is_trusted(ip: IpAddr, proxies: &[IpNet]) -> bool {
    trusted(ip, proxies)
}

fn trusted(ip: IpAddr, proxies: &[IpNet]) -> bool {
    let ip = IpKey::from_ip(ip).to_ip();
    proxies.iter().any(|n| n.contains(&ip))
}

fn parse_hop(s: &str) -> Option<IpAddr> {
    let s = s.trim();
    if let Ok(ip) = s.parse::<IpAddr>() {
        return Some(ip);
    }
    // "[2001:db8::1]:443" or "203.0.113.1:8080"
    s.parse::<std::net::SocketAddr>().ok().map(|sa| sa.ip())
}

pub fn resolve(peer: IpAddr, headers: &HeaderMap, proxies: &[IpNet]) -> IpAddr {
    let peer = IpKey::from_ip(peer).to_ip();
    if proxies.is_empty() || !trusted(peer, proxies) {
        return peer;
    }
    let mut hops: Vec<IpAddr> = Vec::new();
    for v in headers.get_all("x-forwarded-for") {
        let Ok(s) = v.to_str() else { return peer };
        for part in s.split(',') {
            match parse_hop(part) {
                Some(ip) => hops.push(IpKey::from_ip(ip).to_ip()),
                None => return peer,
            }
        }
    }
    let mut client = peer;
    for hop in hops.into_iter().rev() {
        client = hop;
        if !trusted(hop, proxies) {
            break;
        }
    }
    client
}

#[cfg(test)]
mod tests {
    use super::*;

    fn h(v: &str) -> HeaderMap {
        let mut m = HeaderMap::new();
        m.insert("x-forwarded-for", v.parse().unwrap());
        m
    }

    #[test]
    fn untrusted_peer_is_the_client_whatever_it_claims() {
        let peer: IpAddr = "198.51.100.1".parse().unwrap();
        assert_eq!(resolve(peer, &h("1.2.3.4"), &[]), peer);
        let proxies = ["10.0.0.0/8".parse().unwrap()];
        assert_eq!(resolve(peer, &h("1.2.3.4"), &proxies), peer);
    }

    #[test]
    fn trusted_proxy_chain_yields_first_untrusted_from_the_right() {
        let proxies: Vec<IpNet> = vec!["10.0.0.0/8".parse().unwrap()];
        let peer: IpAddr = "10.0.0.1".parse().unwrap();
        assert_eq!(
            resolve(peer, &h("6.6.6.6, 203.0.113.9, 10.1.1.1"), &proxies),
            "203.0.113.9".parse::<IpAddr>().unwrap()
        );
        assert_eq!(resolve(peer, &h("garbage"), &proxies), peer);
        assert_eq!(
            resolve(peer, &h("[2001:db8::5]:443"), &proxies),
            "2001:db8::5".parse::<IpAddr>().unwrap()
        );
        assert_eq!(resolve(peer, &HeaderMap::new(), &proxies), peer);
    }
}
