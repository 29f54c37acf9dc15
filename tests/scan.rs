//! The matching contract: every spelling a harvester would undo, exact
//! boundaries, exemptions, streaming equivalence and bounded memory.

use std::sync::Arc;

use addrmunge::address::{Glob, Protect, Protection};
use addrmunge::scan::{Found, HISTORY, Matcher, Munger};
use addrmunge::{Claims, Day, KeyRing, Kind, RuleSet, Served, Status, check};
use proptest::prelude::*;

fn protection() -> Arc<Protection> {
    Arc::new(Protection::new(
        vec![
            Protect {
                domain: "ihatespam.test".into(),
                local: Glob::new("*").unwrap(),
                exempt: vec![
                    Glob::new("*-subscribe").unwrap(),
                    Glob::new("*-unsubscribe").unwrap(),
                ],
                deliver_to: None,
            },
            Protect {
                domain: "plover.com".into(),
                local: Glob::new("mjd").unwrap(),
                exempt: vec![],
                deliver_to: None,
            },
        ],
        "-id-",
    ))
}

fn matcher() -> Arc<Matcher> {
    Matcher::new(protection())
}

/// The same with `[spelled] enabled = false`.
fn matcher_without_spelled() -> Arc<Matcher> {
    let off = addrmunge::address::Spellings {
        enabled: false,
        ..Default::default()
    };
    Matcher::new(Arc::new(Arc::unwrap_or_clone(protection()).with_spellings(off)))
}

/// Inserts a fixed marker so expected outputs can be written out literally.
fn marker(_: &Found<'_>, out: &mut Vec<u8>) {
    out.extend_from_slice(b"-id-zzzz");
}

fn rewrite(input: &str) -> String {
    String::from_utf8(matcher().rewrite(input.as_bytes(), &mut marker)).unwrap()
}

/// Asserts that `input` fed in two pieces, cut anywhere, scans to `want`.
fn every_cut_gives(m: &Arc<Matcher>, input: &str, want: &str, munger: &mut impl Munger) {
    for cut in 0..=input.len() {
        let mut s = m.scanner();
        let mut out = Vec::new();
        s.feed(&input.as_bytes()[..cut], &mut out, munger);
        s.feed(&input.as_bytes()[cut..], &mut out, munger);
        s.finish(&mut out, munger);
        assert_eq!(String::from_utf8(out).unwrap(), want, "{input} cut at {cut}");
    }
}

fn entities(s: &str) -> String {
    s.bytes().map(|b| format!("&#{b};")).collect()
}

fn hex_entities(s: &str) -> String {
    s.bytes().map(|b| format!("&#x{b:x};")).collect()
}

fn percent(s: &str) -> String {
    s.bytes().map(|b| format!("%{b:02X}")).collect()
}

#[test]
fn every_spelling_of_the_at_sign() {
    for at in [
        "@",
        "&#64;",
        "&#064;",
        "&#x40;",
        "&#X40;",
        "&#x040;",
        "&#64",
        "&commat;",
        "%40",
        "\\u0040",
        "\\x40",
        "\\u{40}",
        "\\u{0040}",
        // A percent-encoding in references (Sphinx's mailto links).
        "&#37;&#52;&#48;",
        "&#x25;40",
        "%&#52;&#48;",
        // Percent-encoded twice: a `mailto:` inside another URL's query.
        "%2540",
        // Escaped, in a Perl or JavaScript string.
        "\\@",
        // JavaScript's `unescape("joe%u0040…")`.
        "%u0040",
        // A fullwidth `＠` or a small `﹫`, percent-encoded in UTF-8.
        "%EF%BC%A0",
        "%ef%bc%a0",
        "%EF%B9%AB",
    ] {
        let input = format!("write to joe{at}ihatespam.test today");
        let want = format!("write to joe-id-zzzz{at}ihatespam.test today");
        assert_eq!(rewrite(&input), want, "@ spelled {at}");
    }
    // A percent-encoding of something else is not an `@`.
    for page in [
        "joe&#37;&#52;&#49;ihatespam.test",
        "joe&#37;4ihatespam.test",
        "joe%2541ihatespam.test",
        "joe%25ihatespam.test",
        "joe%252540ihatespam.test",
        "joe%u0041ihatespam.test",
        "joe%u004ihatespam.test",
        // A fullwidth `Ａ`; a `＠` cut short or overlong.
        "joe%EF%BC%A1ihatespam.test",
        "joe%EF%BCihatespam.test",
        "joe%EF%BC%2Aihatespam.test",
        "joe%E0%81%80ihatespam.test",
    ] {
        assert_eq!(rewrite(page), page);
    }
    // Cut anywhere, the `＠` percent-encoded is read whole.
    let input = "mail joe%EF%BC%A0ihatespam.test or joe%EF%BC%A1ihatespam.test";
    let want = "mail joe-id-zzzz%EF%BC%A0ihatespam.test or joe%EF%BC%A1ihatespam.test";
    every_cut_gives(&matcher(), input, want, &mut marker);
}

#[test]
fn any_letter_case() {
    assert_eq!(rewrite("JOE@IHATESPAM.TEST"), "JOE-id-zzzz@IHATESPAM.TEST");
    assert_eq!(rewrite("Mjd@Plover.Com"), "Mjd-id-zzzz@Plover.Com");
}

/// The domain's first character in every spelling and case (the scanner
/// tells other domains by that first byte), cut anywhere.
#[test]
fn the_domain_may_start_with_any_spelling() {
    let m = matcher();
    for first in ["i", "I", "&#105;", "&#x49;", "%69", "\\x69", "\\u0049"] {
        let input = format!("to joe@{first}hatespam.test or ann@example.com, kim@ihatespam.org");
        let want = format!("to joe-id-zzzz@{first}hatespam.test or ann@example.com, kim@ihatespam.org");
        every_cut_gives(&m, &input, &want, &mut marker);
    }
}

/// What a page shows as an address a harvester takes as one: characters
/// that render as nothing inside it are skipped (a soft hyphen, zero-width
/// spaces and joiners, a word joiner, raw or as references), the fullwidth
/// at sign `＠` is an at sign, and so are the fullwidth forms of letters,
/// digits and dots and the ideographic full stop (`ｍｊｄ＠ｐｌｏｖｅｒ．ｃｏｍ`,
/// `plover。com`), as Japanese and Chinese pages write addresses. Too many
/// invisibles in one part are not read past.
#[test]
fn invisible_characters_and_fullwidth_forms() {
    let cases = [
        ("mjd@plo&shy;ver.com", "mjd-id-zzzz@plo&shy;ver.com"),
        ("mjd@plo\u{ad}ver.com", "mjd-id-zzzz@plo\u{ad}ver.com"),
        (
            "m\u{200b}jd@\u{2060}plover.com",
            "m\u{200b}jd-id-zzzz@\u{2060}plover.com",
        ),
        (
            "mjd&shy;&#64;&#8203;plover&zwnj;.com",
            "mjd&shy;-id-zzzz&#64;&#8203;plover&zwnj;.com",
        ),
        (
            "m&#x200D;jd@plover&NoBreak;.com",
            "m&#x200D;jd-id-zzzz@plover&NoBreak;.com",
        ),
        ("mjd＠plover.com", "mjd-id-zzzz＠plover.com"),
        ("mjd&#xFF20;plover.com", "mjd-id-zzzz&#xFF20;plover.com"),
        ("mjd\\uff20plover.com", "mjd-id-zzzz\\uff20plover.com"),
        ("\u{feff}mjd@plover.com", "\u{feff}mjd-id-zzzz@plover.com"),
        (
            "ｍｊｄ＠ｐｌｏｖｅｒ．ｃｏｍ",
            "ｍｊｄ-id-zzzz＠ｐｌｏｖｅｒ．ｃｏｍ",
        ),
        (
            "ＭＪＤ＠ＰＬＯＶＥＲ．ＣＯＭ",
            "ＭＪＤ-id-zzzz＠ＰＬＯＶＥＲ．ＣＯＭ",
        ),
        ("連絡先ｍｊｄ＠plover.com", "連絡先ｍｊｄ-id-zzzz＠plover.com"),
        ("mjd@plover。com", "mjd-id-zzzz@plover。com"),
        ("mjd@plover｡com", "mjd-id-zzzz@plover｡com"),
        ("mjd﹫plover.com", "mjd-id-zzzz﹫plover.com"),
        (
            "&#xFF4D;jd&#xFF20;\\uff50lover&#xFF0E;com",
            "&#xFF4D;jd-id-zzzz&#xFF20;\\uff50lover&#xFF0E;com",
        ),
        // Other non-ASCII characters still end an address.
        ("メールmjd@plover.com", "メールmjd-id-zzzz@plover.com"),
        ("mjd@plover\u{3001}com", "mjd@plover\u{3001}com"),
        ("mjd@plo\u{a0}ver.com", "mjd@plo\u{a0}ver.com"),
        (
            "mjd\u{ff1a}plover.com ｊｏｅ＠example.com",
            "mjd\u{ff1a}plover.com ｊｏｅ＠example.com",
        ),
    ];
    for (input, want) in cases {
        assert_eq!(rewrite(input), want, "{input}");
    }
    let many = format!("joe@{}ihatespam.test", "&shy;".repeat(9));
    assert_eq!(rewrite(&many), many);
}

#[test]
fn wholly_and_partly_encoded_addresses() {
    let dec = format!("{}&#64;{}", entities("joe"), entities("ihatespam.test"));
    assert_eq!(
        rewrite(&dec),
        format!("{}-id-zzzz&#64;{}", entities("joe"), entities("ihatespam.test"))
    );
    let hex = format!("{}&#x40;{}", hex_entities("joe"), hex_entities("ihatespam.test"));
    assert_eq!(
        rewrite(&hex),
        format!(
            "{}-id-zzzz&#x40;{}",
            hex_entities("joe"),
            hex_entities("ihatespam.test")
        )
    );
    let pct = format!("mailto:{}%40{}", percent("joe"), percent("ihatespam.test"));
    assert_eq!(
        rewrite(&pct),
        format!(
            "mailto:{}-id-zzzz%40{}",
            percent("joe"),
            percent("ihatespam.test")
        )
    );
    let braced = "\\u{6a}\\u{6F}e\\u{40}ihatespam\\u{2e}test";
    assert_eq!(
        rewrite(braced),
        "\\u{6a}\\u{6F}e-id-zzzz\\u{40}ihatespam\\u{2e}test"
    );
    let mixed = "j&#111;e%2Ex@ihate&#115;pam&period;te%73t";
    assert_eq!(
        rewrite(mixed),
        "j&#111;e%2Ex-id-zzzz@ihate&#115;pam&period;te%73t"
    );
    let no_semicolons = "&#106&#111&#101&#64ihatespam.test";
    assert_eq!(
        rewrite(no_semicolons),
        "&#106&#111&#101-id-zzzz&#64ihatespam.test"
    );
    let js = "\\u006a\\u006f\\u0065\\u0040\\u0069hatespam.test";
    assert_eq!(
        rewrite(js),
        "\\u006a\\u006f\\u0065-id-zzzz\\u0040\\u0069hatespam.test"
    );
    let jsx = "\\x6aoe\\x40ihatespam\\x2etest";
    assert_eq!(rewrite(jsx), "\\x6aoe-id-zzzz\\x40ihatespam\\x2etest");
}

#[test]
fn mailto_with_several_recipients_and_a_query() {
    let input = r#"<a href="mailto:joe@ihatespam.test,ann@ihatespam.test?subject=Hi%20there&amp;cc=bob@ihatespam.test&amp;bcc=x@example.com&amp;body=mjd%40plover.com">"#;
    let want = r#"<a href="mailto:joe-id-zzzz@ihatespam.test,ann-id-zzzz@ihatespam.test?subject=Hi%20there&amp;cc=bob-id-zzzz@ihatespam.test&amp;bcc=x@example.com&amp;body=mjd-id-zzzz%40plover.com">"#;
    assert_eq!(rewrite(input), want);
}

#[test]
fn domain_boundaries() {
    for untouched in [
        "someone@notihatespam.test",
        "x@ihatespam.test.evil.example",
        "x@ihatespam.testing",
        "x@ihatespam.test-x",
        "x@ihatespam.test&#46;evil",
        "x@sub.ihatespam.test",
        "x@ihatespam",
        "other@plover.com",
        "mjdx@plover.com",
        "@ihatespam.test",
        "list-subscribe@ihatespam.test",
        "List-Unsubscribe@IHATESPAM.TEST",
    ] {
        assert_eq!(rewrite(untouched), untouched);
    }
    for (input, want) in [
        ("<joe@ihatespam.test>", "<joe-id-zzzz@ihatespam.test>"),
        ("joe@ihatespam.test.", "joe-id-zzzz@ihatespam.test."),
        ("joe@ihatespam.test, ann", "joe-id-zzzz@ihatespam.test, ann"),
        ("joe@ihatespam.test/path", "joe-id-zzzz@ihatespam.test/path"),
        ("\"joe@ihatespam.test\"", "\"joe-id-zzzz@ihatespam.test\""),
        ("...joe@ihatespam.test", "...joe-id-zzzz@ihatespam.test"),
        ("a.b+c_d-e@ihatespam.test", "a.b+c_d-e-id-zzzz@ihatespam.test"),
        ("x@y@ihatespam.test", "x@y-id-zzzz@ihatespam.test"),
    ] {
        assert_eq!(rewrite(input), want, "{input}");
    }
}

#[test]
fn local_parts_longer_than_64_octets_are_not_addresses() {
    let long = format!("{}@ihatespam.test", "a".repeat(65));
    assert_eq!(rewrite(&long), long);
    let ok = format!("{}@ihatespam.test", "a".repeat(64));
    assert_eq!(rewrite(&ok), format!("{}-id-zzzz@ihatespam.test", "a".repeat(64)));
}

#[test]
fn the_longest_domain_a_config_can_name_is_found_and_not_overrun() {
    // 253 octets, the most a domain name has; a longer run of domain
    // characters after it must not overrun the decoding buffer.
    let domain = ["a".repeat(63), "b".repeat(63), "c".repeat(63), "d".repeat(61)].join(".");
    assert_eq!(domain.len(), 253);
    let m = Matcher::new(Arc::new(Protection::new(
        vec![Protect {
            domain: domain.clone(),
            local: Glob::new("*").unwrap(),
            exempt: vec![],
            deliver_to: None,
        }],
        "-id-",
    )));
    let longer = format!("joe@{domain}.{} ", "e".repeat(300));
    let spelled = format!("joe@{}", entities(&format!("{domain}.{}", "e".repeat(30))));
    let input = format!("{longer}{spelled} joe@{domain}. j&#111;e@{}.", entities(&domain));
    let want = format!(
        "{longer}{spelled} joe-id-zzzz@{domain}. j&#111;e-id-zzzz@{}.",
        entities(&domain)
    );
    for pieces in [1, 7, 64] {
        let mut s = m.scanner();
        let mut out = Vec::new();
        for chunk in input.as_bytes().chunks(input.len().div_ceil(pieces)) {
            s.feed(chunk, &mut out, &mut marker);
        }
        s.finish(&mut out, &mut marker);
        assert_eq!(String::from_utf8(out).unwrap(), want, "in {pieces} pieces");
    }
}

/// `"joe"@ihatespam.test` is mail for joe: its ID goes inside the quotes,
/// whichever way they are spelled, in any split.
#[test]
fn quoted_local_parts_get_their_id_inside_the_quotes() {
    for q in ["\"", "&quot;", "&#34;", "&#x22;", "%22", "\\u0022"] {
        for at in ["@", "&#64;", "%40"] {
            let input = format!("write {q}joe.x{q}{at}ihatespam.test or ({q}mjd{q}{at}plover.com)");
            let want =
                format!("write {q}joe.x-id-zzzz{q}{at}ihatespam.test or ({q}mjd-id-zzzz{q}{at}plover.com)");
            assert_eq!(rewrite(&input), want, "quote {q}, at {at}");
            every_cut_gives(&matcher(), &input, &want, &mut marker);
        }
    }
    // Not quoted local parts: code joining strings (see
    // `script_string_joins_are_one_address`), quotes around nothing an
    // address holds, a quote that does not open, already munged.
    for page in [
        "a = x+\"@ihatespam.test\";",
        "[\"joe\",\"@ihatespam.test\"]",
        "\"joe \" + \"@ihatespam.test\"",
        "\"+\"@ihatespam.test",
        "x\"joe\"@ihatespam.test",
        "\"\"joe\"@ihatespam.test",
        "joe\"@ihatespam.test",
        "\"joe-id-kkkkkkkkkkkkkkkkkkkkkkkk\"@ihatespam.test",
        "\"other\"@plover.com",
    ] {
        assert_eq!(rewrite(page), page);
    }
}

/// A script that builds an address from string literals shows a browser,
/// and a harvester that runs it, the whole address: the ID goes at the end
/// of the local part, so that the script builds the munged address.
#[test]
fn script_string_joins_are_one_address() {
    for (page, want) in [
        (
            "document.write('joe' + '@' + 'ihatespam.test');",
            "document.write('joe-id-zzzz' + '@' + 'ihatespam.test');",
        ),
        (
            "a = \"joe\"+\"@ihatespam.test\";",
            "a = \"joe-id-zzzz\"+\"@ihatespam.test\";",
        ),
        (
            "a = 'joe@' + 'ihatespam.test';",
            "a = 'joe-id-zzzz@' + 'ihatespam.test';",
        ),
        (
            "a = `joe` + `@ihatespam.test`;",
            "a = `joe-id-zzzz` + `@ihatespam.test`;",
        ),
        (
            "a = 'joe' + '@' + 'ihatespam' + '.' + 'test';",
            "a = 'joe-id-zzzz' + '@' + 'ihatespam' + '.' + 'test';",
        ),
        (
            "a = 'joe@ihatespam' + '.test';",
            "a = 'joe-id-zzzz@ihatespam' + '.test';",
        ),
        // A local part in pieces is the whole word's.
        (
            "a = 'jo' + 'e@ihatespam.test';",
            "a = 'jo' + 'e-id-zzzz@ihatespam.test';",
        ),
        (
            "a = 'm'+'j'+'d'+'@'+'plover.com';",
            "a = 'm'+'j'+'d-id-zzzz'+'@'+'plover.com';",
        ),
        (
            "<a onclick=\"location='mailto:'+'mjd'+'@'+'plover.com'\">",
            "<a onclick=\"location='mailto:'+'mjd-id-zzzz'+'@'+'plover.com'\">",
        ),
        (
            "a = 'mjd' + \"@plover.com\";",
            "a = 'mjd-id-zzzz' + \"@plover.com\";",
        ),
        // Not joins of literals: a variable, a comma, a space in the string.
        ("a = x + '@ihatespam.test';", "a = x + '@ihatespam.test';"),
        (
            "a = 'joe ' + '@ihatespam.test';",
            "a = 'joe ' + '@ihatespam.test';",
        ),
        ("[\"mjd\",\"@plover.com\"]", "[\"mjd\",\"@plover.com\"]"),
        ("'other' + '@' + 'plover.com'", "'other' + '@' + 'plover.com'"),
    ] {
        assert_eq!(rewrite(page), want, "{page}");
        every_cut_gives(&matcher(), page, want, &mut marker);
    }
}

/// A script that joins names the page set just before (`user + '@' +
/// site`, `${user}@${site}`) shows the address they hold: it gets its ID
/// before the `@`, for the name's value.
#[test]
fn script_variables_are_looked_up() {
    for (page, want) in [
        (
            "var user = \"joe\";\nvar site = \"ihatespam.test\";\ndocument.write(user + '@' + site);",
            "var user = \"joe\";\nvar site = \"ihatespam.test\";\ndocument.write(user + '-id-zzzz@' + site);",
        ),
        (
            "var u = 'joe'; a = '<a href=\"mailto:' + u + '@ihatespam.test\">';",
            "var u = 'joe'; a = '<a href=\"mailto:' + u + '-id-zzzz@ihatespam.test\">';",
        ),
        (
            "let d = 'ihatespam.test'; a = 'joe@' + d + '\">';",
            "let d = 'ihatespam.test'; a = 'joe-id-zzzz@' + d + '\">';",
        ),
        (
            "var a='mjd', b='plover', c='com'; w(a + '@' + b + '.' + c);",
            "var a='mjd', b='plover', c='com'; w(a + '-id-zzzz@' + b + '.' + c);",
        ),
        (
            "const e = {user: 'joe', host: 'ihatespam.test'}; h = 'mailto:' + e.user + '@' + e.host;",
            "const e = {user: 'joe', host: 'ihatespam.test'}; h = 'mailto:' + e.user + '-id-zzzz@' + e.host;",
        ),
        (
            "var j = {\"user\": \"joe\", \"domain\": \"ihatespam.test\"}; y = j.user + \"@\" + j.domain;",
            "var j = {\"user\": \"joe\", \"domain\": \"ihatespam.test\"}; y = j.user + \"-id-zzzz@\" + j.domain;",
        ),
        (
            "let name = 'joe', dom = 'ihatespam.test'; t = `${name}@${dom}`;",
            "let name = 'joe', dom = 'ihatespam.test'; t = `${name}-id-zzzz@${dom}`;",
        ),
        (
            "let name = 'joe'; t = `<a href=\"mailto:${ name }@ihatespam.test\">`;",
            "let name = 'joe'; t = `<a href=\"mailto:${ name }-id-zzzz@ihatespam.test\">`;",
        ),
        (
            "user = 'x'; user = 'joe'; a = user + '@ihatespam.test';",
            "user = 'x'; user = 'joe'; a = user + '-id-zzzz@ihatespam.test';",
        ),
        // An array of the two parts joined by the `@`.
        (
            "x = ['joe', 'ihatespam.test'].join('@');",
            "x = ['joe', 'ihatespam.test'].join('-id-zzzz@');",
        ),
        (
            "var parts = [\"joe\", \"ihatespam.test\"];\nx = parts.join(\"@\");",
            "var parts = [\"joe\", \"ihatespam.test\"];\nx = parts.join(\"-id-zzzz@\");",
        ),
        (
            "var u = 'joe', h = {d: 'ihatespam.test'}; x = [ u , h.d ].join( '@' );",
            "var u = 'joe', h = {d: 'ihatespam.test'}; x = [ u , h.d ].join( '-id-zzzz@' );",
        ),
        (
            "x = ['a', 'joe', 'ihatespam.test'].join('@');",
            "x = ['a', 'joe', 'ihatespam.test'].join('@');",
        ),
        (
            "x = ['joe', 'ihatespam.test'].join('@ ');",
            "x = ['joe', 'ihatespam.test'].join('@ ');",
        ),
        (
            "x = ['joe', 'example.com'].join('@');",
            "x = ['joe', 'example.com'].join('@');",
        ),
        ("x = parts.join('@');", "x = parts.join('@');"),
        // Not an address we can tell: a value changed or not a literal, a
        // name never set, another domain, an exempt or unprotected local
        // part, a comparison, a ternary's branch.
        (
            "var u = 'joe'; u += 'x'; a = u + '@ihatespam.test';",
            "var u = 'joe'; u += 'x'; a = u + '@ihatespam.test';",
        ),
        (
            "var u = f('joe'); a = u + '@ihatespam.test';",
            "var u = f('joe'); a = u + '@ihatespam.test';",
        ),
        (
            "a = nobody + '@ihatespam.test';",
            "a = nobody + '@ihatespam.test';",
        ),
        (
            "var d = 'example.com'; a = 'joe@' + d;",
            "var d = 'example.com'; a = 'joe@' + d;",
        ),
        (
            "var d = 'ihatespam.test.org'; a = 'joe@' + d;",
            "var d = 'ihatespam.test.org'; a = 'joe@' + d;",
        ),
        (
            "var u = 'list-subscribe'; a = u + '@ihatespam.test';",
            "var u = 'list-subscribe'; a = u + '@ihatespam.test';",
        ),
        (
            "var u = 'other'; a = u + '@plover.com';",
            "var u = 'other'; a = u + '@plover.com';",
        ),
        (
            "if (u == 'joe') a = u + '@ihatespam.test';",
            "if (u == 'joe') a = u + '@ihatespam.test';",
        ),
        (
            "x = c ? u : 'joe'; a = u + '@ihatespam.test';",
            "x = c ? u : 'joe'; a = u + '@ihatespam.test';",
        ),
        (
            "var xu = 'joe'; a = u + '@ihatespam.test';",
            "var xu = 'joe'; a = u + '@ihatespam.test';",
        ),
        (
            "var h = 'ihatespam.test'; u = 'https://joe@' + h + '/x';",
            "var h = 'ihatespam.test'; u = 'https://joe@' + h + '/x';",
        ),
        // At the very start of the text.
        ("u}@ihatespam.test", "u}@ihatespam.test"),
        ("'@' + d", "'@' + d"),
    ] {
        assert_eq!(rewrite(page), want, "{page}");
        every_cut_gives(&matcher(), page, want, &mut marker);
    }
}

/// `text` as the decimal codes a script's `String.fromCharCode` takes,
/// joined by `sep`.
fn char_codes(text: &str, sep: &str) -> String {
    text.bytes().map(|b| b.to_string()).collect::<Vec<_>>().join(sep)
}

/// A script that writes text from character codes (`document.write(
/// String.fromCharCode(60, 97, …))`, as e-mail "encoders" make it) shows
/// the addresses the codes spell: each gets its ID, as codes, before its
/// `@`'s code.
#[test]
fn character_codes_are_read() {
    let link = "<a href=\"mailto:joe@ihatespam.test\">joe@ihatespam.test</a>";
    let munged = link.replace("@", "-id-zzzz@");
    let call = |text: &str| format!("document.write(String.fromCharCode({}));", char_codes(text, ","));
    let id = "45,105,100,45,122,122,122,122,";
    let cases = [
        (call(link), call(&munged)),
        (call("mjd@plover.com"), call("mjd-id-zzzz@plover.com")),
        (call("mail joe&#64;ihatespam.test"), call("mail joe-id-zzzz&#64;ihatespam.test")),
        (
            "x=String.fromCharCode(0x6a, 0x6f,\n 0x65, 0x40,0x69,0x68,0x61,0x74,0x65,0x73,0x70,0x61,0x6d,0x2e,0x74,0x65,0x73,0x74)".into(),
            format!("x=String.fromCharCode(0x6a, 0x6f,\n 0x65, {id}0x40,0x69,0x68,0x61,0x74,0x65,0x73,0x70,0x61,0x6d,0x2e,0x74,0x65,0x73,0x74)"),
        ),
        // `String.fromCharCode(64)` as the `@` of a script's join.
        (
            "var parts = [\"joe\", \"ihatespam.test\"];\nx = parts.join(String.fromCharCode(64));".into(),
            format!("var parts = [\"joe\", \"ihatespam.test\"];\nx = parts.join(String.fromCharCode({id}64));"),
        ),
        (
            "x = ['joe', 'ihatespam.test'].join( String.fromCharCode( 0x40 ) );".into(),
            format!("x = ['joe', 'ihatespam.test'].join( String.fromCharCode( {id}0x40 ) );"),
        ),
        (
            "var u = 'joe', d = 'ihatespam.test'; w(u + String.fromCharCode(64) + d);".into(),
            format!("var u = 'joe', d = 'ihatespam.test'; w(u + String.fromCharCode({id}64) + d);"),
        ),
        (
            "w('mjd' + String.fromCharCode(64) + 'plover.com');".into(),
            format!("w('mjd' + String.fromCharCode({id}64) + 'plover.com');"),
        ),
        // The codes as an array, through `.apply`.
        (
            format!("String.fromCharCode.apply(null, [{}]);", char_codes("joe@ihatespam.test", ", ")),
            format!(
                "String.fromCharCode.apply(null, [{}, {id}{}]);",
                char_codes("joe", ", "),
                char_codes("@ihatespam.test", ", ")
            ),
        ),
        (
            format!("w(String.fromCharCode.apply( String,[{}] ))", char_codes("mjd@plover.com", ",")),
            format!(
                "w(String.fromCharCode.apply( String,[{},{id}{}] ))",
                char_codes("mjd", ","),
                char_codes("@plover.com", ",")
            ),
        ),
        (
            format!("a {} b", call("x joe@ihatespam.test, mjd [at] plover [dot] com")),
            format!("a {} b", call("x joe-id-zzzz@ihatespam.test, mjd-id-zzzz [at] plover [dot] com")),
        ),
    ];
    // Not addresses, not protected, or not read.
    let left = [
        call("bob@plover.com"),
        call("joe-subscribe@ihatespam.test"),
        call("joe@example.com"),
        call("https://joe@ihatespam.test/x"),
        call("git clone joe@ihatespam.test:x.git"),
        "String.fromCharCode(106,111,101,64,105,104,97,116,101,115,112,97,109,46,116,101,115,116,n)".into(),
        "String.FromCharCode(106,111,101,64,105,104,97,116,101,115,112,97,109,46,116,101,115,116)".into(),
        "String.fromCharCode.apply(null, codes)".into(),
        "String.fromCharCode.apply(null, [106,111,101,64,105,104,97,116,101,115,112,97,109,46,116,101,115,116].reverse())".into(),
        "String.fromCharCode.call(null, 106,111,101,64,105,104,97,116,101,115,112,97,109,46,116,101,115,116)".into(),
        // Longer than any call read.
        call(&format!("{}joe@ihatespam.test", " ".repeat(1500))),
        // Codes of codes: no encoder writes them.
        call(&call("joe@ihatespam.test")),
        // Joins of what is not a protected address, or not only `@`.
        "w(u + String.fromCharCode(64) + d);".into(),
        "w('bob' + String.fromCharCode(64) + 'plover.com');".into(),
        "w('joe' + String.fromCharCode(64) + 'example.com');".into(),
        "x = ['joe', 'ihatespam.test'].join(String.fromCharCode(64, 32));".into(),
        "x = ['joe', 'ihatespam.test'].join(String.fromCharCode(64) + ' ');".into(),
        "fromCharCode(".into(),
    ];
    for (page, want) in cases.into_iter().chain(left.map(|p| (p.clone(), p))) {
        assert_eq!(rewrite(&page), want, "{page}");
        every_cut_gives(&matcher(), &page, &want, &mut marker);
    }
    // With spelled-out addresses off, so is this.
    let off = matcher_without_spelled();
    let page = call("mjd@plover.com");
    assert_eq!(off.rewrite(page.as_bytes(), &mut marker), page.as_bytes());
}

/// An address a page writes in ROT13 for a script to turn back
/// (`znvygb:zwq@cybire.pbz`), which harvesters undo too, gets its ID in
/// ROT13, so the script shows the munged address.
#[test]
fn rot13_addresses_get_rotated_ids() {
    for (page, want) in [
        (
            "<a href=\"znvygb:wbr@vungrfcnz.grfg\">zr</a>",
            "<a href=\"znvygb:wbr-vq-mmmm@vungrfcnz.grfg\">zr</a>",
        ),
        ("Jevgr gb ZWQ@CYBIRE.PBZ.", "Jevgr gb ZWQ-vq-mmmm@CYBIRE.PBZ."),
        (
            "zwq@cybire.pbz, zwq@cybire.pbz",
            "zwq-vq-mmmm@cybire.pbz, zwq-vq-mmmm@cybire.pbz",
        ),
        // Not protected, or not addresses.
        ("wbr@vungrfcnz.grfg.rivy", "wbr@vungrfcnz.grfg.rivy"),
        ("obo@cybire.pbz", "obo@cybire.pbz"),
        ("wbr-fhofpevor@vungrfcnz.grfg", "wbr-fhofpevor@vungrfcnz.grfg"),
        (
            "tvg pybar tvg@vungrfcnz.grfg:k.tvg",
            "tvg pybar tvg@vungrfcnz.grfg:k.tvg",
        ),
        ("wbr&#64;vungrfcnz.grfg", "wbr&#64;vungrfcnz.grfg"),
        ("bob@cnn.com", "bob@cnn.com"),
    ] {
        assert_eq!(rewrite(page), want, "{page}");
        every_cut_gives(&matcher(), page, want, &mut marker);
    }
    // With spelled-out addresses off, so is this.
    let off = matcher_without_spelled();
    assert_eq!(off.rewrite(b"zwq@cybire.pbz", &mut marker), b"zwq@cybire.pbz");
}

/// An address written backwards for a script or a stylesheet to turn round
/// (`'tset.mapsetahi@eoj'.split('').reverse().join('')`, CSS
/// `direction: rtl` with `unicode-bidi: bidi-override`), which browsers
/// show and rendering harvesters read, gets its ID backwards.
#[test]
fn addresses_written_backwards_get_ids_backwards() {
    for (page, want) in [
        (
            "var e = 'tset.mapsetahi@eoj'.split('').reverse().join('');",
            "var e = 'tset.mapsetahi@zzzz-di-eoj'.split('').reverse().join('');",
        ),
        (
            "<span style=\"unicode-bidi:bidi-override; direction:rtl\">TSET.MAPSETAHI@EOJ</span>",
            "<span style=\"unicode-bidi:bidi-override; direction:rtl\">TSET.MAPSETAHI@zzzz-di-EOJ</span>",
        ),
        (
            ".tset.mapsetahi@htims.nhoj ot etirW",
            ".tset.mapsetahi@zzzz-di-htims.nhoj ot etirW",
        ),
        // Not protected, not addresses, or munged already.
        ("moc.revolp@bob", "moc.revolp@bob"),
        ("tset.mapsetahi@ebircsbus-eoj", "tset.mapsetahi@ebircsbus-eoj"),
        ("tig.x:tset.mapsetahi@tig", "tig.x:tset.mapsetahi@tig"),
        ("tset.mapsetahi@eoj//:sptth", "tset.mapsetahi@eoj//:sptth"),
        ("xtset.mapsetahi@eoj", "xtset.mapsetahi@eoj"),
        ("tset.mapsetahi@.eoj", "tset.mapsetahi@.eoj"),
        ("tset.mapsetahi@", "tset.mapsetahi@"),
        ("joe@ihatespam.test", "joe-id-zzzz@ihatespam.test"),
    ] {
        assert_eq!(rewrite(page), want, "{page}");
        every_cut_gives(&matcher(), page, want, &mut marker);
    }
    // Munged already: its ID, read backwards, is one.
    let munged = format!("tset.mapsetahi@{}-di-eoj", "k".repeat(24));
    assert_eq!(rewrite(&munged), munged);
    // With spelled-out addresses off, or for the audit, so is this.
    for m in [matcher_without_spelled(), Matcher::for_decoded(protection())] {
        assert_eq!(
            m.rewrite(b"tset.mapsetahi@eoj", &mut marker),
            b"tset.mapsetahi@eoj"
        );
    }
}

/// Cloudflare's obfuscation in hex, of `text` XORed with `key`, with the
/// key first.
fn cloudflare_hex(key: u8, text: &str) -> String {
    std::iter::once(key)
        .chain(text.bytes().map(|b| b ^ key))
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// A page saved from a site Cloudflare served holds its addresses XORed
/// and in hex (`data-cfemail="…"`, `/cdn-cgi/l/email-protection#…`),
/// which harvesters undo: each gets its ID, obfuscated with the same key.
#[test]
fn cloudflare_obfuscation_gets_obfuscated_ids() {
    let cf = cloudflare_hex;
    let (joe, joe_munged) = (
        cf(0x3d, "joe@ihatespam.test"),
        cf(0x3d, "joe-id-zzzz@ihatespam.test"),
    );
    let (two, two_munged) = (
        cf(0x80, "mailto:joe@ihatespam.test?cc=ann@ihatespam.test"),
        cf(
            0x80,
            "mailto:joe-id-zzzz@ihatespam.test?cc=ann-id-zzzz@ihatespam.test",
        ),
    );
    let cases = [
        (
            format!(
                "<a href=\"/cdn-cgi/l/email-protection#{joe}\"><span class=\"__cf_email__\" data-cfemail=\"{joe}\">[email&#160;protected]</span></a>"
            ),
            format!(
                "<a href=\"/cdn-cgi/l/email-protection#{joe_munged}\"><span class=\"__cf_email__\" data-cfemail=\"{joe_munged}\">[email&#160;protected]</span></a>"
            ),
        ),
        (
            format!("<span data-cfemail = '{}'>", joe.to_uppercase()),
            format!("<span data-cfemail = '{}'>", {
                // The ID is written in lowercase hex, the rest as it was.
                let up = joe.to_uppercase();
                let at = 2 + 2 * 3;
                format!("{}{}{}", &up[..at], &joe_munged[at..at + 2 * 8], &up[at..])
            }),
        ),
        (
            format!("<a href=\"/cdn-cgi/l/email-protection#{two}\">"),
            format!("<a href=\"/cdn-cgi/l/email-protection#{two_munged}\">"),
        ),
        // Not protected, exempt, not an address, not the obfuscation.
        {
            let p = format!(
                "data-cfemail=\"{}\" data-cfemail=\"{}\"",
                cf(7, "joe@example.com"),
                cf(7, "joe-subscribe@ihatespam.test")
            );
            (p.clone(), p)
        },
        {
            let p = format!(
                "<a href=\"/cdn-cgi/l/email-protection#{}\">",
                cf(9, "git@ihatespam.test:x.git")
            );
            (p.clone(), p)
        },
        {
            let p = format!(
                "data-email=\"{joe}\" email-protection:{joe} cfemail=\"{}\"",
                &joe[..joe.len() - 1]
            );
            (p.clone(), p)
        },
    ];
    for (page, want) in &cases {
        assert_eq!(rewrite(page), *want, "{page}");
        every_cut_gives(&matcher(), page, want, &mut marker);
    }
    // With spelled-out addresses off, so is this; and the audit reads it
    // itself.
    let page = format!("data-cfemail=\"{joe}\"");
    for m in [matcher_without_spelled(), Matcher::for_decoded(protection())] {
        assert_eq!(m.rewrite(page.as_bytes(), &mut marker), page.as_bytes());
    }
}

fn b64(text: &str) -> String {
    data_encoding::BASE64.encode(text.as_bytes())
}

fn b64_unpadded(text: &str) -> String {
    data_encoding::BASE64_NOPAD.encode(text.as_bytes())
}

/// Notes the stretches written anew, as the proxy's pipeline does.
#[derive(Default)]
struct Rewrites(Vec<(std::ops::Range<usize>, usize)>);

impl Munger for Rewrites {
    fn munge(&mut self, found: &Found<'_>, out: &mut Vec<u8>) {
        marker(found, out);
    }

    fn rewritten(&mut self, written: std::ops::Range<usize>, replaced: usize) {
        self.0.push((written, replaced));
    }
}

/// base64 that a script decodes (`atob`) or a data URL carries, which
/// harvesters decode: each address gets its ID in the text, and the string
/// is written anew from the first ID on, with the `@` at each of the three
/// places a byte takes in base64's groups.
#[test]
fn base64_gets_ids_in_its_text() {
    let link = "<a href=\"mailto:joe@ihatespam.test\">joe@ihatespam.test</a>";
    let munged = "<a href=\"mailto:joe-id-zzzz@ihatespam.test\">joe-id-zzzz@ihatespam.test</a>";
    let mut cases = Vec::new();
    for lead in ["", "x", "xy"] {
        let (page, munged) = (format!("{lead}{link}"), format!("{lead}{munged}"));
        cases.push((
            format!("<script>document.write(atob('{}'));</script>", b64(&page)),
            format!("<script>document.write(atob('{}'));</script>", b64(&munged)),
        ));
        // Unpadded, it stays so unless it needed no padding.
        let unpadded = if page.len() % 3 == 0 { b64 } else { b64_unpadded };
        cases.push((
            format!("<iframe src=\"data:text/html;base64,{}\">", b64_unpadded(&page)),
            format!("<iframe src=\"data:text/html;base64,{}\">", unpadded(&munged)),
        ));
    }
    // An address alone, two strings, another domain and an exempt
    // address beside a protected one, a git remote (left alone).
    cases.push((
        format!(
            "atob(\"{}\") + atob(\"{}\")",
            b64("mjd@plover.com"),
            b64("ann@ihatespam.test")
        ),
        format!(
            "atob(\"{}\") + atob(\"{}\")",
            b64("mjd-id-zzzz@plover.com"),
            b64("ann-id-zzzz@ihatespam.test")
        ),
    ));
    cases.push((
        b64("bob@example.com, list-subscribe@ihatespam.test, git@ihatespam.test:x.git, joe@ihatespam.test"),
        b64("bob@example.com, list-subscribe@ihatespam.test, git@ihatespam.test:x.git, joe-id-zzzz@ihatespam.test"),
    ));
    for (page, want) in &cases {
        assert_eq!(rewrite(page), *want, "{page}");
        every_cut_gives(&matcher(), page, want, &mut marker);
    }
    // A match that starts where another search's does (the label `a` of
    // `a.b` at an `A`), cut anywhere: found once it is whole.
    let protect = |domain: &str| Protect {
        domain: domain.into(),
        local: Glob::new("*").unwrap(),
        exempt: vec![],
        deliver_to: None,
    };
    let m = Matcher::new(Arc::new(Protection::new(
        vec![protect("a.b"), protect("xn--bcher-kva.example")],
        "-id-",
    )));
    let page = format!("ex{}, x", b64("jj@xn--bcher-kva.example"));
    let want = format!("ex{}, x", b64("jj-id-zzzz@xn--bcher-kva.example"));
    every_cut_gives(&m, &page, &want, &mut marker);
    // After a string too long to read (not read: see below), another is.
    let long = b64(&format!("joe@ihatespam.test{}", "x".repeat(13_000)));
    let page = format!("{long} {}", b64("joe@ihatespam.test"));
    let want = format!("{long} {}", b64("joe-id-zzzz@ihatespam.test"));
    assert_eq!(rewrite(&page), want);
    // The munger is told what was written anew, in place of how much.
    let page = format!("atob('{}')", b64(&format!("Mail {link}")));
    let mut rewrites = Rewrites::default();
    let out = matcher().rewrite(page.as_bytes(), &mut rewrites);
    let [(written, replaced)] = &rewrites.0[..] else {
        panic!("one stretch: {:?}", rewrites.0)
    };
    // `Mail <a href="mailto:joe` is 24 bytes: the `@` starts the ninth
    // group, at the string's 33rd character.
    let start = "atob('".len() + 32;
    assert_eq!(written.start, start);
    assert_eq!(*replaced, page.len() - "')".len() - start);
    assert_eq!(out.len() - written.end, "')".len());
}

/// What `atob()` would not read as that address, or an ID would break,
/// is left as it is; and with spelled-out addresses off, or for the
/// audit (which decodes base64 itself), none is read.
#[test]
fn base64_not_read_where_it_is_no_address() {
    let joe = b64("joe@ihatespam.test");
    let long = format!("joe@ihatespam.test{}", "x".repeat(13_000));
    let jwt_payload = b64_unpadded("{\"email\":\"joe@ihatespam.test\"}");
    let pages = [
        // base64url, and a token's payload between two `.`s.
        format!("-{joe}"),
        format!("{joe}_"),
        format!("eyJhbGciOiJIUzI1NiJ9.{jwt_payload}.c2lnbmF0dXJl"),
        // Wrapped across lines, as mail writes it.
        format!(
            "{}\n{}",
            b64_unpadded("joe@ihatespam.test and"),
            b64("more text follows")
        ),
        // The domain in capitals; a length no base64 has; a string that
        // runs on too far past its address.
        b64("JOE@IHATESPAM.TEST"),
        format!("{}A", b64_unpadded("joe@ihatespam.test")),
        b64(&long),
        // The `@`'s group starts with what is not base64.
        format!("<\"{}", &b64("x@ihatespam.test")[2..]),
        // Cut short, its last character's bits left over not zero.
        "am9lQGloYXRlc3BhbS50ZXN0IGV".to_owned(),
        // Not base64 of an address: the domain runs on.
        b64("joe@ihatespam.testing"),
    ];
    for page in &pages {
        assert_eq!(rewrite(page), *page, "{page}");
    }
    let page = format!("atob('{joe}')");
    for m in [matcher_without_spelled(), Matcher::for_decoded(protection())] {
        assert_eq!(m.rewrite(page.as_bytes(), &mut marker), page.as_bytes());
    }
}

/// A label that holds another (`ai` in `mail`), or the `a` in
/// `fromCharCode(`, is not taken for a candidate of its own while the
/// longer one is still coming: cut anywhere, the longer one is found.
#[test]
fn labels_inside_longer_ones_wait_for_them() {
    let protect = |domain: &str| Protect {
        domain: domain.into(),
        local: Glob::new("*").unwrap(),
        exempt: vec![],
        deliver_to: None,
    };
    // Searched one by one, and (with a one-letter label) by one automaton.
    for domains in [&["mail.test", "ai.test"][..], &["mail.test", "ai.test", "a.b"]] {
        let entries = domains.iter().map(|d| protect(d)).collect();
        let m = Matcher::new(Arc::new(Protection::new(entries, "-id-")));
        for (page, want) in [
            (
                "write john [at] mail [dot] test",
                "write john-id-zzzz [at] mail [dot] test",
            ),
            ("or joe (at) ai (dot) test", "or joe-id-zzzz (at) ai (dot) test"),
            (
                "x = String.fromCharCode(106,64,97,105,46,116,101,115,116);",
                "x = String.fromCharCode(106,45,105,100,45,122,122,122,122,64,97,105,46,116,101,115,116);",
            ),
        ] {
            assert_eq!(m.rewrite(page.as_bytes(), &mut marker), want.as_bytes());
            every_cut_gives(&m, page, want, &mut marker);
            let one_by_one = in_pieces(&m, page.as_bytes().chunks(1), &mut marker);
            assert_eq!(
                String::from_utf8(one_by_one).unwrap(),
                want,
                "{page} byte by byte"
            );
        }
    }
}

/// Looking names up costs a budget that the stream's bytes earn, so a page
/// of joins (each name looked for in the kept bytes) cannot make the
/// scanner search the same bytes over and over: past the budget the joins
/// are left as written, and the bytes after a flood earn it back.
#[test]
fn looking_names_up_is_paid_for_by_the_bytes() {
    // A name set 1,500 bytes before its join: looked up across them.
    let far = format!(
        "var u = 'joe';\n// {}\ny = u + '@ihatespam.test';\n",
        "z".repeat(1500)
    );
    // Joins of a name never set, each looked for in all the kept bytes,
    // between the same name's setting and its join.
    let flood = format!(
        "var u = 'joe';\n{}y = u + '@ihatespam.test';\n",
        "x = '@' + a + '@' + a;\n".repeat(60)
    );
    let filler = "lorem ipsum dolor sit amet, ".repeat(400);
    let page = format!("{far}{flood}{filler}{far}");
    let out = rewrite(&page);
    let found: Vec<usize> = out.match_indices("-id-zzzz@").map(|(i, _)| i).collect();
    assert_eq!(found.len(), 2, "the first join and the one after the filler");
    assert!(found[0] < far.len() && found[1] > far.len() + flood.len() + filler.len());
    // The same wherever the stream is cut.
    for cut in (0..page.len()).step_by(997) {
        let (a, b) = page.as_bytes().split_at(cut);
        let mut s = matcher().scanner();
        let mut o = Vec::new();
        s.feed(a, &mut o, &mut marker);
        s.feed(b, &mut o, &mut marker);
        s.finish(&mut o, &mut marker);
        assert_eq!(String::from_utf8(o).unwrap(), out, "cut at {cut}");
    }
}

/// An international domain as pages show it (`bücher.example`) is the
/// protected `xn--bcher-kva.example`: the ID is made for the ASCII form,
/// as mail carries it, however many domains are protected.
#[test]
fn international_domains_in_unicode_get_their_id() {
    let idn = |n: usize| {
        let mut entries: Vec<Protect> = (0..n)
            .map(|i| Protect {
                domain: format!("a{i}.test"),
                local: Glob::new("*").unwrap(),
                exempt: vec![],
                deliver_to: None,
            })
            .collect();
        entries.push(Protect {
            domain: addrmunge::address::check_domain("bücher.example").unwrap(),
            local: Glob::new("*").unwrap(),
            exempt: vec![],
            deliver_to: None,
        });
        Matcher::new(Arc::new(Protection::new(entries, "-id-")))
    };
    let mut domains = Vec::new();
    let mut record = |f: &Found<'_>, out: &mut Vec<u8>| {
        domains.push(format!("{}@{}", f.local, f.domain));
        out.extend_from_slice(b"-id-zzzz");
    };
    for m in [idn(0), idn(9)] {
        for (page, want) in [
            ("mail mjd@bücher.example.", "mail mjd-id-zzzz@bücher.example."),
            ("mjd@Bücher.example&nbsp;or", "mjd-id-zzzz@Bücher.example&nbsp;or"),
            ("mjd@xn--bcher-kva.example", "mjd-id-zzzz@xn--bcher-kva.example"),
            (
                "<a href=\"mailto:mjd@bücher.example?subject=x\">",
                "<a href=\"mailto:mjd-id-zzzz@bücher.example?subject=x\">",
            ),
            ("联系mjd@bücher.example联系", "联系mjd-id-zzzz@bücher.example联系"),
            // Its letters spelled as older editors and URL encoders write them.
            ("mjd@b&uuml;cher.example", "mjd-id-zzzz@b&uuml;cher.example"),
            ("MJD@B&Uuml;CHER.EXAMPLE.", "MJD-id-zzzz@B&Uuml;CHER.EXAMPLE."),
            (
                "mjd@b&#252;cher&#46;example",
                "mjd-id-zzzz@b&#252;cher&#46;example",
            ),
            (
                "mjd&#64;b&#xFC;cher.example",
                "mjd-id-zzzz&#64;b&#xFC;cher.example",
            ),
            (
                "<a href=\"mailto:mjd@b%C3%BCcher.example\">",
                "<a href=\"mailto:mjd-id-zzzz@b%C3%BCcher.example\">",
            ),
            (
                "mjd%40b%c3%bccher%2Eexample",
                "mjd-id-zzzz%40b%c3%bccher%2Eexample",
            ),
            // Other domains.
            ("mjd@b&uuml;cherei.example", "mjd@b&uuml;cherei.example"),
            ("mjd@b&ouml;cher.example", "mjd@b&ouml;cher.example"),
            ("mjd@b%C3%BC%C3cher.example", "mjd@b%C3%BC%C3cher.example"),
            ("mjd@b&uuml", "mjd@b&uuml"),
            // Not a reference: a browser shows it as written.
            (
                "MJD&#64;B&#x+DC;CHER&#46;example",
                "MJD&#64;B&#x+DC;CHER&#46;example",
            ),
            ("mjd@b&#+252;cher.example", "mjd@b&#+252;cher.example"),
            // Spelled out.
            (
                "mjd [at] bücher [dot] example",
                "mjd-id-zzzz [at] bücher [dot] example",
            ),
            (
                "mjd (at) bücher.example, ok",
                "mjd-id-zzzz (at) bücher.example, ok",
            ),
            ("mjd AT bücher DOT example.", "mjd-id-zzzz AT bücher DOT example."),
            (
                "mjd [at] bücher [dot] example [dot] org",
                "mjd [at] bücher [dot] example [dot] org",
            ),
            ("mjd [at] bücher [dot] examples", "mjd [at] bücher [dot] examples"),
            (
                "mjd [at] bücherei [dot] example",
                "mjd [at] bücherei [dot] example",
            ),
            ("mjd@bücherei.example", "mjd@bücherei.example"),
            ("mjd@bücher.example.org", "mjd@bücher.example.org"),
            ("mjd@bücher.examples", "mjd@bücher.examples"),
        ] {
            let got = String::from_utf8(m.rewrite(page.as_bytes(), &mut record)).unwrap();
            assert_eq!(got, want, "{page}");
            every_cut_gives(&m, page, want, &mut marker);
        }
    }
    assert!(
        domains.iter().all(|d| d == "mjd@xn--bcher-kva.example"),
        "{domains:?}"
    );
}

#[test]
fn already_munged_addresses_are_left_alone() {
    let m = format!("joe-id-{}@ihatespam.test", "k".repeat(24));
    assert_eq!(rewrite(&m), m);
}

#[test]
fn every_html_place_and_other_text_types() {
    let page =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/fixtures/site/forms.html")).unwrap();
    let want_count = page.matches("<!--want-->").count();
    let mut n = 0;
    let out = matcher().rewrite(page.as_bytes(), &mut |_: &Found<'_>, o: &mut Vec<u8>| {
        n += 1;
        o.extend_from_slice(b"-id-zzzz");
    });
    assert!(want_count >= 20);
    assert_eq!(n, want_count, "{}", String::from_utf8_lossy(&out));
    for (text, ctype) in [
        (r#"{"email":"joe\u0040ihatespam.test","name":"Joe"}"#, "json"),
        ("<item><author>joe@ihatespam.test (Joe)</author></item>", "rss"),
        ("a::after { content: \"joe@ihatespam.test\"; }", "css"),
        (
            "var a = 'joe' + '\\x40' + 'ihatespam.test'; // joe@ihatespam.test",
            "js",
        ),
    ] {
        let out = rewrite(text);
        assert!(out.contains("-id-zzzz"), "{ctype}: {out}");
    }
}

#[test]
fn bytes_that_are_not_utf8_are_kept() {
    let input = b"\xff\xfe joe@ihatespam.test \x80\x81";
    let out = matcher().rewrite(input, &mut marker);
    assert_eq!(out, b"\xff\xfe joe-id-zzzz@ihatespam.test \x80\x81");
}

#[test]
fn real_tokens_decode_to_the_visitor() {
    let keys = KeyRing::new(&[[9; 32]]);
    let prot = protection();
    let day: Day = "2026-11-22".parse().unwrap();
    let ip = "203.0.113.77".parse().unwrap();
    let page = "<a href=\"mailto:joe&#64;ihatespam.test\">joe&#64;ihatespam.test</a> MJD@plover.com";
    let out =
        Matcher::new(Arc::clone(&prot)).rewrite(page.as_bytes(), &mut |f: &Found<'_>, o: &mut Vec<u8>| {
            let base = format!("{}@{}", f.local, f.domain);
            o.extend_from_slice(prot.separator().as_bytes());
            o.extend_from_slice(
                keys.encode(&base, "", &Claims::visit(Kind::Visitor, day, ip))
                    .as_bytes(),
            );
        });
    let out = String::from_utf8(out).unwrap();
    let decoded = out.replace("&#64;", "@");
    let mut seen = 0;
    for word in decoded.split(|c: char| !(c.is_ascii_alphanumeric() || "@.-".contains(c))) {
        if word.contains("-id-") {
            let v = check(&keys, &prot, &RuleSet::default(), &Served::default(), word, day);
            assert_eq!(v.status, Status::Valid, "{word}: {:?}", v.error);
            assert_eq!(v.ip.as_deref(), Some("203.0.113.77"));
            assert_eq!(v.date, Some(day));
            seen += 1;
        }
    }
    assert_eq!(seen, 3, "{out}");
    assert!(out.contains("mjd-id-") || out.contains("MJD-id-"), "{out}");
}

#[test]
fn memory_stays_bounded_on_a_100_mb_text_run() {
    let m = matcher();
    let mut s = m.scanner();
    let mut chunk = Vec::new();
    while chunk.len() < 64 * 1024 {
        chunk.extend_from_slice(
            b"lorem ipsum dolor sit amet, consectetur &amp; adipiscing 50%25 elit @ home ",
        );
    }
    chunk.extend_from_slice(b"joe@ihatespam.test ");
    let mut out = Vec::with_capacity(chunk.len() * 2);
    let mut max_held = 0;
    let mut total_in = 0;
    let mut total_out = 0;
    while total_in < 100 * 1024 * 1024 {
        s.feed(&chunk, &mut out, &mut marker);
        max_held = max_held.max(s.held());
        total_in += chunk.len();
        total_out += out.len();
        out.clear();
    }
    s.finish(&mut out, &mut marker);
    total_out += out.len();
    assert_eq!(total_out, total_in + 8 * s.munged() as usize);
    assert_eq!(s.munged() as usize, total_in / chunk.len());
    assert!(max_held <= chunk.len() + HISTORY + 8192, "held {max_held} bytes");
    // One text run with no chunk boundary helping: an '@' followed by 10 MB
    // of domain characters must not make the scanner hold it all.
    let mut s = m.scanner();
    s.feed(b"joe@", &mut out, &mut marker);
    for _ in 0..160 {
        s.feed(&[b'a'; 65536], &mut out, &mut marker);
        assert!(s.held() <= 65536 + HISTORY + 8192);
    }
}

/// Fragments that make interesting inputs: addresses in many spellings,
/// near misses, entities, escapes and arbitrary bytes.
fn fragment() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        Just(b"joe".to_vec()),
        Just(b"MJD".to_vec()),
        Just(b"@".to_vec()),
        Just(b"&#64;".to_vec()),
        Just(b"&#x40".to_vec()),
        Just(b"&commat;".to_vec()),
        Just(b"%40".to_vec()),
        Just(b"%25".to_vec()),
        Just(b"\\@".to_vec()),
        Just(b"&#37;&#52;&#48;".to_vec()),
        Just(b"&#46;".to_vec()),
        Just(b"\"".to_vec()),
        Just(b"&quot;".to_vec()),
        Just(b"\\u0040".to_vec()),
        Just(b"\\x40".to_vec()),
        Just(b"\\u{40}".to_vec()),
        Just(b"\\u{6d}".to_vec()),
        Just(b"\\u{".to_vec()),
        Just(b"ihatespam.test".to_vec()),
        Just(b"ihate&#115;pam&#46;test".to_vec()),
        Just(b"plover.com".to_vec()),
        Just(b".".to_vec()),
        Just(b"-".to_vec()),
        Just(b"&amp;".to_vec()),
        Just(b"&#".to_vec()),
        Just(b"%".to_vec()),
        Just(b"\\".to_vec()),
        Just(b"-subscribe".to_vec()),
        Just(b"mailto:".to_vec()),
        Just(b" ".to_vec()),
        // Spelled-out addresses: words, gaps and bare labels.
        Just(b" [at] ".to_vec()),
        Just(b"(at)".to_vec()),
        Just(b" at ".to_vec()),
        Just(b" dot ".to_vec()),
        Just(b"[dot]".to_vec()),
        Just(b"[@]".to_vec()),
        Just(b" &lt;at&gt; ".to_vec()),
        Just(b"<dot>".to_vec()),
        Just(b"(.)".to_vec()),
        Just(b"<span></span>".to_vec()),
        Just(b"<span style=\"display:none\">x</span>".to_vec()),
        Just(b"<b hidden>".to_vec()),
        Just(b"</b>".to_vec()),
        Just(b"<!-- -->".to_vec()),
        Just(b"&nbsp;".to_vec()),
        Just(b"ihatespam".to_vec()),
        // A label's halves, for markup to come between.
        Just(b"ihate".to_vec()),
        Just(b"spam.test".to_vec()),
        Just(b"plover".to_vec()),
        Just(b"test".to_vec()),
        Just(b"com".to_vec()),
        Just(b"'s".to_vec()),
        // A script's names and joins.
        Just(b"var u = 'joe', d = 'ihatespam.test';".to_vec()),
        Just(b"{u: \"mjd\", d: 'plover'}".to_vec()),
        Just(b"u".to_vec()),
        Just(b"o.d".to_vec()),
        Just(b"' + ".to_vec()),
        Just(b" + '".to_vec()),
        Just(b"${u}".to_vec()),
        Just(b"${d}".to_vec()),
        Just(b"`".to_vec()),
        Just(b":x/".to_vec()),
        Just(b"://".to_vec()),
        // Characters that render as nothing, the fullwidth at sign, and
        // their first bytes alone.
        Just(b"&shy;".to_vec()),
        Just(b"\xc2\xad".to_vec()),
        Just(b"\xe2\x80\x8b".to_vec()),
        Just(b"\xef\xbc\xa0".to_vec()),
        Just(b"&#xff20;".to_vec()),
        Just("ｍｊｄ".as_bytes().to_vec()),
        Just("ｐｌｏｖｅｒ．ｃｏｍ".as_bytes().to_vec()),
        Just("。".as_bytes().to_vec()),
        Just("﹫".as_bytes().to_vec()),
        Just(b"\xef\xbd".to_vec()),
        Just(b"\xef".to_vec()),
        Just(b"\xe2\x80".to_vec()),
        prop::collection::vec(any::<u8>(), 0..8),
    ]
}

/// A script's assignments, names, joins, `@`s, character codes and ROT13,
/// so that joins of names (see `script_variables_are_looked_up`), calls of
/// `fromCharCode` and rotated addresses come together often.
fn script_input() -> impl Strategy<Value = Vec<u8>> {
    let piece = prop_oneof![
        Just(b"var u = 'joe', d = 'ihatespam.test';".to_vec()),
        Just(b"{u: \"mjd\", d: 'plover', t: 'com'}".to_vec()),
        Just(b"u = 'x';".to_vec()),
        Just(b"u".to_vec()),
        Just(b"o.d".to_vec()),
        Just(b"t".to_vec()),
        Just(b"'".to_vec()),
        Just(b"`".to_vec()),
        Just(b" + ".to_vec()),
        Just(b"@".to_vec()),
        Just(b"&#64;".to_vec()),
        Just(b".".to_vec()),
        Just(b"${u}".to_vec()),
        Just(b"${d}".to_vec()),
        Just(b"['joe', d]".to_vec()),
        Just(b".join(".to_vec()),
        Just(b")".to_vec()),
        Just(b"joe".to_vec()),
        Just(b"ihatespam.test".to_vec()),
        Just(b" ".to_vec()),
        // Character codes: `fromCharCode(` and pieces of `joe@ihatespam.test`.
        Just(
            b"String.fromCharCode(106,111,101,64,105,104,97,116,101,115,112,97,109,46,116,101,115,116)"
                .to_vec()
        ),
        Just(b"String.fromCharCode(".to_vec()),
        Just(b"String.fromCharCode(64)".to_vec()),
        Just(b"106,111,101,".to_vec()),
        Just(b"64, ".to_vec()),
        Just(b"0x40,".to_vec()),
        Just(b"105,104,97,116,101,115,112,97,109,46,116,101,115,116".to_vec()),
        Just(b",".to_vec()),
        // ROT13: `joe@ihatespam.test` and pieces.
        Just(b"wbr@vungrfcnz.grfg".to_vec()),
        Just(b"vungrfcnz.grfg:".to_vec()),
        Just(b"wbr".to_vec()),
        prop::collection::vec(any::<u8>(), 0..4),
    ];
    prop::collection::vec(piece, 0..40).prop_map(|v| v.concat())
}

fn input() -> impl Strategy<Value = Vec<u8>> {
    prop::collection::vec(fragment(), 0..60).prop_map(|v| v.concat())
}

/// Pages of a few to tens of KB: the fragments above between runs of plain
/// text, so addresses fall anywhere relative to chunk seams.
fn big_input() -> impl Strategy<Value = Vec<u8>> {
    let filler = (0usize..3000).prop_map(|n| {
        b"lorem ipsum "
            .iter()
            .copied()
            .cycle()
            .take(n)
            .collect::<Vec<u8>>()
    });
    prop::collection::vec(prop_oneof![4 => fragment(), 1 => filler], 0..300).prop_map(|v| v.concat())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn any_split_gives_the_one_shot_output(input in input(), cuts in prop::collection::vec(any::<prop::sample::Index>(), 0..12)) {
        let m = matcher();
        let one_shot = m.rewrite(&input, &mut marker);
        prop_assert_eq!(in_pieces(&m, cut_at(&input, &cuts), &mut marker), one_shot);
    }

    #[test]
    fn scripts_joining_names_in_any_split(input in script_input(), cuts in prop::collection::vec(any::<prop::sample::Index>(), 0..12)) {
        let m = matcher();
        let one_shot = m.rewrite(&input, &mut echo);
        prop_assert_eq!(in_pieces(&m, cut_at(&input, &cuts), &mut echo), one_shot.clone());
        prop_assert_eq!(in_pieces(&m, input.chunks(1), &mut echo), one_shot);
    }

    #[test]
    fn one_byte_chunks_give_the_one_shot_output(input in input()) {
        let m = matcher();
        let one_shot = m.rewrite(&input, &mut marker);
        let mut s = m.scanner();
        let mut out = Vec::new();
        for b in &input {
            s.feed(std::slice::from_ref(b), &mut out, &mut marker);
        }
        s.finish(&mut out, &mut marker);
        prop_assert_eq!(out, one_shot);
    }

    #[test]
    fn input_without_protected_addresses_is_byte_identical(
        parts in prop::collection::vec(prop_oneof![
            fragment().prop_filter("no protected domain", |f| {
                let has = |w: &[u8]| f.windows(w.len()).any(|x| x == w);
                !has(b"plover") && !has(b"ihate") && !f.starts_with("ｐｌｏｖｅｒ".as_bytes())
            }),
            Just(b"notihatespam.test".to_vec()),
            Just(b"ihatespam.test.evil".to_vec()),
        ], 0..60)
    ) {
        let input = parts.concat();
        let m = matcher();
        let mut n = 0;
        let out = m.rewrite(&input, &mut |_: &Found<'_>, _: &mut Vec<u8>| n += 1);
        prop_assert_eq!(n, 0);
        prop_assert_eq!(out, input);
    }
}

proptest! {
    // Pages are big: fewer cases, each covering many seams.
    #![proptest_config(ProptestConfig::with_cases(300))]

    /// Large chunks are scanned in place (only their first and last bytes
    /// are copied into the carry); output must equal feeding the same bytes
    /// in chunks too small for that, which all go through the carry. The
    /// munger writes what it found, so a local part cut short at a seam shows.
    #[test]
    fn large_chunks_scanned_in_place_give_the_carried_output(
        input in big_input(),
        cuts in prop::collection::vec(any::<prop::sample::Index>(), 0..6),
        small in 64usize..2000,
        big in 2900usize..6000,
    ) {
        let m = matcher();
        let reference = in_pieces(&m, input.chunks(small), &mut echo);
        prop_assert_eq!(&m.rewrite(&input, &mut echo), &reference);
        prop_assert_eq!(&in_pieces(&m, input.chunks(big), &mut echo), &reference);
        prop_assert_eq!(&in_pieces(&m, cut_at(&input, &cuts), &mut echo), &reference);
    }
}

#[test]
fn a_chunk_seam_anywhere_near_an_address_changes_nothing() {
    let filler = "lorem ipsum ".repeat(500);
    let long_local = "a.very-long_local.part+with.many.characters-in-it.to.spell.out";
    // Each address is on the page twice; exempt and unprotected ones are
    // munged only when a seam cuts their local part short.
    for (local, at, domain, munged) in [
        (entities(long_local), "&#64;", "ihatespam.test".to_owned(), 2),
        (percent(long_local), "%40", entities("ihatespam.test"), 2),
        (
            hex_entities("list-subscribe"),
            "@",
            "ihatespam.test".to_owned(),
            0,
        ),
        (entities("xmjd"), "&commat;", "plover.com".to_owned(), 0),
        ("&amp;#109;jd".to_owned(), "&amp;#64;", "plover.com".to_owned(), 2),
        // Nearly HISTORY bytes of local part: long spellings of each character.
        (
            long_local.bytes().map(|b| format!("&amp;#{b:08};")).collect(),
            "@",
            "ihatespam.test".to_owned(),
            2,
        ),
    ] {
        let address = format!("{local}{at}{domain}");
        let input = format!("{filler}<a href=\"mailto:{address}\">{address}</a>{filler}");
        let input = input.as_bytes();
        let first = filler.len();
        let last = input.len() - filler.len();
        let m = matcher();
        let want_echo = in_pieces(&m, input.chunks(100), &mut echo);
        assert_eq!(
            String::from_utf8_lossy(&want_echo).matches("-id-[").count(),
            munged,
            "{address}"
        );
        let want_elsewhere = in_pieces(&m, input.chunks(100), &mut Elsewhere);
        for cut in first - HISTORY - 50..last + 50 {
            let (a, b) = input.split_at(cut);
            let got = in_pieces(&m, [a, b].into_iter(), &mut echo);
            assert!(
                got == want_echo,
                "{address} cut at {cut}: {}",
                String::from_utf8_lossy(&got[first - 20..])
            );
            assert!(
                in_pieces(&m, [a, b].into_iter(), &mut Elsewhere) == want_elsewhere,
                "{address} cut at {cut}"
            );
        }
    }
}

/// Feeds `pieces` to a new scanner and finishes it.
/// `input` cut at the given points (in any order), every byte in one piece.
fn cut_at<'a>(input: &'a [u8], cuts: &[prop::sample::Index]) -> impl Iterator<Item = &'a [u8]> {
    let mut points: Vec<usize> = cuts.iter().map(|i| i.index(input.len() + 1)).collect();
    points.sort_unstable();
    points.push(input.len());
    let mut prev = 0;
    points.into_iter().map(move |p| {
        let piece = &input[prev..p];
        prev = p;
        piece
    })
}

fn in_pieces<'a>(
    m: &Arc<Matcher>,
    pieces: impl Iterator<Item = &'a [u8]>,
    munger: &mut impl Munger,
) -> Vec<u8> {
    let mut s = m.scanner();
    let mut out = Vec::new();
    for piece in pieces {
        s.feed(piece, &mut out, munger);
    }
    s.finish(&mut out, munger);
    out
}

/// A munger that writes out what was found, so a test sees the decoded
/// local part and domain, not only that something matched.
fn echo(f: &Found<'_>, out: &mut Vec<u8>) {
    out.extend_from_slice(format!("-id-[{}@{}]", f.local, f.domain).as_bytes());
}

/// A munger that also sends the address to another domain (the `domain`
/// harvester action).
struct Elsewhere;

impl Munger for Elsewhere {
    fn munge(&mut self, _: &Found<'_>, out: &mut Vec<u8>) {
        out.extend_from_slice(b"-id-zzzz");
    }
    fn domain(&self, _: &Found<'_>) -> Option<&str> {
        Some("siphon.invalid")
    }
}

#[test]
fn a_munger_can_replace_the_domain_in_any_spelling() {
    let cases = [
        ("mail mjd@plover.com. Now", "mail mjd-id-zzzz@siphon.invalid. Now"),
        (
            "<a href=\"mailto:joe@ihatespam.test?subject=x\">",
            "<a href=\"mailto:joe-id-zzzz@siphon.invalid?subject=x\">",
        ),
        ("joe&#64;ihatespam&#46;test!", "joe-id-zzzz&#64;siphon.invalid!"),
        (
            "a@b.test joe%40IHATESPAM.test, x",
            "a@b.test joe-id-zzzz%40siphon.invalid, x",
        ),
        ("list-subscribe@ihatespam.test", "list-subscribe@ihatespam.test"),
        ("(\"joe\"@ihatespam.test)", "(\"joe-id-zzzz\"@siphon.invalid)"),
    ];
    for (input, want) in cases {
        let got = matcher().rewrite(input.as_bytes(), &mut Elsewhere);
        assert_eq!(String::from_utf8(got).unwrap(), want, "{input}");
        every_cut_gives(&matcher(), input, want, &mut Elsewhere);
    }
}

/// A protected domain of any legal shape: 1 to 4 labels of 1 to 63
/// octets, at most 253 in all, often near the limits.
fn any_domain() -> impl Strategy<Value = String> {
    let len = prop_oneof![1usize..=63, 58usize..=63];
    prop::collection::vec((len, "[a-z0-9]"), 1..=4).prop_map(|labels| {
        let mut d = String::new();
        for (len, c) in labels {
            let room = 253usize.saturating_sub(d.len() + usize::from(!d.is_empty()));
            if room == 0 {
                break;
            }
            if !d.is_empty() {
                d.push('.');
            }
            d.push_str(&c.repeat(len.min(room)));
        }
        d
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    /// Any legal protected domain, however long, next to longer runs of
    /// domain characters, trailing dots and encoded spellings: nothing
    /// panics, chunking changes nothing, and a plain address is munged.
    #[test]
    fn any_protected_domain_streams_the_same_in_any_chunks(
        domain in any_domain(),
        glob in prop::sample::select(vec!["*", "joe", "jo*", "*oe", "j?e", "a*b*c"]),
        pieces in prop::collection::vec(0usize..9, 0..40),
        cuts in prop::collection::vec(any::<prop::sample::Index>(), 0..8),
    ) {
        let m = Matcher::new(Arc::new(Protection::new(
            vec![Protect { domain: domain.clone(), local: Glob::new(glob).unwrap(), exempt: vec![], deliver_to: None }],
            "-id-",
        )));
        let spellings = [
            format!("joe@{domain}"),
            format!("JOE@{}", domain.to_uppercase()),
            format!("joe&#64;{}", entities(&domain)),
            format!("joe@{domain}...."),
            format!("joe@{domain}{}", "a".repeat(40)),
            format!("joe@{domain}.{}", "b".repeat(300)),
            format!("{}@{domain}", "c".repeat(70)),
            " ".to_string(),
            "&#".to_string(),
        ];
        let mut input: Vec<u8> = pieces.iter().flat_map(|&i| spellings[i].bytes()).collect();
        input.extend_from_slice(format!(" joe@{domain} ").as_bytes());
        let one_shot = m.rewrite(&input, &mut marker);
        prop_assert_eq!(&in_pieces(&m, cut_at(&input, &cuts), &mut marker), &one_shot);
        let tail = if Glob::new(glob).unwrap().matches("joe") {
            format!(" joe-id-zzzz@{domain} ")
        } else {
            format!(" joe@{domain} ")
        };
        prop_assert!(one_shot.ends_with(tail.as_bytes()));
    }
}

/// A char spelled in one of the ways the scanner decodes.
fn spell(c: char, how: u8) -> String {
    let b = c as u32;
    match how % 7 {
        0 => c.to_string(),
        1 => format!("&#{b};"),
        2 => format!("&#x{b:x};"),
        3 => format!("%{b:02X}"),
        4 => format!("\\x{b:02x}"),
        5 => format!("%u{b:04X}"),
        _ => format!("\\u{b:04x}"),
    }
}

/// URL credentials and git/ssh remotes are not addresses: they are left as
/// written, while addresses next to a `:` stay addresses.
#[test]
fn url_userinfo_and_remotes_are_left_alone() {
    for kept in [
        "git clone git@ihatespam.test:mjd/addrmunge.git",
        "git clone ssh://git@ihatespam.test/mjd/addrmunge.git",
        "curl http://joe:secret@ihatespam.test/private/",
        "<a href=\"https://joe:secret@ihatespam.test/x\">",
        "ftp://anonymous@ihatespam.test/pub/",
        "rsync -a joe@ihatespam.test:~/backup/ .",
        "scp notes.txt joe@ihatespam.test:/tmp/",
        "{\"url\": \"https:\\/\\/joe:pw@ihatespam.test\\/x\"}",
        "http:&#47;&#47;joe&#64;ihatespam.test/",
        "http%3A%2F%2Fjoe%40ihatespam.test%2F",
        "https://joe:p%40ss!w(o)rd@ihatespam.test/",
        "svn+ssh://joe@ihatespam.test/repo",
        "git@IHATESPAM.TEST:Mjd/X.git",
        // An authority on its own, as documentation quotes one.
        "``\"joe:password@ihatespam.test\"`` is not",
        "<span class=\"pre\">&quot;joe:password&#64;ihatespam.test&quot;</span>",
        "'joe:pw@ihatespam.test/path'",
    ] {
        assert_eq!(rewrite(kept), kept, "{kept}");
    }
    for (address, munged) in [
        (
            "Write to joe@ihatespam.test: he answers",
            "Write to joe-id-zzzz@ihatespam.test: he answers",
        ),
        ("joe@ihatespam.test:", "joe-id-zzzz@ihatespam.test:"),
        ("joe@ihatespam.test:\n", "joe-id-zzzz@ihatespam.test:\n"),
        (
            "<a href=\"mailto:joe@ihatespam.test\">",
            "<a href=\"mailto:joe-id-zzzz@ihatespam.test\">",
        ),
        (
            "mailto://joe@ihatespam.test",
            "mailto://joe-id-zzzz@ihatespam.test",
        ),
        ("ssh joe@ihatespam.test", "ssh joe-id-zzzz@ihatespam.test"),
        (
            "https://lists.example/archive/joe@ihatespam.test",
            "https://lists.example/archive/joe-id-zzzz@ihatespam.test",
        ),
        (
            "https://x.example/?to=joe@ihatespam.test",
            "https://x.example/?to=joe-id-zzzz@ihatespam.test",
        ),
        (
            "see http://x.example/ joe@ihatespam.test",
            "see http://x.example/ joe-id-zzzz@ihatespam.test",
        ),
        ("//joe@ihatespam.test", "//joe-id-zzzz@ihatespam.test"),
        ("joe@ihatespam.test:</a>", "joe-id-zzzz@ihatespam.test:</a>"),
        // A label before the colon: an address.
        (
            "\"Email:joe@ihatespam.test\"",
            "\"Email:joe-id-zzzz@ihatespam.test\"",
        ),
        (
            "'mailto:joe@ihatespam.test'",
            "'mailto:joe-id-zzzz@ihatespam.test'",
        ),
        // Unquoted, or not closed after the host: an address.
        ("user:joe@ihatespam.test", "user:joe-id-zzzz@ihatespam.test"),
        (
            "\"joe:pw@ihatespam.test is mine\"",
            "\"joe:pw-id-zzzz@ihatespam.test is mine\"",
        ),
    ] {
        assert_eq!(rewrite(address), munged, "{address}");
    }
}

/// The same forms in every spelling and cut at every byte: left alone the
/// same way whatever the chunking.
#[test]
fn remotes_and_authorities_in_every_spelling_and_every_split() {
    let forms = [
        ("git", "@", "ihatespam.test", ":mjd/x.git"),
        ("https://joe:secret", "@", "ihatespam.test", "/private/"),
        ("ssh://git", "@", "ihatespam.test", "/repo"),
    ];
    for (before, at, domain, after) in forms {
        for how in 0..6u8 {
            // Spell the characters that decide (around the @) one way.
            let before: String = before
                .chars()
                .enumerate()
                .map(|(i, c)| spell(c, how.wrapping_add(i as u8 % 2)))
                .collect();
            let after: String = after
                .chars()
                .take(3)
                .map(|c| spell(c, how))
                .chain(after.chars().skip(3).map(String::from))
                .collect();
            let text = format!(
                "x {before}{}{domain}{after} y",
                spell(at.chars().next().unwrap(), how)
            );
            let whole = rewrite(&text);
            assert_eq!(whole, text, "spelling {how}");
            let bytes = text.as_bytes();
            for cut in 0..=bytes.len() {
                let mut s = matcher().scanner();
                let mut out = Vec::new();
                s.feed(&bytes[..cut], &mut out, &mut marker);
                s.feed(&bytes[cut..], &mut out, &mut marker);
                s.finish(&mut out, &mut marker);
                assert_eq!(
                    String::from_utf8(out).unwrap(),
                    whole,
                    "spelling {how}, cut at {cut}"
                );
                assert_eq!(s.left_alone(), 1);
            }
        }
    }
}

proptest! {
    /// Random text around the forms: one-shot equals any two-way split,
    /// and the forms never change.
    #[test]
    fn left_alone_forms_are_split_invariant(
        pre in "[ a-z:/@.&#;%0-9]{0,40}",
        form in prop::sample::select(vec![
            "git@ihatespam.test:mjd/x.git",
            "https://joe:pw@ihatespam.test/",
            "ftp://anonymous@ihatespam.test/pub",
            "joe@ihatespam.test: hi",
            "'joe:pw@ihatespam.test'",
        ]),
        post in "[ a-z:/@.0-9]{0,40}",
        cut in 0usize..200,
    ) {
        let text = format!("{pre} {form} {post}");
        let whole = rewrite(&text);
        let bytes = text.as_bytes();
        let cut = cut.min(bytes.len());
        let mut s = matcher().scanner();
        let mut out = Vec::new();
        s.feed(&bytes[..cut], &mut out, &mut marker);
        s.feed(&bytes[cut..], &mut out, &mut marker);
        s.finish(&mut out, &mut marker);
        prop_assert_eq!(String::from_utf8(out).unwrap(), whole.clone());
        if !form.ends_with("hi") {
            prop_assert!(whole.contains(form), "{} -> {}", text, whole);
        }
    }
}

proptest! {
    /// Found::offset is where the `@` is in the stream (or where a spelled-out
    /// address's local part ends), whatever the chunking (large chunks are
    /// scanned in place, small ones carried).
    #[test]
    fn offsets_point_at_the_at_sign(
        parts in prop::collection::vec(prop::sample::select(vec![
            "joe@ihatespam.test ", "x ", "mjd@plover.com\n", "&amp; ", "%41 ",
            "joe [at] ihatespam [dot] test ", "\"mjd\"@plover.com ",
        ]), 1..200),
        filler in 0usize..20_000,
        chunk in 1usize..40_000,
    ) {
        let mut text = " ".repeat(filler).into_bytes();
        text.extend(parts.concat().into_bytes());
        let mut offsets = Vec::new();
        let mut record = |f: &Found<'_>, _: &mut Vec<u8>| offsets.push(f.offset);
        let mut s = matcher().scanner();
        let mut out = Vec::new();
        for c in text.chunks(chunk) {
            s.feed(c, &mut out, &mut record);
        }
        s.finish(&mut out, &mut record);
        let want: Vec<u64> = parts.iter().scan(filler, |at, p| {
            let here = p.find("\"@").or(p.find('@')).or(p.find(" [at]")).map(|i| (*at + i) as u64);
            *at += p.len();
            Some(here)
        }).flatten().collect();
        prop_assert_eq!(offsets, want);
    }
}

/// A local part split by markup gets the ID of the word a reader sees.
#[test]
fn a_local_part_split_by_tags_is_the_whole_word() {
    for (page, want) in [
        ("<b>jo</b>e@ihatespam.test", "joe"),
        ("<span>j</span><span>oe</span>@ihatespam.test", "joe"),
        ("j<!-- -->o<i></i>e&#64;ihatespam.test", "joe"),
        ("<b>Mail</b><span>joe</span>@ihatespam.test", "mailjoe"),
        ("jo <b>e</b>@ihatespam.test", "e"),
        ("jo<div>e@ihatespam.test", "e"),
    ] {
        let mut locals = Vec::new();
        let mut record = |f: &Found<'_>, out: &mut Vec<u8>| {
            locals.push(f.local.to_owned());
            out.extend_from_slice(b"-id-zzzz");
        };
        matcher().rewrite(page.as_bytes(), &mut record);
        assert_eq!(locals, [want], "{page}");
    }
}

#[test]
fn spelled_out_addresses_get_their_id_after_the_local_part() {
    // Past four protected domains their labels are searched another way
    // (one automaton): what gets an ID must not change with it.
    let mut entries = protection().entries().to_vec();
    entries.extend(["a1", "a2", "a3", "a4"].map(|l| Protect {
        domain: format!("{l}.test"),
        local: Glob::new("*").unwrap(),
        exempt: vec![],
        deliver_to: None,
    }));
    let many = Matcher::new(Arc::new(Protection::new(entries, "-id-")));
    for m in [matcher(), many] {
        for (page, want) in spelled_cases() {
            assert_eq!(
                String::from_utf8(m.rewrite(page.as_bytes(), &mut marker)).unwrap(),
                want,
                "{page}"
            );
            // A stream may cut a spelling anywhere, the ID going in before it.
            every_cut_gives(&m, page, want, &mut marker);
        }
    }
    let munged = format!("joe-id-{} [at] ihatespam [dot] test", "k".repeat(24));
    assert_eq!(rewrite(&munged), munged);
}

/// Spelled-out addresses and the prose, code and links that look like them.
fn spelled_cases() -> Vec<(&'static str, &'static str)> {
    vec![
        (
            "joe [at] ihatespam [dot] test",
            "joe-id-zzzz [at] ihatespam [dot] test",
        ),
        (
            "joe [ AT ] Ihatespam [ Dot ] test.",
            "joe-id-zzzz [ AT ] Ihatespam [ Dot ] test.",
        ),
        ("joe(at)ihatespam.test", "joe-id-zzzz(at)ihatespam.test"),
        ("joe [at] ihatespam.test", "joe-id-zzzz [at] ihatespam.test"),
        (
            "joe (at) ihatespam (dot) test",
            "joe-id-zzzz (at) ihatespam (dot) test",
        ),
        ("joe{at}ihatespam{dot}test", "joe-id-zzzz{at}ihatespam{dot}test"),
        (
            "joe (arroba) ihatespam (punto) test",
            "joe-id-zzzz (arroba) ihatespam (punto) test",
        ),
        (
            "joe [at] ihatespam [period] test",
            "joe-id-zzzz [at] ihatespam [period] test",
        ),
        ("joe@ihatespam [dot] test", "joe-id-zzzz@ihatespam [dot] test"),
        ("joe@ihatespam dot test", "joe-id-zzzz@ihatespam dot test"),
        (
            "joe<span></span>@ihatespam.test",
            "joe-id-zzzz<span></span>@ihatespam.test",
        ),
        ("joe@<!-- -->ihatespam.test", "joe-id-zzzz@<!-- -->ihatespam.test"),
        (
            "<b>joe</b>@<i>ihatespam</i>.<i>test</i>",
            "<b>joe-id-zzzz</b>@<i>ihatespam</i>.<i>test</i>",
        ),
        (
            "joe&#64;<span>ihatespam.test</span>",
            "joe-id-zzzz&#64;<span>ihatespam.test</span>",
        ),
        (
            "joe&nbsp;[at]&nbsp;ihatespam&nbsp;[dot]&nbsp;test",
            "joe-id-zzzz&nbsp;[at]&nbsp;ihatespam&nbsp;[dot]&nbsp;test",
        ),
        (
            "john [dot] smith [at] ihatespam [dot] test",
            "john [dot] smith-id-zzzz [at] ihatespam [dot] test",
        ),
        // A tag beside a dot of the domain only.
        ("joe@ihatespam<b></b>.test", "joe-id-zzzz@ihatespam<b></b>.test"),
        ("joe@ihatespam.<b>test</b>", "joe-id-zzzz@ihatespam.<b>test</b>"),
        ("joe@ihatespam<!-- -->.test", "joe-id-zzzz@ihatespam<!-- -->.test"),
        // Markup inside a label renders as nothing: a harvester stripping it
        // joins the halves.
        ("joe@ihate<!-- -->spam.test", "joe-id-zzzz@ihate<!-- -->spam.test"),
        ("joe@i<b></b>hatespam.test", "joe-id-zzzz@i<b></b>hatespam.test"),
        (
            "joe@ihatespam.te<!-- x -->st",
            "joe-id-zzzz@ihatespam.te<!-- x -->st",
        ),
        (
            "joe&#64;ihate<span>sp</span>am.t<i style=\"display:none\">x</i>est.",
            "joe-id-zzzz&#64;ihate<span>sp</span>am.t<i style=\"display:none\">x</i>est.",
        ),
        (
            "joe@<span>ihate</span><span>spam</span>.test",
            "joe-id-zzzz@<span>ihate</span><span>spam</span>.test",
        ),
        (
            "joe&#x40;ihate<!-- -->spam&#46;test",
            "joe-id-zzzz&#x40;ihate<!-- -->spam&#46;test",
        ),
        (
            "joe [at] ihatespam&period;test",
            "joe-id-zzzz [at] ihatespam&period;test",
        ),
        // Rendered `joe@ ihatespam.test`: a space after the sign, as below.
        ("joe@<span> ihatespam.test", "joe-id-zzzz@<span> ihatespam.test"),
        ("joe@<p>ihatespam.test", "joe@<p>ihatespam.test"),
        // A space or a block between the halves makes two words; two
        // halves that are no protected domain, none.
        ("joe@ihate <b></b>spam.test", "joe@ihate <b></b>spam.test"),
        ("joe@ihate<p>spam.test", "joe@ihate<p>spam.test"),
        ("joe@ihate<b>rs</b>.test", "joe@ihate<b>rs</b>.test"),
        ("joe@ihatespam.te<b>st</b>s", "joe@ihatespam.te<b>st</b>s"),
        // A decoy a browser does not show (nor a harvester reading what it
        // renders): the ID goes after the local part that is shown.
        (
            "joe<span style=\"display:none\">null</span>@ihatespam.test",
            "joe-id-zzzz<span style=\"display:none\">null</span>@ihatespam.test",
        ),
        (
            "joe@<SPAN STYLE=\"Display: None\">x</SPAN>ihatespam.test",
            "joe-id-zzzz@<SPAN STYLE=\"Display: None\">x</SPAN>ihatespam.test",
        ),
        (
            "joe<b hidden>x</b>&#64;ihatespam<i style='visibility:hidden'>.x</i>.test",
            "joe-id-zzzz<b hidden>x</b>&#64;ihatespam<i style='visibility:hidden'>.x</i>.test",
        ),
        // Shown: its text is the end of a local part split by a tag
        // (`joex`), not a decoy to skip.
        (
            "joe<span title=\"hidden\">x</span>@ihatespam.test",
            "joe<span title=\"hidden\">x-id-zzzz</span>@ihatespam.test",
        ),
        // A local part split by inline tags or comments is one word as
        // rendered: its ID is the whole word's, where the word ends.
        ("<b>jo</b>e@ihatespam.test", "<b>jo</b>e-id-zzzz@ihatespam.test"),
        (
            "j<!-- x -->oe@ihatespam.test",
            "j<!-- x -->oe-id-zzzz@ihatespam.test",
        ),
        ("jo<b>e@ihatespam.test</b>", "jo<b>e-id-zzzz@ihatespam.test</b>"),
        (
            "<span>j</span><span>o</span><span>e</span>@ihatespam.test",
            "<span>j</span><span>o</span><span>e-id-zzzz</span>@ihatespam.test",
        ),
        (
            "j<span style=\"display:none\">xx</span>oe@ihatespam.test",
            "j<span style=\"display:none\">xx</span>oe-id-zzzz@ihatespam.test",
        ),
        ("jo <b>e</b>@ihatespam.test", "jo <b>e-id-zzzz</b>@ihatespam.test"),
        ("jo<p>e@ihatespam.test", "jo<p>e-id-zzzz@ihatespam.test"),
        // The signs themselves in brackets, as write-ups defang addresses.
        ("joe[@]ihatespam[.]test", "joe-id-zzzz[@]ihatespam[.]test"),
        ("joe (@) ihatespam.test", "joe-id-zzzz (@) ihatespam.test"),
        ("joe@ihatespam(.)test", "joe-id-zzzz@ihatespam(.)test"),
        (
            "john[.]smith{@}ihatespam{.}test",
            "john[.]smith-id-zzzz{@}ihatespam{.}test",
        ),
        // Angle brackets, as text shows them and as HTML's source writes them.
        (
            "joe &lt;at&gt; ihatespam &lt;dot&gt; test",
            "joe-id-zzzz &lt;at&gt; ihatespam &lt;dot&gt; test",
        ),
        (
            "joe <at> ihatespam <dot> test",
            "joe-id-zzzz <at> ihatespam <dot> test",
        ),
        (
            "john &lt;dot&gt; smith &LT;AT&GT; ihatespam.test",
            "john &lt;dot&gt; smith-id-zzzz &LT;AT&GT; ihatespam.test",
        ),
        // The brackets as references, as an encoder writes every sign.
        (
            "joe &#91;at&#93; ihatespam &#91;dot&#93; test",
            "joe-id-zzzz &#91;at&#93; ihatespam &#91;dot&#93; test",
        ),
        (
            "joe&lpar;at&rpar;ihatespam&#x28;dot&#x29;test",
            "joe-id-zzzz&lpar;at&rpar;ihatespam&#x28;dot&#x29;test",
        ),
        (
            "joe &#91;at&#41; ihatespam.test",
            "joe &#91;at&#41; ihatespam.test",
        ),
        // Underscores and hyphens as brackets; a hyphen only between
        // spaces: `shop-at-ihatespam.test` is a host name.
        ("joe_at_ihatespam_dot_test", "joe-id-zzzz_at_ihatespam_dot_test"),
        (
            "joe _at_ ihatespam _dot_ test",
            "joe-id-zzzz _at_ ihatespam _dot_ test",
        ),
        (
            "joe -at- ihatespam -dot- test",
            "joe-id-zzzz -at- ihatespam -dot- test",
        ),
        ("a-at-b -AT- ihatespam.test", "a-at-b-id-zzzz -AT- ihatespam.test"),
        ("shop-at-ihatespam.test", "shop-at-ihatespam.test"),
        ("joe -at-ihatespam.test", "joe -at-ihatespam.test"),
        ("joe -at- ihatespam-dot-test", "joe -at- ihatespam-dot-test"),
        // Typographic spaces in any spelling.
        (
            "joe&thinsp;[at]&thinsp;ihatespam&#8201;[dot]&#x2009;test",
            "joe-id-zzzz&thinsp;[at]&thinsp;ihatespam&#8201;[dot]&#x2009;test",
        ),
        (
            "joe\u{2009}(at)\u{2009}ihatespam\u{202f}(dot)\u{2003}test",
            "joe-id-zzzz\u{2009}(at)\u{2009}ihatespam\u{202f}(dot)\u{2003}test",
        ),
        (
            "joe&emsp;AT&ensp;ihatespam.test",
            "joe-id-zzzz&emsp;AT&ensp;ihatespam.test",
        ),
        ("joe &lt;at ihatespam.test", "joe &lt;at ihatespam.test"),
        ("joe [at&gt; ihatespam.test", "joe [at&gt; ihatespam.test"),
        ("see [.] ihatespam.test", "see [.] ihatespam.test"),
        ("joe[@]ihatespam[.]test[.]evil", "joe[@]ihatespam[.]test[.]evil"),
        // A bare word only for a local part named literally (plover.com's mjd).
        (
            "write mjd at plover dot com",
            "write mjd-id-zzzz at plover dot com",
        ),
        ("write MJD at plover.com", "write MJD-id-zzzz at plover.com"),
        ("find us at ihatespam dot test", "find us at ihatespam dot test"),
        ("joe at ihatespam.test", "joe at ihatespam.test"),
        ("find us At ihatespam dot test", "find us At ihatespam dot test"),
        // ... or for a word for `@` in capitals: that is no prose.
        (
            "write joe AT ihatespam DOT test",
            "write joe-id-zzzz AT ihatespam DOT test",
        ),
        ("joe.x AT ihatespam.test", "joe.x-id-zzzz AT ihatespam.test"),
        (
            "joe&nbsp;AT&nbsp;ihatespam.test",
            "joe-id-zzzz&nbsp;AT&nbsp;ihatespam.test",
        ),
        // In capitals throughout, `AT` is no more deliberate than the rest.
        ("WRITE US AT IHATESPAM.TEST", "WRITE US AT IHATESPAM.TEST"),
        ("WRITE US AT IHATESPAM DOT TEST", "WRITE US AT IHATESPAM DOT TEST"),
        (
            "WRITE MJD AT PLOVER DOT COM",
            "WRITE MJD-id-zzzz AT PLOVER DOT COM",
        ),
        // A domain in capitals is the same domain.
        (
            "JOE [AT] IHATESPAM [DOT] TEST",
            "JOE-id-zzzz [AT] IHATESPAM [DOT] TEST",
        ),
        (
            "joe (at) IHATESPAM (dot) TEST",
            "joe-id-zzzz (at) IHATESPAM (dot) TEST",
        ),
        ("JOE(AT)IHATESPAM.TEST", "JOE-id-zzzz(AT)IHATESPAM.TEST"),
        ("JOE AT IHATESPAM.test", "JOE AT IHATESPAM.test"),
        // Prose and handles.
        (
            "meet [at] ihatespam.test's office",
            "meet [at] ihatespam.test's office",
        ),
        ("follow us @ihatespam.test", "follow us @ihatespam.test"),
        ("joe @ihatespam.test", "joe @ihatespam.test"),
        // The sign with a space after it is an address with the spaces put
        // in (a harvester takes them out), in any spelling.
        ("joe @ ihatespam.test", "joe-id-zzzz @ ihatespam.test"),
        ("joe@ ihatespam.test", "joe-id-zzzz@ ihatespam.test"),
        (
            "joe &#64;&nbsp;ihatespam.test",
            "joe-id-zzzz &#64;&nbsp;ihatespam.test",
        ),
        ("joe @ notihatespam.test", "joe @ notihatespam.test"),
        (
            "joe \u{ff20} ihatespam.test",
            "joe-id-zzzz \u{ff20} ihatespam.test",
        ),
        (
            "joe \u{fe6b} ihatespam.test",
            "joe-id-zzzz \u{fe6b} ihatespam.test",
        ),
        (
            "follow us \u{ff20}ihatespam.test",
            "follow us \u{ff20}ihatespam.test",
        ),
        // So is a `.` with spaces on both sides, until the labels make a
        // protected domain: after that it ends a sentence.
        ("joe @ ihatespam . test", "joe-id-zzzz @ ihatespam . test"),
        ("joe [at] ihatespam . test", "joe-id-zzzz [at] ihatespam . test"),
        ("joe@ihatespam . test", "joe-id-zzzz@ihatespam . test"),
        (
            "joe [at] ihatespam.test . Then",
            "joe-id-zzzz [at] ihatespam.test . Then",
        ),
        ("joe [at] ihatespam. test", "joe [at] ihatespam. test"),
        ("joe [at] ihatespam .test", "joe [at] ihatespam .test"),
        ("joe<p>@ihatespam.test", "joe<p>@ihatespam.test"),
        ("joe<br>@ihatespam.test", "joe<br>@ihatespam.test"),
        (
            "<td>joe</td><td>@ihatespam.test</td>",
            "<td>joe</td><td>@ihatespam.test</td>",
        ),
        (
            "joe [at] ihatespam [dot] test [dot] evil",
            "joe [at] ihatespam [dot] test [dot] evil",
        ),
        ("joe [at] notihatespam.test", "joe [at] notihatespam.test"),
        // Highlighted code: a git remote and a URL's user name, split into spans.
        (
            r#"<span class="n">git</span><span class="nd">@</span><span class="n">ihatespam</span><span class="o">.</span><span class="n">test</span><span class="p">:</span><span class="n">mjd/x.git</span>"#,
            r#"<span class="n">git</span><span class="nd">@</span><span class="n">ihatespam</span><span class="o">.</span><span class="n">test</span><span class="p">:</span><span class="n">mjd/x.git</span>"#,
        ),
        (
            "<span>https</span><span>://</span><span>git</span><span>@</span><span>ihatespam.test</span>",
            "<span>https</span><span>://</span><span>git</span><span>@</span><span>ihatespam.test</span>",
        ),
        (
            "joe [at] ihatespam [dot] test: he answers",
            "joe-id-zzzz [at] ihatespam [dot] test: he answers",
        ),
        // Rendered `Mailjoe@ihatespam.test`: the ID is `mailjoe`'s.
        (
            "<b>Mail</b><span>joe</span>@<i>ihatespam.test</i>",
            "<b>Mail</b><span>joe-id-zzzz</span>@<i>ihatespam.test</i>",
        ),
        // A local part partly in references is not read in part.
        (
            "&#106;oe<span></span>@ihatespam.test",
            "&#106;oe<span></span>@ihatespam.test",
        ),
        ("%6aoe [at] ihatespam.test", "%6aoe [at] ihatespam.test"),
        (
            "https://example.org/joe [at] ihatespam.test",
            "https://example.org/joe [at] ihatespam.test",
        ),
        (
            "list-subscribe [at] ihatespam [dot] test",
            "list-subscribe [at] ihatespam [dot] test",
        ),
        // Plain addresses stay the main scanner's: one ID.
        ("joe@ihatespam.test", "joe-id-zzzz@ihatespam.test"),
    ]
}
