use clap::Parser;
use runner::cli::{Cli, execute};
use runner::process::leader;

fn main() {
    // Started as the guardian of this runner's process groups: guards them,
    // before any thread or runtime exists (see `process::leader`).
    leader::guardian_main();
    leader::use_guardian();
    runner::process::fewer_malloc_arenas();
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_env("RUNNER_LOG"))
        .with_writer(std::io::stderr)
        .init();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("start the tokio runtime");
    let code = runtime.block_on(async {
        match execute(Cli::parse()).await {
            Ok(code) => code,
            Err(err) => {
                eprintln!("error: {err:#}");
                err.exit_code()
            }
        }
    });
    std::process::exit(code);
}
