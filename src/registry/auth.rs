//! Registry credentials: `<root>/auth.json` (ours, written by `login`) in Docker's
//! format `{"auths":{"host":{"auth":"base64(user:pass)"}}}`, and Docker's own
//! `config.json` (`$DOCKER_CONFIG` or `~/.docker`) as a fallback.

use std::fs::OpenOptions;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine;
use serde_json::{Map, Value};

use super::reference::normalize_registry;

#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    pub username: String,
    pub password: String,
}

impl std::fmt::Debug for Credentials {
    // Never print a password, even in debug output.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Credentials({:?}, ***)", self.username)
    }
}

impl Credentials {
    fn encode(&self) -> String {
        BASE64.encode(format!("{}:{}", self.username, self.password))
    }

    fn decode(auth: &str) -> Option<Credentials> {
        let bytes = BASE64.decode(auth.trim()).ok()?;
        let text = String::from_utf8(bytes).ok()?;
        let (username, password) = text.split_once(':')?;
        Some(Credentials {
            username: username.to_string(),
            password: password.to_string(),
        })
    }
}

/// Our credential file.
pub struct AuthFile {
    path: PathBuf,
    doc: Value,
}

impl AuthFile {
    pub fn path(root: &Path) -> PathBuf {
        root.join("auth.json")
    }

    pub fn load(root: &Path) -> anyhow::Result<AuthFile> {
        let path = Self::path(root);
        let doc = read_config(&path)?.unwrap_or_else(|| serde_json::json!({"auths": {}}));
        Ok(AuthFile { path, doc })
    }

    pub fn get(&self, registry: &str) -> Option<Credentials> {
        find_credentials(&self.doc, registry)
    }

    pub fn set(&mut self, registry: &str, credentials: &Credentials) {
        let key = normalize_registry(registry);
        self.remove(&key);
        self.auths_mut()
            .insert(key, serde_json::json!({"auth": credentials.encode()}));
    }

    /// Removes every entry naming `registry`; returns whether there was one.
    pub fn remove(&mut self, registry: &str) -> bool {
        let wanted = normalize_registry(registry);
        let auths = self.auths_mut();
        let before = auths.len();
        auths.retain(|key, _| normalize_registry(key) != wanted);
        auths.len() != before
    }

    fn auths_mut(&mut self) -> &mut Map<String, Value> {
        if !self.doc.is_object() {
            self.doc = serde_json::json!({});
        }
        let root = self.doc.as_object_mut().expect("made an object above");
        let auths = root
            .entry("auths")
            .or_insert_with(|| Value::Object(Map::new()));
        if !auths.is_object() {
            *auths = Value::Object(Map::new());
        }
        auths.as_object_mut().expect("made an object above")
    }

    /// Writes the file atomically with mode 0600: a temp file next to it, fsync, rename.
    pub fn save(&self) -> anyhow::Result<()> {
        let dir = self.path.parent().unwrap_or(Path::new("."));
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
        let temp = dir.join(format!(".auth.json.{}", std::process::id()));
        let bytes = serde_json::to_vec_pretty(&self.doc)?;
        let write = || -> std::io::Result<()> {
            let mut file = OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                .mode(0o600)
                .open(&temp)?;
            file.write_all(&bytes)?;
            file.sync_all()?;
            std::fs::rename(&temp, &self.path)?;
            std::fs::File::open(dir)?.sync_all()
        };
        write().map_err(|e| {
            let _ = std::fs::remove_file(&temp);
            anyhow::anyhow!("cannot write {}: {e}", self.path.display())
        })
    }
}

/// Credentials for `registry`: ours first, then Docker's config.json.
pub fn lookup(root: &Path, registry: &str) -> anyhow::Result<Option<Credentials>> {
    if let Some(found) = AuthFile::load(root)?.get(registry) {
        return Ok(Some(found));
    }
    let Some(path) = docker_config_path() else {
        return Ok(None);
    };
    // A broken Docker config is Docker's business: ignore it rather than fail a pull.
    Ok(read_config(&path)
        .ok()
        .flatten()
        .and_then(|doc| find_credentials(&doc, registry)))
}

fn docker_config_path() -> Option<PathBuf> {
    if let Some(dir) = std::env::var_os("DOCKER_CONFIG") {
        return Some(PathBuf::from(dir).join("config.json"));
    }
    std::env::var_os("HOME").map(|home| PathBuf::from(home).join(".docker/config.json"))
}

fn read_config(path: &Path) -> anyhow::Result<Option<Value>> {
    match std::fs::read(path) {
        Ok(bytes) => {
            let doc: Value = serde_json::from_slice(&bytes).with_context(|| {
                format!(
                    "credential file {} is not valid JSON: fix or remove it",
                    path.display()
                )
            })?;
            Ok(Some(doc))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => bail!("cannot read {}: {e}", path.display()),
    }
}

fn find_credentials(doc: &Value, registry: &str) -> Option<Credentials> {
    let wanted = normalize_registry(registry);
    let auths = doc.get("auths")?.as_object()?;
    auths.iter().find_map(|(key, entry)| {
        if normalize_registry(key) != wanted {
            return None;
        }
        if let Some(auth) = entry.get("auth").and_then(Value::as_str) {
            return Credentials::decode(auth);
        }
        let username = entry.get("username")?.as_str()?;
        let password = entry.get("password")?.as_str()?;
        Some(Credentials {
            username: username.to_string(),
            password: password.to_string(),
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_in_dockers_format_with_mode_0600() {
        let dir = tempfile::tempdir().unwrap();
        let creds = Credentials {
            username: "alice".into(),
            password: "p:ss".into(),
        };
        let mut file = AuthFile::load(dir.path()).unwrap();
        file.set("127.0.0.1:5000", &creds);
        file.save().unwrap();
        let text = std::fs::read_to_string(AuthFile::path(dir.path())).unwrap();
        let doc: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(
            doc["auths"]["127.0.0.1:5000"]["auth"],
            BASE64.encode("alice:p:ss")
        );
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(AuthFile::path(dir.path()))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        let file = AuthFile::load(dir.path()).unwrap();
        assert_eq!(file.get("127.0.0.1:5000"), Some(creds));
        assert_eq!(file.get("quay.io"), None);
    }

    #[test]
    fn docker_hub_keys_match_each_other() {
        let doc = serde_json::json!({"auths": {"https://index.docker.io/v1/": {"auth": BASE64.encode("u:p")}}});
        let found = find_credentials(&doc, "docker.io").unwrap();
        assert_eq!(
            (found.username.as_str(), found.password.as_str()),
            ("u", "p")
        );
        let mut file = AuthFile {
            path: PathBuf::from("/nonexistent"),
            doc,
        };
        assert!(file.remove("docker.io"));
        assert!(file.get("docker.io").is_none());
    }
}
