//! What the Exim, Sendmail and OpenSMTPD tests share: the resolver each
//! MTA asks, and the checks every MTA must pass the same way (one
//! decision table, only the words differ): valid, yesterday's, bare and
//! exempt delivered; expired by IP and by day and forged refused at RCPT;
//! a trap accepted-looking, never delivered, its client refused next time.

use std::os::unix::process::CommandExt;
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use super::postfix::day_offset;
use super::{Instance, Running, trap_address, wait_for_port};

/// An MTA's daemon and the resolver it asks; both stop when dropped.
pub struct Pair {
    /// The resolver's instance: its folder holds the MTA's too.
    pub inst: Instance,
    /// The MTA's SMTP port.
    pub smtp: u16,
    /// The resolver's listener the MTA asks.
    pub port: u16,
    resolver: Option<Running>,
    daemon: Child,
}

impl Pair {
    /// The [`resolver`] with `listener`, `extra` and `traps`, and the MTA
    /// daemon `daemon(instance, resolver port, smtp port)` makes ready to
    /// spawn (in a process group of its own); waits for its SMTP port.
    pub fn start(
        listener: &str,
        extra: &str,
        traps: &str,
        daemon: impl FnOnce(&Instance, u16, u16) -> Command,
    ) -> Pair {
        let (inst, resolver, port) = resolver(listener, extra, traps);
        let smtp = super::free_port();
        let daemon = daemon(&inst, port, smtp)
            .process_group(0)
            .stdout(std::process::Stdio::null())
            .spawn()
            .unwrap();
        wait_for_port(smtp, "the MTA");
        Pair {
            inst,
            smtp,
            port,
            resolver: Some(resolver),
            daemon,
        }
    }

    /// Stops the resolver (as in an outage).
    pub fn stop_resolver(&mut self) {
        self.resolver = None;
    }

    /// Starts the resolver again, on the same listener.
    pub fn start_resolver(&mut self) {
        self.resolver = Some(self.inst.start("resolver", &[]));
        self.inst.wait_for(self.port, "resolver");
    }
}

impl Drop for Pair {
    fn drop(&mut self) {
        // MTAs fork per connection, per queue run and per privilege: end
        // the whole process group.
        let _ = Command::new("kill")
            .args(["-KILL", "--", &format!("-{}", self.daemon.id())])
            .status();
        let _ = self.daemon.wait();
    }
}

/// A real MTA started by a test, with the resolver it asks.
pub trait Mta {
    /// The daemons.
    fn pair(&self) -> &Pair;
    /// Everything delivered to `base` so far (an mbox).
    fn mailbox(&self, base: &str) -> String;

    /// The resolver's instance.
    fn inst(&self) -> &Instance {
        &self.pair().inst
    }

    /// The MTA's SMTP port.
    fn smtp(&self) -> u16 {
        self.pair().smtp
    }

    /// Sends one message from `from_ip`; whether it was accepted, and the transcript.
    fn send(&self, from_ip: &str, to: &str) -> (bool, String) {
        super::swaks(self.smtp(), from_ip, to)
    }

    /// [`Instance::cli_ok`].
    fn cli_ok(&self, args: &[&str]) -> String {
        self.inst().cli_ok(args)
    }

    /// Waits (20 s at most) until a message sent to `to` is delivered to `base`.
    fn delivered(&self, to: &str, base: &str) -> bool {
        let start = Instant::now();
        while start.elapsed() < Duration::from_secs(20) {
            if self.mailbox(base).contains(&format!("Subject: to {to}")) {
                return true;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        false
    }
}

/// The resolver for an MTA test: plover.com protected (`*-subscribe`
/// exempt), `listener` (`socketmap` or `exim`) on a free port, `extra`
/// after its `[resolver]` lines and `traps` after `[traps]`; loopback's
/// 127.0.0.1 is never blocked. Its instance, process and port.
pub fn resolver(listener: &str, extra: &str, traps: &str) -> (Instance, Running, u16) {
    let port = super::free_port();
    let inst = Instance::new(&format!(
        "[[protect]]\ndomain = \"plover.com\"\nexempt = [\"*-subscribe\"]\n\
         [resolver]\n{listener} = [\"inet:127.0.0.1:{port}\"]\n{extra}\n\
         [traps]\nnever_block = [\"127.0.0.1/32\"]\nblock_for = \"1h\"\n{traps}\n"
    ));
    let running = inst.start("resolver", &[]);
    inst.wait_for(port, "resolver");
    (inst, running, port)
}

/// `valid` with its last character changed: a forged ID.
pub fn forge(valid: &str) -> String {
    let (l, d) = valid.split_once('@').unwrap();
    let last = if l.ends_with('a') { 'b' } else { 'a' };
    format!("{}{last}@{d}", &l[..l.len() - 1])
}

/// Today's address for 203.0.113.9.
pub fn valid(m: &impl Mta) -> String {
    m.cli_ok(&["encode", "--ip", "203.0.113.9", "mjd@plover.com"])
}

/// Valid, yesterday's, bare (`bare = "accept"`) and exempt addresses are
/// delivered; expired by IP, by day and forged are refused, each
/// transcript passing `refused(address, transcript)`. Today's address.
pub fn delivers_and_refuses(m: &impl Mta, refused: impl Fn(&str, &str) -> bool) -> String {
    let valid = valid(m);
    let yesterday = m.cli_ok(&[
        "encode",
        "--ip",
        "203.0.113.9",
        "--date",
        &day_offset(-1),
        "mjd@plover.com",
    ]);
    for (to, base) in [
        (valid.as_str(), "mjd@plover.com"),
        (yesterday.as_str(), "mjd@plover.com"),
        ("mjd@plover.com", "mjd@plover.com"),
        ("list-subscribe@plover.com", "list-subscribe@plover.com"),
    ] {
        let (ok, t) = m.send("127.0.0.2", to);
        assert!(ok, "{to}: {t}");
        assert!(m.delivered(to, base), "{to} not delivered to {base}");
    }
    let by_ip = m.cli_ok(&["encode", "--ip", "198.51.100.20", "mjd@plover.com"]);
    m.cli_ok(&["expire", "--ip", "198.51.100.20"]);
    let old_day = day_offset(-3);
    let by_day = m.cli_ok(&[
        "encode",
        "--ip",
        "203.0.113.9",
        "--date",
        &old_day,
        "mjd@plover.com",
    ]);
    m.cli_ok(&["expire", "--day", &old_day]);
    let forged = forge(&valid);
    std::thread::sleep(Duration::from_millis(600)); // the rules reach the resolver
    for to in [&by_ip, &by_day, &forged] {
        let (ok, t) = m.send("127.0.0.2", to);
        assert!(!ok && refused(to, &t), "{to} not refused as expected: {t}");
        assert!(!m.mailbox("mjd@plover.com").contains(&format!("Subject: to {to}")));
    }
    valid
}

/// A trap from 127.0.0.66 looks accepted; that client is then refused
/// (its transcript passing `blocked`), 127.0.0.67 is not; the block is
/// listed and both arrivals are in `trace`. The trap address.
pub fn traps_block_their_client(m: &impl Mta, valid: &str, blocked: impl Fn(&str) -> bool) -> String {
    let trap = trap_address(m.inst());
    let (ok, t) = m.send("127.0.0.66", &trap);
    assert!(ok, "a trap must look accepted: {t}");
    let (ok, t) = m.send("127.0.0.66", valid);
    assert!(!ok && blocked(&t), "the trap's client: {t}");
    let (ok, t) = m.send("127.0.0.67", valid);
    assert!(ok, "another client: {t}");
    assert!(m.cli_ok(&["blocks"]).contains("127.0.0.66"));
    let trace = m.cli_ok(&["trace", valid]);
    assert!(
        trace.contains("from 127.0.0.2 (HELO sender.example) sender <spammer@sender.example>")
            && trace.contains("127.0.0.67"),
        "every arrival recorded: {trace}"
    );
    trap
}
