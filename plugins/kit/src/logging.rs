//! The plugin's own log: `tracing` to stderr, as text or JSON lines.

use tracing_subscriber::EnvFilter;

use crate::config::LogFormat;

/// Install the global subscriber, with OpenTelemetry export for the service
/// `service` when the environment configures it (see
/// [`interlink::telemetry`]; call inside the Tokio runtime then). `RUST_LOG`
/// wins over `filter`; the default is `info`. Calling it twice is harmless
/// (the second call installs nothing). Keep the guard until the end: dropping
/// it flushes the last spans.
pub fn init(
    service: &str,
    filter: Option<&str>,
    format: LogFormat,
) -> Result<interlink::telemetry::Guard, interlink::telemetry::TelemetryError> {
    use tracing_subscriber::prelude::*;
    let filter = std::env::var("RUST_LOG")
        .ok()
        .filter(|s| !s.is_empty())
        .or_else(|| filter.map(str::to_string))
        .unwrap_or_else(|| "info".to_string());
    let filter = EnvFilter::try_new(&filter).unwrap_or_else(|e| {
        eprintln!("invalid log filter {filter:?} ({e}); using `info`");
        EnvFilter::new("info")
    });
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let fmt = tracing_subscriber::fmt::layer()
        .with_ansi(ansi)
        .with_writer(std::io::stderr);
    let fmt = match format {
        LogFormat::Text => fmt.with_filter(filter).boxed(),
        LogFormat::Json => fmt.json().with_filter(filter).boxed(),
    };
    let (otel, guard) = interlink::telemetry::init(service)?;
    if tracing_subscriber::registry()
        .with(fmt)
        .with(otel)
        .try_init()
        .is_ok()
    {
        interlink::telemetry::log_settings(service);
    }
    Ok(guard)
}
