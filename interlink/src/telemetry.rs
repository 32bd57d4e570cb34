//! OpenTelemetry tracing shared by the three binaries (`interlink-cri`,
//! `interlink`, the plugins): spans exported over OTLP/gRPC and the W3C
//! `traceparent`/`tracestate` headers propagated host → API server → plugin.
//!
//! Off unless configured: then no exporter exists, no connection is made, no
//! header is written or parsed, and [`enabled`] is one relaxed atomic load.
//!
//! Configuration (environment only, the same in every binary; upstream
//! interLink's names, then the OpenTelemetry standard ones):
//!
//! | variable | meaning |
//! |---|---|
//! | `ENABLE_TRACING=1` | on, exporting to `TELEMETRY_ENDPOINT` or `localhost:4317` (upstream) |
//! | `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`, `OTEL_EXPORTER_OTLP_ENDPOINT`, `TELEMETRY_ENDPOINT` | the OTLP/gRPC collector; setting one turns tracing on. `host:port` without a scheme is `https` when a CA is given, else `http` |
//! | `OTEL_EXPORTER_OTLP_HEADERS`, `OTEL_EXPORTER_OTLP_TRACES_HEADERS` | `key=value,...` sent with every export (for example an API key; never logged) |
//! | `OTEL_EXPORTER_OTLP_CERTIFICATE`, `TELEMETRY_CA_CRT_FILEPATH` | CA bundle (PEM) that verifies the collector (default: the WebPKI roots) |
//! | `OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE`, `TELEMETRY_CLIENT_CRT_FILEPATH` | client certificate (PEM) for mutual TLS |
//! | `OTEL_EXPORTER_OTLP_CLIENT_KEY`, `TELEMETRY_CLIENT_KEY_FILEPATH` | its key (PEM) |
//! | `OTEL_EXPORTER_OTLP_TIMEOUT` | export timeout in milliseconds (default 10000) |
//! | `OTEL_SERVICE_NAME` | service name (default: the binary's name) |
//! | `TELEMETRY_UNIQUE_ID` | `service.instance.id` (default: a random one) |
//! | `OTEL_SDK_DISABLED=true`, `OTEL_TRACES_EXPORTER=none` | off, whatever else is set |
//! | `OTEL_BSP_SCHEDULE_DELAY`, `OTEL_BSP_MAX_QUEUE_SIZE`, ... | the batch exporter's standard knobs |
//!
//! `TELEMETRY_INSECURE_SKIP_VERIFY=true` (upstream) is refused: the collector's
//! certificate is always verified; give its CA instead.

use std::path::PathBuf;
use std::str::FromStr;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use opentelemetry::propagation::{Extractor, Injector};
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_otlp::{WithExportConfig, WithTonicConfig};
use opentelemetry_sdk::trace::SdkTracerProvider;
use tracing_opentelemetry::OpenTelemetrySpanExt;
use tracing_subscriber::filter::{LevelFilter, Targets};
use tracing_subscriber::registry::LookupSpan;

/// Why tracing could not be set up as configured.
#[derive(Debug, thiserror::Error)]
#[error("tracing: {0}")]
pub struct TelemetryError(String);

static ENABLED: AtomicBool = AtomicBool::new(false);

/// Is tracing on in this process?
pub fn enabled() -> bool {
    ENABLED.load(Ordering::Relaxed)
}

/// The exporter settings read from the environment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    pub endpoint: String,
    pub ca_file: Option<PathBuf>,
    pub client_cert_file: Option<PathBuf>,
    pub client_key_file: Option<PathBuf>,
    pub timeout: Duration,
    pub service_name: String,
    pub instance_id: Option<String>,
}

fn first(get: &dyn Fn(&str) -> Option<String>, keys: &[&str]) -> Option<String> {
    keys.iter()
        .filter_map(|k| get(k))
        .map(|v| v.trim().to_string())
        .find(|v| !v.is_empty())
}

impl Settings {
    /// Read the settings from the process environment; `None` when tracing is off.
    pub fn from_env(service: &str) -> Result<Option<Settings>, TelemetryError> {
        Self::from_lookup(service, &|k| std::env::var(k).ok())
    }

    /// [`Settings::from_env`] over any lookup (tests).
    pub fn from_lookup(
        service: &str,
        get: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Option<Settings>, TelemetryError> {
        let is = |k: &str, v: &str| get(k).is_some_and(|x| x.trim().eq_ignore_ascii_case(v));
        if is("OTEL_SDK_DISABLED", "true") || is("OTEL_TRACES_EXPORTER", "none") {
            return Ok(None);
        }
        let endpoint = first(
            get,
            &[
                "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
                "OTEL_EXPORTER_OTLP_ENDPOINT",
                "TELEMETRY_ENDPOINT",
            ],
        );
        let endpoint = match endpoint {
            Some(e) => e,
            None if is("ENABLE_TRACING", "1") || is("ENABLE_TRACING", "true") => {
                "localhost:4317".to_string()
            }
            None => return Ok(None),
        };
        if is("TELEMETRY_INSECURE_SKIP_VERIFY", "true") {
            return Err(TelemetryError(
                "TELEMETRY_INSECURE_SKIP_VERIFY is not supported: the collector's certificate is \
                 always verified; give its CA in TELEMETRY_CA_CRT_FILEPATH"
                    .into(),
            ));
        }
        let path = |keys: &[&str]| first(get, keys).map(PathBuf::from);
        let ca_file = path(&[
            "OTEL_EXPORTER_OTLP_CERTIFICATE",
            "TELEMETRY_CA_CRT_FILEPATH",
        ]);
        let client_cert_file = path(&[
            "OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE",
            "TELEMETRY_CLIENT_CRT_FILEPATH",
        ]);
        let client_key_file = path(&[
            "OTEL_EXPORTER_OTLP_CLIENT_KEY",
            "TELEMETRY_CLIENT_KEY_FILEPATH",
        ]);
        if client_cert_file.is_some() != client_key_file.is_some() {
            return Err(TelemetryError(
                "a client certificate needs its key and a key its certificate".into(),
            ));
        }
        let endpoint = if endpoint.contains("://") {
            endpoint
        } else if ca_file.is_some() {
            format!("https://{endpoint}")
        } else {
            format!("http://{endpoint}")
        };
        if !(endpoint.starts_with("http://") || endpoint.starts_with("https://")) {
            return Err(TelemetryError(format!(
                "the OTLP endpoint {endpoint:?} is neither http:// nor https://"
            )));
        }
        let timeout = match first(
            get,
            &[
                "OTEL_EXPORTER_OTLP_TRACES_TIMEOUT",
                "OTEL_EXPORTER_OTLP_TIMEOUT",
            ],
        ) {
            Some(ms) => Duration::from_millis(u64::from_str(&ms).map_err(|_| {
                TelemetryError(format!(
                    "OTEL_EXPORTER_OTLP_TIMEOUT {ms:?} is not milliseconds"
                ))
            })?),
            None => Duration::from_secs(10),
        };
        Ok(Some(Settings {
            endpoint,
            ca_file,
            client_cert_file,
            client_key_file,
            timeout,
            service_name: first(get, &["OTEL_SERVICE_NAME"]).unwrap_or_else(|| service.to_string()),
            instance_id: first(get, &["TELEMETRY_UNIQUE_ID"]),
        }))
    }
}

/// Flushes and stops the exporter when dropped (drop it before the Tokio
/// runtime, on a thread outside it).
#[must_use = "dropping the guard stops the exporter"]
pub struct Guard(Option<SdkTracerProvider>);

impl Drop for Guard {
    fn drop(&mut self) {
        if let Some(p) = self.0.take() {
            ENABLED.store(false, Ordering::Relaxed);
            if let Err(e) = p.shutdown() {
                eprintln!("tracing: flushing the last spans failed: {e}");
            }
        }
    }
}

/// The `tracing` layer that turns spans into OpenTelemetry spans, filtered to
/// this project's spans at debug level and everything else at info.
pub type Layer<S> = tracing_subscriber::filter::Filtered<
    tracing_opentelemetry::OpenTelemetryLayer<S, opentelemetry_sdk::trace::SdkTracer>,
    Targets,
    S,
>;

/// Set tracing up from the environment for the service `service` (the
/// binary's name). Must be called inside a Tokio runtime (the exporter's
/// channel lives there). Answers no layer and an empty guard when tracing is off.
pub fn init<S>(service: &str) -> Result<(Option<Layer<S>>, Guard), TelemetryError>
where
    S: tracing::Subscriber + for<'a> LookupSpan<'a>,
{
    let Some(settings) = Settings::from_env(service)? else {
        return Ok((None, Guard(None)));
    };
    let provider = provider(&settings)?;
    let tracer = provider.tracer(service.to_string());
    let filter = Targets::new()
        .with_default(LevelFilter::INFO)
        .with_target("interlink", LevelFilter::DEBUG);
    let layer = tracing_subscriber::Layer::with_filter(
        tracing_opentelemetry::layer().with_tracer(tracer),
        filter,
    );
    opentelemetry::global::set_text_map_propagator(
        opentelemetry_sdk::propagation::TraceContextPropagator::new(),
    );
    ENABLED.store(true, Ordering::Relaxed);
    Ok((Some(layer), Guard(Some(provider))))
}

/// Log where spans go (after the subscriber is installed). No header value
/// nor key material is logged.
pub fn log_settings(service: &str) {
    if let Ok(Some(s)) = Settings::from_env(service) {
        tracing::info!(
            endpoint = %s.endpoint, service = %s.service_name,
            tls_ca = s.ca_file.is_some(), mutual_tls = s.client_cert_file.is_some(),
            "tracing: exporting spans over OTLP"
        );
    }
}

fn read(p: &PathBuf, what: &str) -> Result<Vec<u8>, TelemetryError> {
    std::fs::read(p).map_err(|e| TelemetryError(format!("{what} {}: {e}", p.display())))
}

fn provider(s: &Settings) -> Result<SdkTracerProvider, TelemetryError> {
    use opentelemetry_otlp::tonic_types::transport::{Certificate, ClientTlsConfig, Identity};
    let mut b = opentelemetry_otlp::SpanExporter::builder()
        .with_tonic()
        .with_endpoint(s.endpoint.clone())
        .with_timeout(s.timeout);
    if s.endpoint.starts_with("https://") {
        let mut tls = ClientTlsConfig::new();
        tls = match &s.ca_file {
            Some(ca) => tls.ca_certificate(Certificate::from_pem(read(ca, "CA")?)),
            None => tls.with_webpki_roots(),
        };
        if let (Some(c), Some(k)) = (&s.client_cert_file, &s.client_key_file) {
            tls = tls.identity(Identity::from_pem(
                read(c, "client certificate")?,
                read(k, "client key")?,
            ));
        }
        b = b.with_tls_config(tls);
    }
    let exporter = b
        .build()
        .map_err(|e| TelemetryError(format!("OTLP exporter: {e}")))?;
    let mut resource = opentelemetry_sdk::Resource::builder()
        .with_service_name(s.service_name.clone())
        .with_attribute(opentelemetry::KeyValue::new(
            "service.version",
            env!("CARGO_PKG_VERSION"),
        ));
    if let Some(id) = &s.instance_id {
        resource = resource.with_attribute(opentelemetry::KeyValue::new(
            "service.instance.id",
            id.clone(),
        ));
    }
    Ok(SdkTracerProvider::builder()
        .with_resource(resource.build())
        .with_sampler(opentelemetry_sdk::trace::Sampler::ParentBased(Box::new(
            opentelemetry_sdk::trace::Sampler::AlwaysOn,
        )))
        .with_batch_exporter(exporter)
        .build())
}

struct HeaderInjector<'a>(&'a mut http::HeaderMap);

impl Injector for HeaderInjector<'_> {
    fn set(&mut self, key: &str, value: String) {
        if let (Ok(k), Ok(v)) = (
            http::HeaderName::from_bytes(key.as_bytes()),
            http::HeaderValue::from_str(&value),
        ) {
            self.0.insert(k, v);
        }
    }
}

struct HeaderExtractor<'a>(&'a http::HeaderMap);

impl Extractor for HeaderExtractor<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(|v| v.to_str().ok())
    }
    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(|k| k.as_str()).collect()
    }
}

/// Write the trace context of `span` into outgoing `headers` (`traceparent`,
/// `tracestate`); nothing when tracing is off.
pub fn inject(span: &tracing::Span, headers: &mut http::HeaderMap) {
    if !enabled() {
        return;
    }
    let cx = span.context();
    opentelemetry::global::get_text_map_propagator(|p| {
        p.inject_context(&cx, &mut HeaderInjector(headers))
    });
}

/// Make the trace context of incoming `headers` the parent of `span`;
/// nothing when tracing is off or the headers carry none.
pub fn adopt_parent(span: &tracing::Span, headers: &http::HeaderMap) {
    if !enabled() || !headers.contains_key("traceparent") {
        return;
    }
    let cx =
        opentelemetry::global::get_text_map_propagator(|p| p.extract(&HeaderExtractor(headers)));
    let _ = span.set_parent(cx);
}

/// Mark `span` failed with `message` (its fields `otel.status_code` and
/// `otel.status_description` must have been declared).
pub fn fail(span: &tracing::Span, message: &str) {
    span.record("otel.status_code", "error");
    span.record("otel.status_description", message);
}

/// Run `f` in `span`; an error marks the span failed with `message(&error)`.
pub async fn traced<T, E>(
    span: tracing::Span,
    f: impl std::future::Future<Output = Result<T, E>>,
    message: impl FnOnce(&E) -> String,
) -> Result<T, E> {
    let r = tracing::Instrument::instrument(f, span.clone()).await;
    if let Err(e) = &r {
        fail(&span, &message(e));
    }
    r
}

/// Trace contexts handed from one task to a later one (a CRI call to the
/// background work it queued), keyed by what both know. Bounded; empty while
/// tracing is off.
static HANDOFFS: Mutex<Vec<(String, opentelemetry::Context)>> = Mutex::new(Vec::new());
const MAX_HANDOFFS: usize = 1024;

/// Remember the current span's context under `key` for [`resume`].
pub fn hand_off(key: &str) {
    if !enabled() {
        return;
    }
    let cx = tracing::Span::current().context();
    let mut h = HANDOFFS.lock().unwrap_or_else(|e| e.into_inner());
    h.retain(|(k, _)| k != key);
    if h.len() >= MAX_HANDOFFS {
        h.remove(0);
    }
    h.push((key.to_string(), cx));
}

/// Make the context handed off under `key` (if any) the parent of `span`.
pub fn resume(span: &tracing::Span, key: &str) {
    if !enabled() {
        return;
    }
    let cx = {
        let mut h = HANDOFFS.lock().unwrap_or_else(|e| e.into_inner());
        match h.iter().position(|(k, _)| k == key) {
            Some(i) => h.remove(i).1,
            None => return,
        }
    };
    let _ = span.set_parent(cx);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(vars: &[(&str, &str)]) -> Result<Option<Settings>, TelemetryError> {
        let vars: Vec<(String, String)> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Settings::from_lookup("svc", &move |k| {
            vars.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone())
        })
    }

    #[test]
    fn off_unless_configured() {
        assert_eq!(settings(&[]).unwrap(), None);
        assert_eq!(settings(&[("ENABLE_TRACING", "0")]).unwrap(), None);
        let s = settings(&[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://c:4317"),
            ("OTEL_SDK_DISABLED", "true"),
        ]);
        assert_eq!(s.unwrap(), None);
    }

    #[test]
    fn upstream_and_standard_keys() {
        let s = settings(&[("ENABLE_TRACING", "1")]).unwrap().unwrap();
        assert_eq!(s.endpoint, "http://localhost:4317");
        assert_eq!(s.service_name, "svc");
        let s = settings(&[
            ("TELEMETRY_ENDPOINT", "collector:4317"),
            ("TELEMETRY_CA_CRT_FILEPATH", "/ca.pem"),
            ("TELEMETRY_UNIQUE_ID", "node-1"),
        ])
        .unwrap()
        .unwrap();
        assert_eq!(s.endpoint, "https://collector:4317");
        assert_eq!(s.ca_file, Some(PathBuf::from("/ca.pem")));
        assert_eq!(s.instance_id.as_deref(), Some("node-1"));
        let s = settings(&[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://a:4317"),
            ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "http://b:4317"),
            ("OTEL_EXPORTER_OTLP_TIMEOUT", "500"),
            ("OTEL_SERVICE_NAME", "mine"),
        ])
        .unwrap()
        .unwrap();
        assert_eq!(s.endpoint, "http://b:4317");
        assert_eq!(s.timeout, Duration::from_millis(500));
        assert_eq!(s.service_name, "mine");
    }

    #[test]
    fn bad_settings_are_errors() {
        let e = settings(&[
            ("ENABLE_TRACING", "1"),
            ("TELEMETRY_INSECURE_SKIP_VERIFY", "true"),
        ]);
        assert!(e.unwrap_err().to_string().contains("CA"));
        let e = settings(&[
            ("ENABLE_TRACING", "1"),
            ("TELEMETRY_CLIENT_CRT_FILEPATH", "/c.pem"),
        ]);
        assert!(e.unwrap_err().to_string().contains("key"));
        let e = settings(&[("TELEMETRY_ENDPOINT", "grpc://x:1")]);
        assert!(e.is_err());
    }
}
