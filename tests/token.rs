//! The ID contract: round trips, tamper resistance, forgery rate, canonical
//! base32, key rotation and the checked-in test vectors.

use std::net::IpAddr;

use addrmunge::token::{ALPHABET, LONG_LEN, SHORT_LEN, TokenError};
use addrmunge::{Claims, Day, KeyRing, Kind};
use proptest::prelude::*;

fn ring() -> KeyRing {
    KeyRing::new(&[[0x42; 32]])
}

fn arb_claims() -> impl Strategy<Value = (Claims, String)> {
    let ip = prop_oneof![
        any::<[u8; 4]>().prop_map(IpAddr::from),
        any::<[u8; 16]>().prop_map(IpAddr::from),
    ];
    let kind = prop_oneof![Just(Kind::Visitor), Just(Kind::Trap)];
    prop_oneof![
        (kind, any::<u16>(), ip)
            .prop_map(|(k, d, ip)| (Claims::visit(k, Day::from_number(d), ip), String::new())),
        (any::<u16>(), any::<u16>(), "[a-z0-9]{0,16}")
            .prop_map(|(d, v, label)| (Claims::minted(Day::from_number(d), v), label)),
    ]
}

proptest! {
    #[test]
    fn round_trip(
        (claims, label) in arb_claims(),
        local in "[a-z0-9._+-]{1,28}",
        domain in "[a-z0-9-]{1,20}\\.[a-z]{2,6}",
    ) {
        let r = ring();
        let base = format!("{local}@{domain}");
        let t = r.encode(&base, &label, &claims);
        prop_assert!(t.len() == SHORT_LEN || t.len() == LONG_LEN);
        let d = r.decode(&base.to_uppercase(), &label, &t.to_uppercase()).unwrap();
        prop_assert_eq!(d.claims, claims);
        prop_assert_eq!(d.key_index, 0);
        // Deterministic.
        prop_assert_eq!(&r.encode(&base, &label, &claims), &t);
        // Bound to the address and the label.
        let other = format!("x{base}");
        prop_assert!(r.decode(&other, &label, &t).is_err());
        let other_label = format!("{label}x");
        prop_assert!(r.decode(&base, &other_label, &t).is_err());
    }
}

#[test]
fn every_single_character_change_is_rejected() {
    let r = ring();
    let day: Day = "2026-11-22".parse().unwrap();
    let cases = [
        Claims::visit(Kind::Visitor, day, "198.51.100.23".parse().unwrap()),
        Claims::visit(Kind::Trap, day, "2001:db8:5:6::1".parse().unwrap()),
        Claims::minted(day, 1),
    ];
    for claims in cases {
        let t = r.encode("mjd@plover.com", "", &claims);
        let mut checked = 0;
        for i in 0..t.len() {
            for c in ALPHABET.chars().chain("ilouILOU!-".chars()) {
                if t.as_bytes()[i].eq_ignore_ascii_case(&(c as u8)) {
                    continue;
                }
                let mut changed = t.clone().into_bytes();
                changed[i] = c as u8;
                let changed = String::from_utf8(changed).unwrap();
                assert!(
                    r.decode("mjd@plover.com", "", &changed).is_err(),
                    "{t} -> {changed} accepted"
                );
                checked += 1;
            }
        }
        assert!(checked >= t.len() * 40, "{checked}");
    }
}

#[test]
fn a_million_random_tokens_are_all_rejected() {
    // Random tokens carrying the right key id, so every one goes through the
    // cipher and the redundancy check rather than failing on the key id.
    let r = ring();
    let kid = r.current_id();
    let alphabet = ALPHABET.as_bytes();
    let mut state: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut next = || {
        // xorshift64*: reproducible, no extra dependency.
        state ^= state >> 12;
        state ^= state << 25;
        state ^= state >> 27;
        state.wrapping_mul(0x2545_f491_4f6c_dd1d)
    };
    let mut accepted = 0;
    let mut forged = 0;
    for n in 0..1_000_000u32 {
        let len = if n % 4 == 0 { LONG_LEN } else { SHORT_LEN };
        let mut t = String::with_capacity(len);
        t.push(kid);
        for i in 1..len {
            // The last character carries 3 unused bits, which must be zero.
            let mask = if i == len - 1 { 0b11000 } else { 0b11111 };
            t.push(alphabet[(next() & mask) as usize] as char);
        }
        match r.decode("mjd@plover.com", "", &t) {
            Ok(_) => accepted += 1,
            Err(TokenError::Forged) => forged += 1,
            Err(e) => panic!("{t}: {e}"),
        }
    }
    assert_eq!(accepted, 0);
    assert_eq!(forged, 1_000_000);
}

#[test]
fn non_canonical_base32_is_rejected() {
    let r = ring();
    let claims = Claims::visit(
        Kind::Visitor,
        Day::from_number(20_000),
        "192.0.2.1".parse().unwrap(),
    );
    for t in [
        r.encode("a@b.test", "", &claims),
        r.encode(
            "a@b.test",
            "",
            &Claims::visit(
                Kind::Visitor,
                Day::from_number(20_000),
                "2001:db8::1".parse().unwrap(),
            ),
        ),
    ] {
        // 14 and 19 bytes leave 3 unused bits in the last character: setting
        // any of them must make the token invalid, not an alias.
        let last = t.as_bytes()[t.len() - 1];
        let v = ALPHABET.bytes().position(|c| c == last).unwrap();
        assert_eq!(v & 0b111, 0, "canonical encoding has zero trailing bits");
        for bits in 1..8 {
            let mut alias = t.clone().into_bytes();
            *alias.last_mut().unwrap() = ALPHABET.as_bytes()[v | bits];
            let alias = String::from_utf8(alias).unwrap();
            assert_eq!(
                r.decode("a@b.test", "", &alias),
                Err(TokenError::Malformed),
                "{alias}"
            );
        }
    }
}

#[test]
fn rotation_first_key_encodes_all_decode() {
    let old = KeyRing::new(&[[1; 32]]);
    let both = KeyRing::new(&[[2; 32], [1; 32]]);
    let claims = Claims::visit(
        Kind::Visitor,
        Day::from_number(20_500),
        "192.0.2.9".parse().unwrap(),
    );
    let t_old = old.encode("a@b.test", "", &claims);
    let d = both.decode("a@b.test", "", &t_old).unwrap();
    assert_eq!((d.claims, d.key_index), (claims, 1));
    let t_new = both.encode("a@b.test", "", &claims);
    assert_ne!(t_new, t_old);
    assert_eq!(both.decode("a@b.test", "", &t_new).unwrap().key_index, 0);
    // A ring without the old key cannot read old tokens.
    let new_only = KeyRing::new(&[[2; 32]]);
    assert!(new_only.decode("a@b.test", "", &t_old).is_err());
}

#[derive(serde::Deserialize)]
struct Vector {
    key: String,
    base: String,
    label: String,
    kind: String,
    ip: Option<String>,
    day: String,
    valid_days: u16,
    token: String,
}

#[test]
fn test_vectors() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/fixtures/token-vectors.json");
    let vectors: Vec<Vector> = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    assert!(vectors.len() >= 6);
    for v in vectors {
        let key: [u8; 32] = data_encoding::HEXLOWER
            .decode(v.key.as_bytes())
            .unwrap()
            .try_into()
            .unwrap();
        let r = KeyRing::new(&[key]);
        let day: Day = v.day.parse().unwrap();
        let claims = match v.kind.as_str() {
            "minted" => Claims::minted(day, v.valid_days),
            k => Claims::visit(
                if k == "trap" { Kind::Trap } else { Kind::Visitor },
                day,
                v.ip.as_deref().unwrap().parse().unwrap(),
            ),
        };
        assert_eq!(
            r.encode(&v.base, &v.label, &claims),
            v.token,
            "vector for {}",
            v.base
        );
        assert_eq!(r.decode(&v.base, &v.label, &v.token).unwrap().claims, claims);
    }
}
