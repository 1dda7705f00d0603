//! `{{name}}`: a script (a plain `wasi:cli/command`). It sees only the
//! directories and variables `runner.toml` grants it.

fn main() {
    let who = std::env::args().nth(1).unwrap_or_else(|| "world".into());
    println!("hello, {who}");
}
