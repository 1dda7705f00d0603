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
    BUILTIN.iter().map(|(name, ..)| *name).collect()
}

/// What the built-in plugin `name` is.
pub fn kind(name: &str) -> Option<Kind> {
    BUILTIN
        .iter()
        .find(|(n, ..)| *n == name)
        .map(|(_, kind, ..)| *kind)
}

/// The component bytes of a built-in plugin.
pub fn bytes(name: &str) -> Option<&'static [u8]> {
    BUILTIN
        .iter()
        .find(|(n, ..)| *n == name)
        .map(|(_, _, bytes, _)| *bytes)
}

/// The sha256 (hex) of the built-in plugin `name`'s bytes, computed when
/// they were embedded.
pub fn sha256(name: &str) -> Option<&'static str> {
    BUILTIN
        .iter()
        .find(|(n, ..)| *n == name)
        .map(|(.., sha256)| *sha256)
}

/// Where the build put every plugin's `.wasm`, test plugins included.
pub const PLUGIN_DIR: &str = env!("RUNNER_PLUGIN_DIR");

#[cfg(test)]
mod tests {
    #[test]
    fn each_built_in_plugins_hash_is_the_sha256_of_its_bytes() {
        for name in super::names() {
            let bytes = super::bytes(name).unwrap();
            assert!(!bytes.is_empty(), "{name}");
            assert_eq!(
                super::sha256(name),
                Some(crate::hash::sha256_hex(bytes).as_str()),
                "{name}"
            );
        }
    }
}
