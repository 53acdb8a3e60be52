//! Hot reload: filesystem events (debounced) and an optional polling interval both only
//! *hint* that the plugins directory changed; one reload task answers each hint with a
//! rescan that compares content hashes. Events arrive while a file is still being written,
//! so deploy by writing a dotfile and renaming it to `<name>.wasm`.

use std::sync::Arc;
use std::time::Duration;

use notify::RecursiveMode;
use notify_debouncer_full::{DebounceEventResult, new_debouncer};
use tokio::sync::mpsc;

use super::registry::{Registry, plugin_name};

/// Keeps the watcher alive; dropping it stops watching (the reload task ends with it).
pub struct WatchHandle {
    _debouncer: Option<Box<dyn std::any::Any + Send>>,
    _task: tokio::task::JoinHandle<()>,
}

/// Starts watching `registry.dir()`. `poll` adds a periodic rescan (0 = none); when the
/// platform offers no change events, polling every second is used instead.
pub fn spawn(registry: Arc<Registry>, watch: bool, poll: Duration) -> WatchHandle {
    // Capacity 1: hints that arrive during a rescan collapse into one more rescan.
    let (tx, mut rx) = mpsc::channel::<()>(1);
    let mut poll = poll;
    let debouncer = if watch {
        let hint = tx.clone();
        let handler = move |result: DebounceEventResult| match result {
            Ok(events) => {
                let relevant = events
                    .iter()
                    .flat_map(|e| e.paths.iter())
                    .any(|p| plugin_name(p).is_some());
                if relevant {
                    let _ = hint.try_send(());
                }
            }
            Err(errors) => {
                for e in errors {
                    tracing::warn!("plugin directory watch error: {e}");
                }
                let _ = hint.try_send(());
            }
        };
        match new_debouncer(
            Duration::from_millis(40),
            Some(Duration::from_millis(20)),
            handler,
        ) {
            Ok(mut debouncer) => match debouncer.watch(registry.dir(), RecursiveMode::NonRecursive)
            {
                Ok(()) => Some(Box::new(debouncer) as Box<dyn std::any::Any + Send>),
                Err(e) => {
                    tracing::warn!(dir = %registry.dir().display(), "cannot watch plugins directory ({e}); polling every second");
                    None
                }
            },
            Err(e) => {
                tracing::warn!("no filesystem events ({e}); polling every second");
                None
            }
        }
    } else {
        None
    };
    if watch && debouncer.is_none() && poll.is_zero() {
        poll = Duration::from_secs(1);
    }
    if !poll.is_zero() {
        let hint = tx.clone();
        tokio::spawn(async move {
            let mut every = tokio::time::interval(poll);
            every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                every.tick().await;
                if hint.send(()).await.is_err() {
                    break;
                }
            }
        });
    }
    drop(tx);
    let task = tokio::spawn(async move {
        while rx.recv().await.is_some() {
            registry.rescan().await;
        }
    });
    WatchHandle {
        _debouncer: debouncer,
        _task: task,
    }
}
