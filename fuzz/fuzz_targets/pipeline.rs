//! The response pipeline over any bytes, in any charset (declared, by a
//! byte-order mark or by a `<meta>`) and any chunking: cutting the body
//! anywhere gives the one-shot output, and a body in a charset read by
//! splicing (Shift_JIS, Big5, …) that decodes without error comes out as
//! its own bytes with the insertions.
#![no_main]

use std::cell::Cell;
use std::rc::Rc;
use std::sync::Arc;

use addrmunge::address::{Glob, Protect, Protection};
use addrmunge::rewrite::charset::{Reading, reading};
use addrmunge::rewrite::{Coding, Pipeline};
use addrmunge::scan::Written;
use addrmunge::{Found, Matcher, Munger};
use encoding_rs::{
    BIG5, EUC_JP, EUC_KR, Encoding, GB18030, GBK, ISO_2022_JP, KOI8_R, SHIFT_JIS, UTF_8, UTF_16LE, WINDOWS_1252,
};
use libfuzzer_sys::fuzz_target;

const TAG: &[u8] = b"-id-tag";

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

/// Inserts `TAG` (as codes where a script's character codes spell the
/// address), counting the bytes it inserts; `None` once base64 was
/// written anew, which is no insertion (the scanner's target checks it).
struct Tagger(Rc<Cell<Option<usize>>>);

impl Tagger {
    fn inserted(&self, n: usize) {
        self.0.set(self.0.get().map(|m| m + n));
    }
}

impl Munger for Tagger {
    fn munge(&mut self, _: &Found<'_>, o: &mut Vec<u8>) {
        o.extend_from_slice(TAG);
        self.inserted(TAG.len());
    }

    fn munge_as(&mut self, _: &Found<'_>, o: &mut Vec<u8>, written: Written) {
        let at = o.len();
        written.write(TAG, o);
        self.inserted(o.len() - at);
    }

    fn id(&mut self, _: &Found<'_>, id: &mut Vec<u8>) {
        id.extend_from_slice(TAG);
    }

    fn rewritten(&mut self, _: std::ops::Range<usize>, _: usize) {
        self.0.set(None);
    }
}

/// The body through a pipeline in pieces cut at `cuts`; the output and
/// how many bytes were inserted, if only inserted.
fn run(declared: Option<&'static Encoding>, html: bool, body: &[u8], cuts: &[usize]) -> (Vec<u8>, Option<usize>) {
    let inserted = Rc::new(Cell::new(Some(0)));
    let munger = Tagger(Rc::clone(&inserted));
    let mut p = Pipeline::new(matcher().scanner(), munger, Coding::Identity, None).with_charset(declared, html);
    let mut out = Vec::new();
    let mut from = 0;
    for &c in cuts {
        let c = c.clamp(from, body.len());
        out.extend_from_slice(&p.push(&body[from..c]).unwrap());
        from = c;
    }
    out.extend_from_slice(&p.push(&body[from..]).unwrap());
    out.extend_from_slice(&p.finish().unwrap());
    (out, inserted.get())
}

/// Whether `small` is `big` with bytes taken out.
fn is_subsequence(small: &[u8], big: &[u8]) -> bool {
    let mut rest = big.iter();
    small.iter().all(|b| rest.any(|c| c == b))
}

fuzz_target!(|data: &[u8]| {
    if data.len() < 3 {
        return;
    }
    let (control, body) = data.split_at(3);
    let charsets = [
        None,
        Some(SHIFT_JIS),
        Some(EUC_JP),
        Some(BIG5),
        Some(GBK),
        Some(GB18030),
        Some(EUC_KR),
        Some(UTF_8),
        Some(UTF_16LE),
        Some(ISO_2022_JP),
        Some(WINDOWS_1252),
        Some(KOI8_R),
    ];
    let declared = charsets[usize::from(control[0] & 0x7f) % charsets.len()];
    let html = control[0] & 0x80 != 0;
    let (whole, inserted) = run(declared, html, body, &[]);
    let step = usize::from(control[1]).max(1);
    let first = usize::from(control[2]);
    let cuts: Vec<usize> = (0..).map(|i| first + i * step).take_while(|&c| c < body.len()).collect();
    let (chunked, _) = run(declared, html, body, &cuts);
    assert!(chunked == whole, "chunking changed the output");
    // A declared spliced charset the body is valid in (no BOM or <meta>
    // can name another: the declaration is taken only for bodies that
    // start with neither).
    if let Some(e) = declared
        && let Some(inserted) = inserted
        && reading(e) == Reading::Spliced
        && Encoding::for_bom(body).is_none()
        && e.decode_without_bom_handling_and_without_replacement(body).is_some()
    {
        assert_eq!(whole.len(), body.len() + inserted, "not insertions only");
        assert!(is_subsequence(body, &whole), "a byte other than an insertion changed");
    }
});
