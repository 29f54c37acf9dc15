//! Request targets and form fields given back their bare addresses. A
//! page's links to the site itself can hold the owner's address
//! (`/people/mjd@plover.com`, `/search?to=mjd%40plover.com`), and so can its
//! forms (FormMail's `<input type="hidden" name="recipient" value="…">`,
//! which the form handler checks against its own list); the proxy munged
//! them there like anywhere else, so the visitor's browser asks for
//! `/people/mjd-id-TOKEN@plover.com` and posts `recipient=mjd-id-TOKEN%40…`,
//! which the web server has never heard of. Before the request goes on, each
//! munged address in its target (and in a URL-encoded form's body) whose
//! token is authentic under the key ring
//! and of a kind the proxy inserts (a visitor's, a trap's or a crawler's ID,
//! for any visitor and day) loses the `SEP TOKEN` the proxy put in, and the
//! web server sees the URL it wrote. A token that is not authentic, and a
//! minted address (the owner hands those out, and may have written one into
//! a URL), are left as they are. Nothing here can put an address where there
//! was none: only bytes the proxy once inserted are taken out.

use std::ops::Range;

use memchr::memmem;

use crate::address::{MAX_LOCAL, Parsed, Protection, is_domain_char, is_local_char};
use crate::token::KeyRing;

/// The spellings of `@` a browser sends in a URL: as it is, percent-encoded,
/// and the fullwidth `＠` and small `﹫` percent-encoded as UTF-8 (a page
/// that wrote them raw).
const AT_FORMS: [&[u8]; 5] = [b"@", b"%40", b"%2540", b"%EF%BC%A0", b"%EF%B9%AB"];

/// The largest URL-encoded form body whose fields are restored; a longer
/// one (no contact form is) goes on as it came.
pub const FORM_MAX: u64 = 64 * 1024;

/// The most tokens checked against the key ring in one target or form: a
/// page's link or form holds a few addresses, and a crafted one must not
/// buy thousands of decryptions with one request.
const MAX_CHECKS: usize = 32;

/// `target` with the `SEP TOKEN` of every authentic munged address taken
/// out, or `None` when it holds none (the usual case, told by one search
/// for the separator).
pub fn restore(target: &str, protection: &Protection, keys: &KeyRing) -> Option<String> {
    // Only ASCII is taken out, between ASCII bytes: still UTF-8.
    restore_bytes(target.as_bytes(), protection, keys).and_then(|v| String::from_utf8(v).ok())
}

/// [`restore`] for bytes: a URL-encoded form body.
pub fn restore_bytes(b: &[u8], protection: &Protection, keys: &KeyRing) -> Option<Vec<u8>> {
    let sep = protection.separator().as_bytes();
    memmem::find(b, sep)?;
    let mut checks = MAX_CHECKS;
    let mut cuts: Vec<Range<usize>> = Vec::new();
    for (at, len) in at_signs(b) {
        if checks == 0 {
            break;
        }
        cuts.extend(munged_before(b, at, len, protection, keys, &mut checks));
    }
    if cuts.is_empty() {
        return None;
    }
    let mut out = Vec::with_capacity(b.len());
    let mut from = 0;
    for cut in cuts {
        out.extend_from_slice(&b[from..cut.start]);
        from = cut.end;
    }
    out.extend_from_slice(&b[from..]);
    Some(out)
}

/// Where each spelling of `@` in `b` starts, and its length.
fn at_signs(b: &[u8]) -> impl Iterator<Item = (usize, usize)> + '_ {
    memchr::memchr2_iter(b'@', b'%', b).filter_map(|i| {
        AT_FORMS
            .iter()
            .find(|f| b.len() >= i + f.len() && b[i..i + f.len()].eq_ignore_ascii_case(f))
            .map(|f| (i, f.len()))
    })
}

/// The domain at the start of `b`: its ASCII characters, and, when an
/// international domain is protected (`unicode`), letters outside ASCII as a
/// browser sends them, raw or percent-encoded UTF-8 (`b%C3%BCcher.example`,
/// which `parse` reads as the protected `xn--bcher-kva.example`). An escape
/// of an ASCII byte (`%2F`) ends it.
fn domain_after(b: &[u8], unicode: bool) -> Option<String> {
    let mut out = Vec::new();
    let mut i = 0;
    while let Some(&c) = b.get(i) {
        let byte = match c {
            b'%' if unicode => match (b.get(i + 1..i + 3))
                .and_then(|h| u8::from_str_radix(std::str::from_utf8(h).ok()?, 16).ok())
            {
                Some(v) if v >= 0x80 => v,
                _ => break,
            },
            c if (unicode && c >= 0x80) || is_domain_char(c.into()) => c,
            _ => break,
        };
        i += if c == b'%' { 3 } else { 1 };
        out.push(byte);
        if out.len() > MAX_DOMAIN_BYTES {
            return None;
        }
    }
    String::from_utf8(out).ok()
}

/// A domain's longest spelling in UTF-8 worth decoding (253 octets in its
/// ASCII form; a Unicode letter takes at most four).
const MAX_DOMAIN_BYTES: usize = 4 * 253;

/// The bytes to take out for the `@` spelled `b[at..at + len]`: from the
/// separator to the `@`, when the address around it is a munged one of
/// ours with an authentic token.
/// Each token checked takes one of `checks`.
fn munged_before(
    b: &[u8],
    at: usize,
    len: usize,
    protection: &Protection,
    keys: &KeyRing,
    checks: &mut usize,
) -> Option<Range<usize>> {
    let start = b[..at]
        .iter()
        .rposition(|&c| !is_local_char(c.into()))
        .map_or(0, |i| i + 1);
    // A munged local part is a base local part, the separator and a token
    // (shorter than a base): a longer run is none, and is not taken apart
    // (a target of separators would cost a pass over it for each one).
    let sep = protection.separator().as_bytes();
    if at - start > 2 * MAX_LOCAL + sep.len() || memmem::find(&b[start..at], sep).is_none() {
        return None;
    }
    let domain = domain_after(&b[at + len..], protection.has_unicode_domains())?;
    // In a query or a form a `+` is a space (`message=write+to+mjd-id-…`):
    // the local part may also start after any `+`, and after a
    // percent-encoding whose digits began the run (`mailto%3Amjd-id-…`).
    let pluses = memchr::memchr_iter(b'+', &b[start..at]).map(|i| start + i + 1);
    let escaped = (start > 0 && b[start - 1] == b'%' && at - start > 2)
        .then_some(start + 2)
        .filter(|&s| b[s - 2..s].iter().all(u8::is_ascii_hexdigit));
    std::iter::once(start)
        .chain(escaped)
        .chain(pluses)
        .find_map(|from| {
            let local = std::str::from_utf8(&b[from..at]).ok()?;
            let Parsed::Munged(readings) = protection.parse(&format!("{local}@{domain}")) else {
                return None;
            };
            readings.iter().find_map(|m| {
                *checks = checks.checked_sub(1)?;
                let decoded = keys.decode(&m.base, &m.label, &m.token).ok()?;
                decoded.claims.visitor?;
                let base_local = m.base.rsplit_once('@').map_or(0, |(l, _)| l.len());
                // `parse` drops nothing from the front of the local part.
                Some(from + base_local..at)
            })
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::address::tests::prot as protection;
    use crate::day::Day;
    use crate::token::Claims;

    fn keys() -> KeyRing {
        KeyRing::new(&[[7u8; 32]])
    }

    fn token(base: &str) -> String {
        let claims = Claims::visit(
            crate::token::Kind::Visitor,
            Day::today(),
            "192.0.2.7".parse().unwrap(),
        );
        keys().encode(base, "", &claims)
    }

    fn restored(target: &str) -> Option<String> {
        restore(target, &protection(), &keys())
    }

    #[test]
    fn authentic_ids_are_taken_out_in_every_place() {
        let t = token("mjd@plover.com");
        let j = token("joe.bloggs+lists@plover.com");
        let cases = [
            (format!("/people/mjd-id-{t}@plover.com"), "/people/mjd@plover.com"),
            (
                format!("/people/MJD-id-{t}@PLOVER.COM/"),
                "/people/MJD@PLOVER.COM/",
            ),
            (
                format!("/search?to=mjd-id-{t}%40plover.com&x=1"),
                "/search?to=mjd%40plover.com&x=1",
            ),
            (format!("/u?a=mjd-id-{t}%40plover.com"), "/u?a=mjd%40plover.com"),
            (
                format!("/u?to=mailto%3Amjd-id-{t}%40plover.com"),
                "/u?to=mailto%3Amjd%40plover.com",
            ),
            (
                format!("/go?to=mailto%3Amjd-id-{t}%2540plover.com"),
                "/go?to=mailto%3Amjd%2540plover.com",
            ),
            (
                format!("/u?q=write+to+mjd-id-{t}%40plover.com"),
                "/u?q=write+to+mjd%40plover.com",
            ),
            (
                format!("/f?to=mjd-id-{t}%ef%bc%a0plover.com"),
                "/f?to=mjd%ef%bc%a0plover.com",
            ),
            (
                format!("/people/mjd-id-{t}@plover.com%2Fx"),
                "/people/mjd@plover.com%2Fx",
            ),
            (
                format!("/two/mjd-id-{t}@plover.com/joe.bloggs+lists-id-{j}@plover.com"),
                "/two/mjd@plover.com/joe.bloggs+lists@plover.com",
            ),
        ];
        for (target, want) in cases {
            assert_eq!(restored(&target).as_deref(), Some(want), "{target}");
        }
    }

    /// A link to an international domain's address: a browser sends the
    /// domain percent-encoded (or raw, from a client that does not).
    #[test]
    fn an_international_domain_is_read_as_a_browser_sends_it() {
        let domain = crate::address::check_domain("bücher.example").unwrap();
        let p = Protection::new(
            vec![crate::address::Protect {
                domain,
                local: crate::address::Glob::new("*").unwrap(),
                exempt: vec![],
                deliver_to: None,
            }],
            "-id-",
        );
        let t = token("mjd@xn--bcher-kva.example");
        for (target, want) in [
            (
                format!("/p/mjd-id-{t}@b%C3%BCcher.example/"),
                "/p/mjd@b%C3%BCcher.example/",
            ),
            (format!("/p/mjd-id-{t}@bücher.example"), "/p/mjd@bücher.example"),
            (
                format!("/p?to=mjd-id-{t}%40xn--bcher-kva.example"),
                "/p?to=mjd%40xn--bcher-kva.example",
            ),
        ] {
            assert_eq!(restore(&target, &p, &keys()).as_deref(), Some(want), "{target}");
        }
        let other = format!("/p/mjd-id-{t}@b%C3%BCcherei.example/");
        assert_eq!(restore(&other, &p, &keys()), None);
    }

    #[test]
    fn anything_else_is_left_as_it_is() {
        let t = token("mjd@plover.com");
        let mut forged = t.clone().into_bytes();
        forged[5] = if forged[5] == b'a' { b'b' } else { b'a' };
        let forged = String::from_utf8(forged).unwrap();
        let minted = keys().encode("mjd@plover.com", "", &Claims::minted(Day::today(), 0));
        for target in [
            "/".to_owned(),
            "/people/mjd@plover.com".to_owned(),
            format!("/people/mjd-id-{forged}@plover.com"),
            // Another base's token, another domain, no @ after it.
            format!("/people/joe-id-{t}@plover.com"),
            format!("/people/mjd-id-{t}@example.com"),
            format!("/people/mjd-id-{t}"),
            format!("/people/mjd-id-{t}%41plover.com"),
            format!("/people/mjd-id-{minted}@plover.com"),
            // Longer than any munged local part.
            format!("/people/{}mjd-id-{t}@plover.com", "a-id-".repeat(30)),
        ] {
            assert_eq!(restored(&target), None, "{target}");
        }
    }

    /// A crafted target buys a bounded number of token checks: past them,
    /// even an authentic ID stays in.
    #[test]
    fn token_checks_are_bounded() {
        let t = token("mjd@plover.com");
        let forged = format!(
            "/x/{}",
            "a+".repeat(40) + &format!("mjd-id-{}@plover.com/", "0".repeat(24))
        );
        let target = format!("{forged}mjd-id-{t}@plover.com");
        assert_eq!(restored(&target), None);
        let few = format!("/x/mjd-id-{}@plover.com/mjd-id-{t}@plover.com", "0".repeat(24));
        assert_eq!(
            restored(&few).as_deref(),
            Some(format!("/x/mjd-id-{}@plover.com/mjd@plover.com", "0".repeat(24)).as_str())
        );
    }
}
