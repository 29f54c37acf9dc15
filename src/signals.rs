//! The daemons' life cycle: SIGHUP reloads, SIGTERM or SIGINT stops, and
//! systemd's `Type=notify` readiness (`READY=1` once every listener is
//! bound, `RELOADING=1`/`STOPPING=1` around reloads and shutdown).

/// Waits until SIGTERM or SIGINT arrives, calling `reload` on each SIGHUP.
/// Tells systemd the daemon is ready first (when run under it).
pub async fn until_stopped(reload: impl Fn()) -> std::io::Result<()> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut hup = signal(SignalKind::hangup())?;
    let mut term = signal(SignalKind::terminate())?;
    notify("READY=1");
    loop {
        tokio::select! {
            _ = hup.recv() => {
                notify("RELOADING=1");
                reload();
                notify("READY=1");
            }
            _ = term.recv() => break,
            _ = tokio::signal::ctrl_c() => break,
        }
    }
    notify("STOPPING=1");
    Ok(())
}

/// Sends `state` to systemd's notification socket (`$NOTIFY_SOCKET`, a
/// path or an abstract `@name`); does nothing outside systemd. Failures are
/// logged, never fatal: readiness is a courtesy to the service manager.
pub fn notify(state: &str) {
    let Some(target) = std::env::var_os("NOTIFY_SOCKET") else {
        return;
    };
    let result = (|| -> std::io::Result<()> {
        let sock = std::os::unix::net::UnixDatagram::unbound()?;
        let bytes = target.as_encoded_bytes();
        if let Some(name) = bytes.strip_prefix(b"@") {
            use std::os::linux::net::SocketAddrExt;
            let addr = std::os::unix::net::SocketAddr::from_abstract_name(name)?;
            sock.send_to_addr(state.as_bytes(), &addr)?;
        } else {
            sock.send_to(state.as_bytes(), &target)?;
        }
        Ok(())
    })();
    if let Err(e) = result {
        tracing::warn!(error = %e, "cannot notify systemd");
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn notify_reaches_a_notification_socket() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("notify");
        let server = std::os::unix::net::UnixDatagram::bind(&path).unwrap();
        // set_var is unsafe in edition 2024: the variable goes to a child
        // test process instead.
        let out = std::process::Command::new(std::env::current_exe().unwrap())
            .args(["--exact", "signals::tests::child_sends_ready", "--nocapture"])
            .env("NOTIFY_SOCKET", &path)
            .env("ADDRMUNGE_NOTIFY_CHILD", "1")
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let mut buf = [0u8; 64];
        server
            .set_read_timeout(Some(std::time::Duration::from_secs(5)))
            .unwrap();
        let n = server.recv(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"READY=1");
    }

    #[test]
    fn child_sends_ready() {
        if std::env::var_os("ADDRMUNGE_NOTIFY_CHILD").is_some() {
            super::notify("READY=1");
        }
    }
}
