//! The PROXY protocol (HAProxy's, v1 text and v2 binary) on the proxy's
//! listeners: a load balancer in front that speaks TCP, not HTTP, says who
//! the visitor is in a header before the request. Believed only from a peer
//! in `trusted_proxies` (the caller checks), read with `ppp`, and consumed
//! exactly: the bytes after it are the visitor's HTTP request.

use std::net::SocketAddr;
use std::time::Duration;

use ppp::{HeaderResult, PartialResult};
use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;

/// The longest header accepted. v1 is at most 107 bytes; v2 may carry
/// TLVs (which are not needed here) but never this many.
const MAX_HEADER: usize = 4096;

/// Why a connection was closed before its request.
#[derive(Debug, thiserror::Error)]
pub enum HeaderError {
    /// The header did not arrive in time.
    #[error("no PROXY protocol header within {0:?}")]
    Timeout(Duration),
    /// Something else came first.
    #[error("the connection does not start with a PROXY protocol header")]
    Malformed,
    /// More than `MAX_HEADER` bytes and still not a whole header.
    #[error("PROXY protocol header longer than {MAX_HEADER} bytes")]
    TooLong,
    /// The socket failed or closed.
    #[error(transparent)]
    Io(#[from] std::io::Error),
}

/// Reads the header off `stream`, leaving the request behind it unread.
/// The visitor's address, or `None` when the balancer speaks for itself
/// (v2 `LOCAL`, v1 `UNKNOWN`: health checks), so the peer stands.
pub async fn read_header(
    stream: &mut TcpStream,
    timeout: Duration,
) -> Result<Option<SocketAddr>, HeaderError> {
    tokio::time::timeout(timeout, read(stream))
        .await
        .map_err(|_| HeaderError::Timeout(timeout))?
}

/// What the first bytes of a connection say.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Parsed {
    /// Not a whole header yet.
    Incomplete,
    /// Not a PROXY protocol header.
    Malformed,
    /// A header of `len` bytes naming the visitor (`None`: the balancer
    /// speaks for itself).
    Header {
        /// Its length in bytes.
        len: usize,
        /// The visitor it names.
        visitor: Option<SocketAddr>,
    },
}

/// Parses the start of a connection (pure, for the reader and the fuzzer).
pub fn parse(buf: &[u8]) -> Parsed {
    let parsed = HeaderResult::parse(buf);
    if parsed.is_incomplete() {
        return Parsed::Incomplete;
    }
    let (len, visitor) = match parsed {
        HeaderResult::V1(Ok(h)) => {
            use ppp::v1::Addresses;
            let visitor = match h.addresses {
                Addresses::Tcp4(a) => Some(SocketAddr::new(a.source_address.into(), a.source_port)),
                Addresses::Tcp6(a) => Some(SocketAddr::new(a.source_address.into(), a.source_port)),
                Addresses::Unknown => None,
            };
            // A v1 header is one line ending at the first CRLF (at most 107
            // bytes); ppp can take an UNKNOWN line further, into the request.
            let len = h.header.len();
            let first_crlf = buf.windows(2).position(|w| w == b"\r\n").map(|i| i + 2);
            if first_crlf != Some(len) {
                return Parsed::Malformed;
            }
            (len, visitor)
        }
        HeaderResult::V2(Ok(h)) => {
            use ppp::v2::{Addresses, Command};
            let visitor = match (h.command, &h.addresses) {
                (Command::Proxy, Addresses::IPv4(a)) => {
                    Some(SocketAddr::new(a.source_address.into(), a.source_port))
                }
                (Command::Proxy, Addresses::IPv6(a)) => {
                    Some(SocketAddr::new(a.source_address.into(), a.source_port))
                }
                _ => None,
            };
            (h.len(), visitor)
        }
        _ => return Parsed::Malformed,
    };
    // ppp reports what the header says its length is; never more than
    // what was read.
    if len == 0 || len > buf.len() {
        return Parsed::Malformed;
    }
    Parsed::Header { len, visitor }
}

async fn read(stream: &mut TcpStream) -> Result<Option<SocketAddr>, HeaderError> {
    let mut buf = vec![0u8; MAX_HEADER];
    let mut seen = 0;
    loop {
        // Peek, so that nothing past the header is taken from the request.
        let n = stream.peek(&mut buf).await?;
        if n == 0 {
            return Err(std::io::Error::from(std::io::ErrorKind::UnexpectedEof).into());
        }
        match parse(&buf[..n]) {
            Parsed::Incomplete if n == MAX_HEADER => return Err(HeaderError::TooLong),
            Parsed::Incomplete => {
                if n == seen {
                    // Peek returns at once while unread bytes wait: do not spin.
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
                seen = n;
            }
            Parsed::Malformed => return Err(HeaderError::Malformed),
            Parsed::Header { len, visitor } => {
                let mut header = vec![0u8; len];
                stream.read_exact(&mut header).await?;
                return Ok(visitor);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_v1_header_is_exactly_its_first_line() {
        let good = b"PROXY TCP4 192.0.2.1 198.51.100.1 56324 443\r\nGET / HTTP/1.1\r\n\r\n";
        let Parsed::Header { len, visitor } = parse(good) else {
            panic!("{:?}", parse(good));
        };
        assert_eq!(&good[len..], b"GET / HTTP/1.1\r\n\r\n");
        assert_eq!(visitor, Some("192.0.2.1:56324".parse().unwrap()));
        assert_eq!(
            parse(b"PROXY UNKNOWN\r\n"),
            Parsed::Header {
                len: 15,
                visitor: None
            }
        );
        // Found by the fuzzer: an UNKNOWN line ending in a bare LF, which ppp
        // took as far as the next CRLF, into the request behind it.
        let mut bad = b"PROXY UNKNOWN T\x06\0\0\0\0\0\0\0(.].1 19-1 .A 5.1.1\x1e-1n \n".to_vec();
        assert_eq!(parse(&bad), Parsed::Malformed);
        bad.extend_from_slice(b"GET / HTTP/1.1\r\n\r\n");
        assert!(!matches!(parse(&bad), Parsed::Header { .. }), "{:?}", parse(&bad));
        assert_eq!(parse(b"PROXY TCP4 192.0.2.1"), Parsed::Incomplete);
        assert_eq!(parse(b"GET / HTTP/1.1\r\n\r\n"), Parsed::Malformed);
    }
}
