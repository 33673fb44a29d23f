//! What every program here does the same way: logging to stderr with the default filter, and
//! turning the outcome of `run` into an exit status.

use std::process::ExitCode;

/// Logs to stderr: `RUST_LOG` if set, else warnings without the webrtc stack's benign chatter.
pub fn init_logging() {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| crate::stack::default_log_filter().into()),
        )
        .with_writer(std::io::stderr)
        .init();
}

/// Exit status 0 on success; otherwise prints `program: error` to stderr and exits 1.
pub fn exit(program: &str, result: Result<(), String>) -> ExitCode {
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("{program}: {e}");
            ExitCode::FAILURE
        }
    }
}
