//! The policy-delegation reader over any bytes: never panics, never holds
//! more than the limit, and every attribute came from a `name=value` line.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tokio::io::BufReader;

const MAX: usize = 2048;

fuzz_target!(|data: &[u8]| {
    let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
    rt.block_on(async {
        let mut r = BufReader::new(data);
        while let Ok(Some(attrs)) = addrmunge::resolver::policy::read_request(&mut r, MAX).await {
            // Invalid UTF-8 is read lossily: a byte may become a 3-byte U+FFFD.
            let size: usize = attrs.iter().map(|(k, v)| k.len() + v.len() + 2).sum();
            assert!(size <= 3 * MAX, "{size}");
            assert!(attrs.keys().all(|k| !k.contains(['=', '\n'])));
        }
    });
});
