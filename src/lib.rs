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
//! answer, all in [`check`]. [`config`] builds the shared rules once; [`day`]
//! is the calendar every ID is dated in.

#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod address;
pub mod check;
pub mod config;
pub mod day;
pub mod scan;
pub mod store;
pub mod token;

pub use address::{Class, Parsed, Protection};
pub use check::{Status, Verdict, check};
pub use config::{Config, ConfigError};
pub use day::Day;
pub use scan::{Found, Matcher, Munger, Scanner};
pub use store::{Rule, RuleSet, RuleWatcher, Scope, Store, StoreError};
pub use token::{Claims, KeyRing, Kind, Visitor};
