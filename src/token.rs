//! The ID token: the key ring, and encoding/decoding of the authenticated,
//! encrypted ID carried in a munged address. Nothing else in the crate knows
//! the token's bytes.
//!
//! # Construction (encode-then-encipher)
//!
//! A token is `K || base32(E(tweak, P))`:
//!
//! * `K` is one base32 character, the key id: the low 5 bits of
//!   `HMAC-SHA256(master, "addrmunge v1 key id")`. It only selects which key of
//!   the ring to try; two keys with the same id are both tried.
//! * `P` is the plaintext, a fixed layout whose unused bits are all zero
//!   (the *redundancy*):
//!   - types: 1 visitor, 2 trap, 3 minted, 6 crawler (short form); 4
//!     visitor, 5 trap, 7 crawler (long form);
//!   - short form, 14 bytes (IPv4 visitors, traps, crawlers and minted addresses):
//!     `type<<4 | 0000`, day (u16 BE), IPv4 (4 bytes) — or for minted: validity
//!     in days (u16 BE, 0 = no end) then `00 00` — then 7 zero bytes;
//!   - long form, 19 bytes (IPv6 visitors, traps and crawlers): `type<<4 | 0000`, day,
//!     the /64 prefix (8 bytes), then 8 zero bytes.
//! * `E` is a tweakable, length-preserving block cipher over the whole of `P`:
//!   a 10-round alternating Feistel network (the FF1 round structure) whose
//!   round function is the ChaCha20 keystream. Round `i` on half `x` is
//!   `ChaCha20(key = T, nonce = i || len(x) || x || 0…)`, truncated to the other
//!   half's length, where the per-address key is
//!   `T = HMAC-SHA256(master_tweak, "addrmunge v1 tweak" || form || lowercase
//!   base address || 0x00 || label)` and `master_tweak = HMAC-SHA256(master,
//!   "addrmunge v1 tweak key")`.
//! * base32 is the lowercase Crockford alphabet `0-9a-z` without `i l o u`,
//!   unpadded, decoded case-insensitively, with non-zero trailing bits refused
//!   (so each token has exactly one spelling). No aliases (`l`→`1`) are
//!   accepted: a changed character is always a different token.
//!
//! # Why this construction, and its bounds
//!
//! * **Deterministic, nonce-free.** There is no nonce to repeat: the same key,
//!   fields and address always give the same token, which keeps caches and
//!   page reloads stable. A SIV with a truncated 40-bit synthetic IV would leak
//!   the XOR of two plaintexts whenever two IVs collide (after about 2^20
//!   tokens); a wide-block cipher has no such failure, the only thing an
//!   observer learns is whether two tokens are equal.
//! * **Confidential.** With ChaCha20 a PRF, a 10-round Feistel network is a
//!   strong pseudorandom permutation (Luby–Rackoff, Patarin); the token is
//!   indistinguishable from random to anyone without the key, so neither IP
//!   nor day can be read. Only the key-id character is in clear.
//! * **Authenticated.** Encode-then-encipher (Bellare–Rogaway, 2000): a token
//!   not produced with the key deciphers to a uniformly random block, which has
//!   the required zero redundancy with probability 2^-60 (short: 4 + 56 bits)
//!   or 2^-68 (long: 4 + 64 bits) and a valid type nibble, far below the 2^-40
//!   bound, even when a few keys share a key id.
//! * **Bound to the address.** The tweak is derived from the lowercased base
//!   address (and the label of a minted address), so a token moved onto
//!   another address deciphers under another permutation and is rejected.
//! * **Short.** 24 characters for IPv4 visitors, traps and minted addresses,
//!   32 for IPv6 (/64) visitors; only `[0-9a-z]`.
//!
//! Test vectors live in `fixtures/token-vectors.json`.

use std::fmt;
use std::fs;
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::{Path, PathBuf};
use std::sync::LazyLock;

use chacha20::ChaCha20;
use chacha20::cipher::{KeyIvInit, StreamCipher};
use data_encoding::{Encoding, Specification};
use hmac::{Hmac, Mac};
use sha2::Sha256;

use crate::day::Day;

/// The token alphabet: Crockford's base32 in lowercase.
pub const ALPHABET: &str = "0123456789abcdefghjkmnpqrstvwxyz";
/// Length of a token for IPv4 visitors, traps and minted addresses.
pub const SHORT_LEN: usize = 24;
/// Length of a token for IPv6 (/64) visitors and traps.
pub const LONG_LEN: usize = 32;

const SHORT_BYTES: usize = 14;
const LONG_BYTES: usize = 19;
const ROUNDS: u8 = 10;

type HmacSha256 = Hmac<Sha256>;

static BASE32: LazyLock<Encoding> = LazyLock::new(|| {
    let mut spec = Specification::new();
    spec.symbols.push_str(ALPHABET);
    spec.translate.from.push_str("ABCDEFGHJKMNPQRSTVWXYZ");
    spec.translate.to.push_str("abcdefghjkmnpqrstvwxyz");
    spec.check_trailing_bits = true;
    spec.encoding()
        .expect("the alphabet is a valid base32 specification")
});

/// What an ID was issued for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    /// An ordinary visitor of the site.
    Visitor,
    /// A harvester: mail to it is discarded and its sender blocked.
    Trap,
    /// Made by hand with `addrmunge mint`.
    Minted,
    /// A search engine's crawler: delivered like a visitor's, but others
    /// may have copied it from the search results.
    Crawler,
}

impl Kind {
    /// The lowercase name used on the command line and in JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Visitor => "visitor",
            Kind::Trap => "trap",
            Kind::Minted => "minted",
            Kind::Crawler => "crawler",
        }
    }
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Not one of the four kinds.
#[derive(Debug, Clone, thiserror::Error)]
#[error("'{0}' is not a kind of ID; visitor, trap, minted or crawler")]
pub struct UnknownKind(String);

impl std::str::FromStr for Kind {
    type Err = UnknownKind;

    fn from_str(s: &str) -> Result<Kind, UnknownKind> {
        [Kind::Visitor, Kind::Trap, Kind::Minted, Kind::Crawler]
            .into_iter()
            .find(|k| k.as_str() == s)
            .ok_or_else(|| UnknownKind(s.to_owned()))
    }
}

/// Who an ID was issued to: an IPv4 address, or an IPv6 /64 network.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Visitor {
    /// A whole IPv4 address.
    V4(Ipv4Addr),
    /// An IPv6 /64 prefix; the low 64 bits are always zero.
    V6(Ipv6Addr),
}

impl Visitor {
    /// The visitor an IP address counts as: IPv4 whole (IPv4-mapped IPv6
    /// addresses are IPv4), IPv6 reduced to its /64.
    pub fn from_ip(ip: IpAddr) -> Visitor {
        match ip {
            IpAddr::V4(v4) => Visitor::V4(v4),
            IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
                Some(v4) => Visitor::V4(v4),
                None => {
                    let bits = u128::from(v6) & !((1u128 << 64) - 1);
                    Visitor::V6(Ipv6Addr::from(bits))
                }
            },
        }
    }

    /// The address itself (for IPv6, the network address of the /64).
    pub fn ip(self) -> IpAddr {
        match self {
            Visitor::V4(v4) => IpAddr::V4(v4),
            Visitor::V6(v6) => IpAddr::V6(v6),
        }
    }
}

impl Visitor {
    /// What `Display` writes: the IPv4 address, or the IPv6 `/64`.
    pub fn text(self) -> String {
        match self {
            Visitor::V4(v4) => crate::ip_text::ipv4_text(v4),
            Visitor::V6(v6) => format!("{v6}/64"),
        }
    }
}

impl fmt::Display for Visitor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text())
    }
}

/// The fields a token carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Claims {
    /// What the ID was issued for.
    pub kind: Kind,
    /// The UTC day it was issued.
    pub day: Day,
    /// The visitor, for `visitor` and `trap` IDs; `None` for `minted`.
    pub visitor: Option<Visitor>,
    /// For `minted` IDs: how many days after `day` the address stops being
    /// accepted (0 = until expired by a rule).
    pub valid_days: u16,
}

impl Claims {
    /// A `visitor` or `trap` ID.
    pub fn visit(kind: Kind, day: Day, ip: IpAddr) -> Claims {
        Claims {
            kind,
            day,
            visitor: Some(Visitor::from_ip(ip)),
            valid_days: 0,
        }
    }

    /// A `minted` ID, valid for `valid_days` days after `day` (0 = no end).
    pub fn minted(day: Day, valid_days: u16) -> Claims {
        Claims {
            kind: Kind::Minted,
            day,
            visitor: None,
            valid_days,
        }
    }

    /// The last day a minted address with a validity is accepted on.
    pub fn last_valid_day(&self) -> Option<Day> {
        (self.kind == Kind::Minted && self.valid_days > 0).then(|| {
            self.day
                .checked_add(self.valid_days)
                .unwrap_or(Day::from_number(u16::MAX))
        })
    }

    fn type_nibble(&self) -> u8 {
        match (self.kind, self.visitor) {
            (Kind::Visitor, Some(Visitor::V4(_))) => 1,
            (Kind::Trap, Some(Visitor::V4(_))) => 2,
            (Kind::Minted, _) => 3,
            (Kind::Visitor, Some(Visitor::V6(_))) => 4,
            (Kind::Trap, Some(Visitor::V6(_))) => 5,
            (Kind::Crawler, Some(Visitor::V4(_))) => 6,
            (Kind::Crawler, Some(Visitor::V6(_))) => 7,
            // A visitor or trap ID without a visitor is not constructible
            // through the public API; encode it as a minted ID's type so the
            // match is total, and let decoding show the truth.
            (_, None) => 3,
        }
    }
}

/// Why a token was not accepted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TokenError {
    /// The text has the wrong length or characters outside the alphabet.
    #[error("not an ID: expected {SHORT_LEN} or {LONG_LEN} characters of [0-9a-z] (no i, l, o, u)")]
    Malformed,
    /// No key in the key ring has this token's key id.
    #[error("no key in the key ring has key id '{0}' (was the key removed from the key file?)")]
    UnknownKey(char),
    /// The token does not authenticate: forged, altered, or moved onto another address.
    #[error("the ID does not authenticate: forged, altered, or belongs to another address")]
    Forged,
}

/// One 32-byte master key and the subkeys derived from it.
#[derive(Clone)]
pub struct Key {
    id: u8,
    tweak_key: [u8; 32],
    /// Signs `addrmunge audit`'s requests (see [`KeyRing::audit_mark`]).
    audit_key: [u8; 32],
}

impl fmt::Debug for Key {
    // Never print key material, even in debug output.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Key")
            .field("id", &self.id_char())
            .finish_non_exhaustive()
    }
}

fn hmac(key: &[u8], parts: &[&[u8]]) -> [u8; 32] {
    let mut mac = HmacSha256::new_from_slice(key).expect("HMAC takes keys of any length");
    for part in parts {
        mac.update(part);
    }
    mac.finalize().into_bytes().into()
}

impl Key {
    /// Derives the subkeys of a master key.
    pub fn new(master: &[u8; 32]) -> Key {
        let id = hmac(master, &[b"addrmunge v1 key id"])[0] & 31;
        let tweak_key = hmac(master, &[b"addrmunge v1 tweak key"]);
        let audit_key = hmac(master, &[b"addrmunge v1 audit mark"]);
        Key {
            id,
            tweak_key,
            audit_key,
        }
    }

    /// The key-id character that starts every token made with this key.
    pub fn id_char(&self) -> char {
        ALPHABET.as_bytes()[usize::from(self.id)] as char
    }

    fn tweak(&self, long: bool, base: &str, label: &str) -> [u8; 32] {
        let form: &[u8] = if long { b"L" } else { b"S" };
        let mut lower = [0u8; 256];
        let base = base.as_bytes();
        if base.len() <= lower.len() {
            lower[..base.len()].copy_from_slice(base);
            lower[..base.len()].make_ascii_lowercase();
            hmac(
                &self.tweak_key,
                &[
                    b"addrmunge v1 tweak",
                    form,
                    &lower[..base.len()],
                    &[0],
                    label.as_bytes(),
                ],
            )
        } else {
            let lower = base.to_ascii_lowercase();
            hmac(
                &self.tweak_key,
                &[b"addrmunge v1 tweak", form, &lower, &[0], label.as_bytes()],
            )
        }
    }
}

/// The round function: ChaCha20 keystream under the per-address key, with the
/// round number and the input half in the nonce.
fn round(tweak: &[u8; 32], i: u8, x: &[u8], out: &mut [u8]) {
    debug_assert!(x.len() <= 10);
    let mut nonce = [0u8; 12];
    nonce[0] = i;
    nonce[1] = x.len() as u8;
    nonce[2..2 + x.len()].copy_from_slice(x);
    let mut cipher = ChaCha20::new(tweak.into(), &nonce.into());
    let mut ks = [0u8; 10];
    let ks = &mut ks[..out.len()];
    cipher.apply_keystream(ks);
    for (o, k) in out.iter_mut().zip(ks.iter()) {
        *o ^= k;
    }
}

fn encipher(tweak: &[u8; 32], block: &mut [u8]) {
    let h = block.len() / 2;
    for i in 0..ROUNDS {
        let (a, b) = block.split_at_mut(h);
        if i % 2 == 0 {
            round(tweak, i, a, b);
        } else {
            round(tweak, i, b, a);
        }
    }
}

fn decipher(tweak: &[u8; 32], block: &mut [u8]) {
    let h = block.len() / 2;
    for i in (0..ROUNDS).rev() {
        let (a, b) = block.split_at_mut(h);
        if i % 2 == 0 {
            round(tweak, i, a, b);
        } else {
            round(tweak, i, b, a);
        }
    }
}

/// A token that decoded, and which key of the ring it was made with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Decoded {
    /// The fields it carries.
    pub claims: Claims,
    /// The index of the key in the key file (0 = the current key).
    pub key_index: usize,
}

/// The largest key file read: hundreds of rotated keys fit.
pub const KEY_FILE_MAX: u64 = 64 * 1024;

/// True for a key that cannot have come from a random source: 32 random
/// bytes have about 30 distinct values, and fewer than 12 happens by chance
/// with a probability below 2^-80, while all zeros, one repeated byte or a
/// short repeated pattern (a placeholder) have very few.
fn is_weak(key: &[u8; 32]) -> bool {
    let mut seen = [false; 256];
    for &b in key {
        seen[usize::from(b)] = true;
    }
    seen.iter().filter(|&&s| s).count() < 12
}

/// Errors loading a key file.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum KeyFileError {
    /// The file could not be read.
    #[error("cannot read key file {path}: {source}; create one with `addrmunge keygen --out {path}`")]
    Read {
        /// The key file.
        path: PathBuf,
        /// The I/O error.
        source: io::Error,
    },
    /// Group or others may read or write the file.
    #[error("key file {path} is accessible by group or others (mode {mode:04o}); run `chmod 600 {path}`")]
    Permissions {
        /// The key file.
        path: PathBuf,
        /// Its permission bits.
        mode: u32,
    },
    /// A line is not 64 hex digits.
    #[error(
        "key file {path}, line {line}: expected 64 hex digits (32 bytes); make keys with `addrmunge keygen`"
    )]
    BadLine {
        /// The key file.
        path: PathBuf,
        /// 1-based line number.
        line: usize,
    },
    /// Not a regular file (a FIFO or a device would hang or never end).
    #[error("key file {path} is not a regular file; make one with `addrmunge keygen --out {path}`")]
    NotAFile {
        /// The key file.
        path: PathBuf,
    },
    /// Larger than any key file (a key is a 65-byte line).
    #[error(
        "key file {path} is over {KEY_FILE_MAX} bytes, far more than any key file; is it the right file?"
    )]
    TooLarge {
        /// The key file.
        path: PathBuf,
    },
    /// A key that is not random (all zeros, one byte repeated, a pattern).
    #[error(
        "key file {path}, line {line}: this key is not random (too few distinct bytes); make keys with `addrmunge keygen`"
    )]
    Weak {
        /// The key file.
        path: PathBuf,
        /// 1-based line number.
        line: usize,
    },
    /// The file holds no key.
    #[error("key file {path} holds no key; make one with `addrmunge keygen --out NEW` and copy its line in")]
    Empty {
        /// The key file.
        path: PathBuf,
    },
    /// The key file exists already (keygen).
    #[error(
        "{path} exists already; addrmunge never overwrites a key. Choose another path, or to rotate: generate a new key elsewhere and put its line first in {path}"
    )]
    Exists {
        /// The path given to keygen.
        path: PathBuf,
    },
    /// Writing a new key failed (keygen).
    #[error("cannot write key file {path}: {source}")]
    Write {
        /// The path given to keygen.
        path: PathBuf,
        /// The I/O error.
        source: io::Error,
    },
}

/// The bytes of an audit mark (128 bits).
const AUDIT_MARK_BYTES: usize = 16;

/// The keys of a key file: the first encodes, all decode.
#[derive(Debug, Clone)]
pub struct KeyRing {
    keys: Vec<Key>,
}

impl KeyRing {
    /// A ring of the given master keys; the first one encodes.
    ///
    /// # Panics
    /// If `masters` is empty.
    pub fn new(masters: &[[u8; 32]]) -> KeyRing {
        assert!(!masters.is_empty(), "a key ring needs at least one key");
        KeyRing {
            keys: masters.iter().map(Key::new).collect(),
        }
    }

    /// Loads a key file: one key per line as 64 hex digits; blank lines and
    /// lines starting with `#` are ignored. Refuses files readable or writable
    /// by group or others.
    pub fn load(path: &Path) -> Result<KeyRing, KeyFileError> {
        use std::os::unix::fs::PermissionsExt;
        let read_err = |source| KeyFileError::Read {
            path: path.to_owned(),
            source,
        };
        let meta = fs::metadata(path).map_err(read_err)?;
        if !meta.is_file() {
            return Err(KeyFileError::NotAFile {
                path: path.to_owned(),
            });
        }
        let mode = meta.permissions().mode() & 0o7777;
        if mode & 0o077 != 0 {
            return Err(KeyFileError::Permissions {
                path: path.to_owned(),
                mode,
            });
        }
        let mut text = String::new();
        {
            use std::io::Read;
            fs::File::open(path)
                .and_then(|f| f.take(KEY_FILE_MAX + 1).read_to_string(&mut text))
                .map_err(read_err)?;
        }
        if text.len() as u64 > KEY_FILE_MAX {
            return Err(KeyFileError::TooLarge {
                path: path.to_owned(),
            });
        }
        let mut masters = Vec::new();
        for (i, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let bad = || KeyFileError::BadLine {
                path: path.to_owned(),
                line: i + 1,
            };
            let bytes = data_encoding::HEXLOWER_PERMISSIVE
                .decode(line.as_bytes())
                .map_err(|_| bad())?;
            let key = <[u8; 32]>::try_from(bytes.as_slice()).map_err(|_| bad())?;
            if is_weak(&key) {
                return Err(KeyFileError::Weak {
                    path: path.to_owned(),
                    line: i + 1,
                });
            }
            masters.push(key);
        }
        if masters.is_empty() {
            return Err(KeyFileError::Empty {
                path: path.to_owned(),
            });
        }
        Ok(KeyRing::new(&masters))
    }

    /// Writes a new random key to `path` with mode 0600, refusing to replace
    /// an existing file.
    pub fn generate(path: &Path) -> Result<(), KeyFileError> {
        use std::io::Write;
        use std::os::unix::fs::OpenOptionsExt;
        let mut master = [0u8; 32];
        getrandom::fill(&mut master).map_err(|e| KeyFileError::Write {
            path: path.to_owned(),
            source: io::Error::other(e.to_string()),
        })?;
        let mut file = fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(path)
            .map_err(|source| {
                if source.kind() == io::ErrorKind::AlreadyExists {
                    KeyFileError::Exists {
                        path: path.to_owned(),
                    }
                } else {
                    KeyFileError::Write {
                        path: path.to_owned(),
                        source,
                    }
                }
            })?;
        let line = format!("{}\n", data_encoding::HEXLOWER.encode(&master));
        file.write_all(line.as_bytes())
            .and_then(|()| file.sync_all())
            .map_err(|source| KeyFileError::Write {
                path: path.to_owned(),
                source,
            })
    }

    /// How many keys the ring holds.
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    /// Always false: a ring holds at least one key.
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// The mark `addrmunge audit` sends on `day` so that the proxy knows the
    /// owner's own audit (never logged as a visit, never caught as a
    /// harvester): only a holder of the key can make it, and it is good for
    /// that day and the next.
    pub fn audit_mark(&self, day: Day) -> String {
        let mac = hmac(&self.keys[0].audit_key, &[&day.number().to_be_bytes()]);
        data_encoding::HEXLOWER.encode(&mac[..AUDIT_MARK_BYTES])
    }

    /// Whether `mark` is [`Self::audit_mark`] of any key for `today` or
    /// yesterday (an audit running over midnight). Constant time.
    pub fn is_audit_mark(&self, mark: &str, today: Day) -> bool {
        let Ok(given) = data_encoding::HEXLOWER_PERMISSIVE.decode(mark.trim().as_bytes()) else {
            return false;
        };
        if given.len() != AUDIT_MARK_BYTES {
            return false;
        }
        let days = [today, Day::from_number(today.number().saturating_sub(1))];
        self.keys.iter().any(|k| {
            days.iter().any(|d| {
                let mut mac =
                    HmacSha256::new_from_slice(&k.audit_key).expect("HMAC takes keys of any length");
                mac.update(&d.number().to_be_bytes());
                mac.verify_truncated_left(&given).is_ok()
            })
        })
    }

    /// The key-id character of the encoding key.
    pub fn current_id(&self) -> char {
        self.keys[0].id_char()
    }

    /// Makes the token for `claims` on the base address `base` (any case) and,
    /// for minted addresses, `label` (empty when there is none).
    pub fn encode(&self, base: &str, label: &str, claims: &Claims) -> String {
        let key = &self.keys[0];
        let mut buf = [0u8; LONG_BYTES];
        let long = matches!(claims.visitor, Some(Visitor::V6(_)));
        let len = if long { LONG_BYTES } else { SHORT_BYTES };
        let block = &mut buf[..len];
        block[0] = claims.type_nibble() << 4;
        block[1..3].copy_from_slice(&claims.day.number().to_be_bytes());
        match claims.visitor {
            Some(Visitor::V4(v4)) => block[3..7].copy_from_slice(&v4.octets()),
            Some(Visitor::V6(v6)) => block[3..11].copy_from_slice(&v6.octets()[..8]),
            None => block[3..5].copy_from_slice(&claims.valid_days.to_be_bytes()),
        }
        encipher(&key.tweak(long, base, label), block);
        let mut out = String::with_capacity(LONG_LEN);
        out.push(key.id_char());
        BASE32.encode_append(block, &mut out);
        out
    }

    /// Checks a token against the base address (any case) and label, and
    /// returns its fields.
    pub fn decode(&self, base: &str, label: &str, token: &str) -> Result<Decoded, TokenError> {
        let t = token.as_bytes();
        let (long, bytes) = match t.len() {
            SHORT_LEN => (false, SHORT_BYTES),
            LONG_LEN => (true, LONG_BYTES),
            _ => return Err(TokenError::Malformed),
        };
        let kid = t[0].to_ascii_lowercase();
        let kid_val = ALPHABET
            .bytes()
            .position(|c| c == kid)
            .ok_or(TokenError::Malformed)? as u8;
        let mut sealed = [0u8; LONG_BYTES];
        let n = BASE32
            .decode_mut(&t[1..], &mut sealed[..bytes])
            .map_err(|_| TokenError::Malformed)?;
        if n != bytes {
            return Err(TokenError::Malformed);
        }
        let mut tried = false;
        for (key_index, key) in self.keys.iter().enumerate() {
            if key.id != kid_val {
                continue;
            }
            tried = true;
            let mut block = sealed;
            let block = &mut block[..bytes];
            decipher(&key.tweak(long, base, label), block);
            if let Some(claims) = parse_block(long, block) {
                return Ok(Decoded { claims, key_index });
            }
        }
        if tried {
            Err(TokenError::Forged)
        } else {
            Err(TokenError::UnknownKey(kid as char))
        }
    }
}

/// Checks the redundancy of a deciphered block and reads its fields.
fn parse_block(long: bool, b: &[u8]) -> Option<Claims> {
    if b[0] & 0x0f != 0 {
        return None;
    }
    let ty = b[0] >> 4;
    let day = Day::from_number(u16::from_be_bytes([b[1], b[2]]));
    if long {
        if b[11..].iter().any(|&x| x != 0) {
            return None;
        }
        let mut octets = [0u8; 16];
        octets[..8].copy_from_slice(&b[3..11]);
        let visitor = Some(Visitor::V6(Ipv6Addr::from(octets)));
        let kind = match ty {
            4 => Kind::Visitor,
            5 => Kind::Trap,
            7 => Kind::Crawler,
            _ => return None,
        };
        Some(Claims {
            kind,
            day,
            visitor,
            valid_days: 0,
        })
    } else {
        if b[7..].iter().any(|&x| x != 0) {
            return None;
        }
        let v4 = Ipv4Addr::new(b[3], b[4], b[5], b[6]);
        match ty {
            1 | 2 | 6 => Some(Claims {
                kind: match ty {
                    1 => Kind::Visitor,
                    2 => Kind::Trap,
                    _ => Kind::Crawler,
                },
                day,
                visitor: Some(Visitor::V4(v4)),
                valid_days: 0,
            }),
            3 if b[5] == 0 && b[6] == 0 => Some(Claims::minted(day, u16::from_be_bytes([b[3], b[4]]))),
            _ => None,
        }
    }
}

/// True when `s` could be a token by its shape alone (length and alphabet);
/// used to tell munged addresses apart without a key.
pub fn looks_like_token(s: &str) -> bool {
    // Any letter, not only the alphabet's: a token with `i l o u` in it is
    // a forged or mistyped ID (to refuse), not a bare address (to accept).
    (s.len() == SHORT_LEN || s.len() == LONG_LEN) && s.bytes().all(|c| c.is_ascii_alphanumeric())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ring() -> KeyRing {
        KeyRing::new(&[[7u8; 32]])
    }

    #[test]
    fn crawler_ids_round_trip_in_both_forms() {
        let r = ring();
        let day: Day = "2026-11-22".parse().unwrap();
        for ip in ["66.249.66.1", "2001:4860:4801:10::1"] {
            let claims = Claims::visit(Kind::Crawler, day, ip.parse().unwrap());
            let t = r.encode("a@b.test", "", &claims);
            let d = r.decode("a@b.test", "", &t).unwrap().claims;
            assert_eq!((d.kind, d.day), (Kind::Crawler, day), "{ip}");
            let other = r.encode(
                "a@b.test",
                "",
                &Claims::visit(Kind::Visitor, day, ip.parse().unwrap()),
            );
            assert_ne!(t, other, "a crawler's ID is not the visitor's");
        }
        assert_eq!("crawler".parse::<Kind>().unwrap(), Kind::Crawler);
    }

    #[test]
    fn lengths_match_the_contract() {
        let r = ring();
        let day: Day = "2026-11-22".parse().unwrap();
        let v4 = r.encode(
            "a@b.test",
            "",
            &Claims::visit(Kind::Visitor, day, "192.0.2.1".parse().unwrap()),
        );
        let v6 = r.encode(
            "a@b.test",
            "",
            &Claims::visit(Kind::Trap, day, "2001:db8::1".parse().unwrap()),
        );
        let m = r.encode("a@b.test", "shop", &Claims::minted(day, 1));
        assert_eq!(v4.len(), SHORT_LEN);
        assert_eq!(v6.len(), LONG_LEN);
        assert_eq!(m.len(), SHORT_LEN);
        for t in [&v4, &v6, &m] {
            assert!(t.bytes().all(|c| ALPHABET.as_bytes().contains(&c)), "{t}");
        }
    }

    #[test]
    fn ipv6_visitors_are_their_slash_64() {
        let r = ring();
        let day = Day::from_number(20_000);
        let a = r.encode(
            "a@b.test",
            "",
            &Claims::visit(Kind::Visitor, day, "2001:db8:1:2:aaaa::1".parse().unwrap()),
        );
        let b = r.encode(
            "a@b.test",
            "",
            &Claims::visit(Kind::Visitor, day, "2001:db8:1:2:ffff::9".parse().unwrap()),
        );
        assert_eq!(a, b);
        let d = r.decode("a@b.test", "", &a).unwrap();
        assert_eq!(d.claims.visitor.unwrap().to_string(), "2001:db8:1:2::/64");
    }

    #[test]
    fn ipv4_mapped_ipv6_is_ipv4() {
        assert_eq!(
            Visitor::from_ip("::ffff:192.0.2.7".parse().unwrap()),
            Visitor::V4("192.0.2.7".parse().unwrap())
        );
    }

    #[test]
    fn key_debug_output_shows_no_key_material() {
        let k = Key::new(&[0xab; 32]);
        let shown = format!("{k:?}");
        assert!(
            !shown.contains("171") && !shown.to_lowercase().contains("abab"),
            "{shown}"
        );
    }
}
