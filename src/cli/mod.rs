//! The commands: their arguments (clap), the context they load, and the
//! dispatch to one module per group: [`check`] (check-config), [`docs`]
//! (completions, man page), [`serve`] (demo, proxy, resolver),
//! [`addresses`] (encode, decode, mint), [`rules`] (expire, unexpire,
//! rules), [`forensics`] (trace, report, blocks) and [`audit`].

mod addresses;
mod audit;
mod check;
mod docs;
mod forensics;
mod log_fields;
mod log_sink;
mod log_time;
mod rules;
mod serve;
mod store;

use std::io::{self, Write};
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Result;
use clap::{Args, Parser, Subcommand, ValueEnum};

use addrmunge::address::Class;
use addrmunge::config::{self, Config};
use addrmunge::{Day, KeyRing, Store, StoreError};

/// Munges your e-mail addresses per visitor and day, and resolves them for your mail server.
#[derive(Parser, Debug)]
#[command(name = "addrmunge", version, about, long_about = None)]
pub struct Cli {
    /// The config file.
    #[arg(long, global = true, env = "ADDRMUNGE_CONFIG", default_value = config::DEFAULT_PATH)]
    pub config: PathBuf,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
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
    /// Run the socketmap, policy and Exim services ([resolver] in the config).
    Resolver,
    /// Run as OpenSMTPD's filter (`filter "addrmunge" proc-exec "…"`): ask
    /// the resolver at each RCPT; reads no config.
    OpensmtpdFilter {
        /// The resolver's socketmap listener.
        #[arg(long, default_value = "inet:127.0.0.1:10100")]
        resolver: String,
        /// Where trap mail is rewritten to; alias it to /dev/null.
        #[arg(long, default_value = "addrmunge-trap@localhost")]
        trap_to: String,
    },
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
    ///
    /// Exit status 0 when all are valid, 1 when one is not, 75 when the store
    /// cannot be reached and the key alone says valid (no rule was checked).
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
    /// The state store itself: least-privilege grants for a shared
    /// database, and pruning past `retention`.
    Store {
        #[command(subcommand)]
        what: StoreCommand,
    },
    /// Is every page covered? Crawls the site through the proxy as a
    /// harvester would and reports every protected address it can read.
    ///
    /// Each page (and each script it loads) is read in every way today's
    /// harvesters read pages: raw (the page as served; entities, %40 and
    /// \u0040 undone), tags (text content: tags and comments dropped),
    /// words ([at], (at), " at ", {at}, _at_, -at-, " @ ", arroba, [dot],
    /// " dot ", " . ", punkt...),
    /// cfemail (Cloudflare's data-cfemail XOR), base64 (atob), rot13
    /// (znvygb:), zero-width (zero-width characters removed), fullwidth
    /// (＠ and fullwidth letters), combined (tags, zero-width, fullwidth and
    /// words in a row), and with --render the DOM after scripts ran.
    ///
    /// Exit status 0 when covered; 1 when a protected address can be read
    /// in clear, or a munged address is not valid, not today's or not a
    /// visitor's; 2 when no page could be fetched.
    Audit(AuditArgs),
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

#[derive(Subcommand, Debug)]
pub enum StoreCommand {
    /// Print the GRANTs that give the proxy's and the resolver's roles
    /// only their part of a PostgreSQL store (making the schema first).
    Grants {
        /// The role the proxies connect as.
        #[arg(long, default_value = "addrmunge_proxy")]
        proxy_role: String,
        /// The role the resolvers connect as.
        #[arg(long, default_value = "addrmunge_resolver")]
        resolver_role: String,
    },
    /// Delete visits, arrivals and ended blocks past `retention` (the proxy
    /// does this itself where its role may; run it daily where not).
    Prune,
    /// Copy everything from one store into another (a SQLite file into
    /// PostgreSQL, or back); what the destination has already is kept, so
    /// running it again adds nothing.
    Copy {
        /// The store to read: a path or a postgresql:// URL.
        from: String,
        /// The store to add to (made if need be): a path or a URL.
        to: String,
    },
}

#[derive(Args, Debug)]
pub struct AuditArgs {
    /// Where to start (the proxy's address, e.g. http://127.0.0.1:8080/);
    /// only links to the same origins are followed.
    #[arg(required = true)]
    pub urls: Vec<url::Url>,
    /// Links followed from a start page, at most.
    #[arg(long, default_value_t = 5)]
    pub depth: u32,
    /// Pages and scripts fetched, at most.
    #[arg(long, default_value_t = 500)]
    pub max_pages: usize,
    /// Requests at once.
    #[arg(long, default_value_t = 2)]
    pub concurrency: usize,
    /// Pause after each round of requests, in milliseconds.
    #[arg(long, default_value_t = 100)]
    pub delay_ms: u64,
    /// Obey robots.txt (harvesters do not, so by default neither does the audit).
    #[arg(long)]
    pub robots: bool,
    /// Also render each HTML page in headless Chromium and read the DOM
    /// after its scripts ran.
    #[arg(long)]
    pub render: bool,
    /// The Chromium to render with (default: chromium, chromium-browser,
    /// google-chrome on the PATH).
    #[arg(long, value_name = "PATH")]
    pub chromium: Option<PathBuf>,
    /// Extra CA certificates (PEM) to trust for https:// URLs.
    #[arg(long, value_name = "FILE")]
    pub ca: Option<PathBuf>,
    /// Seconds to wait for each page.
    #[arg(long, default_value_t = 20)]
    pub timeout: u64,
    /// As JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(Copy, Clone, Debug, ValueEnum)]
pub enum BlockFormatArg {
    Plain,
    PostfixCidr,
    Rbldnsd,
}

#[derive(Copy, Clone, Debug, ValueEnum)]
pub enum KindArg {
    Visitor,
    Trap,
    /// A search engine's crawler (delivered; trace suggests --address first).
    Crawler,
}

#[derive(Args, Debug, Default)]
pub struct RuleArgs {
    /// Every ID issued on this UTC day (YYYY-MM-DD); with --ip or --cidr, only theirs.
    #[arg(long)]
    pub day: Option<Day>,
    /// Every ID of this visitor (IPv6: its /64).
    #[arg(long)]
    pub ip: Option<IpAddr>,
    /// Every ID of visitors in this network (IPv6: /64 or shorter).
    #[arg(long)]
    pub cidr: Option<ipnet::IpNet>,
    /// One munged address.
    #[arg(long, value_name = "MUNGED")]
    pub address: Option<String>,
    /// Every ID of one base address.
    #[arg(long, value_name = "ADDRESS")]
    pub base: Option<String>,
    /// Every ID issued before this day.
    #[arg(long, value_name = "DAY")]
    pub before: Option<Day>,
    /// Why (shown by `rules`, `decode` and `trace`).
    #[arg(long, default_value = "")]
    pub reason: String,
}

impl RuleArgs {
    pub fn is_empty(&self) -> bool {
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
pub struct UsageError(pub String);

/// What every command that reads the config starts from.
pub struct Ctx {
    pub config: Config,
}

impl Ctx {
    pub fn load(path: &Path) -> Result<Ctx> {
        Ok(Ctx {
            config: Config::load(path)?,
        })
    }

    pub fn keys(&self) -> Result<KeyRing> {
        Ok(KeyRing::load(&self.config.key_file)?)
    }

    pub fn store(&self) -> Result<Store> {
        let at = &self.config.state;
        match Store::open_existing(at) {
            Err(StoreError::Missing(_)) => {}
            other => return Ok(other?),
        }
        let store = Store::open(at)?;
        // Say so: a mistyped path, or a store deleted by accident, must
        // not pass for an empty truth unnoticed.
        eprintln!("addrmunge: note: there was no state store at {at}; created a new, empty one");
        Ok(store)
    }

    /// A protected, non-exempt base address, lowercase, or a usage error.
    pub fn protected_base(&self, address: &str) -> Result<(String, String)> {
        let lower = address.trim().to_ascii_lowercase();
        let (local, domain) = lower
            .rsplit_once('@')
            .ok_or_else(|| UsageError(format!("'{address}' is not an e-mail address")))?;
        // An international domain as a page shows it: the ASCII form.
        let domain = self.config.protection.ascii_domain(domain);
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

/// Runs one command; the exit code is the command's when it has one.
pub fn run(cli: Cli) -> Result<ExitCode> {
    let stdout = io::stdout();
    let mut out = stdout.lock();
    let load = || Ctx::load(&cli.config);
    match &cli.command {
        Command::Keygen { out: path } => {
            KeyRing::generate(path)?;
            writeln!(out, "wrote a new key to {} (mode 0600)", path.display())?;
        }
        Command::CheckConfig { scan } => check::check_config(&load()?, scan, &mut out)?,
        Command::Completions { shell } => docs::completions(*shell, &mut out),
        Command::Manpage => docs::manpage(&mut out)?,
        Command::Demo { dir, port } => {
            // The demo prints as it goes.
            drop(out);
            serve::demo(dir.clone(), *port)?;
        }
        Command::Proxy => serve::proxy(&cli.config)?,
        Command::Resolver => serve::resolver(&cli.config)?,
        Command::OpensmtpdFilter { resolver, trap_to } => serve::opensmtpd_filter(resolver, trap_to)?,
        Command::Encode {
            ip,
            date,
            kind,
            address,
        } => addresses::encode(&load()?, *ip, *date, *kind, address, &mut out)?,
        Command::Decode { json, addresses } => {
            return addresses::decode(&load()?, *json, addresses, &mut out);
        }
        Command::Mint {
            address,
            label,
            valid,
            date,
        } => addresses::mint(
            &load()?,
            address,
            label.as_deref(),
            valid.as_deref(),
            *date,
            &mut out,
        )?,
        Command::Trace {
            json,
            message,
            addresses,
        } => forensics::trace(&load()?, *json, message.as_deref(), addresses, &mut out)?,
        Command::Report { days, json, html } => {
            forensics::report(&load()?, *days, *json, html.as_deref(), &mut out)?
        }
        Command::Blocks { format } => forensics::blocks(&load()?, *format, &mut out)?,
        Command::Expire(spec) => rules::expire(&load()?, spec, &mut out)?,
        Command::Unexpire { spec, rule } => rules::unexpire(&load()?, spec, *rule, &mut out)?,
        Command::Rules { json } => rules::list(&load()?, *json, &mut out)?,
        Command::Store { what } => store::run(&load()?, what, &mut out)?,
        Command::Audit(args) => return audit::run(&load()?, args, &mut out),
    }
    Ok(ExitCode::SUCCESS)
}
