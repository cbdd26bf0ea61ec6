//! Log output: lines on stderr (multilog stamps them on a GX; a terminal gets
//! its own timestamps), or syslog with `--syslog`.

use std::io::{IsTerminal, Write};
use std::sync::{Arc, Mutex};
use tracing::{Level, Metadata};
use tracing_subscriber::filter::Targets;
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

/// Installs the global subscriber. `filter` is a level (`info`) or a list of
/// target directives (`info,zbus=warn,dbus_mqtt_devices=debug`).
///
/// Target directives rather than tracing's full `EnvFilter`, whose regex
/// engine would add half a megabyte to the GX binary for nothing a user needs.
pub fn init(filter: &str, syslog: bool) -> Result<(), String> {
    check_filter(filter)?;
    let targets: Targets = filter
        .parse()
        .map_err(|e| format!("--log-level {filter:?}: {e}"))?;
    let registry = tracing_subscriber::registry().with(targets);
    let layer = tracing_subscriber::fmt::layer().with_target(false);
    let result = if syslog {
        let writer = SyslogWriter::connect()?;
        registry
            .with(
                layer
                    .without_time()
                    .with_ansi(false)
                    .with_level(false)
                    .with_writer(writer),
            )
            .try_init()
    } else if std::io::stderr().is_terminal() {
        registry.with(layer.with_writer(std::io::stderr)).try_init()
    } else {
        registry
            .with(
                layer
                    .without_time()
                    .with_ansi(false)
                    .with_writer(std::io::stderr),
            )
            .try_init()
    };
    result.map_err(|e| e.to_string())
}

const LEVELS: [&str; 6] = ["trace", "debug", "info", "warn", "error", "off"];

/// Every directive must name a level (`info`, `zbus=warn`): a bare word would
/// be taken as a target name and silently turn everything else off.
fn check_filter(filter: &str) -> Result<(), String> {
    for directive in filter.split(',').map(str::trim) {
        let level = directive.rsplit_once('=').map_or(directive, |(_, l)| l);
        if !LEVELS.contains(&level.to_ascii_lowercase().as_str()) {
            return Err(format!(
                "--log-level {filter:?}: {directive:?} names no level (one of {})",
                LEVELS.join(", ")
            ));
        }
    }
    Ok(())
}

type Logger = syslog::Logger<syslog::LoggerBackend, syslog::Formatter3164>;

/// Sends each formatted line to syslog at the level of its event.
#[derive(Clone)]
struct SyslogWriter {
    logger: Arc<Mutex<Logger>>,
}

impl SyslogWriter {
    fn connect() -> Result<SyslogWriter, String> {
        let formatter = syslog::Formatter3164 {
            facility: syslog::Facility::LOG_DAEMON,
            hostname: None,
            process: "dbus-mqtt-devices".into(),
            pid: std::process::id(),
        };
        let logger = syslog::unix(formatter).map_err(|e| format!("connecting to syslog: {e}"))?;
        Ok(SyslogWriter {
            logger: Arc::new(Mutex::new(logger)),
        })
    }
}

/// One event's text, sent to syslog when dropped.
struct SyslogLine {
    logger: Arc<Mutex<Logger>>,
    level: Level,
    buffer: Vec<u8>,
}

impl Write for SyslogLine {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.buffer.extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Drop for SyslogLine {
    fn drop(&mut self) {
        let text = String::from_utf8_lossy(&self.buffer);
        let text = text.trim_end();
        if text.is_empty() {
            return;
        }
        // A poisoned lock only means another thread panicked mid-log; the
        // logger itself is still usable.
        let mut logger = self.logger.lock().unwrap_or_else(|e| e.into_inner());
        let _ = match self.level {
            Level::ERROR => logger.err(text),
            Level::WARN => logger.warning(text),
            Level::INFO => logger.info(text),
            _ => logger.debug(text),
        };
    }
}

impl<'a> MakeWriter<'a> for SyslogWriter {
    type Writer = SyslogLine;

    fn make_writer(&'a self) -> SyslogLine {
        self.line(Level::INFO)
    }

    fn make_writer_for(&'a self, meta: &Metadata<'_>) -> SyslogLine {
        self.line(*meta.level())
    }
}

impl SyslogWriter {
    fn line(&self, level: Level) -> SyslogLine {
        SyslogLine {
            logger: self.logger.clone(),
            level,
            buffer: Vec::new(),
        }
    }
}

/// "what failed: why: deeper cause", for messages to devices and logs.
pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::check_filter;

    #[test]
    fn filters_must_name_levels() {
        assert!(check_filter("info").is_ok());
        assert!(check_filter("warn,rumqttd=off,dbus_mqtt_devices=DEBUG").is_ok());
        assert!(check_filter("inf0").is_err());
        assert!(check_filter("info,zbus").is_err());
        assert!(check_filter("zbus=loud").is_err());
    }
}
