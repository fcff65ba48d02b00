//! An OTLP trace collector for tests and benchmarks: it accepts
//! OTLP/gRPC and OTLP/HTTP (protobuf) and keeps every span it receives.

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{
    TraceService, TraceServiceServer,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::any_value::Value as AnyValue;
use opentelemetry_proto::tonic::trace::v1::Span;

/// One exported span and the `service.name` of the process that sent it.
#[derive(Clone, Debug)]
pub struct Got {
    pub service: String,
    pub span: Span,
}

/// An OTLP collector (gRPC and HTTP/protobuf) that keeps what it receives.
#[derive(Clone, Default)]
pub struct Collector {
    spans: Arc<Mutex<Vec<Got>>>,
}

impl Collector {
    /// How many spans arrived so far.
    pub fn len(&self) -> usize {
        self.spans.lock().unwrap().len()
    }

    /// Whether no span arrived yet.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Forgets what arrived (a benchmark's sink).
    pub fn clear(&self) {
        self.spans.lock().unwrap().clear();
    }

    fn take(&self, req: ExportTraceServiceRequest) {
        let mut spans = self.spans.lock().unwrap();
        for rs in req.resource_spans {
            let service = rs
                .resource
                .as_ref()
                .and_then(|r| r.attributes.iter().find(|kv| kv.key == "service.name"))
                .and_then(|kv| kv.value.as_ref())
                .and_then(|v| match &v.value {
                    Some(AnyValue::StringValue(s)) => Some(s.clone()),
                    _ => None,
                })
                .unwrap_or_default();
            for ss in rs.scope_spans {
                for span in ss.spans {
                    spans.push(Got {
                        service: service.clone(),
                        span,
                    });
                }
            }
        }
    }

    pub fn trace(&self, trace_id: &[u8]) -> Vec<Got> {
        self.spans
            .lock()
            .unwrap()
            .iter()
            .filter(|g| g.span.trace_id == trace_id)
            .cloned()
            .collect()
    }

    pub fn all(&self) -> Vec<Got> {
        self.spans.lock().unwrap().clone()
    }

    /// Waits until the trace holds spans from every one of `services`.
    pub async fn wait_for(&self, trace_id: &[u8], services: &[&str]) -> Vec<Got> {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let got = self.trace(trace_id);
            let seen: BTreeSet<&str> = got.iter().map(|g| g.service.as_str()).collect();
            if services.iter().all(|s| seen.contains(s)) {
                // Late spans of the same trace (a process's next batch).
                tokio::time::sleep(Duration::from_millis(700)).await;
                return self.trace(trace_id);
            }
            assert!(
                Instant::now() < deadline,
                "trace {} never reached {services:?}; seen {seen:?}",
                hex::encode(trace_id)
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

#[tonic::async_trait]
impl TraceService for Collector {
    async fn export(
        &self,
        req: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        self.take(req.into_inner());
        Ok(tonic::Response::new(ExportTraceServiceResponse {
            partial_success: None,
        }))
    }
}

/// Serves OTLP/gRPC on a free port; returns its `http://` endpoint.
pub async fn grpc_collector(c: Collector) -> String {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(TraceServiceServer::new(c))
            .serve_with_incoming(tonic::transport::server::TcpIncoming::from(l)),
    );
    format!("http://{addr}")
}

/// Serves OTLP/HTTP (`POST /v1/traces`, protobuf) on a free port.
pub async fn http_collector(c: Collector) -> String {
    use prost::Message;
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    let app = axum::Router::new().route(
        "/v1/traces",
        axum::routing::post(move |body: axum::body::Bytes| {
            let c = c.clone();
            async move {
                match ExportTraceServiceRequest::decode(body) {
                    Ok(req) => {
                        c.take(req);
                        (
                            axum::http::StatusCode::OK,
                            ExportTraceServiceResponse::default().encode_to_vec(),
                        )
                    }
                    Err(_) => (axum::http::StatusCode::BAD_REQUEST, vec![]),
                }
            }
        }),
    );
    tokio::spawn(async move { axum::serve(l, app).await });
    format!("http://{addr}")
}
