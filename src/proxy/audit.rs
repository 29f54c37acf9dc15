//! Knowing the owner's own `addrmunge audit`: its requests carry
//! `X-Addrmunge-Audit` with a mark only a holder of the key can make
//! ([`KeyRing::audit_mark`]). They are served as any visitor's (the audit
//! must see what visitors see) but never logged as a visit, never matched
//! as a harvester's User-Agent, never caught by the bait. Headless Chromium
//! rendering for the audit cannot send the header: from an address that
//! sent a good mark today, the audit's own User-Agent is enough. Its
//! answers say whom the proxy took it for ([`VISITOR_HEADER`]).

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;

use hyper::HeaderMap;

use crate::day::Day;
use crate::token::KeyRing;

/// The request header.
pub const HEADER: &str = "x-addrmunge-audit";
/// The answer's header to the audit: the visitor the proxy took it for,
/// which every munged address it is served must be made for. Only a
/// holder of the key learns it, and only its own address.
pub const VISITOR_HEADER: &str = "x-addrmunge-audit-visitor";
/// How the audit's User-Agent starts.
pub const AGENT: &str = "addrmunge-audit/";
/// Addresses remembered, at most (an owner audits from one or two).
const REMEMBERED: usize = 64;

/// Where audits ran from, and on which day.
#[derive(Debug, Default)]
pub struct Auditors(Mutex<HashMap<IpAddr, Day>>);

impl Auditors {
    /// Whether this request is the owner's audit.
    /// Every request asks: an ordinary one costs a header lookup and a
    /// prefix test, no lock.
    pub fn is_audit(&self, keys: &KeyRing, ip: IpAddr, day: Day, headers: &HeaderMap, agent: &str) -> bool {
        let mark = headers.get(HEADER).and_then(|v| v.to_str().ok());
        if mark.is_none() && !agent.starts_with(AGENT) {
            return false;
        }
        let mut seen = self.0.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(mark) = mark {
            if !keys.is_audit_mark(mark, day) {
                return false;
            }
            if seen.len() >= REMEMBERED {
                seen.clear();
            }
            seen.insert(ip, day);
            return true;
        }
        seen.get(&ip) == Some(&day)
    }
}

/// Tells the audit whom it was served as.
pub fn tell_visitor<B>(resp: &mut hyper::Response<B>, ip: IpAddr) {
    if let Ok(v) = hyper::header::HeaderValue::from_str(&ip.to_string()) {
        resp.headers_mut().insert(VISITOR_HEADER, v);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_key_holder_marks_an_audit() {
        let keys = KeyRing::new(&[[7; 32]]);
        let day: Day = "2026-12-04".parse().unwrap();
        let a = Auditors::default();
        let ip: IpAddr = "203.0.113.9".parse().unwrap();
        let other: IpAddr = "203.0.113.10".parse().unwrap();
        let with = |mark: &str| {
            let mut h = HeaderMap::new();
            h.insert(HEADER, mark.parse().unwrap());
            h
        };
        let none = HeaderMap::new();
        // Its rendering, before any mark: an ordinary visitor.
        assert!(!a.is_audit(&keys, ip, day, &none, "addrmunge-audit/1 (rendering)"));
        let forged = KeyRing::new(&[[8; 32]]).audit_mark(day);
        assert!(!a.is_audit(&keys, ip, day, &with(&forged), "x"));
        assert!(!a.is_audit(&keys, ip, day, &with("zz"), "x"));
        assert!(a.is_audit(&keys, ip, day, &with(&keys.audit_mark(day)), "x"));
        assert!(a.is_audit(&keys, ip, day, &none, "addrmunge-audit/1 (rendering)"));
        assert!(!a.is_audit(&keys, ip, day, &none, "Mozilla/5.0"));
        assert!(!a.is_audit(&keys, other, day, &none, "addrmunge-audit/1"));
        // A mark made yesterday still counts (an audit across midnight).
        let tomorrow = Day::from_number(day.number() + 1);
        assert!(a.is_audit(&keys, other, tomorrow, &with(&keys.audit_mark(day)), "x"));
    }
}
