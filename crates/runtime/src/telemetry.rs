//! Logs, traces and metrics through `tracing` and OpenTelemetry.
//!
//! Logs are human text locally (no colour codes unless stderr is a terminal) and one JSON
//! object per line in the cluster; a line written inside a span carries its trace and span
//! id. Spans and metrics go out over OTLP/gRPC when `OTEL_EXPORTER_OTLP_ENDPOINT` is set,
//! configured by the standard `OTEL_*` variables; without it nothing is exported, but trace
//! context still flows through every call and event, so log lines still correlate.
//! Exports are batched on the SDK's own threads: a collector that is slow or away never
//! holds up a call.

use std::{io::IsTerminal, time::Duration};

use opentelemetry::{KeyValue, global, trace::TraceContextExt, trace::TracerProvider as _};
use opentelemetry_otlp::{MetricExporter, SpanExporter, WithExportConfig};
use opentelemetry_sdk::{
    Resource,
    metrics::{PeriodicReader, SdkMeterProvider},
    propagation::TraceContextPropagator,
    trace::{Sampler, SdkTracerProvider},
};
use tracing_subscriber::{
    EnvFilter,
    fmt::{self, FmtContext, FormatEvent, FormatFields, format::Writer},
    prelude::*,
    registry::LookupSpan,
};

use crate::config::{ConfigError, Env};

/// The shape of log lines, from `RENTACAR_LOG_FORMAT` (`text` or `json`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Text,
    Json,
}

impl LogFormat {
    pub fn from_env(env: &Env) -> Result<Self, ConfigError> {
        match env.get("RENTACAR_LOG_FORMAT").as_deref() {
            None | Some("text") => Ok(Self::Text),
            Some("json") => Ok(Self::Json),
            Some(other) => Err(invalid("RENTACAR_LOG_FORMAT", other, "text or json")),
        }
    }
}

/// Where and how telemetry is exported: the standard OpenTelemetry variables, read and
/// checked at start like every other setting.
#[derive(Debug, Clone)]
pub struct TelemetryConfig {
    pub log_format: LogFormat,
    /// `OTEL_EXPORTER_OTLP_ENDPOINT`: the collector's OTLP/gRPC address; unset exports nothing.
    pub endpoint: Option<String>,
    /// `OTEL_SERVICE_NAME`, else the name the process runs as.
    pub service_name: String,
    /// `OTEL_RESOURCE_ATTRIBUTES`: `key=value` pairs separated by commas.
    pub resource_attributes: Vec<(String, String)>,
    /// `OTEL_TRACES_SAMPLER` and `OTEL_TRACES_SAMPLER_ARG` (default `parentbased_always_on`).
    pub sampler: SamplerConfig,
    /// `OTEL_METRIC_EXPORT_INTERVAL` in milliseconds (default 60000).
    pub metric_interval: Duration,
}

/// The samplers of the OpenTelemetry specification's `OTEL_TRACES_SAMPLER`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum SamplerConfig {
    AlwaysOn,
    AlwaysOff,
    TraceIdRatio(f64),
    ParentBasedAlwaysOn,
    ParentBasedAlwaysOff,
    ParentBasedTraceIdRatio(f64),
}

impl TelemetryConfig {
    /// Reads the variables; `default_service_name` names the process when
    /// `OTEL_SERVICE_NAME` is unset.
    pub fn from_env(env: &Env, default_service_name: &str) -> Result<Self, ConfigError> {
        let endpoint = match env.get("OTEL_EXPORTER_OTLP_ENDPOINT") {
            None => None,
            // Plain gRPC: the collector is in the cluster, behind the mesh's mTLS.
            Some(_) => Some(env.url_or("OTEL_EXPORTER_OTLP_ENDPOINT", "", &["http"])?),
        };
        let resource_attributes = match env.get("OTEL_RESOURCE_ATTRIBUTES") {
            None => Vec::new(),
            Some(raw) => parse_pairs(&raw).ok_or_else(|| {
                invalid(
                    "OTEL_RESOURCE_ATTRIBUTES",
                    &raw,
                    "key=value pairs separated by commas",
                )
            })?,
        };
        Ok(Self {
            log_format: LogFormat::from_env(env)?,
            endpoint,
            service_name: env
                .get("OTEL_SERVICE_NAME")
                .unwrap_or_else(|| default_service_name.to_owned()),
            resource_attributes,
            sampler: SamplerConfig::from_env(env)?,
            metric_interval: env.millis_or("OTEL_METRIC_EXPORT_INTERVAL", Duration::from_secs(60))?,
        })
    }
}

impl SamplerConfig {
    fn from_env(env: &Env) -> Result<Self, ConfigError> {
        let ratio = || -> Result<f64, ConfigError> {
            let ratio = env.parse_or("OTEL_TRACES_SAMPLER_ARG", 1.0, "a ratio from 0 to 1")?;
            if (0.0..=1.0).contains(&ratio) {
                Ok(ratio)
            } else {
                Err(invalid(
                    "OTEL_TRACES_SAMPLER_ARG",
                    &ratio.to_string(),
                    "a ratio from 0 to 1",
                ))
            }
        };
        Ok(match env.get("OTEL_TRACES_SAMPLER").as_deref().map(str::trim) {
            None | Some("parentbased_always_on") => Self::ParentBasedAlwaysOn,
            Some("always_on") => Self::AlwaysOn,
            Some("always_off") => Self::AlwaysOff,
            Some("traceidratio") => Self::TraceIdRatio(ratio()?),
            Some("parentbased_always_off") => Self::ParentBasedAlwaysOff,
            Some("parentbased_traceidratio") => Self::ParentBasedTraceIdRatio(ratio()?),
            Some(other) => {
                return Err(invalid(
                    "OTEL_TRACES_SAMPLER",
                    other,
                    "always_on, always_off, traceidratio, parentbased_always_on, \
                     parentbased_always_off or parentbased_traceidratio",
                ));
            }
        })
    }

    fn sampler(self) -> Sampler {
        let parent_based = |root: Sampler| Sampler::ParentBased(Box::new(root));
        match self {
            Self::AlwaysOn => Sampler::AlwaysOn,
            Self::AlwaysOff => Sampler::AlwaysOff,
            Self::TraceIdRatio(ratio) => Sampler::TraceIdRatioBased(ratio),
            Self::ParentBasedAlwaysOn => parent_based(Sampler::AlwaysOn),
            Self::ParentBasedAlwaysOff => parent_based(Sampler::AlwaysOff),
            Self::ParentBasedTraceIdRatio(ratio) => parent_based(Sampler::TraceIdRatioBased(ratio)),
        }
    }
}

fn parse_pairs(raw: &str) -> Option<Vec<(String, String)>> {
    raw.split(',')
        .filter(|pair| !pair.trim().is_empty())
        .map(|pair| {
            let (key, value) = pair.split_once('=')?;
            let key = key.trim();
            (!key.is_empty()).then(|| (key.to_owned(), value.trim().to_owned()))
        })
        .collect()
}

fn invalid(variable: &str, value: &str, expected: &str) -> ConfigError {
    ConfigError {
        variable: variable.to_owned(),
        value: value.to_owned(),
        expected: expected.to_owned(),
    }
}

/// How long shutting down waits for each exporter: a collector that does not answer must
/// not eat into the pod's grace period.
const FLUSH_TIMEOUT: Duration = Duration::from_secs(2);

/// The longest [`Telemetry::shutdown`] takes: the spans' bounded wait, then the metrics',
/// which the SDK fixes at 5 s whatever it is given.
pub const SHUTDOWN_BOUND: Duration = Duration::from_secs(2 + 5);

/// The installed providers; [`Telemetry::shutdown`] flushes what is still buffered.
pub struct Telemetry {
    tracer: SdkTracerProvider,
    meter: Option<SdkMeterProvider>,
}

/// The exporter could not be set up.
#[derive(Debug, thiserror::Error)]
#[error("setting up the OTLP exporter: {0}")]
pub struct TelemetryError(#[from] opentelemetry_otlp::ExporterBuildError);

/// Installs the global subscriber (logs to stderr, so stdout stays for command output;
/// the level from `RUST_LOG`, default `info`), the W3C trace-context propagator, and the
/// tracer and meter providers. Must run inside the tokio runtime (the gRPC exporter
/// spawns on it). A second call in one process (several services in a test) keeps the
/// first subscriber.
pub fn init(config: &TelemetryConfig) -> Result<Telemetry, TelemetryError> {
    global::set_text_map_propagator(TraceContextPropagator::new());
    // OTEL_SERVICE_NAME wins over a service.name in OTEL_RESOURCE_ATTRIBUTES.
    let resource = Resource::builder_empty()
        .with_attributes(
            config
                .resource_attributes
                .iter()
                .map(|(key, value)| KeyValue::new(key.clone(), value.clone())),
        )
        .with_service_name(config.service_name.clone())
        .build();

    // Without an endpoint nothing is recorded, but spans still get ids (for log lines)
    // and a caller's context still passes on.
    let sampler = match config.endpoint {
        Some(_) => config.sampler.sampler(),
        None => Sampler::ParentBased(Box::new(Sampler::AlwaysOff)),
    };
    let mut tracer = SdkTracerProvider::builder()
        .with_sampler(sampler)
        .with_resource(resource.clone());
    let mut meter = None;
    if let Some(endpoint) = &config.endpoint {
        let spans = SpanExporter::builder()
            .with_tonic()
            .with_endpoint(endpoint.clone())
            .build()?;
        tracer = tracer.with_batch_exporter(spans);
        let metrics = MetricExporter::builder()
            .with_tonic()
            .with_endpoint(endpoint.clone())
            .build()?;
        let reader = PeriodicReader::builder(metrics)
            .with_interval(config.metric_interval)
            .build();
        let provider = SdkMeterProvider::builder()
            .with_reader(reader)
            .with_resource(resource)
            .build();
        global::set_meter_provider(provider.clone());
        meter = Some(provider);
    }
    let tracer = tracer.build();
    global::set_tracer_provider(tracer.clone());

    // tonic-tracing-opentelemetry makes its gRPC spans at TRACE level under this target.
    let filter = EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| EnvFilter::new("info"))
        .add_directive("otel::tracing=trace".parse().expect("a valid directive"));
    let spans = tracing_opentelemetry::layer().with_tracer(tracer.tracer("rentacar"));
    let registry = tracing_subscriber::registry().with(filter).with(spans);
    let _ = match config.log_format {
        LogFormat::Text => registry
            .with(
                fmt::layer()
                    .with_ansi(std::io::stderr().is_terminal())
                    .event_format(WithTraceIds(fmt::format()))
                    .with_writer(std::io::stderr),
            )
            .try_init(),
        LogFormat::Json => registry
            .with(
                fmt::layer()
                    .json()
                    .event_format(WithTraceIds(fmt::format().json().flatten_event(true)))
                    .with_writer(std::io::stderr),
            )
            .try_init(),
    };
    Ok(Telemetry { tracer, meter })
}

impl Telemetry {
    /// Exports what is still buffered and stops the exporters. Their threads need the
    /// runtime to send, so this waits on a blocking thread rather than on the runtime's.
    pub async fn shutdown(self) {
        let done = tokio::task::spawn_blocking(move || {
            if let Err(err) = self.tracer.shutdown_with_timeout(FLUSH_TIMEOUT) {
                tracing::warn!(error = %err, "flushing spans failed");
            }
            if let Some(meter) = self.meter
                && let Err(err) = meter.shutdown_with_timeout(FLUSH_TIMEOUT)
            {
                tracing::warn!(error = %err, "flushing metrics failed");
            }
        });
        let _ = done.await;
    }

    /// Exports what is buffered now, without stopping.
    pub async fn flush(&self) {
        let (tracer, meter) = (self.tracer.clone(), self.meter.clone());
        let _ = tokio::task::spawn_blocking(move || {
            let _ = tracer.force_flush();
            if let Some(meter) = meter {
                let _ = meter.force_flush();
            }
        })
        .await;
    }
}

/// Puts the current trace and span id on every line written inside a span: as the first
/// fields of a JSON object, or in front of a text line.
struct WithTraceIds<F>(F);

impl<S, N, F> FormatEvent<S, N> for WithTraceIds<F>
where
    S: tracing::Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
    F: FormatEvent<S, N>,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &tracing::Event<'_>,
    ) -> std::fmt::Result {
        let context = opentelemetry::Context::current();
        let span = context.span();
        let ids = span.span_context();
        if !ids.is_valid() {
            return self.0.format_event(ctx, writer, event);
        }
        let mut line = String::new();
        self.0.format_event(ctx, Writer::new(&mut line), event)?;
        match line.strip_prefix('{') {
            Some(rest) => write!(
                writer,
                "{{\"trace_id\":\"{}\",\"span_id\":\"{}\",{rest}",
                ids.trace_id(),
                ids.span_id()
            ),
            None => write!(
                writer,
                "trace_id={} span_id={} {line}",
                ids.trace_id(),
                ids.span_id()
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn otel_variables_are_read_and_checked() {
        let env = Env::from_pairs([
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://otel-collector:4317"),
            ("OTEL_SERVICE_NAME", "payment"),
            (
                "OTEL_RESOURCE_ATTRIBUTES",
                "deployment.environment=prod, service.namespace=rentacar",
            ),
            ("OTEL_TRACES_SAMPLER", "parentbased_traceidratio"),
            ("OTEL_TRACES_SAMPLER_ARG", "0.25"),
        ]);
        let config = TelemetryConfig::from_env(&env, "rentacar").unwrap();
        assert_eq!(config.endpoint.as_deref(), Some("http://otel-collector:4317"));
        assert_eq!(config.service_name, "payment");
        assert_eq!(config.sampler, SamplerConfig::ParentBasedTraceIdRatio(0.25));
        assert_eq!(
            config.resource_attributes,
            [
                ("deployment.environment".to_owned(), "prod".to_owned()),
                ("service.namespace".to_owned(), "rentacar".to_owned())
            ]
        );
    }

    #[test]
    fn without_variables_nothing_is_exported() {
        let config = TelemetryConfig::from_env(&Env::from_pairs::<&str, &str>([]), "fleet").unwrap();
        assert_eq!(config.endpoint, None);
        assert_eq!(config.service_name, "fleet");
        assert_eq!(config.sampler, SamplerConfig::ParentBasedAlwaysOn);
    }

    #[test]
    fn a_bad_sampler_is_named() {
        for (name, value) in [
            ("OTEL_TRACES_SAMPLER", "sometimes"),
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "otel-collector:4317"),
            ("OTEL_RESOURCE_ATTRIBUTES", "no-equals-sign"),
        ] {
            let err = TelemetryConfig::from_env(&Env::from_pairs([(name, value)]), "fleet").unwrap_err();
            assert_eq!(err.variable, name);
        }
        let env = Env::from_pairs([
            ("OTEL_TRACES_SAMPLER", "traceidratio"),
            ("OTEL_TRACES_SAMPLER_ARG", "2"),
        ]);
        let err = TelemetryConfig::from_env(&env, "fleet").unwrap_err();
        assert_eq!(err.variable, "OTEL_TRACES_SAMPLER_ARG");
    }
}
