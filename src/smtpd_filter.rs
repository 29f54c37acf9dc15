//! `addrmunge opensmtpd-filter`: the process OpenSMTPD starts for
//! `filter "addrmunge" proc-exec "…"`, speaking its filter protocol
//! (`|`-separated lines on standard input and output) and asking the
//! resolver's socketmap listener (the `opensmtpd` map,
//! [`crate::resolver::opensmtpd`]) at each RCPT.
//!
//! It remembers each session's client address (the `link-connect`
//! report), HELO name (`link-identify`) and sender (the `mail-from`
//! phase), and answers `rcpt-to` with `proceed`, `rewrite|<base>` for a
//! valid munged address, `rewrite|<trap sink>` for a trap, or `reject|…`.
//! OpenSMTPD exits when a filter does, so nothing here ends the process
//! but the end of its input: an unreachable resolver is a 451.

use std::collections::HashMap;
use std::io::{self, BufRead, Read, Write};
use std::net::TcpStream;
use std::os::unix::net::UnixStream;
use std::time::Duration;

use crate::listen::Listen;

/// Sessions remembered at most; OpenSMTPD's own limits keep far fewer open.
const SESSIONS: usize = 65_536;
/// The longest input line kept; OpenSMTPD's lines are far shorter.
const LINE: usize = 64 * 1024;
/// The longest resolver answer read.
const ANSWER: usize = 64 * 1024;
/// What a visitor's mail gets when the resolver cannot answer.
const UNAVAILABLE: &str = "451 4.3.0 addrmunge is not answering; try again later";

/// Where the resolver listens and where trap mail goes.
#[derive(Debug, Clone)]
pub struct Options {
    /// The resolver's socketmap listener.
    pub resolver: Listen,
    /// The address trap mail is rewritten to (alias it to /dev/null).
    pub trap_to: String,
    /// How long one answer may take.
    pub timeout: Duration,
}

#[derive(Debug, Default)]
struct Session {
    client: String,
    helo: String,
    sender: String,
}

trait Stream: Read + Write {}
impl<T: Read + Write> Stream for T {}

/// The filter's state between lines.
pub struct Filter {
    opts: Options,
    sessions: HashMap<String, Session>,
    conn: Option<Box<dyn Stream>>,
}

impl Filter {
    /// A filter that has seen nothing yet.
    pub fn new(opts: Options) -> Filter {
        Filter {
            opts,
            sessions: HashMap::new(),
            conn: None,
        }
    }

    /// Reads `input` to its end, writing registrations and answers to `output`.
    pub fn run(&mut self, mut input: impl BufRead, mut output: impl Write) -> io::Result<()> {
        let mut line = Vec::new();
        loop {
            line.clear();
            if (&mut input).take(LINE as u64).read_until(b'\n', &mut line)? == 0 {
                return Ok(());
            }
            if line.last() != Some(&b'\n') && line.len() == LINE {
                // Over the limit: skip the rest of it.
                input.read_until(b'\n', &mut Vec::new())?;
                continue;
            }
            let text = String::from_utf8_lossy(&line);
            for out in self.line(text.trim_end_matches(['\n', '\r'])) {
                writeln!(output, "{out}")?;
            }
            output.flush()?;
        }
    }

    /// The lines to write for one line read.
    pub fn line(&mut self, line: &str) -> Vec<String> {
        let f: Vec<&str> = line.split('|').collect();
        match f.as_slice() {
            ["config", "ready"] => registrations(),
            ["report", _, _, "smtp-in", event, session, rest @ ..] => {
                self.report(event, session, rest);
                Vec::new()
            }
            ["filter", version, _, "smtp-in", phase, session, token, rest @ ..] => {
                let param = rest.join("|");
                let decision = self.filter(phase, session, &param);
                vec![result(version, session, token, &decision)]
            }
            _ => Vec::new(),
        }
    }

    fn report(&mut self, event: &str, session: &str, rest: &[&str]) {
        match (event, rest) {
            ("link-connect", [_rdns, _fcrdns, src, ..]) => {
                if self.sessions.len() >= SESSIONS {
                    self.sessions.clear();
                }
                let client = client_ip(src).to_owned();
                self.sessions.insert(
                    session.to_owned(),
                    Session {
                        client,
                        ..Session::default()
                    },
                );
            }
            // 0.6 and later name the verb first (`EHLO|name`); the name is last.
            ("link-identify", [.., helo]) => self.session(session).helo = (*helo).to_owned(),
            ("link-disconnect", _) => {
                self.sessions.remove(session);
            }
            _ => {}
        }
    }

    fn session(&mut self, id: &str) -> &mut Session {
        if !self.sessions.contains_key(id) && self.sessions.len() >= SESSIONS {
            self.sessions.clear();
        }
        self.sessions.entry(id.to_owned()).or_default()
    }

    /// `proceed`, `rewrite|…` or `reject|…`.
    fn filter(&mut self, phase: &str, session: &str, param: &str) -> String {
        match phase {
            "mail-from" => {
                self.session(session).sender = param.to_owned();
                "proceed".into()
            }
            "rcpt-to" => {
                let s = self.session(session);
                let key = format!(
                    "{} {}|{}|{}|{}",
                    crate::resolver::opensmtpd::RCPT_MAP,
                    s.client,
                    param,
                    s.sender,
                    s.helo
                );
                let answer = self.ask(&key);
                self.decision(answer.as_deref())
            }
            _ => "proceed".into(),
        }
    }

    /// The resolver's answer in the filter's words.
    fn decision(&self, answer: Option<&str>) -> String {
        match answer.and_then(|a| a.strip_prefix("OK ")) {
            Some("proceed") => "proceed".into(),
            Some("trap") => format!("rewrite|<{}>", self.opts.trap_to),
            Some(a) => match a.split_once(' ') {
                Some(("rewrite", base)) => format!("rewrite|<{base}>"),
                Some(("reject", text)) => format!("reject|{text}"),
                _ => format!("reject|{UNAVAILABLE}"),
            },
            None => format!("reject|{UNAVAILABLE}"),
        }
    }

    /// One socketmap question; a dropped connection is made again once.
    fn ask(&mut self, query: &str) -> Option<String> {
        for _ in 0..2 {
            if self.conn.is_none() {
                self.conn = connect(&self.opts).ok();
            }
            let conn = self.conn.as_mut()?;
            match exchange(conn, query) {
                Ok(a) => return Some(a),
                Err(e) => {
                    tracing::warn!(error = %e, "the resolver did not answer");
                    self.conn = None;
                }
            }
        }
        None
    }
}

/// What the filter asks OpenSMTPD for, after `config|ready`.
fn registrations() -> Vec<String> {
    let mut out: Vec<String> = ["link-connect", "link-identify", "link-disconnect"]
        .iter()
        .map(|e| format!("register|report|smtp-in|{e}"))
        .collect();
    out.extend(
        ["mail-from", "rcpt-to"]
            .iter()
            .map(|p| format!("register|filter|smtp-in|{p}")),
    );
    out.push("register|ready".into());
    out
}

/// `filter-result|SESSION|TOKEN|DECISION`; protocol versions before 0.5
/// put the token first.
fn result(version: &str, session: &str, token: &str, decision: &str) -> String {
    let (major, minor) = version.split_once('.').unwrap_or((version, "0"));
    let old = major.parse::<u32>().unwrap_or(0) == 0 && minor.parse::<u32>().unwrap_or(0) < 5;
    if old {
        format!("filter-result|{token}|{session}|{decision}")
    } else {
        format!("filter-result|{session}|{token}|{decision}")
    }
}

/// The IP address in a `link-connect` source: `192.0.2.1:25`,
/// `[2001:db8::1]:25` or `2001:db8::1:25`; empty for a local socket.
fn client_ip(src: &str) -> &str {
    if src.starts_with("unix:") || src == "local" {
        return "";
    }
    if let Some(rest) = src.strip_prefix('[') {
        return rest.split(']').next().unwrap_or("");
    }
    src.rsplit_once(':').map_or(src, |(ip, _)| ip)
}

fn connect(opts: &Options) -> io::Result<Box<dyn Stream>> {
    let t = Some(opts.timeout);
    Ok(match &opts.resolver {
        Listen::Inet(a) => {
            let s = TcpStream::connect_timeout(a, opts.timeout)?;
            s.set_read_timeout(t)?;
            s.set_write_timeout(t)?;
            s.set_nodelay(true)?;
            Box::new(s)
        }
        Listen::Unix(p) => {
            let s = UnixStream::connect(p)?;
            s.set_read_timeout(t)?;
            s.set_write_timeout(t)?;
            Box::new(s)
        }
    })
}

/// Writes one netstring and reads one back.
fn exchange(conn: &mut Box<dyn Stream>, query: &str) -> io::Result<String> {
    conn.write_all(format!("{}:{query},", query.len()).as_bytes())?;
    let mut len = 0usize;
    loop {
        let mut b = [0u8];
        conn.read_exact(&mut b)?;
        match b[0] {
            b'0'..=b'9' if len <= ANSWER => len = len * 10 + usize::from(b[0] - b'0'),
            b':' if len <= ANSWER => break,
            _ => {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    "not a netstring answer",
                ));
            }
        }
    }
    let mut buf = vec![0; len + 1];
    conn.read_exact(&mut buf)?;
    if buf.pop() != Some(b',') {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "netstring without its ','",
        ));
    }
    String::from_utf8(buf).map_err(|_| io::Error::new(io::ErrorKind::InvalidData, "answer is not UTF-8"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn filter() -> Filter {
        // Nothing listens on port 9 of loopback: every question fails.
        Filter::new(Options {
            resolver: Listen::parse("inet:127.0.0.1:9").unwrap(),
            trap_to: "trap@localhost".into(),
            timeout: Duration::from_millis(200),
        })
    }

    #[test]
    fn registers_remembers_sessions_and_answers_in_the_versions_words() {
        let mut f = filter();
        assert_eq!(f.line("config|ready").last().unwrap(), "register|ready");
        assert!(
            f.line("report|0.6|1|smtp-in|link-connect|s1|<unknown>|fail|[2001:db8::1]:4000|[::1]:25")
                .is_empty()
        );
        f.line("report|0.6|1|smtp-in|link-identify|s1|EHLO|mx.example");
        assert_eq!(
            f.line("filter|0.6|1|smtp-in|mail-from|s1|t1|a@b.example"),
            ["filter-result|s1|t1|proceed"]
        );
        let s = &f.sessions["s1"];
        assert_eq!(
            (s.client.as_str(), s.helo.as_str(), s.sender.as_str()),
            ("2001:db8::1", "mx.example", "a@b.example")
        );
        assert_eq!(
            f.line("filter|0.6|1|smtp-in|rcpt-to|s1|t2|mjd@plover.com"),
            [format!("filter-result|s1|t2|reject|{UNAVAILABLE}")],
            "no resolver: a 451, and the filter lives on"
        );
        assert_eq!(
            f.line("filter|0.4|1|smtp-in|helo|s1|t3|x"),
            ["filter-result|t3|s1|proceed"]
        );
        f.line("report|0.6|1|smtp-in|link-disconnect|s1");
        assert!(f.sessions.is_empty());
        assert!(f.line("garbage").is_empty() && f.line("").is_empty());
    }

    #[test]
    fn resolver_answers_become_decisions() {
        let f = filter();
        let d = |a: &str| f.decision(Some(a));
        assert_eq!(d("OK proceed"), "proceed");
        assert_eq!(d("OK rewrite mjd@plover.com"), "rewrite|<mjd@plover.com>");
        assert_eq!(d("OK trap"), "rewrite|<trap@localhost>");
        assert_eq!(d("OK reject 550 5.1.1 expired"), "reject|550 5.1.1 expired");
        for bad in ["TEMP store", "PERM what", "OK nonsense", "NOTFOUND "] {
            assert_eq!(d(bad), format!("reject|{UNAVAILABLE}"), "{bad}");
        }
        assert_eq!(client_ip("192.0.2.1:25"), "192.0.2.1");
        assert_eq!(client_ip("2001:db8::1:25"), "2001:db8::1");
        assert_eq!(client_ip("unix:/var/run/smtpd.sock"), "");
    }
}
