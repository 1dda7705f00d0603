//! Plugins shipped inside the runner binary (built by `build.rs`).

include!(concat!(env!("OUT_DIR"), "/builtin.rs"));

/// What a built-in plugin is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A batch type: expands a batch into tasks and decides its outcome.
    Batch,
    /// A block type: one step of work.
    Block,
    /// A WASI command component, run as a script.
    Script,
    /// An agent adapter.
    Adapter,
}

/// The names of the built-in plugins.
pub fn names() -> Vec<&'static str> {
    BUILTIN.iter().map(|(name, _, _)| *name).collect()
}

/// What the built-in plugin `name` is.
pub fn kind(name: &str) -> Option<Kind> {
    BUILTIN
        .iter()
        .find(|(n, _, _)| *n == name)
        .map(|(_, kind, _)| *kind)
}

/// The component bytes of a built-in plugin.
pub fn bytes(name: &str) -> Option<&'static [u8]> {
    BUILTIN
        .iter()
        .find(|(n, _, _)| *n == name)
        .map(|(_, _, bytes)| *bytes)
}

/// Where the build put every plugin's `.wasm`, test plugins included.
pub const PLUGIN_DIR: &str = env!("RUNNER_PLUGIN_DIR");
