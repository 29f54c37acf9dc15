//! The daemons' signal handling: SIGHUP reloads, SIGTERM or SIGINT stops.

/// Waits until SIGTERM or SIGINT arrives, calling `reload` on each SIGHUP.
pub async fn until_stopped(reload: impl Fn()) -> std::io::Result<()> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut hup = signal(SignalKind::hangup())?;
    let mut term = signal(SignalKind::terminate())?;
    loop {
        tokio::select! {
            _ = hup.recv() => reload(),
            _ = term.recv() => return Ok(()),
            _ = tokio::signal::ctrl_c() => return Ok(()),
        }
    }
}
