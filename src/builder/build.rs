//! Runs a [`Plan`]: each stage starts from its base's layers and config; RUN runs as a
//! container through the same runtime as `run` and its upper dir becomes a layer; COPY
//! and ADD stage files in a scratch upper dir that becomes a layer; the other steps
//! change only the config. Every step is looked up in the cache first. Only the target
//! stage's layers end up in the image.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{anyhow, bail, Context};
use mycontainer_store::{oci_manifest, Digest, Image, LayerInfo, Reference, Store};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use sha2::{Digest as _, Sha256};

use super::cache::{self, CachedLayer};
use super::context::{hash_sources, BuildContext, Source};
use super::copy::{self, Owner};
use super::steps::{Command, Healthcheck, Plan, Stage, Step};
use super::{words, Reporter};
use crate::container::limits::Limits;
use crate::container::run::{RootSource, RunInput};
use crate::container::spec::{ImageDefaults, Network, RunOptions};
use crate::container::step::{run_step, StepOutcome};

/// What `image build -f` was asked for.
pub struct BuildRequest {
    pub plan: Plan,
    /// The context directory (COPY and ADD sources).
    pub context: PathBuf,
    pub tags: Vec<Reference>,
    pub build_args: BTreeMap<String, String>,
    /// Stage name or index; default the last.
    pub target: Option<String>,
    pub no_cache: bool,
    /// SOURCE_DATE_EPOCH / --timestamp: fixed times, clamped mtimes.
    pub timestamp: Option<u64>,
    /// RUN's network. Bridge networking will add a mode here.
    pub network: Network,
    pub limits: Limits,
    /// No STEP lines (-q): only the RUN steps' own output and the id.
    pub quiet: bool,
}

/// The run-time config, with Docker's keys (the OCI image config's, plus Shell and
/// Healthcheck, which Docker keeps there too). Unknown keys of a base image are kept.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct RunConfig {
    #[serde(rename = "User", default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    #[serde(
        rename = "ExposedPorts",
        default,
        skip_serializing_if = "BTreeMap::is_empty"
    )]
    pub exposed_ports: BTreeMap<String, Value>,
    #[serde(rename = "Env", default, skip_serializing_if = "Vec::is_empty")]
    pub env: Vec<String>,
    #[serde(
        rename = "Entrypoint",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub entrypoint: Option<Vec<String>>,
    #[serde(rename = "Cmd", default, skip_serializing_if = "Option::is_none")]
    pub cmd: Option<Vec<String>>,
    #[serde(
        rename = "Volumes",
        default,
        skip_serializing_if = "BTreeMap::is_empty"
    )]
    pub volumes: BTreeMap<String, Value>,
    #[serde(
        rename = "WorkingDir",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub working_dir: Option<String>,
    #[serde(rename = "Labels", default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    #[serde(
        rename = "StopSignal",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub stop_signal: Option<String>,
    #[serde(rename = "Shell", default, skip_serializing_if = "Option::is_none")]
    pub shell: Option<Vec<String>>,
    #[serde(
        rename = "Healthcheck",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub healthcheck: Option<Value>,
    #[serde(flatten)]
    pub other: BTreeMap<String, Value>,
}

/// Where a stage stands after a step: what the cache keeps.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct StageState {
    /// Base first.
    pub layers: Vec<CachedLayer>,
    pub config: RunConfig,
    pub history: Vec<Value>,
    /// The cache key of the step that made this state (chains the next key).
    pub key: String,
}

impl StageState {
    fn layer_infos(&self) -> anyhow::Result<Vec<LayerInfo>> {
        self.layers.iter().map(CachedLayer::info).collect()
    }

    fn get_env(&self, name: &str) -> Option<String> {
        self.config.env.iter().find_map(|e| {
            let (k, v) = e.split_once('=')?;
            (k == name).then(|| v.to_string())
        })
    }

    fn set_env(&mut self, name: &str, value: &str) {
        let entry = format!("{name}={value}");
        match self
            .config
            .env
            .iter_mut()
            .find(|e| e.split_once('=').map(|(k, _)| k) == Some(name))
        {
            Some(existing) => *existing = entry,
            None => self.config.env.push(entry),
        }
    }
}

/// The OCI image config the build writes (field order fixed: the bytes name the image).
#[derive(Serialize)]
struct ImageConfigFile<'a> {
    created: &'a str,
    architecture: &'static str,
    os: &'static str,
    config: &'a RunConfig,
    rootfs: Value,
    history: &'a [Value],
}

struct Builder<'a> {
    store: &'a Store,
    request: &'a BuildRequest,
    context: BuildContext,
    reporter: &'a dyn Reporter,
    /// Final states of the stages built so far, by index.
    done: HashMap<usize, StageState>,
    step: usize,
    total: usize,
    used_args: std::collections::HashSet<String>,
}

/// Builds `request.plan` and tags the target stage's image; returns it.
pub fn build(
    store: &Store,
    request: &BuildRequest,
    reporter: &dyn Reporter,
) -> anyhow::Result<Image> {
    let plan = &request.plan;
    let target = match &request.target {
        None => plan.stages.len() - 1,
        Some(name) => stage_index(plan, name, plan.stages.len())
            .with_context(|| format!("target stage {name:?} not found in the Containerfile"))?,
    };
    let mut needed = vec![false; plan.stages.len()];
    mark_needed(plan, target, &mut needed);
    let total = plan
        .stages
        .iter()
        .zip(&needed)
        .filter(|(_, n)| **n)
        .map(|(s, _)| s.steps.len() + 1)
        .sum();
    // Held for the whole build: gc must not sweep the layers made before an image names them.
    let _ingest = store.ingest_lock()?;
    let mut builder = Builder {
        store,
        request,
        context: BuildContext::open(&request.context)?,
        reporter,
        done: HashMap::new(),
        step: 0,
        total,
        used_args: Default::default(),
    };
    for (index, stage) in plan.stages.iter().enumerate().take(target + 1) {
        if needed[index] {
            let state = builder.build_stage(index, stage)?;
            builder.done.insert(index, state);
        }
    }
    for name in request.build_args.keys() {
        if !builder.used_args.contains(name) {
            reporter.status(&format!(
                "warning: build argument {name} was given but no ARG in the built stages uses it"
            ));
        }
    }
    let state = builder
        .done
        .remove(&target)
        .ok_or_else(|| anyhow!("target stage was not built"))?;
    builder.write_image(&state)
}

/// The stage named `name` (an AS name, case-insensitive, or an index) among the first
/// `before` stages.
fn stage_index(plan: &Plan, name: &str, before: usize) -> Option<usize> {
    let lower = name.to_lowercase();
    if let Some(i) = plan.stages[..before]
        .iter()
        .position(|s| s.name.as_deref() == Some(lower.as_str()))
    {
        return Some(i);
    }
    name.parse::<usize>().ok().filter(|i| *i < before)
}

fn mark_needed(plan: &Plan, index: usize, needed: &mut [bool]) {
    if needed[index] {
        return;
    }
    needed[index] = true;
    let stage = &plan.stages[index];
    let mut refs = vec![stage.base.clone()];
    for step in &stage.steps {
        if let Step::Copy {
            from: Some(from), ..
        } = step
        {
            refs.push(from.clone());
        }
    }
    for name in refs {
        if let Some(dep) = stage_index(plan, &name, index) {
            mark_needed(plan, dep, needed);
        }
    }
}

fn sha256_hex(parts: &[&[u8]]) -> String {
    let mut hasher = Sha256::new();
    for part in parts {
        hasher.update((part.len() as u64).to_le_bytes());
        hasher.update(part);
    }
    hex::encode(hasher.finalize())
}

impl Builder<'_> {
    fn created(&self) -> String {
        match self.request.timestamp {
            Some(secs) => crate::timefmt::rfc3339_seconds(secs),
            None => crate::timefmt::now_seconds(),
        }
    }

    fn announce(&mut self, text: &str) {
        self.step += 1;
        if !self.request.quiet {
            println!("STEP {}/{}: {text}", self.step, self.total);
        }
    }

    /// The global ARGs' values (defaults overridden by --build-arg), for FROM lines.
    fn global_args(&mut self) -> HashMap<String, String> {
        let mut args = HashMap::new();
        for (name, default) in &self.request.plan.global_args {
            let value = self
                .request
                .build_args
                .get(name)
                .cloned()
                .or(default.clone());
            if self.request.build_args.contains_key(name) {
                self.used_args.insert(name.clone());
            }
            if let Some(value) = value {
                args.insert(name.clone(), value);
            }
        }
        args
    }

    fn build_stage(&mut self, index: usize, stage: &Stage) -> anyhow::Result<StageState> {
        let globals = self.global_args();
        let base = words::word(&stage.base, &|n| globals.get(n).cloned())?;
        self.announce(&stage.header_text());
        let mut state = self.base_state(index, &base)?;
        let mut args: Vec<(String, String)> = Vec::new();
        for step in &stage.steps {
            let text = step.to_string();
            self.announce(&text);
            if let Step::Arg(declared) = step {
                for (name, default) in declared {
                    let value = match self.request.build_args.get(name) {
                        Some(v) => {
                            self.used_args.insert(name.clone());
                            Some(v.clone())
                        }
                        None => match default {
                            Some(d) => Some(words::word(d, &|n| lookup(&state, &args, n))?),
                            None => globals.get(name).cloned(),
                        },
                    };
                    args.retain(|(k, _)| k != name);
                    if let Some(value) = value {
                        args.push((name.clone(), value));
                    }
                }
            }
            let mut hasher = Sha256::new();
            hasher.update(state.key.as_bytes());
            hasher.update(text.as_bytes());
            for (k, v) in &args {
                hasher.update(format!("\0{k}={v}").as_bytes());
            }
            let sources = self.sources_for(step, &state, &args)?;
            if let Some(sources) = &sources {
                hash_sources(Some(&self.context), sources, &mut hasher)?;
            }
            // COPY --from: what the stage or image holds now.
            if let Step::Copy {
                from: Some(from), ..
            } = step
            {
                let from = words::word(from, &|n| lookup(&state, &args, n))?;
                let source = match stage_index(&self.request.plan, &from, index) {
                    Some(dep) => self.done.get(&dep).map(|s| s.key.clone()),
                    None => Some(self.image(&from)?.id.to_string()),
                };
                hasher.update(source.unwrap_or_default().as_bytes());
            }
            let key = hex::encode(hasher.finalize());
            if !self.request.no_cache {
                if let Some(cached) = cache::get(self.store, &key) {
                    if !self.request.quiet {
                        println!("--> CACHED");
                    }
                    state = cached;
                    continue;
                }
            }
            let mut next = state.clone();
            next.key = key.clone();
            let layer = self.execute(step, &mut next, &args, sources.as_deref(), index)?;
            let mut history = serde_json::Map::new();
            history.insert("created".into(), json!(self.created()));
            history.insert("created_by".into(), json!(text));
            history.insert("comment".into(), json!("mycontainer build"));
            match layer {
                Some(layer) => next.layers.push(CachedLayer::of(&layer)),
                None => {
                    history.insert("empty_layer".into(), json!(true));
                }
            }
            next.history.push(Value::Object(history));
            cache::put(self.store, &key, &next)?;
            state = next;
        }
        Ok(state)
    }

    /// The state a stage starts from: scratch, an earlier stage, or an image (built
    /// from its built-in recipe when it is missing: `FROM busybox`, `FROM debian`).
    fn base_state(&mut self, index: usize, base: &str) -> anyhow::Result<StageState> {
        if base == "scratch" {
            return Ok(StageState {
                key: sha256_hex(&[b"scratch"]),
                ..StageState::default()
            });
        }
        if let Some(dep) = stage_index(&self.request.plan, base, index) {
            return self
                .done
                .get(&dep)
                .cloned()
                .ok_or_else(|| anyhow!("stage {base} was not built"));
        }
        let image = self.image(base)?;
        let raw: Value = serde_json::from_slice(&self.store.read_blob(&image.id)?)
            .context("the base image's config is not valid JSON")?;
        let config: RunConfig = serde_json::from_value(raw["config"].clone()).unwrap_or_default();
        let history = raw["history"].as_array().cloned().unwrap_or_default();
        Ok(StageState {
            layers: image.layers.iter().map(CachedLayer::of).collect(),
            config,
            history,
            key: sha256_hex(&[b"image", image.id.to_string().as_bytes()]),
        })
    }

    fn image(&self, name: &str) -> anyhow::Result<Image> {
        match self.store.image(name) {
            Err(mycontainer_store::Error::ImageNotFound(_)) => {
                let bare = name.strip_suffix(":latest").unwrap_or(name);
                match super::Recipe::find_built_in(bare) {
                    Some(recipe) => {
                        self.reporter.status(&format!(
                            "image {name} not found: building it from the built-in recipe"
                        ));
                        super::build(
                            self.store,
                            &recipe,
                            &super::BuildOptions { mirror: None },
                            self.reporter,
                        )
                    }
                    None => Err(anyhow!(
                        "image {name} not found: pull it, build it, or use FROM scratch"
                    )),
                }
            }
            other => other.map_err(Into::into),
        }
    }

    /// The context sources a COPY or ADD reads (for the cache key and the copy).
    fn sources_for(
        &self,
        step: &Step,
        state: &StageState,
        args: &[(String, String)],
    ) -> anyhow::Result<Option<Vec<Source>>> {
        let (words_, keyword) = match step {
            Step::Copy {
                sources,
                from: None,
                ..
            } => (sources, "COPY"),
            Step::Add { sources, .. } => (sources, "ADD"),
            _ => return Ok(None),
        };
        let mut found = Vec::new();
        for word in words_ {
            let word = words::word(word, &|n| lookup(state, args, n))?;
            if keyword == "ADD" && is_url(&word) {
                continue;
            }
            found.extend(self.context.sources(&word, keyword)?);
        }
        Ok(Some(found))
    }

    fn execute(
        &mut self,
        step: &Step,
        state: &mut StageState,
        args: &[(String, String)],
        sources: Option<&[Source]>,
        stage: usize,
    ) -> anyhow::Result<Option<LayerInfo>> {
        let expand =
            |state: &StageState, text: &str| words::word(text, &|n| lookup(state, args, n));
        match step {
            Step::Run(command) => return self.run(command, state, args).map(Some),
            Step::Copy {
                sources: words_,
                dest,
                from,
                chown,
            } => {
                let dest = expand(state, dest)?;
                let layer = match from {
                    None => self.copy_context(
                        state,
                        sources.unwrap_or_default(),
                        &dest,
                        chown.as_deref(),
                        args,
                    )?,
                    Some(from) => {
                        let from = expand(state, from)?;
                        let source_layers = match stage_index(&self.request.plan, &from, stage) {
                            Some(dep) => self
                                .done
                                .get(&dep)
                                .ok_or_else(|| anyhow!("stage {from} was not built"))?
                                .layer_infos()?,
                            None => self.image(&from)?.layers,
                        };
                        let paths = words_
                            .iter()
                            .map(|w| expand(state, w))
                            .collect::<anyhow::Result<Vec<_>>>()?;
                        self.copy_layers(
                            state,
                            &source_layers,
                            &paths,
                            &dest,
                            chown.as_deref(),
                            &from,
                        )?
                    }
                };
                return Ok(Some(layer));
            }
            Step::Add {
                sources: words_,
                dest,
                chown,
                checksum,
            } => {
                let dest = expand(state, dest)?;
                let urls = words_
                    .iter()
                    .map(|w| expand(state, w))
                    .collect::<anyhow::Result<Vec<_>>>()?
                    .into_iter()
                    .filter(|w| is_url(w))
                    .collect::<Vec<_>>();
                let checksum = checksum.as_deref().map(|c| expand(state, c)).transpose()?;
                let layer = self.add(
                    state,
                    sources.unwrap_or_default(),
                    &urls,
                    &dest,
                    chown.as_deref(),
                    checksum.as_deref(),
                )?;
                return Ok(Some(layer));
            }
            Step::Env(pairs) => {
                for (key, value) in pairs {
                    let value = expand(state, value)?;
                    state.set_env(key, &value);
                }
            }
            Step::Arg(_) => {}
            Step::Workdir(dir) => {
                let dir = expand(state, dir)?;
                let base = state
                    .config
                    .working_dir
                    .clone()
                    .unwrap_or_else(|| "/".into());
                let joined = Path::new(&base).join(&dir);
                state.config.working_dir = Some(copy::clean(&joined)?.display().to_string());
            }
            Step::User(user) => state.config.user = Some(expand(state, user)?),
            Step::Entrypoint(command) => {
                state.config.entrypoint = Some(self.argv(command, state));
                // Docker: setting ENTRYPOINT resets a CMD inherited from the base.
                state.config.cmd = None;
            }
            Step::Cmd(command) => state.config.cmd = Some(self.argv(command, state)),
            Step::Label(pairs) => {
                for (key, value) in pairs {
                    let key = expand(state, key)?;
                    let value = expand(state, value)?;
                    state.config.labels.insert(key, value);
                }
            }
            Step::Expose(ports) => {
                for port in ports {
                    let port = expand(state, port)?;
                    let port = if port.contains('/') {
                        port
                    } else {
                        format!("{port}/tcp")
                    };
                    state.config.exposed_ports.insert(port, json!({}));
                }
            }
            Step::Volume(paths) => {
                for path in paths {
                    state.config.volumes.insert(expand(state, path)?, json!({}));
                }
            }
            Step::Shell(words_) => state.config.shell = Some(words_.clone()),
            Step::StopSignal(signal) => state.config.stop_signal = Some(expand(state, signal)?),
            Step::Healthcheck(check) => state.config.healthcheck = Some(healthcheck_json(check)?),
        }
        Ok(None)
    }

    /// A command as the config or a RUN takes it: the shell form through SHELL.
    fn argv(&self, command: &Command, state: &StageState) -> Vec<String> {
        match command {
            Command::Exec(words_) => words_.clone(),
            Command::Shell(text) => {
                let mut argv = state
                    .config
                    .shell
                    .clone()
                    .unwrap_or_else(|| vec!["/bin/sh".into(), "-c".into()]);
                argv.push(text.clone());
                argv
            }
        }
    }

    fn run(
        &mut self,
        command: &Command,
        state: &StageState,
        args: &[(String, String)],
    ) -> anyhow::Result<LayerInfo> {
        let argv = self.argv(command, state);
        let mut env = state.config.env.clone();
        // Build args are in RUN's environment (ENV of the same name wins), not in the image.
        for (k, v) in args {
            if state.get_env(k).is_none() {
                env.push(format!("{k}={v}"));
            }
        }
        let layers = state.layer_infos()?;
        let image = Image {
            id: Digest::of_bytes(state.key.as_bytes()),
            manifest_digest: Digest::of_bytes(state.key.as_bytes()),
            names: Vec::new(),
            config: Default::default(),
            size: layers.iter().map(|l| l.size).sum(),
            layers: layers.clone(),
        };
        let input = RunInput {
            image: "image build".into(),
            defaults: ImageDefaults {
                env,
                entrypoint: Vec::new(),
                cmd: argv.clone(),
                working_dir: state.config.working_dir.clone(),
                user: state.config.user.clone(),
                ..ImageDefaults::default()
            },
            root: RootSource::Image(Box::new(image)),
            options: RunOptions {
                command: argv,
                network: self.request.network.clone(),
                limits: self.request.limits.clone(),
                ..RunOptions::default()
            },
            auto_remove: true,
            image_id: None,
            interactive: false,
            stop_timeout: Duration::from_secs(2),
            stop_signal: libc::SIGTERM,
            restart: Default::default(),
            healthcheck: None,
            log_opts: Default::default(),
        };
        let lower: Vec<PathBuf> = layers
            .iter()
            .rev()
            .map(|l| self.store.layer_dir(&l.diff_id))
            .collect();
        let clamp = self.request.timestamp;
        let store = self.store;
        let outcome = run_step(self.store, input, |upper| {
            drop_mount_targets(upper, &lower);
            store.import_dir_layer(upper, clamp).map_err(Into::into)
        })?;
        match outcome {
            StepOutcome::Done(imported) => Ok(imported.layer),
            StepOutcome::Failed(code) => bail!(
                "step {}/{} failed: `{}` returned a non-zero code: {code}",
                self.step,
                self.total,
                Step::Run(command.clone())
            ),
        }
    }

    fn owner(
        &self,
        state: &StageState,
        chown: Option<&str>,
        args: &[(String, String)],
        default: Owner,
    ) -> anyhow::Result<Owner> {
        let Some(chown) = chown else {
            return Ok(default);
        };
        let spec = words::word(chown, &|n| lookup(state, args, n))?;
        let layers: Vec<PathBuf> = state
            .layer_infos()?
            .iter()
            .rev()
            .map(|l| self.store.layer_dir(&l.diff_id))
            .collect();
        let user = crate::container::user::resolve_in_layers(&layers, &spec)
            .with_context(|| format!("--chown={spec}"))?;
        Ok(Owner::Set(user.uid, user.gid))
    }

    /// Where COPY/ADD write: the resolved destination, and whether it is a directory.
    fn destination(
        &self,
        state: &StageState,
        dest: &str,
        many: bool,
    ) -> anyhow::Result<(PathBuf, bool)> {
        let workdir = state
            .config
            .working_dir
            .clone()
            .unwrap_or_else(|| "/".into());
        let as_dir = dest.ends_with('/') || dest == "." || many;
        let path = copy::clean(&Path::new(&workdir).join(dest))?;
        Ok((path, as_dir))
    }

    fn lower_dirs(&self, state: &StageState) -> anyhow::Result<Vec<PathBuf>> {
        Ok(state
            .layer_infos()?
            .iter()
            .rev()
            .map(|l| self.store.layer_dir(&l.diff_id))
            .collect())
    }

    /// The host path (in `upper`) a source named `name` is written to.
    fn target(
        &self,
        upper: &Path,
        lower: &[PathBuf],
        dest: &Path,
        as_dir: bool,
        name: &str,
        source_is_dir: bool,
    ) -> anyhow::Result<PathBuf> {
        let resolved = copy::resolve_dest(lower, dest)?;
        // An existing directory is copied into, with or without a trailing slash.
        let existing_dir = mycontainer_store::visible_layer(lower, &resolved)
            .is_some_and(|(_, host)| host.is_dir())
            || upper
                .join(resolved.strip_prefix("/").unwrap_or(&resolved))
                .is_dir();
        if as_dir || source_is_dir || existing_dir {
            let dir = copy::make_dirs(upper, lower, &resolved)?;
            Ok(if source_is_dir { dir } else { dir.join(name) })
        } else {
            let parent = resolved.parent().unwrap_or(Path::new("/"));
            let dir = copy::make_dirs(upper, lower, parent)?;
            Ok(dir.join(resolved.file_name().unwrap_or_default()))
        }
    }

    fn stage_layer(
        &self,
        fill: impl FnOnce(&Path) -> anyhow::Result<()>,
    ) -> anyhow::Result<LayerInfo> {
        let temp = self.store.temp_dir("build-copy")?;
        let upper = temp.path().join("upper");
        std::fs::create_dir(&upper)?;
        fill(&upper)?;
        Ok(self
            .store
            .import_dir_layer(&upper, self.request.timestamp)?
            .layer)
    }

    fn copy_context(
        &self,
        state: &StageState,
        sources: &[Source],
        dest: &str,
        chown: Option<&str>,
        args: &[(String, String)],
    ) -> anyhow::Result<LayerInfo> {
        let owner = self.owner(state, chown, args, Owner::Set(0, 0))?;
        let (dest, as_dir) = self.destination(state, dest, sources.len() > 1)?;
        let lower = self.lower_dirs(state)?;
        let context = &self.context;
        self.stage_layer(|upper| {
            for source in sources {
                let is_dir = source.path.is_dir();
                let target = self.target(upper, &lower, &dest, as_dir, &source.name, is_dir)?;
                copy::copy_tree(&source.path, &target, owner, &|p| {
                    context.excluded(context.relative(p))
                })?;
            }
            Ok(())
        })
    }

    fn copy_layers(
        &self,
        state: &StageState,
        from_layers: &[LayerInfo],
        paths: &[String],
        dest: &str,
        chown: Option<&str>,
        from: &str,
    ) -> anyhow::Result<LayerInfo> {
        let owner = self.owner(state, chown, &[], Owner::Keep)?;
        let (dest, as_dir) = self.destination(state, dest, paths.len() > 1)?;
        let lower = self.lower_dirs(state)?;
        let source_dirs: Vec<PathBuf> = from_layers
            .iter()
            .rev()
            .map(|l| self.store.layer_dir(&l.diff_id))
            .collect();
        self.stage_layer(|upper| {
            for path in paths {
                let src = copy::clean(Path::new(path))?;
                let is_dir = mycontainer_store::visible_layer(&source_dirs, &src)
                    .is_some_and(|(_, host)| host.is_dir());
                let name = src
                    .file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_default();
                let target = self.target(upper, &lower, &dest, as_dir, &name, is_dir)?;
                if !copy::copy_from_layers(&source_dirs, &src, &target, owner)? {
                    bail!("COPY --from={from}: {path} not found in {from}");
                }
            }
            Ok(())
        })
    }

    fn add(
        &self,
        state: &StageState,
        sources: &[Source],
        urls: &[String],
        dest: &str,
        chown: Option<&str>,
        checksum: Option<&str>,
    ) -> anyhow::Result<LayerInfo> {
        let owner = self.owner(state, chown, &[], Owner::Set(0, 0))?;
        let (dest, as_dir) = self.destination(state, dest, sources.len() + urls.len() > 1)?;
        let lower = self.lower_dirs(state)?;
        let context = &self.context;
        self.stage_layer(|upper| {
            for source in sources {
                let is_dir = source.path.is_dir();
                match (is_dir, copy::archive_kind(&source.path)) {
                    (false, Some(kind)) => {
                        let dir =
                            copy::make_dirs(upper, &lower, &copy::resolve_dest(&lower, &dest)?)?;
                        copy::extract(&source.path, kind, &dir)?;
                    }
                    _ => {
                        let target =
                            self.target(upper, &lower, &dest, as_dir, &source.name, is_dir)?;
                        copy::copy_tree(&source.path, &target, owner, &|p| {
                            context.excluded(context.relative(p))
                        })?;
                    }
                }
            }
            for url in urls {
                let name = url
                    .rsplit('/')
                    .next()
                    .filter(|n| !n.is_empty())
                    .unwrap_or("download")
                    .to_string();
                let target = self.target(upper, &lower, &dest, as_dir, &name, false)?;
                self.download(url, &target, checksum)?;
                if let Owner::Set(uid, gid) = owner {
                    std::os::unix::fs::lchown(&target, Some(uid), Some(gid))?;
                }
            }
            Ok(())
        })
    }

    fn download(&self, url: &str, target: &Path, checksum: Option<&str>) -> anyhow::Result<()> {
        use std::io::Write;
        self.reporter.status(&format!("downloading {url}"));
        let mut response = reqwest::blocking::get(url)
            .and_then(|r| r.error_for_status())
            .with_context(|| format!("ADD cannot download {url}"))?;
        let mut file = std::fs::File::create(target)?;
        // The CLI's bar (on a terminal), in bytes of the download.
        self.reporter.start(response.content_length());
        let mut hasher = Sha256::new();
        let mut buffer = vec![0u8; 64 * 1024];
        loop {
            let n = std::io::Read::read(&mut response, &mut buffer)
                .with_context(|| format!("ADD cannot download {url}"))?;
            if n == 0 {
                break;
            }
            hasher.update(&buffer[..n]);
            file.write_all(&buffer[..n])?;
            self.reporter.advance(n as u64);
        }
        self.reporter.finish();
        let actual = format!("sha256:{}", hex::encode(hasher.finalize()));
        if let Some(expected) = checksum {
            if expected != actual {
                bail!("ADD {url}: checksum mismatch: expected {expected}, got {actual}");
            }
        }
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(target, std::fs::Permissions::from_mode(0o600))?;
        Ok(())
    }

    fn write_image(&self, state: &StageState) -> anyhow::Result<Image> {
        let layers = state.layer_infos()?;
        let created = state
            .history
            .last()
            .and_then(|h| h["created"].as_str())
            .map(String::from)
            .unwrap_or_else(|| self.created());
        let file = ImageConfigFile {
            created: &created,
            architecture: "amd64",
            os: "linux",
            config: &state.config,
            rootfs: json!({
                "type": "layers",
                "diff_ids": layers.iter().map(|l| l.diff_id.to_string()).collect::<Vec<_>>(),
            }),
            history: &state.history,
        };
        let config_bytes = serde_json::to_vec(&file)?;
        // A rebuild that changed nothing: the names already point at this image, and
        // the index is not rewritten.
        let id = Digest::of_bytes(&config_bytes);
        let unchanged = !self.request.tags.is_empty()
            && self.request.tags.iter().all(|tag| {
                self.store
                    .image(&tag.to_string())
                    .is_ok_and(|image| image.id == id)
            });
        if unchanged {
            return Ok(self.store.image(&self.request.tags[0].to_string())?);
        }
        let manifest_bytes = oci_manifest(&config_bytes, &layers)?;
        let first = self.request.tags.first();
        let image = self
            .store
            .add_image(&manifest_bytes, &config_bytes, first)?;
        for tag in self.request.tags.iter().skip(1) {
            self.store.tag(&image.id.to_string(), tag)?;
        }
        Ok(image)
    }
}

fn lookup(state: &StageState, args: &[(String, String)], name: &str) -> Option<String> {
    state
        .get_env(name)
        .or_else(|| args.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone()))
}

fn is_url(word: &str) -> bool {
    word.starts_with("http://") || word.starts_with("https://")
}

/// Nanoseconds of a Docker duration (`30s`, `1m30s`, `500ms`, `1h`).
fn duration_ns(text: &str) -> anyhow::Result<u64> {
    let mut total: f64 = 0.0;
    let mut number = String::new();
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        if c.is_ascii_digit() || c == '.' {
            number.push(c);
            continue;
        }
        let mut unit = c.to_string();
        while let Some(&next) = chars.peek() {
            if next.is_ascii_alphabetic() {
                unit.push(next);
                chars.next();
            } else {
                break;
            }
        }
        let value: f64 = number
            .parse()
            .map_err(|_| anyhow!("bad duration {text:?}: use e.g. 30s, 1m30s"))?;
        number.clear();
        let scale = match unit.as_str() {
            "ns" => 1.0,
            "us" | "µs" => 1e3,
            "ms" => 1e6,
            "s" => 1e9,
            "m" => 60e9,
            "h" => 3600e9,
            _ => bail!("bad duration {text:?}: unknown unit {unit:?}"),
        };
        total += value * scale;
    }
    if !number.is_empty() {
        bail!("bad duration {text:?}: a number needs a unit (30s)");
    }
    Ok(total as u64)
}

fn healthcheck_json(check: &Healthcheck) -> anyhow::Result<Value> {
    let test = match &check.command {
        None => vec!["NONE".to_string()],
        Some(Command::Exec(words_)) => std::iter::once("CMD".to_string())
            .chain(words_.clone())
            .collect(),
        Some(Command::Shell(text)) => vec!["CMD-SHELL".to_string(), text.clone()],
    };
    let mut value = serde_json::Map::new();
    value.insert("Test".into(), json!(test));
    for (key, field) in [
        ("Interval", &check.interval),
        ("Timeout", &check.timeout),
        ("StartPeriod", &check.start_period),
    ] {
        if let Some(text) = field {
            value.insert(key.into(), json!(duration_ns(text)?));
        }
    }
    if let Some(retries) = &check.retries {
        let n: u64 = retries
            .parse()
            .map_err(|_| anyhow!("HEALTHCHECK --retries={retries} is not a number"))?;
        value.insert("Retries".into(), json!(n));
    }
    Ok(Value::Object(value))
}

/// Mount targets the runtime made in a RUN's upper dir (a scratch image has no /proc,
/// /dev, /sys; the /etc files are bound over empty files): empty, and new in this step,
/// so they are not the step's changes. Docker keeps them out of its layers the same way.
fn drop_mount_targets(upper: &Path, lower: &[PathBuf]) {
    for name in [
        "proc",
        "sys",
        "dev",
        "etc/hosts",
        "etc/hostname",
        "etc/resolv.conf",
        "dev/shm",
        "dev/pts",
        "dev/mqueue",
    ]
    .iter()
    .rev()
    {
        let path = upper.join(name);
        let Ok(meta) = std::fs::symlink_metadata(&path) else {
            continue;
        };
        if mycontainer_store::visible_layer(lower, &Path::new("/").join(name)).is_some() {
            continue;
        }
        if meta.is_dir() {
            let _ = std::fs::remove_dir(&path);
        } else if meta.is_file() && meta.len() == 0 {
            let _ = std::fs::remove_file(&path);
        }
    }
    // /etc itself when only those files made it (copied up, now empty; an opaque one
    // hides the layers below and stays).
    let etc = upper.join("etc");
    if !copy::is_opaque(&etc) {
        let _ = std::fs::remove_dir(&etc);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_are_dockers() {
        assert_eq!(duration_ns("30s").unwrap(), 30_000_000_000);
        assert_eq!(duration_ns("1m30s").unwrap(), 90_000_000_000);
        assert_eq!(duration_ns("500ms").unwrap(), 500_000_000);
        assert!(duration_ns("30").is_err());
        assert!(duration_ns("3x").is_err());
    }
}
