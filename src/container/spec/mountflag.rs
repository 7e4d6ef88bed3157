//! `--mount type=bind|volume|tmpfs,source=...,target=...,readonly`, as Docker spells it.

use std::path::PathBuf;

use anyhow::{bail, Context};

use super::{Volume, VolumeSource};

/// One `--mount`: a volume or bind (a [`Volume`]), or a tmpfs (`PATH:OPTIONS`, the
/// form `--tmpfs` takes).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MountFlag {
    Volume(Volume),
    Tmpfs(String),
}

fn truthy(key: &str, value: Option<&str>, whole: &str) -> anyhow::Result<bool> {
    match value {
        None | Some("1") | Some("true") => Ok(true),
        Some("0") | Some("false") => Ok(false),
        Some(v) => bail!("invalid value {v:?} for {key} in --mount {whole:?}: use true or false"),
    }
}

/// Parses one `--mount` value.
pub fn parse_mount(value: &str) -> anyhow::Result<MountFlag> {
    let mut typ = "volume";
    let mut source: Option<&str> = None;
    let mut target: Option<&str> = None;
    let mut read_only = false;
    let mut no_copy = false;
    let mut tmpfs_options: Vec<String> = Vec::new();
    for field in value.split(',') {
        let (key, val) = match field.split_once('=') {
            Some((k, v)) => (k.trim(), Some(v)),
            None => (field.trim(), None),
        };
        match (key, val) {
            ("type", Some(v)) => typ = v,
            ("source" | "src", Some(v)) => source = Some(v),
            ("target" | "destination" | "dst", Some(v)) => target = Some(v),
            ("readonly" | "ro", v) => read_only = truthy(key, v, value)?,
            ("tmpfs-size", Some(v)) => tmpfs_options.push(format!("size={v}")),
            ("tmpfs-mode", Some(v)) => tmpfs_options.push(format!("mode={v}")),
            ("volume-nocopy", v) => no_copy = truthy(key, v, value)?,
            ("bind-propagation" | "consistency", _) => {}
            _ => bail!(
                "invalid field {field:?} in --mount {value:?}: use type=, source=, target=, readonly"
            ),
        }
    }
    let Some(target) = target.filter(|t| t.starts_with('/') && *t != "/") else {
        bail!("--mount {value:?} needs target=ABSOLUTE_PATH (not /)");
    };
    match typ {
        "bind" => {
            let Some(source) = source else {
                bail!("--mount {value:?}: a bind mount needs source=HOSTPATH");
            };
            // Unlike -v, --mount never creates the host path (as Docker).
            let host = std::fs::canonicalize(source).with_context(|| {
                format!("invalid --mount {value:?}: bind source path {source:?} does not exist")
            })?;
            Ok(MountFlag::Volume(Volume {
                host,
                container: PathBuf::from(target),
                read_only,
                source: VolumeSource::Bind,
                no_copy: false,
            }))
        }
        "volume" => {
            let source = match source {
                Some(name) => {
                    super::super::volumes::validate_name(name)?;
                    VolumeSource::Named(name.to_string())
                }
                None => VolumeSource::Anonymous,
            };
            Ok(MountFlag::Volume(Volume {
                host: PathBuf::new(),
                container: PathBuf::from(target),
                read_only,
                source,
                no_copy,
            }))
        }
        "tmpfs" => {
            if source.is_some() {
                bail!("--mount {value:?}: a tmpfs has no source");
            }
            if read_only {
                tmpfs_options.push("ro".into());
            }
            Ok(MountFlag::Tmpfs(format!(
                "{target}:{}",
                tmpfs_options.join(",")
            )))
        }
        other => bail!("invalid type {other:?} in --mount {value:?}: use bind, volume or tmpfs"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mount_flags_parse_as_docker_spells_them() {
        let MountFlag::Volume(v) =
            parse_mount("type=volume,source=data,target=/d,readonly").unwrap()
        else {
            panic!()
        };
        assert_eq!(v.source, VolumeSource::Named("data".into()));
        assert!(v.read_only);
        let MountFlag::Volume(v) = parse_mount("type=volume,dst=/d").unwrap() else {
            panic!()
        };
        assert_eq!(v.source, VolumeSource::Anonymous);
        let MountFlag::Volume(v) = parse_mount("type=bind,src=/tmp,target=/t,ro=false").unwrap()
        else {
            panic!()
        };
        assert_eq!(v.source, VolumeSource::Bind);
        assert!(!v.read_only);
        assert_eq!(
            parse_mount("type=tmpfs,target=/t,tmpfs-size=1m").unwrap(),
            MountFlag::Tmpfs("/t:size=1m".into())
        );
        assert!(parse_mount("type=bind,src=/no/such/dir,target=/t").is_err());
        assert!(parse_mount("type=volume,src=data").is_err());
        assert!(parse_mount("type=nfs,target=/t").is_err());
        assert!(parse_mount("type=volume,src=../x,target=/t").is_err());
        assert!(parse_mount("type=volume,target=/t,bogus=1").is_err());
    }
}
