//! One loaded module: its linked component, a small pool of ready instances,
//! and calls with every failure contained (deadline, memory, trap, bad result).

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use wasmtime::component::{InstancePre, ResourceTableError};
use wasmtime::{Engine, Store, Trap};

use super::bindings::{self, StringMap, admission, annotations, resources, state, wit};
use super::metrics::ModuleMetrics;
use super::sandbox::{Budget, KEPT_HOST_RESOURCES, MAX_HOST_RESOURCES, StoreState, enforce_budget};

/// The four hooks, in the order of their folders.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Hook {
    /// `resources/`: container resources → requests and limits.
    Resources,
    /// `annotations/`: labels and annotations of the remote pod.
    Annotations,
    /// `state/`: remote status → CRI state.
    State,
    /// `admission/`: allow or deny a pod.
    Admission,
}

impl Hook {
    pub const ALL: [Hook; 4] = [
        Hook::Resources,
        Hook::Annotations,
        Hook::State,
        Hook::Admission,
    ];

    /// The hook's subfolder (also its metrics label).
    pub fn dir(self) -> &'static str {
        match self {
            Hook::Resources => "resources",
            Hook::Annotations => "annotations",
            Hook::State => "state",
            Hook::Admission => "admission",
        }
    }

    pub(crate) fn index(self) -> usize {
        self as usize
    }
}

/// Idle instances kept per module (more are created under concurrency).
const POOL_MAX: usize = 8;
/// Biggest result accepted from a module, in bytes of text.
pub(crate) const RESULT_MAX_BYTES: usize = 64 << 10;
/// Most entries accepted in one result map.
pub(crate) const RESULT_MAX_ENTRIES: usize = 256;

/// Why a call failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum CallError {
    /// The epoch deadline passed.
    Timeout,
    /// The module hit its memory limit.
    Memory(String),
    /// Any other trap (panic, unreachable, bad import use...).
    Trap(String),
    /// The module answered something the host refuses (too big, bad quantity...).
    Invalid(String),
    /// The module answered with an error of its own.
    Guest(String),
}

impl CallError {
    pub(crate) fn kind(&self) -> &'static str {
        match self {
            CallError::Timeout => "timeout",
            CallError::Memory(_) => "memory",
            CallError::Trap(_) => "trap",
            CallError::Invalid(_) => "invalid",
            CallError::Guest(_) => "error",
        }
    }
}

impl std::fmt::Display for CallError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CallError::Timeout => f.write_str("timed out (call deadline exceeded)"),
            CallError::Memory(e) => write!(f, "memory limit exceeded: {e}"),
            CallError::Trap(e) => write!(f, "trapped: {e}"),
            CallError::Invalid(e) => write!(f, "invalid result: {e}"),
            CallError::Guest(e) => write!(f, "returned an error: {e}"),
        }
    }
}

/// A linked component, typed for its hook.
pub(crate) enum Pre {
    Resources(resources::ResourceMappingPre<StoreState>),
    Annotations(annotations::AnnotationHandlingPre<StoreState>),
    State(state::StateMappingPre<StoreState>),
    Admission(admission::AdmissionPolicyPre<StoreState>),
}

impl Pre {
    pub(crate) fn new(hook: Hook, pre: InstancePre<StoreState>) -> wasmtime::Result<Pre> {
        Ok(match hook {
            Hook::Resources => Pre::Resources(resources::ResourceMappingPre::new(pre)?),
            Hook::Annotations => Pre::Annotations(annotations::AnnotationHandlingPre::new(pre)?),
            Hook::State => Pre::State(state::StateMappingPre::new(pre)?),
            Hook::Admission => Pre::Admission(admission::AdmissionPolicyPre::new(pre)?),
        })
    }
}

enum Bound {
    Resources(resources::ResourceMapping),
    Annotations(annotations::AnnotationHandling),
    State(state::StateMapping),
    Admission(admission::AdmissionPolicy),
}

struct Instance {
    store: Store<StoreState>,
    bound: Bound,
}

/// Sandbox bounds of a module's calls.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Bounds {
    pub memory_limit: usize,
    /// CPU time per call.
    pub call_timeout: Duration,
}

impl Bounds {
    /// A call: its CPU time, and at most ten times that (100 ms at least) of
    /// wall-clock time if the thread is kept off the CPU.
    fn call(&self) -> Budget {
        Budget::new(
            self.call_timeout,
            (self.call_timeout * 10).max(Duration::from_millis(100)),
        )
    }

    /// Instantiation (runs the module's initialisers): more generous.
    fn instantiation(&self) -> Budget {
        let cpu = (self.call_timeout * 10).max(Duration::from_millis(100));
        Budget::new(cpu, cpu * 5)
    }
}

pub(crate) struct Module {
    pub hook: Hook,
    /// File name (`10-gpu.wasm`).
    pub name: String,
    pub path: PathBuf,
    /// sha256 of the component and its configuration.
    pub digest: String,
    /// `hook/name`, for logs.
    label: Arc<str>,
    config: Arc<str>,
    engine: Engine,
    pre: Pre,
    bounds: Bounds,
    pool: Mutex<Vec<Instance>>,
    metrics: ModuleMetrics,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// A failure of wasmtime, classified, with a one-line explanation.
fn classify(e: wasmtime::Error) -> CallError {
    let trap = e.downcast_ref::<Trap>().copied();
    if trap == Some(Trap::Interrupt) {
        return CallError::Timeout;
    }
    let memory = e.chain().any(|c| {
        let t = c.to_string();
        t.contains("growing memory")
            || t.contains("memory growth failure")
            || t.contains("memory limit")
    }) || trap == Some(Trap::AllocationTooLarge);
    let table_full = e.chain().any(|c| {
        matches!(
            c.downcast_ref::<ResourceTableError>(),
            Some(ResourceTableError::Full)
        )
    });
    if table_full {
        return CallError::Memory(format!(
            "the module holds more than {MAX_HOST_RESOURCES} host resources (pollables, streams) at once"
        ));
    }
    let text = match trap {
        Some(t) => t.to_string(),
        None => e.root_cause().to_string(),
    };
    let short: String = text
        .lines()
        .next()
        .unwrap_or("")
        .chars()
        .take(300)
        .collect();
    if memory {
        CallError::Memory(short)
    } else {
        CallError::Trap(short)
    }
}

impl Module {
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn new(
        hook: Hook,
        name: String,
        path: PathBuf,
        digest: String,
        config: Arc<str>,
        engine: Engine,
        pre: Pre,
        bounds: Bounds,
    ) -> Module {
        let label: Arc<str> = format!("{}/{}", hook.dir(), name).into();
        let metrics = ModuleMetrics::new(hook.dir(), &name);
        Module {
            hook,
            name,
            path,
            digest,
            label,
            config,
            engine,
            pre,
            bounds,
            pool: Mutex::new(Vec::new()),
            metrics,
        }
    }

    /// `hook/file.wasm`.
    pub(crate) fn label(&self) -> &str {
        &self.label
    }

    fn instantiate(&self) -> wasmtime::Result<Instance> {
        let data = StoreState::new(
            self.label.clone(),
            self.config.clone(),
            self.bounds.memory_limit,
        );
        let mut store = Store::new(&self.engine, data);
        store.limiter(|s| &mut s.limits);
        enforce_budget(&mut store);
        store.data_mut().start_call(self.bounds.instantiation());
        let bound = match &self.pre {
            Pre::Resources(p) => Bound::Resources(p.instantiate(&mut store)?),
            Pre::Annotations(p) => Bound::Annotations(p.instantiate(&mut store)?),
            Pre::State(p) => Bound::State(p.instantiate(&mut store)?),
            Pre::Admission(p) => Bound::Admission(p.instantiate(&mut store)?),
        };
        Ok(Instance { store, bound })
    }

    /// Run `f` on an instance under the deadline; the instance goes back to
    /// the pool unless the call trapped.
    fn call<R>(
        &self,
        f: impl FnOnce(&mut Store<StoreState>, &Bound) -> wasmtime::Result<R>,
    ) -> Result<R, CallError> {
        let start = Instant::now();
        self.metrics.calls.inc();
        let pooled = lock(&self.pool).pop();
        let outcome = catch_unwind(AssertUnwindSafe(|| {
            let mut inst = match pooled {
                Some(i) => i,
                None => self.instantiate()?,
            };
            inst.store.data_mut().start_call(self.bounds.call());
            inst.store.set_epoch_deadline(1);
            let r = f(&mut inst.store, &inst.bound)?;
            Ok::<_, wasmtime::Error>((r, inst))
        }));
        self.metrics.latency.observe(start.elapsed().as_secs_f64());
        match outcome {
            Ok(Ok((r, mut inst))) => {
                // an instance that kept what its calls created is not reused:
                // host resources are not in its memory bound
                let held = inst.store.data_mut().host_resources();
                if held > KEPT_HOST_RESOURCES {
                    tracing::info!(
                        module = self.label(),
                        held,
                        "extension instance holds too many host resources; starting a fresh one"
                    );
                } else {
                    let mut pool = lock(&self.pool);
                    if pool.len() < POOL_MAX {
                        pool.push(inst);
                    }
                }
                Ok(r)
            }
            Ok(Err(e)) => Err(classify(e)),
            Err(_) => Err(CallError::Trap("the host panicked during the call".into())),
        }
    }

    /// Count and log a failed call (with the module's name).
    pub(crate) fn report(&self, e: &CallError, pod: &str) {
        self.metrics.error(e.kind());
        let module = self.label();
        match e {
            CallError::Guest(_) => tracing::info!(module, pod, kind = e.kind(), "extension {e}"),
            _ => tracing::warn!(
                module,
                pod,
                kind = e.kind(),
                "extension failed: {e}; continuing with the previous result"
            ),
        }
    }

    pub(crate) fn map_resources(
        &self,
        input: &wit::ResourceInput,
    ) -> Result<wit::ResourceRequirements, CallError> {
        let r = self.call(|store, b| match b {
            Bound::Resources(m) => m.call_map_resources(store, input),
            _ => wasmtime::bail!("module bound to the wrong hook"),
        })?;
        let r = r.map_err(|e| CallError::Guest(clip(e)))?;
        check_map(&r.requests, true)?;
        check_map(&r.limits, true)?;
        Ok(r)
    }

    pub(crate) fn handle_annotations(
        &self,
        input: &wit::AnnotationInput,
    ) -> Result<wit::MetadataChanges, CallError> {
        let r = self.call(|store, b| match b {
            Bound::Annotations(m) => m.call_handle_annotations(store, input),
            _ => wasmtime::bail!("module bound to the wrong hook"),
        })?;
        let r = r.map_err(|e| CallError::Guest(clip(e)))?;
        check_map(&r.set_labels, false)?;
        check_map(&r.set_annotations, false)?;
        let removed: usize = r
            .remove_labels
            .iter()
            .chain(&r.remove_annotations)
            .map(String::len)
            .sum();
        if removed > RESULT_MAX_BYTES
            || r.remove_labels.len() + r.remove_annotations.len() > RESULT_MAX_ENTRIES
        {
            return Err(CallError::Invalid("too many removals".into()));
        }
        Ok(r)
    }

    pub(crate) fn map_state(
        &self,
        input: &wit::StateInput,
    ) -> Result<wit::StateDecision, CallError> {
        let r = self.call(|store, b| match b {
            Bound::State(m) => m.call_map_state(store, input),
            _ => wasmtime::bail!("module bound to the wrong hook"),
        })?;
        let r = r.map_err(|e| CallError::Guest(clip(e)))?;
        if r.reason.len() > 256 || r.message.len() > 16 << 10 {
            return Err(CallError::Invalid(format!(
                "reason/message too long ({} / {} bytes)",
                r.reason.len(),
                r.message.len()
            )));
        }
        Ok(r)
    }

    pub(crate) fn admit(&self, pod: &wit::PodSummary) -> Result<wit::AdmissionDecision, CallError> {
        let r = self.call(|store, b| match b {
            Bound::Admission(m) => m.call_admit(store, pod),
            _ => wasmtime::bail!("module bound to the wrong hook"),
        })?;
        match r {
            wit::AdmissionDecision::Deny(reason) => Ok(wit::AdmissionDecision::Deny(clip(reason))),
            d => Ok(d),
        }
    }
}

/// Keep an error text readable in logs and CRI errors.
fn clip(mut s: String) -> String {
    const MAX: usize = 1024;
    if s.len() > MAX {
        let mut end = MAX;
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        s.truncate(end);
        s.push('…');
    }
    s
}

fn check_map(m: &StringMap, quantities: bool) -> Result<(), CallError> {
    let bytes = bindings::map_bytes(m);
    if bytes > RESULT_MAX_BYTES || m.len() > RESULT_MAX_ENTRIES {
        return Err(CallError::Invalid(format!(
            "result too large ({} entries, {bytes} bytes; at most {RESULT_MAX_ENTRIES} entries and {RESULT_MAX_BYTES} bytes)",
            m.len()
        )));
    }
    for (k, v) in m {
        if k.is_empty() {
            return Err(CallError::Invalid("empty name".into()));
        }
        if quantities && !is_quantity(v) {
            return Err(CallError::Invalid(format!("{k}: {v:?} is not a quantity")));
        }
    }
    Ok(())
}

/// A Kubernetes quantity: `[+-]digits[.digits]` then a binary or decimal suffix
/// or an exponent.
pub(crate) fn is_quantity(s: &str) -> bool {
    let s = s.strip_prefix(['+', '-']).unwrap_or(s);
    let end = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(s.len());
    let (num, suffix) = s.split_at(end);
    let dots = num.matches('.').count();
    if num.is_empty() || num == "." || dots > 1 {
        return false;
    }
    match suffix {
        "" | "n" | "u" | "m" | "k" | "M" | "G" | "T" | "P" | "E" | "Ki" | "Mi" | "Gi" | "Ti"
        | "Pi" | "Ei" => true,
        _ => {
            let exp = suffix.strip_prefix(['e', 'E']);
            exp.map(|e| e.strip_prefix(['+', '-']).unwrap_or(e))
                .is_some_and(|e| !e.is_empty() && e.chars().all(|c| c.is_ascii_digit()))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::is_quantity;

    #[test]
    fn quantities() {
        for ok in ["1", "500m", "1.5", "2Gi", "128Mi", "1e3", "+1", "0.5k"] {
            assert!(is_quantity(ok), "{ok}");
        }
        for bad in ["", "abc", "1.2.3", "1Xi", "Gi", ".", "1e"] {
            assert!(!is_quantity(bad), "{bad}");
        }
    }
}
