//! The running extension system: the current module set (swapped whole on
//! reload, so calls in flight keep the set they started with), reloads, and
//! the [`Hooks`] implementation that chains the modules of each hook.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, RwLock};

use k8s_openapi::api::core::v1::Pod;
use wasmtime::Engine;
use wasmtime::component::Linker;

use super::bindings::{self, wit};
use super::loader::{self, Compiler};
use super::metrics::{self, METRICS};
use super::module::{Bounds, Hook, Module};
use super::sandbox::{self, EpochTicker, StoreState};
use super::{ExtensionError, ExtensionSettings, watch};
use crate::hooks::{
    AnnotationInput, Hooks, MetadataChanges, ResourceInput, ResourceRequirements, StateDecision,
    StateInput,
};

/// The modules in force, per hook, in name order.
#[derive(Default)]
pub(crate) struct ModuleSet {
    hooks: [Vec<Arc<Module>>; 4],
}

impl ModuleSet {
    fn of(&self, hook: Hook) -> &[Arc<Module>] {
        &self.hooks[hook.index()]
    }

    fn find(&self, hook: Hook, path: &Path) -> Option<&Arc<Module>> {
        self.of(hook).iter().find(|m| m.path == path)
    }
}

/// A module in force (see [`Extensions::modules`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoadedModule {
    pub hook: Hook,
    /// File name, e.g. `10-gpu.wasm`.
    pub name: String,
    /// sha256 of the component and its configuration.
    pub digest: String,
}

/// A module version refused at load (see [`Extensions::rejections`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejection {
    pub hook: Hook,
    pub name: String,
    pub digest: String,
    pub reason: String,
}

pub(crate) struct Inner {
    settings: ExtensionSettings,
    engine: Engine,
    linker: Linker<StoreState>,
    compiler: Compiler,
    bounds: Bounds,
    current: RwLock<Arc<ModuleSet>>,
    reload_lock: Mutex<()>,
    generation: AtomicU64,
    rejections: Mutex<Vec<Rejection>>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Inner {
    fn current(&self) -> Arc<ModuleSet> {
        self.current
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Rescan the folder; swap in a new set if anything changed.
    pub(crate) fn reload(&self) {
        let _serial = lock(&self.reload_lock);
        let old = self.current();
        let mut new = ModuleSet::default();
        let mut changed = false;
        for hook in Hook::ALL {
            let dir = self.settings.dir.join(hook.dir());
            let list = &mut new.hooks[hook.index()];
            for path in loader::list(&dir) {
                let prev = old.find(hook, &path);
                let src = match loader::read_source(&path) {
                    Ok(s) => s,
                    Err(reason) => {
                        tracing::warn!(module = %path.display(), "extension module unreadable: {reason}");
                        list.extend(prev.cloned());
                        continue;
                    }
                };
                if let Some(p) = prev.filter(|p| p.digest == src.digest) {
                    list.push(p.clone());
                    continue;
                }
                let already_rejected = lock(&self.rejections)
                    .iter()
                    .any(|r| r.hook == hook && r.name == src.name && r.digest == src.digest);
                if already_rejected {
                    list.extend(prev.cloned());
                    continue;
                }
                let (name, digest) = (src.name.clone(), src.digest.clone());
                let started = std::time::Instant::now();
                match loader::load(
                    hook,
                    src,
                    &self.compiler,
                    &self.linker,
                    &self.engine,
                    self.bounds,
                ) {
                    Ok(m) => {
                        tracing::info!(
                            module = m.label(),
                            digest = &digest[..12],
                            ms = started.elapsed().as_millis() as u64,
                            "extension module loaded"
                        );
                        list.push(Arc::new(m));
                    }
                    Err(reason) => {
                        let module = format!("{}/{name}", hook.dir());
                        let keeps = if prev.is_some() {
                            "; the previous version keeps serving"
                        } else {
                            ""
                        };
                        tracing::warn!(module, "extension module rejected: {reason}{keeps}");
                        metrics::rejected(hook.dir(), &name);
                        let mut rej = lock(&self.rejections);
                        rej.retain(|r| !(r.hook == hook && r.name == name));
                        rej.push(Rejection {
                            hook,
                            name,
                            digest,
                            reason: reason.to_string(),
                        });
                        list.extend(prev.cloned());
                    }
                }
            }
            let before: Vec<*const Module> = old.of(hook).iter().map(Arc::as_ptr).collect();
            let after: Vec<*const Module> = list.iter().map(Arc::as_ptr).collect();
            if before != after {
                changed = true;
                for m in old.of(hook) {
                    if !list.iter().any(|n| n.path == m.path) {
                        tracing::info!(module = m.label(), "extension module removed");
                    }
                }
            }
            metrics::loaded(hook.dir(), list.len());
        }
        // forget rejections of files that are gone
        lock(&self.rejections)
            .retain(|r| self.settings.dir.join(r.hook.dir()).join(&r.name).is_file());
        if changed {
            *self.current.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(new);
            self.generation.fetch_add(1, Ordering::SeqCst);
            METRICS.reloads.inc();
        }
    }
}

/// The WebAssembly extension system (see the module docs).
pub struct Extensions {
    inner: Arc<Inner>,
    _watcher: Mutex<Option<watch::Watcher>>,
    _ticker: EpochTicker,
}

impl Extensions {
    /// Create the hook folders if needed, load what is there, and watch for changes.
    pub fn start(settings: ExtensionSettings) -> Result<Arc<Extensions>, ExtensionError> {
        let setup =
            |what: &str, e: &dyn std::fmt::Display| ExtensionError::Setup(format!("{what}: {e}"));
        for hook in Hook::ALL {
            let d = settings.dir.join(hook.dir());
            std::fs::create_dir_all(&d)
                .map_err(|e| setup(&format!("cannot create {}", d.display()), &e))?;
        }
        let engine = sandbox::engine().map_err(|e| setup("engine", &e))?;
        let linker = sandbox::linker(&engine).map_err(|e| setup("linker", &e))?;
        let cache_dir: Option<PathBuf> = Some(settings.dir.join(".cache"));
        let compiler = Compiler::new(&engine, cache_dir);
        let bounds = Bounds {
            memory_limit: settings.memory_limit,
            call_timeout: settings.call_timeout,
        };
        let ticker = EpochTicker::start(&engine).map_err(|e| setup("epoch thread", &e))?;
        let inner = Arc::new(Inner {
            settings,
            engine,
            linker,
            compiler,
            bounds,
            current: RwLock::new(Arc::new(ModuleSet::default())),
            reload_lock: Mutex::new(()),
            generation: AtomicU64::new(0),
            rejections: Mutex::new(Vec::new()),
        });
        inner.reload();
        let watcher = watch::start(&inner.settings.dir, Arc::downgrade(&inner))
            .map_err(|e| setup("watching the extension folder", &e))?;
        let ext = Arc::new(Extensions {
            inner,
            _watcher: Mutex::new(Some(watcher)),
            _ticker: ticker,
        });
        let loaded = ext.modules();
        tracing::info!(
            dir = %ext.inner.settings.dir.display(),
            modules = loaded.len(),
            "WebAssembly extensions started"
        );
        Ok(ext)
    }

    /// Rescan the folder now (the watcher does this by itself on changes).
    pub fn reload(&self) {
        self.inner.reload();
    }

    /// Increments each time the set of modules in force changes.
    pub fn generation(&self) -> u64 {
        self.inner.generation.load(Ordering::SeqCst)
    }

    /// The modules in force, per hook in order of application.
    pub fn modules(&self) -> Vec<LoadedModule> {
        let set = self.inner.current();
        Hook::ALL
            .iter()
            .flat_map(|h| set.of(*h).iter())
            .map(|m| LoadedModule {
                hook: m.hook,
                name: m.name.clone(),
                digest: m.digest.clone(),
            })
            .collect()
    }

    /// Module versions refused at load whose files are still there.
    pub fn rejections(&self) -> Vec<Rejection> {
        lock(&self.inner.rejections).clone()
    }

    fn modules_of(&self, hook: Hook) -> Option<Arc<ModuleSet>> {
        let set = self.inner.current();
        (!set.of(hook).is_empty()).then_some(set)
    }
}

fn pod_ref(ns: &str, name: &str) -> String {
    format!("{ns}/{name}")
}

impl Hooks for Extensions {
    fn map_resources(&self, input: &ResourceInput) -> ResourceRequirements {
        let Some(set) = self.modules_of(Hook::Resources) else {
            return input.default.clone();
        };
        let mut current = input.default.clone();
        for m in set.of(Hook::Resources) {
            match m.map_resources(&bindings::resource_input(input, &current)) {
                Ok(r) => current = bindings::from_requirements(r),
                Err(e) => m.report(&e, &pod_ref(&input.pod_namespace, &input.pod_name)),
            }
        }
        current
    }

    fn handle_annotations(&self, input: &AnnotationInput) -> MetadataChanges {
        let mut changes = MetadataChanges::default();
        let Some(set) = self.modules_of(Hook::Annotations) else {
            return changes;
        };
        for m in set.of(Hook::Annotations) {
            match m.handle_annotations(&bindings::annotation_input(input, &changes)) {
                Ok(c) => bindings::merge_changes(&mut changes, c),
                Err(e) => m.report(&e, &pod_ref(&input.pod_namespace, &input.pod_name)),
            }
        }
        changes
    }

    fn map_state(&self, input: &StateInput) -> StateDecision {
        let Some(set) = self.modules_of(Hook::State) else {
            return input.default.clone();
        };
        let mut current = input.default.clone();
        for m in set.of(Hook::State) {
            match m.map_state(&bindings::state_input(input, &current)) {
                Ok(d) => current = bindings::from_decision(d),
                Err(e) => m.report(&e, &pod_ref(&input.pod_namespace, &input.pod_name)),
            }
        }
        current
    }

    fn admit(&self, pod: &Pod) -> Result<(), String> {
        let Some(set) = self.modules_of(Hook::Admission) else {
            return Ok(());
        };
        let summary = bindings::pod_summary(pod);
        let pod_name = pod_ref(&summary.namespace, &summary.name);
        for m in set.of(Hook::Admission) {
            match m.admit(&summary) {
                Ok(wit::AdmissionDecision::Allow) => {}
                Ok(wit::AdmissionDecision::Deny(reason)) => {
                    tracing::info!(module = m.label(), pod = pod_name, "pod denied: {reason}");
                    return Err(format!("{reason} (admission policy {})", m.name));
                }
                Err(e) => {
                    m.report(&e, &pod_name);
                    if !self.inner.settings.admission_fail_open {
                        return Err(format!(
                            "admission policy {} failed ({e}); denying (fail-closed)",
                            m.name
                        ));
                    }
                }
            }
        }
        Ok(())
    }
}
