//! The socketmap reader over any bytes: never panics, never returns a
//! request longer than the limit, and stops at the first bad netstring.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tokio::io::BufReader;

const MAX: usize = 512;

fuzz_target!(|data: &[u8]| {
    let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
    rt.block_on(async {
        // A small buffer, so lengths and data cross its refills.
        let mut r = BufReader::with_capacity(7, data);
        let mut req = Vec::new();
        // Each request consumes at least 3 bytes ("0:,"), so this ends.
        while let Ok(true) = addrmunge::resolver::socketmap::read_request(&mut r, MAX, &mut req).await {
            assert!(req.len() <= MAX);
        }
    });
});
