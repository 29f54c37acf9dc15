//! A line protocol for Exim, which has no socketmap lookup: its
//! `${readsocket{...}}` expansion sends one line, shuts its side down and
//! reads the answer until the server closes. Two requests:
//!
//! * `route ADDRESS` (a `redirect` router's `data`): the base address a
//!   valid munged ID delivers to, an empty line when the address is none
//!   of ours or not valid (the router declines), or `:defer: reason` when
//!   the store cannot be read (Exim defers; it never bounces for that).
//! * `rcpt CLIENT_IP RECIPIENT SENDER HELO` (the RCPT ACL): an ACL verb
//!   and its message: `accept`, `reject TEXT`, `discard …`, `freeze …`
//!   or `defer TEXT`. The same decision as Postfix's policy service
//!   ([`super::decide::policy`]): blocked clients refused, a trap's client
//!   blocked, arrivals recorded. Fields are separated by single spaces and
//!   may be empty (a bounce's empty sender); HELO is the rest of the line.
//!
//! Framing only: the decisions are [`super::decide`]'s.

use std::sync::Arc;

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};

use super::decide::{Answer, Map, PolicyRequest, Reply};
use super::socketmap::ProtocolError;
use super::{Conn, Resolver};

/// The answer to one request line (without its newline).
fn answer(r: &Resolver, line: &str) -> String {
    let (verb, rest) = line.split_once(' ').unwrap_or((line, ""));
    match verb {
        "route" if !rest.is_empty() => match r.lookup(Map::Virtual, rest) {
            Reply::Ok(base) => base,
            Reply::NotFound => String::new(),
            Reply::Temp(why) | Reply::Perm(why) => format!(":defer: {why}"),
        },
        "rcpt" => {
            let mut f = rest.splitn(4, ' ');
            let mut next = || f.next().unwrap_or("");
            let (client_address, recipient, sender, helo) = (next(), next(), next(), next());
            if recipient.is_empty() {
                return "defer 4.5.4 addrmunge: expected 'rcpt CLIENT_IP RECIPIENT SENDER HELO'".into();
            }
            let req = PolicyRequest {
                client_address,
                helo,
                sender,
                recipient,
            };
            r.policy(&req, Answer::exim)
        }
        _ => {
            "defer 4.5.4 addrmunge: expected 'route ADDRESS' or 'rcpt CLIENT_IP RECIPIENT SENDER HELO'".into()
        }
    }
}

/// Serves one connection: a request line per answer line, until the peer
/// closes its side (Exim sends one and shuts down) or a line is over
/// `max_request` (its deadlines are the caller's: the resolver's `serve`).
pub async fn serve(
    conn: Box<dyn Conn>,
    r: &Resolver,
    state: &Arc<crate::conns::Conn>,
) -> Result<(), ProtocolError> {
    let max = r.max_request();
    let mut conn = BufReader::new(conn);
    let mut line = Vec::new();
    loop {
        line.clear();
        let mut limited = (&mut conn).take((max + 1) as u64);
        let n = limited.read_until(b'\n', &mut line).await?;
        if n == 0 {
            return Ok(());
        }
        if n > max {
            return Err(ProtocolError::TooLong(n, max));
        }
        let _busy = state.begin();
        // A last line without its newline still counts: Exim's request
        // string is whatever the config wrote, and the shutdown ends it.
        let text = String::from_utf8_lossy(&line);
        let reply = answer(r, text.trim_end_matches(['\n', '\r']));
        conn.get_mut().write_all(format!("{reply}\n").as_bytes()).await?;
    }
}
