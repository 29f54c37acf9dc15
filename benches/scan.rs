//! Scanner throughput, fed in realistic 16 KiB chunks, next to a plain
//! `memchr` pass over the same bytes (the memory-speed limit) and the
//! scanner's `memchr3` prefilter alone, visiting every candidate.

use std::hint::black_box;
use std::sync::Arc;

use addrmunge::address::{Glob, Protect, Protection};
use addrmunge::scan::{Found, Matcher};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};

// Only the site page is used here; the load page is benches/load.sh's.
#[allow(dead_code)]
#[path = "common/pages.rs"]
mod pages;

const CHUNK: usize = 16 * 1024;

fn matcher() -> Arc<Matcher> {
    Matcher::new(Arc::new(protection()))
}

fn protection() -> Protection {
    Protection::new(
        vec![Protect {
            domain: "ihatespam.test".into(),
            local: Glob::new("*").unwrap(),
            exempt: vec![Glob::new("*-subscribe").unwrap()],
            deliver_to: None,
        }],
        "-id-",
    )
}

/// The same without spelled-out addresses (`joe [at] ihatespam [dot] test`):
/// what looking for them costs.
fn matcher_without_spelled() -> Arc<Matcher> {
    let off = addrmunge::address::Spellings {
        enabled: false,
        ..Default::default()
    };
    Matcher::new(Arc::new(protection().with_spellings(off)))
}

fn repeat_to(unit: &str, size: usize) -> Vec<u8> {
    let mut v = Vec::with_capacity(size + unit.len());
    while v.len() < size {
        v.extend_from_slice(unit.as_bytes());
    }
    v
}

fn inputs() -> Vec<(&'static str, Vec<u8>)> {
    let size = 4 * 1024 * 1024;
    vec![
        (
            "address-free text",
            repeat_to(
                "The quick brown fox jumps over the lazy dog, then reads the manual again. ",
                size,
            ),
        ),
        (
            "address-dense html",
            repeat_to(
                r#"<li><a href="mailto:joe@ihatespam.test?subject=Hi">joe@ihatespam.test</a> or someone@example.com</li>
"#,
                size,
            ),
        ),
        (
            // The protected domain's first label in prose, on every line:
            // each one a candidate for a spelled-out address.
            "label-dense prose",
            repeat_to(
                "Ask ihatespam about it, or see the ihatespam docs at www.ihatespam.test [dot] org today.\n",
                size,
            ),
        ),
        (
            // A script's joins of a name never set, each looked up in the
            // kept bytes: the most the lookups' budget lets them cost.
            "joins of unset names",
            repeat_to("x = '@' + a + '@' + a;\n", size),
        ),
        (
            "entity-heavy html",
            repeat_to(
                "<p>&ldquo;It&#8217;s here&rdquo; &amp; there &#8212; caf&eacute; &#x2014; j&#111;e&#64;ihatespam&#46;test</p>\n",
                size,
            ),
        ),
    ]
}

/// Scans `input` in chunks as the proxy does; the bytes written.
fn scan_all(m: &Arc<Matcher>, input: &[u8]) -> usize {
    let mut out = Vec::with_capacity(CHUNK * 2);
    let mut s = m.scanner();
    let mut munger = |_: &Found<'_>, o: &mut Vec<u8>| o.extend_from_slice(b"-id-0123456789abcdefghjkmnpq");
    let mut total = 0;
    for chunk in input.chunks(CHUNK) {
        out.clear();
        s.feed(chunk, &mut out, &mut munger);
        total += out.len();
    }
    out.clear();
    s.finish(&mut out, &mut munger);
    total + out.len()
}

fn bench(c: &mut Criterion) {
    let (m, off) = (matcher(), matcher_without_spelled());
    let mut group = c.benchmark_group("scan");
    for (name, input) in inputs() {
        group.throughput(Throughput::Bytes(input.len() as u64));
        group.bench_function(format!("memchr baseline / {name}"), |b| {
            b.iter(|| {
                let mut n = 0;
                for chunk in input.chunks(CHUNK) {
                    n += memchr::memchr_iter(b'@', chunk).count();
                }
                black_box(n)
            })
        });
        // Not the bar's baseline: the scanner's own prefilter with nothing
        // decided, to show how much of the gap is finding and how much is
        // deciding.
        group.bench_function(format!("memchr3 visiting each candidate / {name}"), |b| {
            b.iter(|| {
                let mut n = 0;
                for chunk in input.chunks(CHUNK) {
                    for i in memchr::memchr3_iter(b'@', b'&', b'%', chunk) {
                        n += i;
                    }
                }
                black_box(n)
            })
        });
        // What writing the output costs on its own: the scanner copies
        // every byte it passes, which the memchr baseline does not.
        group.bench_function(format!("copy into the output / {name}"), |b| {
            let mut out = Vec::with_capacity(CHUNK * 2);
            b.iter(|| {
                let mut n = 0;
                for chunk in input.chunks(CHUNK) {
                    out.clear();
                    out.extend_from_slice(chunk);
                    n += out.len();
                }
                black_box(n)
            })
        });
        for (label, m) in [("scanner", &m), ("scanner, spelled-out forms off", &off)] {
            group.bench_function(format!("{label} / {name}"), |b| {
                b.iter(|| black_box(scan_all(m, &input)))
            });
        }
    }
    group.finish();
}

/// The whole in-process response path of a rewritten page: gunzip -> scan
/// with real tokens (per-visitor cache) -> gzip with a sync flush per chunk,
/// as the proxy runs it; throughput counts the uncompressed page.
fn pipeline(c: &mut Criterion) {
    use addrmunge::rewrite::{Coding, Compress, Expansion, Pipeline, TokenCache, VisitorMunger};
    use addrmunge::{Claims, Day, KeyRing, Kind};
    let m = matcher();
    let keys = Arc::new(KeyRing::new(&[[7u8; 32]]));
    let cache = Arc::new(TokenCache::default());
    let claims = Claims::visit(Kind::Visitor, Day::today(), "203.0.113.9".parse().unwrap());
    let mut group = c.benchmark_group("response path");
    for (name, input) in inputs() {
        let compressed = gzip(&input, flate2::Compression::default());
        group.throughput(Throughput::Bytes(input.len() as u64));
        group.bench_function(format!("gunzip, scan, gzip / {name}"), |b| {
            b.iter(|| {
                let munger = VisitorMunger::new(Arc::clone(&keys), "-id-", claims, Arc::clone(&cache));
                // The synthetic pages compress far better than real ones (up to
                // ~290:1 past 1 MiB); the bomb bound is not what is measured.
                let unbounded = Expansion {
                    max_bytes: u64::MAX,
                    max_ratio: u64::MAX,
                };
                let mut p = Pipeline::new(m.scanner(), munger, Coding::Gzip, Some(Compress::Gzip))
                    .with_expansion(unbounded);
                let mut total = 0;
                for chunk in compressed.chunks(CHUNK) {
                    total += p.push(chunk).unwrap().len();
                }
                total += p.finish().unwrap().len();
                black_box(total)
            })
        });
    }
    group.finish();
}

/// `data` gzipped at `level`.
fn gzip(data: &[u8], level: flate2::Compression) -> Vec<u8> {
    use std::io::Write;
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), level);
    gz.write_all(data).unwrap();
    gz.finish().unwrap()
}

/// One 45 KB page rewritten per request as the proxy does (a new munger
/// and pipeline, the body in 16 KiB upstream chunks, charset sniffed): as
/// benches/load.sh's clients ask for it (uncompressed, from an uncompressed
/// origin), as a browser's navigation gets it (asked of the origin
/// uncompressed, gzipped by the proxy) and as it was before the proxy asked
/// for that (gzip in, gzip out); next to a plain copy, gunzip alone and gzip alone, to tell
/// rewriting's CPU per request apart from the proxy's and the codec's.
fn per_request(c: &mut Criterion) {
    use addrmunge::rewrite::{Coding, Compress, GzipCache, Pipeline, TokenCache, VisitorMunger};
    use addrmunge::{Claims, Day, KeyRing, Kind};
    let page = pages::site_page(45_000, 10, "ihatespam.test");
    // The origin's gzip at nginx's default level; the proxy's at its own.
    let zipped = gzip(page.as_bytes(), flate2::Compression::fast());
    let proxy_level = flate2::Compression::new(2);
    let chunks =
        |b: &[u8]| -> Vec<bytes::Bytes> { b.chunks(CHUNK).map(bytes::Bytes::copy_from_slice).collect() };
    let (plain, gz) = (chunks(page.as_bytes()), chunks(&zipped));
    // The same page as a Japanese site in Shift_JIS writes it: read
    // decoded, written back as its own bytes (rewrite::charset).
    let japanese = format!("<meta charset=shift_jis>{}", page.replace(' ', "の"));
    let sjis = chunks(&encoding_rs::SHIFT_JIS.encode(&japanese).0);
    // And as a French site in Latin-1 writes it: read as bytes while the
    // only bytes past ASCII are letters, decoded and spliced from the first
    // that is not (a no-break space).
    let french = format!("<meta charset=iso-8859-1>{}", page.replace("e ", "\u{e9} "));
    let latin1 = chunks(&encoding_rs::WINDOWS_1252.encode(&french).0);
    let spaced = french.replacen("\u{e9} ", "\u{e9}\u{a0}", 1);
    let latin1_spaced = chunks(&encoding_rs::WINDOWS_1252.encode(&spaced).0);
    let m = matcher();
    let keys = Arc::new(KeyRing::new(&[[7u8; 32]]));
    let cache = Arc::new(TokenCache::default());
    let claims = Claims::visit(Kind::Visitor, Day::today(), "203.0.113.9".parse().unwrap());
    let mut group = c.benchmark_group("per request");
    group.throughput(Throughput::Bytes(page.len() as u64));
    group.bench_function("copy / 45 KB page", |b| {
        b.iter(|| {
            let out: Vec<bytes::Bytes> = plain.iter().map(|c| bytes::Bytes::copy_from_slice(c)).collect();
            black_box(out)
        })
    });
    group.bench_function("gzip alone / 45 KB page", |b| {
        b.iter(|| black_box(gzip(page.as_bytes(), proxy_level)))
    });
    group.bench_function("gunzip alone / 45 KB page", |b| {
        b.iter(|| {
            let mut out = Vec::with_capacity(page.len());
            std::io::copy(&mut flate2::read::GzDecoder::new(&zipped[..]), &mut out).unwrap();
            black_box(out)
        })
    });
    // What the proxy keeps of gzip between requests; None: nothing.
    let reused = Some(Arc::new(GzipCache::default()));
    for (name, input, coding, to, gzip_cache) in [
        ("rewrite / 45 KB page", &plain, Coding::Identity, None, None),
        (
            "rewrite / 45 KB page in Shift_JIS",
            &sjis,
            Coding::Identity,
            None,
            None,
        ),
        (
            "rewrite / 45 KB page in Latin-1",
            &latin1,
            Coding::Identity,
            None,
            None,
        ),
        (
            "rewrite / 45 KB page in Latin-1 with a no-break space",
            &latin1_spaced,
            Coding::Identity,
            None,
            None,
        ),
        (
            "rewrite, gzip / 45 KB page",
            &plain,
            Coding::Identity,
            Some(Compress::Gzip),
            None,
        ),
        (
            "rewrite, gzip from stretches kept / 45 KB page",
            &plain,
            Coding::Identity,
            Some(Compress::Gzip),
            reused.clone(),
        ),
        (
            "rewrite, zstd / 45 KB page",
            &plain,
            Coding::Identity,
            Some(Compress::Zstd),
            None,
        ),
        (
            "gunzip, rewrite, gzip / 45 KB page",
            &gz,
            Coding::Gzip,
            Some(Compress::Gzip),
            None,
        ),
    ] {
        group.bench_function(name, |b| {
            b.iter(|| {
                let munger = VisitorMunger::new(Arc::clone(&keys), "-id-", claims, Arc::clone(&cache));
                let mut p = Pipeline::new(m.scanner(), munger, coding, to).with_charset(None, true);
                if let Some(c) = &gzip_cache {
                    p = p.with_gzip_cache(Arc::clone(c));
                }
                let mut total = 0;
                for (i, chunk) in input.iter().enumerate() {
                    p.input(chunk.clone(), i + 1 == input.len());
                    while let Some(out) = p.next_piece().unwrap() {
                        total += out.len();
                    }
                }
                assert!(p.munged() == 20, "{}", p.munged());
                black_box(total)
            })
        });
    }
    group.finish();
}

criterion_group!(benches, bench, pipeline, per_request);
criterion_main!(benches);
