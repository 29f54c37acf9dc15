//! OpenSMTPD's map on the socketmap listener, asked by the filter process
//! [`crate::smtpd_filter`] that OpenSMTPD runs (`filter … proc-exec
//! "addrmunge opensmtpd-filter …"`). OpenSMTPD 6.8 has no table backend
//! this could serve (opensmtpd-extras' table-socketmap treats every
//! answer it reads as a lost connection), so the whole RCPT decision,
//! delivery included, is one filter answer: a valid munged address is
//! rewritten to its base address.
//!
//! `opensmtpd CLIENT_IP|RECIPIENT|SENDER|HELO` (the key Sendmail's
//! `addrmunge` map reads) is answered `OK proceed`, `OK rewrite BASE`,
//! `OK reject CODE D.S.N TEXT` (refusals, and 451 when the store cannot be
//! read) or `OK trap` (the filter rewrites it to its trap sink). The
//! decision is the policy service's ([`super::decide::policy`]).

use super::Resolver;
use super::decide::{Answer, Map, Reply};
use super::sendmail::{request, split_code};
use crate::config::{TrapAction, TrapVerb};

/// The map name.
pub const RCPT_MAP: &str = "opensmtpd";

/// The reply to `opensmtpd CLIENT_IP|RECIPIENT|SENDER|HELO`.
pub fn rcpt(r: &Resolver, key: &str) -> Reply {
    let Some(req) = request(key) else {
        return Reply::Perm(format!("expected '{RCPT_MAP} CLIENT_IP|RECIPIENT|SENDER|HELO'"));
    };
    if let Some(refused) = r.policy(&req, words) {
        return Reply::Ok(refused);
    }
    // Let through: delivered to its base address when it is a valid ID.
    Reply::Ok(match r.lookup(Map::Virtual, req.recipient) {
        Reply::Ok(base) => format!("rewrite {base}"),
        Reply::NotFound => "proceed".into(),
        Reply::Temp(why) | Reply::Perm(why) => reject("4.3.0", &why),
    })
}

/// The decision in the words the filter reads; `None` to let it through.
fn words(answer: &Answer, trap: &TrapAction) -> Option<String> {
    match answer {
        Answer::Dunno => None,
        Answer::Reject(text) => Some(reject("5.7.1", text)),
        Answer::Defer(text) => Some(reject("4.3.0", text)),
        Answer::Trap => match trap.verb {
            // OpenSMTPD can neither discard nor hold one recipient: both
            // go to the sink the filter was given.
            TrapVerb::Discard | TrapVerb::Hold => Some("trap".into()),
            TrapVerb::Reject => Some(reject("5.7.1", trap.text())),
            TrapVerb::Dunno => None,
        },
    }
}

/// `reject CODE D.S.N TEXT`.
fn reject(default: &str, text: &str) -> String {
    let (reply, code, rest) = split_code(default, text);
    format!("reject {reply} {code} {rest}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refusals_carry_a_reply_code() {
        assert_eq!(reject("5.7.1", "5.1.1 expired"), "reject 550 5.1.1 expired");
        assert_eq!(reject("4.3.0", "store down"), "reject 451 4.3.0 store down");
    }
}
