//! The scanner over any bytes in any chunking: the output is the input with
//! insertions only (every other byte kept, in order), and cutting the input
//! anywhere gives the one-shot output.
#![no_main]

use std::sync::Arc;

use addrmunge::address::{Glob, Protect, Protection};
use addrmunge::scan::Written;
use addrmunge::{Found, Matcher, Munger};
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

/// What the scanner inserts, noting where each insertion goes in the
/// output (a position in `o`, which is the whole output so far only if
/// every call appends to the same buffer: it does).
struct Marker(Vec<(usize, usize)>);

const ID: &[u8] = b"-id-0123456789abcdefghjkmnpq";

impl Munger for Marker {
    fn munge(&mut self, _: &Found<'_>, o: &mut Vec<u8>) {
        self.0.push((o.len(), ID.len()));
        o.extend_from_slice(ID);
    }

    fn munge_as(&mut self, _: &Found<'_>, o: &mut Vec<u8>, written: Written) {
        let at = o.len();
        written.write(ID, o);
        self.0.push((at, o.len() - at));
    }
}

/// Scans `input` in chunks cut at `cuts`; the output and where each
/// insertion went.
fn scan(m: &Arc<Matcher>, input: &[u8], cuts: &[usize]) -> (Vec<u8>, Vec<(usize, usize)>) {
    let mut s = m.scanner();
    let mut out = Vec::new();
    let mut marker = Marker(Vec::new());
    let mut from = 0;
    for &c in cuts {
        let c = c.clamp(from, input.len());
        s.feed(&input[from..c], &mut out, &mut marker);
        from = c;
    }
    s.feed(&input[from..], &mut out, &mut marker);
    s.finish(&mut out, &mut marker);
    (out, marker.0)
}

fuzz_target!(|data: &[u8]| {
    if data.len() < 2 {
        return;
    }
    let (control, input) = data.split_at(2);
    let m = matcher();
    let (whole, spans) = scan(&m, input, &[]);
    // Remove the insertions: the input is what remains.
    let mut kept = Vec::with_capacity(input.len());
    let mut at = 0;
    for &(start, len) in &spans {
        kept.extend_from_slice(&whole[at..start]);
        at = start + len;
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
