//! The Postfix SMTPD policy-delegation protocol: `name=value` lines ending
//! with an empty line; the answer is `action=…` and an empty line. At RCPT:
//! blocked client → REJECT; trap recipient → DISCARD (configurable) and the
//! client blocked; expired or forged → REJECT; every arrival for a munged
//! address is recorded for `trace`. Framing only: the decisions are
//! [`super::decide`]'s.

use std::collections::HashMap;
use std::sync::Arc;

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};

use super::decide::{Answer, PolicyRequest};
use super::socketmap::ProtocolError;
use super::{Conn, Resolver};

/// The attributes decisions read, from a request's `name=value` pairs.
pub fn request(attrs: &HashMap<String, String>) -> PolicyRequest<'_> {
    let get = |k: &str| attrs.get(k).map(String::as_str).unwrap_or("");
    PolicyRequest {
        client_address: get("client_address"),
        helo: get("helo_name"),
        sender: get("sender"),
        recipient: get("recipient"),
    }
}

/// Serves one policy connection (many requests).
pub async fn serve(
    conn: Box<dyn Conn>,
    r: &Resolver,
    state: &Arc<crate::conns::Conn>,
) -> Result<(), ProtocolError> {
    let max = r.max_request();
    let mut conn = BufReader::new(conn);
    loop {
        let Some(attrs) = read_request(&mut conn, max).await? else {
            return Ok(());
        };
        let _busy = state.begin();
        let action = r.policy(&request(&attrs), Answer::postfix);
        conn.get_mut()
            .write_all(format!("action={action}\n\n").as_bytes())
            .await?;
    }
}

/// Reads one request: `name=value` lines up to an empty line, at most
/// `max` bytes. `None` on a clean end of stream between requests.
pub async fn read_request<R: tokio::io::AsyncBufRead + Unpin>(
    conn: &mut R,
    max: usize,
) -> Result<Option<HashMap<String, String>>, ProtocolError> {
    let mut attrs = HashMap::new();
    let mut size = 0;
    let mut line = Vec::new();
    loop {
        line.clear();
        let n = (&mut *conn)
            .take((max + 1) as u64)
            .read_until(b'\n', &mut line)
            .await?;
        if n == 0 {
            return if attrs.is_empty() && size == 0 {
                Ok(None)
            } else {
                Err(ProtocolError::Malformed("request cut off"))
            };
        }
        size += n;
        if size > max {
            return Err(ProtocolError::TooLong(size, max));
        }
        if line.last() != Some(&b'\n') {
            return Err(ProtocolError::Malformed("request cut off"));
        }
        let text = String::from_utf8_lossy(&line);
        let text = text.trim_end_matches(['\n', '\r']);
        if text.is_empty() {
            return Ok(Some(attrs));
        }
        let Some((k, v)) = text.split_once('=') else {
            return Err(ProtocolError::Malformed("expected name=value"));
        };
        attrs.insert(k.to_owned(), v.to_owned());
    }
}
