//! python-executor's binary: settings from the environment, the async runtime, then the
//! service (`app::run`) until SIGTERM or SIGINT.

use python_executor::config::Settings;
use python_executor::{app, fields, logging, validation};

fn main() {
    logging::log_panics_as_json();
    let settings = match Settings::from_env() {
        Ok(settings) => settings,
        Err(message) => {
            logging::log(logging::Severity::Critical, &message, fields! {});
            eprintln!("python-executor: {message}");
            std::process::exit(2);
        }
    };
    let workers = std::thread::available_parallelism().map_or(2, |n| n.get()).clamp(2, 8);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(workers)
        .thread_stack_size(validation::RUNTIME_STACK_BYTES)
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("python-executor: cannot start the async runtime: {e}");
            std::process::exit(1);
        }
    };
    let code = runtime.block_on(app::run(settings, shutdown_signal()));
    std::process::exit(code);
}

/// Resolves with the signal's name on SIGTERM (Cloud Run, docker stop) or SIGINT (Ctrl-C).
async fn shutdown_signal() -> &'static str {
    use tokio::signal::unix::{signal, SignalKind};
    let (Ok(mut term), Ok(mut int)) = (signal(SignalKind::terminate()), signal(SignalKind::interrupt())) else {
        // Without signal handlers the default action (exit) still stops the service.
        return std::future::pending().await;
    };
    tokio::select! {
        _ = term.recv() => "SIGTERM",
        _ = int.recv() => "SIGINT",
    }
}
