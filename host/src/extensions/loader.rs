//! Reading a module from its folder, compiling it (once: the native code is
//! cached by content hash and engine settings), linking it, and trying it with
//! a smoke call before it may serve.

use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use k8s_openapi::api::core::v1::{Container, Pod, PodSpec};
use sha2::{Digest, Sha256};
use wasmtime::Engine;
use wasmtime::component::{Component, Linker};

use super::bindings;
use super::module::{Bounds, CallError, Hook, Module, Pre};
use super::sandbox::StoreState;
use crate::hooks;

/// Biggest component file accepted.
const MODULE_MAX_BYTES: u64 = 32 << 20;
/// Biggest configuration file accepted.
const CONFIG_MAX_BYTES: u64 = 1 << 20;
/// Configuration files looked for next to `x.wasm`, in order.
const CONFIG_EXTENSIONS: [&str; 3] = ["json", "yaml", "yml"];

/// A module file as read from disk.
pub(crate) struct Source {
    pub name: String,
    pub path: PathBuf,
    pub wasm: Vec<u8>,
    pub wasm_hash: String,
    pub config: String,
    /// sha256 over component and configuration: a change of either reloads.
    pub digest: String,
}

/// The `.wasm` files of a hook folder, in name order.
pub(crate) fn list(dir: &Path) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut files: Vec<PathBuf> = entries
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| {
            p.extension().is_some_and(|e| e == "wasm")
                && !p
                    .file_name()
                    .and_then(|n| n.to_str())
                    .is_some_and(|n| n.starts_with('.'))
                && p.is_file()
        })
        .collect();
    files.sort();
    files
}

fn read_limited(path: &Path, max: u64) -> Result<Vec<u8>, LoadError> {
    let meta =
        std::fs::metadata(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    if meta.len() > max {
        return Err(LoadError::from(format!(
            "{} is too large ({} bytes, at most {max})",
            path.display(),
            meta.len()
        )));
    }
    Ok(std::fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?)
}

/// Why a module was not loaded (the message names the module's problem).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct LoadError(pub String);

impl From<String> for LoadError {
    fn from(s: String) -> LoadError {
        LoadError(s)
    }
}

pub(crate) fn read_source(path: &Path) -> Result<Source, LoadError> {
    let name = path
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or("?")
        .to_string();
    let wasm = read_limited(path, MODULE_MAX_BYTES)?;
    let mut config = String::new();
    for ext in CONFIG_EXTENSIONS {
        let p = path.with_extension(ext);
        if p.is_file() {
            let bytes = read_limited(&p, CONFIG_MAX_BYTES)?;
            config = String::from_utf8(bytes)
                .map_err(|_| format!("{} is not UTF-8 text", p.display()))?;
            break;
        }
    }
    let wasm_hash = hex::encode(Sha256::digest(&wasm));
    let mut h = Sha256::new();
    h.update(wasm_hash.as_bytes());
    h.update([0]);
    h.update(config.as_bytes());
    let digest = hex::encode(h.finalize());
    Ok(Source {
        name,
        path: path.to_path_buf(),
        wasm,
        wasm_hash,
        config,
        digest,
    })
}

/// Compiles components, keeping the native code in a cache folder.
pub(crate) struct Compiler {
    engine: Engine,
    cache_dir: Option<PathBuf>,
    /// Hash of the engine's compilation settings (and version).
    engine_key: String,
}

impl Compiler {
    pub(crate) fn new(engine: &Engine, cache_dir: Option<PathBuf>) -> Compiler {
        let mut h = DefaultHasher::new();
        engine.precompile_compatibility_hash().hash(&mut h);
        let cache_dir = cache_dir.filter(|d| match std::fs::create_dir_all(d) {
            Ok(()) => {
                #[cfg(unix)]
                {
                    use std::os::unix::fs::PermissionsExt;
                    let _ = std::fs::set_permissions(d, std::fs::Permissions::from_mode(0o700));
                }
                true
            }
            Err(e) => {
                tracing::warn!(dir = %d.display(), "extension compile cache disabled: {e}");
                false
            }
        });
        Compiler {
            engine: engine.clone(),
            cache_dir,
            engine_key: format!("{:016x}", h.finish()),
        }
    }

    fn cache_path(&self, wasm_hash: &str) -> Option<PathBuf> {
        self.cache_dir
            .as_ref()
            .map(|d| d.join(format!("{wasm_hash}-{}.cwasm", self.engine_key)))
    }

    /// The component, from the cache when possible. Returns whether it was cached.
    pub(crate) fn compile(&self, src: &Source) -> Result<(Component, bool), LoadError> {
        let cached = self.cache_path(&src.wasm_hash);
        if let Some(path) = cached.as_ref().filter(|p| p.is_file()) {
            // SAFETY: the cache folder is ours (0700, next to the module folder);
            // files are written whole (rename) by `compile` below from code this
            // engine produced. Anything that fails to load is recompiled.
            match unsafe { Component::deserialize_file(&self.engine, path) } {
                Ok(c) => return Ok((c, true)),
                Err(e) => {
                    tracing::debug!(path = %path.display(), "cached module unusable, recompiling: {e:#}")
                }
            }
        }
        let native = self
            .engine
            .precompile_component(&src.wasm)
            .map_err(|e| format!("does not compile: {}", first_line(&e)))?;
        // SAFETY: `native` was produced just now by this engine.
        let component = unsafe { Component::deserialize(&self.engine, &native) }
            .map_err(|e| format!("does not load: {}", first_line(&e)))?;
        if let Some(path) = cached {
            let tmp = path.with_extension(format!("tmp{}", std::process::id()));
            let written = std::fs::write(&tmp, &native).and_then(|()| std::fs::rename(&tmp, &path));
            if let Err(e) = written {
                let _ = std::fs::remove_file(&tmp);
                tracing::debug!(path = %path.display(), "cannot cache compiled module: {e}");
            }
        }
        Ok((component, false))
    }
}

pub(crate) fn first_line(e: &wasmtime::Error) -> String {
    let text = format!("{e:#}");
    text.lines()
        .next()
        .unwrap_or("")
        .chars()
        .take(400)
        .collect()
}

/// Interfaces the linker provides (any 0.2.x version of WASI), without version.
const PROVIDED: &[&str] = &[
    "interlink:extensions/host",
    "interlink:extensions/types",
    "wasi:clocks/wall-clock",
    "wasi:clocks/monotonic-clock",
    "wasi:random/random",
    "wasi:random/insecure",
    "wasi:random/insecure-seed",
    "wasi:cli/exit",
    "wasi:cli/environment",
    "wasi:cli/stdin",
    "wasi:cli/stdout",
    "wasi:cli/stderr",
    "wasi:cli/terminal-input",
    "wasi:cli/terminal-output",
    "wasi:cli/terminal-stdin",
    "wasi:cli/terminal-stdout",
    "wasi:cli/terminal-stderr",
    "wasi:filesystem/types",
    "wasi:filesystem/preopens",
    "wasi:io/error",
    "wasi:io/poll",
    "wasi:io/streams",
];

/// Check the module's imports, and give the linker a trapping stub for each
/// WASI interface the sandbox withholds (sockets...): the module loads, and
/// calling one of those functions traps ("... is not available to interlink
/// extensions"). Their resources are stubs too, except those they share with
/// the interfaces the host does provide (`wasi:io` pollables and streams),
/// which keep the host's types so the module links. Imports from outside WASI
/// and this package make the module fail to link.
fn link_imports(
    engine: &Engine,
    component: &Component,
    linker: &mut Linker<StoreState>,
) -> Result<(), LoadError> {
    use wasmtime::component::ResourceType;
    use wasmtime::component::types::ComponentItem;

    for (name, ext) in component.component_type().imports(engine) {
        let bare = name.split('@').next().unwrap_or(name);
        if PROVIDED.contains(&bare) {
            continue;
        }
        let ComponentItem::ComponentInstance(instance) = &ext.ty else {
            return Err(LoadError::from(format!(
                "imports {name}, which the host does not provide"
            )));
        };
        if !name.starts_with("wasi:") {
            return Err(LoadError::from(format!(
                "imports {name}, which the host does not provide (only interlink:extensions/host and WASI)"
            )));
        }
        let stub = |e: wasmtime::Error| format!("does not link: {}", first_line(&e));
        let mut li = linker.instance(name).map_err(stub)?;
        for (item, ty) in instance.exports(engine) {
            match ty.ty {
                ComponentItem::ComponentFunc(_) => {
                    let what = format!("{name}#{item}");
                    li.func_new(item, move |_, _, _, _| {
                        wasmtime::bail!("{what} is not available to interlink extensions")
                    })
                    .map_err(stub)?;
                }
                ComponentItem::Resource(_) => {
                    // a resource another interface defines (`use wasi:io/poll.{pollable}`)
                    // must keep that interface's type, or the module does not link
                    let ty = shared_resource(item).unwrap_or_else(ResourceType::host::<()>);
                    li.resource(item, ty, |_, _| Ok(())).map_err(stub)?;
                }
                _ => {}
            }
        }
    }
    Ok(())
}

/// The host's type of a `wasi:io` resource that withheld interfaces use.
fn shared_resource(item: &str) -> Option<wasmtime::component::ResourceType> {
    use wasmtime::component::ResourceType;
    Some(match item {
        "pollable" => ResourceType::host::<wasmtime_wasi_io::poll::DynPollable>(),
        "input-stream" => ResourceType::host::<wasmtime_wasi_io::streams::DynInputStream>(),
        "output-stream" => ResourceType::host::<wasmtime_wasi_io::streams::DynOutputStream>(),
        "error" => ResourceType::host::<wasmtime_wasi_io::streams::Error>(),
        _ => return None,
    })
}

/// Compile, link, and smoke-call a module.
pub(crate) fn load(
    hook: Hook,
    src: Source,
    compiler: &Compiler,
    linker: &Linker<StoreState>,
    engine: &Engine,
    bounds: Bounds,
) -> Result<Module, LoadError> {
    let (component, _cached) = compiler.compile(&src)?;
    let mut linker = linker.clone();
    link_imports(engine, &component, &mut linker)?;
    let pre = linker
        .instantiate_pre(&component)
        .map_err(|e| format!("does not link: {}", first_line(&e)))?;
    let pre = Pre::new(hook, pre).map_err(|e| {
        format!(
            "does not export the {} world: {}",
            world(hook),
            first_line(&e)
        )
    })?;
    let module = Module::new(
        hook,
        src.name,
        src.path,
        src.digest,
        Arc::from(src.config),
        engine.clone(),
        pre,
        bounds,
    );
    smoke(&module).map_err(|e| format!("smoke call failed: {e}"))?;
    Ok(module)
}

fn world(hook: Hook) -> &'static str {
    match hook {
        Hook::Resources => "resource-mapping",
        Hook::Annotations => "annotation-handling",
        Hook::State => "state-mapping",
        Hook::Admission => "admission-policy",
    }
}

pub(crate) const SMOKE_POD: &str = "interlink-smoke-test";

/// One call with a typical input: it must not trap, time out or answer
/// something invalid. (An error answer is allowed, and logged.)
fn smoke(m: &Module) -> Result<(), CallError> {
    let outcome = match m.hook {
        Hook::Resources => {
            let mut default = hooks::ResourceRequirements::default();
            default.requests.insert("cpu".into(), "500m".into());
            default.limits.insert("cpu".into(), "1".into());
            default.limits.insert("memory".into(), "512Mi".into());
            let input = hooks::ResourceInput {
                pod_name: SMOKE_POD.into(),
                pod_namespace: "default".into(),
                container_name: "main".into(),
                resources: hooks::CriResources {
                    cpu_period: 100_000,
                    cpu_quota: 100_000,
                    cpu_shares: 512,
                    memory_limit_in_bytes: 512 << 20,
                    ..Default::default()
                },
                default: default.clone(),
                ..Default::default()
            };
            m.map_resources(&bindings::resource_input(&input, &default))
                .map(drop)
        }
        Hook::Annotations => {
            let mut input = hooks::AnnotationInput {
                pod_name: SMOKE_POD.into(),
                pod_namespace: "default".into(),
                ..Default::default()
            };
            input.pod_labels.insert("app".into(), "smoke".into());
            m.handle_annotations(&bindings::annotation_input(&input, &Default::default()))
                .map(drop)
        }
        Hook::State => {
            let current = hooks::StateDecision {
                state: hooks::CriState::Running,
                exit_code: 0,
                reason: String::new(),
                message: String::new(),
            };
            let input = hooks::StateInput {
                pod_name: SMOKE_POD.into(),
                pod_namespace: "default".into(),
                container_name: "main".into(),
                job_id: "1".into(),
                remote: hooks::RemoteState::Running,
                remote_reason: String::new(),
                remote_message: String::new(),
                remote_exit_code: 0,
                default: current.clone(),
            };
            m.map_state(&bindings::state_input(&input, &current))
                .map(drop)
        }
        Hook::Admission => {
            let pod = Pod {
                metadata: k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta {
                    name: Some(SMOKE_POD.into()),
                    namespace: Some("default".into()),
                    uid: Some("00000000-0000-0000-0000-000000000000".into()),
                    ..Default::default()
                },
                spec: Some(PodSpec {
                    containers: vec![Container {
                        name: "main".into(),
                        image: Some("registry.invalid/smoke:latest".into()),
                        ..Default::default()
                    }],
                    ..Default::default()
                }),
                ..Default::default()
            };
            m.admit(&bindings::pod_summary(&pod)).map(drop)
        }
    };
    match outcome {
        Err(CallError::Guest(e)) => {
            tracing::warn!(module = m.label(), "smoke call answered with an error: {e}");
            Ok(())
        }
        other => other,
    }
}
