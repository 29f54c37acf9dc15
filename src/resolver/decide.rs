//! Every mail decision, as pure functions: one settings snapshot and the
//! facts looked up for one request (a recipient's judgement, whether the
//! client is blocked) in, the answer (and what to record or block) out.
//! No sockets, no store, no clock: the wire modules ([`super::socketmap`],
//! [`super::policy`]) frame requests and answers around these, and the
//! table in this file's tests covers every case.

use std::net::IpAddr;
use std::sync::Arc;

use super::Settings;
use super::containment::Sighting;
use crate::check::{Status, Verdict, is_role_account};
use crate::config::{Bare, Mangled, TrapAction, TrapVerb};
use crate::store::Arrival;
use crate::token::Kind;

/// How a recipient is judged, for both services.
#[derive(Debug, Clone)]
pub struct Judgement {
    /// The verdict of the (extension-stripped) address.
    pub verdict: Verdict,
    /// The address judged.
    pub address: String,
}

/// What a decision looks up, answered under the request's one settings
/// snapshot.
pub trait Facts {
    /// The judgement of a recipient; `None` when the store cannot be read.
    fn judge(&self, address: &str) -> Option<Arc<Judgement>>;
    /// Whether the client is blocked now.
    fn blocked(&self, ip: IpAddr) -> bool;
}

/// What to tell Postfix about a recipient.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Let the other restrictions decide.
    Dunno,
    /// Refuse with this text.
    Reject(String),
    /// A trap address.
    Trap,
    /// Not a protected address.
    NotOurs,
}

/// The `recipient`-map and policy answer for a judgement.
pub fn recipient_action(s: &Settings, j: &Judgement) -> Action {
    let r = &s.config.resolver;
    let v = &j.verdict;
    match v.status {
        Status::Valid | Status::Expired | Status::Mangled if v.kind == Some(Kind::Trap) => Action::Trap,
        Status::Valid => Action::Dunno,
        // No person cuts an address like that: its sender is a spammer.
        Status::Mangled => match r.mangled {
            Mangled::Trap => Action::Trap,
            Mangled::Reject => Action::Reject(r.reject_text.clone()),
            Mangled::Accept => Action::Dunno,
        },
        Status::Expired => Action::Reject(r.reject_text.clone()),
        Status::Bare if v.exempt || r.bare == Bare::Accept || is_role_account(&j.address) => Action::Dunno,
        Status::Bare => Action::Reject(r.bare_text.clone()),
        // Forged or altered IDs on a protected base address are refused;
        // everything else (other users of a protected domain too) is
        // none of our business.
        Status::Invalid if v.protected => Action::Reject(r.reject_text.clone()),
        Status::Invalid => Action::NotOurs,
    }
}

/// The socketmap maps addrmunge serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Map {
    /// `virtual_alias_maps` (Sendmail's `virtuser`): a valid munged
    /// address to its base (or `deliver_to`).
    Virtual,
    /// `relay_recipient_maps`: which recipients exist.
    Relay,
    /// `check_recipient_access`: DUNNO, REJECT or the trap action.
    Recipient,
    /// `check_client_access`: blocked clients.
    Client,
}

impl Map {
    /// The map for a socketmap name.
    pub fn parse(name: &str) -> Option<Map> {
        Some(match name {
            "virtual" | "virtuser" => Map::Virtual,
            "relay" => Map::Relay,
            "recipient" => Map::Recipient,
            "client" => Map::Client,
            _ => return None,
        })
    }
}

/// A socketmap answer.
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

fn store_unreadable() -> Reply {
    Reply::Temp("addrmunge cannot read its state store".into())
}

/// Answers one socketmap lookup.
pub fn socketmap(s: &Settings, facts: &impl Facts, map: Map, key: &str) -> Reply {
    match map {
        Map::Virtual | Map::Relay => address_map(s, facts, map, key),
        Map::Recipient => match facts.judge(key) {
            None => store_unreadable(),
            Some(j) => match recipient_action(s, &j) {
                Action::Dunno => Reply::Ok("DUNNO".into()),
                // concat, not format!: this is every refused lookup.
                Action::Reject(text) => Reply::Ok(["REJECT ", &text].concat()),
                Action::Trap => Reply::Ok(s.config.traps.action.to_string()),
                Action::NotOurs => Reply::NotFound,
            },
        },
        Map::Client => match key.trim().parse::<IpAddr>() {
            Ok(ip) if facts.blocked(ip) => Reply::Ok(format!("REJECT {}", s.config.resolver.block_text)),
            // Postfix asks for the client's hostname too; blocks are by IP.
            _ => Reply::NotFound,
        },
    }
}

/// `virtual` and `relay`: by address, or by bare domain.
fn address_map(s: &Settings, facts: &impl Facts, map: Map, key: &str) -> Reply {
    let key = key.trim().to_ascii_lowercase();
    if !key.contains('@') {
        // Postfix asks for the bare domain when virtual_alias_domains
        // defaults to $virtual_alias_maps.
        let d = key.trim_end_matches('.');
        return if s.config.protection.has_domain(d) {
            Reply::Ok(d.to_owned())
        } else {
            Reply::NotFound
        };
    }
    let Some(j) = facts.judge(&key) else {
        return store_unreadable();
    };
    let v = &j.verdict;
    // A mangled copy with `mangled = "accept"` goes where its base goes.
    let delivered = match v.status {
        Status::Valid => true,
        Status::Mangled => recipient_action(s, &j) == Action::Dunno,
        _ => false,
    };
    match (map, v.status) {
        (Map::Virtual, _) if delivered => {
            // Never answer with something that looks munged: the base
            // address (or deliver_to) is looked up again and must come
            // back NOTFOUND.
            let entry = v.entry.map(|e| &s.config.protection.entries()[e]);
            let target = entry
                .and_then(|e| e.deliver_to.clone())
                .or_else(|| v.original.clone());
            target.map(Reply::Ok).unwrap_or(Reply::NotFound)
        }
        // The key as asked (an extension kept): it is a recipient that exists.
        (Map::Relay, Status::Valid) => Reply::Ok(v.original.clone().unwrap_or(key)),
        (Map::Relay, Status::Expired) if v.kind == Some(Kind::Trap) => Reply::Ok(key),
        // A trap or accepted copy is a recipient that exists; a refused one not.
        (Map::Relay, Status::Mangled) if !matches!(recipient_action(s, &j), Action::Reject(_)) => {
            Reply::Ok(key)
        }
        (Map::Relay, Status::Bare) if v.exempt || recipient_action(s, &j) == Action::Dunno => Reply::Ok(key),
        _ => Reply::NotFound,
    }
}

/// The attributes of one policy request that decisions read.
#[derive(Debug, Clone, Copy, Default)]
pub struct PolicyRequest<'a> {
    /// `client_address`.
    pub client_address: &'a str,
    /// `helo_name`.
    pub helo: &'a str,
    /// `sender`.
    pub sender: &'a str,
    /// `recipient`; empty outside RCPT.
    pub recipient: &'a str,
}

/// What the MTA is told at RCPT: one decision, worded per MTA by
/// [`Answer::postfix`] and [`Answer::exim`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer {
    /// Let the MTA's other rules decide.
    Dunno,
    /// Refuse with this text (it may start with an enhanced status code).
    Reject(String),
    /// Try again later, with this text.
    Defer(String),
    /// A trap address: `[traps] action`.
    Trap,
}

impl Answer {
    /// The Postfix policy protocol's `action=` value.
    pub fn postfix(&self, trap: &TrapAction) -> String {
        match self {
            Answer::Dunno => "DUNNO".into(),
            Answer::Reject(text) => format!("REJECT {text}"),
            Answer::Defer(text) => format!("DEFER_IF_PERMIT {text}"),
            Answer::Trap => trap.policy_answer(),
        }
    }

    /// The line [`super::exim`] answers: an ACL verb, then its message.
    pub fn exim(&self, trap: &TrapAction) -> String {
        match self {
            Answer::Dunno => "accept".into(),
            Answer::Reject(text) => format!("reject {text}"),
            Answer::Defer(text) => format!("defer {text}"),
            Answer::Trap => match trap.verb {
                TrapVerb::Discard => "discard mail to a trap address".into(),
                TrapVerb::Hold => "freeze mail to a trap address".into(),
                TrapVerb::Reject => format!("reject {}", trap.text()),
                TrapVerb::Dunno => "accept".into(),
            },
        }
    }
}

/// A policy answer and what it leaves behind.
#[derive(Debug, Clone)]
pub struct PolicyDecision {
    /// What the MTA is told.
    pub answer: Answer,
    /// An arrival to record for `trace`.
    pub arrival: Option<Arrival>,
    /// A client to block, and why.
    pub block: Option<(IpAddr, String)>,
    /// The recipient and client, for `[containment]`.
    pub sighting: Option<Sighting>,
}

impl PolicyDecision {
    /// After `[containment]` cut off the harvest the recipient came from:
    /// the message that completed the evidence is refused as expired, like
    /// every one after it (what was refused or trapped stays so).
    pub fn cut_off(&mut self, s: &Settings) {
        if self.answer == Answer::Dunno {
            self.answer = Answer::Reject(s.config.resolver.reject_text.clone());
            if let Some(a) = &mut self.arrival {
                a.status = Status::Expired;
            }
        }
    }

    fn answer(answer: Answer) -> PolicyDecision {
        PolicyDecision {
            answer,
            arrival: None,
            block: None,
            sighting: None,
        }
    }
}

/// Decides one policy request at `now` (Unix seconds): blocked client →
/// REJECT; trap recipient → the trap action and the client blocked;
/// expired or forged → REJECT; every arrival for a munged address recorded.
/// A blocked client's recipient is judged too, for containment: mail from
/// it to a visitor's address is evidence of that address's harvest.
pub fn policy(s: &Settings, facts: &impl Facts, req: &PolicyRequest<'_>, now: i64) -> PolicyDecision {
    let client: Option<IpAddr> = req.client_address.parse().ok();
    let blocked = client.is_some_and(|ip| facts.blocked(ip));
    let refused = || Answer::Reject(s.config.resolver.block_text.clone());
    if req.recipient.is_empty() {
        return PolicyDecision::answer(if blocked { refused() } else { Answer::Dunno });
    }
    let Some(j) = facts.judge(req.recipient) else {
        let unread = || Answer::Defer("4.3.0 addrmunge cannot read its state store; try again later".into());
        return PolicyDecision::answer(if blocked { refused() } else { unread() });
    };
    let sighting = client.map(|client| Sighting {
        judgement: Arc::clone(&j),
        client,
        blocked,
    });
    if blocked {
        return PolicyDecision {
            sighting,
            ..PolicyDecision::answer(refused())
        };
    }
    let mut d = match recipient_action(s, &j) {
        Action::Trap => PolicyDecision {
            block: trap_block(s, &j, client),
            ..PolicyDecision::answer(Answer::Trap)
        },
        Action::Reject(text) => PolicyDecision::answer(Answer::Reject(text)),
        Action::Dunno | Action::NotOurs => PolicyDecision::answer(Answer::Dunno),
    };
    d.arrival = arrival(&j, req, now);
    d.sighting = sighting;
    d
}

/// The block a trap earns its client: none for mail to postmaster or
/// abuse, nor for clients in `never_block`.
fn trap_block(s: &Settings, j: &Judgement, client: Option<IpAddr>) -> Option<(IpAddr, String)> {
    let ip = client?;
    let base = j.verdict.original.as_deref().unwrap_or(&j.address);
    let spared = is_role_account(base) || s.config.traps.never_block.iter().any(|n| n.contains(&ip));
    let what = match j.verdict.status {
        Status::Mangled => "a mangled copy",
        _ => "trap",
    };
    (!spared).then(|| (ip, format!("mail to {what} {}", j.address)))
}

/// Every authentic ID's arrival, and forged ones on protected base
/// addresses (a harvester guessing at the format is worth knowing about).
fn arrival(j: &Judgement, req: &PolicyRequest<'_>, now: i64) -> Option<Arrival> {
    let v = &j.verdict;
    (v.protected && v.status != Status::Bare).then(|| Arrival {
        time: now,
        client_ip: req.client_address.to_owned(),
        helo: req.helo.to_owned(),
        sender: req.sender.to_owned(),
        recipient: j.address.clone(),
        base: v.original.clone(),
        kind: v.kind,
        visitor: v.ip.clone(),
        day: v.date,
        status: v.status,
    })
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;
    use crate::check::{Served, check_recipient};
    use crate::config::Config;
    use crate::day::Day;
    use crate::rules::{Rule, RuleSet, Scope};
    use crate::token::{Claims, KeyRing, Visitor};

    const CONFIG: &str = r#"
key_file = "k"
state = "s.sqlite"
[[protect]]
domain = "plover.com"
exempt = ["*-subscribe"]
[[protect]]
domain = "other.test"
local = "mjd"
deliver_to = "Owner@Mail.test"
[resolver]
recipient_delimiter = "+"
reject_text = "5.1.1 expired"
bare_text = "5.1.1 bare"
block_text = "5.7.1 blocked"
[traps]
never_block = ["192.0.2.0/24"]
"#;

    /// Facts from a fixed rule set, block list and store health.
    struct Fixed {
        settings: Settings,
        rules: RuleSet,
        served: Served,
        blocked: Vec<IpAddr>,
        store_ok: bool,
    }

    impl Facts for Fixed {
        fn judge(&self, address: &str) -> Option<Arc<Judgement>> {
            let s = &self.settings;
            let delim = &s.config.resolver.recipient_delimiter;
            let today = Day::today();
            let (p, rules, served) = (&s.config.protection, &self.rules, &self.served);
            let v = check_recipient(&s.keys, p, rules, served, address, today, delim);
            self.store_ok.then(|| {
                Arc::new(Judgement {
                    address: v.address.clone(),
                    verdict: v,
                })
            })
        }

        fn blocked(&self, ip: IpAddr) -> bool {
            self.blocked.contains(&ip)
        }
    }

    fn fixed(extra: &str, store_ok: bool) -> Fixed {
        let text = CONFIG.replace("[resolver]\n", &format!("[resolver]\n{extra}\n"));
        let config = Config::from_toml(Path::new("/x/addrmunge.toml"), &text).unwrap();
        let expired = Visitor::from_ip(EXPIRED.parse().unwrap());
        Fixed {
            settings: Settings {
                config,
                keys: KeyRing::new(&[[9u8; 32]]),
            },
            rules: RuleSet::new(vec![Rule {
                id: 1,
                scope: Scope::Ip(expired),
                reason: String::new(),
                created: 0,
            }]),
            served: Served::new(["jane.doe@plover.com".to_owned()]),
            blocked: vec![BLOCKED.parse().unwrap()],
            store_ok,
        }
    }

    const VISITOR: &str = "203.0.113.9";
    const EXPIRED: &str = "198.51.100.1";
    const BLOCKED: &str = "198.51.100.66";
    const SPARED: &str = "192.0.2.5";

    /// `base` munged for a visitor of `kind` from `ip` today.
    fn munged(f: &Fixed, kind: Kind, ip: &str, base: &str) -> String {
        let claims = Claims::visit(kind, Day::today(), ip.parse().unwrap());
        let (local, domain) = base.split_once('@').unwrap();
        let token = f.settings.keys.encode(base, "", &claims);
        f.settings.config.protection.munge(local, domain, "", &token)
    }

    /// What each map and the policy service answer for one address.
    #[derive(Debug, PartialEq)]
    struct Row {
        virtual_: Reply,
        relay: Reply,
        recipient: Reply,
        policy: &'static str,
        recorded: bool,
        blocks: bool,
    }

    fn ok(v: &str) -> Reply {
        Reply::Ok(v.into())
    }

    fn answers(f: &Fixed, client: &str, address: &str) -> (Row, String) {
        let s = &f.settings;
        let req = PolicyRequest {
            client_address: client,
            recipient: address,
            ..PolicyRequest::default()
        };
        let d = policy(s, f, &req, 1_700_000_000);
        let row = Row {
            virtual_: socketmap(s, f, Map::Virtual, address),
            relay: socketmap(s, f, Map::Relay, address),
            recipient: socketmap(s, f, Map::Recipient, address),
            policy: "",
            recorded: d.arrival.is_some(),
            blocks: d.block.is_some(),
        };
        (row, d.answer.postfix(&s.config.traps.action))
    }

    /// What, settings, client, address: virtual, relay, recipient, policy,
    /// recorded, blocks.
    type Case<'a> = (
        &'static str,
        &'a Fixed,
        &'static str,
        String,
        Reply,
        Reply,
        Reply,
        &'static str,
        bool,
        bool,
    );

    /// One answer, each MTA's words; a trap per `[traps] action`.
    #[test]
    fn answers_in_each_mtas_words() {
        let trap = |a: &str| TrapAction::parse(a).unwrap();
        let discard = trap("DISCARD");
        for (answer, postfix, exim) in [
            (Answer::Dunno, "DUNNO", "accept"),
            (
                Answer::Reject("5.1.1 gone".into()),
                "REJECT 5.1.1 gone",
                "reject 5.1.1 gone",
            ),
            (
                Answer::Defer("4.3.0 later".into()),
                "DEFER_IF_PERMIT 4.3.0 later",
                "defer 4.3.0 later",
            ),
            (
                Answer::Trap,
                "DISCARD mail to a trap address",
                "discard mail to a trap address",
            ),
        ] {
            assert_eq!(
                (answer.postfix(&discard), answer.exim(&discard)),
                (postfix.into(), exim.into())
            );
        }
        for (action, exim) in [
            ("HOLD", "freeze mail to a trap address"),
            ("REJECT 5.7.1 not here", "reject 5.7.1 not here"),
            ("DUNNO", "accept"),
        ] {
            assert_eq!(Answer::Trap.exim(&trap(action)), exim, "{action}");
            assert_eq!(Answer::Trap.postfix(&trap(action)), action);
        }
    }

    #[test]
    fn every_mail_decision() {
        let accept = fixed("", true);
        let reject = fixed("bare = \"reject\"", true);
        let valid = munged(&accept, Kind::Visitor, VISITOR, "mjd@plover.com");
        let expired = munged(&accept, Kind::Visitor, EXPIRED, "mjd@plover.com");
        let trap = munged(&accept, Kind::Trap, VISITOR, "jane.doe@plover.com");
        let expired_trap = munged(&accept, Kind::Trap, EXPIRED, "jane.doe@plover.com");
        let delivered = munged(&accept, Kind::Visitor, VISITOR, "mjd@other.test");
        let role_trap = munged(&accept, Kind::Trap, VISITOR, "postmaster@plover.com");
        let crawler = munged(&accept, Kind::Crawler, VISITOR, "mjd@plover.com");
        // Mangled copies: a served base's front cut to `id-`, a literal
        // local part's cut to the token alone.
        let jane = munged(&accept, Kind::Visitor, VISITOR, "jane.doe@plover.com");
        let copy = jane.replacen("jane.doe-", "", 1);
        let mjd = munged(&accept, Kind::Visitor, VISITOR, "mjd@other.test");
        let cut = mjd.replacen("mjd-id-", "", 1);
        let (copy_refused, copy_accepted) = (
            fixed("mangled = \"reject\"", true),
            fixed("mangled = \"accept\"", true),
        );
        let not_a_copy = "0123456789abcdefghjkmnpq@plover.com".to_owned();
        let (head, _) = valid.split_once('@').unwrap();
        let last = if head.ends_with('a') { 'b' } else { 'a' };
        let forged = format!("{}{last}@plover.com", &head[..head.len() - 1]);
        let discard = "DISCARD mail to a trap address";
        let (dunno, expired_text, bare_text) = ("DUNNO", "REJECT 5.1.1 expired", "REJECT 5.1.1 bare");
        #[rustfmt::skip]
        let table: Vec<Case<'_>> = vec![
            // what, settings, client, address: virtual, relay, recipient, policy, recorded, blocks
            ("valid", &accept, VISITOR, valid.clone(), ok("mjd@plover.com"), ok("mjd@plover.com"), ok(dunno), dunno, true, false),
            ("valid, upper case in brackets", &accept, VISITOR, format!("<{}>", valid.to_uppercase()), ok("mjd@plover.com"), ok("mjd@plover.com"), ok(dunno), dunno, true, false),
            ("valid with an extension", &accept, VISITOR, valid.replace("@", "+news@"), ok("mjd@plover.com"), ok("mjd@plover.com"), ok(dunno), dunno, true, false),
            ("valid, domain with a trailing dot", &accept, VISITOR, format!("{valid}."), ok("mjd@plover.com"), ok("mjd@plover.com"), ok(dunno), dunno, true, false),
            ("a crawler's, delivered", &accept, VISITOR, crawler.clone(), ok("mjd@plover.com"), ok("mjd@plover.com"), ok(dunno), dunno, true, false),
            ("valid, deliver_to", &accept, VISITOR, delivered.clone(), ok("owner@mail.test"), ok("mjd@other.test"), ok(dunno), dunno, true, false),
            ("expired by a rule", &accept, VISITOR, expired.clone(), Reply::NotFound, Reply::NotFound, ok(expired_text), expired_text, true, false),
            ("forged on a protected base", &accept, VISITOR, forged.clone(), Reply::NotFound, Reply::NotFound, ok(expired_text), expired_text, true, false),
            ("bare, accepted", &accept, VISITOR, "mjd@plover.com".into(), Reply::NotFound, ok("mjd@plover.com"), ok(dunno), dunno, false, false),
            ("bare, refused", &reject, VISITOR, "mjd@plover.com".into(), Reply::NotFound, Reply::NotFound, ok(bare_text), bare_text, false, false),
            ("exempt, bare refused", &reject, VISITOR, "list-subscribe@plover.com".into(), Reply::NotFound, ok("list-subscribe@plover.com"), ok(dunno), dunno, false, false),
            ("postmaster, bare refused", &reject, VISITOR, "postmaster@plover.com".into(), Reply::NotFound, ok("postmaster@plover.com"), ok(dunno), dunno, false, false),
            ("abuse, bare refused", &reject, VISITOR, "Abuse@plover.com".into(), Reply::NotFound, ok("abuse@plover.com"), ok(dunno), dunno, false, false),
            ("trap", &accept, VISITOR, trap.clone(), ok("jane.doe@plover.com"), ok("jane.doe@plover.com"), ok("DISCARD"), discard, true, true),
            ("trap, expired", &accept, VISITOR, expired_trap.clone(), Reply::NotFound, ok(&expired_trap), ok("DISCARD"), discard, true, true),
            ("trap, from a never_block client", &accept, SPARED, trap.clone(), ok("jane.doe@plover.com"), ok("jane.doe@plover.com"), ok("DISCARD"), discard, true, false),
            ("trap at postmaster", &accept, VISITOR, role_trap.clone(), ok("postmaster@plover.com"), ok("postmaster@plover.com"), ok("DISCARD"), discard, true, false),
            ("another user of a partly protected domain", &reject, VISITOR, "joe@other.test".into(), Reply::NotFound, Reply::NotFound, Reply::NotFound, dunno, false, false),
            ("an ID on another user", &reject, VISITOR, "joe-id-0123456789abcdefghjkmnpq@other.test".into(), Reply::NotFound, Reply::NotFound, Reply::NotFound, dunno, false, false),
            ("an unprotected domain", &reject, VISITOR, "joe@example.org".into(), Reply::NotFound, Reply::NotFound, Reply::NotFound, dunno, false, false),
            ("a mangled copy: a trap", &accept, VISITOR, copy.clone(), Reply::NotFound, ok(&copy), ok("DISCARD"), discard, true, true),
            ("a mangled copy of a literal local part", &accept, VISITOR, cut.clone(), Reply::NotFound, ok(&cut), ok("DISCARD"), discard, true, true),
            ("a mangled copy, mangled = reject", &copy_refused, VISITOR, copy.to_uppercase(), Reply::NotFound, Reply::NotFound, ok(expired_text), expired_text, true, false),
            ("a mangled copy, mangled = accept", &copy_accepted, VISITOR, copy.clone(), ok("jane.doe@plover.com"), ok(&copy), ok(dunno), dunno, true, false),
            ("a mangled copy, mangled = accept, deliver_to", &copy_accepted, VISITOR, cut.clone(), ok("owner@mail.test"), ok(&cut), ok(dunno), dunno, true, false),
            ("token-shaped but no copy: bare", &reject, VISITOR, not_a_copy.clone(), Reply::NotFound, Reply::NotFound, ok(bare_text), bare_text, false, false),
            ("a blocked client", &accept, BLOCKED, valid.clone(), ok("mjd@plover.com"), ok("mjd@plover.com"), ok(dunno), "REJECT 5.7.1 blocked", false, false),
        ];
        for (what, f, client, address, virtual_, relay, recipient, policy, recorded, blocks) in table {
            let (mut got, answer) = answers(f, client, &address);
            assert_eq!(answer, policy, "{what}: policy answer");
            got.policy = policy;
            let want = Row {
                virtual_,
                relay,
                recipient,
                policy,
                recorded,
                blocks,
            };
            assert_eq!(got, want, "{what}: {address}");
        }
    }

    #[test]
    fn an_unreadable_store_is_never_a_guess() {
        let f = fixed("", false);
        let valid = munged(&f, Kind::Visitor, VISITOR, "mjd@plover.com");
        let temp = Reply::Temp("addrmunge cannot read its state store".into());
        for map in [Map::Virtual, Map::Relay, Map::Recipient] {
            assert_eq!(socketmap(&f.settings, &f, map, &valid), temp, "{map:?}");
        }
        let (row, answer) = answers(&f, VISITOR, &valid);
        assert!(answer.starts_with("DEFER_IF_PERMIT 4.3.0"), "{answer}");
        assert!(!row.recorded && !row.blocks);
        // What needs no judgement is still answered.
        assert_eq!(
            socketmap(&f.settings, &f, Map::Virtual, "plover.com"),
            ok("plover.com")
        );
        let (_, blocked) = answers(&f, BLOCKED, &valid);
        assert_eq!(blocked, "REJECT 5.7.1 blocked");
    }

    #[test]
    fn domains_clients_and_empty_recipients() {
        let f = fixed("", true);
        let s = &f.settings;
        for (key, want) in [
            ("plover.com", ok("plover.com")),
            ("Plover.COM.", ok("plover.com")),
            ("other.test", ok("other.test")),
            ("example.org", Reply::NotFound),
        ] {
            assert_eq!(socketmap(s, &f, Map::Virtual, key), want, "{key}");
        }
        assert_eq!(socketmap(s, &f, Map::Client, BLOCKED), ok("REJECT 5.7.1 blocked"));
        assert_eq!(socketmap(s, &f, Map::Client, VISITOR), Reply::NotFound);
        assert_eq!(socketmap(s, &f, Map::Client, "mail.example.org"), Reply::NotFound);
        let (row, answer) = answers(&f, VISITOR, "");
        assert_eq!(answer, "DUNNO");
        assert!(!row.recorded);
        let mut held = fixed("", true);
        held.settings.config.traps.action = crate::config::TrapAction::parse("HOLD trap").unwrap();
        let trap = munged(&held, Kind::Trap, VISITOR, "jane.doe@plover.com");
        assert_eq!(answers(&held, VISITOR, &trap).1, "HOLD trap");
        assert_eq!(
            socketmap(&held.settings, &held, Map::Recipient, &trap),
            ok("HOLD trap")
        );
        assert_eq!(Map::parse("aliases"), None);
    }
}
