//! The `bulwark.kv.v1.Kv` gRPC service over [`KvStore`].
//!
//! Every RPC answers UNAVAILABLE "Vault is sealed" while the service holds no
//! data key, before looking at the request. Changes run as tasks of their
//! own, so a caller that goes away mid-request cannot leave a multi-step
//! change (data, then metadata) half done. Spans carry the mount and path,
//! never data.

use std::future::Future;
use std::sync::Arc;

use bulwark_proto::kv::v1 as pb;
use bulwark_proto::kv::v1::kv_server::Kv;
use tonic::{Request, Response, Status};
use tracing::Instrument;

use crate::error::KvError;
use crate::layout::Kind;
use crate::store::KvStore;

/// The kv service's gRPC handlers.
pub struct KvService {
    store: Arc<KvStore>,
}

impl KvService {
    /// Handlers over `store`.
    pub fn new(store: Arc<KvStore>) -> Self {
        KvService { store }
    }

    /// Refuses while sealed.
    async fn unsealed(&self) -> Result<(), Status> {
        Ok(self.store.ensure_unsealed().await?)
    }

    /// Runs a change to completion on a task of its own, in the current span.
    async fn detached<T, F>(&self, change: F) -> Result<T, Status>
    where
        T: Send + 'static,
        F: Future<Output = Result<T, KvError>> + Send + 'static,
    {
        match tokio::spawn(change.instrument(tracing::Span::current())).await {
            Ok(result) => Ok(result?),
            Err(e) => {
                tracing::error!(error = %e, "kv change task failed");
                Err(Status::internal("internal error"))
            }
        }
    }
}

/// The proto mount kind; `KIND_UNSPECIFIED` and unknown values are refused.
fn kind(value: i32) -> Result<Kind, KvError> {
    match pb::Kind::try_from(value) {
        Ok(pb::Kind::KvV1) => Ok(Kind::KvV1),
        Ok(pb::Kind::KvV2) => Ok(Kind::KvV2),
        Ok(pb::Kind::Cubbyhole) => Ok(Kind::Cubbyhole),
        Ok(pb::Kind::Unspecified) | Err(_) => Err(KvError::Invalid("missing mount kind".into())),
    }
}

#[tonic::async_trait]
impl Kv for KvService {
    #[tracing::instrument(skip_all, fields(mount = %req.get_ref().mount, path = %req.get_ref().path))]
    async fn exists(
        &self,
        req: Request<pb::KeyRequest>,
    ) -> Result<Response<pb::ExistsResponse>, Status> {
        self.unsealed().await?;
        let req = req.into_inner();
        let exists = self
            .store
            .exists(kind(req.kind)?, &req.mount, &req.path)
            .await?;
        Ok(Response::new(pb::ExistsResponse { exists }))
    }

    #[tracing::instrument(skip_all, fields(mount = %req.get_ref().mount, path = %req.get_ref().path))]
    async fn get(&self, req: Request<pb::KeyRequest>) -> Result<Response<pb::GetResponse>, Status> {
        self.unsealed().await?;
        let req = req.into_inner();
        let got = self
            .store
            .get(kind(req.kind)?, &req.mount, &req.path)
            .await?;
        Ok(Response::new(get_response(got)))
    }

    #[tracing::instrument(skip_all, fields(mount = %req.get_ref().mount, path = %req.get_ref().path))]
    async fn take(
        &self,
        req: Request<pb::KeyRequest>,
    ) -> Result<Response<pb::GetResponse>, Status> {
        self.unsealed().await?;
        let req = req.into_inner();
        let got = self
            .store
            .take(kind(req.kind)?, &req.mount, &req.path)
            .await?;
        Ok(Response::new(get_response(got)))
    }

    #[tracing::instrument(skip_all, fields(mount = %req.get_ref().mount, path = %req.get_ref().path))]
    async fn put(&self, req: Request<pb::PutRequest>) -> Result<Response<pb::Empty>, Status> {
        self.unsealed().await?;
        let req = req.into_inner();
        let kind = kind(req.kind)?;
        self.store
            .put(kind, &req.mount, &req.path, &req.data)
            .await?;
        Ok(Response::new(pb::Empty {}))
    }

    #[tracing::instrument(skip_all, fields(mount = %req.get_ref().mount, path = %req.get_ref().path))]
    async fn delete(&self, req: Request<pb::KeyRequest>) -> Result<Response<pb::Empty>, Status> {
        self.unsealed().await?;
        let req = req.into_inner();
        self.store
            .delete(kind(req.kind)?, &req.mount, &req.path)
            .await?;
        Ok(Response::new(pb::Empty {}))
    }

    #[tracing::instrument(skip_all, fields(mount = %req.get_ref().mount, path = %req.get_ref().path))]
    async fn list(
        &self,
        req: Request<pb::KeyRequest>,
    ) -> Result<Response<pb::ListResponse>, Status> {
        self.unsealed().await?;
        let req = req.into_inner();
        let keys = self
            .store
            .list(kind(req.kind)?, &req.mount, &req.path)
            .await?;
        Ok(Response::new(pb::ListResponse { keys }))
    }

    #[tracing::instrument(skip_all, fields(mount = %req.get_ref().mount, path = %req.get_ref().path))]
    async fn read_version(
        &self,
        req: Request<pb::ReadVersionRequest>,
    ) -> Result<Response<pb::ReadVersionResponse>, Status> {
        self.unsealed().await?;
        let req = req.into_inner();
        let read = self
            .store
            .read_version(&req.mount, &req.path, req.version)
            .await?;
        Ok(Response::new(read))
    }

    #[tracing::instrument(skip_all, fields(mount = %req.get_ref().mount, path = %req.get_ref().path))]
    async fn write_version(
        &self,
        req: Request<pb::WriteVersionRequest>,
    ) -> Result<Response<pb::VersionMetadata>, Status> {
        self.unsealed().await?;
        let req = req.into_inner();
        let store = self.store.clone();
        let written = self
            .detached(async move {
                store
                    .write_version(&req.mount, &req.path, &req.data, req.cas)
                    .await
            })
            .await?;
        Ok(Response::new(written))
    }

    #[tracing::instrument(skip_all, fields(mount = %req.get_ref().mount, path = %req.get_ref().path))]
    async fn patch_version(
        &self,
        req: Request<pb::WriteVersionRequest>,
    ) -> Result<Response<pb::VersionMetadata>, Status> {
        self.unsealed().await?;
        let req = req.into_inner();
        let store = self.store.clone();
        let written = self
            .detached(async move {
                store
                    .patch_version(&req.mount, &req.path, &req.data, req.cas)
                    .await
            })
            .await?;
        Ok(Response::new(written))
    }

    #[tracing::instrument(skip_all, fields(mount = %req.get_ref().mount, path = %req.get_ref().path))]
    async fn delete_versions(
        &self,
        req: Request<pb::VersionsRequest>,
    ) -> Result<Response<pb::Empty>, Status> {
        self.unsealed().await?;
        let req = req.into_inner();
        self.store
            .delete_versions(&req.mount, &req.path, &req.versions)
            .await?;
        Ok(Response::new(pb::Empty {}))
    }

    #[tracing::instrument(skip_all, fields(mount = %req.get_ref().mount, path = %req.get_ref().path))]
    async fn undelete_versions(
        &self,
        req: Request<pb::VersionsRequest>,
    ) -> Result<Response<pb::Empty>, Status> {
        self.unsealed().await?;
        let req = req.into_inner();
        self.store
            .undelete_versions(&req.mount, &req.path, &req.versions)
            .await?;
        Ok(Response::new(pb::Empty {}))
    }

    #[tracing::instrument(skip_all, fields(mount = %req.get_ref().mount, path = %req.get_ref().path))]
    async fn destroy_versions(
        &self,
        req: Request<pb::VersionsRequest>,
    ) -> Result<Response<pb::Empty>, Status> {
        self.unsealed().await?;
        let req = req.into_inner();
        let store = self.store.clone();
        self.detached(async move {
            store
                .destroy_versions(&req.mount, &req.path, &req.versions)
                .await
        })
        .await?;
        Ok(Response::new(pb::Empty {}))
    }

    #[tracing::instrument(skip_all, fields(mount = %req.get_ref().mount, path = %req.get_ref().path))]
    async fn read_metadata(
        &self,
        req: Request<pb::KeyRequest>,
    ) -> Result<Response<pb::KeyMetadata>, Status> {
        self.unsealed().await?;
        let req = req.into_inner();
        let metadata = self.store.read_metadata(&req.mount, &req.path).await?;
        Ok(Response::new(metadata))
    }

    #[tracing::instrument(skip_all, fields(mount = %req.get_ref().mount, path = %req.get_ref().path))]
    async fn write_metadata(
        &self,
        req: Request<pb::WriteMetadataRequest>,
    ) -> Result<Response<pb::Empty>, Status> {
        self.unsealed().await?;
        let req = req.into_inner();
        let store = self.store.clone();
        self.detached(async move { store.write_metadata(&req).await })
            .await?;
        Ok(Response::new(pb::Empty {}))
    }

    #[tracing::instrument(skip_all, fields(mount = %req.get_ref().mount, path = %req.get_ref().path))]
    async fn delete_metadata(
        &self,
        req: Request<pb::KeyRequest>,
    ) -> Result<Response<pb::Empty>, Status> {
        self.unsealed().await?;
        let req = req.into_inner();
        let store = self.store.clone();
        self.detached(async move { store.delete_metadata(&req.mount, &req.path).await })
            .await?;
        Ok(Response::new(pb::Empty {}))
    }

    #[tracing::instrument(skip_all, fields(mount = %req.get_ref().mount))]
    async fn read_config(
        &self,
        req: Request<pb::MountRequest>,
    ) -> Result<Response<pb::MountConfig>, Status> {
        self.unsealed().await?;
        let config = self.store.read_config(&req.get_ref().mount).await?;
        Ok(Response::new(config))
    }

    #[tracing::instrument(skip_all, fields(mount = %req.get_ref().mount))]
    async fn write_config(
        &self,
        req: Request<pb::WriteConfigRequest>,
    ) -> Result<Response<pb::Empty>, Status> {
        self.unsealed().await?;
        let req = req.into_inner();
        self.store
            .write_config(
                &req.mount,
                req.max_versions,
                req.cas_required,
                req.delete_version_after,
            )
            .await?;
        Ok(Response::new(pb::Empty {}))
    }

    #[tracing::instrument(skip_all, fields(mount = %req.get_ref().mount))]
    async fn drop_mount(
        &self,
        req: Request<pb::MountRequest>,
    ) -> Result<Response<pb::Empty>, Status> {
        self.unsealed().await?;
        let mount = req.into_inner().mount;
        let store = self.store.clone();
        let dropped = self
            .detached(async move { store.drop_mount(&mount).await })
            .await?;
        tracing::info!(entries = dropped, "dropped mount");
        Ok(Response::new(pb::Empty {}))
    }
}

/// A kv v1/cubbyhole entry as `Get` and `Take` answer it.
fn get_response(got: Option<zeroize::Zeroizing<Vec<u8>>>) -> pb::GetResponse {
    match got {
        Some(data) => pb::GetResponse {
            found: true,
            data: data.to_vec(),
        },
        None => pb::GetResponse::default(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_util::harness;
    use tonic::Code;

    fn key(kind: pb::Kind, mount: &str, path: &str) -> Request<pb::KeyRequest> {
        Request::new(pb::KeyRequest {
            mount: mount.into(),
            kind: kind as i32,
            path: path.into(),
        })
    }

    fn write(path: &str, data: &str, cas: Option<u64>) -> Request<pb::WriteVersionRequest> {
        Request::new(pb::WriteVersionRequest {
            mount: "m2".into(),
            path: path.into(),
            data: data.as_bytes().to_vec(),
            cas,
        })
    }

    #[tokio::test]
    async fn flat_rpcs_round_trip() {
        let h = harness().await;
        let svc = KvService::new(h.store.clone());
        for (kind, mount, path, folder) in [
            (pb::Kind::KvV1, "m1", "dir/a", "dir"),
            (pb::Kind::Cubbyhole, "cubbyhole", "acc/dir/a", "acc/dir/"),
        ] {
            svc.put(Request::new(pb::PutRequest {
                mount: mount.into(),
                kind: kind as i32,
                path: path.into(),
                data: br#"{"k":"v"}"#.to_vec(),
            }))
            .await
            .unwrap();
            let got = svc.get(key(kind, mount, path)).await.unwrap().into_inner();
            assert!(got.found);
            assert_eq!(got.data, br#"{"k":"v"}"#);
            assert!(
                svc.exists(key(kind, mount, path))
                    .await
                    .unwrap()
                    .into_inner()
                    .exists
            );
            let keys = svc
                .list(key(kind, mount, folder))
                .await
                .unwrap()
                .into_inner()
                .keys;
            assert_eq!(keys, ["a"]);
            svc.delete(key(kind, mount, path)).await.unwrap();
            let got = svc.get(key(kind, mount, path)).await.unwrap().into_inner();
            assert!(!got.found && got.data.is_empty());
        }
        let e = svc
            .get(key(pb::Kind::Unspecified, "m1", "a"))
            .await
            .unwrap_err();
        assert_eq!(
            (e.code(), e.message()),
            (Code::InvalidArgument, "missing mount kind")
        );
        let e = svc
            .put(Request::new(pb::PutRequest {
                mount: "m1".into(),
                kind: pb::Kind::KvV1 as i32,
                path: "a".into(),
                data: b"{}".to_vec(),
            }))
            .await
            .unwrap_err();
        assert_eq!(
            (e.code(), e.message()),
            (Code::InvalidArgument, "missing data fields")
        );
    }

    #[tokio::test]
    async fn versioned_rpcs_round_trip() {
        let h = harness().await;
        let svc = KvService::new(h.store.clone());
        svc.write_config(Request::new(pb::WriteConfigRequest {
            mount: "m2".into(),
            max_versions: Some(5),
            cas_required: Some(true),
            delete_version_after: None,
        }))
        .await
        .unwrap();
        let config = svc
            .read_config(Request::new(pb::MountRequest { mount: "m2".into() }))
            .await
            .unwrap()
            .into_inner();
        assert_eq!((config.max_versions, config.cas_required), (5, true));

        let e = svc
            .write_version(write("k", r#"{"a":1}"#, None))
            .await
            .unwrap_err();
        assert_eq!(
            (e.code(), e.message()),
            (
                Code::InvalidArgument,
                "check-and-set parameter required for this call"
            )
        );
        let m = svc
            .write_version(write("k", r#"{"a":1}"#, Some(0)))
            .await
            .unwrap()
            .into_inner();
        assert_eq!(m.version, 1);
        let e = svc
            .write_version(write("k", r#"{"a":2}"#, Some(0)))
            .await
            .unwrap_err();
        assert_eq!(
            e.message(),
            "check-and-set parameter did not match the current version"
        );
        let m = svc
            .patch_version(write("k", r#"{"b":2}"#, Some(1)))
            .await
            .unwrap()
            .into_inner();
        assert_eq!(m.version, 2);
        let e = svc
            .patch_version(write("missing", r#"{"b":2}"#, Some(0)))
            .await
            .unwrap_err();
        assert_eq!(e.code(), Code::NotFound);
        let r = svc
            .read_version(Request::new(pb::ReadVersionRequest {
                mount: "m2".into(),
                path: "k".into(),
                version: 0,
            }))
            .await
            .unwrap()
            .into_inner();
        assert!(r.found && !r.deleted);
        assert_eq!(
            serde_json::from_slice::<serde_json::Value>(&r.data).unwrap(),
            serde_json::json!({"a": 1, "b": 2})
        );

        let versions = |versions: Vec<u64>| {
            Request::new(pb::VersionsRequest {
                mount: "m2".into(),
                path: "k".into(),
                versions,
            })
        };
        svc.delete_versions(versions(vec![])).await.unwrap();
        svc.undelete_versions(versions(vec![2])).await.unwrap();
        svc.destroy_versions(versions(vec![1])).await.unwrap();
        let e = svc.destroy_versions(versions(vec![])).await.unwrap_err();
        assert_eq!(
            (e.code(), e.message()),
            (Code::InvalidArgument, "no version number provided")
        );

        svc.write_metadata(Request::new(pb::WriteMetadataRequest {
            mount: "m2".into(),
            path: "k".into(),
            custom_metadata: [("owner".to_string(), "ops".to_string())].into(),
            set_custom_metadata: true,
            ..Default::default()
        }))
        .await
        .unwrap();
        let md = svc
            .read_metadata(key(pb::Kind::KvV2, "m2", "k"))
            .await
            .unwrap()
            .into_inner();
        assert_eq!(md.current_version, 2);
        assert!(md.versions[&1].destroyed);
        assert_eq!(md.versions[&2].deletion_time, 0);
        assert_eq!(md.custom_metadata["owner"], "ops");
        let keys = svc
            .list(key(pb::Kind::KvV2, "m2", ""))
            .await
            .unwrap()
            .into_inner()
            .keys;
        assert_eq!(keys, ["k"]);

        svc.delete_metadata(key(pb::Kind::KvV2, "m2", "k"))
            .await
            .unwrap();
        let e = svc
            .read_metadata(key(pb::Kind::KvV2, "m2", "k"))
            .await
            .unwrap_err();
        assert_eq!(e.code(), Code::NotFound);

        svc.write_version(write("again", r#"{"a":1}"#, Some(0)))
            .await
            .unwrap();
        svc.drop_mount(Request::new(pb::MountRequest { mount: "m2".into() }))
            .await
            .unwrap();
        assert!(crate::test_util::raw_keys(&h.raw).await.is_empty());
    }

    #[tokio::test]
    async fn sealed_answers_unavailable_before_validation() {
        let h = harness().await;
        let svc = KvService::new(h.store.clone());
        h.store.keyring().clear();
        let sealed = |s: Status| {
            assert_eq!(
                (s.code(), s.message()),
                (Code::Unavailable, "Vault is sealed")
            );
        };
        // An invalid kind and an empty path still get "sealed".
        sealed(
            svc.get(key(pb::Kind::Unspecified, "", ""))
                .await
                .unwrap_err(),
        );
        sealed(svc.exists(key(pb::Kind::KvV1, "m", "")).await.unwrap_err());
        sealed(svc.list(key(pb::Kind::KvV2, "m", "")).await.unwrap_err());
        sealed(svc.write_version(write("k", "{}", None)).await.unwrap_err());
        sealed(svc.patch_version(write("k", "{}", None)).await.unwrap_err());
        sealed(
            svc.read_config(Request::new(pb::MountRequest {
                mount: String::new(),
            }))
            .await
            .unwrap_err(),
        );
        sealed(
            svc.write_config(Request::new(pb::WriteConfigRequest::default()))
                .await
                .unwrap_err(),
        );
        sealed(
            svc.drop_mount(Request::new(pb::MountRequest { mount: "m".into() }))
                .await
                .unwrap_err(),
        );
        sealed(
            svc.destroy_versions(Request::new(pb::VersionsRequest::default()))
                .await
                .unwrap_err(),
        );
        sealed(
            svc.write_metadata(Request::new(pb::WriteMetadataRequest::default()))
                .await
                .unwrap_err(),
        );
    }
}
