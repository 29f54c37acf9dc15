//! Headless Chromium from Debian's packages, for tests that look at pages
//! the way a person does: screenshots and the DOM after scripts ran.

use std::process::Command;

/// Headless Chromium from Debian's packages (scripts/test.sh installs it).
/// Each call gets its own profile; the flags keep it off the network.
pub fn chromium(args: &[&str], url: &str) -> std::process::Output {
    let bin = ["/usr/bin/chromium", "/usr/bin/chromium-browser"]
        .into_iter()
        .find(|p| std::path::Path::new(p).exists())
        .expect("Chromium is not installed; `bash scripts/test.sh` installs it (apt-get install chromium)");
    let profile = tempfile::tempdir().unwrap();
    let out = Command::new(bin)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--hide-scrollbars",
            "--force-device-scale-factor=1",
            "--window-size=1000,800",
        ])
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .args(args)
        .arg(url)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "chromium failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// RGBA pixels and width of a screenshot of `url`.
pub fn screenshot(url: &str) -> (Vec<u8>, usize) {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("shot.png");
    chromium(&[&format!("--screenshot={}", file.display())], url);
    let decoder = png::Decoder::new(std::io::BufReader::new(std::fs::File::open(&file).unwrap()));
    let mut reader = decoder.read_info().unwrap();
    let mut buf = vec![0; reader.output_buffer_size().unwrap()];
    let info = reader.next_frame(&mut buf).unwrap();
    buf.truncate(info.buffer_size());
    (buf, info.line_size)
}

/// Which pixel rows carry anything but the background colour: the page's
/// vertical layout, blind to what the text says.
pub fn inked_rows(pixels: &[u8], line: usize) -> Vec<bool> {
    pixels
        .chunks(line)
        .map(|row| row.chunks(line / 1000).any(|px| px != &row[..px.len()]))
        .collect()
}
