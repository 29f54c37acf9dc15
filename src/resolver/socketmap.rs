//! The Postfix socketmap protocol: netstring requests `NAME KEY`, netstring
//! replies `OK value`, `NOTFOUND `, `TEMP reason`, `PERM reason`, many per
//! persistent connection. Maps: `virtual`, `recipient`, `relay`, `client`,
//! Sendmail's `virtuser` and `addrmunge` ([`super::sendmail`]), and
//! `opensmtpd` ([`super::opensmtpd`]).
//! Framing only: the answers are [`super::decide`]'s.

use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt, BufReader};

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
    /// Nothing arrived for too long.
    #[error("idle for {0:?}")]
    Idle(Duration),
    /// The socket failed.
    #[error(transparent)]
    Io(#[from] std::io::Error),
}

/// A reply as the socketmap protocol spells it.
fn reply_text(reply: &Reply) -> String {
    match reply {
        Reply::Ok(v) => format!("OK {v}"),
        Reply::NotFound => "NOTFOUND ".into(),
        Reply::Temp(r) => format!("TEMP {r}"),
        Reply::Perm(r) => format!("PERM {r}"),
    }
}

/// The reply to one request's text, `NAME KEY`.
fn answer(r: &Resolver, request: &[u8]) -> Reply {
    let Ok(text) = std::str::from_utf8(request) else {
        return Reply::Perm("request is not UTF-8".into());
    };
    match text.split_once(' ') {
        Some((super::sendmail::RCPT_MAP, key)) if !key.is_empty() => super::sendmail::rcpt(r, key),
        Some((super::opensmtpd::RCPT_MAP, key)) if !key.is_empty() => super::opensmtpd::rcpt(r, key),
        Some((name, key)) if !key.is_empty() => match Map::parse(name) {
            Some(map) => r.lookup(map, key),
            None => Reply::Perm(format!(
                "unknown map name '{name}'; use virtual, recipient, relay, client, virtuser, addrmunge or opensmtpd"
            )),
        },
        _ => Reply::Perm("expected 'NAME KEY'".into()),
    }
}

/// Serves one connection until the peer closes it, it idles out, or it
/// sends something that is not a netstring.
pub async fn serve(
    conn: Box<dyn Conn>,
    r: &Resolver,
    state: &Arc<crate::conns::Conn>,
) -> Result<(), ProtocolError> {
    let (max, idle) = r.connection_limits();
    let mut conn = BufReader::new(conn);
    loop {
        let Some(req) = read_timed(&mut conn, max, idle).await? else {
            return Ok(());
        };
        // Busy from a whole request to its answer: between requests the
        // connection is idle, and the first to go at max_connections.
        let _busy = state.begin();
        let reply = answer(r, &req);
        let text = reply_text(&reply);
        let framed = format!("{}:{},", text.len(), text);
        conn.get_mut().write_all(framed.as_bytes()).await?;
    }
}

/// Reads one netstring; `None` on a clean end of stream between requests.
/// One timer per request, not per byte: timers are the costly part of a
/// lookup otherwise.
async fn read_timed<R: tokio::io::AsyncRead + Unpin>(
    r: &mut BufReader<R>,
    max: usize,
    idle: Duration,
) -> Result<Option<Vec<u8>>, ProtocolError> {
    match tokio::time::timeout(idle, read_request(r, max)).await {
        Err(_) => Err(ProtocolError::Idle(idle)),
        Ok(r) => r,
    }
}

/// Reads one netstring of at most `max` bytes; `None` on a clean end of
/// stream between requests.
pub async fn read_request<R: tokio::io::AsyncRead + Unpin>(
    r: &mut BufReader<R>,
    max: usize,
) -> Result<Option<Vec<u8>>, ProtocolError> {
    let mut len: usize = 0;
    let mut digits = 0;
    loop {
        let b = match r.read_u8().await {
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof && digits == 0 => return Ok(None),
            Err(e) => return Err(e.into()),
            Ok(b) => b,
        };
        match b {
            b'0'..=b'9' => {
                digits += 1;
                len = len.saturating_mul(10).saturating_add(usize::from(b - b'0'));
                if len > max {
                    return Err(ProtocolError::TooLong(len, max));
                }
            }
            b':' if digits > 0 => break,
            _ => return Err(ProtocolError::Malformed("expected a length and ':'")),
        }
    }
    let mut buf = vec![0; len + 1];
    r.read_exact(&mut buf).await?;
    if buf.pop() != Some(b',') {
        return Err(ProtocolError::Malformed("missing ',' after the data"));
    }
    Ok(Some(buf))
}
