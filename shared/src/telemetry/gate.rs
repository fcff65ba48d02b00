//! Keeps the OpenTelemetry layer away from spans of traces nobody records.
//!
//! A trace that is not sampled is never exported, yet every span of it
//! would still cost the OpenTelemetry layer its ids, attributes and
//! context bookkeeping. A server span continuing a caller's trace that is
//! valid but not sampled is opened *untraced* instead: a callsite with the
//! [`UNTRACED_FIELD`] field, which [`OtelFilter`] hides from the layer,
//! together with every span and event below it. The span still exists for
//! the log layer (its fields, the request id, name every log line written
//! under it), and it keeps the caller's trace context in its extensions
//! ([`Untraced`]), so calls made under it carry the same trace id and "not
//! sampled" downstream.

use tracing::level_filters::LevelFilter;
use tracing::subscriber::Interest;
use tracing::{Metadata, Subscriber};
use tracing_subscriber::layer::{Context, Filter};
use tracing_subscriber::registry::LookupSpan;

/// The field that marks a span callsite as untraced (declared `Empty`, so
/// no log line shows it).
pub(super) const UNTRACED_FIELD: &str = "untraced";

/// In an untraced root's extensions: the trace context it continues.
#[derive(Clone)]
pub(super) struct Untraced(pub(super) opentelemetry::Context);

/// The OpenTelemetry layer's filter: `INFO` and above, except untraced
/// spans and whatever is under them.
pub(super) struct OtelFilter;

const LEVEL: LevelFilter = LevelFilter::INFO;

impl<S> Filter<S> for OtelFilter
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    fn enabled(&self, meta: &Metadata<'_>, cx: &Context<'_, S>) -> bool {
        if *meta.level() > LEVEL {
            return false;
        }
        if meta.is_span() && meta.fields().field(UNTRACED_FIELD).is_some() {
            return false;
        }
        // Under a span this layer does not see although its level would
        // pass: an untraced one, or one below it.
        let current = cx.current_span();
        match (current.id(), current.metadata()) {
            (Some(id), Some(parent)) if *parent.level() <= LEVEL => cx.span(id).is_some(),
            _ => true,
        }
    }

    fn callsite_enabled(&self, meta: &'static Metadata<'static>) -> Interest {
        if *meta.level() > LEVEL
            || (meta.is_span() && meta.fields().field(UNTRACED_FIELD).is_some())
        {
            Interest::never()
        } else {
            Interest::sometimes()
        }
    }

    fn max_level_hint(&self) -> Option<LevelFilter> {
        Some(LEVEL)
    }
}
