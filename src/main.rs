//! The `addrmunge` command line: parse arguments, call the library, map
//! errors to exit codes (64 for a bad configuration or key file, 1 for other
//! failures and for `decode` of an address that is not valid, 0 on a broken
//! pipe).

#![forbid(unsafe_code)]

use std::io::{self, Write};
use std::net::IpAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result, bail};
use clap::{Args, Parser, Subcommand, ValueEnum};

use addrmunge::address::{Class, Parsed};
use addrmunge::check::check_recipient;
use addrmunge::config::{self, Config};
use addrmunge::token::LONG_LEN;
use addrmunge::{Claims, Day, KeyRing, Kind, RuleSet, Scope, Status, Store, Visitor, check};

/// Munges your e-mail addresses per visitor and day, and resolves them for Postfix.
#[derive(Parser, Debug)]
#[command(name = "addrmunge", version, about, long_about = None)]
struct Cli {
    /// The config file.
    #[arg(long, global = true, env = "ADDRMUNGE_CONFIG", default_value = config::DEFAULT_PATH)]
    config: PathBuf,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Try everything on loopback: a sample site, the proxy in front of it and
    /// the resolver, with a fresh key and store; prints what to try next.
    Demo {
        /// Keep key, config and store in this folder (default: a temporary one, removed at exit).
        #[arg(long)]
        dir: Option<PathBuf>,
        /// First of five loopback ports: proxy, site, metrics, socketmap, policy (0 = any free).
        #[arg(long, default_value_t = 8080)]
        port: u16,
    },
    /// Run the rewriting HTTP proxy ([proxy] in the config).
    Proxy,
    /// Run the Postfix socketmap and policy service ([resolver] in the config).
    Resolver,
    /// Write a new random key (32 bytes, hex, mode 0600); never overwrites.
    Keygen {
        /// Where to write it.
        #[arg(long)]
        out: PathBuf,
    },
    /// Validate the config and key, and show what is protected.
    CheckConfig {
        /// Also scan these files (pages of the site) as the proxy would:
        /// list the addresses it munges and the protected `user@host` it
        /// leaves alone as not addresses (URL user names, git/scp remotes).
        #[arg(long, value_name = "FILE", num_args = 1..)]
        scan: Vec<PathBuf>,
    },
    /// Print the munged address a visitor gets for ADDRESS.
    Encode {
        /// The visitor's IP address (IPv6 counts as its /64).
        #[arg(long)]
        ip: IpAddr,
        /// The UTC day (default: today).
        #[arg(long)]
        date: Option<Day>,
        /// The kind of ID.
        #[arg(long, value_enum, default_value_t = KindArg::Visitor)]
        kind: KindArg,
        /// A protected address, e.g. guitar-perl-diff@plover.com.
        address: String,
    },
    /// Tell what munged addresses stand for: base address, visitor, day, status.
    Decode {
        /// One JSON object per line.
        #[arg(long)]
        json: bool,
        /// The addresses.
        #[arg(required = true)]
        addresses: Vec<String>,
    },
    /// Add an expiry rule; mail to the IDs it covers is refused.
    Expire(RuleArgs),
    /// Remove an expiry rule.
    Unexpire {
        #[command(flatten)]
        spec: RuleArgs,
        /// Remove rule number N (see `addrmunge rules`).
        #[arg(long, value_name = "N")]
        rule: Option<i64>,
    },
    /// List the expiry rules.
    Rules {
        /// One JSON object per line.
        #[arg(long)]
        json: bool,
    },
    /// Who harvested an address, when, what mail it drew, and how to cut it off.
    Trace {
        /// One JSON object per address.
        #[arg(long)]
        json: bool,
        /// Trace the munged recipients of this message or mbox (To, Cc,
        /// Delivered-To, X-Original-To); `-` reads standard input.
        #[arg(long, value_name = "FILE")]
        message: Option<PathBuf>,
        /// Munged addresses.
        addresses: Vec<String>,
    },
    /// The picture of the last N days: addresses drawing spam, harvesters,
    /// traps, blocks, harvest-to-spam delays.
    Report {
        /// How many days, today included.
        #[arg(long, default_value_t = 30)]
        days: u16,
        /// As JSON.
        #[arg(long)]
        json: bool,
        /// Also write a self-contained HTML page with charts to FILE.
        #[arg(long, value_name = "FILE")]
        html: Option<PathBuf>,
    },
    /// The clients blocked for mailing traps, for other tools.
    Blocks {
        /// plain (one IP per line), postfix-cidr (a cidr: table), rbldnsd (ip4set data).
        #[arg(long, value_enum, default_value_t = BlockFormatArg::Plain)]
        format: BlockFormatArg,
    },
    /// Print shell completions (bash, zsh, fish, elvish, powershell).
    Completions {
        /// The shell.
        shell: clap_complete::Shell,
    },
    /// Print the man page (roff), e.g. `addrmunge manpage > addrmunge.1`.
    Manpage,
    /// Make a `minted` address to hand out yourself: per service (--label)
    /// or dated (--valid).
    Mint {
        /// A protected address.
        address: String,
        /// A word naming who you give it to (1-16 of a-z, 0-9).
        #[arg(long)]
        label: Option<String>,
        /// How long it is accepted: Nd or Nw (1d = today and tomorrow). Default: until expired by a rule.
        #[arg(long, value_name = "DURATION")]
        valid: Option<String>,
        /// The day it is issued (default: today).
        #[arg(long)]
        date: Option<Day>,
    },
}

#[derive(Copy, Clone, Debug, ValueEnum)]
enum BlockFormatArg {
    Plain,
    PostfixCidr,
    Rbldnsd,
}

#[derive(Copy, Clone, Debug, ValueEnum)]
enum KindArg {
    Visitor,
    Trap,
}

#[derive(Args, Debug, Default)]
struct RuleArgs {
    /// Every ID issued on this UTC day (YYYY-MM-DD); with --ip or --cidr, only theirs.
    #[arg(long)]
    day: Option<Day>,
    /// Every ID of this visitor (IPv6: its /64).
    #[arg(long)]
    ip: Option<IpAddr>,
    /// Every ID of visitors in this network (IPv6: /64 or shorter).
    #[arg(long)]
    cidr: Option<ipnet::IpNet>,
    /// One munged address.
    #[arg(long, value_name = "MUNGED")]
    address: Option<String>,
    /// Every ID of one base address.
    #[arg(long, value_name = "ADDRESS")]
    base: Option<String>,
    /// Every ID issued before this day.
    #[arg(long, value_name = "DAY")]
    before: Option<Day>,
    /// Why (shown by `rules`, `decode` and `trace`).
    #[arg(long, default_value = "")]
    reason: String,
}

impl RuleArgs {
    fn is_empty(&self) -> bool {
        self.day.is_none()
            && self.ip.is_none()
            && self.cidr.is_none()
            && self.address.is_none()
            && self.base.is_none()
            && self.before.is_none()
    }
}

/// A bad configuration, key file or argument: exit 64.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
struct UsageError(String);

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(code) => code,
        Err(e) => {
            if e.chain().any(|c| {
                c.downcast_ref::<io::Error>()
                    .is_some_and(|io| io.kind() == io::ErrorKind::BrokenPipe)
            }) {
                return ExitCode::SUCCESS;
            }
            eprintln!("addrmunge: error: {e}");
            for cause in e.chain().skip(1) {
                eprintln!("  caused by: {cause}");
            }
            let usage = e.chain().any(|c| {
                c.is::<UsageError>()
                    || c.is::<addrmunge::ConfigError>()
                    || c.is::<addrmunge::token::KeyFileError>()
            });
            ExitCode::from(if usage { 64 } else { 1 })
        }
    }
}

struct Ctx {
    config: Config,
}

impl Ctx {
    fn load(cli: &Cli) -> Result<Ctx> {
        Ok(Ctx {
            config: Config::load(&cli.config)?,
        })
    }

    fn keys(&self) -> Result<KeyRing> {
        Ok(KeyRing::load(&self.config.key_file)?)
    }

    fn store(&self) -> Result<Store> {
        let path = &self.config.state;
        let new = !path.exists();
        let store = Store::open(path)?;
        if new {
            // Say so: a mistyped path, or a store deleted by accident, must
            // not pass for an empty truth unnoticed.
            eprintln!(
                "addrmunge: note: there was no state store at {}; created a new, empty one",
                path.display()
            );
        }
        Ok(store)
    }

    /// A protected, non-exempt base address, lowercase, or a usage error.
    fn protected_base(&self, address: &str) -> Result<(String, String)> {
        let lower = address.trim().to_ascii_lowercase();
        let (local, domain) = lower
            .rsplit_once('@')
            .ok_or_else(|| UsageError(format!("'{address}' is not an e-mail address")))?;
        match self.config.protection.classify(local, domain) {
            Class::Protected(_) => Ok((local.to_owned(), domain.to_owned())),
            Class::Exempt(_) => Err(UsageError(format!(
                "{lower} is exempt in {}: it is never munged",
                self.config.path.display()
            ))
            .into()),
            Class::Unprotected => Err(UsageError(format!(
                "{lower} is not protected: no [[protect]] entry in {} covers it",
                self.config.path.display()
            ))
            .into()),
        }
    }
}

fn run(cli: Cli) -> Result<ExitCode> {
    let stdout = io::stdout();
    let mut out = stdout.lock();
    match &cli.command {
        Command::Keygen { out: path } => {
            KeyRing::generate(path)?;
            writeln!(out, "wrote a new key to {} (mode 0600)", path.display())?;
        }
        Command::CheckConfig { scan } => {
            let ctx = Ctx::load(&cli)?;
            check_config(&ctx, &mut out)?;
            for path in scan {
                scan_file(&ctx, path, &mut out)?;
            }
        }
        Command::Completions { shell } => {
            use clap::CommandFactory;
            clap_complete::generate(*shell, &mut Cli::command(), "addrmunge", &mut out);
        }
        Command::Manpage => {
            use clap::CommandFactory;
            let cmd = Cli::command();
            clap_mangen::Man::new(cmd.clone()).render(&mut out)?;
            // One section per subcommand, so `man addrmunge` documents every option.
            for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set()) {
                let name = format!("addrmunge-{}", sub.get_name());
                let sub = sub.clone().name(name.clone()).bin_name(name.replace('-', " "));
                writeln!(out, ".SH \"{}\"", name.to_uppercase())?;
                let man = clap_mangen::Man::new(sub);
                man.render_description_section(&mut out)?;
                man.render_synopsis_section(&mut out)?;
                man.render_options_section(&mut out)?;
            }
        }
        Command::Demo { dir, port } => {
            init_logging();
            let exe = std::env::current_exe()
                .map(|p| p.display().to_string())
                .unwrap_or_else(|_| "addrmunge".into());
            drop(out);
            tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()?
                .block_on(addrmunge::demo::run(addrmunge::demo::Options {
                    dir: dir.clone(),
                    port: *port,
                    exe,
                }))?;
            return Ok(ExitCode::SUCCESS);
        }
        Command::Proxy => {
            init_logging();
            let proxy = addrmunge::proxy::Proxy::new(cli.config.clone())?;
            tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()?
                .block_on(proxy.run())?;
        }
        Command::Resolver => {
            init_logging();
            let resolver = addrmunge::resolver::Resolver::start(cli.config.clone())?;
            tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()?
                .block_on(addrmunge::resolver::run(resolver))?;
        }
        Command::Encode {
            ip,
            date,
            kind,
            address,
        } => {
            let ctx = Ctx::load(&cli)?;
            let (local, domain) = ctx.protected_base(address)?;
            let kind = match kind {
                KindArg::Visitor => Kind::Visitor,
                KindArg::Trap => Kind::Trap,
            };
            let claims = Claims::visit(kind, date.unwrap_or_else(Day::today), *ip);
            let token = ctx.keys()?.encode(&format!("{local}@{domain}"), "", &claims);
            writeln!(
                out,
                "{}",
                ctx.config.protection.munge(&local, &domain, "", &token)
            )?;
        }
        Command::Decode { json, addresses } => {
            let ctx = Ctx::load(&cli)?;
            let keys = ctx.keys()?;
            let rules = RuleSet::new(ctx.store()?.rules()?);
            let today = Day::today();
            let mut all_valid = true;
            let delimiters = &ctx.config.resolver.recipient_delimiter;
            for a in addresses {
                // Judged exactly as the resolver judges a recipient.
                let mut v = check_recipient(&keys, &ctx.config.protection, &rules, a, today, delimiters);
                v.address = a.clone();
                all_valid &= v.valid;
                if *json {
                    writeln!(out, "{}", serde_json::to_string(&v)?)?;
                } else {
                    write_verdict(&mut out, &v)?;
                }
            }
            return Ok(if all_valid {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            });
        }
        Command::Trace {
            json,
            message,
            addresses,
        } => {
            let ctx = Ctx::load(&cli)?;
            let keys = ctx.keys()?;
            let store = ctx.store()?;
            let rules = RuleSet::new(store.rules()?);
            let mut list = addresses.clone();
            if let Some(path) = message {
                let text = if path.as_os_str() == "-" {
                    io::read_to_string(io::stdin())?
                } else {
                    let bytes =
                        std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
                    String::from_utf8_lossy(&bytes).into_owned()
                };
                let found = addrmunge::report::message_recipients(&text, &ctx.config.protection);
                if found.is_empty() {
                    bail!(UsageError(format!(
                        "{} has no munged address of ours in To, Cc, Delivered-To or X-Original-To",
                        path.display()
                    )));
                }
                list.extend(found);
            }
            if list.is_empty() {
                bail!(UsageError("give munged addresses, or --message FILE".into()));
            }
            for (i, a) in list.iter().enumerate() {
                let t = addrmunge::report::trace(&keys, &ctx.config.protection, &store, &rules, a)?;
                if *json {
                    writeln!(out, "{}", serde_json::to_string(&t)?)?;
                } else {
                    if i > 0 {
                        writeln!(out)?;
                    }
                    addrmunge::report::write_trace(&mut out, &t)?;
                }
            }
        }
        Command::Report { days, json, html } => {
            let ctx = Ctx::load(&cli)?;
            if *days == 0 {
                bail!(UsageError("--days must be at least 1".into()));
            }
            let r = addrmunge::report::report(&ctx.store()?, *days)?;
            if let Some(path) = html {
                std::fs::write(path, addrmunge::report::html_report(&r))
                    .with_context(|| format!("cannot write {}", path.display()))?;
            }
            if *json {
                writeln!(out, "{}", serde_json::to_string_pretty(&r)?)?;
            } else if html.is_none() {
                addrmunge::report::write_report(&mut out, &r)?;
            } else if let Some(path) = html {
                writeln!(out, "wrote {}", path.display())?;
            }
        }
        Command::Blocks { format } => {
            let ctx = Ctx::load(&cli)?;
            let mut blocks: Vec<(IpAddr, i64)> = ctx
                .store()?
                .blocks(addrmunge::store::now_unix())?
                .into_iter()
                .collect();
            blocks.sort();
            use addrmunge::report::BlockFormat;
            let f = match format {
                BlockFormatArg::Plain => BlockFormat::Plain,
                BlockFormatArg::PostfixCidr => BlockFormat::PostfixCidr,
                BlockFormatArg::Rbldnsd => BlockFormat::Rbldnsd,
            };
            let text = &ctx.config.resolver.block_text;
            let skipped = addrmunge::report::write_blocks(&mut out, &blocks, f, text)?;
            if skipped > 0 {
                eprintln!(
                    "addrmunge: {skipped} IPv6 blocks left out: rbldnsd keeps IPv6 in an ip6trie dataset; use --format plain for them"
                );
            }
        }
        Command::Expire(spec) => {
            let ctx = Ctx::load(&cli)?;
            let scope = scope_of(&ctx, spec)?;
            let (rule, new) = ctx.store()?.expire(&scope, &spec.reason)?;
            if new {
                writeln!(out, "expired: rule {rule}")?;
            } else {
                writeln!(out, "already expired by rule {rule}")?;
            }
        }
        Command::Unexpire { spec, rule } => {
            let ctx = Ctx::load(&cli)?;
            let mut store = ctx.store()?;
            let removed = match (rule, spec.is_empty()) {
                (Some(id), true) => store.remove_rule(*id)?,
                (None, false) => store.unexpire(&scope_of(&ctx, spec)?)?,
                _ => bail!(UsageError(
                    "give either --rule N or the same options the rule was made with".into()
                )),
            };
            match removed {
                Some(r) => writeln!(out, "removed rule {r}")?,
                None => bail!(UsageError("no such rule; `addrmunge rules` lists them".into())),
            }
        }
        Command::Rules { json } => {
            let ctx = Ctx::load(&cli)?;
            let rules = ctx.store()?.rules()?;
            for r in &rules {
                if *json {
                    writeln!(out, "{}", serde_json::to_string(r)?)?;
                } else {
                    writeln!(out, "{r}")?;
                }
            }
            if rules.is_empty() && !json {
                writeln!(out, "no rules: every ID is accepted")?;
            }
        }
        Command::Mint {
            address,
            label,
            valid,
            date,
        } => {
            let ctx = Ctx::load(&cli)?;
            let (local, domain) = ctx.protected_base(address)?;
            let label = label.as_deref().unwrap_or("").to_ascii_lowercase();
            if !label.is_empty() && !addrmunge::address::is_label(&label) {
                bail!(UsageError(format!(
                    "--label '{label}': use 1 to 16 letters and digits, e.g. --label shop"
                )));
            }
            let days = match valid {
                None => 0,
                Some(v) => parse_duration(v)?,
            };
            let sep = ctx.config.protection.separator().len();
            let id_len = addrmunge::token::SHORT_LEN; // a minted ID: no visitor in it
            let len = local.len() + sep + label.len() + usize::from(!label.is_empty()) + id_len;
            if len > addrmunge::address::MAX_LOCAL {
                bail!(UsageError(format!(
                    "the minted local part would be {len} octets, over 64; use a shorter --label"
                )));
            }
            let claims = Claims::minted(date.unwrap_or_else(Day::today), days);
            let token = ctx.keys()?.encode(&format!("{local}@{domain}"), &label, &claims);
            writeln!(
                out,
                "{}",
                ctx.config.protection.munge(&local, &domain, &label, &token)
            )?;
            match claims.last_valid_day() {
                Some(last) => eprintln!("accepted through {last} (UTC)"),
                None => eprintln!("accepted until you expire it"),
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("ADDRMUNGE_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    // ADDRMUNGE_LOG_FORMAT=json: one JSON object per line, for log shippers.
    if std::env::var("ADDRMUNGE_LOG_FORMAT").is_ok_and(|f| f.eq_ignore_ascii_case("json")) {
        tracing_subscriber::fmt()
            .json()
            .with_env_filter(filter)
            .with_writer(io::stderr)
            .init();
        return;
    }
    // Colours only for a person at a terminal, never into log files.
    use std::io::IsTerminal;
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(io::stderr().is_terminal())
        .with_writer(io::stderr)
        .init();
}

fn parse_duration(v: &str) -> Result<u16> {
    let bad = || {
        UsageError(format!(
            "--valid '{v}': write a number of days or weeks, e.g. 1d, 30d, 2w"
        ))
    };
    // The unit is the last character, which need not be one byte.
    let unit = v.chars().next_back().ok_or_else(bad)?;
    let n: u16 = v[..v.len() - unit.len_utf8()].parse().map_err(|_| bad())?;
    let days = match unit {
        'd' => Some(n),
        'w' => n.checked_mul(7),
        _ => None,
    }
    .filter(|&d| d > 0)
    .ok_or_else(bad)?;
    Ok(days)
}

fn scope_of(ctx: &Ctx, a: &RuleArgs) -> Result<Scope> {
    let usage = |m: String| -> anyhow::Error { UsageError(m).into() };
    let scope = match (a.day, a.ip, a.cidr, &a.address, &a.base, a.before) {
        (Some(d), None, None, None, None, None) => Scope::Day(d),
        (None, Some(ip), None, None, None, None) => Scope::Ip(Visitor::from_ip(ip)),
        (Some(d), Some(ip), None, None, None, None) => Scope::IpDay(Visitor::from_ip(ip), d),
        (d, None, Some(net), None, None, None) => Scope::cidr(net, d).map_err(|e| usage(e.to_string()))?,
        (None, None, None, Some(addr), None, None) => {
            let keys = ctx.keys()?;
            let v = check(
                &keys,
                &ctx.config.protection,
                &RuleSet::default(),
                addr,
                Day::today(),
            );
            if v.claims.is_none() {
                return Err(usage(format!(
                    "{addr} is not a munged address of ours ({}); to expire a base address and all its IDs use --base",
                    v.error.as_deref().unwrap_or(&v.status.to_string())
                )));
            }
            Scope::Address(addr.trim().to_ascii_lowercase())
        }
        (None, None, None, None, Some(base), None) => {
            match ctx.config.protection.parse(base) {
                Parsed::Bare(_) => {}
                Parsed::Munged(_) => {
                    return Err(usage(format!("{base} is a munged address; use --address for it")));
                }
                _ => return Err(usage(format!("{base} is not a protected address"))),
            }
            Scope::Base(base.trim().to_ascii_lowercase())
        }
        (None, None, None, None, None, Some(d)) => Scope::Before(d),
        _ => {
            return Err(usage(
                "choose one rule: --day D | --ip IP | --ip IP --day D | --cidr NET [--day D] | --address MUNGED | --base ADDRESS | --before D".into(),
            ));
        }
    };
    Ok(scope)
}

fn write_verdict(out: &mut impl Write, v: &addrmunge::Verdict) -> io::Result<()> {
    write!(out, "{}: {}", v.address.trim(), v.status)?;
    if let Some(o) = &v.original {
        if v.status != Status::Bare {
            write!(out, " -> {o}")?;
        }
    }
    if let Some(k) = v.kind {
        write!(out, " [{k}")?;
        if let Some(ip) = &v.ip {
            write!(out, " {ip}")?;
        }
        if let Some(l) = &v.label {
            write!(out, " label {l}")?;
        }
        if let Some(d) = v.date {
            write!(out, " issued {d}")?;
        }
        if let Some(e) = v.expires {
            write!(out, " valid through {e}")?;
        }
        write!(out, "]")?;
    }
    if v.exempt {
        write!(out, " (exempt)")?;
    }
    if let Some(e) = &v.error {
        write!(out, " — {e}")?;
    }
    writeln!(out)
}

/// What the scanner made of one file, for `check-config --scan`.
#[derive(Default)]
struct Survey {
    munged: Vec<(u64, String)>,
    left: Vec<(u64, String, addrmunge::scan::LeftAlone)>,
}

impl addrmunge::Munger for Survey {
    fn munge(&mut self, f: &addrmunge::Found<'_>, _out: &mut Vec<u8>) {
        self.munged.push((f.offset, format!("{}@{}", f.local, f.domain)));
    }

    fn left_alone(&mut self, f: &addrmunge::Found<'_>, why: addrmunge::scan::LeftAlone) {
        self.left
            .push((f.offset, format!("{}@{}", f.local, f.domain), why));
    }
}

fn scan_file(ctx: &Ctx, path: &std::path::Path, out: &mut impl Write) -> Result<()> {
    let bytes = std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
    let mut survey = Survey::default();
    let matcher = addrmunge::Matcher::new(std::sync::Arc::clone(&ctx.config.protection));
    let mut s = matcher.scanner();
    let mut sink = Vec::new();
    s.feed(&bytes, &mut sink, &mut survey);
    s.finish(&mut sink, &mut survey);
    let line = |at: u64| 1 + memchr::memchr_iter(b'\n', &bytes[..(at as usize).min(bytes.len())]).count();
    writeln!(
        out,
        "scan:      {}: {} address{} munged, {} left alone",
        path.display(),
        survey.munged.len(),
        if survey.munged.len() == 1 { "" } else { "es" },
        survey.left.len()
    )?;
    for (at, address) in &survey.munged {
        writeln!(out, "  line {:<6} munged      {address}", line(*at))?;
    }
    for (at, address, why) in &survey.left {
        writeln!(out, "  line {:<6} left alone  {address}: {why}", line(*at))?;
    }
    Ok(())
}

fn check_config(ctx: &Ctx, out: &mut impl Write) -> Result<()> {
    let c = &ctx.config;
    let keys = ctx
        .keys()
        .with_context(|| format!("checking key_file of {}", c.path.display()))?;
    writeln!(out, "config:    {}", c.path.display())?;
    writeln!(
        out,
        "key file:  {} ({} key{}, encoding key id '{}')",
        c.key_file.display(),
        keys.len(),
        if keys.len() == 1 { "" } else { "s" },
        keys.current_id()
    )?;
    // A bare file name (a config in the current folder) is in ".".
    let state_dir = c
        .state
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(std::path::Path::new("."));
    if !state_dir.is_dir() {
        bail!(UsageError(format!(
            "{}: state: the folder {} does not exist; create it (mkdir -p) or point state elsewhere",
            c.path.display(),
            state_dir.display()
        )));
    }
    writeln!(out, "state:     {}", c.state.display())?;
    let sep = c.protection.separator();
    writeln!(
        out,
        "separator: '{sep}' (munged local parts grow by up to {} octets)",
        sep.len() + LONG_LEN
    )?;
    writeln!(out, "protected:")?;
    let day = Day::today();
    for e in c.protection.entries() {
        write!(out, "  {}@{}", e.local.as_str(), e.domain)?;
        if !e.exempt.is_empty() {
            let ex: Vec<&str> = e.exempt.iter().map(|g| g.as_str()).collect();
            write!(out, "  except {}", ex.join(", "))?;
        }
        if let Some(d) = &e.deliver_to {
            write!(out, "  delivered to {d}")?;
        }
        writeln!(out)?;
        let sample_local = if e.local.is_literal() {
            e.local.as_str().to_owned()
        } else {
            "someone".to_owned()
        };
        if let Class::Protected(_) = c.protection.classify(&sample_local, &e.domain) {
            let base = format!("{sample_local}@{}", e.domain);
            let t = keys.encode(
                &base,
                "",
                &Claims::visit(Kind::Visitor, day, "192.0.2.1".parse()?),
            );
            writeln!(
                out,
                "    e.g. {base} -> {}",
                c.protection.munge(&sample_local, &e.domain, "", &t)
            )?;
        }
    }
    for w in &c.warnings {
        writeln!(out, "note: {w}")?;
    }
    writeln!(out, "ok")?;
    Ok(())
}
