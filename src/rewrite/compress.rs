//! The compression the proxy puts on a body it rewrote: gzip, which every
//! client takes, or zstd, which modern browsers take and which costs the
//! proxy less CPU for the same size.

use std::io::Write;

use flate2::Compression;
use flate2::write::GzEncoder;

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

/// How hard the proxy gzips. zlib-rs's level 1 keeps the fixed Huffman
/// codes, so a 45 KB page that `gzip -1` makes 15.0 KB comes out 19.3 KB;
/// level 2 builds codes per block: 14.8 KB, in ~180 us per page with a sync
/// flush per 16 KiB (miniz_oxide's level 1, used before: 16.9 KB in
/// ~280-330 us).
const GZIP_LEVEL: Compression = Compression::new(2);

/// zstd's level 1 makes that page 14.8 KB too, in less time than gzip.
const ZSTD_LEVEL: i32 = 1;

/// A 128 KiB window: a page's repeats are near, and the context stays
/// about the size of gzip's (level 1's own 512 KiB window would make it
/// several times larger, per response in flight). Well under the 8 MiB
/// browsers take (RFC 9659).
const ZSTD_WINDOW_LOG: u32 = 17;

/// A streaming compressor writing into its own buffer.
pub(super) enum Encoder {
    Gzip(GzEncoder<Vec<u8>>),
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
            Compress::Gzip => Encoder::Gzip(GzEncoder::new(Vec::new(), GZIP_LEVEL)),
        }
    }

    pub(super) fn coding(&self) -> Compress {
        match self {
            Encoder::Gzip(_) => Compress::Gzip,
            Encoder::Zstd(_) => Compress::Zstd,
        }
    }

    pub(super) fn write_all(&mut self, data: &[u8]) -> std::io::Result<()> {
        match self {
            Encoder::Gzip(e) => e.write_all(data),
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
            Encoder::Gzip(e) => std::mem::take(e.get_mut()),
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
