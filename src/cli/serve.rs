//! `demo`, `proxy`, `resolver` and `opensmtpd-filter`: the commands that
//! run daemons, with logging to standard error.

use std::io;
use std::path::{Path, PathBuf};

use anyhow::Result;

use super::log_sink::{Flush, Sink};
use super::log_time::Timestamps;

/// The demo: a sample site, the proxy and the resolver on loopback.
pub fn demo(dir: Option<PathBuf>, port: u16) -> Result<()> {
    let _log = init_logging();
    let exe = std::env::current_exe()
        .map(|p| p.display().to_string())
        .unwrap_or_else(|_| "addrmunge".into());
    runtime()?.block_on(addrmunge::demo::run(addrmunge::demo::Options { dir, port, exe }))
}

/// The rewriting proxy, until SIGTERM.
pub fn proxy(config: &Path) -> Result<()> {
    let _log = init_logging();
    let proxy = addrmunge::proxy::Proxy::new(config.to_owned())?;
    runtime()?.block_on(proxy.run())
}

/// The socketmap and policy service, until SIGTERM.
pub fn resolver(config: &Path) -> Result<()> {
    let _log = init_logging();
    let resolver = addrmunge::resolver::Resolver::start(config.to_owned())?;
    runtime()?.block_on(addrmunge::resolver::run(resolver))
}

/// OpenSMTPD's filter, until OpenSMTPD closes its standard input.
pub fn opensmtpd_filter(resolver: &str, trap_to: &str) -> Result<()> {
    let _log = init_logging();
    let resolver = addrmunge::listen::Listen::parse(resolver)?;
    if !trap_to.contains('@') {
        anyhow::bail!("--trap-to '{trap_to}' is not an address; e.g. --trap-to addrmunge-trap@localhost");
    }
    let opts = addrmunge::smtpd_filter::Options {
        resolver,
        trap_to: trap_to.to_owned(),
        timeout: std::time::Duration::from_secs(5),
    };
    let mut filter = addrmunge::smtpd_filter::Filter::new(opts);
    Ok(filter.run(io::stdin().lock(), io::stdout().lock())?)
}

fn runtime() -> io::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread().enable_all().build()
}

/// Logging to standard error for a daemon; hold the guard while it runs:
/// dropping it writes the access lines still gathered.
fn init_logging() -> Flush {
    use std::io::IsTerminal;
    let filter = tracing_subscriber::EnvFilter::try_from_env("ADDRMUNGE_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    // A person at a terminal sees every line at once; into a file or a
    // pipe the access lines are written in batches (see log_sink).
    let terminal = io::stderr().is_terminal();
    let (sink, flush) = Sink::start(!terminal);
    // ADDRMUNGE_LOG_FORMAT=json: one JSON object per line, for log shippers.
    if std::env::var("ADDRMUNGE_LOG_FORMAT").is_ok_and(|f| f.eq_ignore_ascii_case("json")) {
        tracing_subscriber::fmt()
            .json()
            .with_timer(Timestamps)
            .with_env_filter(filter)
            .with_writer(sink)
            .init();
        return flush;
    }
    // Colours only for a person at a terminal, never into log files; the
    // same text without them written for less (a line for every request).
    let text = tracing_subscriber::fmt()
        .with_timer(Timestamps)
        .with_env_filter(filter)
        .with_writer(sink);
    if terminal {
        text.with_ansi(true).init();
    } else {
        text.with_ansi(false)
            .fmt_fields(super::log_fields::PlainFields)
            .init();
    }
    flush
}
