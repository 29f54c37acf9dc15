//! Real pages: Debian's Python documentation (the `python3-doc` package,
//! about a thousand HTML and text files) served by a real nginx, fetched
//! directly and through the proxy: protecting two domains the docs never
//! name (every page byte-identical, though the domains' first labels are on
//! every page), then two that occur in it.
//! Every difference must be exactly one ID inserted before the `@` of an
//! e-mail address; none inside a URL's user info (`joe:password@python.org`
//! appears in the urllib docs) or a git/scp remote; every other page
//! byte-identical.

use std::fs;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::time::Duration;

mod common;
use common::nginx::Nginx;
use common::{Instance, free_port, wait_for_port};

/// Where Debian puts the HTML of python3-doc (python3.11-doc on bookworm).
fn docs() -> PathBuf {
    let found = fs::read_dir("/usr/share/doc")
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path().join("html"))
        .filter(|p| p.join("library/urllib.request.html").exists())
        .min();
    let found = found.expect("python3-doc is not installed (scripts/test.sh installs it)");
    fs::canonicalize(found).unwrap()
}

fn pages(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in fs::read_dir(dir).unwrap().flatten() {
        let p = e.path();
        if p.is_dir() {
            pages(&p, out);
        } else if p.extension().is_some_and(|x| x == "html" || x == "txt") {
            out.push(p);
        }
    }
}

/// GET over HTTP/1.1 with `Connection: close`; the body (nginx sends a
/// length, the proxy chunks rewritten pages).
fn get(port: u16, path: &str) -> Vec<u8> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: docs.python.org\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).unwrap();
    let at = raw.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
    let head = String::from_utf8_lossy(&raw[..at]).to_ascii_lowercase();
    assert!(head.starts_with("http/1.1 200"), "{path}: {head}");
    let body = raw[at..].to_vec();
    if !head.contains("transfer-encoding: chunked") {
        return body;
    }
    let (mut out, mut b) = (Vec::new(), &body[..]);
    while let Some(eol) = b.windows(2).position(|w| w == b"\r\n") {
        let n = usize::from_str_radix(std::str::from_utf8(&b[..eol]).unwrap().trim(), 16).unwrap();
        if n == 0 {
            break;
        }
        out.extend_from_slice(&b[eol + 2..eol + 2 + n]);
        b = &b[eol + 4 + n..];
    }
    out
}

/// The spellings of `@` a page may use before which an ID is inserted
/// (with tags between, as Sphinx writes `docs<span>&#64;</span>python<span>&#46;</span>org`).
const AT: [&[u8]; 6] = [b"@", b"&#64;", b"&#x40;", b"%40", b"&commat;", b"&#37;&#52;&#48;"];

/// `page` from `at` on, past any tags there.
fn past_tags(page: &[u8], mut at: usize) -> &[u8] {
    while page.get(at) == Some(&b'<') {
        match page[at..].iter().position(|&c| c == b'>') {
            Some(end) => at += end + 1,
            None => break,
        }
    }
    &page[at..]
}

/// `text` with its decimal and hex character references decoded.
fn numeric_references(text: &str) -> String {
    let mut out = String::new();
    let mut rest = text;
    while let Some(k) = rest.find("&#") {
        out.push_str(&rest[..k]);
        rest = &rest[k..];
        let decoded = rest.find(';').and_then(|end| {
            let num = &rest[2..end];
            let v = match num.strip_prefix(['x', 'X']) {
                Some(hex) => u32::from_str_radix(hex, 16).ok(),
                None => num.parse().ok(),
            };
            Some((char::from_u32(v?)?, end + 1))
        });
        match decoded {
            Some((c, len)) => {
                out.push(c);
                rest = &rest[len..];
            }
            None => {
                out.push('&');
                rest = &rest[1..];
            }
        }
    }
    out + rest
}

/// The addresses at `domain` without an ID that a harvester reads on the
/// page once it drops the tags and decodes the references the docs use.
fn bare_addresses(page: &[u8], domain: &str) -> Vec<String> {
    let mut text = Vec::new();
    let mut i = 0;
    while i < page.len() {
        let rest = past_tags(page, i);
        i = page.len() - rest.len();
        if let Some(&c) = rest.first() {
            text.push(c);
            i += 1;
        }
    }
    // In the text, and in the markup (a `mailto:` link's address).
    let mut bare = read_bare(&decoded(&text), domain);
    bare.extend(read_bare(&decoded(page), domain));
    bare
}

/// Numeric references decoded, then a URL's percent-encoding (Sphinx
/// writes a mailto's `@` as `&#37;&#52;&#48;`); lower case.
fn decoded(page: &[u8]) -> String {
    numeric_references(&String::from_utf8_lossy(page))
        .to_ascii_lowercase()
        .replace("%40", "@")
        .replace("%2e", ".")
}

/// The addresses at `domain` without an ID in `text`.
fn read_bare(text: &str, domain: &str) -> Vec<String> {
    let is_local = |c: char| c.is_ascii_alphanumeric() || "._+-".contains(c);
    let at_domain = format!("@{domain}");
    text.match_indices(&at_domain)
        .filter(|(k, _)| {
            let next = text[k + at_domain.len()..].chars().next();
            !next.is_some_and(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.')
        })
        .map(|(k, _)| {
            let local_start = text[..k].rfind(|c: char| !is_local(c)).map_or(0, |p| p + 1);
            text[local_start..k + at_domain.len()].to_owned()
        })
        .filter(|a| !a.starts_with('@') && !a.contains("-id-"))
        .collect()
}

/// Where the proxied page inserted IDs into the direct one; panics on any
/// other difference.
fn insertions(path: &str, direct: &[u8], proxied: &[u8]) -> Vec<usize> {
    let (mut i, mut j, mut at) = (0, 0, Vec::new());
    while i < direct.len() || j < proxied.len() {
        if i < direct.len() && j < proxied.len() && direct[i] == proxied[j] {
            i += 1;
            j += 1;
            continue;
        }
        // An insertion starts where the bytes part: back up to the last
        // place "-id-" could begin (the separator's bytes may match the page's).
        let mut k = j;
        while k > 0 && j - k < 4 && !proxied[k..].starts_with(b"-id-") {
            k -= 1;
        }
        let token = &proxied[k..];
        let ok = token.starts_with(b"-id-")
            && token.len() >= 28
            && token[4..28]
                .iter()
                .all(|c| c.is_ascii_digit() || c.is_ascii_lowercase());
        assert!(
            ok,
            "{path}: a difference that is not an ID at byte {i}: {:?}",
            String::from_utf8_lossy(&proxied[k..(k + 60).min(proxied.len())])
        );
        let d = i - (j - k);
        assert!(
            AT.iter().any(|a| past_tags(direct, d).starts_with(a)),
            "{path}: an ID not before an @ at byte {d}"
        );
        at.push(d);
        j = k + 28;
        i = d;
    }
    at
}

/// Every page of the docs, fetched from nginx directly and through a proxy
/// protecting `protect` (TOML `[[protect]]` entries): (path, direct, proxied).
fn through_proxy(protect: &str) -> Vec<(String, Vec<u8>, Vec<u8>)> {
    let root = docs();
    let nginx = Nginx::serve(&root);
    let port = free_port();
    let inst = Instance::new(&format!(
        "{protect}[proxy]\nlisten = [\"127.0.0.1:{port}\"]\nupstream = \"http://127.0.0.1:{}\"\n",
        nginx.port
    ));
    // Stopped however the test ends: a panic must not leave it running.
    let _proxy = inst.start("proxy", &[("ADDRMUNGE_LOG", "warn")]);
    wait_for_port(port, "addrmunge proxy");
    let mut files = Vec::new();
    pages(&root, &mut files);
    files.sort();
    assert!(files.len() > 900, "{} files", files.len());
    files
        .iter()
        .map(|f| {
            let path = format!("/{}", f.strip_prefix(&root).unwrap().display());
            let direct = get(nginx.port, &path);
            assert_eq!(direct, fs::read(f).unwrap(), "{path}: nginx changed it");
            let proxied = get(port, &path);
            (path, direct, proxied)
        })
        .collect()
}

/// Protected domains the docs never name, whose first labels they name on
/// every page ("python", "docs"): each is a candidate for a spelled-out
/// address (`x [at] python [dot] invalid`), and none may change a byte.
#[test]
fn python_docs_without_the_protected_domains_pass_byte_identical() {
    let pages =
        through_proxy("[[protect]]\ndomain = \"python.invalid\"\n[[protect]]\ndomain = \"docs.invalid\"\n");
    for (path, direct, proxied) in &pages {
        assert!(direct == proxied, "{path}: changed");
    }
}

/// The docs name python.org and example.com in addresses, in URLs with
/// credentials, and in prose ("the mailing lists at python.org", "Python's"):
/// only the addresses change.
#[test]
fn python_docs_change_only_by_ids_before_real_addresses() {
    let pages =
        through_proxy("[[protect]]\ndomain = \"python.org\"\n[[protect]]\ndomain = \"example.com\"\n");
    let (mut changed, mut ids, mut credentials) = (0, 0, 0);
    for (path, direct, proxied) in &pages {
        let at = insertions(path, direct, proxied);
        for &d in &at {
            // Never inside a URL's user info: in the run of non-space text
            // before the address, no "://" with only an authority after it
            // (an address in a URL's path, as in a list archive's, is one).
            let start = direct[..d]
                .iter()
                .rposition(|c| c.is_ascii_whitespace() || b"\"'<>()".contains(c))
                .map_or(0, |p| p + 1);
            let word = String::from_utf8_lossy(&direct[start..d]);
            let userinfo = word
                .rsplit_once("://")
                .is_some_and(|(_, after)| !after.contains('/'));
            assert!(!userinfo, "{path}: an ID in a URL's user info: {word}@…");
        }
        // The docs quote an authority with credentials: joe:password@…
        // (as `"…@python.org"` and `&quot;…&#64;example.com&quot;`).
        let quoted = |page: &[u8]| -> Vec<String> {
            let text = String::from_utf8_lossy(page);
            text.match_indices("joe:password")
                .map(|(i, _)| text[i..(i + 40).min(text.len())].to_owned())
                .collect()
        };
        for domain in ["python.org", "example.com"] {
            let bare = bare_addresses(proxied, domain);
            let bare: Vec<_> = bare.iter().filter(|a| !a.starts_with("password@")).collect();
            assert!(bare.is_empty(), "{path}: a harvester reads {bare:?}");
        }
        let (before, after) = (quoted(direct), quoted(proxied));
        assert_eq!(before, after, "{path}: URL credentials changed");
        credentials += before.len();
        changed += usize::from(!at.is_empty());
        ids += at.len();
    }
    println!(
        "{} files, {changed} changed, {ids} IDs inserted, {credentials} URL credentials left alone",
        pages.len()
    );
    assert!(
        ids > 20 && changed > 10,
        "{changed} files, {ids} IDs: the docs' addresses were not munged"
    );
    assert!(
        credentials >= 4,
        "the urllib docs' joe:password@… was not found ({credentials})"
    );
}
