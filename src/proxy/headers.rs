//! Header policy: what the web server is told (hop-by-hop headers
//! stripped, forwarded-for from trusted peers only, our validators
//! translated back), what the visitor gets (rewritten responses made
//! private to them), and what the request and response say about
//! themselves (codings, upgrades, the media type).

use std::net::IpAddr;
use std::sync::Arc;

use hyper::header::{self, HeaderMap, HeaderName, HeaderValue};
use ipnet::IpNet;

use crate::config::TypePattern;
use crate::rewrite::{Compress, TokenCache};
use crate::scan::{Matcher, Munger, Scanner};
use crate::token::{Claims, KeyRing};

/// A response's `Content-Type`, parsed once.
pub(super) struct MediaType {
    /// `type/subtype`, lowercase.
    pub(super) essence: String,
    /// The `charset` parameter, lowercase and unquoted.
    pub(super) charset: Option<String>,
    /// The charset's encoding, when it names one.
    pub(super) encoding: Option<&'static encoding_rs::Encoding>,
    /// See [`MediaType::is_unknown`].
    unknown: bool,
}

impl MediaType {
    /// The media type `h` declares (empty when it declares none).
    pub(super) fn of(h: &HeaderMap) -> MediaType {
        let ct = h
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        let mut parts = ct.split(';');
        let essence = parts.next().unwrap_or("").trim().to_ascii_lowercase();
        let charset = parts
            .filter_map(|p| p.trim().split_once('='))
            .find(|(k, _)| k.trim().eq_ignore_ascii_case("charset"))
            .map(|(_, v)| v.trim().trim_matches('"').to_ascii_lowercase());
        // No usable type: none given, not `type/subtype`, or one of those
        // the WHATWG MIME sniffing standard calls unknown.
        let unknown = !essence
            .split_once('/')
            .is_some_and(|(t, s)| !t.is_empty() && !s.is_empty())
            || matches!(
                essence.as_str(),
                "unknown/unknown" | "application/unknown" | "*/*"
            );
        MediaType {
            essence,
            charset,
            encoding: crate::rewrite::charset::from_content_type(ct),
            unknown,
        }
    }

    /// No usable type (decided once, in [`MediaType::of`]). A browser
    /// sniffs such a body, and shows it as HTML or text when it looks like that.
    pub(super) fn is_unknown(&self) -> bool {
        self.unknown
    }

    /// HTML or XHTML.
    pub(super) fn is_html(&self) -> bool {
        self.essence == "text/html" || self.essence == "application/xhtml+xml"
    }
}

/// True when `Accept-Encoding` takes `coding` (by name, else by `*`; not with q=0).
fn accepts_coding(h: &HeaderMap, coding: &str) -> bool {
    coding_weight(h, coding) > 0.0
}

/// `coding`'s q-value in `Accept-Encoding`: its own entry's, else `*`'s,
/// else 0 (not taken).
fn coding_weight(h: &HeaderMap, coding: &str) -> f32 {
    named_weight(h, coding)
        .or_else(|| named_weight(h, "*"))
        .unwrap_or(0.0)
}

/// What a rewritten body is compressed with for this client: what it
/// weighs higher of zstd and gzip, and at equal weights (as browsers send
/// them) what costs the proxy less CPU for about the same size: gzip when
/// its stretches are kept (`gzip_kept`: ~20 µs a 45 KB page against ~120
/// for zstd), else zstd (against ~180 for gzip made whole).
pub(super) fn compression_for(h: &HeaderMap, gzip_kept: bool) -> Option<Compress> {
    let gzip = coding_weight(h, "gzip");
    match named_weight(h, "zstd") {
        Some(z) if z > 0.0 && (z > gzip || (z == gzip && !gzip_kept)) => Some(Compress::Zstd),
        _ => (gzip > 0.0).then_some(Compress::Gzip),
    }
}

/// The q-value of `coding`'s own entry in `Accept-Encoding` (1 when it
/// gives none), if it has one.
fn named_weight(h: &HeaderMap, coding: &str) -> Option<f32> {
    h.get_all(header::ACCEPT_ENCODING)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .find_map(|item| {
            let mut it = item.split(';');
            it.next()
                .is_some_and(|name| name.trim().eq_ignore_ascii_case(coding))
                .then(|| weight(it))
        })
}

/// The q-value among the parameters after an `Accept` or `Accept-Encoding`
/// item; 1 when none is given (or it does not parse).
fn weight<'a>(mut params: impl Iterator<Item = &'a str>) -> f32 {
    params
        .find_map(|p| {
            let (k, q) = p.split_once('=')?;
            k.trim()
                .eq_ignore_ascii_case("q")
                .then(|| q.trim().parse::<f32>().ok())?
        })
        .unwrap_or(1.0)
}

pub(super) fn is_upgrade(h: &HeaderMap) -> bool {
    h.contains_key(header::UPGRADE)
        && h.get_all(header::CONNECTION)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .any(|v| v.split(',').any(|t| t.trim().eq_ignore_ascii_case("upgrade")))
}

// Names, not strings: a `&str` is parsed into a name at every lookup, and
// these are looked up for every request.
static HOP_BY_HOP: [HeaderName; 9] = [
    header::CONNECTION,
    HeaderName::from_static("keep-alive"),
    HeaderName::from_static("proxy-connection"),
    header::TE,
    header::TRAILER,
    header::TRANSFER_ENCODING,
    header::UPGRADE,
    header::PROXY_AUTHORIZATION,
    header::PROXY_AUTHENTICATE,
];

/// Removes hop-by-hop headers (and those named in `Connection`); with
/// `keep_upgrade`, `Connection: upgrade` and `Upgrade` stay for a WebSocket.
pub(super) fn strip_hop_by_hop(h: &mut HeaderMap, keep_upgrade: bool) {
    // Parsing a name lower-cases it.
    let named = h
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|t| HeaderName::from_bytes(t.trim().as_bytes()).ok());
    let present = present(h, &HOP_BY_HOP);
    // A WebSocket keeps its upgrade (`Connection` is written anew below).
    let kept = |n: &HeaderName| keep_upgrade && (n == header::CONNECTION || n == header::UPGRADE);
    let doomed: Vec<HeaderName> = named.chain(present).filter(|n| !kept(n)).collect();
    for n in &doomed {
        h.remove(n);
    }
    if keep_upgrade {
        h.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
    }
}

/// Which of `names` `h` holds. Only those present are removed: most
/// requests and responses carry none or one of them, and a removal hashes
/// its name to look it up (removing all twelve claims of origin was 2% of a
/// request passed through).
fn present<'a>(h: &'a HeaderMap, names: &'a [HeaderName]) -> impl Iterator<Item = HeaderName> + 'a {
    h.keys().filter(|n| names.contains(n)).cloned()
}

/// Headers that claim who the visitor is or where the request came from.
/// From a peer that is not a trusted proxy they are lies until proven
/// otherwise: the web server must not log or act on them.
static CLAIMS_OF_ORIGIN: [HeaderName; 12] = [
    header::FORWARDED,
    X_REAL_IP,
    HeaderName::from_static("x-forwarded-host"),
    HeaderName::from_static("x-forwarded-port"),
    HeaderName::from_static("x-forwarded-server"),
    HeaderName::from_static("x-forwarded-prefix"),
    HeaderName::from_static("x-forwarded-ssl"),
    HeaderName::from_static("x-client-ip"),
    HeaderName::from_static("x-cluster-client-ip"),
    HeaderName::from_static("true-client-ip"),
    HeaderName::from_static("cf-connecting-ip"),
    HeaderName::from_static("fastly-client-ip"),
];

const X_REAL_IP: HeaderName = HeaderName::from_static("x-real-ip");
pub(super) const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
const X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
const SEC_FETCH_DEST: HeaderName = HeaderName::from_static("sec-fetch-dest");

pub(super) fn forward_headers(
    incoming: &HeaderMap,
    peer: IpAddr,
    trusted: &[IpNet],
    upgrade: bool,
    https: bool,
) -> HeaderMap {
    let proto = if https { "https" } else { "http" };
    let mut h = incoming.clone();
    strip_hop_by_hop(&mut h, upgrade);
    let from_trusted = trusted.iter().any(|n| n.contains(&peer));
    // Written once: formatting an address is the dearest step here.
    let peer_text = crate::ip_text::ip_text(peer);
    let peer_value = HeaderValue::from_str(&peer_text).ok();
    if !from_trusted {
        for name in present(&h, &CLAIMS_OF_ORIGIN).collect::<Vec<_>>() {
            h.remove(name);
        }
        // As X-Forwarded-For: replaced by what the socket says.
        if let Some(v) = peer_value.clone() {
            h.insert(X_REAL_IP, v);
        }
        let forwarded = match peer {
            IpAddr::V4(_) => ["for=", &peer_text, ";proto=", proto].concat(),
            IpAddr::V6(_) => ["for=\"[", &peer_text, "]\";proto=", proto].concat(),
        };
        if let Ok(v) = HeaderValue::from_str(&forwarded) {
            h.insert(header::FORWARDED, v);
        }
    }
    // X-Forwarded-For: extend the chain only when the peer is a proxy we trust.
    let prev = (h.get(X_FORWARDED_FOR).and_then(|v| v.to_str().ok()))
        .filter(|prev| from_trusted && !prev.trim().is_empty());
    let xff = match prev {
        Some(prev) => HeaderValue::from_str(&format!("{prev}, {peer_text}")).ok(),
        None => peer_value,
    };
    if let Some(v) = xff {
        h.insert(X_FORWARDED_FOR, v);
    }
    if !from_trusted || !h.contains_key(X_FORWARDED_PROTO) {
        h.insert(X_FORWARDED_PROTO, HeaderValue::from_static(proto));
    }
    h.append(header::VIA, HeaderValue::from_static("1.1 addrmunge"));
    h
}

/// The codings the web server is asked for: none when the answer will be
/// rewritten, as far as the request tells (the proxy would only undo the
/// server's compression, then compress again: twice the CPU on both sides
/// for the same bytes to the visitor); otherwise those the pipeline can
/// undo that the client takes.
pub(super) fn ask_codings(h: &mut HeaderMap, incoming: &HeaderMap, rewrite_types: &[TypePattern]) {
    if expects_rewritten(incoming, rewrite_types) {
        h.insert(header::ACCEPT_ENCODING, HeaderValue::from_static("identity"));
        return;
    }
    let enc: Vec<&str> = ["gzip", "deflate", "br", "zstd"]
        .into_iter()
        .filter(|c| accepts_coding(incoming, c))
        .collect();
    if enc.is_empty() {
        h.remove(header::ACCEPT_ENCODING);
    } else if let Ok(v) = HeaderValue::from_str(&enc.join(", ")) {
        h.insert(header::ACCEPT_ENCODING, v);
    }
}

/// Whether the request asks for a type the proxy rewrites: a page, a
/// stylesheet or a script by browsers' `Sec-Fetch-Dest`; for `fetch` calls
/// and from clients that do not send it, an `Accept` that names one (a
/// navigation's `text/html`, a stylesheet's `text/css`, an API call's
/// `application/json`). Images, fonts and a bare `*/*` say nothing sure,
/// and keep their compression.
fn expects_rewritten(h: &HeaderMap, rewrite_types: &[TypePattern]) -> bool {
    let rewrites = |t: &str| TypePattern::any(rewrite_types, t);
    let dest = h
        .get(SEC_FETCH_DEST)
        .and_then(|v| v.to_str().ok())
        .map(|d| d.trim().to_ascii_lowercase());
    match dest.as_deref() {
        Some("document" | "iframe" | "frame") => rewrites("text/html"),
        Some("style") => rewrites("text/css"),
        // Servers label scripts either way: sure only if both are rewritten.
        Some("script" | "worker" | "sharedworker" | "serviceworker") => {
            rewrites("text/javascript") && rewrites("application/javascript")
        }
        None | Some("empty") => accepted_types(h).any(rewrites),
        Some(_) => false,
    }
}

/// The media types `Accept` names and takes (not with q=0), wildcards left out.
fn accepted_types(h: &HeaderMap) -> impl Iterator<Item = &str> {
    h.get_all(header::ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|range| {
            let mut params = range.split(';');
            let media = params.next()?.trim();
            (weight(params) > 0.0 && !media.contains('*')).then_some(media)
        })
}

/// A short keyed tag for the visitor-day-kind, put into validators so a
/// cache never serves one visitor's IDs to another. Keyed, so it reveals
/// nothing about the IP.
pub(super) fn validator_suffix(keys: &KeyRing, cache: &TokenCache, claims: &Claims) -> String {
    // Through the token cache: one encryption per visitor-day, not per request.
    cache.get(keys, claims, "validator.addrmunge.invalid")[1..9].to_owned()
}

/// Rewrites the owner's addresses in the response's header values as in a
/// body (a redirect to `mailto:`, a `Link` or `Refresh` naming one would
/// hand them to a harvester as they are); returns how many. `Set-Cookie` is
/// left as sent: the browser sends it back, and the site must get what it set.
/// The scanner and the munger (from `munger`) are made only for a value
/// that may hold an address: most responses have none.
pub(super) fn munge_headers<M: Munger>(
    h: &mut HeaderMap,
    matcher: &Arc<Matcher>,
    munger: impl Fn() -> M,
) -> u64 {
    if !any_may_hold_address(h, matcher) {
        return 0;
    }
    let mut scanning: Option<(Scanner, M)> = None;
    let mut out = Vec::new();
    for (name, value) in h.iter_mut() {
        if !is_scanned(name) || !matcher.may_hold_address(value.as_bytes()) {
            continue;
        }
        let (s, m) = scanning.get_or_insert_with(|| (matcher.scanner(), munger()));
        out.clear();
        s.feed(value.as_bytes(), &mut out, m);
        s.finish(&mut out, m);
        // Only `[a-z0-9-]` and configured domains are inserted: still a
        // valid value.
        if out != value.as_bytes()
            && let Ok(v) = HeaderValue::from_bytes(&out)
        {
            *value = v;
        }
    }
    scanning.map_or(0, |(s, _)| s.munged())
}

/// Whether any value [`munge_headers`] scans may hold an address, asked
/// of all of them at once, a line each: a search's setup costs more than
/// a short value's bytes (seven values asked one by one were 1.5% of a
/// request's instructions). No value holds a line break, nor does any
/// search's literal, so no match spans two values.
fn any_may_hold_address(h: &HeaderMap, matcher: &Matcher) -> bool {
    let scanned = || {
        h.iter()
            .filter(|(name, _)| is_scanned(name))
            .map(|(_, v)| v.as_bytes())
    };
    let mut lines = Vec::with_capacity(scanned().map(|v| v.len() + 1).sum());
    for v in scanned() {
        lines.extend_from_slice(v);
        lines.push(b'\n');
    }
    matcher.may_hold_address(&lines)
}

/// Whether [`munge_headers`] scans a header's values: all but `Set-Cookie`.
fn is_scanned(name: &HeaderName) -> bool {
    name != header::SET_COOKIE
}

/// `ETag: "abc"` -> `W/"abc.s-<vd>"`, weak ones `.w-<vd>`; `Cache-Control` private.
pub(super) fn private_headers(h: &mut HeaderMap, vd: &str) {
    h.remove(header::CONTENT_LENGTH);
    h.remove(header::ACCEPT_RANGES);
    if let Some(tag) = h
        .get(header::ETAG)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
    {
        let (weak, opaque) = match tag.strip_prefix("W/") {
            Some(t) => (true, t),
            None => (false, tag.as_str()),
        };
        let inner = opaque.trim_matches('"');
        let mark = if weak { "w" } else { "s" };
        match HeaderValue::from_str(&["W/\"", inner, ".", mark, "-", vd, "\""].concat()) {
            Ok(v) => {
                h.insert(header::ETAG, v);
            }
            Err(_) => {
                h.remove(header::ETAG);
            }
        }
    }
    private_cache_control(h);
}

/// `Cache-Control: private` first, and the directives that let shared
/// caches keep the response gone.
pub(super) fn private_cache_control(h: &mut HeaderMap) {
    // The usual case for a page: the web server said nothing.
    if !h.contains_key(header::CACHE_CONTROL) {
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("private"));
        return;
    }
    let mut directives: Vec<String> = h
        .get_all(header::CACHE_CONTROL)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(',').map(|d| d.trim().to_owned()).collect::<Vec<_>>())
        .filter(|d| {
            let name = d.split('=').next().unwrap_or("").trim().to_ascii_lowercase();
            !d.is_empty()
                && !matches!(
                    name.as_str(),
                    "public" | "s-maxage" | "private" | "proxy-revalidate"
                )
        })
        .collect();
    directives.insert(0, "private".into());
    if let Ok(v) = HeaderValue::from_str(&directives.join(", ")) {
        h.insert(header::CACHE_CONTROL, v);
    }
}

/// Turns our validators in `If-None-Match` back into the upstream's; tags
/// from another visitor-day are dropped so the upstream sends the whole page.
/// Returns whether one of this visitor-day's validators was asked for (a
/// 304 then carries the validator that must be made ours again).
pub(super) fn translate_if_none_match(h: &mut HeaderMap, vd: &str) -> bool {
    let Some(value) = h
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
    else {
        return false;
    };
    if value.trim() == "*" {
        return false;
    }
    let mut mine = false;
    let mut out = Vec::new();
    for tag in value.split(',').map(str::trim) {
        let opaque = tag.strip_prefix("W/").unwrap_or(tag).trim_matches('"');
        if let Some((orig, suffix)) = opaque.rsplit_once('.') {
            if suffix == format!("s-{vd}") {
                out.push(format!("\"{orig}\""));
                mine = true;
                continue;
            }
            if suffix == format!("w-{vd}") {
                out.push(format!("W/\"{orig}\""));
                mine = true;
                continue;
            }
        }
        let ours = opaque
            .rsplit_once('.')
            .is_some_and(|(_, s)| s.starts_with("s-") || s.starts_with("w-"));
        if !ours {
            out.push(tag.to_owned());
        }
    }
    if out.is_empty() {
        h.remove(header::IF_NONE_MATCH);
    } else if let Ok(v) = HeaderValue::from_str(&out.join(", ")) {
        h.insert(header::IF_NONE_MATCH, v);
    }
    mine
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (n, v) in pairs {
            h.append(HeaderName::from_static(n), HeaderValue::from_static(v));
        }
        h
    }

    fn names(h: &HeaderMap) -> Vec<&str> {
        let mut n: Vec<&str> = h.keys().map(HeaderName::as_str).collect();
        n.sort_unstable();
        n
    }

    #[test]
    fn header_values_are_asked_about_addresses_together_but_apart() {
        let matcher = Matcher::new(Arc::new(crate::address::tests::prot()));
        let may = |pairs: &[(&'static str, &'static str)]| any_may_hold_address(&headers(pairs), &matcher);
        assert!(!may(&[]));
        assert!(!may(&[("content-type", "text/html"), ("server", "nginx")]));
        assert!(may(&[("content-type", "text/html"), ("link", "<mailto:mjd@x>")]));
        assert!(may(&[("server", "nginx"), ("refresh", "0; url=/plover")]));
        // A label split across two values is in neither.
        assert!(!may(&[("x-one", "plo"), ("x-two", "ver")]));
        // The cookie is never scanned, so it alone asks for nothing.
        assert!(!may(&[("set-cookie", "owner=mjd@plover.com")]));
    }

    #[test]
    fn hop_by_hop_headers_and_those_connection_names_are_removed() {
        let sent = [
            ("connection", "Keep-Alive, X-Private-Hop, Upgrade"),
            ("connection", "close"),
            ("keep-alive", "timeout=5"),
            ("x-private-hop", "1"),
            ("upgrade", "websocket"),
            ("te", "trailers"),
            ("trailer", "Expires"),
            ("proxy-authorization", "Basic eDp5"),
            ("proxy-connection", "keep-alive"),
            ("host", "plover.com"),
            ("accept", "text/html"),
        ];
        let mut h = headers(&sent);
        strip_hop_by_hop(&mut h, false);
        assert_eq!(names(&h), ["accept", "host"]);

        // A WebSocket keeps its upgrade, and only that in Connection.
        let mut h = headers(&sent);
        strip_hop_by_hop(&mut h, true);
        assert_eq!(names(&h), ["accept", "connection", "host", "upgrade"]);
        assert_eq!(h[header::CONNECTION], "upgrade");
        assert_eq!(h[header::UPGRADE], "websocket");

        // None of them: nothing moves.
        let mut h = headers(&sent[9..]);
        strip_hop_by_hop(&mut h, false);
        assert_eq!(names(&h), ["accept", "host"]);
    }

    #[test]
    fn responses_are_made_private() {
        let mut h = HeaderMap::new();
        private_cache_control(&mut h);
        assert_eq!(h[header::CACHE_CONTROL], "private");
        let mut h = headers(&[
            ("cache-control", "Public"),
            ("cache-control", "no-transform, S-MaxAge=9"),
        ]);
        private_cache_control(&mut h);
        assert_eq!(h.get_all(header::CACHE_CONTROL).iter().count(), 1);
        assert_eq!(h[header::CACHE_CONTROL], "private, no-transform");
    }

    #[test]
    fn validators_round_trip() {
        let mut h = HeaderMap::new();
        h.insert(header::ETAG, HeaderValue::from_static("\"abc\""));
        h.insert(
            header::CACHE_CONTROL,
            HeaderValue::from_static("public, max-age=60, s-maxage=600"),
        );
        private_headers(&mut h, "vd12345x");
        assert_eq!(h[header::ETAG], "W/\"abc.s-vd12345x\"");
        assert_eq!(h[header::CACHE_CONTROL], "private, max-age=60");
        let mut req = HeaderMap::new();
        req.insert(
            header::IF_NONE_MATCH,
            HeaderValue::from_static("W/\"abc.s-vd12345x\", W/\"abc.s-other000\""),
        );
        let _ = translate_if_none_match(&mut req, "vd12345x");
        assert_eq!(req[header::IF_NONE_MATCH], "\"abc\"");
        let mut req = HeaderMap::new();
        req.insert(
            header::IF_NONE_MATCH,
            HeaderValue::from_static("W/\"abc.s-other000\""),
        );
        let _ = translate_if_none_match(&mut req, "vd12345x");
        assert!(!req.contains_key(header::IF_NONE_MATCH));
    }

    #[test]
    fn claims_of_origin_from_untrusted_peers_never_reach_the_web_server() {
        let mut h = HeaderMap::new();
        for (k, v) in [
            ("forwarded", "for=192.0.2.66;host=evil.example"),
            ("x-real-ip", "192.0.2.66"),
            ("x-forwarded-host", "evil.example"),
            ("true-client-ip", "192.0.2.66"),
            ("x-forwarded-for", "192.0.2.66"),
        ] {
            h.insert(k, HeaderValue::from_static(v));
        }
        let out = forward_headers(&h, "203.0.113.9".parse().unwrap(), &[], false, false);
        assert_eq!(out["x-real-ip"], "203.0.113.9");
        assert_eq!(out["forwarded"], "for=203.0.113.9;proto=http");
        assert_eq!(out["x-forwarded-for"], "203.0.113.9");
        assert!(!out.contains_key("x-forwarded-host") && !out.contains_key("true-client-ip"));
        let out = forward_headers(&h, "2001:db8::1".parse().unwrap(), &[], false, false);
        assert_eq!(out["forwarded"], "for=\"[2001:db8::1]\";proto=http");
        // Over TLS at the proxy, the web server is told so both ways.
        let out = forward_headers(&h, "2001:db8::1".parse().unwrap(), &[], false, true);
        assert_eq!(out["forwarded"], "for=\"[2001:db8::1]\";proto=https");
        assert_eq!(out["x-forwarded-proto"], "https");
        // From a trusted proxy they are its to give.
        let trusted = vec!["127.0.0.1/32".parse().unwrap()];
        let out = forward_headers(&h, "127.0.0.1".parse().unwrap(), &trusted, false, false);
        assert_eq!(out["x-forwarded-host"], "evil.example");
        assert_eq!(out["x-real-ip"], "192.0.2.66");
        // Every one of them, however often sent, and nothing else.
        let mut h = headers(&[("accept", "*/*"), ("x-custom", "kept")]);
        for name in &CLAIMS_OF_ORIGIN {
            h.append(name, HeaderValue::from_static("192.0.2.66"));
            h.append(name, HeaderValue::from_static("192.0.2.67"));
        }
        let out = forward_headers(&h, "203.0.113.9".parse().unwrap(), &[], false, false);
        for name in &CLAIMS_OF_ORIGIN {
            let sent: Vec<_> = out.get_all(name).iter().collect();
            assert!(
                sent.iter().all(|v| !v.as_bytes().starts_with(b"192.0.2.")),
                "{name}: {sent:?}"
            );
        }
        assert_eq!(
            (&out["accept"], &out["x-custom"]),
            (
                &HeaderValue::from_static("*/*"),
                &HeaderValue::from_static("kept")
            )
        );
    }

    #[test]
    fn gzip_acceptance() {
        for (accept, takes) in [
            ("br, gzip;q=0.5", true),
            ("gzip;q=0, br", false),
            ("br, gzip; Q = 0.000", false),
            ("gzip;q=0.001", true),
            ("br, gzip;q=0, *", false),
            ("br, *", true),
        ] {
            let mut h = HeaderMap::new();
            h.insert(header::ACCEPT_ENCODING, HeaderValue::from_static(accept));
            assert_eq!(accepts_coding(&h, "gzip"), takes, "{accept}");
        }
    }

    /// What the client weighs higher; at a tie, gzip when its stretches
    /// are kept, else zstd.
    #[test]
    fn compression_chosen_for_the_client() {
        let (gzip, zstd) = (Some(Compress::Gzip), Some(Compress::Zstd));
        for (accept, kept, made_whole) in [
            ("gzip, deflate, br, zstd", gzip, zstd),
            ("zstd;q=0.5, gzip", gzip, gzip),
            ("gzip;q=0.5, zstd", zstd, zstd),
            ("zstd;q=0, gzip", gzip, gzip),
            ("zstd", zstd, zstd),
            ("gzip, deflate, br", gzip, gzip),
            ("*", gzip, gzip),
            ("br", None, None),
            ("identity", None, None),
        ] {
            let mut h = HeaderMap::new();
            h.insert(header::ACCEPT_ENCODING, HeaderValue::from_static(accept));
            assert_eq!(compression_for(&h, true), kept, "{accept}");
            assert_eq!(compression_for(&h, false), made_whole, "{accept}");
        }
        assert_eq!(compression_for(&HeaderMap::new(), true), None);
    }

    /// Pages, stylesheets and scripts are asked for uncompressed; the rest
    /// keeps the codings the client and the pipeline share.
    #[test]
    fn codings_asked_of_the_web_server() {
        let patterns = |ts: &[&str]| -> Vec<TypePattern> {
            ts.iter().map(|t| TypePattern::parse("t", t).unwrap()).collect()
        };
        let types = patterns(crate::config::DEFAULT_REWRITE_TYPES);
        let asked = |headers: &[(&'static str, &'static str)], types: &[TypePattern]| {
            let mut incoming = HeaderMap::new();
            incoming.insert(
                header::ACCEPT_ENCODING,
                HeaderValue::from_static("gzip, deflate, br, zstd, xz"),
            );
            for (k, v) in headers {
                incoming.insert(*k, HeaderValue::from_static(v));
            }
            let mut out = incoming.clone();
            ask_codings(&mut out, &incoming, types);
            out[header::ACCEPT_ENCODING].to_str().unwrap().to_owned()
        };
        let page = (
            "accept",
            "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8",
        );
        let all = "gzip, deflate, br, zstd";
        assert_eq!(asked(&[page], &types), "identity");
        assert_eq!(asked(&[("accept", "text/css,*/*;q=0.1")], &types), "identity");
        assert_eq!(asked(&[("accept", "image/avif,image/webp,*/*")], &types), all);
        assert_eq!(asked(&[("accept", "*/*")], &types), all);
        assert_eq!(asked(&[], &types), all);
        assert_eq!(
            asked(&[("accept", "application/json, text/plain, */*")], &types),
            "identity"
        );
        assert_eq!(asked(&[("accept", "text/html;q=0, image/png")], &types), all);
        let any = ("accept", "*/*");
        for (dest, want) in [
            ("document", "identity"),
            ("script", "identity"),
            ("serviceworker", "identity"),
            ("style", "identity"),
            ("image", all),
            ("font", all),
            ("empty", all),
        ] {
            assert_eq!(asked(&[any, ("sec-fetch-dest", dest)], &types), want, "{dest}");
        }
        // A fetch() names what it wants in Accept.
        let api = ("accept", "application/json");
        assert_eq!(asked(&[api, ("sec-fetch-dest", "empty")], &types), "identity");
        assert_eq!(asked(&[api, ("sec-fetch-dest", "image")], &types), all);
        // A type the owner does not rewrite keeps its compression.
        let only_html = patterns(&["text/html"]);
        assert_eq!(asked(&[("sec-fetch-dest", "style")], &only_html), all);
        assert_eq!(asked(&[("accept", "text/css")], &only_html), all);
        assert_eq!(asked(&[page], &only_html), "identity");
        // A client that takes no coding the pipeline undoes asks for none.
        let mut incoming = HeaderMap::new();
        incoming.insert(header::ACCEPT_ENCODING, HeaderValue::from_static("xz"));
        let mut out = incoming.clone();
        ask_codings(&mut out, &incoming, &types);
        assert!(!out.contains_key(header::ACCEPT_ENCODING));
    }
}
