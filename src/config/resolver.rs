//! `[resolver]` and `[traps]`, validated into the typed settings the mail
//! side runs on.

use std::fmt;
use std::net::SocketAddr;
use std::time::Duration;

use ipnet::IpNet;

use super::schema::{Bare, Mangled, RawContainment, RawResolver, RawTraps};
use super::values::{Problem, admin_listen, at_least_usize, nets, one_line, parse_span, problem, timeout};
use crate::listen::Listen;

/// The validated `[resolver]` section.
#[derive(Debug, Clone)]
pub struct ResolverSettings {
    /// Socketmap listeners.
    pub socketmap: Vec<Listen>,
    /// Policy-delegation listeners.
    pub policy: Vec<Listen>,
    /// Exim `${readsocket}` listeners.
    pub exim: Vec<Listen>,
    /// Permissions of unix sockets.
    pub socket_mode: u32,
    /// Owner of unix sockets (name or uid).
    pub socket_owner: Option<String>,
    /// Group of unix sockets (name or gid).
    pub socket_group: Option<String>,
    /// What a protected address without an ID gets.
    pub bare: Bare,
    /// What a mangled copy of a munged address gets.
    pub mangled: Mangled,
    /// Answer to an expired or forged ID, after `REJECT `.
    pub reject_text: String,
    /// Answer to a bare address when `bare = "reject"`.
    pub bare_text: String,
    /// Answer to a blocked client.
    pub block_text: String,
    /// Postfix's `recipient_delimiter` characters; empty for none.
    pub recipient_delimiter: String,
    /// The largest request, in bytes.
    pub max_request: usize,
    /// How long a connection may stay idle, a request take from its first
    /// byte, and an answer wait for the client to read it.
    pub idle_timeout: Duration,
    /// Connections served at once.
    pub max_connections: usize,
    /// Where metrics are served.
    pub admin_listen: Option<SocketAddr>,
}

impl ResolverSettings {
    /// Validates `[resolver]`.
    pub fn from_raw(r: &RawResolver) -> Result<ResolverSettings, Problem> {
        let listeners = |key: &str, list: &[String]| {
            list.iter()
                .map(|l| Listen::parse(l).map_err(|m| problem(key, m)))
                .collect::<Result<Vec<_>, _>>()
        };
        let idle_timeout = timeout("resolver.idle_timeout", r.idle_timeout)?;
        let max_connections = at_least_usize("resolver.max_connections", r.max_connections, 1)?;
        let admin_listen = admin_listen("resolver.admin_listen", r.admin_listen.as_deref())?;
        let socketmap = listeners("resolver.socketmap", &r.socketmap)?;
        let policy = listeners("resolver.policy", &r.policy)?;
        let exim = listeners("resolver.exim", &r.exim)?;
        let socket_mode = u32::from_str_radix(&r.socket_mode, 8).map_err(|_| {
            problem(
                "resolver.socket_mode",
                format!("'{}' is not an octal mode; write e.g. \"0660\"", r.socket_mode),
            )
        })?;
        let reject_text = one_line("resolver.reject_text", &r.reject_text)?;
        let bare_text = one_line("resolver.bare_text", &r.bare_text)?;
        let block_text = one_line("resolver.block_text", &r.block_text)?;
        if r.max_request < 100 {
            return Err(problem(
                "resolver.max_request",
                "must be at least 100 bytes; the default is 10000",
            ));
        }
        Ok(ResolverSettings {
            socketmap,
            policy,
            exim,
            socket_mode,
            socket_owner: r.socket_owner.clone(),
            socket_group: r.socket_group.clone(),
            bare: r.bare,
            mangled: r.mangled,
            reject_text,
            bare_text,
            block_text,
            recipient_delimiter: r.recipient_delimiter.clone(),
            max_request: r.max_request,
            idle_timeout,
            max_connections,
            admin_listen,
        })
    }
}

/// The first word of `[traps] action`: what Postfix does with trap mail.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TrapVerb {
    /// Accept and throw away (the default).
    Discard,
    /// Keep in the hold queue.
    Hold,
    /// Refuse.
    Reject,
    /// Let the other restrictions decide.
    Dunno,
}

impl TrapVerb {
    fn parse(word: &str) -> Option<TrapVerb> {
        Some(match word {
            "DISCARD" => TrapVerb::Discard,
            "HOLD" => TrapVerb::Hold,
            "REJECT" => TrapVerb::Reject,
            "DUNNO" => TrapVerb::Dunno,
            _ => return None,
        })
    }
}

/// `[traps] action`: a verb and the text that follows it, kept as written
/// because it goes to Postfix as is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrapAction {
    /// What Postfix is told to do.
    pub verb: TrapVerb,
    written: String,
}

impl TrapAction {
    /// Parses one line starting with DISCARD, HOLD, REJECT or DUNNO.
    pub fn parse(text: &str) -> Result<TrapAction, Problem> {
        // One line: the action goes into the policy reply as is, and a
        // newline in it would inject a second answer into the protocol.
        let verb = one_line("traps.action", text)
            .ok()
            .and_then(|t| TrapVerb::parse(t.split_whitespace().next()?));
        verb.map(|verb| TrapAction {
            verb,
            written: text.to_owned(),
        })
        .ok_or_else(|| {
            problem(
                "traps.action",
                format!("{text:?}: use DISCARD, HOLD, REJECT text or DUNNO, on one line"),
            )
        })
    }

    /// What follows the verb, as written (e.g. REJECT's text).
    pub fn text(&self) -> &str {
        self.written
            .trim_start()
            .split_once(char::is_whitespace)
            .map_or("", |(_, t)| t.trim())
    }

    /// The policy service's answer: a bare DISCARD gets a reason for
    /// Postfix's log; anything else goes as written.
    pub fn policy_answer(&self) -> String {
        if self.verb == TrapVerb::Discard && self.written == "DISCARD" {
            "DISCARD mail to a trap address".into()
        } else {
            self.written.clone()
        }
    }
}

/// As written (the socketmap `recipient` map's answer).
impl fmt::Display for TrapAction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.written)
    }
}

/// The validated `[traps]` section.
#[derive(Debug, Clone)]
pub struct TrapSettings {
    /// How long a client that mailed a trap stays blocked.
    pub block_for: Duration,
    /// Clients never blocked.
    pub never_block: Vec<IpNet>,
    /// What Postfix does with mail to a trap.
    pub action: TrapAction,
}

impl TrapSettings {
    /// Validates `[traps]`.
    pub fn from_raw(t: &RawTraps) -> Result<TrapSettings, Problem> {
        let block_for = parse_span(&t.block_for).map(Duration::from_secs).ok_or_else(|| {
            problem(
                "traps.block_for",
                format!(
                    "'{}' is not a duration; write e.g. \"7d\", \"12h\" or \"30m\"",
                    t.block_for
                ),
            )
        })?;
        Ok(TrapSettings {
            block_for,
            never_block: nets("traps.never_block", &t.never_block, "192.0.2.0/24")?,
            action: TrapAction::parse(&t.action)?,
        })
    }
}

/// The validated `[containment]` section: when the resolver cuts off a
/// harvest by itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContainmentSettings {
    /// Distinct client networks within 24 h that cut off a harvest; 0 = never.
    pub networks: usize,
    /// Mail from a client blocked for mailing a trap cuts it off.
    pub blocked_clients: bool,
    /// Mail to a mangled copy cuts it off.
    pub mangled: bool,
    /// Rules made per UTC day at most.
    pub max_rules_per_day: usize,
}

/// The most distinct networks `networks` may ask for: each is remembered
/// per address until it is reached.
const MAX_NETWORKS: usize = 100;

impl ContainmentSettings {
    /// Validates `[containment]`.
    pub fn from_raw(c: &RawContainment) -> Result<ContainmentSettings, Problem> {
        if c.networks == 1 || c.networks > MAX_NETWORKS {
            return Err(problem(
                "containment.networks",
                format!(
                    "{} networks: use 2 to {MAX_NETWORKS} (one network is any sender at all), or 0 to leave this evidence out",
                    c.networks
                ),
            ));
        }
        let max_rules_per_day = at_least_usize("containment.max_rules_per_day", c.max_rules_per_day, 1)?;
        Ok(ContainmentSettings {
            networks: c.networks,
            blocked_clients: c.blocked_clients,
            mangled: c.mangled,
            max_rules_per_day,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trap_actions_keep_their_text_and_a_bare_discard_gets_a_reason() {
        let d = TrapAction::parse("DISCARD").unwrap();
        assert_eq!((d.verb, d.to_string()), (TrapVerb::Discard, "DISCARD".into()));
        assert_eq!(d.policy_answer(), "DISCARD mail to a trap address");
        let h = TrapAction::parse("HOLD spam trap").unwrap();
        assert_eq!(
            (h.verb, h.policy_answer()),
            (TrapVerb::Hold, "HOLD spam trap".into())
        );
        for bad in ["OK", "", "DISCARD\naction=OK", "discard"] {
            assert!(TrapAction::parse(bad).is_err(), "{bad:?}");
        }
    }
}
