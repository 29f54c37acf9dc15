//! The Postfix socketmap protocol: netstring requests `NAME KEY`, netstring
//! replies `OK value`, `NOTFOUND `, `TEMP reason`, `PERM reason`, many per
//! persistent connection. Maps: `virtual`, `recipient`, `relay`, `client`.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt, BufReader};

use super::{Action, Conn, Resolver};
use crate::check::Status;
use crate::token::Kind;

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

/// A socketmap reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply {
    /// `OK value` (never empty).
    Ok(String),
    /// `NOTFOUND `.
    NotFound,
    /// `TEMP reason`.
    Temp(String),
    /// `PERM reason`.
    Perm(String),
}

impl Reply {
    fn text(&self) -> String {
        match self {
            Reply::Ok(v) => format!("OK {v}"),
            Reply::NotFound => "NOTFOUND ".into(),
            Reply::Temp(r) => format!("TEMP {r}"),
            Reply::Perm(r) => format!("PERM {r}"),
        }
    }
}

/// Answers one lookup.
pub fn lookup(r: &Resolver, map: &str, key: &str) -> Reply {
    let temp = || Reply::Temp("addrmunge cannot read its state store".into());
    match map {
        "virtual" | "relay" => {
            let key = key.trim().to_ascii_lowercase();
            if !key.contains('@') {
                // Postfix asks for the bare domain when virtual_alias_domains
                // defaults to $virtual_alias_maps.
                let s = r.settings();
                let d = key.trim_end_matches('.');
                return if s.config.protection.has_domain(d) {
                    Reply::Ok(d.to_owned())
                } else {
                    Reply::NotFound
                };
            }
            let Some(j) = r.judge(&key) else { return temp() };
            let v = &j.verdict;
            let s = r.settings();
            let entry = v.entry.map(|e| &s.config.protection.entries()[e]);
            match (map, v.status) {
                ("virtual", Status::Valid) => {
                    // Never answer with something that looks munged: the
                    // base address (or deliver_to) is looked up again and
                    // must come back NOTFOUND.
                    let target = entry
                        .and_then(|e| e.deliver_to.clone())
                        .or_else(|| v.original.clone());
                    target.map(Reply::Ok).unwrap_or(Reply::NotFound)
                }
                ("relay", Status::Valid) => Reply::Ok(v.original.clone().unwrap_or(key)),
                ("relay", Status::Expired) if v.kind == Some(Kind::Trap) => Reply::Ok(key),
                ("relay", Status::Bare) if v.exempt || r.recipient_action(&j) == Action::Dunno => {
                    Reply::Ok(key)
                }
                _ => Reply::NotFound,
            }
        }
        "recipient" => {
            let Some(j) = r.judge(key) else { return temp() };
            match r.recipient_action(&j) {
                Action::Dunno => Reply::Ok("DUNNO".into()),
                Action::Reject(text) => Reply::Ok(format!("REJECT {text}")),
                Action::Trap => Reply::Ok(r.settings().config.traps.action.to_string()),
                Action::NotOurs => Reply::NotFound,
            }
        }
        "client" => match key.trim().parse::<IpAddr>() {
            Ok(ip) => match r.blocked(ip) {
                Some(_) => Reply::Ok(format!("REJECT {}", r.settings().config.resolver.block_text)),
                None => Reply::NotFound,
            },
            // Postfix asks for the client's hostname too; blocks are by IP.
            Err(_) => Reply::NotFound,
        },
        other => Reply::Perm(format!(
            "unknown map name '{other}'; use virtual, recipient, relay or client"
        )),
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
        let reply = match std::str::from_utf8(&req) {
            Err(_) => Reply::Perm("request is not UTF-8".into()),
            Ok(text) => match text.split_once(' ') {
                Some((map, key)) if !key.is_empty() => lookup(r, map, key),
                _ => Reply::Perm("expected 'NAME KEY'".into()),
            },
        };
        let text = reply.text();
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
