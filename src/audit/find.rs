//! What one page holds, read every way in [`Decoding::ALL`]: protected
//! addresses in clear (leaks: what the proxy's own scanner would have
//! munged, so a URL's user name or a git remote is never one), munged
//! addresses, and exempt ones.

use std::collections::HashSet;
use std::sync::Arc;

use super::decode::{Decoding, Text};
use crate::address::{Parsed, is_domain_char, is_local_char};
use crate::scan::{Found, Matcher};

/// What an address found on a page is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Kind {
    /// A protected address in clear: a harvester has it.
    Leak,
    /// A munged address (judged by the caller).
    Munged,
    /// An exempt address: meant to be seen.
    Exempt,
}

/// One address on one page.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Finding {
    /// The address, lowercase, as the decoding revealed it.
    pub address: String,
    /// What it is.
    pub kind: Kind,
    /// The first decoding (in [`Decoding::ALL`]'s order) that revealed it there.
    pub decoding: Decoding,
    /// Where on the page (bytes from the start of the body).
    pub offset: usize,
}

/// Every address at a protected domain on `page`, each place credited to
/// the first decoding that revealed it; leaks first, then by offset.
pub fn page(matcher: &Arc<Matcher>, page: &str) -> Vec<Finding> {
    let mut seen = HashSet::new();
    let mut out = Vec::new();
    for d in Decoding::ALL {
        for text in d.apply(page) {
            for f in leaks(matcher, &text).into_iter().chain(others(matcher, &text)) {
                // One place, one finding: the munged address a decoding
                // passes through unchanged is the raw one.
                if !found_near(&out, &f, d) && seen.insert((f.0.clone(), f.2)) {
                    out.push(Finding {
                        address: f.0,
                        kind: f.1,
                        decoding: d,
                        offset: f.2,
                    });
                }
            }
        }
    }
    out.sort_by_key(|f| (f.kind, f.offset));
    out
}

/// How far after the scanner's place for a spelled-out address another
/// reading can put it: the scanner finds `mjd [at] plover [dot] com` where
/// its local part ends, the `words` and `tags` readings at the `@` they
/// put in place of the word or after the tags (within the scanner's gap).
const SAME_PLACE: usize = 256;

/// Whether another reading found this leak already, a little before.
fn found_near(out: &[Finding], f: &(String, Kind, usize), d: Decoding) -> bool {
    f.1 == Kind::Leak
        && out.iter().any(|o| {
            o.kind == Kind::Leak
                && o.decoding != d
                && o.address == f.0
                && (o.offset..=o.offset + SAME_PLACE).contains(&f.2)
        })
}

/// The addresses the proxy's scanner would munge in `text`.
fn leaks(matcher: &Arc<Matcher>, text: &Text) -> Vec<(String, Kind, usize)> {
    let mut found = Vec::new();
    matcher.rewrite(text.s.as_bytes(), &mut |f: &Found<'_>, _: &mut Vec<u8>| {
        found.push((
            format!("{}@{}", f.local, f.domain),
            Kind::Leak,
            text.origin(f.offset as usize),
        ));
    });
    found
}

/// The munged and exempt addresses in `text`, spelled plainly.
fn others(matcher: &Arc<Matcher>, text: &Text) -> Vec<(String, Kind, usize)> {
    let p = matcher.protection();
    let s = text.s.as_bytes();
    let mut out = Vec::new();
    for at in memchr::memchr_iter(b'@', s) {
        let start = s[..at]
            .iter()
            .rposition(|&c| !is_local_char(c as u32))
            .map_or(0, |i| i + 1);
        let end = s[at + 1..]
            .iter()
            .position(|&c| !is_domain_char(c as u32))
            .map_or(s.len(), |i| at + 1 + i);
        let address = text.s[start..end].trim_start_matches('.').trim_end_matches('.');
        let kind = match p.parse(address) {
            Parsed::Munged(_) => Kind::Munged,
            Parsed::Exempt(_) => Kind::Exempt,
            _ => continue,
        };
        out.push((address.to_ascii_lowercase(), kind, text.origin(start)));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::address::{Glob, Protect, Protection};

    fn matcher() -> Arc<Matcher> {
        Matcher::new(Arc::new(Protection::new(
            vec![Protect {
                domain: "plover.com".into(),
                local: Glob::new("mjd*").unwrap(),
                exempt: vec![Glob::new("*-subscribe").unwrap()],
                deliver_to: None,
            }],
            "-id-",
        )))
    }

    fn kinds(page_text: &str) -> Vec<(String, Kind, Decoding)> {
        page(&matcher(), page_text)
            .into_iter()
            .map(|f| (f.address, f.kind, f.decoding))
            .collect()
    }

    #[test]
    fn leaks_munged_and_exempt_each_once() {
        let page_text = "<a href=\"mailto:mjd-id-0123456789abcdefghjkmnpq@plover.com\">x</a>
            mjd-subscribe@plover.com <p>mjd [at] plover [dot] com</p>
            https://mjd@plover.com/repo git@plover.com:mjd/x.git webmaster@plover.com";
        assert_eq!(
            kinds(page_text),
            [
                ("mjd@plover.com".into(), Kind::Leak, Decoding::Raw),
                (
                    "mjd-id-0123456789abcdefghjkmnpq@plover.com".into(),
                    Kind::Munged,
                    Decoding::Raw
                ),
                ("mjd-subscribe@plover.com".into(), Kind::Exempt, Decoding::Raw),
            ]
        );
    }

    #[test]
    fn an_address_in_clear_is_credited_to_the_raw_reading() {
        let f = page(&matcher(), "x mjd&#64;plover.com");
        assert_eq!(f.len(), 1, "{f:?}");
        assert_eq!((f[0].decoding, f[0].offset), (Decoding::Raw, 5));
    }

    /// The scanner reads the owner's spelled-out forms: such an address
    /// the proxy left alone is a leak in the raw reading, found once.
    #[test]
    fn a_spelled_out_address_in_clear_is_one_leak() {
        for text in ["x mjd<span></span>@plover.com", "x mjd (at) plover (dot) com"] {
            let f = page(&matcher(), text);
            assert_eq!(f.len(), 1, "{f:?}");
            assert_eq!((f[0].decoding, f[0].offset), (Decoding::Raw, 5), "{text}");
        }
    }

    #[test]
    fn a_page_without_protected_addresses_has_no_findings() {
        let page_text = "Meet me at the station, or at plover dot com's office. joe@example.com";
        assert!(page(&matcher(), page_text).is_empty());
    }
}
