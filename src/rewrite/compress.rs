//! The compression the proxy puts on a body it rewrote: gzip, which every
//! client takes, or zstd, which modern browsers take and which costs the
//! proxy less CPU for the same size.

use std::io::Write;
use std::ops::Range;
use std::sync::Arc;

use super::gzip::{GzipCache, GzipWriter};

/// A content coding the proxy compresses rewritten bodies with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compress {
    /// gzip (RFC 1952), which every client takes.
    Gzip,
    /// zstd (RFC 8878, for HTTP RFC 9659).
    Zstd,
}

impl Compress {
    /// Its `Content-Encoding` name.
    pub fn name(self) -> &'static str {
        match self {
            Compress::Gzip => "gzip",
            Compress::Zstd => "zstd",
        }
    }
}

/// zstd's level 1 makes that page 14.8 KB too, in less time than gzip.
const ZSTD_LEVEL: i32 = 1;

/// A 128 KiB window: a page's repeats are near, and the context stays
/// about the size of gzip's (level 1's own 512 KiB window would make it
/// several times larger, per response in flight). Well under the 8 MiB
/// browsers take (RFC 9659).
const ZSTD_WINDOW_LOG: u32 = 17;

/// A streaming compressor writing into its own buffer.
pub(super) enum Encoder {
    Gzip(Box<GzipWriter>),
    Zstd(zstd::stream::write::Encoder<'static, Vec<u8>>),
}

impl Encoder {
    /// An encoder for `coding`; gzip if zstd's context cannot be made (out
    /// of memory), so the body still goes out compressed as declared by
    /// [`coding`](Self::coding).
    pub(super) fn new(coding: Compress) -> Encoder {
        let zstd = || {
            let mut e = zstd::stream::write::Encoder::new(Vec::new(), ZSTD_LEVEL)?;
            e.window_log(ZSTD_WINDOW_LOG)?;
            std::io::Result::Ok(e)
        };
        match coding {
            Compress::Zstd => match zstd() {
                Ok(e) => Encoder::Zstd(e),
                Err(_) => Encoder::new(Compress::Gzip),
            },
            Compress::Gzip => Encoder::Gzip(Box::new(GzipWriter::new())),
        }
    }

    pub(super) fn coding(&self) -> Compress {
        match self {
            Encoder::Gzip(_) => Compress::Gzip,
            Encoder::Zstd(_) => Compress::Zstd,
        }
    }

    /// Reuses gzip's stretches through `cache` (zstd has no use for it).
    /// Before anything is written.
    pub(super) fn reuse_through(&mut self, cache: Arc<GzipCache>) {
        if let Encoder::Gzip(e) = self {
            e.reuse_through(cache);
        }
    }

    /// From now on nothing is reused (see `gzip.rs`).
    pub(super) fn stop_reusing(&mut self) -> std::io::Result<()> {
        match self {
            Encoder::Gzip(e) => e.stop_reusing(),
            Encoder::Zstd(_) => Ok(()),
        }
    }

    /// Takes `data`, in which the scanner inserted `ids`.
    pub(super) fn write(&mut self, data: &[u8], ids: &[Range<usize>]) -> std::io::Result<()> {
        match self {
            Encoder::Gzip(e) => e.write(data, ids),
            Encoder::Zstd(e) => e.write_all(data),
        }
    }

    /// Ends a block so the client can decode all given so far.
    pub(super) fn flush(&mut self) -> std::io::Result<()> {
        match self {
            Encoder::Gzip(e) => e.flush(),
            Encoder::Zstd(e) => e.flush(),
        }
    }

    /// The compressed bytes made so far.
    pub(super) fn take(&mut self) -> Vec<u8> {
        match self {
            Encoder::Gzip(e) => e.take(),
            Encoder::Zstd(e) => std::mem::take(e.get_mut()),
        }
    }

    /// Ends the stream; the rest of the compressed bytes.
    pub(super) fn finish(self) -> std::io::Result<Vec<u8>> {
        match self {
            Encoder::Gzip(e) => e.finish(),
            Encoder::Zstd(e) => e.finish(),
        }
    }
}
