//! A WASI command that reports what it can reach, for capability tests.
//!
//! `probe read PATH` prints the file, `probe write PATH TEXT` writes it,
//! `probe env` prints every variable it sees, `probe exit CODE` exits.

use std::process::ExitCode;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().collect();
    match args.get(1).map(String::as_str) {
        Some("read") => match std::fs::read_to_string(&args[2]) {
            Ok(text) => {
                print!("{text}");
                ExitCode::SUCCESS
            }
            Err(err) => {
                eprintln!("cannot read {}: {err}", args[2]);
                ExitCode::from(3)
            }
        },
        Some("write") => match std::fs::write(&args[2], &args[3]) {
            Ok(()) => ExitCode::SUCCESS,
            Err(err) => {
                eprintln!("cannot write {}: {err}", args[2]);
                ExitCode::from(3)
            }
        },
        Some("env") => {
            for (key, value) in std::env::vars() {
                println!("{key}={value}");
            }
            ExitCode::SUCCESS
        }
        Some("exit") => ExitCode::from(args[2].parse::<u8>().unwrap_or(1)),
        _ => {
            eprintln!("usage: probe read PATH | write PATH TEXT | env | exit CODE");
            ExitCode::from(2)
        }
    }
}
