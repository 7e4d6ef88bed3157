//! Healthchecks (`--health-cmd` and friends, or the image's HEALTHCHECK): the detached
//! supervisor runs the check in the container every interval (a short-lived `mycontainer
//! supervise-health`, see handover.rs) with our own `exec` (the
//! runtime's exec mechanism, through the same verb users run), keeps the state in
//! `<record>/health.json` (status, failing streak, the last 5 results: what `inspect`
//! shows as State.Health), and acts on `unhealthy` as `--health-on-failure` says.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use anyhow::{bail, Context};
use serde::{Deserialize, Serialize};

use super::record::Record;

/// Docker's defaults.
const DEFAULT_INTERVAL: Duration = Duration::from_secs(30);
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);
const DEFAULT_RETRIES: u32 = 3;
/// Results kept, and the output kept of each (Docker's numbers).
const LOG_ENTRIES: usize = 5;
const MAX_OUTPUT: usize = 4096;

const HEALTH_FILE: &str = "health.json";

/// What `--health-on-failure` does when the container turns unhealthy.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OnFailure {
    #[default]
    None,
    /// SIGKILL; the restart policy then decides.
    Kill,
    /// SIGKILL and start it again, whatever the restart policy.
    Restart,
}

/// The check of one container, resolved from the flags and the image (in state.json).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HealthConfig {
    /// The command run in the container.
    pub command: Vec<String>,
    pub interval_ms: u64,
    pub timeout_ms: u64,
    pub start_period_ms: u64,
    pub retries: u32,
    #[serde(default)]
    pub on_failure: OnFailure,
}

/// The health flags as typed.
#[derive(Debug, Default, Clone)]
pub struct HealthFlags {
    pub cmd: Option<String>,
    pub interval: Option<String>,
    pub timeout: Option<String>,
    pub start_period: Option<String>,
    pub retries: Option<u32>,
    pub none: bool,
    pub on_failure: Option<String>,
}

/// Parses Go's duration spelling as Docker takes it: "30s", "500ms", "1m30s", "2h".
pub fn parse_duration(flag: &str, text: &str) -> anyhow::Result<Duration> {
    let bad = || {
        anyhow::anyhow!(
            "invalid value {text:?} for {flag}: use a duration such as 30s, 500ms or 1m30s"
        )
    };
    if text == "0" {
        return Ok(Duration::ZERO);
    }
    let mut rest = text;
    let mut total = Duration::ZERO;
    if rest.is_empty() {
        return Err(bad());
    }
    while !rest.is_empty() {
        let digits = rest
            .find(|c: char| !c.is_ascii_digit() && c != '.')
            .ok_or_else(bad)?;
        let number: f64 = rest[..digits].parse().map_err(|_| bad())?;
        rest = &rest[digits..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let scale = match &rest[..unit_len] {
            "ms" => 0.001,
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            _ => return Err(bad()),
        };
        rest = &rest[unit_len..];
        total += Duration::from_secs_f64(number * scale);
    }
    Ok(total)
}

/// The image's HEALTHCHECK, from its config JSON (`config.Healthcheck`, Docker's form:
/// Test, and durations in nanoseconds).
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ImageHealthcheck {
    #[serde(default)]
    pub test: Vec<String>,
    #[serde(default)]
    pub interval: u64,
    #[serde(default)]
    pub timeout: u64,
    #[serde(default)]
    pub start_period: u64,
    #[serde(default)]
    pub retries: u32,
}

impl ImageHealthcheck {
    /// Reads `config.Healthcheck` from an image config blob; None when it has none.
    pub fn from_config_json(bytes: &[u8]) -> Option<ImageHealthcheck> {
        let value: serde_json::Value = serde_json::from_slice(bytes).ok()?;
        let check = value.get("config")?.get("Healthcheck")?;
        serde_json::from_value(check.clone()).ok()
    }
}

/// Docker's Test form: ["CMD-SHELL", "cmd"], ["CMD", "arg", ...], ["NONE"]; None for
/// "no check".
fn command_of(test: &[String]) -> anyhow::Result<Option<Vec<String>>> {
    match test.split_first() {
        None => Ok(None),
        Some((kind, _)) if kind == "NONE" => Ok(None),
        Some((kind, rest)) if kind == "CMD-SHELL" => Ok(Some(
            ["/bin/sh".to_string(), "-c".to_string(), rest.join(" ")].to_vec(),
        )),
        Some((kind, rest)) if kind == "CMD" && !rest.is_empty() => Ok(Some(rest.to_vec())),
        Some((kind, _)) => {
            bail!("the image's healthcheck test {kind:?} is not CMD, CMD-SHELL or NONE")
        }
    }
}

impl HealthFlags {
    /// The check the container gets: the flags over the image's HEALTHCHECK, field by
    /// field; None with --no-healthcheck or when neither sets a command.
    pub fn resolve(
        &self,
        image: Option<&ImageHealthcheck>,
    ) -> anyhow::Result<Option<HealthConfig>> {
        let on_failure = match self.on_failure.as_deref() {
            None | Some("none") => OnFailure::None,
            Some("kill") => OnFailure::Kill,
            Some("restart") => OnFailure::Restart,
            Some(other) => {
                bail!("invalid value {other:?} for --health-on-failure: use none, kill or restart")
            }
        };
        let durations = [
            ("--health-interval", &self.interval),
            ("--health-timeout", &self.timeout),
            ("--health-start-period", &self.start_period),
        ]
        .map(|(flag, v)| v.as_deref().map(|v| parse_duration(flag, v)).transpose());
        let [interval, timeout, start_period] = durations;
        let (interval, timeout, start_period) = (interval?, timeout?, start_period?);
        for (flag, value) in [
            ("--health-interval", interval),
            ("--health-timeout", timeout),
        ] {
            if value.is_some_and(|v| v < Duration::from_millis(1)) {
                bail!("invalid value for {flag}: it must be at least 1ms");
            }
        }
        if self.none {
            if self.cmd.is_some() {
                bail!("--no-healthcheck conflicts with --health-cmd: give only one");
            }
            return Ok(None);
        }
        let command = match (&self.cmd, image) {
            (Some(cmd), _) if cmd.is_empty() => bail!("--health-cmd is empty"),
            (Some(cmd), _) => Some(vec!["/bin/sh".into(), "-c".into(), cmd.clone()]),
            (None, Some(image)) => command_of(&image.test)?,
            (None, None) => None,
        };
        let Some(command) = command else {
            return Ok(None);
        };
        let from_image = |ns: Option<u64>| ns.filter(|n| *n > 0).map(Duration::from_nanos);
        let ms = |d: Duration| d.as_millis() as u64;
        Ok(Some(HealthConfig {
            command,
            interval_ms: ms(interval
                .or_else(|| from_image(image.map(|i| i.interval)))
                .unwrap_or(DEFAULT_INTERVAL)),
            timeout_ms: ms(timeout
                .or_else(|| from_image(image.map(|i| i.timeout)))
                .unwrap_or(DEFAULT_TIMEOUT)),
            start_period_ms: ms(start_period
                .or_else(|| from_image(image.map(|i| i.start_period)))
                .unwrap_or(Duration::ZERO)),
            retries: self
                .retries
                .or(image.map(|i| i.retries).filter(|r| *r > 0))
                .unwrap_or(DEFAULT_RETRIES)
                .max(1),
            on_failure,
        }))
    }
}

/// One check's result (inspect's State.Health.Log entries).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Probe {
    pub start: String,
    pub end: String,
    pub exit_code: i32,
    pub output: String,
}

/// `<record>/health.json`: inspect's State.Health.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Health {
    /// starting, healthy or unhealthy.
    pub status: String,
    pub failing_streak: u32,
    pub log: Vec<Probe>,
}

impl Health {
    fn starting() -> Health {
        Health {
            status: "starting".into(),
            failing_streak: 0,
            log: Vec::new(),
        }
    }

    pub fn load(dir: &Path) -> Option<Health> {
        serde_json::from_slice(&std::fs::read(dir.join(HEALTH_FILE)).ok()?).ok()
    }

    fn save(&self, dir: &Path) -> anyhow::Result<()> {
        let path = dir.join(HEALTH_FILE);
        let tmp = dir.join(format!("{HEALTH_FILE}.tmp"));
        let bytes = serde_json::to_vec(self)?;
        super::write_private(&tmp, &bytes)
            .and_then(|_| std::fs::rename(&tmp, &path))
            .with_context(|| format!("cannot write {}", path.display()))
    }

    /// Counts a result; returns true when the container just turned unhealthy.
    fn record(&mut self, probe: Probe, in_start_period: bool, retries: u32) -> bool {
        let mut turned = false;
        if probe.exit_code == 0 {
            self.failing_streak = 0;
            self.status = "healthy".into();
        } else if !in_start_period {
            self.failing_streak += 1;
            if self.failing_streak >= retries && self.status != "unhealthy" {
                self.status = "unhealthy".into();
                turned = true;
            }
        }
        self.log.push(probe);
        if self.log.len() > LOG_ENTRIES {
            self.log.remove(0);
        }
        turned
    }
}

fn now_rfc3339() -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    crate::timefmt::rfc3339(now.as_secs(), now.subsec_nanos())
}

/// Runs the check once in the container: `mycontainer exec ID COMMAND`, killed after
/// the timeout (exit code -1 then, as Docker).
fn probe(root: &Path, id: &str, config: &HealthConfig) -> Probe {
    let start = now_rfc3339();
    let timeout = Duration::from_millis(config.timeout_ms);
    let ended = |exit_code: i32, output: String| Probe {
        start: start.clone(),
        end: now_rfc3339(),
        exit_code,
        output,
    };
    let exe = match std::env::current_exe() {
        Ok(exe) => exe,
        Err(e) => return ended(-1, format!("cannot find our own executable: {e}")),
    };
    let child = Command::new(exe)
        .arg("--root")
        .arg(root)
        .args(["exec", id])
        .args(&config.command)
        .env_remove("MYCONTAINER_ROOT")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn();
    let child = match child {
        Ok(child) => child,
        Err(e) => return ended(-1, format!("cannot run the healthcheck: {e}")),
    };
    let pid = child.id() as i32;
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    match rx.recv_timeout(timeout) {
        Ok(Ok(output)) => {
            let mut text = String::from_utf8_lossy(&output.stdout).into_owned();
            text.push_str(&String::from_utf8_lossy(&output.stderr));
            if text.len() > MAX_OUTPUT {
                let mut cut = MAX_OUTPUT;
                while !text.is_char_boundary(cut) {
                    cut -= 1;
                }
                text.truncate(cut);
            }
            ended(output.status.code().unwrap_or(-1), text)
        }
        Ok(Err(e)) => ended(-1, format!("cannot run the healthcheck: {e}")),
        Err(_) => {
            // exec forwards SIGTERM to the command; SIGKILL if it lingers.
            // SAFETY: kill(2) on our own child, which is not reaped until the thread
            // above returns (so the pid cannot be reused meanwhile).
            unsafe { libc::kill(pid, libc::SIGTERM) };
            if rx.recv_timeout(Duration::from_secs(2)).is_err() {
                // SAFETY: as above.
                unsafe { libc::kill(pid, libc::SIGKILL) };
                let _ = rx.recv();
            }
            ended(
                -1,
                format!("Health check exceeded timeout ({}ms)", config.timeout_ms),
            )
        }
    }
}

/// The marker a check leaves when `--health-on-failure=restart` acted (the small
/// supervisor's checks run in processes of their own).
const RESTART_MARKER: &str = "health-restart";

/// A new run's health: starting.
pub fn begin(dir: &Path) {
    let _ = Health::starting().save(dir);
}

/// Whether a check asked for a restart during the run that ended (the marker removed).
pub fn take_restart_marker(dir: &Path) -> bool {
    std::fs::remove_file(dir.join(RESTART_MARKER)).is_ok()
}

/// One check of the small supervisor's (`mycontainer supervise-health`), `since_start`
/// after the run began: counted, saved, announced
/// (health_status events) and acted on (`--health-on-failure`).
pub fn tick(root: &Path, record: &Record, since_start: Duration) -> anyhow::Result<()> {
    let state = record.load_state()?;
    let Some(config) = state.healthcheck.clone() else {
        return Ok(());
    };
    let mut health = Health::load(&record.dir).unwrap_or_else(Health::starting);
    let result = probe(root, &record.id, &config);
    let in_start_period = since_start < Duration::from_millis(config.start_period_ms);
    let before = health.status.clone();
    let turned = health.record(result, in_start_period, config.retries);
    health.save(&record.dir)?;
    if health.status != before {
        let action = format!("health_status: {}", health.status);
        let name = record.load_state().ok().and_then(|s| s.name);
        super::events::emit(root, &record.id, name.as_deref(), &action, &[]);
    }
    if turned && config.on_failure != OnFailure::None {
        if config.on_failure == OnFailure::Restart {
            super::write_private(&record.dir.join(RESTART_MARKER), b"")?;
        }
        // Not a user's stop: the restart policy (or the restart above) still applies.
        super::control::deliver(record, libc::SIGKILL)?;
    }
    Ok(())
}

/// `healthcheck run`: one check by hand, counted like the supervisor's; returns the
/// status after it.
pub fn run_once(root: &Path, record: &Record) -> anyhow::Result<String> {
    let state = record.load_state()?;
    let Some(config) = state.healthcheck.clone() else {
        bail!("container {} has no healthcheck", record.display_name());
    };
    if state.status != super::state::Status::Running || !record.is_supervised() {
        bail!("container {} is not running", record.display_name());
    }
    let mut health = Health::load(&record.dir).unwrap_or_else(Health::starting);
    let result = probe(root, &record.id, &config);
    let exit_code = result.exit_code;
    health.record(result, false, config.retries);
    health.save(&record.dir)?;
    Ok(if exit_code == 0 {
        "healthy".into()
    } else {
        "unhealthy".into()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse_in_gos_spelling() {
        let d = |t| parse_duration("--health-interval", t).unwrap();
        assert_eq!(d("30s"), Duration::from_secs(30));
        assert_eq!(d("500ms"), Duration::from_millis(500));
        assert_eq!(d("1m30s"), Duration::from_secs(90));
        assert_eq!(d("0.5s"), Duration::from_millis(500));
        assert_eq!(d("0"), Duration::ZERO);
        for bad in ["", "30", "5x", "s"] {
            assert!(parse_duration("--health-interval", bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn flags_override_the_images_healthcheck_field_by_field() {
        let config = br#"{"config":{"Healthcheck":{"Test":["CMD","check","--fast"],
            "Interval":2000000000,"Retries":5}}}"#;
        let image = ImageHealthcheck::from_config_json(config).unwrap();
        let flags = HealthFlags {
            timeout: Some("3s".into()),
            ..Default::default()
        };
        let c = flags.resolve(Some(&image)).unwrap().unwrap();
        assert_eq!(c.command, ["check", "--fast"]);
        assert_eq!((c.interval_ms, c.timeout_ms, c.retries), (2000, 3000, 5));
        let flags = HealthFlags {
            cmd: Some("true".into()),
            ..Default::default()
        };
        let c = flags.resolve(Some(&image)).unwrap().unwrap();
        assert_eq!(c.command, ["/bin/sh", "-c", "true"]);
        assert_eq!(c.interval_ms, 2000);
        // --no-healthcheck and NONE disable it; no command at all means no check.
        let none = HealthFlags {
            none: true,
            ..Default::default()
        };
        assert_eq!(none.resolve(Some(&image)).unwrap(), None);
        let disabled = ImageHealthcheck {
            test: vec!["NONE".into()],
            ..Default::default()
        };
        assert_eq!(
            HealthFlags::default().resolve(Some(&disabled)).unwrap(),
            None
        );
        assert_eq!(HealthFlags::default().resolve(None).unwrap(), None);
        assert!(ImageHealthcheck::from_config_json(br#"{"config":{}}"#).is_none());
    }

    #[test]
    fn a_failing_streak_of_retries_turns_unhealthy_once_and_start_period_failures_do_not_count() {
        let probe = |code| Probe {
            start: String::new(),
            end: String::new(),
            exit_code: code,
            output: String::new(),
        };
        let mut h = Health::starting();
        assert!(!h.record(probe(1), true, 2));
        assert_eq!((h.status.as_str(), h.failing_streak), ("starting", 0));
        assert!(!h.record(probe(1), false, 2));
        assert!(h.record(probe(1), false, 2));
        assert_eq!(h.status, "unhealthy");
        assert!(!h.record(probe(1), false, 2));
        assert!(!h.record(probe(0), false, 2));
        assert_eq!((h.status.as_str(), h.failing_streak), ("healthy", 0));
        for _ in 0..10 {
            h.record(probe(0), false, 2);
        }
        assert_eq!(h.log.len(), LOG_ENTRIES);
    }
}
