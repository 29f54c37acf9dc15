//! `addrmunge audit` against a real nginx behind the proxy, serving a site
//! with one page per way of hiding an address (fixtures/audit): the audit
//! finds exactly the leaks there are, each by the decoding that reveals
//! it, none on the pages the proxy covers; `--render` (real Chromium) finds
//! the address a script assembles; the audit is never taken for a
//! harvester.
//!
//! Needs Debian's nginx and chromium (scripts/test.sh installs them).

use std::collections::BTreeSet;
use std::path::Path;

mod common;
use common::nginx::Nginx;
use common::proxy::Proxy;

/// The fixture site behind the proxy. text/plain passes through
/// unrewritten, and only "at" and "dot" are words for `@` and `.`, on
/// purpose; the audit's own User-Agent is a harvester's here, so only its
/// mark keeps it from being caught.
fn site() -> (Nginx, Proxy) {
    let nginx = Nginx::start(&Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/audit"));
    let proxy = Proxy::start(
        nginx.port,
        "rewrite_types = [\"text/html\", \"application/json\"]\n\n[harvesters]\nuser_agents = [\"addrmunge-audit\"]\n\n[spelled]\nat = [\"at\"]\ndot = [\"dot\"]\n",
    );
    (nginx, proxy)
}

fn audit(proxy: &Proxy, extra: &[&str]) -> (Option<i32>, serde_json::Value) {
    let url = format!("http://127.0.0.1:{}/", proxy.port);
    let mut args = vec!["audit", "--json", "--delay-ms", "0"];
    args.extend(extra);
    args.push(&url);
    let out = proxy.inst.cli(&args);
    let json = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stderr)));
    (out.status.code(), json)
}

/// (page, decoding, rendered) of each leak.
fn leaks(report: &serde_json::Value) -> BTreeSet<(String, String, bool)> {
    report["leaks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| {
            assert_eq!(l["address"], "mjd@plover.com", "{l}");
            let page = l["url"].as_str().unwrap().rsplit('/').next().unwrap().to_owned();
            (
                page,
                l["decoding"].as_str().unwrap().to_owned(),
                l["rendered"].as_bool().unwrap(),
            )
        })
        .collect()
}

fn expected(extra: &[(&str, &str, bool)]) -> BTreeSet<(String, String, bool)> {
    [
        ("atob.html", "base64"),
        ("cfemail.html", "cfemail"),
        ("notes.txt", "raw"),
        ("rot13.html", "rot13"),
        ("tags.html", "tags"),
        ("words.html", "words"),
        ("zerowidth.html", "zero-width"),
    ]
    .into_iter()
    .map(|(p, d)| (p, d, false))
    .chain(extra.iter().copied())
    .map(|(p, d, r)| (p.to_owned(), d.to_owned(), r))
    .collect()
}

#[test]
fn the_audit_finds_exactly_the_leaks_there_are() {
    let (_nginx, proxy) = site();
    let (code, report) = audit(&proxy, &[]);
    assert_eq!(code, Some(1), "leaks exit 1");
    assert_eq!(leaks(&report), expected(&[]), "{report:#}");
    // Every link followed once, the Cloudflare one too (a 404 here).
    let fetched: BTreeSet<(String, u64)> = report["pages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            (
                p["url"]
                    .as_str()
                    .unwrap()
                    .splitn(4, '/')
                    .nth(3)
                    .unwrap()
                    .to_owned(),
                p["status"].as_u64().unwrap(),
            )
        })
        .collect();
    let mut want: BTreeSet<(String, u64)> =
        std::fs::read_dir(Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/audit"))
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .filter(|n| n != "README.md")
            .map(|n| (n, 200))
            .collect();
    want.extend([(String::new(), 200), ("cdn-cgi/l/email-protection".into(), 404)]);
    assert_eq!(fetched, want);
    // The covered pages: every spelling munged, each decoded to the
    // auditor, today; the exempt list address listed, not a leak; the git
    // remote and the URL's user name left alone, found by nothing.
    let munged = report["munged"].as_array().unwrap();
    let on = |page: &str| {
        munged
            .iter()
            .filter(|m| m["url"].as_str().unwrap().ends_with(page))
            .count()
    };
    assert!(
        on("/") == 1 && on("clean.html") == 1,
        "one munged address a page: {munged:#?}"
    );
    assert_eq!(on("spelled.html"), 1, "{munged:#?}");
    // Fullwidth letters, `＠` and `．` are read and munged as written.
    assert_eq!(on("fullwidth.html"), 1, "{munged:#?}");
    // Cloudflare's link and attribute, obfuscated with its ID (one
    // address, listed once a page).
    assert_eq!(on("cfemail.html"), 1, "{munged:#?}");
    // base64 a script decodes, with its ID in the text.
    assert_eq!(on("atob.html"), 1, "{munged:#?}");
    for m in munged {
        assert_eq!(
            (m["ok"].as_bool(), m["ip"].as_str()),
            (Some(true), Some("127.0.0.1")),
            "{m}"
        );
        assert_eq!(m["kind"], "visitor", "not caught as a harvester: {m}");
        assert_eq!(m["date"], common::proxy::today().as_str());
    }
    let exempt: BTreeSet<_> = report["exempt"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["address"].as_str().unwrap())
        .collect();
    assert_eq!(exempt, BTreeSet::from(["perl-qotw-subscribe@ihatespam.test"]));
    // Never a visit of a harvester's, though its User-Agent is one's.
    std::thread::sleep(std::time::Duration::from_millis(1500));
    let r: serde_json::Value =
        serde_json::from_str(&proxy.inst.cli_ok(&["report", "--days", "1", "--json"])).unwrap();
    assert_eq!(r["harvesters"], serde_json::json!([]), "{r}");
    // Without the mark, the same User-Agent (from another address: the
    // auditor's own is remembered for its rendering) is caught.
    let (_, page) = common::proxy::fetch_as(proxy.port, "127.0.0.9", "addrmunge-audit/0", "/clean.html");
    let found = common::proxy::munged_addresses(&page);
    assert_eq!(proxy.decode(&found[..1])[0]["kind"], "trap", "{page}");
}

/// The owner's own spelled-out forms get the visitor's ID where a
/// harvester's reassembled address has it, each one.
#[test]
fn the_proxy_munges_the_owners_spelled_out_addresses() {
    let (_nginx, proxy) = site();
    let (status, page) = common::proxy::fetch_as(proxy.port, "127.0.0.1", "Mozilla/5.0", "/spelled.html");
    assert_eq!(status, 200);
    let tokens: Vec<&str> = page
        .match_indices("-id-")
        .map(|(i, _)| &page[i + 4..i + 4 + 24])
        .collect();
    assert_eq!(tokens.len(), 14, "{page}");
    for form in [
        " [at] plover [dot] com",
        "(at)plover.com",
        " at plover dot com",
        "<span></span>@plover.com",
        "@<!-- -->plover.com",
        "</b>@<i>plover</i>.<i>com</i>",
        "_at_plover_dot_com",
        " -at- plover -dot- com",
        " @ plover.com",
        "&#91;at&#93;plover.com",
        "&thinsp;(at)&thinsp;plover.com",
        " ＠ plover . com",
        // The ID is the whole word's (`mjd`), not `d`'s.
        "@plover.com (split by a tag)",
        // A script joins string literals into the address.
        "' + '@' + 'plover.com'",
    ] {
        let spelled = page
            .match_indices(form)
            .any(|(i, _)| page[..i].ends_with(tokens[0]));
        assert!(spelled, "{form} without the ID before it: {page}");
    }
    let decoded = proxy.decode(&[format!("mjd-id-{}@plover.com", tokens[0])]);
    assert_eq!(
        (decoded[0]["kind"].as_str(), decoded[0]["ip"].as_str()),
        (Some("visitor"), Some("127.0.0.1")),
        "{decoded:?}"
    );
}

#[test]
fn rendering_finds_the_address_a_script_assembles() {
    let (_nginx, proxy) = site();
    let (code, report) = audit(&proxy, &["--render"]);
    assert_eq!(code, Some(1));
    assert_eq!(
        leaks(&report),
        expected(&[("js.html", "raw", true)]),
        "{report:#}"
    );
    // The address the script turns round comes out munged.
    assert!(
        report["munged"]
            .as_array()
            .unwrap()
            .iter()
            .any(|m| m["url"].as_str().unwrap().ends_with("js.html") && m["rendered"] == true),
        "{report:#}"
    );
    // What scripts write on the covered pages is still munged for us.
    assert!(
        report["munged"]
            .as_array()
            .unwrap()
            .iter()
            .all(|m| m["ok"] == true)
    );
}

/// A page munged for someone else (a cache in front serving one visitor's
/// copy to all) is no covered page: the proxy tells the audit whom it took
/// it for, and an address made for another visitor is NOT OK.
#[test]
fn an_address_made_for_another_visitor_is_not_ok() {
    let site = tempfile::tempdir().unwrap();
    let nginx = Nginx::serve(site.path());
    let proxy = Proxy::start(nginx.port, "");
    let cached = proxy
        .inst
        .cli_ok(&["encode", "--ip", "192.0.2.7", "mjd@plover.com"]);
    std::fs::write(
        site.path().join("cached.html"),
        format!("<p>{}, or mjd@plover.com</p>\n", cached.trim()),
    )
    .unwrap();
    let url = format!("http://127.0.0.1:{}/cached.html", proxy.port);
    let out = proxy.inst.cli(&["audit", "--depth", "0", "--json", &url]);
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(out.status.code(), Some(1), "{report:#}");
    let verdicts: BTreeSet<(String, bool)> = report["munged"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| (m["ip"].as_str().unwrap().to_owned(), m["ok"].as_bool().unwrap()))
        .collect();
    assert_eq!(
        verdicts,
        BTreeSet::from([("127.0.0.1".into(), true), ("192.0.2.7".into(), false)])
    );
    let text = proxy.inst.cli(&["audit", "--depth", "0", &url]);
    let text = String::from_utf8_lossy(&text.stdout);
    assert!(
        text.contains("NOT OK") && text.contains("for 192.0.2.7"),
        "{text}"
    );
    // Only the audit is told whom it is served as.
    let head = std::process::Command::new("curl")
        .args(["-s", "-D", "-", "-o", "/dev/null", &url])
        .output()
        .unwrap();
    let head = String::from_utf8_lossy(&head.stdout).to_ascii_lowercase();
    assert!(
        head.starts_with("http/1.1 200") && !head.contains("x-addrmunge-audit"),
        "{head}"
    );
}

/// A page past the audit's 16 MiB is audited as far as it was read, and
/// the report says the rest was not.
#[test]
fn a_page_too_big_to_read_whole_is_audited_up_to_the_limit() {
    let site = tempfile::tempdir().unwrap();
    let nginx = Nginx::serve(site.path());
    let proxy = Proxy::start(nginx.port, "rewrite_types = [\"text/html\"]\n");
    let mut big = b"mjd@plover.com\n".to_vec();
    big.resize(17 << 20, b'.');
    big.extend_from_slice(b"\nmjd@plover.com past the limit\n");
    std::fs::write(site.path().join("big.txt"), big).unwrap();
    let url = format!("http://127.0.0.1:{}/big.txt", proxy.port);
    let out = proxy.inst.cli(&["audit", "--depth", "0", "--json", &url]);
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(out.status.code(), Some(1), "{report:#}");
    let leaks = report["leaks"].as_array().unwrap().len();
    assert_eq!(leaks, 1, "only the leak within the first 16 MiB: {report:#}");
    let problem = report["pages"][0]["problem"].as_str().unwrap_or_default();
    assert!(
        problem.contains("only the first 16 MiB were audited"),
        "{report:#}"
    );
}

#[test]
fn a_covered_site_passes_and_the_text_report_says_so() {
    let (_nginx, proxy) = site();
    let url = format!("http://127.0.0.1:{}/clean.html", proxy.port);
    let out = proxy.inst.cli(&["audit", "--depth", "0", &url]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{text}");
    assert!(text.contains("Leaks: none."), "{text}");
    assert!(
        text.contains("all valid and made today for a visitor at 127.0.0.1"),
        "{text}"
    );
    // Nothing to fetch: exit 2, and why.
    let out = proxy
        .inst
        .cli(&["audit", &format!("http://127.0.0.1:{}/", common::free_port())]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stdout).contains("Not read in full: 1"));
}

/// The README's audit session is this fixture site's, as the audit prints
/// it today (ports, times and IDs aside).
#[test]
fn the_readme_audit_is_what_the_audit_prints() {
    let (_nginx, proxy) = site();
    let url = format!("http://127.0.0.1:{}/", proxy.port);
    let out = proxy.inst.cli(&["audit", &url]);
    let got = normalize(&format!(
        "$ addrmunge audit {url}\n{}",
        String::from_utf8_lossy(&out.stdout)
    ));
    let shown = normalize(&common::readme_block("text", "$ addrmunge audit"));
    assert_eq!(
        got, shown,
        "the README's audit session is out of date; this run printed:\n{got}"
    );
}

fn normalize(text: &str) -> String {
    let port = regex::Regex::new(r"127\.0\.0\.1:\d+").unwrap();
    let secs = regex::Regex::new(r"in \d+\.\d s").unwrap();
    let t = port.replace_all(text, "127.0.0.1:8080");
    secs.replace_all(&t, "in N s").trim().to_owned()
}
