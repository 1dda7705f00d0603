//! Plugins shipped inside the runner binary (built by `build.rs`).

include!(concat!(env!("OUT_DIR"), "/builtin.rs"));

/// The names of the built-in plugins.
pub fn names() -> Vec<&'static str> {
    BUILTIN.iter().map(|(name, _)| *name).collect()
}

/// The component bytes of a built-in plugin.
pub fn bytes(name: &str) -> Option<&'static [u8]> {
    BUILTIN.iter().find(|(n, _)| *n == name).map(|(_, bytes)| *bytes)
}

/// Where the build put every plugin's `.wasm`, test plugins included.
pub const PLUGIN_DIR: &str = env!("RUNNER_PLUGIN_DIR");
