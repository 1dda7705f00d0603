//! Plugins in other languages: `cargo bench -p runner --bench languages`.
//!
//! For each language's block example (`examples/plugins/*/block`, built by
//! its `build.sh` with the real toolchain) prints, asserting nothing:
//! the component's size; its first compile (`Plugins::load` on an empty
//! cache); the cached start of a one-task run (the `runner run` process,
//! start to exit, median of 5); and the median warm call (a fresh store and
//! instance per call, as every task gets). A language whose toolchain is
//! missing is skipped with a message. Goals: a cached start of a run with a
//! Python or JavaScript plugin at most 50 ms; a warm Python call at most 3 ms.
//!
//! `RUNNER_BENCH_CALLS` changes the number of warm calls (default 200).

use runner::config::Config;
use runner::plugin::{Plugins, discard};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

struct Lang {
    name: &'static str,
    dir: &'static str,
    /// Programs that must run (`--version`), and files that must exist.
    needs: &'static [&'static str],
    files: &'static [&'static str],
}

const LANGS: &[Lang] = &[
    Lang {
        name: "Rust",
        dir: "rust",
        needs: &["cargo"],
        files: &[],
    },
    Lang {
        name: "Python",
        dir: "python",
        needs: &["componentize-py"],
        files: &[],
    },
    Lang {
        name: "JavaScript",
        dir: "javascript",
        needs: &["node"],
        files: &["examples/plugins/javascript/node_modules/.bin/jco"],
    },
    Lang {
        name: "C",
        dir: "c",
        needs: &["clang-19", "wit-bindgen", "wasm-tools"],
        files: &["/usr/lib/wasm32-wasi/libc.a"],
    },
];

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

fn missing(lang: &Lang) -> Vec<String> {
    let mut missing: Vec<String> = lang
        .needs
        .iter()
        .filter(|p| {
            !Command::new(p)
                .arg("--version")
                .output()
                .is_ok_and(|o| o.status.success())
        })
        .map(|p| p.to_string())
        .collect();
    missing.extend(
        lang.files
            .iter()
            .filter(|f| !repo().join(f).exists())
            .map(|f| f.to_string()),
    );
    missing
}

fn build(lang: &Lang, out: &Path) -> Duration {
    use wasi_preview1_component_adapter_provider as adapters;
    let adapter = out.with_file_name("reactor.wasm");
    std::fs::write(&adapter, adapters::WASI_SNAPSHOT_PREVIEW1_REACTOR_ADAPTER).unwrap();
    let script = repo()
        .join("examples/plugins")
        .join(lang.dir)
        .join("block/build.sh");
    let started = Instant::now();
    let output = Command::new("sh")
        .arg(&script)
        .arg(out)
        .env("WASI_ADAPTER_REACTOR", &adapter)
        .env(
            "CARGO_TARGET_DIR",
            Path::new(env!("CARGO_TARGET_TMPDIR")).join("languages-cargo-target"),
        )
        .env_remove("CARGO_ENCODED_RUSTFLAGS")
        .env_remove("RUSTFLAGS")
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{} failed: {}",
        script.display(),
        String::from_utf8_lossy(&output.stderr)
    );
    started.elapsed()
}

fn project(dir: &Path, wasm: &Path) -> Arc<Config> {
    let toml = format!(
        "version = 1\n\n[defaults]\nstate_dir = \"state\"\n\n[plugins.greet]\npath = {:?}\n\n\
         [[pipelines.default.batches]]\nid = \"one\"\n\n[[pipelines.default.batches.tasks]]\n\
         id = \"hello\"\ntype = \"greet\"\nconfig = {{ name = \"Ada\" }}\n",
        wasm.display().to_string()
    );
    let path = dir.join("runner.toml");
    std::fs::write(&path, toml).unwrap();
    Arc::new(Config::load(&path).unwrap_or_else(|err| panic!("{err}")))
}

fn median(mut samples: Vec<Duration>) -> Duration {
    samples.sort();
    samples[samples.len() / 2]
}

fn millis(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1e3)
}

struct Row {
    lang: &'static str,
    size: u64,
    build: Duration,
    compile: Duration,
    start: Duration,
    call: Duration,
}

async fn measure(lang: &Lang, calls: usize) -> Row {
    let dir = tempfile::tempdir().unwrap();
    let wasm = dir.path().join("greet.wasm");
    let build = build(lang, &wasm);
    let size = std::fs::metadata(&wasm).unwrap().len();
    let config = project(dir.path(), &wasm);

    let names = ["greet".to_string()];
    let started = Instant::now();
    let plugins = Plugins::load(&config, Some(&names))
        .await
        .unwrap_or_else(|err| panic!("{err}"));
    let compile = started.elapsed();

    let mut starts = Vec::new();
    for _ in 0..6 {
        let started = Instant::now();
        let output = Command::new(env!("CARGO_BIN_EXE_runner"))
            .arg("run")
            .current_dir(dir.path())
            .output()
            .unwrap();
        starts.push(started.elapsed());
        assert!(
            output.status.success(),
            "runner run: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
    starts.remove(0);

    let greet = plugins.get("greet").unwrap().clone();
    let (config_json, input) = (r#"{"name":"Ada"}"#, r#"{"outputs":{"first":1}}"#);
    let timeout = Duration::from_secs(30);
    let mut samples = Vec::with_capacity(calls);
    for i in 0..calls + 10 {
        let started = Instant::now();
        let output = greet
            .run_block(config_json, input, timeout, discard())
            .await
            .unwrap()
            .unwrap();
        if i >= 10 {
            samples.push(started.elapsed());
        }
        assert!(output.contains("hello, Ada"), "{output}");
    }
    Row {
        lang: lang.name,
        size,
        build,
        compile,
        start: median(starts),
        call: median(samples),
    }
}

#[tokio::main]
async fn main() {
    let calls = std::env::var("RUNNER_BENCH_CALLS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(200);
    let mut rows = Vec::new();
    for lang in LANGS {
        let missing = missing(lang);
        if !missing.is_empty() {
            println!(
                "skipping {}: its toolchain is missing ({}; see examples/plugins/README.md)",
                lang.name,
                missing.join(", ")
            );
            continue;
        }
        rows.push(measure(lang, calls).await);
    }
    println!(
        "\nblock example (greet) per language; warm call: median of {calls}; cached start: `runner run`, median of 5\n"
    );
    println!(
        "| language | component | build | first compile | cached start of a one-task run | warm call |"
    );
    println!("|---|---|---|---|---|---|");
    for row in &rows {
        println!(
            "| {} | {:.1} MB | {:.1} s | {} | {} | {} |",
            row.lang,
            row.size as f64 / 1e6,
            row.build.as_secs_f64(),
            millis(row.compile),
            millis(row.start),
            if row.call < Duration::from_millis(1) {
                format!("{:.1} µs", row.call.as_secs_f64() * 1e6)
            } else {
                millis(row.call)
            }
        );
    }
    for row in rows
        .iter()
        .filter(|r| r.lang == "Python" || r.lang == "JavaScript")
    {
        let start_met = row.start <= Duration::from_millis(50);
        println!(
            "{}: cached start {} (goal ≤ 50 ms: {})",
            row.lang,
            millis(row.start),
            if start_met { "met" } else { "NOT met" }
        );
        if row.lang == "Python" {
            let call_met = row.call <= Duration::from_millis(3);
            println!(
                "Python: warm call {} (goal ≤ 3 ms: {})",
                millis(row.call),
                if call_met { "met" } else { "NOT met" }
            );
        }
    }
}
