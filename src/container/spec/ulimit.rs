//! `--ulimit TYPE=SOFT[:HARD]` as Docker spells it, to the spec's `process.rlimits`.

use anyhow::{bail, Context};
use oci_spec::runtime::{PosixRlimit, PosixRlimitBuilder, PosixRlimitType};

/// Parses one `--ulimit` value: `nofile=1024:2048`, `nproc=512`, `core=-1`
/// (`-1`/`unlimited` is no limit; a single value sets both soft and hard).
pub fn parse_ulimit(text: &str) -> anyhow::Result<PosixRlimit> {
    let usage = || format!("invalid --ulimit {text:?}: use TYPE=SOFT[:HARD], as nofile=1024:2048");
    let (name, values) = text.split_once('=').with_context(usage)?;
    let typ = match name {
        "core" => PosixRlimitType::RlimitCore,
        "cpu" => PosixRlimitType::RlimitCpu,
        "data" => PosixRlimitType::RlimitData,
        "fsize" => PosixRlimitType::RlimitFsize,
        "locks" => PosixRlimitType::RlimitLocks,
        "memlock" => PosixRlimitType::RlimitMemlock,
        "msgqueue" => PosixRlimitType::RlimitMsgqueue,
        "nice" => PosixRlimitType::RlimitNice,
        "nofile" => PosixRlimitType::RlimitNofile,
        "nproc" => PosixRlimitType::RlimitNproc,
        "rss" => PosixRlimitType::RlimitRss,
        "rtprio" => PosixRlimitType::RlimitRtprio,
        "rttime" => PosixRlimitType::RlimitRttime,
        "sigpending" => PosixRlimitType::RlimitSigpending,
        "stack" => PosixRlimitType::RlimitStack,
        "as" => PosixRlimitType::RlimitAs,
        other => bail!(
            "invalid --ulimit {text:?}: unknown limit {other:?} (core, cpu, data, fsize, locks, memlock, msgqueue, nice, nofile, nproc, rss, rtprio, rttime, sigpending, stack, as)"
        ),
    };
    let value = |v: &str| -> anyhow::Result<u64> {
        match v {
            "-1" | "unlimited" => Ok(u64::MAX),
            _ => v.parse().with_context(usage),
        }
    };
    let (soft, hard) = match values.split_once(':') {
        Some((soft, hard)) => (value(soft)?, value(hard)?),
        None => (value(values)?, value(values)?),
    };
    if soft > hard {
        bail!("invalid --ulimit {text:?}: the soft limit {soft} is above the hard limit {hard}");
    }
    Ok(PosixRlimitBuilder::default()
        .typ(typ)
        .soft(soft)
        .hard(hard)
        .build()?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn docker_forms_parse_and_bad_ones_say_why() {
        let nofile = parse_ulimit("nofile=1024:2048").unwrap();
        assert_eq!(
            (nofile.typ(), nofile.soft(), nofile.hard()),
            (PosixRlimitType::RlimitNofile, 1024, 2048)
        );
        let core = parse_ulimit("core=-1").unwrap();
        assert_eq!((core.soft(), core.hard()), (u64::MAX, u64::MAX));
        assert!(parse_ulimit("nofile=2048:1024")
            .unwrap_err()
            .to_string()
            .contains("above the hard"));
        assert!(parse_ulimit("bogus=1")
            .unwrap_err()
            .to_string()
            .contains("unknown limit"));
        assert!(parse_ulimit("nofile").is_err());
        assert!(parse_ulimit("nofile=lots").is_err());
    }
}
