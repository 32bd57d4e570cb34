//! The sandbox every module runs in: the engine (epoch interruption, one ticker
//! thread), the per-instance store state (WASI with nothing granted, memory
//! limit, log budget), and the linker (host imports + the harmless parts of
//! WASI; blocking I/O never reaches the caller's async runtime).

use std::future::Future;
use std::pin::pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use wasmtime::component::{HasData, Linker, Resource, ResourceTable};
use wasmtime::{Config, Engine, StoreLimits, StoreLimitsBuilder};
use wasmtime_wasi::p2::bindings::sync::io as sync_io;
use wasmtime_wasi::p2::{StreamError, StreamResult};
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};
use wasmtime_wasi_io::bindings::wasi::io::poll as async_poll;
use wasmtime_wasi_io::bindings::wasi::io::streams as async_streams;
use wasmtime_wasi_io::poll::DynPollable;
use wasmtime_wasi_io::streams::{DynInputStream, DynOutputStream};

use super::bindings::host;

/// Log lines a module may write per call; the rest are dropped.
const LOG_LINES_PER_CALL: u32 = 32;
/// Longest log message / field value kept (bytes).
const LOG_TEXT_MAX: usize = 1024;
/// Host resources (pollables, streams, ...) one instance may hold at once.
/// They live in the host, outside the module's memory bound: a module that
/// would create more traps ("resource table has no free keys").
pub(crate) const MAX_HOST_RESOURCES: usize = 1024;
/// An instance still holding more host resources than this after a call is
/// dropped instead of reused, and what it leaked with it: each call starts
/// with at most this many, so each call may create at most
/// `MAX_HOST_RESOURCES - KEPT_HOST_RESOURCES` of its own.
pub(crate) const KEPT_HOST_RESOURCES: usize = 64;
/// Epoch tick: the granularity of call deadlines.
pub(crate) const TICK: Duration = Duration::from_millis(1);

/// The engine all modules share: cranelift, component model, epoch interruption.
pub(crate) fn engine() -> wasmtime::Result<Engine> {
    let mut config = Config::new();
    config.wasm_component_model(true);
    config.epoch_interruption(true);
    config.parallel_compilation(true);
    // Small, bounded instances: no huge virtual reservations per module.
    config.memory_reservation(64 << 20);
    config.memory_guard_size(64 << 10);
    config.memory_reservation_for_growth(1 << 20);
    config.max_wasm_stack(512 << 10);
    Engine::new(&config)
}

/// Increments the engine's epoch every [`TICK`] until stopped.
pub(crate) struct EpochTicker {
    stop: Arc<AtomicBool>,
}

impl EpochTicker {
    pub(crate) fn start(engine: &Engine) -> std::io::Result<EpochTicker> {
        let stop = Arc::new(AtomicBool::new(false));
        let (engine, flag) = (engine.clone(), stop.clone());
        std::thread::Builder::new()
            .name("wasm-epoch".into())
            .spawn(move || {
                while !flag.load(Ordering::Relaxed) {
                    std::thread::sleep(TICK);
                    engine.increment_epoch();
                }
            })?;
        Ok(EpochTicker { stop })
    }
}

impl Drop for EpochTicker {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// CPU time used by the calling thread so far.
pub(crate) fn thread_cpu() -> Duration {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime only writes the timespec we pass.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    if rc != 0 {
        return Duration::ZERO;
    }
    Duration::new(
        ts.tv_sec.max(0) as u64,
        ts.tv_nsec.clamp(0, 999_999_999) as u32,
    )
}

/// The time a call may take: CPU time of the calling thread (so a call that
/// the OS merely preempted is not cut short), with a wall-clock backstop.
/// Checked at every epoch tick once the call has run for one.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Budget {
    wall_start: Instant,
    cpu_start: Duration,
    cpu: Duration,
    wall: Duration,
}

impl Budget {
    pub(crate) fn new(cpu: Duration, wall: Duration) -> Budget {
        Budget {
            wall_start: Instant::now(),
            cpu_start: thread_cpu(),
            cpu,
            wall,
        }
    }

    fn exceeded(&self) -> bool {
        self.wall_start.elapsed() >= self.wall
            || thread_cpu().saturating_sub(self.cpu_start) >= self.cpu
    }
}

/// Install the deadline check on a store: at each tick past the deadline, the
/// call continues while within its budget, else it is interrupted
/// (`Trap::Interrupt`).
pub(crate) fn enforce_budget(store: &mut wasmtime::Store<StoreState>) {
    store.epoch_deadline_callback(|ctx| {
        Ok(if ctx.data().budget.exceeded() {
            wasmtime::UpdateDeadline::Interrupt
        } else {
            wasmtime::UpdateDeadline::Continue(1)
        })
    });
    store.set_epoch_deadline(1);
}

/// What one instance's store holds.
pub(crate) struct StoreState {
    wasi: WasiCtx,
    table: ResourceTable,
    pub(crate) limits: StoreLimits,
    /// `hook/file.wasm`, for logs.
    module: Arc<str>,
    /// The module's configuration text.
    config: Arc<str>,
    /// Log lines left in the current call.
    pub(crate) logs_left: u32,
    /// Time left for the current call (or the instantiation).
    pub(crate) budget: Budget,
}

impl StoreState {
    /// Prepare for one call: log budget and time budget.
    pub(crate) fn start_call(&mut self, budget: Budget) {
        self.logs_left = LOG_LINES_PER_CALL;
        self.budget = budget;
    }

    /// Host resources the instance holds now.
    pub(crate) fn host_resources(&mut self) -> usize {
        self.table.iter_mut().count()
    }

    pub(crate) fn new(module: Arc<str>, config: Arc<str>, memory_limit: usize) -> StoreState {
        // nothing preopened, no environment, no arguments, no network
        let wasi = WasiCtx::builder()
            .allow_tcp(false)
            .allow_udp(false)
            .allow_ip_name_lookup(false)
            .build();
        let mut table = ResourceTable::new();
        table.set_max_capacity(MAX_HOST_RESOURCES);
        StoreState {
            wasi,
            table,
            limits: StoreLimitsBuilder::new()
                .memory_size(memory_limit)
                .table_elements(100_000)
                .instances(64)
                .tables(64)
                .memories(8)
                .trap_on_grow_failure(true)
                .build(),
            module,
            config,
            logs_left: LOG_LINES_PER_CALL,
            budget: Budget::new(Duration::from_secs(1), Duration::from_secs(1)),
        }
    }
}

impl WasiView for StoreState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

fn clip(s: &str) -> &str {
    if s.len() <= LOG_TEXT_MAX {
        return s;
    }
    let mut end = LOG_TEXT_MAX;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

impl host::Host for StoreState {
    fn log(&mut self, level: host::Level, message: String, fields: Vec<(String, String)>) {
        if self.logs_left == 0 {
            return;
        }
        self.logs_left -= 1;
        let enabled = match level {
            host::Level::Trace => tracing::enabled!(tracing::Level::TRACE),
            host::Level::Debug => tracing::enabled!(tracing::Level::DEBUG),
            host::Level::Info => tracing::enabled!(tracing::Level::INFO),
            host::Level::Warn => tracing::enabled!(tracing::Level::WARN),
            host::Level::Error => tracing::enabled!(tracing::Level::ERROR),
        };
        if !enabled {
            return;
        }
        let mut text = String::new();
        for (k, v) in fields.iter().take(16) {
            if !text.is_empty() {
                text.push(' ');
            }
            text.push_str(clip(k));
            text.push('=');
            text.push_str(clip(v));
        }
        let (module, message, fields) = (&*self.module, clip(&message), clip(&text));
        match level {
            host::Level::Trace => tracing::trace!(module, fields, "{message}"),
            host::Level::Debug => tracing::debug!(module, fields, "{message}"),
            host::Level::Info => tracing::info!(module, fields, "{message}"),
            host::Level::Warn => tracing::warn!(module, fields, "{message}"),
            host::Level::Error => tracing::error!(module, fields, "{message}"),
        }
    }

    fn config(&mut self) -> String {
        self.config.to_string()
    }
}

/// The linker every module is linked with: our `host` interface, clocks,
/// random, cli (empty environment, closed stdin, stdout/stderr into the log),
/// no preopened directory, and non-blocking I/O streams. The loader adds a
/// stub for each other `wasi:` interface a module imports (sockets...), so
/// such a module loads and each of those functions traps when called
/// (`loader::link_imports`); imports from outside WASI and this package make
/// the module fail to link.
pub(crate) fn linker(engine: &Engine) -> wasmtime::Result<Linker<StoreState>> {
    use wasmtime_wasi::p2::bindings::{cli, clocks, filesystem, random};
    use wasmtime_wasi::random::WasiRandom;
    use wasmtime_wasi::{cli::WasiCli, clocks::WasiClocks, filesystem::WasiFilesystem};

    let mut l = Linker::<StoreState>::new(engine);
    host::add_to_linker::<StoreState, wasmtime::component::HasSelf<StoreState>>(&mut l, |s| s)?;

    clocks::wall_clock::add_to_linker::<StoreState, WasiClocks>(&mut l, StoreState::clocks)?;
    clocks::monotonic_clock::add_to_linker::<StoreState, WasiClocks>(&mut l, StoreState::clocks)?;
    random::random::add_to_linker::<StoreState, WasiRandom>(&mut l, |t| t.wasi.random())?;
    random::insecure::add_to_linker::<StoreState, WasiRandom>(&mut l, |t| t.wasi.random())?;
    random::insecure_seed::add_to_linker::<StoreState, WasiRandom>(&mut l, |t| t.wasi.random())?;
    cli::exit::add_to_linker::<StoreState, WasiCli>(&mut l, StoreState::cli)?;
    cli::environment::add_to_linker::<StoreState, WasiCli>(&mut l, StoreState::cli)?;
    cli::stdin::add_to_linker::<StoreState, WasiCli>(&mut l, StoreState::cli)?;
    cli::stdout::add_to_linker::<StoreState, WasiCli>(&mut l, StoreState::cli)?;
    cli::stderr::add_to_linker::<StoreState, WasiCli>(&mut l, StoreState::cli)?;
    cli::terminal_input::add_to_linker::<StoreState, WasiCli>(&mut l, StoreState::cli)?;
    cli::terminal_output::add_to_linker::<StoreState, WasiCli>(&mut l, StoreState::cli)?;
    cli::terminal_stdin::add_to_linker::<StoreState, WasiCli>(&mut l, StoreState::cli)?;
    cli::terminal_stdout::add_to_linker::<StoreState, WasiCli>(&mut l, StoreState::cli)?;
    cli::terminal_stderr::add_to_linker::<StoreState, WasiCli>(&mut l, StoreState::cli)?;
    filesystem::preopens::add_to_linker::<StoreState, WasiFilesystem>(
        &mut l,
        StoreState::filesystem,
    )?;
    // no directory is preopened, so no descriptor can ever exist
    wasmtime_wasi::p2::bindings::sync::filesystem::types::add_to_linker::<
        StoreState,
        WasiFilesystem,
    >(&mut l, StoreState::filesystem)?;
    wasmtime_wasi_io::bindings::wasi::io::error::add_to_linker::<StoreState, NoBlockIo>(
        &mut l,
        NoBlock::of,
    )?;
    sync_io::poll::add_to_linker::<StoreState, NoBlockIo>(&mut l, NoBlock::of)?;
    sync_io::streams::add_to_linker::<StoreState, NoBlockIo>(&mut l, NoBlock::of)?;
    Ok(l)
}

use wasmtime_wasi::cli::WasiCliView as _;
use wasmtime_wasi::clocks::WasiClocksView as _;
use wasmtime_wasi::filesystem::WasiFilesystemView as _;

/// WASI I/O without blocking: every operation is polled once; one that would
/// wait traps instead ("blocking is not allowed"). Output goes to the log.
pub(crate) struct NoBlock<'a> {
    table: &'a mut ResourceTable,
    module: &'a str,
    logs_left: &'a mut u32,
}

impl NoBlock<'_> {
    fn of(s: &mut StoreState) -> NoBlock<'_> {
        NoBlock {
            table: &mut s.table,
            module: &s.module,
            logs_left: &mut s.logs_left,
        }
    }
}

pub(crate) struct NoBlockIo;

impl HasData for NoBlockIo {
    type Data<'a> = NoBlock<'a>;
}

const WOULD_BLOCK: &str = "blocking is not allowed in interlink extensions";

/// Poll a future once.
fn now<F: Future>(f: F) -> Option<F::Output> {
    let mut f = pin!(f);
    match f.as_mut().poll(&mut Context::from_waker(Waker::noop())) {
        Poll::Ready(v) => Some(v),
        Poll::Pending => None,
    }
}

impl wasmtime_wasi_io::bindings::wasi::io::error::Host for NoBlock<'_> {}

impl wasmtime_wasi_io::bindings::wasi::io::error::HostError for NoBlock<'_> {
    fn to_debug_string(
        &mut self,
        err: Resource<wasmtime_wasi_io::streams::Error>,
    ) -> wasmtime::Result<String> {
        wasmtime_wasi_io::bindings::wasi::io::error::HostError::to_debug_string(self.table, err)
    }

    fn drop(&mut self, err: Resource<wasmtime_wasi_io::streams::Error>) -> wasmtime::Result<()> {
        wasmtime_wasi_io::bindings::wasi::io::error::HostError::drop(self.table, err)
    }
}

impl sync_io::poll::Host for NoBlock<'_> {
    fn poll(&mut self, pollables: Vec<Resource<DynPollable>>) -> wasmtime::Result<Vec<u32>> {
        // ready ones only; if none is ready the guest would wait: refuse
        let mut ready = Vec::new();
        for (i, p) in pollables.iter().enumerate() {
            let p = Resource::<DynPollable>::new_borrow(p.rep());
            if now(async_poll::HostPollable::ready(self.table, p))
                .transpose()?
                .unwrap_or(false)
            {
                ready.push(i as u32);
            }
        }
        if ready.is_empty() {
            wasmtime::bail!(WOULD_BLOCK)
        }
        Ok(ready)
    }
}

impl sync_io::poll::HostPollable for NoBlock<'_> {
    fn ready(&mut self, pollable: Resource<DynPollable>) -> wasmtime::Result<bool> {
        Ok(now(async_poll::HostPollable::ready(self.table, pollable))
            .transpose()?
            .unwrap_or(false))
    }

    fn block(&mut self, pollable: Resource<DynPollable>) -> wasmtime::Result<()> {
        match now(async_poll::HostPollable::ready(self.table, pollable)).transpose()? {
            Some(true) => Ok(()),
            _ => wasmtime::bail!(WOULD_BLOCK),
        }
    }

    fn drop(&mut self, pollable: Resource<DynPollable>) -> wasmtime::Result<()> {
        async_poll::HostPollable::drop(self.table, pollable)
    }
}

impl sync_io::streams::Host for NoBlock<'_> {
    fn convert_stream_error(
        &mut self,
        err: StreamError,
    ) -> wasmtime::Result<sync_io::streams::StreamError> {
        Ok(
            match async_streams::Host::convert_stream_error(self.table, err)? {
                async_streams::StreamError::LastOperationFailed(e) => {
                    sync_io::streams::StreamError::LastOperationFailed(e)
                }
                async_streams::StreamError::Closed => sync_io::streams::StreamError::Closed,
            },
        )
    }
}

impl NoBlock<'_> {
    /// The module's stdout/stderr: into the log, within the per-call budget.
    fn output(&mut self, bytes: &[u8]) {
        if *self.logs_left == 0 || bytes.is_empty() {
            return;
        }
        *self.logs_left -= 1;
        let text = String::from_utf8_lossy(bytes);
        let (module, text) = (self.module, clip(text.trim_end()));
        tracing::debug!(module, "module output: {text}");
    }
}

impl sync_io::streams::HostOutputStream for NoBlock<'_> {
    fn drop(&mut self, stream: Resource<DynOutputStream>) -> wasmtime::Result<()> {
        let _ = self.table.delete(stream)?;
        Ok(())
    }

    fn check_write(&mut self, stream: Resource<DynOutputStream>) -> StreamResult<u64> {
        async_streams::HostOutputStream::check_write(self.table, stream)
    }

    fn write(&mut self, stream: Resource<DynOutputStream>, bytes: Vec<u8>) -> StreamResult<()> {
        self.output(&bytes);
        async_streams::HostOutputStream::write(self.table, stream, bytes)
    }

    fn blocking_write_and_flush(
        &mut self,
        stream: Resource<DynOutputStream>,
        bytes: Vec<u8>,
    ) -> StreamResult<()> {
        if bytes.len() > 4096 {
            return Err(StreamError::trap(
                "buffer too large for blocking-write-and-flush",
            ));
        }
        self.output(&bytes);
        let borrowed = Resource::<DynOutputStream>::new_borrow(stream.rep());
        async_streams::HostOutputStream::write(self.table, borrowed, bytes)?;
        async_streams::HostOutputStream::flush(self.table, stream)
    }

    fn blocking_write_zeroes_and_flush(
        &mut self,
        stream: Resource<DynOutputStream>,
        len: u64,
    ) -> StreamResult<()> {
        if len > 4096 {
            return Err(StreamError::trap(
                "buffer too large for blocking-write-zeroes-and-flush",
            ));
        }
        let borrowed = Resource::<DynOutputStream>::new_borrow(stream.rep());
        async_streams::HostOutputStream::write_zeroes(self.table, borrowed, len)?;
        async_streams::HostOutputStream::flush(self.table, stream)
    }

    fn subscribe(
        &mut self,
        stream: Resource<DynOutputStream>,
    ) -> wasmtime::Result<Resource<DynPollable>> {
        async_streams::HostOutputStream::subscribe(self.table, stream)
    }

    fn write_zeroes(&mut self, stream: Resource<DynOutputStream>, len: u64) -> StreamResult<()> {
        async_streams::HostOutputStream::write_zeroes(self.table, stream, len)
    }

    fn flush(&mut self, stream: Resource<DynOutputStream>) -> StreamResult<()> {
        async_streams::HostOutputStream::flush(self.table, stream)
    }

    fn blocking_flush(&mut self, stream: Resource<DynOutputStream>) -> StreamResult<()> {
        async_streams::HostOutputStream::flush(self.table, stream)
    }

    fn splice(
        &mut self,
        dst: Resource<DynOutputStream>,
        src: Resource<DynInputStream>,
        len: u64,
    ) -> StreamResult<u64> {
        async_streams::HostOutputStream::splice(self.table, dst, src, len)
    }

    fn blocking_splice(
        &mut self,
        dst: Resource<DynOutputStream>,
        src: Resource<DynInputStream>,
        len: u64,
    ) -> StreamResult<u64> {
        async_streams::HostOutputStream::splice(self.table, dst, src, len)
    }
}

impl sync_io::streams::HostInputStream for NoBlock<'_> {
    fn drop(&mut self, stream: Resource<DynInputStream>) -> wasmtime::Result<()> {
        let _ = self.table.delete(stream)?;
        Ok(())
    }

    fn read(&mut self, stream: Resource<DynInputStream>, len: u64) -> StreamResult<Vec<u8>> {
        async_streams::HostInputStream::read(self.table, stream, len)
    }

    fn blocking_read(
        &mut self,
        stream: Resource<DynInputStream>,
        len: u64,
    ) -> StreamResult<Vec<u8>> {
        // stdin is closed: reading returns at once
        async_streams::HostInputStream::read(self.table, stream, len)
    }

    fn skip(&mut self, stream: Resource<DynInputStream>, len: u64) -> StreamResult<u64> {
        async_streams::HostInputStream::skip(self.table, stream, len)
    }

    fn blocking_skip(&mut self, stream: Resource<DynInputStream>, len: u64) -> StreamResult<u64> {
        async_streams::HostInputStream::skip(self.table, stream, len)
    }

    fn subscribe(
        &mut self,
        stream: Resource<DynInputStream>,
    ) -> wasmtime::Result<Resource<DynPollable>> {
        async_streams::HostInputStream::subscribe(self.table, stream)
    }
}
