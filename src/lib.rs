//! addrmunge keeps a site owner's e-mail addresses away from harvesters.
//!
//! The proxy rewrites every protected address in served pages into a
//! per-visitor, per-day address carrying an encrypted, authenticated ID; the
//! resolver tells Postfix which of those addresses to deliver, refuse or
//! discard. This library holds everything both share.
//!
//! Data flows one way. A page: bytes in → [`scan`] (find protected addresses)
//! → [`token`] (make the ID) → bytes out. A mail lookup: address →
//! [`address`] (take it apart) → [`token`] (authenticate) → [`store`] rules →
//! answer, all in [`check`](mod@check). [`config`] builds the shared rules once; [`day`]
//! is the calendar every ID is dated in.
//!
//! ```
//! use std::sync::Arc;
//! use addrmunge::address::{Glob, Protect, Protection};
//! use addrmunge::{Claims, Day, Found, KeyRing, Kind, Matcher, RuleSet, Served, Status};
//!
//! let protection = Arc::new(Protection::new(
//!     vec![Protect {
//!         domain: "plover.com".into(),
//!         local: Glob::new("*").unwrap(),
//!         exempt: vec![Glob::new("*-subscribe").unwrap()],
//!         deliver_to: None,
//!     }],
//!     "-id-",
//! ));
//! let keys = KeyRing::new(&[[7; 32]]);
//! let day: Day = "2026-11-22".parse().unwrap();
//! let visitor = Claims::visit(Kind::Visitor, day, "203.0.113.9".parse().unwrap());
//!
//! // A page goes through the scanner; the munger writes separator and ID.
//! let page = b"<a href=\"mailto:mjd&#64;plover.com\">list-subscribe@plover.com</a>";
//! let out = Matcher::new(Arc::clone(&protection)).rewrite(page, &mut |f: &Found<'_>, o: &mut Vec<u8>| {
//!     let token = keys.encode(&format!("{}@{}", f.local, f.domain), "", &visitor);
//!     o.extend_from_slice(format!("-id-{token}").as_bytes());
//! });
//! let out = String::from_utf8(out).unwrap();
//! assert!(out.contains("list-subscribe@plover.com")); // exempt
//!
//! // The mail side judges the address a harvester would take.
//! let start = out.find("mjd-id-").unwrap();
//! let munged = out[start..].split('"').next().unwrap().replace("&#64;", "@");
//! let verdict = addrmunge::check(&keys, &protection, &RuleSet::default(), &Served::default(), &munged, day);
//! assert_eq!(verdict.status, Status::Valid);
//! assert_eq!(verdict.original.as_deref(), Some("mjd@plover.com"));
//! assert_eq!(verdict.ip.as_deref(), Some("203.0.113.9"));
//! ```

#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod address;
pub mod audit;
pub mod check;
pub mod config;
pub mod conns;
pub mod day;
pub mod demo;
pub mod ip_text;
pub mod listen;
pub mod metrics;
pub mod proxy;
pub mod report;
pub mod resolver;
pub mod rewrite;
pub mod rules;
pub mod scan;
pub mod signals;
pub mod smtpd_filter;
pub mod store;
pub mod token;

pub use address::{Class, Parsed, Protection};
pub use check::{Served, Status, Verdict, check};
pub use config::{Config, ConfigError};
pub use day::Day;
pub use rules::{Rule, RuleSet, Scope};
pub use scan::{Found, Matcher, Munger, Scanner};
pub use store::{RuleWatcher, Store, StoreError};
pub use token::{Claims, KeyRing, Kind, Visitor};
