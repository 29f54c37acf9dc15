//! The scanner over any bytes in any chunking: the output is the input with
//! insertions only (every other byte kept, in order), but for base64
//! written anew whose text is its own with insertions, and cutting the
//! input anywhere gives the one-shot output.
#![no_main]

use std::ops::Range;
use std::sync::Arc;

use addrmunge::address::{Glob, Protect, Protection};
use addrmunge::scan::Written;
use addrmunge::{Found, Matcher, Munger};
use data_encoding::BASE64_NOPAD;
use libfuzzer_sys::fuzz_target;

fn matcher() -> Arc<Matcher> {
    Matcher::new(Arc::new(Protection::new(
        vec![
            Protect {
                domain: "plover.com".into(),
                local: Glob::new("*").unwrap(),
                exempt: vec![Glob::new("*-subscribe").unwrap()],
                deliver_to: None,
            },
            Protect {
                domain: "a.b".into(),
                local: Glob::new("m?d*").unwrap(),
                exempt: vec![],
                deliver_to: None,
            },
            // A label inside another (`lover` in `plover`).
            Protect {
                domain: "lover.example".into(),
                local: Glob::new("*").unwrap(),
                exempt: vec![],
                deliver_to: None,
            },
            // bücher.example, which pages write in Unicode.
            Protect {
                domain: "xn--bcher-kva.example".into(),
                local: Glob::new("*").unwrap(),
                exempt: vec![],
                deliver_to: None,
            },
        ],
        "-id-",
    )))
}

/// What the scanner changed, in the output.
enum Span {
    /// `len` bytes inserted at `at`.
    Inserted { at: usize, len: usize },
    /// base64 written in place of `replaced` bytes, its text holding `ids` IDs.
    Rewritten { written: Range<usize>, replaced: usize, ids: usize },
}

/// What the scanner inserts, noting where each insertion goes in the
/// output (a position in `o`, which is the whole output so far only if
/// every call appends to the same buffer: it does).
#[derive(Default)]
struct Marker {
    spans: Vec<Span>,
    /// IDs handed out for a stretch not yet written.
    ids: usize,
}

const ID: &[u8] = b"-id-0123456789abcdefghjkmnpq";

impl Munger for Marker {
    fn munge(&mut self, _: &Found<'_>, o: &mut Vec<u8>) {
        self.spans.push(Span::Inserted { at: o.len(), len: ID.len() });
        o.extend_from_slice(ID);
    }

    fn munge_as(&mut self, _: &Found<'_>, o: &mut Vec<u8>, written: Written) {
        let at = o.len();
        written.write(ID, o);
        self.spans.push(Span::Inserted { at, len: o.len() - at });
    }

    fn id(&mut self, _: &Found<'_>, id: &mut Vec<u8>) {
        self.ids += 1;
        id.extend_from_slice(ID);
    }

    fn rewritten(&mut self, written: Range<usize>, replaced: usize) {
        let ids = std::mem::take(&mut self.ids);
        self.spans.push(Span::Rewritten { written, replaced, ids });
    }
}

/// What base64 written anew with `ids` IDs in its text was before: its
/// text without them, in base64 again, padded to `replaced` bytes.
fn unwritten(written: &[u8], replaced: usize, ids: usize) -> Vec<u8> {
    let chars: Vec<u8> = written.iter().copied().filter(|&c| c != b'=').collect();
    let mut text = BASE64_NOPAD.decode(&chars).expect("base64 written");
    for _ in 0..ids {
        let at = text.windows(ID.len()).position(|w| w == ID).expect("an ID in the text");
        text.drain(at..at + ID.len());
    }
    let mut was = BASE64_NOPAD.encode(&text).into_bytes();
    assert!(was.len() <= replaced && replaced - was.len() <= 2, "padding only");
    was.resize(replaced, b'=');
    was
}

/// Scans `input` in chunks cut at `cuts`; the output and where each
/// insertion went.
fn scan(m: &Arc<Matcher>, input: &[u8], cuts: &[usize]) -> (Vec<u8>, Vec<Span>) {
    let mut s = m.scanner();
    let mut out = Vec::new();
    let mut marker = Marker::default();
    let mut from = 0;
    for &c in cuts {
        let c = c.clamp(from, input.len());
        s.feed(&input[from..c], &mut out, &mut marker);
        from = c;
    }
    s.feed(&input[from..], &mut out, &mut marker);
    s.finish(&mut out, &mut marker);
    (out, marker.spans)
}

fuzz_target!(|data: &[u8]| {
    if data.len() < 2 {
        return;
    }
    let (control, input) = data.split_at(2);
    let m = matcher();
    let (whole, spans) = scan(&m, input, &[]);
    // Remove the insertions, and undo base64 written anew: the input is
    // what remains.
    let mut kept = Vec::with_capacity(input.len());
    let mut at = 0;
    for span in &spans {
        match span {
            &Span::Inserted { at: start, len } => {
                kept.extend_from_slice(&whole[at..start]);
                at = start + len;
            }
            Span::Rewritten { written, replaced, ids } => {
                kept.extend_from_slice(&whole[at..written.start]);
                kept.extend(unwritten(&whole[written.clone()], *replaced, *ids));
                at = written.end;
            }
        }
    }
    kept.extend_from_slice(&whole[at..]);
    assert!(kept == input, "a byte other than an insertion changed");
    // Any chunking gives the same bytes.
    let step = usize::from(control[0]).max(1);
    let first = usize::from(control[1]);
    let cuts: Vec<usize> = (0..).map(|i| first + i * step).take_while(|&c| c < input.len()).collect();
    let (chunked, _) = scan(&m, input, &cuts);
    assert!(chunked == whole, "chunking changed the output");
});
