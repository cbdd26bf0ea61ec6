//! What the `dbus-mqtt-devices` binary does: parses the command line, sets up
//! logging, runs the daemon (or a subcommand) until SIGTERM/SIGINT, and prints an
//! unusable configuration as one line with exit code 2. In the library, so that
//! the daemon's modules stay private to it.

use crate::cli::{Cli, Command};
use crate::config::Config;
use crate::{app, logging, operator, settings};
use clap::Parser;
use std::process::ExitCode;

/// The binary's `main`.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    // Adjusted below for `sim` when that feature is built in.
    let mut config = match Config::resolve(&cli.daemon) {
        Ok(c) => c,
        Err(e) => return fail(&anyhow::Error::new(e), 2),
    };
    #[cfg(feature = "sim")]
    if matches!(cli.command, Some(Command::Sim(_))) {
        // The live view is the output of `sim`: logs only for what goes
        // wrong, and none of the embedded broker's per-connection lines.
        let level = cli.daemon.log_level.as_deref().unwrap_or("warn");
        config.log_level = format!("{level},rumqttd=off");
        if cli.daemon.data_dir.is_none() {
            match crate::sim::default_data_dir() {
                Ok(dir) => config.data_dir = dir,
                Err(e) => return fail(&e, 2),
            }
        }
    }
    if matches!(cli.command, Some(Command::CheckConfig)) {
        return check_config(&config.data_dir);
    }
    if cli.command.as_ref().is_some_and(Command::is_operator_tool) && cli.daemon.log_level.is_none()
    {
        // The output of the operator tools is what they print; logs only for what goes wrong.
        config.log_level = "warn".into();
    }
    if let Err(e) = logging::init(&config.log_level, config.syslog) {
        eprintln!("dbus-mqtt-devices: {e}");
        return ExitCode::from(2);
    }
    // A panic is a defect: it goes to the log (syslog too) with where it
    // happened. Most are caught at a device's boundary and cost that device
    // only (src/device/failure.rs).
    std::panic::set_hook(Box::new(|info| {
        tracing::error!(target: "panic", "{info}");
    }));
    // One thread is plenty for a few hundred small messages a second, and
    // keeps the memory use low on a GX.
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => return fail(&anyhow::Error::new(e).context("starting the runtime"), 1),
    };
    let result = runtime.block_on(async {
        match cli.command {
            Some(Command::List(args)) => Ok(Some(operator::cli::list(&config, &args).await)),
            Some(Command::Remove(args)) => Ok(Some(operator::cli::remove(&config, &args).await)),
            Some(Command::Doctor(args)) => Ok(Some(operator::cli::doctor(&config, &args).await)),
            None => app::run(config, stop_signal()).await.map(|()| None),
            Some(Command::SettingsService) => {
                let bus = app::bus_address(&config.bus);
                settings::run_until(&bus, &config.data_dir, stop_signal())
                    .await
                    .map(|()| None)
                    .map_err(anyhow::Error::new)
            }
            #[cfg(feature = "sim")]
            Some(Command::Sim(args)) => crate::sim::run(config, args, stop_signal())
                .await
                .map(|()| None),
            // Answered above, before the runtime starts.
            Some(Command::CheckConfig) => Ok(None),
        }
    });
    match result {
        Ok(Some(code)) => ExitCode::from(code),
        Ok(None) => ExitCode::SUCCESS,
        Err(e) => fail(&e, 1),
    }
}

/// `check-config`: the expanded devices on stdout, the findings and a
/// summary on stderr; 0 when every declaration is valid, else 2.
fn check_config(data_dir: &std::path::Path) -> ExitCode {
    let report = crate::mapped::check::check_config(data_dir);
    // A closed pipe (`check-config | head`) is not an error worth a panic.
    let _ = std::io::Write::write_all(&mut std::io::stdout().lock(), report.expanded.as_bytes());
    for d in &report.diagnostics {
        eprintln!("{d}");
    }
    eprintln!("{}: {}", data_dir.display(), report.summary());
    ExitCode::from(if report.ok() { 0 } else { 2 })
}

/// Prints the error chain once, on one line.
fn fail(e: &anyhow::Error, code: u8) -> ExitCode {
    eprintln!("dbus-mqtt-devices: {e:#}");
    ExitCode::from(code)
}

/// Completes on SIGTERM (daemontools' `svc -d`) or SIGINT (Ctrl-C).
async fn stop_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    match (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) {
        (Ok(mut term), Ok(mut int)) => {
            tokio::select! {
                _ = term.recv() => {}
                _ = int.recv() => {}
            }
        }
        _ => {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}
