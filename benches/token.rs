//! Token encode and decode cost (ns/op).

use std::hint::black_box;

use addrmunge::{Claims, Day, KeyRing, Kind};
use criterion::{Criterion, criterion_group, criterion_main};

fn bench(c: &mut Criterion) {
    let ring = KeyRing::new(&[[3; 32]]);
    let day = Day::from_number(20_779);
    let v4 = Claims::visit(Kind::Visitor, day, "203.0.113.9".parse().unwrap());
    let v6 = Claims::visit(Kind::Visitor, day, "2001:db8::1".parse().unwrap());
    let t4 = ring.encode("guitar-perl-diff@plover.com", "", &v4);
    let t6 = ring.encode("guitar-perl-diff@plover.com", "", &v6);
    let mut g = c.benchmark_group("token");
    g.bench_function("encode ipv4", |b| {
        b.iter(|| ring.encode(black_box("guitar-perl-diff@plover.com"), "", &v4))
    });
    g.bench_function("decode ipv4", |b| {
        b.iter(|| ring.decode(black_box("guitar-perl-diff@plover.com"), "", &t4))
    });
    g.bench_function("decode ipv6", |b| {
        b.iter(|| ring.decode(black_box("guitar-perl-diff@plover.com"), "", &t6))
    });
    g.bench_function("decode forged", |b| {
        let mut forged = t4.clone().into_bytes();
        forged[5] = if forged[5] == b'a' { b'b' } else { b'a' };
        let forged = String::from_utf8(forged).unwrap();
        b.iter(|| ring.decode(black_box("guitar-perl-diff@plover.com"), "", &forged))
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
