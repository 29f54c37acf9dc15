//! Who the visitor is: the socket peer, or — only when the peer is a
//! configured trusted proxy — the rightmost address of `X-Forwarded-For`
//! (or `Forwarded: for=`) that is not itself a trusted proxy.

use std::net::IpAddr;

use hyper::header::HeaderMap;
use ipnet::IpNet;

/// The visitor's IP for a request from `peer`.
pub fn client_ip(peer: IpAddr, headers: &HeaderMap, trusted: &[IpNet]) -> IpAddr {
    let is_trusted = |ip: &IpAddr| trusted.iter().any(|n| n.contains(ip));
    if !is_trusted(&peer) {
        return peer;
    }
    // The chain as received, nearest hop last: Forwarded first (RFC 7239),
    // then X-Forwarded-For.
    let mut chain: Vec<IpAddr> = Vec::new();
    for v in headers
        .get_all(hyper::header::FORWARDED)
        .iter()
        .filter_map(|v| v.to_str().ok())
    {
        for element in v.split(',') {
            for pair in element.split(';') {
                if let Some((k, val)) = pair.trim().split_once('=')
                    && k.trim().eq_ignore_ascii_case("for")
                    && let Some(ip) = parse_forwarded_node(val)
                {
                    chain.push(ip);
                }
            }
        }
    }
    if chain.is_empty() {
        for v in headers
            .get_all(super::headers::X_FORWARDED_FOR)
            .iter()
            .filter_map(|v| v.to_str().ok())
        {
            chain.extend(v.split(',').filter_map(|s| s.trim().parse::<IpAddr>().ok()));
        }
    }
    chain.into_iter().rev().find(|ip| !is_trusted(ip)).unwrap_or(peer)
}

/// `for=192.0.2.1`, `for="[2001:db8::1]:4711"`, `for="192.0.2.1:80"`.
fn parse_forwarded_node(v: &str) -> Option<IpAddr> {
    let v = v.trim().trim_matches('"');
    if let Some(rest) = v.strip_prefix('[') {
        return rest.split(']').next()?.parse().ok();
    }
    v.parse().ok().or_else(|| v.rsplit_once(':')?.0.parse().ok())
}

#[cfg(test)]
mod tests {
    use super::*;
    use hyper::header::HeaderValue;

    fn h(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut m = HeaderMap::new();
        for (k, v) in pairs {
            m.append(*k, HeaderValue::from_static(v));
        }
        m
    }

    #[test]
    fn untrusted_peers_cannot_spoof() {
        let trusted = vec!["10.0.0.0/8".parse().unwrap()];
        let peer: IpAddr = "203.0.113.5".parse().unwrap();
        assert_eq!(
            client_ip(peer, &h(&[("x-forwarded-for", "1.2.3.4")]), &trusted),
            peer
        );
    }

    #[test]
    fn rightmost_untrusted_hop() {
        let trusted = vec!["10.0.0.0/8".parse().unwrap()];
        let peer: IpAddr = "10.0.0.1".parse().unwrap();
        let hdr = h(&[("x-forwarded-for", "1.2.3.4, 198.51.100.7, 10.0.0.9")]);
        assert_eq!(
            client_ip(peer, &hdr, &trusted),
            "198.51.100.7".parse::<IpAddr>().unwrap()
        );
        let fwd = h(&[(
            "forwarded",
            "for=192.0.2.60;proto=http, for=\"[2001:db8::1]:4711\"",
        )]);
        assert_eq!(
            client_ip(peer, &fwd, &trusted),
            "2001:db8::1".parse::<IpAddr>().unwrap()
        );
        assert_eq!(client_ip(peer, &HeaderMap::new(), &trusted), peer);
    }
}
