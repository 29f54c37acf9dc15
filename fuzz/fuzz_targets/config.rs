//! The config loader over any text: an error or a config, never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let path = std::path::Path::new("/nonexistent/addrmunge/fuzz.toml");
    if let Ok(c) = addrmunge::Config::from_toml(path, &text) {
        // What loads is usable: the protection answers, the limits hold.
        assert!(!c.protection.entries().is_empty());
        let second = std::time::Duration::from_secs(1);
        assert!(c.proxy.header_timeout >= second && c.resolver.idle_timeout >= second);
        let _ = c.protection.parse("mjd@plover.com");
    }
});
