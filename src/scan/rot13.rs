//! Addresses a page writes in ROT13 for a script to turn back, an old way
//! to hide a link from harvesters that do not run scripts:
//!
//! ```text
//! <a href="znvygb:zwq@cybire.pbz">…</a>   (a script rotates the letters)
//! ```
//!
//! A browser shows `mailto:mjd@plover.com`, and a harvester that undoes
//! ROT13 (as the audit's `rot13` reading does) takes it without running
//! anything. Read only around a literal `@` with literal characters on
//! both sides: the domain after it, rotated, must be a whole protected
//! domain, and the local part before it, rotated, protected. The ID is
//! written rotated (`zwq-vq-…@cybire.pbz`), so the script turns it into
//! `mjd-id-…@plover.com`. A rotated remote (`tvg@cybire.pbz:x.tvg`) is
//! left alone, as a plain one is.

use super::{BACK, Part, Scratch, followed_by_path, plain_local, protected_entry};
use crate::address::{Protection, is_domain_char};

/// A letter turned 13 places round the alphabet; any other byte as it is.
pub(super) fn rotate(c: u8) -> u8 {
    match c {
        b'a'..=b'm' | b'A'..=b'M' => c + 13,
        b'n'..=b'z' | b'N'..=b'Z' => c - 13,
        _ => c,
    }
}

/// What the `@` at `p` is, read in ROT13.
pub(super) enum Rot13 {
    /// A protected address by this entry, turned back into the scratch
    /// buffers.
    Found(usize),
    No,
    NeedMore,
}

/// Decides the literal `@` at `buf[p]` as a ROT13 address.
pub(super) fn decide(prot: &Protection, buf: &[u8], p: usize, eof: bool, sc: &mut Scratch) -> Rot13 {
    let mut end = p + 1;
    loop {
        match buf.get(end) {
            Some(&c) if is_domain_char(c.into()) => {
                let Some(d) = sc.domain.get_mut(end - p - 1) else {
                    return Rot13::No; // longer than any protected domain
                };
                *d = rotate(c.to_ascii_lowercase());
                end += 1;
            }
            Some(_) => break,
            None if eof => break,
            None => return Rot13::NeedMore,
        }
    }
    // Dots after it end a sentence.
    let mut n = end - p - 1;
    while n > 0 && sc.domain[n - 1] == b'.' {
        n -= 1;
    }
    sc.domain_len = n;
    sc.domain_end = p + 1 + n;
    match followed_by_path(buf, sc.domain_end, eof) {
        None => return Rot13::NeedMore,
        Some(true) => return Rot13::No,
        Some(false) => {}
    }
    if !matches!(plain_local(buf, p, p.saturating_sub(BACK), sc), Some(Part::Found)) {
        return Rot13::No;
    }
    for c in &mut sc.local[..sc.local_len] {
        *c = rotate(*c);
    }
    sc.insert_at = p;
    protected_entry(prot, sc).map_or(Rot13::No, Rot13::Found)
}
