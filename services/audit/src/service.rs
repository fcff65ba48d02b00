//! The `bulwark.audit.v1.Audit` gRPC service over [`AuditBroker`].
//!
//! Every RPC answers UNAVAILABLE "Vault is sealed" while the service holds no
//! data key, so a sealed audit service fails every request closed. Spans
//! carry device paths, never entries.

use std::sync::Arc;

use bulwark_proto::audit::v1 as pb;
use bulwark_proto::audit::v1::audit_server::Audit;
use tonic::{Request, Response, Status};

use crate::broker::{AuditBroker, DeviceConfig, Group};
use crate::entry::NonHmacKeys;

/// Batches of one `LogStream` being recorded at once.
pub const STREAM_IN_FLIGHT: usize = 4096;

/// Records a batch of streamed entries, each traced (when its trace is
/// sampled) as a `Log` call of its own, and answers each by id.
async fn log_batch(broker: &AuditBroker, batch: pb::LogStreamBatch) -> pb::LogStreamAnswers {
    let spans: Vec<Option<tracing::Span>> = batch
        .entries
        .iter()
        .map(|m| {
            bulwark_shared::telemetry::stream_message_server(
                LOG_METHOD,
                &m.traceparent,
                &m.request_id,
            )
        })
        .collect();
    let missing = pb::LogRequest::default();
    let groups: Vec<Group<'_>> = batch
        .entries
        .iter()
        .map(|m| {
            let entry = m.entry.as_ref().unwrap_or(&missing);
            Group {
                entries: std::iter::once(&entry.entry)
                    .chain(&m.following)
                    .map(Vec::as_slice)
                    .collect(),
                non_hmac: NonHmacKeys {
                    request: &entry.non_hmac_request_keys,
                    response: &entry.non_hmac_response_keys,
                },
            }
        })
        .collect();
    let results = match broker.log_groups(&groups).await {
        Ok(results) => results
            .into_iter()
            .map(|r| r.map_err(Status::from))
            .collect(),
        Err(e) => {
            let status = Status::from(e);
            groups
                .iter()
                .map(|_| Err(Status::new(status.code(), status.message())))
                .collect::<Vec<_>>()
        }
    };
    let answers = batch
        .entries
        .iter()
        .zip(results)
        .zip(spans)
        .map(|((m, result), span)| {
            let answer = match result {
                Ok(recorded) => pb::LogStreamResponse {
                    id: m.id,
                    recorded,
                    code: 0,
                    message: String::new(),
                },
                Err(status) => pb::LogStreamResponse {
                    id: m.id,
                    recorded: 0,
                    code: status.code() as i32,
                    message: status.message().to_string(),
                },
            };
            if let Some(span) = span {
                bulwark_shared::telemetry::record_status(&span, tonic::Code::from(answer.code));
            }
            answer
        })
        .collect();
    pb::LogStreamAnswers { answers }
}

/// The unary method a streamed entry stands for (span names, metrics).
pub const LOG_METHOD: &str = "/bulwark.audit.v1.Audit/Log";

/// The audit service's gRPC handlers.
pub struct AuditService {
    broker: Arc<AuditBroker>,
}

impl AuditService {
    /// Handlers over `broker`.
    pub fn new(broker: Arc<AuditBroker>) -> Self {
        AuditService { broker }
    }
}

#[tonic::async_trait]
impl Audit for AuditService {
    #[tracing::instrument(skip_all, fields(path = %req.get_ref().path, kind = %req.get_ref().r#type))]
    async fn enable_device(
        &self,
        req: Request<pb::EnableDeviceRequest>,
    ) -> Result<Response<pb::Empty>, Status> {
        let req = req.into_inner();
        self.broker
            .enable(DeviceConfig {
                path: req.path,
                kind: req.r#type,
                description: req.description,
                options: req.options.into_iter().collect(),
                local: req.local,
            })
            .await?;
        Ok(Response::new(pb::Empty {}))
    }

    #[tracing::instrument(skip_all, fields(path = %req.get_ref().path))]
    async fn disable_device(
        &self,
        req: Request<pb::DisableDeviceRequest>,
    ) -> Result<Response<pb::Empty>, Status> {
        self.broker.disable(&req.into_inner().path).await?;
        Ok(Response::new(pb::Empty {}))
    }

    #[tracing::instrument(skip_all)]
    async fn list_devices(
        &self,
        _req: Request<pb::Empty>,
    ) -> Result<Response<pb::ListDevicesResponse>, Status> {
        let devices = self
            .broker
            .list()
            .await?
            .into_iter()
            .map(|d| pb::Device {
                path: d.path,
                r#type: d.kind,
                description: d.description,
                options: d.options.into_iter().collect(),
                local: d.local,
            })
            .collect();
        Ok(Response::new(pb::ListDevicesResponse { devices }))
    }

    #[tracing::instrument(skip_all, fields(path = %req.get_ref().path))]
    async fn hash(
        &self,
        req: Request<pb::HashRequest>,
    ) -> Result<Response<pb::HashResponse>, Status> {
        let req = req.into_inner();
        let hash = self.broker.hash(&req.path, &req.input).await?;
        Ok(Response::new(pb::HashResponse { hash }))
    }

    #[tracing::instrument(skip_all)]
    async fn log(&self, req: Request<pb::LogRequest>) -> Result<Response<pb::LogResponse>, Status> {
        let req = req.into_inner();
        let non_hmac = NonHmacKeys {
            request: &req.non_hmac_request_keys,
            response: &req.non_hmac_response_keys,
        };
        let recorded = self.broker.log(&req.entry, non_hmac).await?;
        Ok(Response::new(pb::LogResponse { recorded }))
    }

    type LogStreamStream =
        std::pin::Pin<Box<dyn futures::Stream<Item = Result<pb::LogStreamAnswers, Status>> + Send>>;

    /// Records each batch of the stream as `log` would each of its entries,
    /// batches concurrently (up to [`STREAM_IN_FLIGHT`] at once, so that
    /// group commit can join them), answering each batch in one message.
    async fn log_stream(
        &self,
        req: Request<tonic::Streaming<pb::LogStreamBatch>>,
    ) -> Result<Response<Self::LogStreamStream>, Status> {
        let mut inbound = req.into_inner();
        let (tx, rx) = tokio::sync::mpsc::channel(STREAM_IN_FLIGHT);
        let broker = self.broker.clone();
        tokio::spawn(async move {
            let limit = Arc::new(tokio::sync::Semaphore::new(STREAM_IN_FLIGHT));
            while let Ok(Some(batch)) = inbound.message().await {
                let Ok(permit) = limit.clone().acquire_owned().await else {
                    return;
                };
                let (broker, tx) = (broker.clone(), tx.clone());
                tokio::spawn(async move {
                    let answers = log_batch(&broker, batch).await;
                    let _ = tx.send(Ok(answers)).await;
                    drop(permit);
                });
            }
        });
        Ok(Response::new(Box::pin(
            tokio_stream::wrappers::ReceiverStream::new(rx),
        )))
    }

    #[tracing::instrument(skip_all)]
    async fn reopen(&self, _req: Request<pb::Empty>) -> Result<Response<pb::Empty>, Status> {
        self.broker.reopen().await?;
        Ok(Response::new(pb::Empty {}))
    }

    type WatchDevicesStream =
        std::pin::Pin<Box<dyn futures::Stream<Item = Result<pb::DeviceCount, Status>> + Send>>;

    /// The number of configured devices, now and on every change. Loads the
    /// table first when unsealed, so that the count is known.
    async fn watch_devices(
        &self,
        _req: Request<pb::Empty>,
    ) -> Result<Response<Self::WatchDevicesStream>, Status> {
        let rx = self.broker.subscribe_count();
        // Best effort: sealed (or storage trouble) leaves the count unknown,
        // which makes callers keep auditing (and fail closed).
        let _ = self.broker.load().await;
        let stream = tokio_stream::wrappers::WatchStream::new(rx);
        Ok(Response::new(Box::pin(futures::StreamExt::map(
            stream,
            |c| {
                Ok(pb::DeviceCount {
                    known: c.is_some(),
                    enabled: c.unwrap_or(0),
                })
            },
        ))))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_util::harness;
    use tonic::Code;

    fn enable_file(path: &str, file: &str) -> pb::EnableDeviceRequest {
        pb::EnableDeviceRequest {
            path: path.into(),
            r#type: "file".into(),
            description: "d".into(),
            options: [("file_path".to_string(), file.to_string())].into(),
            local: false,
        }
    }

    /// A service with one file device `file/` writing to the returned path.
    async fn with_file_device() -> (
        crate::test_util::Harness,
        tempfile::TempDir,
        String,
        AuditService,
    ) {
        let h = harness().await;
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("a.log").to_string_lossy().to_string();
        let svc = AuditService::new(h.broker.clone());
        svc.enable_device(Request::new(enable_file("file", &file)))
            .await
            .unwrap();
        (h, dir, file, svc)
    }

    #[tokio::test]
    async fn rpcs_round_trip() {
        let (_h, _dir, file, svc) = with_file_device().await;
        let listed = svc
            .list_devices(Request::new(pb::Empty {}))
            .await
            .unwrap()
            .into_inner();
        assert_eq!(listed.devices.len(), 1);
        assert_eq!(listed.devices[0].path, "file/");
        assert_eq!(listed.devices[0].r#type, "file");
        assert_eq!(listed.devices[0].options["file_path"], file);
        let hash = svc
            .hash(Request::new(pb::HashRequest {
                path: "file/".into(),
                input: "x".into(),
            }))
            .await
            .unwrap()
            .into_inner()
            .hash;
        assert!(hash.starts_with("hmac-sha256:"));
        let logged = svc
            .log(Request::new(pb::LogRequest {
                entry: br#"{"time":"t","type":"request","request":{"data":{"k":"v"}}}"#.to_vec(),
                non_hmac_request_keys: vec!["k".into()],
                non_hmac_response_keys: vec![],
            }))
            .await
            .unwrap()
            .into_inner();
        assert_eq!(logged.recorded, 1);
        let text = std::fs::read_to_string(&file).unwrap();
        assert!(text.contains(r#""data":{"k":"v"}"#), "{text}");
        let bad = svc
            .log(Request::new(pb::LogRequest {
                entry: b"[1,2]".to_vec(),
                ..Default::default()
            }))
            .await
            .unwrap_err();
        assert_eq!(bad.code(), Code::InvalidArgument);
        svc.reopen(Request::new(pb::Empty {})).await.unwrap();
        svc.disable_device(Request::new(pb::DisableDeviceRequest {
            path: "file".into(),
        }))
        .await
        .unwrap();
        let unknown = svc
            .hash(Request::new(pb::HashRequest {
                path: "file/".into(),
                input: "x".into(),
            }))
            .await
            .unwrap_err();
        assert_eq!(
            (unknown.code(), unknown.message()),
            (Code::InvalidArgument, "unknown audit backend")
        );
    }

    #[tokio::test]
    async fn a_streamed_entry_and_its_following_ones_are_one_batch_in_order() {
        let (h, _dir, file, _svc) = with_file_device().await;
        let writer_batches = || h.broker.batches("file/");
        let before = writer_batches();
        let msg = |id, following: Vec<&[u8]>| pb::LogStreamRequest {
            id,
            entry: Some(pb::LogRequest {
                entry: format!(r#"{{"time":"t1","type":"request","request":{{"id":"r{id}"}}}}"#)
                    .into_bytes(),
                ..Default::default()
            }),
            following: following.into_iter().map(<[u8]>::to_vec).collect(),
            ..Default::default()
        };
        let batch = |entries| pb::LogStreamBatch { entries };
        let answers = log_batch(
            &h.broker,
            batch(vec![msg(
                7,
                vec![br#"{"time":"t2","type":"response","request":{"id":"r7"}}"#],
            )]),
        )
        .await
        .answers;
        let got: Vec<_> = answers.iter().map(|a| (a.id, a.code, a.recorded)).collect();
        assert_eq!(got, [(7, 0, 1)]);
        assert_eq!(writer_batches(), before.map(|b| b + 1), "one batch");
        let text = std::fs::read_to_string(&file).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 2, "{text}");
        assert!(lines[0].contains(r#""type":"request""#), "{text}");
        assert!(lines[1].contains(r#""type":"response""#), "{text}");
        // A bad following entry refuses its whole message, and only it: the
        // other messages of the batch are written, together.
        let answers = log_batch(
            &h.broker,
            batch(vec![msg(8, vec![b"[1]"]), msg(9, vec![]), msg(10, vec![])]),
        )
        .await
        .answers;
        let got: Vec<_> = answers.iter().map(|a| (a.id, a.code, a.recorded)).collect();
        assert_eq!(
            got,
            [(8, Code::InvalidArgument as i32, 0), (9, 0, 1), (10, 0, 1)]
        );
        assert_eq!(writer_batches(), before.map(|b| b + 2), "one batch");
        let text = std::fs::read_to_string(&file).unwrap();
        assert!(!text.contains(r#""id":"r8""#), "{text}");
        let tail: Vec<&str> = text.lines().skip(2).collect();
        assert_eq!(tail.len(), 2, "{text}");
        assert!(
            tail[0].contains(r#""id":"r9""#) && tail[1].contains(r#""id":"r10""#),
            "{text}"
        );
    }

    #[tokio::test]
    async fn sealed_answers_unavailable_everywhere() {
        let h = harness().await;
        let svc = AuditService::new(h.broker.clone());
        h.broker.keyring().clear();
        let check = |r: Result<(), Status>| {
            let s = r.unwrap_err();
            assert_eq!(
                (s.code(), s.message()),
                (Code::Unavailable, "Vault is sealed")
            );
        };
        check(
            svc.enable_device(Request::new(enable_file("f", "discard")))
                .await
                .map(drop),
        );
        check(
            svc.disable_device(Request::new(pb::DisableDeviceRequest { path: "f".into() }))
                .await
                .map(drop),
        );
        check(svc.list_devices(Request::new(pb::Empty {})).await.map(drop));
        check(
            svc.hash(Request::new(pb::HashRequest {
                path: "f".into(),
                input: "x".into(),
            }))
            .await
            .map(drop),
        );
        check(
            svc.log(Request::new(pb::LogRequest {
                entry: b"{}".to_vec(),
                ..Default::default()
            }))
            .await
            .map(drop),
        );
        check(svc.reopen(Request::new(pb::Empty {})).await.map(drop));
    }
}
