//! The Postfix socketmap protocol: netstring requests `NAME KEY`, netstring
//! replies `OK value`, `NOTFOUND `, `TEMP reason`, `PERM reason`, many per
//! persistent connection. Maps: `virtual`, `recipient`, `relay`, `client`,
//! Sendmail's `virtuser` and `addrmunge` ([`super::sendmail`]), and
//! `opensmtpd` ([`super::opensmtpd`]).
//! Framing only: the answers are [`super::decide`]'s.

use std::sync::Arc;

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};

use super::decide::{Map, Reply};
use super::{Conn, Resolver};

/// Why a connection was closed.
#[derive(Debug, thiserror::Error)]
pub enum ProtocolError {
    /// Not a netstring.
    #[error("malformed netstring: {0}")]
    Malformed(&'static str),
    /// Longer than `max_request`.
    #[error("request of {0} bytes is over the limit of {1}")]
    TooLong(usize, usize),
    /// The socket failed.
    #[error(transparent)]
    Io(#[from] std::io::Error),
}

/// Appends a reply as the socketmap protocol frames it: a netstring of
/// `OK value`, `NOTFOUND `, `TEMP reason` or `PERM reason`.
fn frame_reply(reply: &Reply, out: &mut Vec<u8>) {
    let (status, text): (&[u8], &str) = match reply {
        Reply::Ok(v) => (b"OK ", v),
        Reply::NotFound => (b"NOTFOUND ", ""),
        Reply::Temp(r) => (b"TEMP ", r),
        Reply::Perm(r) => (b"PERM ", r),
    };
    // The length's digits without the formatting machinery (`write!` was
    // a tenth of a lookup's instructions).
    out.extend_from_slice(itoa::Buffer::new().format(status.len() + text.len()).as_bytes());
    out.push(b':');
    out.extend_from_slice(status);
    out.extend_from_slice(text.as_bytes());
    out.push(b',');
}

/// The reply to one request's text, `NAME KEY`.
fn answer(r: &Resolver, request: &[u8]) -> Reply {
    let Some(space) = request.iter().position(|&b| b == b' ') else {
        return Reply::Perm("expected 'NAME KEY'".into());
    };
    let (name, key) = (&request[..space], &request[space + 1..]);
    let name = String::from_utf8_lossy(name);
    match name.as_ref() {
        // The key holds the sender and HELO too, which a client may send
        // with any bytes: the recipient still decides.
        super::sendmail::RCPT_MAP => super::sendmail::rcpt(r, &String::from_utf8_lossy(key)),
        super::opensmtpd::RCPT_MAP => super::opensmtpd::rcpt(r, &String::from_utf8_lossy(key)),
        name => match (Map::parse(name), std::str::from_utf8(key)) {
            (Some(map), Ok(key)) if !key.is_empty() => r.lookup(map, key),
            // The owner's addresses are ASCII: an empty key or one that is
            // not UTF-8 is none of them. PERM would make the MTA defer the
            // mail over and over instead of going on to its other maps.
            (Some(_), _) => Reply::NotFound,
            (None, _) => Reply::Perm(format!(
                "unknown map name '{name}'; use virtual, recipient, relay, client, virtuser, addrmunge or opensmtpd"
            )),
        },
    }
}

/// Serves one connection until the peer closes it or sends something that
/// is not a netstring (its deadlines are the caller's: the resolver's
/// `serve`). The request and reply buffers live as long as the connection:
/// a lookup allocates nothing for framing.
pub async fn serve(
    conn: Box<dyn Conn>,
    r: &Resolver,
    state: &Arc<crate::conns::Conn>,
) -> Result<(), ProtocolError> {
    let max = r.max_request();
    let mut conn = BufReader::new(conn);
    let (mut req, mut out) = (Vec::new(), Vec::new());
    loop {
        if !read_request(&mut conn, max, &mut req).await? {
            return Ok(());
        }
        // Busy from a whole request to its answer: between requests the
        // connection is idle, and the first to go at max_connections.
        let _busy = state.begin();
        out.clear();
        frame_reply(&answer(r, &req), &mut out);
        conn.get_mut().write_all(&out).await?;
    }
}

/// Reads one netstring of at most `max` bytes into `req` (replacing what
/// it held); false on a clean end of stream between requests. The length
/// is read from what is buffered, not byte by byte through the reader.
pub async fn read_request<R: tokio::io::AsyncBufRead + Unpin>(
    r: &mut R,
    max: usize,
    req: &mut Vec<u8>,
) -> Result<bool, ProtocolError> {
    let Some(len) = read_length(r, max).await? else {
        return Ok(false);
    };
    req.clear();
    req.resize(len + 1, 0);
    r.read_exact(req).await.map_err(|e| match e.kind() {
        std::io::ErrorKind::UnexpectedEof => ProtocolError::Malformed(ENDED),
        _ => e.into(),
    })?;
    if req.pop() != Some(b',') {
        return Err(ProtocolError::Malformed("missing ',' after the data"));
    }
    Ok(true)
}

const ENDED: &str = "the connection ended inside a request";

/// Reads a netstring's `LENGTH:`; `None` on a clean end of stream before it.
async fn read_length<R: tokio::io::AsyncBufRead + Unpin>(
    r: &mut R,
    max: usize,
) -> Result<Option<usize>, ProtocolError> {
    let (mut len, mut digits) = (0usize, 0);
    loop {
        let buf = r.fill_buf().await?;
        if buf.is_empty() {
            return match digits {
                0 => Ok(None),
                _ => Err(ProtocolError::Malformed(ENDED)),
            };
        }
        let mut used = 0;
        for &b in buf {
            used += 1;
            match b {
                b'0'..=b'9' => {
                    digits += 1;
                    len = len.saturating_mul(10).saturating_add(usize::from(b - b'0'));
                    if len > max {
                        return Err(ProtocolError::TooLong(len, max));
                    }
                }
                b':' if digits > 0 => {
                    r.consume(used);
                    return Ok(Some(len));
                }
                _ => return Err(ProtocolError::Malformed("expected a length and ':'")),
            }
        }
        r.consume(used);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::pin::Pin;
    use std::task::{Context, Poll};
    use tokio::io::ReadBuf;

    /// Hands out its bytes at most `step` at a time, as a socket may.
    struct Trickle {
        data: Vec<u8>,
        at: usize,
        step: usize,
    }

    impl tokio::io::AsyncRead for Trickle {
        fn poll_read(
            mut self: Pin<&mut Self>,
            _: &mut Context<'_>,
            buf: &mut ReadBuf<'_>,
        ) -> Poll<std::io::Result<()>> {
            let n = self.step.min(buf.remaining()).min(self.data.len() - self.at);
            buf.put_slice(&self.data[self.at..self.at + n]);
            self.at += n;
            Poll::Ready(Ok(()))
        }
    }

    fn netstring(s: &[u8]) -> Vec<u8> {
        let mut v = format!("{}:", s.len()).into_bytes();
        v.extend_from_slice(s);
        v.push(b',');
        v
    }

    /// Every request read back from `wire`, and how reading ended.
    fn read_all(wire: Vec<u8>, step: usize, buffer: usize, max: usize) -> (Vec<Vec<u8>>, Result<(), String>) {
        let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
        rt.block_on(async {
            let mut r = BufReader::with_capacity(
                buffer,
                Trickle {
                    data: wire,
                    at: 0,
                    step,
                },
            );
            let (mut got, mut req) = (Vec::new(), Vec::new());
            loop {
                match read_request(&mut r, max, &mut req).await {
                    Ok(true) => got.push(req.clone()),
                    Ok(false) => return (got, Ok(())),
                    Err(e) => return (got, Err(e.to_string())),
                }
            }
        })
    }

    proptest! {
        /// However the bytes arrive and whatever the buffer's size, each
        /// request comes back whole, and a clean end is not an error.
        #[test]
        fn requests_read_back_however_they_arrive(
            reqs in prop::collection::vec(prop::collection::vec(any::<u8>(), 0..40), 1..6),
            step in 1usize..50,
            buffer in 1usize..64,
        ) {
            let wire: Vec<u8> = reqs.iter().flat_map(|r| netstring(r)).collect();
            let (got, end) = read_all(wire, step, buffer, 100);
            prop_assert_eq!(got, reqs);
            prop_assert_eq!(end, Ok(()));
        }
    }

    #[test]
    fn bad_framing_is_refused_after_the_good_requests() {
        let ok = netstring(b"virtual a@b");
        for (bad, why) in [
            (&b"x:"[..], "expected a length"),
            (b":abc,", "expected a length"),
            (b"12a:", "expected a length"),
            (b"3:abcX", "missing ','"),
            (b"101:", "over the limit of 100"),
            (b"99999999999999999999999:", "over the limit"),
            (b"10:virtual", "ended inside a request"),
            (b"12", "ended inside a request"),
        ] {
            for step in [1, 3, 100] {
                let wire = [ok.clone(), bad.to_vec()].concat();
                let (got, end) = read_all(wire, step, 8, 100);
                assert_eq!(got, vec![b"virtual a@b".to_vec()], "{bad:?}");
                let e = end.expect_err("refused");
                assert!(e.contains(why), "{bad:?}: {e}");
            }
        }
    }

    #[test]
    fn replies_are_framed_as_netstrings() {
        let framed = |r: Reply| {
            let mut out = b"left over".to_vec();
            out.clear();
            frame_reply(&r, &mut out);
            String::from_utf8(out).unwrap()
        };
        assert_eq!(
            framed(Reply::Ok("mjd@plover.com".into())),
            "17:OK mjd@plover.com,"
        );
        assert_eq!(framed(Reply::NotFound), "9:NOTFOUND ,");
        assert_eq!(framed(Reply::Temp("store".into())), "10:TEMP store,");
        assert_eq!(framed(Reply::Perm("bad ünïcode".into())), "18:PERM bad ünïcode,");
    }
}
