//! `conductor-devserver`: see the crate docs and README.md.

use std::process::ExitCode;

#[tokio::main]
async fn main() -> ExitCode {
    ExitCode::from(conductor_devserver::command::run(std::env::args_os()).await)
}
