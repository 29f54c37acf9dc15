//! The munged recipients of a message or mbox, for `trace --message`.

use std::collections::HashSet;

use crate::address::{Parsed, Protection};

/// Munged addresses of ours, and what may be a mangled copy of one: an
/// address at a protected domain whose local part ends in something
/// token-shaped (`trace` decides).
fn may_carry_id(protection: &Protection, address: &str) -> bool {
    if matches!(protection.parse(address), Parsed::Munged(_)) {
        return true;
    }
    let Some((local, domain)) = address.rsplit_once('@') else {
        return false;
    };
    let tail = local.rsplit('-').next().unwrap_or(local);
    protection.has_domain(domain.trim_end_matches('.')) && crate::token::looks_like_token(tail)
}

/// The munged recipients of a message (RFC 5322) or an mbox: addresses in
/// To, Cc, Delivered-To and X-Original-To that are munged addresses of ours
/// (or may be mangled copies of one), in order of appearance, without
/// repeats.
pub fn message_recipients(text: &str, protection: &Protection) -> Vec<String> {
    let mut found = Vec::new();
    let mut seen = HashSet::new();
    let mut in_headers = true;
    let mut current: Option<String> = None;
    let mut headers: Vec<String> = Vec::new();
    for raw in text.lines() {
        let line = raw.trim_end_matches('\r');
        // An mbox separator starts the next message's headers.
        if line.starts_with("From ") && (!in_headers || headers.is_empty()) {
            in_headers = true;
            continue;
        }
        if !in_headers {
            continue;
        }
        if line.is_empty() {
            headers.extend(current.take());
            in_headers = false;
            continue;
        }
        if line.starts_with([' ', '\t']) {
            if let Some(c) = &mut current {
                c.push(' ');
                c.push_str(line.trim());
            }
            continue;
        }
        headers.extend(current.take());
        current = Some(line.to_owned());
    }
    headers.extend(current);
    for h in headers {
        let Some((name, value)) = h.split_once(':') else {
            continue;
        };
        let name = name.trim().to_ascii_lowercase();
        if !matches!(name.as_str(), "to" | "cc" | "delivered-to" | "x-original-to") {
            continue;
        }
        for word in value.split(|c: char| c.is_whitespace() || "<>,;\"()".contains(c)) {
            let w = word.trim_matches(|c: char| c == '.' || c == ':' || c == '\'');
            if !w.contains('@') {
                continue;
            }
            let lower = w.to_ascii_lowercase();
            if may_carry_id(protection, &lower) && seen.insert(lower.clone()) {
                found.push(lower);
            }
        }
    }
    found
}
