//! The resolver's wire protocols as a client speaks them: netstrings for
//! the socketmap.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

/// `data` framed as a netstring.
pub fn netstring(data: &[u8]) -> Vec<u8> {
    let mut v = format!("{}:", data.len()).into_bytes();
    v.extend_from_slice(data);
    v.push(b',');
    v
}

/// Reads one netstring; its data as text. Panics on anything else.
pub fn read_netstring(r: &mut impl Read) -> String {
    let mut len = String::new();
    let mut b = [0u8; 1];
    loop {
        r.read_exact(&mut b).unwrap();
        if b[0] == b':' {
            break;
        }
        len.push(b[0] as char);
    }
    let mut buf = vec![0; len.parse::<usize>().unwrap() + 1];
    r.read_exact(&mut buf).unwrap();
    assert_eq!(buf.pop(), Some(b','));
    String::from_utf8(buf).unwrap()
}

/// One socketmap query on an open connection; the answer.
pub fn query(s: &mut (impl Read + Write), q: &str) -> String {
    s.write_all(&netstring(q.as_bytes())).unwrap();
    read_netstring(s)
}

/// One socketmap query on a new connection to the loopback `port`.
pub fn socketmap(port: u16, q: &str) -> String {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    query(&mut s, q)
}
