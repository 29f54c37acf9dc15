//! Content codings undone in bounded pieces.
//!
//! A compressed body can expand a thousand- or a million-fold (an 809-byte
//! brotli body can hold a gigabyte of zeros). So nothing here decodes a
//! whole frame at once: every step turns some input into at most about
//! [`PIECE`] bytes of output and says how much input it took, and the
//! pipeline sends each piece on before asking for the next. Memory per
//! response is then the codec's window, not the body's expansion, and the
//! work per step is bounded, so one response cannot stall the others.
//! Windows are kept to what HTTP allows: brotli without its non-standard
//! large-window mode (at most 16 MiB), zstd at 8 MiB (RFC 9659).

use std::io::{self, Write};

use brotli::enc::StandardAlloc;
use brotli::{BrotliDecompressStream, BrotliResult, BrotliState};
use flate2::write::{DeflateDecoder, GzDecoder, ZlibDecoder};
use zstd::stream::raw::{InBuffer, Operation, OutBuffer};

/// About how many decoded bytes one step produces at most.
pub const PIECE: usize = 64 * 1024;

/// The largest zstd window HTTP allows (RFC 9659: 8 MiB).
const ZSTD_WINDOW_LOG: u32 = 23;

/// A content coding the pipeline can undo or apply.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Coding {
    /// No coding.
    Identity,
    /// `gzip`.
    Gzip,
    /// `deflate`: zlib-wrapped as HTTP specifies, or raw deflate as some
    /// servers send it (told apart by the first two bytes, as browsers do).
    Deflate,
    /// `br` (brotli).
    Brotli,
    /// `zstd`.
    Zstd,
}

impl Coding {
    /// Reads a `Content-Encoding` value; `None` for codings we cannot undo.
    pub fn parse(value: Option<&str>) -> Option<Coding> {
        match value.map(|v| v.trim().to_ascii_lowercase()).as_deref() {
            None | Some("") | Some("identity") => Some(Coding::Identity),
            Some("gzip") | Some("x-gzip") => Some(Coding::Gzip),
            Some("deflate") => Some(Coding::Deflate),
            Some("br") => Some(Coding::Brotli),
            Some("zstd") => Some(Coding::Zstd),
            _ => None,
        }
    }
}

type Brotli = BrotliState<StandardAlloc, StandardAlloc, StandardAlloc>;

/// One body's decoder.
pub enum Decoder {
    /// flate2's writers decode into their own 32 KiB buffer per `write`
    /// and take only the input that fits, which is what bounds them.
    Gzip(GzDecoder<Vec<u8>>),
    /// `deflate` before its first two bytes are known.
    Deflate(Vec<u8>),
    /// zlib-wrapped deflate.
    Zlib(ZlibDecoder<Vec<u8>>),
    /// Raw deflate.
    Raw(DeflateDecoder<Vec<u8>>),
    /// Brotli, and whether its stream has ended.
    Brotli(Box<Brotli>, bool),
    /// Zstandard, and whether input was seen and its last frame is complete.
    Zstd(Box<zstd::stream::raw::Decoder<'static>>, bool, bool),
}

fn corrupt(what: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, format!("corrupt {what} body"))
}

fn ended_early(what: &str) -> io::Error {
    io::Error::new(
        io::ErrorKind::UnexpectedEof,
        format!("the {what} body ended early"),
    )
}

/// True when two bytes start a zlib stream (RFC 1950: deflate, a window of
/// at most 32 KiB, a header check that is a multiple of 31).
fn is_zlib_header(cmf: u8, flg: u8) -> bool {
    cmf & 0x0f == 8 && cmf >> 4 <= 7 && (u16::from(cmf) << 8 | u16::from(flg)) % 31 == 0
}

impl Decoder {
    /// The decoder for `coding`; `None` for identity.
    pub fn new(coding: Coding) -> io::Result<Option<Decoder>> {
        Ok(Some(match coding {
            Coding::Identity => return Ok(None),
            Coding::Gzip => Decoder::Gzip(GzDecoder::new(Vec::new())),
            Coding::Deflate => Decoder::Deflate(Vec::with_capacity(2)),
            Coding::Brotli => {
                let mut state = Brotli::new(
                    StandardAlloc::default(),
                    StandardAlloc::default(),
                    StandardAlloc::default(),
                );
                // Large windows (up to 1 GiB) are not part of HTTP's brotli.
                state.large_window = false;
                Decoder::Brotli(Box::new(state), false)
            }
            Coding::Zstd => {
                let mut d = zstd::stream::raw::Decoder::new()?;
                d.set_parameter(zstd::zstd_safe::DParameter::WindowLogMax(ZSTD_WINDOW_LOG))?;
                Decoder::Zstd(Box::new(d), false, false)
            }
        }))
    }

    /// Decodes from `input`, appending at most about [`PIECE`] bytes to
    /// `out`; returns how many input bytes it took. Every call takes input
    /// or gives output (or fails), so calling it until the input is used
    /// up ends.
    pub fn step(&mut self, input: &[u8], out: &mut Vec<u8>) -> io::Result<usize> {
        if input.is_empty() {
            return Ok(0);
        }
        match self {
            Decoder::Gzip(d) => flate_step(d, input, out, "gzip"),
            Decoder::Zlib(d) => flate_step(d, input, out, "deflate"),
            Decoder::Raw(d) => flate_step(d, input, out, "deflate"),
            Decoder::Deflate(head) => {
                let n = (2 - head.len()).min(input.len());
                head.extend_from_slice(&input[..n]);
                if head.len() == 2 {
                    let head = std::mem::take(head);
                    *self = if is_zlib_header(head[0], head[1]) {
                        Decoder::Zlib(ZlibDecoder::new(Vec::new()))
                    } else {
                        Decoder::Raw(DeflateDecoder::new(Vec::new()))
                    };
                    self.write_head(&head)?;
                }
                Ok(n)
            }
            Decoder::Brotli(state, ended) => {
                if *ended {
                    return Err(corrupt("brotli (data after its end)"));
                }
                let (taken, result) = brotli_step(state, input, out);
                match result {
                    BrotliResult::ResultFailure => Err(corrupt("brotli")),
                    BrotliResult::ResultSuccess => {
                        *ended = true;
                        Ok(taken)
                    }
                    _ => Ok(taken),
                }
            }
            Decoder::Zstd(d, seen, done) => {
                *seen = true;
                let start = out.len();
                out.resize(start + PIECE, 0);
                let mut inb = InBuffer::around(input);
                let mut outb = OutBuffer::around(&mut out[start..]);
                let hint = d.run(&mut inb, &mut outb)?;
                let written = outb.pos();
                out.truncate(start + written);
                *done = hint == 0;
                Ok(inb.pos())
            }
        }
    }

    /// Writes the two bytes that chose between zlib and raw deflate.
    fn write_head(&mut self, head: &[u8]) -> io::Result<()> {
        match self {
            Decoder::Zlib(d) => d.write_all(head),
            Decoder::Raw(d) => d.write_all(head),
            _ => Ok(()),
        }
    }

    /// After the last input: appends the rest of the output to `out`, at
    /// most about [`PIECE`] bytes per call; returns true once everything
    /// is out. A body that ends in the middle of its coding is an error.
    pub fn finish_step(&mut self, out: &mut Vec<u8>) -> io::Result<bool> {
        match self {
            Decoder::Gzip(d) => flate_finish(d, out),
            Decoder::Zlib(d) => flate_finish(d, out),
            Decoder::Raw(d) => flate_finish(d, out),
            // One byte or none: nothing to decode (a lone byte is no stream).
            Decoder::Deflate(head) if head.is_empty() => Ok(true),
            Decoder::Deflate(_) => Err(ended_early("deflate")),
            Decoder::Brotli(_, true) => Ok(true),
            Decoder::Brotli(state, ended) => match brotli_step(state, &[], out).1 {
                BrotliResult::ResultSuccess => {
                    *ended = true;
                    Ok(true)
                }
                BrotliResult::NeedsMoreOutput => Ok(false),
                BrotliResult::NeedsMoreInput => Err(ended_early("brotli")),
                BrotliResult::ResultFailure => Err(corrupt("brotli")),
            },
            Decoder::Zstd(_, false, _) => Ok(true),
            Decoder::Zstd(d, true, done) => {
                let start = out.len();
                out.resize(start + PIECE, 0);
                let mut outb = OutBuffer::around(&mut out[start..]);
                let hint = d.run(&mut InBuffer::around(&[]), &mut outb)?;
                let (written, full) = (outb.pos(), outb.pos() == PIECE);
                out.truncate(start + written);
                *done |= hint == 0;
                if full {
                    return Ok(false);
                }
                if *done { Ok(true) } else { Err(ended_early("zstd")) }
            }
        }
    }
}

/// One `write` of a flate2 writer: it takes what fits its buffer; the flush
/// hands over what it decoded (bounded by its buffer and window).
fn flate_step<D: FlateInner>(d: &mut D, input: &[u8], out: &mut Vec<u8>, what: &str) -> io::Result<usize> {
    let n = d.write(input)?;
    d.flush()?;
    out.append(d.inner());
    if n == 0 {
        // Nothing taken, nothing given: input after the end of the stream.
        return Err(corrupt(&format!("{what} (data after its end)")));
    }
    Ok(n)
}

fn flate_finish<D: FlateInner>(d: &mut D, out: &mut Vec<u8>) -> io::Result<bool> {
    d.try_finish_now()?;
    out.append(d.inner());
    Ok(true)
}

/// What the three flate2 writers share.
pub trait FlateInner: Write {
    /// The decoded bytes handed over so far.
    fn inner(&mut self) -> &mut Vec<u8>;
    /// Ends the stream (an error when it is incomplete).
    fn try_finish_now(&mut self) -> io::Result<()>;
}

macro_rules! flate_inner {
    ($t:ty) => {
        impl FlateInner for $t {
            fn inner(&mut self) -> &mut Vec<u8> {
                self.get_mut()
            }
            fn try_finish_now(&mut self) -> io::Result<()> {
                self.try_finish()
            }
        }
    };
}
flate_inner!(GzDecoder<Vec<u8>>);
flate_inner!(ZlibDecoder<Vec<u8>>);
flate_inner!(DeflateDecoder<Vec<u8>>);

/// One call of the brotli decoder with a [`PIECE`]-sized output window.
fn brotli_step(state: &mut Brotli, input: &[u8], out: &mut Vec<u8>) -> (usize, BrotliResult) {
    let start = out.len();
    out.resize(start + PIECE, 0);
    let (mut avail_in, mut in_off) = (input.len(), 0);
    let (mut avail_out, mut out_off, mut total) = (PIECE, 0, 0);
    let result = BrotliDecompressStream(
        &mut avail_in,
        &mut in_off,
        input,
        &mut avail_out,
        &mut out_off,
        &mut out[start..],
        &mut total,
        state,
    );
    out.truncate(start + out_off);
    (in_off, result)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub(crate) fn compress(coding: Coding, data: &[u8]) -> Vec<u8> {
        use flate2::Compression;
        match coding {
            Coding::Identity => data.to_vec(),
            Coding::Gzip => {
                let mut e = flate2::write::GzEncoder::new(Vec::new(), Compression::default());
                e.write_all(data).unwrap();
                e.finish().unwrap()
            }
            Coding::Deflate => {
                let mut e = flate2::write::ZlibEncoder::new(Vec::new(), Compression::default());
                e.write_all(data).unwrap();
                e.finish().unwrap()
            }
            Coding::Brotli => {
                let mut out = Vec::new();
                let mut e = brotli::CompressorWriter::new(&mut out, 4096, 5, 22);
                e.write_all(data).unwrap();
                drop(e);
                out
            }
            Coding::Zstd => zstd::encode_all(data, 3).unwrap(),
        }
    }

    /// Decodes `wire` fed in `chunk`-byte slices; the largest output of
    /// one step too.
    fn decode(coding: Coding, wire: &[u8], chunk: usize) -> io::Result<(Vec<u8>, usize)> {
        let mut d = Decoder::new(coding)?.unwrap();
        let (mut out, mut most) = (Vec::new(), 0);
        for part in wire.chunks(chunk.max(1)) {
            let mut rest = part;
            while !rest.is_empty() {
                let before = out.len();
                let n = d.step(rest, &mut out)?;
                most = most.max(out.len() - before);
                rest = &rest[n..];
            }
        }
        loop {
            let before = out.len();
            let done = d.finish_step(&mut out)?;
            most = most.max(out.len() - before);
            if done {
                return Ok((out, most));
            }
        }
    }

    const CODINGS: [Coding; 4] = [Coding::Gzip, Coding::Deflate, Coding::Brotli, Coding::Zstd];

    #[test]
    fn every_coding_decodes_in_any_chunking_in_bounded_pieces() {
        let page: Vec<u8> = (0..300_000u32)
            .flat_map(|i| format!("{} ", i % 977).into_bytes())
            .collect();
        for coding in CODINGS {
            let wire = compress(coding, &page);
            for chunk in [1, 7, 1000, wire.len()] {
                let (got, most) = decode(coding, &wire, chunk).unwrap();
                assert!(got == page, "{coding:?} in {chunk}-byte chunks");
                assert!(most <= 3 * PIECE, "{coding:?}: a step gave {most} bytes");
            }
        }
    }

    #[test]
    fn a_bomb_comes_out_in_pieces_not_at_once() {
        let zeros = vec![0u8; 64 << 20];
        for coding in CODINGS {
            let wire = compress(coding, &zeros);
            let mut d = Decoder::new(coding).unwrap().unwrap();
            let mut out = Vec::new();
            let n = d.step(&wire, &mut out).unwrap();
            assert!(
                out.len() <= 3 * PIECE,
                "{coding:?}: {} bytes from one step",
                out.len()
            );
            assert!(n > 0 || !out.is_empty());
        }
    }

    #[test]
    fn raw_deflate_is_told_from_zlib() {
        let page = b"<p>write to mjd@plover.com</p>".repeat(100);
        let mut e = flate2::write::DeflateEncoder::new(Vec::new(), flate2::Compression::default());
        e.write_all(&page).unwrap();
        let raw = e.finish().unwrap();
        for chunk in [1, 2, 3, raw.len()] {
            assert_eq!(decode(Coding::Deflate, &raw, chunk).unwrap().0, page);
        }
    }

    #[test]
    fn truncated_and_corrupt_bodies_are_errors() {
        let page = b"<p>write to mjd@plover.com</p>".repeat(1000);
        for coding in CODINGS {
            let wire = compress(coding, &page);
            let cut = &wire[..wire.len() - 4];
            assert!(decode(coding, cut, 100).is_err(), "{coding:?} truncated");
            let mut junk = wire.clone();
            junk.extend_from_slice(b"junk after the end");
            assert!(
                decode(coding, &junk, 100).is_err(),
                "{coding:?} with trailing junk"
            );
        }
        assert!(decode(Coding::Gzip, b"not gzip at all", 5).is_err());
    }
}
