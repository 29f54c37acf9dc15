//! Listener addresses in Postfix notation (`unix:/path`, `inet:host:port`)
//! and binding them with the narrowest permissions.

use std::net::SocketAddr;
use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;

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

impl Listen {
    /// Parses `unix:/path`, `inet:host:port`, `inet:[::1]:port` or `host:port`.
    pub fn parse(text: &str) -> Result<Listen, String> {
        if let Some(path) = text.strip_prefix("unix:") {
            let p = PathBuf::from(path);
            if !p.is_absolute() {
                return Err(format!(
                    "'{text}': a unix socket needs an absolute path, e.g. unix:/run/addrmunge/map.sock"
                ));
            }
            return Ok(Listen::Unix(p));
        }
        let addr = text.strip_prefix("inet:").unwrap_or(text);
        let addr = addr.replace("localhost:", "127.0.0.1:");
        addr.parse::<SocketAddr>().map(Listen::Inet).map_err(|_| {
            format!("'{text}' is not a listener; write unix:/path/to.sock or inet:127.0.0.1:10100 (IPv6: inet:[::1]:10100)")
        })
    }

    /// Binds it; a unix socket replaces a stale socket file and gets `mode`
    /// and, when given, an owner and group (names or numbers).
    pub async fn bind(&self, mode: u32, owner: Option<&str>, group: Option<&str>) -> std::io::Result<Bound> {
        match self {
            Listen::Inet(a) => Ok(Bound::Inet(TcpListener::bind(a).await?)),
            Listen::Unix(p) => {
                if let Ok(meta) = std::fs::symlink_metadata(p) {
                    use std::os::unix::fs::FileTypeExt;
                    if meta.file_type().is_socket() {
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
                let l = UnixListener::bind(p)?;
                std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode))?;
                if owner.is_some() || group.is_some() {
                    let uid = owner.map(|o| lookup_id("/etc/passwd", o)).transpose()?;
                    let gid = group.map(|g| lookup_id("/etc/group", g)).transpose()?;
                    std::os::unix::fs::chown(p, uid, gid)?;
                }
                Ok(Bound::Unix(l, p.clone()))
            }
        }
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
