//! IP addresses as text, exactly as `Display` writes them, for less.
//!
//! The proxy writes the visitor's address three times a request (the
//! forwarded headers, the visit log, the access line), and the standard
//! library's IPv4 `Display` goes through the formatting machinery for each
//! of its four numbers: ~1,200 instructions an address, 1.6% of a
//! rewritten request's (`benches/instructions.sh`). Each number's digits
//! here come from `itoa`; IPv6, rare and long, is left to `Display`.

use std::net::{IpAddr, Ipv4Addr};

/// `ip` as its `Display` writes it.
pub fn ip_text(ip: IpAddr) -> String {
    match ip {
        IpAddr::V4(v4) => ipv4_text(v4),
        IpAddr::V6(v6) => v6.to_string(),
    }
}

/// `v4` in dotted-quad form, as its `Display` writes it.
pub fn ipv4_text(v4: Ipv4Addr) -> String {
    let mut out = String::with_capacity(15);
    let mut digits = itoa::Buffer::new();
    for (i, octet) in v4.octets().into_iter().enumerate() {
        if i > 0 {
            out.push('.');
        }
        out.push_str(digits.format(octet));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn the_text_is_what_display_writes(bits: u32, v6: u128) {
            let v4 = Ipv4Addr::from(bits);
            prop_assert_eq!(ipv4_text(v4), v4.to_string());
            prop_assert_eq!(ip_text(IpAddr::V4(v4)), v4.to_string());
            let v6 = IpAddr::V6(v6.into());
            prop_assert_eq!(ip_text(v6), v6.to_string());
        }
    }

    #[test]
    fn the_edges_of_each_number() {
        for (ip, text) in [
            ([0, 0, 0, 0], "0.0.0.0"),
            ([9, 10, 99, 100], "9.10.99.100"),
            ([255; 4], "255.255.255.255"),
        ] {
            assert_eq!(ipv4_text(Ipv4Addr::from(ip)), text);
        }
    }
}
