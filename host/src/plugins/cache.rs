//! On-disk cache of compiled plugins, keyed by the `.wasm` content hash and the engine's
//! compatibility hash (a different wasmtime build or config never loads a stale artifact).

use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};

use wasmtime::Engine;
use wasmtime::component::Component;

/// Where a loaded plugin's machine code came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ArtifactSource {
    Compiled,
    Cache,
}

pub struct ArtifactCache {
    dir: PathBuf,
    engine_key: String,
}

impl ArtifactCache {
    pub fn new(dir: PathBuf, engine: &Engine) -> ArtifactCache {
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        engine.precompile_compatibility_hash().hash(&mut hasher);
        ArtifactCache {
            dir,
            engine_key: format!("{:016x}", hasher.finish()),
        }
    }

    fn path_for(&self, content_hash: &str) -> PathBuf {
        self.dir
            .join(format!("{content_hash}-{}.cwasm", self.engine_key))
    }

    /// A cached component for this content, if one is there and loads.
    pub fn load(&self, engine: &Engine, content_hash: &str) -> Option<Component> {
        let path = self.path_for(content_hash);
        if !path.exists() {
            return None;
        }
        // SAFETY: only files this cache wrote (named by content and engine hash, in a
        // directory the operator gives the host) are deserialised.
        match unsafe { Component::deserialize_file(engine, &path) } {
            Ok(component) => Some(component),
            Err(e) => {
                tracing::warn!(path = %path.display(), "ignoring unusable cached plugin: {e:#}");
                let _ = std::fs::remove_file(&path);
                None
            }
        }
    }

    /// Stores a compiled component; a failure only costs a recompile later.
    pub fn store(&self, content_hash: &str, component: &Component) {
        if let Err(e) = self.try_store(content_hash, component) {
            tracing::warn!(dir = %self.dir.display(), "cannot cache compiled plugin: {e:#}");
        }
    }

    fn try_store(&self, content_hash: &str, component: &Component) -> anyhow::Result<()> {
        std::fs::create_dir_all(&self.dir)?;
        let bytes = component.serialize()?;
        let path = self.path_for(content_hash);
        // Write then rename, so a crash never leaves a half-written artifact under the
        // final name.
        let tmp = path.with_extension(format!("tmp{}", std::process::id()));
        std::fs::write(&tmp, bytes)?;
        std::fs::rename(&tmp, &path)?;
        Ok(())
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }
}
