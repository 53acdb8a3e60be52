//! The set of loaded plugins, keyed by file stem (`sandbox.wasm` -> `sandbox`), and how it
//! changes: a rescan of the plugins directory compiles new or changed files off the async
//! runtime, checks them (`info()`, contract version) and swaps the whole map atomically.
//! A call holds an `Arc` of the version it started on, so a swap never disturbs it; a file
//! that fails to load never replaces a working version.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use arc_swap::ArcSwap;
use sha2::{Digest, Sha256};

use super::bindings::types::PluginInfo;
use super::cache::{ArtifactCache, ArtifactSource};
use super::runtime::{Call, Linked, Reply, Runtime};
use super::state::GatewayContext;

/// One loaded version of a plugin.
pub struct LoadedPlugin {
    pub name: String,
    pub info: PluginInfo,
    /// sha256 of the `.wasm` file, hex.
    pub content_hash: String,
    pub loaded_at: SystemTime,
    pub source: ArtifactSource,
    /// Compile (or cache load) plus link and `info()` check.
    pub load_time: Duration,
    pub(crate) pre: Linked,
}

/// The last failed attempt to load a plugin file.
#[derive(Debug, Clone, serde::Serialize)]
pub struct LoadError {
    pub message: String,
    pub content_hash: String,
    #[serde(serialize_with = "crate::ops::serialize_time")]
    pub at: SystemTime,
}

/// What a rescan changed.
#[derive(Debug, Default)]
pub struct ScanReport {
    pub loaded: Vec<String>,
    pub unloaded: Vec<String>,
    pub failed: Vec<String>,
}

pub struct Registry {
    runtime: Arc<Runtime>,
    dir: PathBuf,
    cache: ArtifactCache,
    loaded: ArcSwap<HashMap<String, Arc<LoadedPlugin>>>,
    errors: Mutex<HashMap<String, LoadError>>,
    /// One rescan at a time.
    scanning: tokio::sync::Mutex<()>,
}

impl Registry {
    pub fn new(runtime: Arc<Runtime>, dir: PathBuf, cache_dir: PathBuf) -> Arc<Registry> {
        let cache = ArtifactCache::new(cache_dir, runtime.engine());
        Arc::new(Registry {
            runtime,
            dir,
            cache,
            loaded: ArcSwap::from_pointee(HashMap::new()),
            errors: Mutex::new(HashMap::new()),
            scanning: tokio::sync::Mutex::new(()),
        })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn runtime(&self) -> &Arc<Runtime> {
        &self.runtime
    }

    /// The version of a plugin that new calls use.
    pub fn get(&self, name: &str) -> Option<Arc<LoadedPlugin>> {
        self.loaded.load().get(name).cloned()
    }

    pub fn loaded(&self) -> Vec<Arc<LoadedPlugin>> {
        let mut all: Vec<_> = self.loaded.load().values().cloned().collect();
        all.sort_by(|a, b| a.name.cmp(&b.name));
        all
    }

    pub fn errors(&self) -> HashMap<String, LoadError> {
        self.errors.lock().expect("errors lock").clone()
    }

    /// Brings the loaded set in line with the directory.
    pub async fn rescan(self: &Arc<Self>) -> ScanReport {
        let _one_at_a_time = self.scanning.lock().await;
        let mut report = ScanReport::default();
        let files = match list_plugin_files(&self.dir) {
            Ok(files) => files,
            Err(e) => {
                tracing::error!(dir = %self.dir.display(), "cannot list plugins: {e}");
                return report;
            }
        };
        let present: Vec<String> = files.iter().map(|(name, _)| name.clone()).collect();
        let current = self.loaded.load_full();
        let mut next: HashMap<String, Arc<LoadedPlugin>> = HashMap::new();
        for (name, path) in files {
            let bytes = match std::fs::read(&path) {
                Ok(b) => b,
                Err(e) => {
                    // Vanished between listing and reading: the next event rescans.
                    tracing::debug!(plugin = %name, "cannot read plugin file: {e}");
                    if let Some(old) = current.get(&name) {
                        next.insert(name, old.clone());
                    }
                    continue;
                }
            };
            let hash = hex::encode(Sha256::digest(&bytes));
            if let Some(old) = current.get(&name)
                && old.content_hash == hash
            {
                next.insert(name, old.clone());
                continue;
            }
            let failed_before = self
                .errors
                .lock()
                .expect("errors lock")
                .get(&name)
                .is_some_and(|e| e.content_hash == hash);
            if failed_before {
                if let Some(old) = current.get(&name) {
                    next.insert(name, old.clone());
                }
                continue;
            }
            match self.load(&name, bytes, hash.clone()).await {
                Ok(plugin) => {
                    tracing::info!(
                        plugin = %name, version = %plugin.info.version,
                        hash = &hash[..12], source = ?plugin.source,
                        load_ms = plugin.load_time.as_millis() as u64,
                        "plugin loaded"
                    );
                    self.errors.lock().expect("errors lock").remove(&name);
                    next.insert(name.clone(), Arc::new(plugin));
                    crate::telemetry::plugin_load(&name, true);
                    report.loaded.push(name);
                }
                Err(message) => {
                    tracing::error!(
                        plugin = %name, hash = &hash[..12],
                        kept = current.contains_key(&name),
                        "plugin file rejected: {message}"
                    );
                    self.errors.lock().expect("errors lock").insert(
                        name.clone(),
                        LoadError {
                            message,
                            content_hash: hash,
                            at: SystemTime::now(),
                        },
                    );
                    if let Some(old) = current.get(&name) {
                        next.insert(name.clone(), old.clone());
                    }
                    crate::telemetry::plugin_load(&name, false);
                    report.failed.push(name);
                }
            }
        }
        for name in current.keys() {
            if !next.contains_key(name) {
                tracing::warn!(plugin = %name, "plugin file removed: plugin unloaded");
                report.unloaded.push(name.clone());
            }
        }
        self.errors
            .lock()
            .expect("errors lock")
            .retain(|name, _| present.contains(name));
        self.loaded.store(Arc::new(next));
        report
    }

    async fn load(&self, name: &str, bytes: Vec<u8>, hash: String) -> Result<LoadedPlugin, String> {
        let started = Instant::now();
        let runtime = self.runtime.clone();
        let cache_hit = self.cache.load(runtime.engine(), &hash);
        let (component, source) = match cache_hit {
            Some(c) => (c, ArtifactSource::Cache),
            None => {
                let compiled = tokio::task::spawn_blocking(move || runtime.compile(&bytes))
                    .await
                    .map_err(|e| format!("compile task failed: {e}"))?
                    .map_err(|e| format!("not a valid component: {e:#}"))?;
                (compiled, ArtifactSource::Compiled)
            }
        };
        let pre = self
            .runtime
            .prepare(&component)
            .map_err(|e| format!("does not fit the psp:plugin contract: {e:#}"))?;
        let info = match self
            .runtime
            .call(
                &pre,
                &GatewayContext::loader(name),
                Call::Info,
                Default::default(),
            )
            .await
        {
            Ok(Reply::Info(info)) => info,
            Ok(_) => unreachable!("info() answers with plugin info"),
            Err(e) => return Err(format!("info() failed: {e}")),
        };
        let exported = pre.contract();
        if !exported.matches(&info.contract) {
            return Err(format!(
                "reports contract {} but exports the contract {} adapter",
                info.contract,
                exported.as_str()
            ));
        }
        if source == ArtifactSource::Compiled {
            self.cache.store(&hash, &component);
        }
        Ok(LoadedPlugin {
            name: name.to_owned(),
            info,
            content_hash: hash,
            loaded_at: SystemTime::now(),
            source,
            load_time: started.elapsed(),
            pre,
        })
    }
}

/// `<name>.wasm` files directly in `dir`, ignoring dotfiles (temporary files of an atomic
/// deploy) and editor backups.
pub fn list_plugin_files(dir: &Path) -> std::io::Result<Vec<(String, PathBuf)>> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let path = entry.path();
        if let Some(name) = plugin_name(&path)
            && entry.file_type()?.is_file()
        {
            files.push((name, path));
        }
    }
    files.sort();
    Ok(files)
}

/// The plugin a path names, if it is a plugin file.
pub fn plugin_name(path: &Path) -> Option<String> {
    let file = path.file_name()?.to_str()?;
    let stem = file.strip_suffix(".wasm")?;
    let valid = !stem.is_empty()
        && !stem.starts_with('.')
        && stem
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
    valid.then(|| stem.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plugin_file_names() {
        assert_eq!(
            plugin_name(Path::new("/p/sandbox.wasm")).as_deref(),
            Some("sandbox")
        );
        assert_eq!(
            plugin_name(Path::new("/p/my-psp_2.wasm")).as_deref(),
            Some("my-psp_2")
        );
        assert_eq!(plugin_name(Path::new("/p/.sandbox.wasm")), None);
        assert_eq!(plugin_name(Path::new("/p/sandbox.wasm.tmp")), None);
        assert_eq!(plugin_name(Path::new("/p/sandbox.wasm~")), None);
        assert_eq!(plugin_name(Path::new("/p/.wasm")), None);
        assert_eq!(plugin_name(Path::new("/p/a b.wasm")), None);
    }
}
