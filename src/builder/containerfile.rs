//! Containerfile/Dockerfile front end: text -> [`Plan`]. Handles the `escape` parser
//! directive, comments, line continuations (blank and comment lines inside them are
//! skipped, as Docker does), JSON (exec) and shell forms, and the flags of FROM, COPY,
//! ADD and HEALTHCHECK. Unknown instructions and flags are errors naming the line.

use anyhow::{bail, Context};

use super::steps::{Command, Healthcheck, Plan, Stage, Step};
use super::words::split_raw;

/// One logical line: its first physical line number, keyword (upper case) and rest.
struct Line {
    number: usize,
    keyword: String,
    rest: String,
}

/// Parses a Containerfile into the step list.
pub fn parse(text: &str) -> anyhow::Result<Plan> {
    let mut plan = Plan::default();
    for line in logical_lines(text) {
        let rest = line.rest.trim();
        let at = || format!("line {}: {} {}", line.number, line.keyword, rest);
        let step = match line.keyword.as_str() {
            "FROM" => {
                let (flags, args) = flags(rest, &["platform"]).with_context(at)?;
                if flags
                    .iter()
                    .any(|(_, v)| !v.is_empty() && !v.contains("amd64"))
                {
                    bail!("{}: only linux/amd64 is built", at());
                }
                let words = split_raw(&args).with_context(at)?;
                let (base, name) = match words.as_slice() {
                    [base] => (base.clone(), None),
                    [base, as_, name] if as_.eq_ignore_ascii_case("as") => {
                        (base.clone(), Some(name.to_lowercase()))
                    }
                    _ => bail!("{}: use FROM IMAGE [AS NAME]", at()),
                };
                plan.stages.push(Stage {
                    name,
                    base,
                    steps: Vec::new(),
                });
                continue;
            }
            "ARG" => Step::Arg(
                split_raw(rest)
                    .with_context(at)?
                    .into_iter()
                    .map(|w| match w.split_once('=') {
                        Some((k, v)) => (k.to_string(), Some(v.to_string())),
                        None => (w, None),
                    })
                    .collect(),
            ),
            "RUN" => {
                if rest.starts_with("--") {
                    bail!("{}: RUN flags (--mount, --network) are not supported", at());
                }
                Step::Run(command(rest))
            }
            "CMD" => Step::Cmd(command(rest)),
            "ENTRYPOINT" => Step::Entrypoint(command(rest)),
            "SHELL" => match json_array(rest) {
                Some(words) if !words.is_empty() => Step::Shell(words),
                _ => bail!("{}: SHELL takes a JSON array", at()),
            },
            "COPY" | "ADD" => {
                let allowed: &[&str] = if line.keyword == "COPY" {
                    &["from", "chown"]
                } else {
                    &["chown", "checksum"]
                };
                let (flags, args) = flags(rest, allowed).with_context(at)?;
                let mut words = match json_array(&args) {
                    Some(words) => words,
                    None => args.split_whitespace().map(String::from).collect(),
                };
                if words.len() < 2 {
                    bail!(
                        "{}: {} needs a source and a destination",
                        at(),
                        line.keyword
                    );
                }
                let dest = words.pop().unwrap_or_default();
                let flag = |name: &str| {
                    flags
                        .iter()
                        .find(|(k, _)| k == name)
                        .map(|(_, v)| v.clone())
                };
                if line.keyword == "COPY" {
                    Step::Copy {
                        sources: words,
                        dest,
                        from: flag("from"),
                        chown: flag("chown"),
                    }
                } else {
                    Step::Add {
                        sources: words,
                        dest,
                        chown: flag("chown"),
                        checksum: flag("checksum"),
                    }
                }
            }
            "ENV" | "LABEL" => {
                let pairs = key_values(rest, line.keyword == "ENV").with_context(at)?;
                if line.keyword == "ENV" {
                    Step::Env(pairs)
                } else {
                    Step::Label(pairs)
                }
            }
            "WORKDIR" => Step::Workdir(one(rest).with_context(at)?),
            "USER" => Step::User(one(rest).with_context(at)?),
            "STOPSIGNAL" => Step::StopSignal(one(rest).with_context(at)?),
            "EXPOSE" => Step::Expose(split_raw(rest).with_context(at)?),
            "VOLUME" => Step::Volume(match json_array(rest) {
                Some(words) => words,
                None => split_raw(rest).with_context(at)?,
            }),
            "HEALTHCHECK" => Step::Healthcheck(healthcheck(rest).with_context(at)?),
            "MAINTAINER" => Step::Label(vec![("maintainer".into(), rest.to_string())]),
            "ONBUILD" => bail!("{}: ONBUILD is not supported", at()),
            other => bail!("line {}: unknown instruction {other}", line.number),
        };
        match plan.stages.last_mut() {
            Some(stage) => stage.steps.push(step),
            None if matches!(step, Step::Arg(_)) => {
                if let Step::Arg(args) = step {
                    plan.global_args.extend(args);
                }
            }
            None => bail!(
                "line {}: {} before the first FROM (only ARG may come first)",
                line.number,
                line.keyword
            ),
        }
    }
    if plan.stages.is_empty() {
        bail!("no FROM instruction: a Containerfile starts with FROM IMAGE (or FROM scratch)");
    }
    Ok(plan)
}

fn logical_lines(text: &str) -> Vec<Line> {
    let mut escape = '\\';
    let mut lines = Vec::new();
    let mut pending: Option<(usize, String)> = None;
    let mut directives = true;
    for (index, raw) in text.lines().enumerate() {
        let trimmed = raw.trim();
        if directives {
            // Parser directives: `# name=value` lines before anything else.
            let directive = trimmed
                .strip_prefix('#')
                .and_then(|d| d.split_once('='))
                .map(|(k, v)| (k.trim().to_lowercase(), v.trim().to_string()));
            match directive {
                Some((key, value)) if key == "escape" => {
                    escape = if value == "`" { '`' } else { '\\' };
                    continue;
                }
                Some((key, _)) if key == "syntax" || key == "check" => continue,
                _ => directives = false,
            }
        }
        if trimmed.starts_with('#') || (trimmed.is_empty() && pending.is_some()) {
            continue;
        }
        // Continuation lines keep their indentation, as Docker joins them.
        let line = raw.trim_end();
        let (continued, body) = match line.strip_suffix(escape) {
            Some(body) => (true, body),
            None => (false, line),
        };
        let (number, mut joined) = pending.take().unwrap_or((index + 1, String::new()));
        joined.push_str(body);
        if continued {
            pending = Some((number, joined));
            continue;
        }
        push_line(&mut lines, number, &joined);
    }
    if let Some((number, joined)) = pending {
        push_line(&mut lines, number, &joined);
    }
    lines
}

fn push_line(lines: &mut Vec<Line>, number: usize, text: &str) {
    let text = text.trim();
    if text.is_empty() {
        return;
    }
    let (keyword, rest) = text.split_once(char::is_whitespace).unwrap_or((text, ""));
    lines.push(Line {
        number,
        keyword: keyword.to_uppercase(),
        rest: rest.trim().to_string(),
    });
}

/// Leading `--name=value` flags (only those in `allowed`), and the rest.
fn flags(text: &str, allowed: &[&str]) -> anyhow::Result<(Vec<(String, String)>, String)> {
    let mut rest = text.trim_start();
    let mut found = Vec::new();
    while let Some(after) = rest.strip_prefix("--") {
        let end = after.find(char::is_whitespace).unwrap_or(after.len());
        let (name, value) = after[..end].split_once('=').unwrap_or((&after[..end], ""));
        if !allowed.contains(&name) {
            bail!("unknown flag --{name}");
        }
        found.push((name.to_string(), value.to_string()));
        rest = after[end..].trim_start();
    }
    Ok((found, rest.to_string()))
}

fn json_array(text: &str) -> Option<Vec<String>> {
    if !text.trim_start().starts_with('[') {
        return None;
    }
    serde_json::from_str(text).ok()
}

fn command(rest: &str) -> Command {
    match json_array(rest) {
        Some(words) => Command::Exec(words),
        None => Command::Shell(rest.to_string()),
    }
}

fn one(rest: &str) -> anyhow::Result<String> {
    if rest.is_empty() {
        bail!("needs an argument");
    }
    Ok(rest.to_string())
}

/// `K=V K2="V 2"` pairs, or the old `K V W` form (ENV and LABEL).
fn key_values(rest: &str, env: bool) -> anyhow::Result<Vec<(String, String)>> {
    let words = split_raw(rest)?;
    let Some(first) = words.first() else {
        bail!("needs KEY=VALUE");
    };
    if !first.contains('=') {
        let (key, value) = rest.split_once(char::is_whitespace).unwrap_or((rest, ""));
        if env && value.trim().is_empty() {
            bail!("needs KEY=VALUE or KEY VALUE");
        }
        return Ok(vec![(key.to_string(), value.trim().to_string())]);
    }
    words
        .into_iter()
        .map(|w| match w.split_once('=') {
            Some((k, v)) if !k.is_empty() => Ok((k.to_string(), v.to_string())),
            _ => bail!("{w:?} is not KEY=VALUE"),
        })
        .collect()
}

fn healthcheck(rest: &str) -> anyhow::Result<Healthcheck> {
    let (flags, args) = flags(
        rest,
        &[
            "interval",
            "timeout",
            "start-period",
            "retries",
            "start-interval",
        ],
    )?;
    let flag = |name: &str| {
        flags
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
    };
    let (word, command_text) = args
        .split_once(char::is_whitespace)
        .unwrap_or((args.as_str(), ""));
    let command_ = match word.to_uppercase().as_str() {
        "NONE" if command_text.trim().is_empty() => None,
        "CMD" if !command_text.trim().is_empty() => Some(command(command_text.trim())),
        _ => bail!("use HEALTHCHECK [OPTIONS] CMD COMMAND, or HEALTHCHECK NONE"),
    };
    Ok(Healthcheck {
        command: command_,
        interval: flag("interval"),
        timeout: flag("timeout"),
        start_period: flag("start-period"),
        retries: flag("retries"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Shaped like the Dockerfiles people write (official images, multi-stage Go and
    /// Node builds): continuations, comments inside them, JSON and shell forms.
    const REAL_WORLD: &str = r#"# syntax=docker/dockerfile:1
# A comment before the first FROM
ARG GO_VERSION=1.22
FROM golang:${GO_VERSION} AS build
WORKDIR /src
COPY --chown=1000:1000 go.mod go.sum ./
RUN set -eux; \
    # comments inside a continuation are dropped
    apt-get update; \

    apt-get install -y --no-install-recommends ca-certificates; \
    rm -rf /var/lib/apt/lists/*
COPY . .
RUN ["go", "build", "-o", "/out/app", "./cmd/app"]

FROM scratch
LABEL org.opencontainers.image.title="my app" version=1.0
ENV PATH=/usr/local/bin:$PATH \
    APP_HOME=/app
ENV LEGACY value with spaces
COPY --from=build /out/app /usr/local/bin/app
ADD --checksum=sha256:abc https://example.com/x.tar.gz /tmp/
EXPOSE 8080/tcp 9090
VOLUME ["/data", "/logs"]
USER 1000:1000
STOPSIGNAL SIGTERM
HEALTHCHECK --interval=30s --retries=3 CMD wget -q -O- http://localhost:8080/ || exit 1
SHELL ["/bin/sh", "-ec"]
ENTRYPOINT ["/usr/local/bin/app"]
cmd --serve
"#;

    #[test]
    fn parses_a_real_world_multi_stage_file() {
        let plan = parse(REAL_WORLD).unwrap();
        assert_eq!(
            plan.global_args,
            [("GO_VERSION".into(), Some("1.22".into()))]
        );
        assert_eq!(plan.stages.len(), 2);
        let build = &plan.stages[0];
        assert_eq!(build.base, "golang:${GO_VERSION}");
        assert_eq!(build.name.as_deref(), Some("build"));
        assert_eq!(
            build.steps[1],
            Step::Copy {
                sources: vec!["go.mod".into(), "go.sum".into()],
                dest: "./".into(),
                from: None,
                chown: Some("1000:1000".into()),
            }
        );
        assert_eq!(
            build.steps[2],
            Step::Run(Command::Shell(
                "set -eux;     apt-get update;     apt-get install -y --no-install-recommends ca-certificates;     rm -rf /var/lib/apt/lists/*".into()
            ))
        );
        assert_eq!(
            build.steps[4],
            Step::Run(Command::Exec(
                ["go", "build", "-o", "/out/app", "./cmd/app"]
                    .map(String::from)
                    .to_vec()
            ))
        );
        let app = &plan.stages[1];
        assert_eq!(app.base, "scratch");
        assert_eq!(
            app.steps[0],
            Step::Label(vec![
                ("org.opencontainers.image.title".into(), "\"my app\"".into()),
                ("version".into(), "1.0".into())
            ])
        );
        assert_eq!(
            app.steps[1],
            Step::Env(vec![
                ("PATH".into(), "/usr/local/bin:$PATH".into()),
                ("APP_HOME".into(), "/app".into())
            ])
        );
        assert_eq!(
            app.steps[2],
            Step::Env(vec![("LEGACY".into(), "value with spaces".into())])
        );
        assert!(matches!(&app.steps[3], Step::Copy { from: Some(f), .. } if f == "build"));
        assert!(matches!(&app.steps[4], Step::Add { checksum: Some(c), .. } if c == "sha256:abc"));
        assert_eq!(
            app.steps[5],
            Step::Expose(vec!["8080/tcp".into(), "9090".into()])
        );
        assert_eq!(
            app.steps[6],
            Step::Volume(vec!["/data".into(), "/logs".into()])
        );
        let Step::Healthcheck(check) = &app.steps[9] else {
            panic!("{:?}", app.steps[9])
        };
        assert_eq!(check.interval.as_deref(), Some("30s"));
        assert_eq!(check.retries.as_deref(), Some("3"));
        assert!(matches!(&check.command, Some(Command::Shell(s)) if s.starts_with("wget")));
        assert_eq!(
            app.steps[12],
            Step::Cmd(Command::Shell("--serve".into())),
            "keywords are case-insensitive"
        );
        // The text a step shows is the same whichever front end made it.
        assert_eq!(
            app.steps[3].to_string(),
            "COPY --from=build /out/app /usr/local/bin/app"
        );
    }

    #[test]
    fn the_escape_directive_changes_the_continuation_character() {
        let plan = parse("# escape=`\nFROM scratch\nRUN a `\n  b\nCOPY c:\\x d\n").unwrap();
        assert_eq!(
            plan.stages[0].steps[0],
            Step::Run(Command::Shell("a   b".into()))
        );
    }

    #[test]
    fn errors_name_the_line() {
        let err = parse("FROM scratch\nFROB x\n").unwrap_err().to_string();
        assert!(err.contains("line 2") && err.contains("FROB"), "{err}");
        let err = parse("RUN true\n").unwrap_err().to_string();
        assert!(err.contains("before the first FROM"), "{err}");
        let err = format!(
            "{:#}",
            parse("FROM scratch\nCOPY --link a b\n").unwrap_err()
        );
        assert!(err.contains("--link"), "{err}");
        assert!(parse("# only a comment\n").is_err());
        assert!(parse("FROM scratch\nCOPY onlyone\n").is_err());
    }
}
