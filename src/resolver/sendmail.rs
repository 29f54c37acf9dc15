//! Sendmail's half of the socketmap listener: Sendmail was where the
//! socketmap protocol was born, so it needs no listener of its own, only
//! two map names its configuration asks by.
//!
//! * `virtuser` (`FEATURE(virtusertable, socket …)`) is the `virtual`
//!   map under the name Sendmail gives it: a valid munged address to its
//!   base address (or `deliver_to`), NOTFOUND otherwise.
//! * `addrmunge` (a `Local_check_rcpt` ruleset) is the RCPT decision the
//!   Postfix policy service makes ([`super::decide::policy`]: blocked
//!   clients refused, a trap's client blocked, arrivals recorded). A
//!   ruleset can send only one string, so the key is
//!   `CLIENT_IP|RECIPIENT|SENDER|HELO`; the answer is an `OK` whose
//!   value the ruleset turns into `$#error`, `$#discard` or nothing.
//!
//! Framing only: the decisions are [`super::decide`]'s.

use super::Resolver;
use super::decide::{Answer, PolicyRequest, Reply};
use crate::config::{TrapAction, TrapVerb};

/// The map name of the RCPT decision.
pub const RCPT_MAP: &str = "addrmunge";

/// The reply to `addrmunge CLIENT_IP|RECIPIENT|SENDER|HELO`.
pub fn rcpt(r: &Resolver, key: &str) -> Reply {
    match request(key) {
        Some(req) => Reply::Ok(r.policy(&req, words)),
        None => Reply::Perm(format!("expected '{RCPT_MAP} CLIENT_IP|RECIPIENT|SENDER|HELO'")),
    }
}

/// A `CLIENT_IP|RECIPIENT|SENDER|HELO` key as a policy request; `None`
/// without a recipient. The OpenSMTPD filter sends the same key.
pub fn request(key: &str) -> Option<PolicyRequest<'_>> {
    // Sendmail joins the ruleset's tokens with a space here and there
    // (`127.0.0.3 |<a@b>| < c@d > | helo`): every field is trimmed.
    let mut f = key.splitn(4, '|').map(str::trim);
    let mut next = || f.next().unwrap_or("");
    let (client, recipient, sender, helo) = (next(), next(), next(), next());
    if recipient.is_empty() {
        return None;
    }
    Some(PolicyRequest {
        // ${client_addr} spells IPv6 clients `IPv6:2001:db8::1`, and
        // Sendmail folds the key to lowercase.
        client_address: client.strip_prefix("ipv6:").unwrap_or(client),
        helo,
        sender: sender.trim_start_matches('<').trim_end_matches('>').trim(),
        recipient,
    })
}

/// The value the README's `Local_check_rcpt` rules read: `accept`,
/// `discard`, `quarantine "WHY"`, or `reject`/`tempfail` with the
/// enhanced status code on its own (for `$#error $@`) and the reply in
/// quotes (Sendmail's tokenizer would drop parentheses and split the
/// rest; a quoted string is one token, kept as it is).
pub fn words(answer: &Answer, trap: &TrapAction) -> String {
    match answer {
        Answer::Dunno => "accept".into(),
        Answer::Reject(text) => error("reject", "5.7.1", text),
        Answer::Defer(text) => error("tempfail", "4.3.0", text),
        Answer::Trap => match trap.verb {
            TrapVerb::Discard => "discard".into(),
            TrapVerb::Hold => "quarantine \"mail to a trap address\"".into(),
            TrapVerb::Reject => error("reject", "5.7.1", trap.text()),
            TrapVerb::Dunno => "accept".into(),
        },
    }
}

/// `VERB D.S.N "CODE TEXT"`, as [`split_code`] splits the text.
fn error(verb: &str, default: &str, text: &str) -> String {
    let (reply, code, rest) = split_code(default, text);
    let quoted: String = rest
        .chars()
        .map(|c| if c == '"' || c == '\\' { '\'' } else { c })
        .collect();
    format!("{verb} {code} \"{reply} {quoted}\"")
}

/// A refusal's reply code, enhanced status code and text: the text's own
/// enhanced code if it starts with one, else `default`; the reply code is
/// its class's (550 or 451).
pub fn split_code<'a>(default: &'a str, text: &'a str) -> (u16, &'a str, &'a str) {
    let (code, rest) = match text.split_once(' ') {
        Some((c, rest)) if is_enhanced(c) => (c, rest),
        _ => (default, text),
    };
    (if code.starts_with('4') { 451 } else { 550 }, code, rest)
}

/// `4.3.0`, `5.7.1`: a class digit and two numbers.
fn is_enhanced(s: &str) -> bool {
    let mut parts = s.split('.');
    let class = parts.next().is_some_and(|c| c == "4" || c == "5");
    let rest: Vec<_> = parts.collect();
    class
        && rest.len() == 2
        && rest
            .iter()
            .all(|p| !p.is_empty() && p.len() <= 3 && p.bytes().all(|b| b.is_ascii_digit()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_carry_their_own_code_or_the_class_default() {
        assert_eq!(
            error("reject", "5.7.1", "5.1.1 This address has expired"),
            "reject 5.1.1 \"550 This address has expired\""
        );
        assert_eq!(
            error("tempfail", "4.3.0", "store (down) \"now\""),
            "tempfail 4.3.0 \"451 store (down) 'now'\""
        );
        assert_eq!(
            error("reject", "5.7.1", "4.7.0 later"),
            "reject 4.7.0 \"451 later\""
        );
        for not in ["5.7", "6.1.1", "5.x.1", "5.1.1.1", "55.1.1", "5..1"] {
            assert!(!is_enhanced(not), "{not}");
        }
    }
}
