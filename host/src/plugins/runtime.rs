//! The wasmtime engine shared by all plugins and the per-call path: a fresh instance from a
//! pre-linked `PluginPre` in a fresh store, under a memory cap, an epoch deadline and a
//! wall-clock timeout, with every way a call can go wrong turned into a typed `CallError`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::Semaphore;
use wasmtime::component::{
    Component, ComponentNamedList, HasSelf, InstancePre, Lift, Linker, Lower,
};
use wasmtime::{
    Config, Enabled, Engine, InstanceAllocationStrategy, PoolingAllocationConfig, Store,
};

use super::bindings::types::{
    AuthorizeRequest, CaptureRequest, CompleteRequest, Failure, FollowUpRequest, Outcome,
    PluginInfo, SyncRequest, TokenizeRequest, Tokenized, WebhookReply, WebhookRequest,
};
use super::bindings::{ADAPTER_EXPORT, ContractVersion, Plugin, PluginPre, since_v0_1};
use super::state::{GatewayContext, PluginState, PspContact};

/// How often the epoch advances: the granularity of CPU deadlines.
const EPOCH_TICK: Duration = Duration::from_millis(10);
/// Dirty memory of a finished instance that is reset by copying the initial image back
/// (the pages found by Linux's PAGEMAP_SCAN ioctl) rather than by `madvise`: a plugin's
/// working set is a few hundred KiB to a few MiB, and an `madvise` per call cost page
/// faults on the next call and TLB-shootdown interrupts on every core. A working set past
/// this is decommitted beyond it, as before. Only with the ioctl (Linux 6.7+): without
/// it wasmtime would memset this much from the bottom of memory on every call.
const MEMORY_KEEP_RESIDENT: usize = 4 << 20;
/// The same for tables (a Rust component's tables are a few KiB).
const TABLE_KEEP_RESIDENT: usize = 64 << 10;
/// Decommits that remain (working sets past the above) are queued and flushed together.
const DECOMMIT_BATCH: usize = 32;

/// Why a plugin call produced no answer from the plugin.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum CallError {
    #[error("plugin `{0}` is not loaded")]
    NotLoaded(String),
    #[error("plugin call exceeded its deadline of {0} ms")]
    Deadline(u64),
    #[error("plugin exceeded its memory limit of {0} MiB")]
    OutOfMemory(u64),
    #[error("plugin trapped: {0}")]
    Trap(String),
    #[error("plugin could not be instantiated: {0}")]
    Instantiate(String),
}

/// One export call, with its typed request.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub enum Call {
    Info,
    Authorize(AuthorizeRequest),
    Capture(CaptureRequest),
    Void(FollowUpRequest),
    Refund(FollowUpRequest),
    Tokenize(TokenizeRequest),
    Sale(AuthorizeRequest),
    Sync(SyncRequest),
    Complete(CompleteRequest),
    HandleWebhook(WebhookRequest),
}

impl Call {
    pub fn name(&self) -> &'static str {
        match self {
            Call::Info => "info",
            Call::Authorize(_) => "authorize",
            Call::Capture(_) => "capture",
            Call::Void(_) => "void",
            Call::Refund(_) => "refund",
            Call::Tokenize(_) => "tokenize",
            Call::Sale(_) => "sale",
            Call::Sync(_) => "sync",
            Call::Complete(_) => "complete",
            Call::HandleWebhook(_) => "handle-webhook",
        }
    }

    /// A call stored to be re-sent, by this host or by one that spoke only contract 0.1.
    pub fn from_stored(json: &str) -> Result<Call, serde_json::Error> {
        serde_json::from_str::<Call>(json).or_else(|latest| {
            serde_json::from_str::<since_v0_1::StoredCall>(json)
                .and_then(since_v0_1::StoredCall::upgrade)
                .map_err(|_| latest)
        })
    }
}

/// A component linked against the host imports through its contract version's adapter,
/// its exports type-checked.
pub enum Linked {
    V0_1(since_v0_1::PluginPre<PluginState>),
    V0_2(PluginPre<PluginState>),
}

impl Linked {
    pub fn contract(&self) -> ContractVersion {
        match self {
            Linked::V0_1(_) => ContractVersion::V0_1,
            Linked::V0_2(_) => ContractVersion::V0_2,
        }
    }

    fn instance_pre(&self) -> &InstancePre<PluginState> {
        match self {
            Linked::V0_1(pre) => pre.instance_pre(),
            Linked::V0_2(pre) => pre.instance_pre(),
        }
    }
}

/// The plugin's answer to a `Call`, of the matching kind.
#[derive(Debug, Clone)]
pub enum Reply {
    Info(PluginInfo),
    Outcome(Result<Outcome, Failure>),
    Tokenized(Result<Tokenized, Failure>),
    Webhook(Result<WebhookReply, Failure>),
}

/// Limits that hold for every plugin instance.
#[derive(Debug, Clone, Copy)]
pub struct RuntimeLimits {
    pub memory_bytes: usize,
    pub max_instances: u32,
}

/// The engine, the linker with the host imports, and the instance budget.
pub struct Runtime {
    engine: Engine,
    linker: Linker<PluginState>,
    limits: RuntimeLimits,
    instances: Arc<Semaphore>,
    client: reqwest::Client,
}

impl Runtime {
    pub fn new(limits: RuntimeLimits) -> anyhow::Result<Arc<Runtime>> {
        let mut pool = PoolingAllocationConfig::new();
        // A Rust component holds a few core instances and one memory; size the pool to
        // the instance budget so a full pool means waiting, never failing.
        let n = limits.max_instances;
        pool.total_component_instances(n)
            .total_core_instances(n.saturating_mul(8))
            .total_memories(n)
            .total_tables(n.saturating_mul(4))
            .total_stacks(n)
            .max_memory_size(limits.memory_bytes)
            .max_unused_warm_slots(n.min(64))
            .decommit_batch_size(DECOMMIT_BATCH);
        if PoolingAllocationConfig::is_pagemap_scan_available() {
            pool.pagemap_scan(Enabled::Yes)
                .linear_memory_keep_resident(MEMORY_KEEP_RESIDENT)
                .table_keep_resident(TABLE_KEEP_RESIDENT);
        }
        let mut config = Config::new();
        config
            .allocation_strategy(InstanceAllocationStrategy::Pooling(pool))
            .epoch_interruption(true)
            .concurrency_support(false)
            .memory_init_cow(true);
        let engine = Engine::new(&config)?;
        let mut linker = Linker::new(&engine);
        wasmtime_wasi::p2::add_to_linker_async(&mut linker)?;
        // Both versions' imports: their names differ (`psp:plugin/http@0.1.0`, `...@0.2.0`),
        // so each component binds to its own.
        Plugin::add_to_linker::<PluginState, HasSelf<PluginState>>(&mut linker, |s| s)?;
        since_v0_1::Plugin::add_to_linker::<PluginState, HasSelf<PluginState>>(&mut linker, |s| s)?;
        spawn_epoch_ticker(&engine);
        Ok(Arc::new(Runtime {
            engine,
            linker,
            limits,
            instances: Arc::new(Semaphore::new(n as usize)),
            client: super::outbound::client(),
        }))
    }

    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    /// Compiles a component (CPU-heavy: call off the async runtime).
    pub fn compile(&self, wasm: &[u8]) -> wasmtime::Result<Component> {
        Component::new(&self.engine, wasm)
    }

    /// Links a component against the host imports of the contract version it exports and
    /// type-checks its exports.
    pub fn prepare(&self, component: &Component) -> wasmtime::Result<Linked> {
        let version = ContractVersion::of(component, &self.engine).ok_or_else(|| {
            wasmtime::format_err!(
                "exports no `psp:plugin/adapter` of a contract this host speaks (0.1, 0.2)"
            )
        })?;
        let pre = self.linker.instantiate_pre(component)?;
        Ok(match version {
            ContractVersion::V0_1 => Linked::V0_1(since_v0_1::PluginPre::new(pre)?),
            ContractVersion::V0_2 => Linked::V0_2(PluginPre::new(pre)?),
        })
    }

    /// Runs one export in a fresh instance, within the gateway's deadline.
    pub async fn call(
        &self,
        pre: &Linked,
        gateway: &Arc<GatewayContext>,
        call: Call,
        contact: PspContact,
    ) -> Result<Reply, CallError> {
        let timeout = gateway.call_timeout;
        let timeout_ms = timeout.as_millis() as u64;
        let deadline = Instant::now() + timeout;
        let work = async {
            let _permit = self
                .instances
                .acquire()
                .await
                .map_err(|_| CallError::Instantiate("runtime shut down".into()))?;
            let state = PluginState::new(
                gateway.clone(),
                self.client.clone(),
                self.limits.memory_bytes,
                deadline,
                contact,
            );
            let mut store = Store::new(&self.engine, state);
            store.limiter(|s| &mut s.memory);
            store.set_epoch_deadline(1);
            // Checked every tick while the guest runs: yield to other tasks, stop at the
            // deadline. (A guest parked in a host call is bounded by the timeout below.)
            // tokio's own yield puts the task behind the others; a plain self-wake could
            // run a spinning guest again first and starve the worker.
            store.epoch_deadline_callback(|ctx| {
                if Instant::now() >= ctx.data().deadline {
                    Ok(wasmtime::UpdateDeadline::Interrupt)
                } else {
                    Ok(wasmtime::UpdateDeadline::YieldCustom(
                        1,
                        Box::pin(tokio::task::yield_now()),
                    ))
                }
            });
            let instance = pre
                .instance_pre()
                .instantiate_async(&mut store)
                .await
                .map_err(|e| classify(e, &store, &self.limits, timeout_ms, true))?;
            let reply = match pre {
                Linked::V0_2(_) => invoke(&instance, &mut store, call).await,
                Linked::V0_1(_) => since_v0_1::invoke(&instance, &mut store, call).await,
            };
            reply.map_err(|e| classify(e, &store, &self.limits, timeout_ms, false))
        };
        match tokio::time::timeout(timeout, work).await {
            Ok(result) => result,
            Err(_) => Err(CallError::Deadline(timeout_ms)),
        }
    }
}

/// Calls the export `call` names. Only `info` (which the loader calls once per component)
/// binds and type-checks every export, so a plugin that does not fit the contract fails
/// to load; the other calls type-check only the export they use: checking all nine on
/// every call was a fifth of a sandbox call's time.
async fn invoke(
    instance: &wasmtime::component::Instance,
    store: &mut Store<PluginState>,
    call: Call,
) -> wasmtime::Result<Reply> {
    let name = call.name();
    const AT: &str = ADAPTER_EXPORT;
    Ok(match call {
        Call::Info => {
            let plugin = Plugin::new(&mut *store, instance)?;
            Reply::Info(plugin.psp_plugin_adapter().call_info(&mut *store).await?)
        }
        Call::Authorize(r) => Reply::Outcome(export(instance, store, AT, name, (&r,)).await?),
        Call::Capture(r) => Reply::Outcome(export(instance, store, AT, name, (&r,)).await?),
        Call::Void(r) => Reply::Outcome(export(instance, store, AT, name, (&r,)).await?),
        Call::Refund(r) => Reply::Outcome(export(instance, store, AT, name, (&r,)).await?),
        Call::Tokenize(r) => Reply::Tokenized(export(instance, store, AT, name, (&r,)).await?),
        Call::Sale(r) => Reply::Outcome(export(instance, store, AT, name, (&r,)).await?),
        Call::Sync(r) => Reply::Outcome(export(instance, store, AT, name, (&r,)).await?),
        Call::Complete(r) => Reply::Outcome(export(instance, store, AT, name, (&r,)).await?),
        Call::HandleWebhook(r) => Reply::Webhook(export(instance, store, AT, name, (&r,)).await?),
    })
}

/// Looks up one export of the `adapter` interface by name, checks its type against the
/// host's, and calls it.
pub(super) async fn export<P, R>(
    instance: &wasmtime::component::Instance,
    store: &mut Store<PluginState>,
    adapter: &str,
    name: &str,
    params: P,
) -> wasmtime::Result<R>
where
    P: ComponentNamedList + Lower + Send + Sync,
    R: Lift + Send + Sync + 'static,
{
    let interface = instance
        .get_export_index(&mut *store, None, adapter)
        .ok_or_else(|| wasmtime::format_err!("no exported instance `{adapter}`"))?;
    let index = instance
        .get_export_index(&mut *store, Some(&interface), name)
        .ok_or_else(|| wasmtime::format_err!("`{adapter}` has no export `{name}`"))?;
    let func = instance.get_typed_func::<P, (R,)>(&mut *store, &index)?;
    let (out,) = func.call_async(&mut *store, params).await?;
    Ok(out)
}

fn classify(
    err: wasmtime::Error,
    store: &Store<PluginState>,
    limits: &RuntimeLimits,
    timeout_ms: u64,
    instantiating: bool,
) -> CallError {
    if store.data().memory.exceeded {
        return CallError::OutOfMemory((limits.memory_bytes / (1024 * 1024)) as u64);
    }
    if err.downcast_ref::<wasmtime::Trap>() == Some(&wasmtime::Trap::Interrupt) {
        return CallError::Deadline(timeout_ms);
    }
    if instantiating {
        return CallError::Instantiate(format!("{err:#}"));
    }
    let trap = err
        .downcast_ref::<wasmtime::Trap>()
        .map_or_else(|| format!("{err:#}"), |t| t.to_string());
    let stderr = store.data().stderr_tail();
    if stderr.is_empty() {
        CallError::Trap(trap)
    } else {
        CallError::Trap(format!("{trap} ({stderr})"))
    }
}

/// Advances the engine's epoch every tick, on a plain thread so that a busy async runtime
/// cannot delay it. Stops when the engine is dropped.
fn spawn_epoch_ticker(engine: &Engine) {
    let weak = engine.weak();
    std::thread::Builder::new()
        .name("plugin-epoch".into())
        .spawn(move || {
            while let Some(engine) = weak.upgrade() {
                engine.increment_epoch();
                drop(engine);
                std::thread::sleep(EPOCH_TICK);
            }
        })
        .expect("spawn epoch thread");
}
