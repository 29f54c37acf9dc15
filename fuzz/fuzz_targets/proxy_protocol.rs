//! The PROXY protocol parser over any bytes: never panics, never claims a
//! header longer than what it was given.
#![no_main]

use addrmunge::proxy::proxy_protocol::{Parsed, parse};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Parsed::Header { len, .. } = parse(data) {
        assert!(len > 0 && len <= data.len());
        // The same header with the request behind it parses the same.
        let mut more = data[..len].to_vec();
        more.extend_from_slice(b"GET / HTTP/1.1\r\n\r\n");
        assert_eq!(parse(&more), parse(&data[..len]));
    }
});
