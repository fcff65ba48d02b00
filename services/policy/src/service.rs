//! The `bulwark.policy.v1.Policy` gRPC service over [`PolicyStore`].

use std::pin::Pin;
use std::sync::Arc;

use bulwark_proto::policy::v1 as pb;
use bulwark_proto::policy::v1::policy_server::Policy;
use futures::{Stream, StreamExt};
use tokio_stream::wrappers::errors::BroadcastStreamRecvError;
use tokio_stream::wrappers::BroadcastStream;
use tonic::{Request, Response, Status};

use crate::acl::Operation;
use crate::error::PolicyError;
use crate::store::PolicyStore;

/// The policy service's gRPC handlers.
pub struct PolicyService {
    store: Arc<PolicyStore>,
}

impl PolicyService {
    /// Handlers over `store`.
    pub fn new(store: Arc<PolicyStore>) -> Self {
        PolicyService { store }
    }
}

/// The proto operation as an ACL operation; `OPERATION_UNSPECIFIED` and
/// unknown values are refused.
fn operation(value: i32) -> Result<Operation, PolicyError> {
    Operation::from_proto(value).ok_or(PolicyError::MissingOperation)
}

type EventStream = Pin<Box<dyn Stream<Item = Result<pb::PolicyEvent, Status>> + Send>>;

#[tonic::async_trait]
impl Policy for PolicyService {
    #[tracing::instrument(skip_all, fields(policy = %req.get_ref().name))]
    async fn put_policy(
        &self,
        req: Request<pb::PutPolicyRequest>,
    ) -> Result<Response<pb::PutPolicyResponse>, Status> {
        let req = req.into_inner();
        self.store.put(&req.name, &req.policy).await?;
        Ok(Response::new(pb::PutPolicyResponse {}))
    }

    #[tracing::instrument(skip_all, fields(policy = %req.get_ref().name))]
    async fn get_policy(
        &self,
        req: Request<pb::GetPolicyRequest>,
    ) -> Result<Response<pb::PolicyDoc>, Status> {
        let name = req.into_inner().name;
        let doc = self
            .store
            .get(&name)
            .await?
            .ok_or_else(|| PolicyError::NotFound(name.trim().to_lowercase()))?;
        Ok(Response::new(pb::PolicyDoc {
            name: doc.name,
            policy: doc.policy,
        }))
    }

    #[tracing::instrument(skip_all)]
    async fn list_policies(
        &self,
        _: Request<pb::ListPoliciesRequest>,
    ) -> Result<Response<pb::ListPoliciesResponse>, Status> {
        let names = self.store.list().await?;
        Ok(Response::new(pb::ListPoliciesResponse { names }))
    }

    #[tracing::instrument(skip_all, fields(policy = %req.get_ref().name))]
    async fn delete_policy(
        &self,
        req: Request<pb::DeletePolicyRequest>,
    ) -> Result<Response<pb::DeletePolicyResponse>, Status> {
        self.store.delete(&req.into_inner().name).await?;
        Ok(Response::new(pb::DeletePolicyResponse {}))
    }

    #[tracing::instrument(skip_all, fields(path = %req.get_ref().path))]
    async fn authorize(
        &self,
        req: Request<pb::AuthorizeRequest>,
    ) -> Result<Response<pb::AuthorizeResponse>, Status> {
        let req = req.into_inner();
        let op = operation(req.operation)?;
        let d = self
            .store
            .authorize(&req.policies, &req.path, op, req.needs_sudo)
            .await?;
        Ok(Response::new(pb::AuthorizeResponse {
            allowed: d.allowed,
            root: d.root,
            capabilities: d.capabilities,
            granting_policies: d.granting_policies,
        }))
    }

    #[tracing::instrument(skip_all)]
    async fn has_access_under(
        &self,
        req: Request<pb::HasAccessUnderRequest>,
    ) -> Result<Response<pb::HasAccessUnderResponse>, Status> {
        let req = req.into_inner();
        let allowed = self
            .store
            .has_access_under(&req.policies, &req.path)
            .await?;
        Ok(Response::new(pb::HasAccessUnderResponse { allowed }))
    }

    #[tracing::instrument(skip_all)]
    async fn capabilities(
        &self,
        req: Request<pb::CapabilitiesRequest>,
    ) -> Result<Response<pb::CapabilitiesResponse>, Status> {
        let req = req.into_inner();
        let paths = self
            .store
            .capabilities(&req.policies, &req.paths)
            .await?
            .into_iter()
            .map(|(path, capabilities)| pb::PathCapabilities { path, capabilities })
            .collect();
        Ok(Response::new(pb::CapabilitiesResponse { paths }))
    }

    type WatchPoliciesStream = EventStream;

    /// The current generation at once, then one event per change. A watcher
    /// too slow to keep up gets the latest generation with an empty name
    /// ("something changed: drop everything").
    async fn watch_policies(
        &self,
        req: Request<pb::WatchPoliciesRequest>,
    ) -> Result<Response<Self::WatchPoliciesStream>, Status> {
        // Sealed: refuse like every other RPC.
        self.store.ensure_unsealed().await?;
        let (generation, rx) = self.store.subscribe();
        let guard = req
            .into_inner()
            .acknowledge
            .then(|| self.store.acks().register(generation));
        let first = pb::PolicyEvent {
            generation,
            name: String::new(),
            watcher_id: guard
                .as_ref()
                .map(|g| g.id().to_string())
                .unwrap_or_default(),
        };
        let store = self.store.clone();
        let changes = BroadcastStream::new(rx).map(move |item| {
            Ok(match item {
                Ok(change) => pb::PolicyEvent {
                    generation: change.generation,
                    name: change.name,
                    watcher_id: String::new(),
                },
                Err(BroadcastStreamRecvError::Lagged(missed)) => {
                    tracing::warn!(missed, "policy watcher lagged; sending a full reset");
                    pb::PolicyEvent {
                        generation: store.generation(),
                        name: String::new(),
                        watcher_id: String::new(),
                    }
                }
            })
        });
        // The watcher stays registered for as long as its stream lives.
        let changes = changes.map(move |e| {
            let _registered = &guard;
            e
        });
        let stream = futures::stream::once(async move { Ok(first) }).chain(changes);
        Ok(Response::new(Box::pin(stream)))
    }

    /// Allowed whenever the stream is.
    async fn ack_policies(
        &self,
        req: Request<pb::AckPoliciesRequest>,
    ) -> Result<Response<pb::AckPoliciesResponse>, Status> {
        let req = req.into_inner();
        self.store.acks().ack(&req.watcher_id, req.generation);
        Ok(Response::new(pb::AckPoliciesResponse {}))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::tests::store;
    use tonic::Code;

    async fn service() -> PolicyService {
        PolicyService::new(Arc::new(store().await))
    }

    #[tokio::test]
    async fn rpcs_round_trip() {
        let svc = service().await;
        svc.put_policy(Request::new(pb::PutPolicyRequest {
            name: "Ops".into(),
            policy: r#"path "secret/*" { capabilities = ["read", "list"] }"#.into(),
        }))
        .await
        .unwrap();
        let doc = svc
            .get_policy(Request::new(pb::GetPolicyRequest { name: "ops".into() }))
            .await
            .unwrap()
            .into_inner();
        assert_eq!(doc.name, "ops");
        let names = svc
            .list_policies(Request::new(pb::ListPoliciesRequest {}))
            .await
            .unwrap()
            .into_inner()
            .names;
        assert_eq!(names, ["default", "ops", "root"]);

        let d = svc
            .authorize(Request::new(pb::AuthorizeRequest {
                policies: vec!["default".into(), "ops".into()],
                path: "secret/x".into(),
                operation: pb::Operation::Read as i32,
                needs_sudo: false,
            }))
            .await
            .unwrap()
            .into_inner();
        assert!(d.allowed && !d.root);
        assert_eq!(d.capabilities, ["list", "read"]);
        assert_eq!(d.granting_policies, ["ops"]);

        let caps = svc
            .capabilities(Request::new(pb::CapabilitiesRequest {
                policies: vec!["ops".into()],
                paths: vec!["secret/x".into(), "other".into()],
            }))
            .await
            .unwrap()
            .into_inner()
            .paths;
        assert_eq!(caps.len(), 2);
        assert_eq!(
            (caps[0].path.as_str(), caps[0].capabilities.clone()),
            ("secret/x", vec!["list".to_string(), "read".to_string()])
        );
        assert_eq!(caps[1].capabilities, ["deny"]);

        svc.delete_policy(Request::new(pb::DeletePolicyRequest { name: "ops".into() }))
            .await
            .unwrap();
        let missing = svc
            .get_policy(Request::new(pb::GetPolicyRequest { name: "ops".into() }))
            .await
            .unwrap_err();
        assert_eq!(missing.code(), Code::NotFound);
    }

    #[tokio::test]
    async fn errors_map_to_status_codes() {
        let svc = service().await;
        let put = |name: &str, policy: &str| {
            svc.put_policy(Request::new(pb::PutPolicyRequest {
                name: name.into(),
                policy: policy.into(),
            }))
        };
        let e = put("p", "path \"a\" {\n capabilities = [\"read\"\n}")
            .await
            .unwrap_err();
        assert_eq!(e.code(), Code::InvalidArgument);
        assert!(
            e.message().contains("line") && e.message().contains("column"),
            "{}",
            e.message()
        );
        assert_eq!(
            put("root", "").await.unwrap_err().code(),
            Code::InvalidArgument
        );
        for name in ["root", "default"] {
            let e = svc
                .delete_policy(Request::new(pb::DeletePolicyRequest { name: name.into() }))
                .await
                .unwrap_err();
            assert_eq!(e.code(), Code::InvalidArgument, "{name}");
        }
        let e = svc
            .authorize(Request::new(pb::AuthorizeRequest {
                policies: vec!["root".into()],
                path: "x".into(),
                operation: pb::Operation::Unspecified as i32,
                needs_sudo: false,
            }))
            .await
            .unwrap_err();
        assert_eq!(e.code(), Code::InvalidArgument);
    }

    #[tokio::test]
    async fn sealed_answers_unavailable() {
        let store = Arc::new(store().await);
        let svc = PolicyService::new(store.clone());
        store.keyring().clear();
        let e = svc
            .list_policies(Request::new(pb::ListPoliciesRequest {}))
            .await
            .unwrap_err();
        assert_eq!(
            (e.code(), e.message()),
            (Code::Unavailable, "Vault is sealed")
        );
        let e = svc
            .authorize(Request::new(pb::AuthorizeRequest {
                policies: vec!["root".into()],
                path: "x".into(),
                operation: pb::Operation::Read as i32,
                needs_sudo: false,
            }))
            .await
            .unwrap_err();
        assert_eq!(e.code(), Code::Unavailable);
        let e = svc
            .watch_policies(Request::new(pb::WatchPoliciesRequest::default()))
            .await
            .err()
            .unwrap();
        assert_eq!(e.code(), Code::Unavailable);
    }

    #[tokio::test]
    async fn watch_sends_the_generation_then_each_change() {
        let svc = service().await;
        let mut events = svc
            .watch_policies(Request::new(pb::WatchPoliciesRequest::default()))
            .await
            .unwrap()
            .into_inner();
        let first = events.next().await.unwrap().unwrap();
        assert!(first.name.is_empty());
        for name in ["a", "b"] {
            svc.put_policy(Request::new(pb::PutPolicyRequest {
                name: name.into(),
                policy: String::new(),
            }))
            .await
            .unwrap();
        }
        let a = events.next().await.unwrap().unwrap();
        let b = events.next().await.unwrap().unwrap();
        assert_eq!((a.generation, a.name.as_str()), (first.generation + 1, "a"));
        assert_eq!((b.generation, b.name.as_str()), (first.generation + 2, "b"));
    }
}
