//! Builds the plugins in `../plugins` for `wasm32-wasip2` and embeds the
//! shipped ones in the runner, so `cargo build` needs no manual step.
//!
//! The plugins are a workspace of their own with their own target dir
//! (`target/plugins`), so this nested cargo never waits on the outer one.

use std::path::{Path, PathBuf};
use std::process::Command;

/// Plugins embedded in the binary: (name in runner.toml, wasm file stem, kind: a
/// variant of `builtin::Kind`).
const SHIPPED: &[(&str, &str, &str)] = &[
    ("sequential", "sequential", "Batch"),
    ("parallel", "parallel", "Batch"),
    ("matrix", "matrix", "Batch"),
    ("best_of", "best_of", "Batch"),
    ("checksum", "checksum", "Block"),
    ("template", "template", "Block"),
    ("wordcount", "wordcount", "Script"),
    ("claude", "claude_adapter", "Adapter"),
    ("gemini", "gemini_adapter", "Adapter"),
    ("codex", "codex_adapter", "Adapter"),
];

fn main() {
    let manifest_dir = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").unwrap());
    let root = manifest_dir.parent().unwrap();
    let plugins = root.join("plugins");
    println!("cargo:rerun-if-changed={}", plugins.display());
    println!("cargo:rerun-if-changed={}", root.join("wit").display());

    let out_dir = PathBuf::from(std::env::var("OUT_DIR").unwrap());
    // OUT_DIR is <target>/<profile>/build/<pkg>-<hash>/out.
    let target_dir = out_dir.ancestors().nth(4).unwrap().to_path_buf();
    let plugin_target = target_dir.join("plugins");
    let wasm_dir = plugin_target.join("wasm32-wasip2").join("release");

    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut build = Command::new(&cargo);
    build
        .args([
            "build",
            "--release",
            "--target",
            "wasm32-wasip2",
            "--manifest-path",
        ])
        .arg(plugins.join("Cargo.toml"))
        .arg("--target-dir")
        .arg(&plugin_target);
    for var in [
        "CARGO_TARGET_DIR",
        "CARGO_BUILD_TARGET",
        "CARGO_ENCODED_RUSTFLAGS",
        "CARGO_BUILD_RUSTFLAGS",
        "RUSTFLAGS",
        "RUSTC_WORKSPACE_WRAPPER",
        "RUSTC_WRAPPER",
        "CARGO_PROFILE_RELEASE_DEBUG",
    ] {
        build.env_remove(var);
    }
    let status = build
        .status()
        .unwrap_or_else(|err| panic!("cannot run {cargo}: {err}"));
    if !status.success() {
        let installed = Command::new("rustup")
            .args(["target", "list", "--installed"])
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).contains("wasm32-wasip2"))
            .unwrap_or(true);
        if !installed {
            panic!(
                "building the plugins needs the wasm32-wasip2 target: run `rustup target add wasm32-wasip2`"
            );
        }
        panic!(
            "building the plugins in {} failed (see the errors above)",
            plugins.display()
        );
    }

    let mut embedded = String::from(
        "/// Built-in plugins: (name, kind, component bytes, their sha256).\npub static BUILTIN: &[(&str, Kind, &[u8], &str)] = &[\n",
    );
    for (name, stem, kind) in SHIPPED {
        let file = wasm_dir.join(format!("{stem}.wasm"));
        assert!(
            file.is_file(),
            "plugin build produced no {}",
            file.display()
        );
        // Hashed here once, not at every start of the runner.
        let bytes = std::fs::read(&file).unwrap();
        let sha256: String =
            sha2::Digest::finalize(<sha2::Sha256 as sha2::Digest>::new_with_prefix(&bytes))
                .iter()
                .map(|byte| format!("{byte:02x}"))
                .collect();
        embedded.push_str(&format!(
            "    ({name:?}, Kind::{kind}, include_bytes!({:?}), {sha256:?}),\n",
            file.display().to_string()
        ));
    }
    embedded.push_str("];\n");
    std::fs::write(out_dir.join("builtin.rs"), embedded).unwrap();
    println!("cargo:rustc-env=RUNNER_PLUGIN_DIR={}", display(&wasm_dir));
}

fn display(path: &Path) -> String {
    path.display().to_string()
}
