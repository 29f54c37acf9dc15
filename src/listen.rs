//! Listener addresses in Postfix notation (`unix:/path`, `inet:host:port`)
//! and binding them with the narrowest permissions, or adopting the sockets
//! systemd made for them (socket activation, `LISTEN_FDS`), so that a daemon
//! that never holds a privilege can still serve port 80 or a socket in
//! Postfix's queue folder.

use std::net::SocketAddr;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock};

use tokio::net::{TcpListener, UnixListener};

/// One listener address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Listen {
    /// A unix-domain socket at this path.
    Unix(PathBuf),
    /// A TCP address.
    Inet(SocketAddr),
}

/// A bound listener.
#[derive(Debug)]
pub enum Bound {
    /// A unix-domain socket.
    Unix(UnixListener, PathBuf),
    /// A TCP socket.
    Inet(TcpListener),
}

/// Why a listener was refused; each carries the text as written.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ListenError {
    /// `unix:` with a relative path.
    #[error("'{0}': a unix socket needs an absolute path, e.g. unix:/run/addrmunge/map.sock")]
    RelativePath(String),
    /// Neither a unix socket nor a socket address.
    #[error(
        "'{0}' is not a listener; write unix:/path/to.sock or inet:127.0.0.1:10100 (IPv6: inet:[::1]:10100)"
    )]
    Malformed(String),
}

impl Listen {
    /// Parses `unix:/path`, `inet:host:port`, `inet:[::1]:port` or `host:port`.
    pub fn parse(text: &str) -> Result<Listen, ListenError> {
        if let Some(path) = text.strip_prefix("unix:") {
            let p = PathBuf::from(path);
            if !p.is_absolute() {
                return Err(ListenError::RelativePath(text.to_owned()));
            }
            return Ok(Listen::Unix(p));
        }
        let addr = text.strip_prefix("inet:").unwrap_or(text);
        let addr = addr.replace("localhost:", "127.0.0.1:");
        addr.parse::<SocketAddr>()
            .map(Listen::Inet)
            .map_err(|_| ListenError::Malformed(text.to_owned()))
    }

    /// Binds it; a unix socket replaces a stale socket file and gets `mode`
    /// and, when given, an owner and group (names or numbers).
    pub async fn bind(&self, mode: u32, owner: Option<&str>, group: Option<&str>) -> std::io::Result<Bound> {
        match self {
            Listen::Inet(a) => Ok(Bound::Inet(bind_tcp(*a).await?)),
            Listen::Unix(p) => {
                // systemd made it with the unit's SocketMode/SocketUser/SocketGroup: keep those.
                if let Some(l) = take_inherited_unix(p)? {
                    return Ok(Bound::Unix(l, p.clone()));
                }
                if let Ok(meta) = std::fs::symlink_metadata(p) {
                    use std::os::unix::fs::FileTypeExt;
                    if meta.file_type().is_socket() {
                        refuse_if_live(p)?;
                        std::fs::remove_file(p)?;
                    } else {
                        return Err(std::io::Error::new(
                            std::io::ErrorKind::AlreadyExists,
                            format!(
                                "{} exists and is not a socket; refusing to replace it",
                                p.display()
                            ),
                        ));
                    }
                }
                let owners = Owners {
                    uid: owner.map(|o| lookup_id("/etc/passwd", o)).transpose()?,
                    gid: group.map(|g| lookup_id("/etc/group", g)).transpose()?,
                };
                Ok(Bound::Unix(bind_unix_narrow(p, mode, owners)?, p.clone()))
            }
        }
    }
}

/// Who a unix socket is given to; `None` keeps ours.
#[derive(Debug, Clone, Copy)]
struct Owners {
    uid: Option<u32>,
    gid: Option<u32>,
}

/// Binds a unix socket at `p` that no one can reach with wider access than
/// `mode` and `owners` give, not even for a moment: it is made in a fresh
/// folder only we can enter, given its mode and owners there, and renamed
/// into place. Where that folder's path would be too long for a socket
/// address (108 bytes), it is bound in place and its mode set right after.
fn bind_unix_narrow(p: &Path, mode: u32, owners: Owners) -> std::io::Result<UnixListener> {
    static BINDS: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let parent = p.parent().unwrap_or(Path::new("/"));
    let n = BINDS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let private = parent.join(format!(".addrmunge-{}.{n}", std::process::id()));
    let staged = private.join("s");
    if staged.as_os_str().len() >= 108 {
        let l = UnixListener::bind(p)?;
        give(p, mode, owners)?;
        return Ok(l);
    }
    // Left by a process that had our pid and died mid-bind: ours to clear.
    let _ = std::fs::remove_dir_all(&private);
    {
        use std::os::unix::fs::DirBuilderExt;
        std::fs::DirBuilder::new().mode(0o700).create(&private)?;
    }
    let bound = UnixListener::bind(&staged).and_then(|l| {
        give(&staged, mode, owners)?;
        std::fs::rename(&staged, p)?;
        Ok(l)
    });
    let _ = std::fs::remove_dir_all(&private);
    bound
}

fn give(p: &Path, mode: u32, owners: Owners) -> std::io::Result<()> {
    std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode))?;
    if owners.uid.is_some() || owners.gid.is_some() {
        std::os::unix::fs::chown(p, owners.uid, owners.gid)?;
    }
    Ok(())
}

/// A socket file someone still answers on is not stale: replacing it
/// would silently take a running daemon's (a second resolver's) clients.
fn refuse_if_live(p: &Path) -> std::io::Result<()> {
    match std::os::unix::net::UnixStream::connect(p) {
        Ok(_) => Err(std::io::Error::new(
            std::io::ErrorKind::AddrInUse,
            format!(
                "{} is in use: another process answers on it (a resolver already running?); stop it, or listen elsewhere",
                p.display()
            ),
        )),
        Err(e)
            if matches!(
                e.kind(),
                std::io::ErrorKind::ConnectionRefused | std::io::ErrorKind::NotFound
            ) =>
        {
            Ok(())
        }
        Err(e) => Err(std::io::Error::new(
            e.kind(),
            format!(
                "{} exists and cannot be checked ({e}); refusing to replace it",
                p.display()
            ),
        )),
    }
}

impl std::fmt::Display for Listen {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Listen::Unix(p) => write!(f, "unix:{}", p.display()),
            Listen::Inet(a) => write!(f, "inet:{a}"),
        }
    }
}

/// Listening sockets passed by systemd (or `systemd-socket-activate`) and not
/// yet claimed by a configured listener.
#[derive(Default)]
struct Inherited {
    tcp: Vec<std::net::TcpListener>,
    unix: Vec<std::os::unix::net::UnixListener>,
}

/// The inherited sockets, read from the environment once per process: a
/// second read would adopt the same descriptors twice.
fn inherited() -> std::sync::MutexGuard<'static, Inherited> {
    static INHERITED: OnceLock<Mutex<Inherited>> = OnceLock::new();
    INHERITED
        .get_or_init(|| {
            let mut fds = listenfd::ListenFd::from_env();
            let mut found = Inherited::default();
            for i in 0..fds.len() {
                if let Ok(Some(l)) = fds.take_tcp_listener(i) {
                    found.tcp.push(l);
                } else if let Ok(Some(l)) = fds.take_unix_listener(i) {
                    found.unix.push(l);
                } else {
                    tracing::warn!(
                        fd = 3 + i,
                        "systemd passed a descriptor that is not a listening stream socket; ignoring it"
                    );
                }
            }
            Mutex::new(found)
        })
        .lock()
        .unwrap_or_else(|e| e.into_inner())
}

/// Whether an inherited socket bound to `have` serves a listener configured
/// as `want`: the same address, or both a wildcard on the same port (systemd's
/// `ListenStream=80` is `[::]:80`, which also takes IPv4).
fn same_tcp(have: SocketAddr, want: SocketAddr) -> bool {
    have == want || (have.port() == want.port() && have.ip().is_unspecified() && want.ip().is_unspecified())
}

/// A TCP listener on `addr`: the one systemd passed for it, else bound here.
pub async fn bind_tcp(addr: SocketAddr) -> std::io::Result<TcpListener> {
    let taken = {
        let mut inh = inherited();
        let at = inh
            .tcp
            .iter()
            .position(|l| l.local_addr().is_ok_and(|have| same_tcp(have, addr)));
        at.map(|i| inh.tcp.swap_remove(i))
    };
    match taken {
        Some(l) => {
            l.set_nonblocking(true)?;
            tracing::info!(%addr, "using the socket systemd passed");
            TcpListener::from_std(l)
        }
        None => bind_tcp_here(addr).map_err(|e| with_unused_hint(e, &format!("inet:{addr}"))),
    }
}

/// Binds `addr` with SO_REUSEADDR (restarts do not wait out TIME_WAIT) and,
/// for IPv6, IPV6_V6ONLY, as nginx does: `["0.0.0.0:80", "[::]:80"]` then
/// means both families instead of failing with "address in use" on Linux,
/// where a wildcard IPv6 socket would otherwise take IPv4 too.
fn bind_tcp_here(addr: SocketAddr) -> std::io::Result<TcpListener> {
    use socket2::{Domain, Socket, Type};
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, None)?;
    if addr.is_ipv6() {
        socket.set_only_v6(true)?;
    }
    socket.set_reuse_address(true)?;
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    socket.listen(1024)?;
    TcpListener::from_std(socket.into())
}

fn take_inherited_unix(path: &Path) -> std::io::Result<Option<UnixListener>> {
    let taken = {
        let mut inh = inherited();
        let at = inh
            .unix
            .iter()
            .position(|l| l.local_addr().is_ok_and(|a| a.as_pathname() == Some(path)));
        at.map(|i| inh.unix.swap_remove(i))
    };
    match taken {
        Some(l) => {
            l.set_nonblocking(true)?;
            tracing::info!(path = %path.display(), "using the socket systemd passed");
            UnixListener::from_std(l).map(Some)
        }
        None => Ok(None),
    }
}

/// The inherited sockets no configured listener claimed, as `inet:…`/`unix:…`.
pub fn unused_inherited() -> Vec<String> {
    let inh = inherited();
    let tcp = inh
        .tcp
        .iter()
        .filter_map(|l| l.local_addr().ok())
        .map(|a| format!("inet:{a}"));
    let unix = inh.unix.iter().map(|l| {
        match l
            .local_addr()
            .ok()
            .and_then(|a| a.as_pathname().map(Path::to_path_buf))
        {
            Some(p) => format!("unix:{}", p.display()),
            None => "an unnamed unix socket".to_owned(),
        }
    });
    tcp.chain(unix).collect()
}

/// Logs the inherited sockets left unclaimed: a `.socket` unit that does not
/// match the config would otherwise fail silently.
pub fn warn_unused_inherited() {
    for s in unused_inherited() {
        tracing::warn!(socket = %s, "systemd passed a socket no listener in the config uses; make the .socket unit's ListenStream= match the config");
    }
}

/// A failed bind, explained when systemd passed sockets for other addresses.
fn with_unused_hint(e: std::io::Error, want: &str) -> std::io::Error {
    let unused = unused_inherited();
    if unused.is_empty() {
        return e;
    }
    std::io::Error::new(
        e.kind(),
        format!(
            "{e}; systemd passed {} but the config asks for {want}: make ListenStream= in the .socket unit and the config agree",
            unused.join(", ")
        ),
    )
}

/// A user or group id by name (from `/etc/passwd` or `/etc/group`) or number.
pub fn lookup_id(file: &str, name: &str) -> std::io::Result<u32> {
    if let Ok(n) = name.parse() {
        return Ok(n);
    }
    let text = std::fs::read_to_string(file)?;
    text.lines()
        .filter_map(|l| {
            let mut f = l.split(':');
            let n = f.next()?;
            let id = f.nth(1)?.parse().ok()?;
            (n == name).then_some(id)
        })
        .next()
        .ok_or_else(|| std::io::Error::new(std::io::ErrorKind::NotFound, format!("no '{name}' in {file}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn ipv4_and_ipv6_wildcards_share_a_port() {
        let v4 = bind_tcp("0.0.0.0:0".parse().unwrap()).await.unwrap();
        let port = v4.local_addr().unwrap().port();
        // Without IPV6_V6ONLY this is "address in use" on Linux.
        let v6 = bind_tcp(format!("[::]:{port}").parse().unwrap()).await.unwrap();
        assert_eq!(v6.local_addr().unwrap().port(), port);
    }

    #[test]
    fn wildcards_of_either_family_match_a_passed_socket() {
        let a = |s: &str| s.parse::<SocketAddr>().unwrap();
        assert!(same_tcp(a("[::]:80"), a("0.0.0.0:80")));
        assert!(same_tcp(a("127.0.0.1:80"), a("127.0.0.1:80")));
        assert!(!same_tcp(a("127.0.0.1:80"), a("0.0.0.0:80")));
        assert!(!same_tcp(a("[::]:80"), a("0.0.0.0:81")));
    }

    #[tokio::test]
    async fn a_unix_socket_is_bound_with_its_mode_and_leaves_nothing_behind() {
        use std::os::unix::fs::FileTypeExt;
        let dir = tempfile::tempdir().unwrap();
        let short = dir.path().join("r.sock");
        // Too long to stage in a private folder: bound in place.
        let long = dir
            .path()
            .join(format!("{}.sock", "l".repeat(100 - dir.path().as_os_str().len())));
        for (p, mode) in [(&short, 0o600), (&long, 0o660)] {
            let bound = Listen::Unix(p.clone()).bind(mode, None, None).await.unwrap();
            let meta = std::fs::symlink_metadata(p).unwrap();
            assert!(meta.file_type().is_socket());
            assert_eq!(meta.permissions().mode() & 0o7777, mode, "{}", p.display());
            std::os::unix::net::UnixStream::connect(p).unwrap();
            drop(bound);
        }
        let mut left: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        left.sort();
        assert_eq!(left.len(), 2, "only the two sockets: {left:?}");
        assert!(left.iter().all(|f| f.ends_with(".sock")), "{left:?}");
    }

    #[test]
    fn parses_postfix_notation() {
        assert_eq!(
            Listen::parse("inet:[::1]:10100").unwrap(),
            Listen::Inet(a("[::1]:10100"))
        );
        assert_eq!(
            Listen::parse("localhost:10100").unwrap(),
            Listen::Inet(a("127.0.0.1:10100"))
        );
        assert!(
            Listen::parse("unix:relative.sock")
                .unwrap_err()
                .to_string()
                .contains("absolute")
        );
        assert!(Listen::parse("10100").is_err());

        fn a(s: &str) -> SocketAddr {
            s.parse().unwrap()
        }
    }
}
