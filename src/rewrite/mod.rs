//! The body pipeline of a rewritten response: decompress -> scan -> compress,
//! chunk by chunk, with memory bounded by the scanner's carry and the
//! codecs' windows, never by the size of the page. [`Pipeline`] runs it;
//! [`codec`] and [`charset`] are its stages, the token cache and the
//! munger that writes IDs are in `tokens.rs`, the bait link in `link.rs`.

pub mod charset;
pub mod codec;
mod compress;
mod gzip;
mod link;
mod pipeline;
mod tokens;

pub use codec::{Coding, PIECE};
pub use compress::Compress;
pub use gzip::{GZIP_CACHE_BYTES, GzipCache};
pub use link::{LinkInserter, Sink};
pub use pipeline::{Expanded, Expansion, Pipeline, RATIO_GRACE};
pub use tokens::{CACHE_BYTES, ServedLog, TokenCache, Tokens, VisitorMunger};

#[cfg(test)]
mod tests {
    use std::io::Write;
    use std::sync::Arc;

    use bytes::Bytes;

    use super::*;
    use crate::address::{Glob, Protect, Protection};
    use crate::day::Day;
    use crate::scan::Matcher;
    use crate::token::{Claims, KeyRing, Kind};

    fn pipeline(declared: Option<&'static encoding_rs::Encoding>) -> Pipeline {
        coded_pipeline(declared, Coding::Identity, None)
    }

    fn matcher() -> Arc<Matcher> {
        Matcher::new(Arc::new(Protection::new(
            vec![Protect {
                domain: "plover.com".into(),
                local: Glob::new("*").unwrap(),
                exempt: vec![],
                deliver_to: None,
            }],
            "-id-",
        )))
    }

    fn coded_pipeline(
        declared: Option<&'static encoding_rs::Encoding>,
        from: Coding,
        to: Option<Compress>,
    ) -> Pipeline {
        Pipeline::new(matcher().scanner(), munger(), from, to).with_charset(declared, true)
    }

    fn munger() -> VisitorMunger {
        munger_at("192.0.2.1")
    }

    /// The munger of a visitor at `ip`.
    fn munger_at(ip: &str) -> VisitorMunger {
        let claims = Claims::visit(Kind::Visitor, Day::from_number(20_000), ip.parse().unwrap());
        VisitorMunger::new(
            Arc::new(KeyRing::new(&[[1u8; 32]])),
            "-id-",
            claims,
            Arc::new(TokenCache::default()),
        )
    }

    /// The pipeline takes any munger, not only a visitor's.
    #[test]
    fn any_munger_drives_the_pipeline() {
        let munger = |_: &crate::scan::Found<'_>, out: &mut Vec<u8>| out.extend_from_slice(b"+seen");
        let mut p = Pipeline::new(matcher().scanner(), munger, Coding::Identity, None);
        let out = run(&mut p, &[b"write to mjd@plover.com today"]);
        assert_eq!(out, b"write to mjd+seen@plover.com today");
    }

    fn run<M: crate::scan::Munger>(p: &mut Pipeline<M>, parts: &[&[u8]]) -> Vec<u8> {
        let mut out = Vec::new();
        for part in parts {
            out.extend_from_slice(&p.push(part).unwrap());
        }
        out.extend_from_slice(&p.finish().unwrap());
        out
    }

    /// A body of unknown type: text is scanned whatever its cuts; a binary
    /// byte within the first 1024 bytes passes the whole body through as it
    /// is, while one after them does not (a browser has decided by then);
    /// nothing goes out before they are seen.
    #[test]
    fn a_body_of_unknown_type_is_scanned_only_when_it_looks_like_text() {
        let untyped = || pipeline(None).sniffing_type();
        let mut text = b"notes\n".repeat(300);
        text.extend_from_slice(b"write to mjd@plover.com\n");
        let mut binary = text.clone();
        binary[900] = 0;
        let mut late = text.clone();
        late[1100] = 0x01;
        for cut in [0, 3, 500, 1023, 1024, 1500, text.len()] {
            for (body, scanned) in [(&text, true), (&binary, false), (&late, true)] {
                let mut p = untyped();
                let first = p.push(&body[..cut.min(1023)]).unwrap();
                assert!(first.is_empty(), "cut {cut}: held until 1024 bytes are seen");
                let out = run(&mut p, &[&body[cut.min(1023)..cut], &body[cut..]]);
                let out = String::from_utf8_lossy(&out);
                assert_eq!(out.contains("mjd-id-"), scanned, "cut {cut}");
                assert_eq!(out.contains("mjd@"), !scanned, "cut {cut}");
            }
        }
        // A UTF-16 text's byte-order mark makes its zero bytes text.
        let utf16: Vec<u8> = [0xff, 0xfe]
            .into_iter()
            .chain("mjd@plover.com".encode_utf16().flat_map(u16::to_le_bytes))
            .collect();
        let out = run(&mut untyped(), &[&utf16]);
        assert!(
            String::from_utf16_lossy(
                &out.chunks(2)
                    .map(|c| u16::from_le_bytes([c[0], c[1]]))
                    .collect::<Vec<_>>()
            )
            .contains("mjd-id-")
        );
    }

    /// A page that says `charset=utf-16` but is ASCII: harvesters read its
    /// bytes as they are, so it is scanned as bytes (and counted), never
    /// served with bare addresses.
    #[test]
    fn a_lying_utf16_declaration_does_not_leak_addresses() {
        let page = b"<html><body><p>Write to mjd@plover.com, please.</p></body></html>";
        for cut in [0, 10, 40, page.len()] {
            let mut p = pipeline(Some(encoding_rs::UTF_16LE));
            let out = run(&mut p, &[&page[..cut], &page[cut..]]);
            let text = String::from_utf8(out).unwrap();
            assert!(
                text.contains("mjd-id-") && !text.contains("mjd@"),
                "cut {cut}: {text}"
            );
            assert!(p.take_charset_mismatch() && !p.take_charset_mismatch());
        }
        // Real UTF-16 (no byte-order mark, the header says so) is transcoded.
        let utf16: Vec<u8> = std::str::from_utf8(page)
            .unwrap()
            .encode_utf16()
            .flat_map(u16::to_le_bytes)
            .collect();
        let mut p = pipeline(Some(encoding_rs::UTF_16LE));
        let out = run(&mut p, &[&utf16]);
        let (text, _) = encoding_rs::UTF_16LE.decode_without_bom_handling(&out);
        assert!(text.contains("mjd-id-"), "{text}");
        assert!(!p.take_charset_mismatch());
    }

    /// A page in a multi-byte charset whose second bytes may be ASCII
    /// letters (`ス` is `0x83 0x58` in Shift_JIS): read decoded, the letter
    /// does not join the local part of an address written right after it,
    /// and a fullwidth address is found; written back, every byte but the
    /// IDs is the page's own, even characters with two codes (Shift_JIS's
    /// `0x87 0x90`, Big5's HKSCS) and malformed bytes, however it is cut.
    /// base64 written anew in a page whose own bytes are spliced: the bytes
    /// before and after it are the page's, malformed ones too, and the
    /// output is the same in any chunking.
    #[test]
    fn base64_written_anew_in_a_spliced_page_is_the_same_in_any_chunking() {
        let mut page = encoding_rs::BIG5
            .encode("<meta charset=big5><p>連絡")
            .0
            .into_owned();
        page.extend_from_slice(b" \x87\x90 \xff x\x81 <script>document.write(atob('");
        let before = page.len();
        page.extend_from_slice(data_encoding::BASE64.encode(b"mail mjd@plover.com").as_bytes());
        page.extend_from_slice(b"'))</script> \xff after mjd@plover.com");
        let whole = run(&mut pipeline(None), &[&page]);
        assert_eq!(whole[..before], page[..before]);
        let after = b"'))</script> \xff after mjd-id-";
        assert!(
            memchr::memmem::find(&whole, after).is_some(),
            "{}",
            String::from_utf8_lossy(&whole)
        );
        assert!(
            whole.len() > page.len() + 40,
            "two IDs: {}",
            String::from_utf8_lossy(&whole)
        );
        for cut in 0..page.len() {
            let out = run(&mut pipeline(None), &[&page[..cut], &page[cut..]]);
            assert!(out == whole, "cut at {cut}");
        }
    }

    #[test]
    fn multi_byte_charsets_are_read_decoded_and_written_as_they_came() {
        use encoding_rs::{BIG5, EUC_JP, EUC_KR, GB18030, GBK, SHIFT_JIS};
        // The ID says whose it is.
        let tagging = |declared, html| {
            let tag = |f: &crate::scan::Found<'_>, out: &mut Vec<u8>| {
                out.extend_from_slice(b"-id-");
                out.extend_from_slice(f.local.as_bytes());
            };
            Pipeline::new(matcher().scanner(), tag, Coding::Identity, None).with_charset(declared, html)
        };
        for enc in [SHIFT_JIS, EUC_JP, BIG5, GBK, GB18030, EUC_KR] {
            // EUC-JP has no such character: any will do.
            let ch = ('\u{3041}'..='\u{d7a3}')
                .find(|c| {
                    let s = c.to_string();
                    let (b, _, bad) = enc.encode(&s);
                    !bad && b.len() == 2 && b[1].is_ascii_alphabetic()
                })
                .unwrap_or('日');
            let head = format!(
                "<html><head><meta charset=\"{}\"><title>連絡</title></head><body><p>{ch}mjd@plover.com、ｊｏｅ＠ｐｌｏｖｅｒ．ｃｏｍ</p><p>",
                enc.name()
            );
            let (head, _, bad) = enc.encode(&head);
            assert!(!bad, "{}", enc.name());
            let mut page = head.into_owned();
            page.extend_from_slice(b"\x87\x90 and \xff x\x81 mjd@plover.com</p></body></html>");
            let want = |out: &[u8]| {
                let (text, _) = enc.decode_without_bom_handling(out);
                let text = text.into_owned();
                assert!(
                    text.contains(&format!("{ch}mjd-id-mjd@plover.com"))
                        && text.contains("ｊｏｅ-id-joe＠")
                        && text.contains(" mjd-id-mjd@"),
                    "{}: {text}",
                    enc.name()
                );
                let back = String::from_utf8_lossy(out)
                    .replace("-id-mjd", "")
                    .replace("-id-joe", "");
                let mut bare = out.to_vec();
                for id in [&b"-id-mjd"[..], b"-id-joe"] {
                    while let Some(i) = memchr::memmem::find(&bare, id) {
                        bare.drain(i..i + id.len());
                    }
                }
                assert!(bare == page, "{}: {back}", enc.name());
            };
            for cut in 0..page.len() {
                let mut p = tagging(None, true);
                want(&run(&mut p, &[&page[..cut], &page[cut..]]));
            }
            // Declared by the header, in one-byte pieces.
            let mut p = tagging(Some(enc), false);
            let bytes: Vec<&[u8]> = page.chunks(1).collect();
            want(&run(&mut p, &bytes));
        }
        // An address before the <meta>: scanned as ASCII before the charset
        // was known, its bytes still come out once.
        let page = SHIFT_JIS
            .encode("<title>mjd@plover.com</title><meta charset=shift_jis><p>アドレスmjd@plover.com")
            .0;
        for cut in 0..page.len() {
            let mut p = tagging(None, true);
            let out = run(&mut p, &[&page[..cut], &page[cut..]]);
            let want = SHIFT_JIS.encode("<title>mjd-id-mjd@plover.com</title><meta charset=shift_jis><p>アドレスmjd-id-mjd@plover.com").0;
            assert!(want == out, "cut {cut}: {}", String::from_utf8_lossy(&out));
        }
        // A page that names no charset is guessed as a browser guesses it
        // (in its first 1024 bytes): Shift_JIS is read as Shift_JIS.
        let prose = "このページについてのお問い合わせは、下記のアドレスまでメールでご連絡ください。";
        let text = format!(
            "<html><head><title>連絡先</title></head><body><p>{}</p><p>アドレスmjd@plover.com</p>",
            prose.repeat(20)
        );
        let page = SHIFT_JIS.encode(&text).0;
        for cut in [0, 500, 1023, 1024, 1500, page.len()] {
            let mut p = tagging(None, true);
            let out = run(&mut p, &[&page[..cut], &page[cut..]]);
            let want = text.replace("mjd@", "mjd-id-mjd@");
            assert!(
                SHIFT_JIS.encode(&want).0 == out,
                "cut {cut}: {}",
                String::from_utf8_lossy(&out)
            );
        }
        // With the bait link, which goes into the page's own bytes.
        let page = SHIFT_JIS
            .encode("<meta charset=shift_jis><body><p>アドレスmjd@plover.com</p></body>")
            .0;
        let link = "<a href=\"/bait/\">x</a>";
        for cut in 0..page.len() {
            let mut p = tagging(None, true).with_link(LinkInserter::new(link.into()));
            let out = run(&mut p, &[&page[..cut], &page[cut..]]);
            let want =
                format!("<meta charset=shift_jis><body><p>アドレスmjd-id-mjd@plover.com</p>{link}</body>");
            assert!(
                SHIFT_JIS.encode(&want).0 == out,
                "cut {cut}: {}",
                String::from_utf8_lossy(&out)
            );
        }
        // Malformed bytes read otherwise than the decoder did (three of
        // EUC-JP's taken as one U+FFFD): what follows is encoded, and the
        // address still gets its ID.
        let page = b"<meta charset=euc-jp><p>\x8f\xa1\xa1 mjd@plover.com \xb0\xa1</p>";
        for cut in 0..page.len() {
            let mut p = tagging(None, true);
            let out = run(&mut p, &[&page[..cut], &page[cut..]]);
            let (text, _) = EUC_JP.decode_without_bom_handling(&out);
            assert!(
                text.contains(" mjd-id-mjd@plover.com 亜</p>"),
                "cut {cut}: {text}"
            );
        }
    }

    /// A single-byte page is read as a browser shows it: a raw no-break
    /// space is a space, a soft hyphen is invisible, `b\xFCcher` is the
    /// international domain. Its own bytes come back with the IDs inserted,
    /// however it is cut, and so do those of a page labelled Latin-1 that
    /// is in fact UTF-8, whose UTF-8 is read as UTF-8.
    #[test]
    fn single_byte_charsets_are_read_as_shown_and_written_as_they_came() {
        use encoding_rs::{Encoding, KOI8_R, UTF_8, WINDOWS_1251, WINDOWS_1252};
        let m = Matcher::new(Arc::new(Protection::new(
            ["plover.com", "xn--bcher-kva.example", "xn--80aswg.xn--p1ai"]
                .into_iter()
                .map(|d| Protect {
                    domain: d.into(),
                    local: Glob::new("*").unwrap(),
                    exempt: vec![],
                    deliver_to: None,
                })
                .collect(),
            "-id-",
        )));
        let tagging = |declared| {
            let tag = |f: &crate::scan::Found<'_>, out: &mut Vec<u8>| {
                out.extend_from_slice(b"-id-");
                out.extend_from_slice(f.local.as_bytes());
            };
            Pipeline::new(m.scanner(), tag, Coding::Identity, None).with_charset(declared, true)
        };
        let latin = "<p>Pour nous écrire, une adresse à retenir : mjd\u{a0}[at]\u{a0}plover\u{a0}[dot]\u{a0}com, \
                     à mj\u{ad}d@plover.com ou à ann@bücher.example.</p>";
        let cyrillic = "<p>Почта:\u{a0}ivan\u{a0}[at]\u{a0}plover.com, ivan@сайт.рф.</p>";
        let ids = |t: &str| {
            t.replace("mjd\u{a0}[at]", "mjd-id-mjd\u{a0}[at]")
                .replace("mj\u{ad}d@", "mj\u{ad}d-id-mjd@")
                .replace("ann@", "ann-id-ann@")
                .replace("ivan\u{a0}[at]", "ivan-id-ivan\u{a0}[at]")
                .replace("ivan@", "ivan-id-ivan@")
        };
        // (the page's charset, the label's, named in a <meta>, the text)
        let latin_twice = latin.repeat(2);
        let both = format!("{latin}{cyrillic}");
        let cases: [(&'static Encoding, Option<&'static Encoding>, bool, &str); 7] = [
            (WINDOWS_1252, Some(WINDOWS_1252), true, latin),
            (WINDOWS_1252, Some(WINDOWS_1252), false, latin),
            // Named nowhere: guessed, as a browser guesses.
            (WINDOWS_1252, None, false, &latin_twice),
            (WINDOWS_1251, Some(WINDOWS_1251), true, cyrillic),
            (KOI8_R, Some(KOI8_R), false, cyrillic),
            (UTF_8, Some(WINDOWS_1252), true, &both),
            (UTF_8, Some(WINDOWS_1252), false, &both),
        ];
        // Letters only past ASCII: read as bytes, unless an international
        // domain is protected, which they may spell.
        let letters = "<p>Zoë écrit à ann@bücher.example et à mjd@plover.com</p>";
        let page = WINDOWS_1252.encode(letters).0.into_owned();
        for cut in 0..page.len() {
            let out = run(&mut tagging(Some(WINDOWS_1252)), &[&page[..cut], &page[cut..]]);
            let want = ids(letters).replace("mjd@", "mjd-id-mjd@");
            assert!(
                out == WINDOWS_1252.encode(&want).0.as_ref(),
                "cut {cut}: {}",
                String::from_utf8_lossy(&out)
            );
        }
        for (enc, label, meta, text) in cases {
            let head = match (label, meta) {
                (Some(l), true) => format!("<meta charset={}>", l.name()),
                _ => String::new(),
            };
            let page = enc.encode(&format!("{head}{text}")).0.into_owned();
            let want = enc.encode(&format!("{head}{}", ids(text))).0.into_owned();
            assert!(page.iter().any(|&b| b >= 0x80) && page != want);
            let declared = if meta { None } else { label };
            for cut in 0..page.len() {
                let out = run(&mut tagging(declared), &[&page[..cut], &page[cut..]]);
                assert!(
                    out == want,
                    "{} as {label:?}, cut {cut}: {}",
                    enc.name(),
                    String::from_utf8_lossy(&out)
                );
            }
        }
    }

    #[test]
    fn charsets_are_settled_the_same_in_any_chunking() {
        let page = "<html><head><title>x</title><meta charset=iso-2022-jp></head><body>日本 mjd@plover.com 語</body></html>";
        let (jis, _, _) = encoding_rs::ISO_2022_JP.encode(page);
        let whole = run(&mut pipeline(None), &[&jis]);
        let (text, bad) = encoding_rs::ISO_2022_JP.decode_without_bom_handling(&whole);
        assert!(
            !bad && text.contains("mjd-id-") && text.contains("日本"),
            "{text}"
        );
        for cut in 0..jis.len() {
            let got = run(&mut pipeline(None), &[&jis[..cut], &jis[cut..]]);
            assert_eq!(got, whole, "cut at {cut}");
        }
        // A header's UTF-16 (no byte-order mark) is judged on the first 16
        // bytes, whichever way the body is cut: true UTF-16, and ASCII with
        // a zero byte later on.
        let utf16: Vec<u8> = "<p>mjd@plover.com</p>"
            .encode_utf16()
            .flat_map(u16::to_le_bytes)
            .collect();
        let mut lying = b"<p>write to mjd@plover.com</p>".to_vec();
        lying.insert(20, 0);
        for page in [utf16, lying] {
            let declared = || pipeline(Some(encoding_rs::UTF_16LE));
            let whole = run(&mut declared(), &[&page]);
            for cut in 0..page.len() {
                let bytes: Vec<&[u8]> = page[..cut].chunks(1).chain([&page[cut..]]).collect();
                assert_eq!(run(&mut declared(), &bytes), whole, "cut at {cut}");
            }
        }
        // Plain ASCII HTML streams before 1024 bytes arrive.
        let mut p = pipeline(None);
        let first = p.push(b"<p>write to mjd@plover.com today, please</p>").unwrap();
        assert!(String::from_utf8_lossy(&first).contains("mjd-id-"), "{first:?}");
    }

    use super::codec::tests::compress;

    /// `data` as a client that takes `coding` reads it.
    fn decoded(coding: Option<Compress>, data: &[u8]) -> Vec<u8> {
        match coding {
            None => data.to_vec(),
            Some(Compress::Gzip) => {
                let mut d = flate2::write::GzDecoder::new(Vec::new());
                d.write_all(data).unwrap();
                d.finish().unwrap()
            }
            Some(Compress::Zstd) => zstd::decode_all(data).unwrap(),
        }
    }

    /// Runs a body given as one upstream chunk piece by piece; the output
    /// size, the largest piece, and how it ended.
    fn pieces(p: &mut Pipeline, wire: Vec<u8>) -> (usize, usize, std::io::Result<()>) {
        p.input(Bytes::from(wire), true);
        let (mut total, mut most) = (0, 0);
        loop {
            match p.next_piece() {
                Ok(Some(b)) => {
                    total += b.len();
                    most = most.max(b.len());
                }
                Ok(None) => return (total, most, Ok(())),
                Err(e) => return (total, most, Err(e)),
            }
        }
    }

    #[test]
    fn a_decompression_bomb_is_cut_off_after_bounded_work() {
        let zeros = vec![b'a'; 64 << 20];
        for coding in [Coding::Gzip, Coding::Deflate, Coding::Brotli, Coding::Zstd] {
            let mut p = coded_pipeline(None, coding, None);
            let (total, most, end) = pieces(&mut p, compress(coding, &zeros));
            let e = end.expect_err("a bomb must not pass");
            assert!(e.get_ref().is_some_and(|e| e.is::<Expanded>()), "{coding:?}: {e}");
            assert!(
                total as u64 <= RATIO_GRACE + 3 * PIECE as u64,
                "{coding:?}: {total} bytes out"
            );
            assert!(most <= 3 * PIECE + 1024, "{coding:?}: a piece of {most} bytes");
        }
        // The size bound, whatever the ratio.
        let page: Vec<u8> = (0..4_000_000u32)
            .map(|i| (i.wrapping_mul(2_654_435_761) >> 24) as u8)
            .collect();
        let mut p = coded_pipeline(None, Coding::Gzip, None).with_expansion(Expansion {
            max_bytes: 2 << 20,
            max_ratio: u64::MAX,
        });
        let (total, _, end) = pieces(&mut p, compress(Coding::Gzip, &page));
        assert!(
            end.is_err() && total as u64 <= (2 << 20) + 3 * PIECE as u64,
            "{total}"
        );
        // Small, very repetitive pages are fine; so is anything uncompressed.
        let mut p = coded_pipeline(None, Coding::Brotli, None);
        let (total, _, end) = pieces(&mut p, compress(Coding::Brotli, &zeros[..900 << 10]));
        assert!(end.is_ok() && total == 900 << 10);
        let mut p = coded_pipeline(None, Coding::Identity, None);
        let (total, most, end) = pieces(&mut p, zeros.clone());
        assert!(end.is_ok() && total == zeros.len() && most <= PIECE + 1024);
    }

    #[test]
    fn the_last_chunk_with_the_end_gives_what_push_then_finish_gives() {
        let body = format!("<p>{}</p>", "Lorem ipsum, write to mjd@plover.com. ".repeat(400));
        let jis = format!("<meta charset=iso-2022-jp><p>日本 {body}</p>");
        let (jis, _, _) = encoding_rs::ISO_2022_JP.encode(&jis);
        let mut utf16: Vec<u8> = vec![0xff, 0xfe];
        utf16.extend(body.encode_utf16().flat_map(u16::to_le_bytes));
        for (page, declared) in [
            (body.as_bytes().to_vec(), Some(encoding_rs::UTF_8)),
            (body.as_bytes().to_vec(), None),
            (jis.to_vec(), None),
            (utf16, None),
            // Short: undecided (no byte-order mark, no <meta>) when the end comes.
            (b"ok".to_vec(), None),
            (
                encoding_rs::ISO_2022_JP.encode("日本 mjd@plover.com").0.to_vec(),
                None,
            ),
        ] {
            let munged = if page.len() < 100 {
                u64::from(page.len() > 2)
            } else {
                400
            };
            for coding in [
                Coding::Identity,
                Coding::Gzip,
                Coding::Deflate,
                Coding::Brotli,
                Coding::Zstd,
            ] {
                let wire = compress(coding, &page);
                for to in [None, Some(Compress::Gzip), Some(Compress::Zstd)] {
                    for cut in
                        [0, 1, 2, 700, wire.len() / 2, wire.len() - 1, wire.len()].map(|c| c.min(wire.len()))
                    {
                        let (a, b) = wire.split_at(cut);
                        let mut p = coded_pipeline(declared, coding, to);
                        let want = run(&mut p, &[a, b]);
                        let mut p = coded_pipeline(declared, coding, to);
                        let mut got = p.push(a).unwrap().to_vec();
                        got.extend_from_slice(&p.push_last(b).unwrap());
                        let (want, got) = (decoded(to, &want), decoded(to, &got));
                        assert!(got == want, "{coding:?} to {to:?} cut at {cut}");
                        assert_eq!(p.munged(), munged, "{coding:?} cut at {cut}");
                    }
                }
            }
        }
    }

    /// gzip spliced from kept stretches reads as the page does, whatever
    /// the body (transcoded, a replaced domain) and however it is cut; the
    /// stretches of a plain page are reused by the next response.
    #[test]
    fn gzip_from_kept_stretches_reads_as_the_page() {
        let line = "Lorem ipsum dolor sit amet, consectetur adipiscing elit, sed do eiusmod tempor. ";
        let body = format!(
            "<p>{}</p>",
            format!("{line}{line}write to mjd@plover.com. ").repeat(100)
        );
        let jis = format!("<meta charset=iso-2022-jp>日本 {body}");
        let (jis, _, _) = encoding_rs::ISO_2022_JP.encode(&jis);
        let mut utf16: Vec<u8> = vec![0xff, 0xfe];
        utf16.extend(body.encode_utf16().flat_map(u16::to_le_bytes));
        let sjis = format!("<meta charset=shift_jis>アドレス {body}");
        let (sjis, _, _) = encoding_rs::SHIFT_JIS.encode(&sjis);
        let cache = Arc::new(GzipCache::default());
        // Transcoded bodies are not cut where the IDs are marked: not
        // reused; spliced ones are the page's bytes and IDs, as plain ones.
        for (page, reused) in [
            (body.as_bytes(), true),
            (&jis[..], false),
            (&utf16[..], false),
            (&sjis[..], true),
        ] {
            for domain in [None, Some("trap.example".to_owned())] {
                let make = |to| {
                    let m = munger().with_domain(domain.clone());
                    Pipeline::new(matcher().scanner(), m, Coding::Identity, to)
                        .with_charset(None, true)
                        .with_gzip_cache(Arc::clone(&cache))
                };
                let want = run(&mut make(None), &[page]);
                let before = cache.counts().0;
                for cut in [0, 1000, page.len() / 2, page.len()] {
                    let got = run(&mut make(Some(Compress::Gzip)), &[&page[..cut], &page[cut..]]);
                    assert!(decoded(Some(Compress::Gzip), &got) == want, "cut at {cut}");
                }
                let hits = cache.counts().0 - before;
                assert_eq!(hits > 0, reused && domain.is_none(), "{domain:?}: {hits}");
            }
        }
    }

    proptest::proptest! {
        // Cheap cases, and a character cut at the scanner's output edge
        // needs many to come up.
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(512))]
        /// Any page in a spliced charset, valid or not, cut anywhere: the
        /// output is the one-shot output, and when the page is valid, its
        /// own bytes with the IDs inserted.
        #[test]
        fn spliced_pages_are_their_own_bytes_in_any_chunking(
            which in 0usize..9,
            parts in proptest::collection::vec(0usize..15, 1..40),
            junk in proptest::collection::vec(0x80u8..=0xff, 0..4),
            cuts in proptest::collection::vec(0usize..2000, 0..4),
        ) {
            use encoding_rs::{BIG5, EUC_JP, EUC_KR, GB18030, GBK, KOI8_R, SHIFT_JIS, UTF_8, WINDOWS_1252};
            // The last: UTF-8 labelled windows-1252.
            let enc = [SHIFT_JIS, EUC_JP, BIG5, GBK, GB18030, EUC_KR, WINDOWS_1252, KOI8_R, UTF_8][which];
            let words = ["ス", "日本", "mjd@plover.com", "ｊｏｅ＠ｐｌｏｖｅｒ．ｃｏｍ", " ", "<b>", "丐", "갂", "x", "mjd [at] plover [dot] com", "、", "\n", "\u{a0}", "é", "Ж"];
            let text: String = parts.iter().map(|&k| words[k]).collect();
            let label = if enc == UTF_8 { WINDOWS_1252 } else { enc };
            let text = format!("<meta charset={}>{text}", label.name());
            let mut page = enc.encode(&text).0.to_vec();
            // Malformed bytes, somewhere.
            for (k, &b) in junk.iter().enumerate() {
                let at = (parts.len() * 7 * (k + 1)) % (page.len() + 1);
                page.insert(at, b);
            }
            let tag = |_: &crate::scan::Found<'_>, out: &mut Vec<u8>| out.extend_from_slice(b"-id-tag");
            let make = || Pipeline::new(matcher().scanner(), tag, Coding::Identity, None).with_charset(None, true);
            let want = run(&mut make(), &[&page]);
            let mut bounds: Vec<usize> = cuts.iter().map(|c| c % (page.len() + 1)).collect();
            bounds.extend([0, page.len()]);
            bounds.sort_unstable();
            let pieces: Vec<&[u8]> = bounds.windows(2).map(|w| &page[w[0]..w[1]]).collect();
            proptest::prop_assert!(run(&mut make(), &pieces) == want);
            if junk.is_empty() {
                let mut bare = want.clone();
                while let Some(i) = memchr::memmem::find(&bare, b"-id-tag") {
                    bare.drain(i..i + 7);
                }
                proptest::prop_assert!(bare == page);
            }
        }
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(48))]
        /// Any page, cut anywhere, flushed anywhere, read by a second
        /// visitor through the kept stretches: gzip reads as the page
        /// rewritten without compression does.
        #[test]
        fn gzip_through_kept_stretches_reads_as_the_rewritten_page(
            parts in proptest::collection::vec((0usize..2500, 0usize..4), 1..8),
            cuts in proptest::collection::vec(0usize..20_000, 0..5),
            flush_after in proptest::collection::vec(0usize..6, 0..3),
        ) {
            let fillers = ["Lorem ipsum dolor sit amet, ", "<a href=\"/x\">x</a> ", "caf\u{e9} &amp; ", "\n"];
            let mut page = String::new();
            for (n, k) in &parts {
                while page.len() % 2500 < *n % 2500 && page.len() < 20_000 {
                    page.push_str(fillers[*k]);
                }
                page.push_str(["mjd@plover.com ", "<a href=\"mailto:mjd@plover.com\">mail</a>", "git@plover.com:x ", ""][*k]);
            }
            let page = page.as_bytes();
            let mut bounds: Vec<usize> = cuts.iter().map(|c| c % (page.len() + 1)).collect();
            bounds.extend([0, page.len()]);
            bounds.sort_unstable();
            let cache = Arc::new(GzipCache::default());
            for ip in ["192.0.2.1", "198.51.100.7"] {
                let make = |to| Pipeline::new(matcher().scanner(), munger_at(ip), Coding::Identity, to);
                let want = run(&mut make(None), &[page]);
                let mut p = make(Some(Compress::Gzip)).with_gzip_cache(Arc::clone(&cache));
                let mut got = Vec::new();
                for (i, w) in bounds.windows(2).enumerate() {
                    got.extend_from_slice(&p.push(&page[w[0]..w[1]]).unwrap());
                    if flush_after.contains(&i) {
                        got.extend_from_slice(&p.flush().unwrap());
                    }
                }
                got.extend_from_slice(&p.finish().unwrap());
                proptest::prop_assert!(decoded(Some(Compress::Gzip), &got) == want);
            }
        }
    }
}
