//! The Postfix SMTPD policy-delegation protocol: `name=value` lines ending
//! with an empty line; the answer is `action=…` and an empty line. At RCPT:
//! blocked client → REJECT; trap recipient → DISCARD (configurable) and the
//! client blocked; expired or forged → REJECT; every arrival for a munged
//! address is recorded for `trace`.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};

use super::socketmap::ProtocolError;
use super::{Action, Conn, Resolver};
use crate::check::{Status, is_role_account};
use crate::store::{Arrival, now_unix};

/// Decides one policy request.
pub fn decide(r: &Resolver, attrs: &HashMap<String, String>) -> String {
    let get = |k: &str| attrs.get(k).map(String::as_str).unwrap_or("");
    let s = r.settings();
    let rc = &s.config.resolver;
    let client: Option<IpAddr> = get("client_address").parse().ok();
    if let Some(ip) = client {
        if r.blocked(ip).is_some() {
            return format!("REJECT {}", rc.block_text);
        }
    }
    let recipient = get("recipient");
    if recipient.is_empty() {
        return "DUNNO".into();
    }
    let Some(j) = r.judge(recipient) else {
        return "DEFER_IF_PERMIT 4.3.0 addrmunge cannot read its state store; try again later".into();
    };
    let v = &j.verdict;
    // Record every authentic ID, and forged ones on protected base
    // addresses (a harvester guessing at the format is worth knowing about).
    if v.protected && v.status != Status::Bare {
        r.record(Arrival {
            time: now_unix(),
            client_ip: get("client_address").to_owned(),
            helo: get("helo_name").to_owned(),
            sender: get("sender").to_owned(),
            recipient: j.address.clone(),
            base: v.original.clone(),
            kind: v.kind.map(|k| k.to_string()),
            visitor: v.ip.clone(),
            day: v.date,
            status: v.status.to_string(),
        });
    }
    match r.recipient_action(&j) {
        Action::Trap => {
            // Mail for postmaster and abuse is never a reason to block.
            if !is_role_account(v.original.as_deref().unwrap_or(&j.address)) {
                if let Some(ip) = client {
                    if r.block(ip, &format!("mail to trap {}", j.address)) {
                        tracing::info!(client = %ip, recipient = %j.address, "blocked a client that mailed a trap");
                    }
                }
            }
            s.config.traps.action.policy_answer()
        }
        Action::Reject(text) => format!("REJECT {text}"),
        Action::Dunno | Action::NotOurs => "DUNNO".into(),
    }
}

/// Serves one policy connection (many requests).
pub async fn serve(
    conn: Box<dyn Conn>,
    r: &Resolver,
    state: &Arc<crate::conns::Conn>,
) -> Result<(), ProtocolError> {
    let (max, idle) = r.connection_limits();
    let mut conn = BufReader::new(conn);
    loop {
        // The whole request within the idle timeout, not each line: a
        // client trickling one line at a time cannot hold on forever.
        let attrs = match tokio::time::timeout(idle, read_request(&mut conn, max)).await {
            Err(_) => return Err(ProtocolError::Idle(idle)),
            Ok(r) => r?,
        };
        let Some(attrs) = attrs else {
            return Ok(());
        };
        let _busy = state.begin();
        let action = decide(r, &attrs);
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
