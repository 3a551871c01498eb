//! The engines of a process by key: loaded by their first client, shared by the later ones,
//! freed with the last.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock, Weak};

use super::backend::Loader;
use super::error::EngineError;
use super::key::EngineKey;
use super::worker::{Engine, lock};

/// A key's engine, locked while it loads so that clients of one key wait for one load.
type EngineCell = Arc<Mutex<Weak<Engine>>>;

/// Engines by key; cloning gives another handle on the same registry. Clients are made with
/// [`Registry::client`].
#[derive(Clone, Default)]
pub struct Registry {
    engines: Arc<Mutex<HashMap<EngineKey, EngineCell>>>,
}

impl Registry {
    /// A registry of its own (tests, or engines deliberately not shared with the process).
    pub fn new() -> Self {
        Self::default()
    }

    /// The process-wide registry every element instance uses.
    pub fn global() -> &'static Registry {
        static GLOBAL: OnceLock<Registry> = OnceLock::new();
        GLOBAL.get_or_init(Registry::new)
    }

    /// The engine of `key`: the live one if any client holds it, else a new one `loader` makes.
    /// Clients of one key wait for a single load; loads of other keys go on meanwhile.
    pub fn shared(&self, key: EngineKey, loader: &Loader) -> Result<Arc<Engine>, EngineError> {
        let entry = {
            let mut engines = lock(&self.engines);
            // Forget keys whose engine is gone and that nobody is loading.
            engines.retain(|_, e| {
                Arc::strong_count(e) > 1 || !matches!(e.try_lock(), Ok(w) if w.strong_count() == 0)
            });
            Arc::clone(engines.entry(key.clone()).or_default())
        };
        let mut weak = lock(&entry);
        if let Some(engine) = weak.upgrade() {
            return Ok(engine);
        }
        let backend = loader(&key).map_err(|source| EngineError::Load {
            path: key.model.clone(),
            source,
        })?;
        let engine = Arc::new(Engine::new(key, backend));
        *weak = Arc::downgrade(&engine);
        Ok(engine)
    }

    /// Engines alive now (not counting keys being loaded).
    pub fn live(&self) -> usize {
        self.live_engines().len()
    }

    /// The engines alive now, e.g. to read their [`Engine::stats`].
    pub fn live_engines(&self) -> Vec<Arc<Engine>> {
        lock(&self.engines)
            .values()
            .filter_map(|e| e.try_lock().ok()?.upgrade())
            .collect()
    }
}
