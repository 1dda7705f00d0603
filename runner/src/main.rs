use clap::Parser;
use runner::cli::{Cli, execute};

#[tokio::main]
async fn main() {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_env("RUNNER_LOG"))
        .with_writer(std::io::stderr)
        .init();
    let code = match execute(Cli::parse()).await {
        Ok(code) => code,
        Err(err) => {
            eprintln!("error: {err:#}");
            err.exit_code()
        }
    };
    std::process::exit(code);
}
