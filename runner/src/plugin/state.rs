//! What one store holds: WASI state, the memory limiter, and the sink that
//! turns a plugin's logs, progress and output into the task's events.

use super::bindings::{host, types};
use crate::units::format_size;
use protocol::{LogLevel, Stream};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use wasmtime::component::ResourceTable;
use wasmtime_wasi::cli::{IsTerminal, StdoutStream};
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

/// Something a running plugin said.
#[derive(Debug, Clone, PartialEq)]
pub enum Signal {
    Log {
        level: LogLevel,
        message: String,
    },
    Progress {
        display_text: String,
        percent: Option<u8>,
    },
    Output {
        stream: Stream,
        data: Vec<u8>,
    },
}

/// Where a running plugin's signals go. Never blocks.
pub type Sink = Arc<dyn Fn(Signal) + Send + Sync>;

/// A sink that drops everything.
pub fn discard() -> Sink {
    Arc::new(|_| {})
}

pub struct StoreState {
    pub(super) wasi: WasiCtx,
    pub(super) table: ResourceTable,
    pub(super) limiter: MemoryLimiter,
    pub(super) sink: Sink,
    /// Keeps the engine's epoch ticking while this store lives.
    pub(super) _live: super::engine::LiveStore,
}

impl WasiView for StoreState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

impl types::Host for StoreState {}

impl host::Host for StoreState {
    fn log(&mut self, level: types::LogLevel, message: String) {
        let level = match level {
            types::LogLevel::Trace => LogLevel::Trace,
            types::LogLevel::Debug => LogLevel::Debug,
            types::LogLevel::Info => LogLevel::Info,
            types::LogLevel::Warn => LogLevel::Warn,
            types::LogLevel::Error => LogLevel::Error,
        };
        (self.sink)(Signal::Log { level, message });
    }

    fn progress(&mut self, display_text: String, percent: Option<u8>) {
        (self.sink)(Signal::Progress {
            display_text,
            percent: percent.map(|p| p.min(100)),
        });
    }
}

/// Caps a store's linear memories and tables; going over traps with
/// [`MemoryLimitExceeded`] so the task fails with a clear message.
pub struct MemoryLimiter {
    pub limit: u64,
}

/// A plugin asked for more memory than its limit.
#[derive(Debug, thiserror::Error)]
#[error("ran out of memory: it asked for {}, its limit is {} (raise `limits.memory`)", format_size(*.desired as u64), format_size(*.limit))]
pub struct MemoryLimitExceeded {
    pub desired: usize,
    pub limit: u64,
}

impl wasmtime::ResourceLimiter for MemoryLimiter {
    fn memory_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if desired as u64 > self.limit {
            return Err(wasmtime::Error::new(MemoryLimitExceeded {
                desired,
                limit: self.limit,
            }));
        }
        Ok(true)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        Ok(desired <= 1_000_000)
    }
}

/// A plugin's stdout or stderr, forwarded to its sink as it is written.
#[derive(Clone)]
pub struct OutputPipe {
    pub stream: Stream,
    pub sink: Sink,
}

impl IsTerminal for OutputPipe {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl StdoutStream for OutputPipe {
    fn async_stream(&self) -> Box<dyn tokio::io::AsyncWrite + Send + Sync> {
        Box::new(self.clone())
    }
}

impl tokio::io::AsyncWrite for OutputPipe {
    fn poll_write(
        self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        (self.sink)(Signal::Output {
            stream: self.stream,
            data: buf.to_vec(),
        });
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}
