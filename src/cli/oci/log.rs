//! runc's `--log`/`--log-format`: errors (and with `--debug`, debug lines) appended to
//! the log file as logrus writes them, one record per line, so containerd's shim can
//! show the last error to its user; errors also go to stderr.

use std::io::Write;
use std::path::PathBuf;

use super::LogFormat;

pub struct Logger {
    path: Option<PathBuf>,
    format: LogFormat,
    debug: bool,
}

impl Logger {
    pub fn new(path: Option<PathBuf>, format: LogFormat, debug: bool) -> Logger {
        Logger {
            path,
            format,
            debug,
        }
    }

    pub fn error(&self, msg: &str) {
        eprintln!("mycontainer-runtime: {msg}");
        self.write("error", msg);
    }

    pub fn warn(&self, msg: &str) {
        eprintln!("mycontainer-runtime: warning: {msg}");
        self.write("warning", msg);
    }

    pub fn debug(&self, msg: &str) {
        if !self.debug {
            return;
        }
        if self.path.is_some() {
            self.write("debug", msg);
        } else {
            eprintln!("mycontainer-runtime: debug: {msg}");
        }
    }

    /// One line to the log file; a log that cannot be written is not worth failing for.
    fn write(&self, level: &str, msg: &str) {
        let Some(path) = &self.path else { return };
        let time = crate::timefmt::now();
        let line = match self.format {
            LogFormat::Json => {
                serde_json::json!({"level": level, "msg": msg, "time": time}).to_string()
            }
            LogFormat::Text => format!("time={time:?} level={level} msg={msg:?}"),
        };
        if let Ok(mut file) = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
        {
            let _ = writeln!(file, "{line}");
        }
    }
}
