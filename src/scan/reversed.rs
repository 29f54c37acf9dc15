//! Addresses written backwards, for a script or a stylesheet to turn
//! round, an old way to hide an address from harvesters that do not run
//! scripts or lay out pages:
//!
//! ```text
//! 'moc.revolp@djm'.split('').reverse().join('')
//! <span style="unicode-bidi: bidi-override; direction: rtl">moc.revolp@djm</span>
//! ```
//!
//! A browser shows `mjd@plover.com`, and so does a harvester that renders
//! the page (the audit's `--render`). Read only around a literal `@` with
//! literal characters on both sides: the domain before it, read backwards,
//! must be a whole protected domain, and the local part after it, read
//! backwards, protected. The ID is written backwards after the `@`
//! (`moc.revolp@<ID backwards>-di-djm`), so the page shows
//! `mjd-id-…@plover.com`. A backwards remote or URL (`tig.x:moc.revolp@tig`,
//! `moc.revolp@djm//:sptth`) is left alone, as a forward one is.

use super::{Scratch, protected_entry};
use crate::address::{MAX_LOCAL, Protection, is_domain_char, is_local_char};

/// What the `@` at `p` is, read backwards.
pub(super) enum Reversed {
    /// A protected address by this entry, turned round into the scratch
    /// buffers.
    Found(usize),
    No,
    NeedMore,
}

/// Decides the literal `@` at `buf[p]` as an address written backwards;
/// `whole` when `buf` starts the stream.
pub(super) fn decide(
    prot: &Protection,
    buf: &[u8],
    p: usize,
    eof: bool,
    whole: bool,
    sc: &mut Scratch,
) -> Reversed {
    let Some(n) = domain_before(buf, p, whole, sc) else {
        return Reversed::No;
    };
    sc.domain_len = n;
    // Nothing of the domain comes after the `@`.
    sc.domain_end = p + 1;
    let mut end = p + 1;
    loop {
        match buf.get(end) {
            Some(&c) if is_local_char(c.into()) => {
                if end - p > MAX_LOCAL {
                    return Reversed::No;
                }
                end += 1;
            }
            // A URL's user name, backwards (`…@djm//:sptth`).
            Some(b'/') => return Reversed::No,
            Some(_) => break,
            None if eof => break,
            None => return Reversed::NeedMore,
        }
    }
    let local = &buf[p + 1..end];
    if local.is_empty() || local.starts_with(b".") || local.ends_with(b".") {
        return Reversed::No;
    }
    for (d, &c) in sc.local.iter_mut().zip(local.iter().rev()) {
        *d = c;
    }
    sc.local_len = local.len();
    sc.insert_at = p + 1;
    protected_entry(prot, sc).map_or(Reversed::No, Reversed::Found)
}

/// Reads the domain that ends at the `@` at `p` backwards into `sc.domain`
/// (lowercase, the dots that end a sentence dropped): its length, or `None`
/// when it is longer than any protected one or a remote's (`…:` before it).
/// `whole` when `buf` starts the stream.
fn domain_before(buf: &[u8], p: usize, whole: bool, sc: &mut Scratch) -> Option<usize> {
    let mut n = 0;
    while n < p && is_domain_char(buf[p - 1 - n].into()) {
        *sc.domain.get_mut(n)? = buf[p - 1 - n].to_ascii_lowercase();
        n += 1;
    }
    // The domain must start after something that is not of it: at the
    // start of what is kept (not of the stream), more of it may have gone.
    let remote = n < p && buf[p - 1 - n] == b':';
    if (n == p && !whole) || remote {
        return None;
    }
    // Dots before it, backwards, end a sentence after it.
    while n > 0 && sc.domain[n - 1] == b'.' {
        n -= 1;
    }
    Some(n)
}
