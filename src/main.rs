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
    let shutdown = {
        let _runtime = runtime.enter();
        shutdown_signal()
    };
    let code = runtime.block_on(app::run(settings, shutdown));
    std::process::exit(code);
}

/// Resolves with the signal's name on SIGTERM (Cloud Run, docker stop) or SIGINT (Ctrl-C).
/// The handlers are in place from here on: a signal during start-up stops the service once
/// it has started, cleanly (cgroups removed), rather than killing it halfway.
fn shutdown_signal() -> impl std::future::Future<Output = &'static str> {
    use tokio::signal::unix::{signal, SignalKind};
    let handlers = (signal(SignalKind::terminate()), signal(SignalKind::interrupt()));
    async move {
        let (Ok(mut term), Ok(mut int)) = handlers else {
            // Without signal handlers the default action (exit) still stops the service.
            return std::future::pending().await;
        };
        tokio::select! {
            _ = term.recv() => "SIGTERM",
            _ = int.recv() => "SIGINT",
        }
    }
}
