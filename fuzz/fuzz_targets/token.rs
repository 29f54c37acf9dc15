//! The token decoder over any base, label and token text: never panics,
//! and whatever it accepts encodes back to the same token.
#![no_main]

use addrmunge::KeyRing;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let mut parts = text.splitn(3, '\u{0}');
    let (base, label, token) = (
        parts.next().unwrap_or(""),
        parts.next().unwrap_or(""),
        parts.next().unwrap_or(""),
    );
    // The key of fixtures/token-vectors.json, so its tokens seed the corpus.
    let key: [u8; 32] = std::array::from_fn(|i| i as u8);
    let keys = KeyRing::new(&[key, [9u8; 32]]);
    if let Ok(d) = keys.decode(base, label, token) {
        if d.key_index == 0 {
            assert_eq!(keys.encode(base, label, &d.claims), token.to_ascii_lowercase());
        }
    }
});
