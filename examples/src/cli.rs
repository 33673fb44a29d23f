//! What every program here does the same way: logging to stderr with the default filter, and
//! turning the outcome of `run` into an exit status.

use std::process::ExitCode;

/// Logs to stderr: `RUST_LOG` if set, else warnings without the webrtc stack's benign chatter;
/// one JSON object per line (with the current span) when `MESH_LOG_FORMAT=json`.
pub fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| crate::stack::default_log_filter().into());
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    if std::env::var("MESH_LOG_FORMAT").is_ok_and(|f| f == "json") {
        builder.json().with_current_span(true).with_span_list(false).init();
    } else {
        builder.init();
    }
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
