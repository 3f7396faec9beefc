//! Trace settings: the standard OpenTelemetry variables, read and checked at
//! start like every other setting.
//!
//! Tracing is off unless `OTEL_EXPORTER_OTLP_ENDPOINT` is set; then the other
//! variables are read too, and a bad value of any of them stops the service
//! with the one line naming it. The spans themselves are described in
//! `docs/tracing.md`; [`crate::trace_export`] sends them.

use crate::config::{ConfigError, Vars};

/// The base URL of the OTLP receiver.
const ENDPOINT: &str = "OTEL_EXPORTER_OTLP_ENDPOINT";
/// `grpc` or `http/protobuf`.
const PROTOCOL: &str = "OTEL_EXPORTER_OTLP_PROTOCOL";
/// The `service.name` resource attribute.
const SERVICE_NAME: &str = "OTEL_SERVICE_NAME";
/// Which sampler decides what is recorded.
const SAMPLER: &str = "OTEL_TRACES_SAMPLER";
/// The ratio of the ratio samplers.
const SAMPLER_ARG: &str = "OTEL_TRACES_SAMPLER_ARG";
/// Extra resource attributes, `key=value,…`.
const RESOURCE_ATTRIBUTES: &str = "OTEL_RESOURCE_ATTRIBUTES";

/// How spans reach the receiver.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    /// OTLP over gRPC (usually port 4317).
    Grpc,
    /// OTLP protobuf bodies POSTed to `<endpoint>/v1/traces` (usually port 4318).
    HttpProtobuf,
}

/// Which spans are recorded, as `OTEL_TRACES_SAMPLER` names them.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Sampling {
    /// Every trace.
    AlwaysOn,
    /// No trace.
    AlwaysOff,
    /// This fraction of traces, by trace id.
    TraceIdRatio(f64),
    /// A continued trace as its parent decided; a new one always.
    ParentBasedAlwaysOn,
    /// A continued trace as its parent decided; a new one never.
    ParentBasedAlwaysOff,
    /// A continued trace as its parent decided; a new one by ratio.
    ParentBasedTraceIdRatio(f64),
}

/// Where and how to export spans.
#[derive(Debug, Clone, PartialEq)]
pub struct TraceConfig {
    /// Base URL of the receiver (no `/v1/traces`).
    pub endpoint: String,
    /// The wire protocol.
    pub protocol: Protocol,
    /// `service.name`.
    pub service_name: String,
    /// The sampler.
    pub sampling: Sampling,
    /// Further resource attributes.
    pub resource: Vec<(String, String)>,
}

impl TraceConfig {
    /// The trace settings, or `None` when `OTEL_EXPORTER_OTLP_ENDPOINT` is
    /// unset (tracing off). `service` is the default `service.name`.
    pub fn from_vars<F: Fn(&str) -> Option<String>>(
        vars: &Vars<F>,
        service: &str,
    ) -> Result<Option<TraceConfig>, ConfigError> {
        if vars.raw(ENDPOINT).is_none() {
            return Ok(None);
        }
        let endpoint = vars.parse_with(ENDPOINT, String::new(), endpoint)?;
        let protocol = vars.parse_with(PROTOCOL, Protocol::HttpProtobuf, |v| match v {
            "grpc" => Ok(Protocol::Grpc),
            "http/protobuf" => Ok(Protocol::HttpProtobuf),
            _ => Err("expected grpc or http/protobuf".to_owned()),
        })?;
        let service_name =
            vars.parse_with(SERVICE_NAME, service.to_owned(), |v| Ok(v.to_owned()))?;
        let ratio = vars.parse_with(SAMPLER_ARG, 1.0, |v| match v.parse::<f64>() {
            Ok(r) if (0.0..=1.0).contains(&r) => Ok(r),
            _ => Err("expected a ratio from 0 to 1".to_owned()),
        })?;
        let sampling = vars.parse_with(SAMPLER, Sampling::ParentBasedAlwaysOn, |v| {
            sampling(v, ratio)
        })?;
        let resource = vars.parse_with(RESOURCE_ATTRIBUTES, Vec::new(), resource_attributes)?;
        Ok(Some(TraceConfig {
            endpoint,
            protocol,
            service_name,
            sampling,
            resource,
        }))
    }
}

/// A plain `http://host:port[/path]` URL. The exporters are built without TLS
/// (a compile-time saving): spans go to a collector next to the service.
fn endpoint(value: &str) -> Result<String, String> {
    let uri: hyper::Uri = value
        .parse()
        .map_err(|_| "expected a URL such as http://otel-collector:4318".to_owned())?;
    match (uri.scheme_str(), uri.host()) {
        (Some("http"), Some(host)) if !host.is_empty() => {
            Ok(value.trim_end_matches('/').to_owned())
        }
        (Some("https"), _) => Err(
            "https is not supported; export to a collector over plain http:// next to the service"
                .to_owned(),
        ),
        _ => Err("expected a URL such as http://otel-collector:4318".to_owned()),
    }
}

/// The sampler named `name`, with `ratio` for the ratio samplers.
fn sampling(name: &str, ratio: f64) -> Result<Sampling, String> {
    Ok(match name {
        "always_on" => Sampling::AlwaysOn,
        "always_off" => Sampling::AlwaysOff,
        "traceidratio" => Sampling::TraceIdRatio(ratio),
        "parentbased_always_on" => Sampling::ParentBasedAlwaysOn,
        "parentbased_always_off" => Sampling::ParentBasedAlwaysOff,
        "parentbased_traceidratio" => Sampling::ParentBasedTraceIdRatio(ratio),
        _ => {
            return Err(
                "expected always_on, always_off, traceidratio, parentbased_always_on, \
                 parentbased_always_off or parentbased_traceidratio"
                    .to_owned(),
            );
        }
    })
}

/// `key=value` pairs separated by commas, values percent-encoded as the
/// specification allows.
fn resource_attributes(value: &str) -> Result<Vec<(String, String)>, String> {
    value
        .split(',')
        .filter(|pair| !pair.trim().is_empty())
        .map(|pair| {
            let (key, value) = pair
                .split_once('=')
                .filter(|(key, _)| !key.trim().is_empty())
                .ok_or_else(|| {
                    format!("expected key=value pairs separated by commas, not `{pair}`")
                })?;
            let value = percent_decoded(value.trim()).ok_or_else(|| {
                format!(
                    "the value of `{}` is not valid percent-encoding",
                    key.trim()
                )
            })?;
            Ok((key.trim().to_owned(), value))
        })
        .collect()
}

/// `text` with its `%XX` escapes decoded; `None` for a broken escape or a
/// result that is not UTF-8.
fn percent_decoded(text: &str) -> Option<String> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = text.get(i + 1..i + 3)?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(pairs: &[(&str, &str)]) -> Result<Option<TraceConfig>, ConfigError> {
        TraceConfig::from_vars(&Vars::from_pairs(pairs), "main-service")
    }

    #[test]
    fn tracing_is_off_without_an_endpoint() {
        assert_eq!(read(&[(SAMPLER, "nonsense")]), Ok(None));
    }

    #[test]
    fn defaults_follow_the_specification() {
        let config = read(&[(ENDPOINT, "http://collector:4318/")])
            .unwrap()
            .unwrap();
        assert_eq!(
            config,
            TraceConfig {
                endpoint: "http://collector:4318".to_owned(),
                protocol: Protocol::HttpProtobuf,
                service_name: "main-service".to_owned(),
                sampling: Sampling::ParentBasedAlwaysOn,
                resource: Vec::new(),
            }
        );
    }

    #[test]
    fn both_protocols_and_every_standard_sampler_are_accepted() {
        let config = read(&[
            (ENDPOINT, "http://collector:4317"),
            (PROTOCOL, "grpc"),
            (SERVICE_NAME, "search-edge"),
            (SAMPLER, "parentbased_traceidratio"),
            (SAMPLER_ARG, "0.25"),
            (
                RESOURCE_ATTRIBUTES,
                "deployment.environment=prod,team=a%2Cb",
            ),
        ])
        .unwrap()
        .unwrap();
        assert_eq!(config.protocol, Protocol::Grpc);
        assert_eq!(config.service_name, "search-edge");
        assert_eq!(config.sampling, Sampling::ParentBasedTraceIdRatio(0.25));
        assert_eq!(
            config.resource,
            [
                ("deployment.environment".to_owned(), "prod".to_owned()),
                ("team".to_owned(), "a,b".to_owned())
            ]
        );
        let protobuf = read(&[(ENDPOINT, "http://c:4318"), (PROTOCOL, "http/protobuf")]);
        assert_eq!(protobuf.unwrap().unwrap().protocol, Protocol::HttpProtobuf);
        for name in [
            "always_on",
            "always_off",
            "traceidratio",
            "parentbased_always_off",
        ] {
            assert!(
                read(&[(ENDPOINT, "http://c:4318"), (SAMPLER, name)]).is_ok(),
                "{name}"
            );
        }
    }

    #[test]
    fn a_bad_value_names_its_variable() {
        for (name, value) in [
            (ENDPOINT, "collector:4318"),
            (ENDPOINT, "https://collector:4318"),
            (PROTOCOL, "http/json"),
            (SAMPLER, "jaeger_remote"),
            (SAMPLER_ARG, "1.5"),
            (RESOURCE_ATTRIBUTES, "novalue"),
            (RESOURCE_ATTRIBUTES, "a=%zz"),
        ] {
            let mut pairs = vec![(name, value)];
            if name != ENDPOINT {
                pairs.push((ENDPOINT, "http://collector:4318"));
            }
            let error = read(&pairs).unwrap_err();
            assert_eq!(error.name, name, "{value}");
            assert!(
                error
                    .to_string()
                    .starts_with(&format!("{name}={value} is not valid: "))
            );
        }
    }
}
