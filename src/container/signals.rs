//! Signal names as Docker's users write them: `KILL`, `SIGKILL`, `kill` or `9`.

use std::str::FromStr;

use anyhow::bail;

/// Parses a signal name (with or without `SIG`, any case) or number.
pub fn parse_signal(text: &str) -> anyhow::Result<i32> {
    if let Ok(number) = text.parse::<i32>() {
        if nix::sys::signal::Signal::try_from(number).is_ok() {
            return Ok(number);
        }
    }
    let upper = text.to_ascii_uppercase();
    let name = if upper.starts_with("SIG") {
        upper
    } else {
        format!("SIG{upper}")
    };
    match nix::sys::signal::Signal::from_str(&name) {
        Ok(signal) => Ok(signal as i32),
        Err(_) => bail!("invalid signal {text:?}: use a name like TERM or a number like 15"),
    }
}

/// The name of signal `number` (`SIGTERM`), for inspect; the number when unknown.
pub fn signal_name(number: i32) -> String {
    nix::sys::signal::Signal::try_from(number)
        .map(|s| s.as_str().to_string())
        .unwrap_or_else(|_| number.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signals_parse_by_name_and_number() {
        assert_eq!(parse_signal("KILL").unwrap(), libc::SIGKILL);
        assert_eq!(parse_signal("sigterm").unwrap(), libc::SIGTERM);
        assert_eq!(parse_signal("10").unwrap(), libc::SIGUSR1);
        assert!(parse_signal("NOPE").is_err());
        assert_eq!(signal_name(libc::SIGQUIT), "SIGQUIT");
    }
}
