//! `mycontainer pull|push|login|logout`: parse and call into `crate::registry`.

use std::io::{BufRead, IsTerminal, Write};

use anyhow::{bail, Context};
use clap::Args;
use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use mycontainer_store::Progress;

use super::Ctx;
use crate::registry::auth::{AuthFile, Credentials};
use crate::registry::client::{Client, ClientOptions};
use crate::registry::pull::{pull as pull_image, PullOptions};
use crate::registry::push::{push as push_image, LayerCompression, PushOptions};
use crate::registry::reference::{normalize_registry, DOCKER_HUB};
use crate::registry::{RegistryRef, Reporter};

#[derive(Args, Debug)]
pub struct PullArgs {
    /// Image to pull: NAME[:TAG], REGISTRY/REPO[:TAG] or REPO@sha256:DIGEST
    pub reference: String,
    /// Allow plain HTTP or unverified TLS for a registry that is not on this machine
    #[arg(long)]
    pub insecure: bool,
}

#[derive(Args, Debug)]
pub struct PushArgs {
    /// [SOURCE] TARGET: the local image (default: TARGET itself) and REGISTRY/REPO:TAG
    #[arg(required = true, num_args = 1..=2, value_names = ["SOURCE", "TARGET"])]
    pub images: Vec<String>,
    /// How to compress layers stored uncompressed
    #[arg(long, value_enum, default_value = "gzip")]
    pub compression: LayerCompression,
    /// Allow plain HTTP or unverified TLS for a registry that is not on this machine
    #[arg(long)]
    pub insecure: bool,
}

#[derive(Args, Debug)]
pub struct LoginArgs {
    /// Registry host[:port] (default: Docker Hub)
    pub registry: Option<String>,
    #[arg(short, long)]
    pub username: Option<String>,
    /// Password (visible in the process list: prefer --password-stdin)
    #[arg(short, long, conflicts_with = "password_stdin")]
    pub password: Option<String>,
    /// Read the password from standard input
    #[arg(long)]
    pub password_stdin: bool,
    /// Allow plain HTTP or unverified TLS for a registry that is not on this machine
    #[arg(long)]
    pub insecure: bool,
}

#[derive(Args, Debug)]
pub struct LogoutArgs {
    /// Registry host[:port] (default: Docker Hub)
    pub registry: Option<String>,
}

pub fn pull(ctx: &Ctx, args: PullArgs) -> anyhow::Result<i32> {
    let reference = RegistryRef::parse(&args.reference)?;
    let store = ctx.store()?;
    let reporter = TerminalReporter::new(ctx.quiet);
    let image = pull_image(
        &store,
        &reference,
        &PullOptions {
            insecure: args.insecure,
        },
        &reporter,
    )?;
    reporter.done();
    println!("{}", image.id);
    Ok(0)
}

pub fn push(ctx: &Ctx, args: PushArgs) -> anyhow::Result<i32> {
    let (source, target) = match args.images.as_slice() {
        [target] => (target.clone(), target.clone()),
        [source, target] => (source.clone(), target.clone()),
        _ => bail!("push takes [SOURCE] TARGET"),
    };
    let target = RegistryRef::parse(&target)?;
    let store = ctx.store()?;
    let reporter = TerminalReporter::new(ctx.quiet);
    let digest = push_image(
        &store,
        &source,
        &target,
        &PushOptions {
            insecure: args.insecure,
            compression: args.compression,
        },
        &reporter,
    )?;
    reporter.done();
    println!("{digest}");
    Ok(0)
}

pub fn login(ctx: &Ctx, args: LoginArgs) -> anyhow::Result<i32> {
    let registry = normalize_registry(args.registry.as_deref().unwrap_or(DOCKER_HUB));
    let username = match args.username {
        Some(username) => username,
        None => prompt("Username: ", true)?,
    };
    let password = match (args.password, args.password_stdin) {
        (Some(password), _) => password,
        (None, true) => {
            let mut line = String::new();
            std::io::stdin()
                .lock()
                .read_line(&mut line)
                .context("cannot read the password from standard input")?;
            line.trim_end_matches(['\n', '\r']).to_string()
        }
        (None, false) => prompt("Password: ", false)?,
    };
    if username.is_empty() || password.is_empty() {
        bail!("cannot log in to {registry}: the username and password must not be empty");
    }
    let credentials = Credentials { username, password };
    let client = Client::new(
        &registry,
        "",
        Some(credentials.clone()),
        ClientOptions {
            insecure: args.insecure,
            push: false,
            mount_from: Vec::new(),
        },
    )?;
    client
        .ping()
        .with_context(|| format!("cannot log in to {registry}"))?;
    let mut file = AuthFile::load(&ctx.root)?;
    file.set(&registry, &credentials);
    file.save()?;
    if !ctx.quiet {
        println!("Login Succeeded");
    }
    Ok(0)
}

pub fn logout(ctx: &Ctx, args: LogoutArgs) -> anyhow::Result<i32> {
    let registry = normalize_registry(args.registry.as_deref().unwrap_or(DOCKER_HUB));
    let mut file = AuthFile::load(&ctx.root)?;
    if file.remove(&registry) {
        file.save()?;
        if !ctx.quiet {
            println!("Removing login credentials for {registry}");
        }
    } else if !ctx.quiet {
        println!("Not logged in to {registry}");
    }
    Ok(0)
}

/// Asks on the terminal; the password without echo.
fn prompt(label: &str, echo: bool) -> anyhow::Result<String> {
    let stdin = std::io::stdin();
    if !stdin.is_terminal() {
        bail!(
            "no terminal to ask for the {}: give it with {}",
            label.trim_end_matches([':', ' ']).to_lowercase(),
            if echo { "-u" } else { "--password-stdin" }
        );
    }
    eprint!("{label}");
    std::io::stderr().flush()?;
    let saved = if echo {
        None
    } else {
        let saved =
            nix::sys::termios::tcgetattr(&stdin).context("cannot read terminal settings")?;
        let mut quiet = saved.clone();
        quiet
            .local_flags
            .remove(nix::sys::termios::LocalFlags::ECHO);
        nix::sys::termios::tcsetattr(&stdin, nix::sys::termios::SetArg::TCSANOW, &quiet)
            .context("cannot turn off terminal echo")?;
        Some(saved)
    };
    let mut line = String::new();
    let read = stdin.lock().read_line(&mut line);
    if let Some(saved) = saved {
        let _ = nix::sys::termios::tcsetattr(&stdin, nix::sys::termios::SetArg::TCSANOW, &saved);
        eprintln!();
    }
    read.context("cannot read from the terminal")?;
    Ok(line.trim_end_matches(['\n', '\r']).to_string())
}

/// Bars for each blob on a terminal (one multi-progress display); plain status lines
/// on stderr otherwise; nothing with -q.
pub struct TerminalReporter {
    multi: Option<MultiProgress>,
    quiet: bool,
}

impl TerminalReporter {
    pub fn new(quiet: bool) -> TerminalReporter {
        let multi = (!quiet && std::io::stderr().is_terminal())
            .then(|| MultiProgress::with_draw_target(ProgressDrawTarget::stderr()));
        TerminalReporter { multi, quiet }
    }

    pub fn done(&self) {
        if let Some(multi) = &self.multi {
            let _ = multi.clear();
        }
    }
}

impl Reporter for TerminalReporter {
    fn blob(&self, action: &str, label: &str, size: u64) -> Box<dyn Progress + Send> {
        let bar = self.multi.as_ref().map(|multi| {
            let bar = multi.add(ProgressBar::new(size));
            if let Ok(style) = ProgressStyle::with_template(
                "{prefix} [{bar:30}] {bytes}/{total_bytes} {binary_bytes_per_sec}",
            ) {
                bar.set_style(style.progress_chars("=> "));
            }
            bar.set_prefix(format!("{label} {action}"));
            bar
        });
        Box::new(BlobBar { bar })
    }

    fn status(&self, line: &str) {
        if self.quiet {
            return;
        }
        match &self.multi {
            Some(multi) => {
                let _ = multi.println(line);
            }
            None => eprintln!("{line}"),
        }
    }
}

struct BlobBar {
    bar: Option<ProgressBar>,
}

impl Progress for BlobBar {
    fn advance(&self, bytes: u64) {
        if let Some(bar) = &self.bar {
            bar.inc(bytes);
        }
    }

    fn finish(&self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }
}
