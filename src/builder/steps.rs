//! The one step list both front ends compile to (Containerfiles in `containerfile.rs`,
//! recipe `[[step]]` entries in `recipe.rs`); `build.rs` runs it. Words are kept as
//! written: `$VAR` is expanded when the step runs, when the base image's ENV is known.
//! A step's text (its `Display`) names it in the output, the history and the cache key,
//! so the same step reads the same whichever front end wrote it.

use std::fmt;

/// A command as RUN, CMD, ENTRYPOINT and HEALTHCHECK take it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// Shell form: run through the stage's SHELL (default `/bin/sh -c`).
    Shell(String),
    /// Exec form (JSON array): run as is.
    Exec(Vec<String>),
}

/// HEALTHCHECK, kept in the image config (the runtime does not run it yet).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Healthcheck {
    /// `None` is `HEALTHCHECK NONE` (disables the base image's).
    pub command: Option<Command>,
    /// Durations as written (`30s`, `1m30s`): converted when the config is written.
    pub interval: Option<String>,
    pub timeout: Option<String>,
    pub start_period: Option<String>,
    pub retries: Option<String>,
}

/// One instruction of a stage, after FROM.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    Run(Command),
    Copy {
        sources: Vec<String>,
        dest: String,
        /// A stage name or index, or an image.
        from: Option<String>,
        chown: Option<String>,
    },
    Add {
        sources: Vec<String>,
        dest: String,
        chown: Option<String>,
        /// `sha256:HEX` a downloaded URL must have.
        checksum: Option<String>,
    },
    Env(Vec<(String, String)>),
    /// Names and their defaults.
    Arg(Vec<(String, Option<String>)>),
    Workdir(String),
    User(String),
    Entrypoint(Command),
    Cmd(Command),
    Label(Vec<(String, String)>),
    Expose(Vec<String>),
    Volume(Vec<String>),
    Shell(Vec<String>),
    StopSignal(String),
    Healthcheck(Healthcheck),
}

/// A stage: `FROM base [AS name]` and its steps.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stage {
    pub name: Option<String>,
    /// `scratch`, an earlier stage's name or index, or an image (as written).
    pub base: String,
    pub steps: Vec<Step>,
}

/// A whole build: ARGs before the first FROM, then the stages in order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Plan {
    pub global_args: Vec<(String, Option<String>)>,
    pub stages: Vec<Stage>,
}

impl Stage {
    /// The FROM line's text.
    pub fn header_text(&self) -> String {
        match &self.name {
            Some(name) => format!("FROM {} AS {name}", self.base),
            None => format!("FROM {}", self.base),
        }
    }
}

fn json(words: &[String]) -> String {
    serde_json::to_string(words).unwrap_or_default()
}

impl fmt::Display for Command {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Command::Shell(text) => f.write_str(text),
            Command::Exec(words) => f.write_str(&json(words)),
        }
    }
}

fn pairs(f: &mut fmt::Formatter<'_>, keyword: &str, pairs: &[(String, String)]) -> fmt::Result {
    write!(f, "{keyword}")?;
    for (key, value) in pairs {
        write!(f, " {key}={value}")?;
    }
    Ok(())
}

impl fmt::Display for Step {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Step::Run(command) => write!(f, "RUN {command}"),
            Step::Copy {
                sources,
                dest,
                from,
                chown,
            } => {
                write!(f, "COPY")?;
                if let Some(from) = from {
                    write!(f, " --from={from}")?;
                }
                if let Some(chown) = chown {
                    write!(f, " --chown={chown}")?;
                }
                write!(f, " {} {dest}", sources.join(" "))
            }
            Step::Add {
                sources,
                dest,
                chown,
                checksum,
            } => {
                write!(f, "ADD")?;
                if let Some(chown) = chown {
                    write!(f, " --chown={chown}")?;
                }
                if let Some(checksum) = checksum {
                    write!(f, " --checksum={checksum}")?;
                }
                write!(f, " {} {dest}", sources.join(" "))
            }
            Step::Env(vars) => pairs(f, "ENV", vars),
            Step::Arg(args) => {
                write!(f, "ARG")?;
                for (name, default) in args {
                    match default {
                        Some(value) => write!(f, " {name}={value}")?,
                        None => write!(f, " {name}")?,
                    }
                }
                Ok(())
            }
            Step::Workdir(dir) => write!(f, "WORKDIR {dir}"),
            Step::User(user) => write!(f, "USER {user}"),
            Step::Entrypoint(command) => write!(f, "ENTRYPOINT {command}"),
            Step::Cmd(command) => write!(f, "CMD {command}"),
            Step::Label(labels) => pairs(f, "LABEL", labels),
            Step::Expose(ports) => write!(f, "EXPOSE {}", ports.join(" ")),
            Step::Volume(paths) => write!(f, "VOLUME {}", json(paths)),
            Step::Shell(words) => write!(f, "SHELL {}", json(words)),
            Step::StopSignal(signal) => write!(f, "STOPSIGNAL {signal}"),
            Step::Healthcheck(check) => {
                write!(f, "HEALTHCHECK")?;
                for (flag, value) in [
                    ("interval", &check.interval),
                    ("timeout", &check.timeout),
                    ("start-period", &check.start_period),
                    ("retries", &check.retries),
                ] {
                    if let Some(value) = value {
                        write!(f, " --{flag}={value}")?;
                    }
                }
                match &check.command {
                    Some(command) => write!(f, " CMD {command}"),
                    None => write!(f, " NONE"),
                }
            }
        }
    }
}
