//! The `bulwark.dynamicdb.v1.DynamicDb` gRPC service over [`DbStore`].
//!
//! Every RPC answers UNAVAILABLE "Vault is sealed" while the service holds
//! no data key. Each RPC runs as a task of its own, so a caller that goes
//! away cannot cut a change short between the database and storage (a user
//! created but its lease never returned, a password set but not recorded).
//! Spans carry the mount and names, never passwords.

use std::future::Future;
use std::sync::Arc;

use bulwark_proto::dynamicdb::v1 as pb;
use bulwark_proto::dynamicdb::v1::dynamic_db_server::DynamicDb;
use tonic::{Request, Response, Status};
use tracing::Instrument;

use crate::error::DbError;
use crate::store::DbStore;

/// The dynamic-db service's gRPC handlers.
pub struct DynamicDbService {
    store: Arc<DbStore>,
}

impl DynamicDbService {
    pub fn new(store: Arc<DbStore>) -> Self {
        DynamicDbService { store }
    }

    /// Runs `f` on the store to completion on a task of its own, in the
    /// current span.
    async fn run<T, F, Fut>(&self, f: F) -> Result<Response<T>, Status>
    where
        T: Send + 'static,
        F: FnOnce(Arc<DbStore>) -> Fut,
        Fut: Future<Output = Result<T, DbError>> + Send + 'static,
    {
        self.store.ensure_unsealed().await?;
        let change = f(self.store.clone());
        match tokio::spawn(change.instrument(tracing::Span::current())).await {
            Ok(result) => Ok(Response::new(result?)),
            Err(e) => {
                tracing::error!(error = %e, "dynamic-db task failed");
                Err(Status::internal("internal error"))
            }
        }
    }
}

fn names(names: Vec<String>) -> pb::NamesResponse {
    pb::NamesResponse { names }
}

#[tonic::async_trait]
impl DynamicDb for DynamicDbService {
    #[tracing::instrument(skip_all, fields(mount = %req.get_ref().mount, name = %req.get_ref().name))]
    async fn write_config(
        &self,
        req: Request<pb::WriteConfigRequest>,
    ) -> Result<Response<pb::Empty>, Status> {
        let r = req.into_inner();
        let config = r
            .config
            .ok_or_else(|| Status::invalid_argument("missing config"))?;
        self.run(move |s| async move {
            s.write_config(&r.mount, &r.name, config).await?;
            Ok(pb::Empty {})
        })
        .await
    }

    #[tracing::instrument(skip_all, fields(mount = %req.get_ref().mount, name = %req.get_ref().name))]
    async fn read_config(
        &self,
        req: Request<pb::ItemRequest>,
    ) -> Result<Response<pb::ConnectionConfig>, Status> {
        let r = req.into_inner();
        self.run(move |s| async move { s.read_config(&r.mount, &r.name).await })
            .await
    }

    #[tracing::instrument(skip_all, fields(mount = %req.get_ref().mount, name = %req.get_ref().name))]
    async fn delete_config(
        &self,
        req: Request<pb::ItemRequest>,
    ) -> Result<Response<pb::Empty>, Status> {
        let r = req.into_inner();
        self.run(move |s| async move {
            s.delete_config(&r.mount, &r.name).await?;
            Ok(pb::Empty {})
        })
        .await
    }

    #[tracing::instrument(skip_all, fields(mount = %req.get_ref().mount))]
    async fn list_configs(
        &self,
        req: Request<pb::MountRequest>,
    ) -> Result<Response<pb::NamesResponse>, Status> {
        let r = req.into_inner();
        self.run(move |s| async move { s.list_configs(&r.mount).await.map(names) })
            .await
    }

    #[tracing::instrument(skip_all, fields(mount = %req.get_ref().mount, name = %req.get_ref().name))]
    async fn reset_connection(
        &self,
        req: Request<pb::ItemRequest>,
    ) -> Result<Response<pb::Empty>, Status> {
        let r = req.into_inner();
        self.run(move |s| async move {
            s.reset_connection(&r.mount, &r.name).await?;
            Ok(pb::Empty {})
        })
        .await
    }

    #[tracing::instrument(skip_all, fields(mount = %req.get_ref().mount, name = %req.get_ref().name))]
    async fn rotate_root(
        &self,
        req: Request<pb::ItemRequest>,
    ) -> Result<Response<pb::Empty>, Status> {
        let r = req.into_inner();
        self.run(move |s| async move {
            s.rotate_root(&r.mount, &r.name).await?;
            Ok(pb::Empty {})
        })
        .await
    }

    #[tracing::instrument(skip_all, fields(mount = %req.get_ref().mount))]
    async fn write_role(
        &self,
        req: Request<pb::WriteRoleRequest>,
    ) -> Result<Response<pb::Empty>, Status> {
        let r = req.into_inner();
        let role = r
            .role
            .ok_or_else(|| Status::invalid_argument("missing role"))?;
        self.run(move |s| async move {
            s.write_role(&r.mount, role).await?;
            Ok(pb::Empty {})
        })
        .await
    }

    #[tracing::instrument(skip_all, fields(mount = %req.get_ref().mount, name = %req.get_ref().name))]
    async fn read_role(&self, req: Request<pb::ItemRequest>) -> Result<Response<pb::Role>, Status> {
        let r = req.into_inner();
        self.run(move |s| async move { s.read_role(&r.mount, &r.name).await })
            .await
    }

    #[tracing::instrument(skip_all, fields(mount = %req.get_ref().mount, name = %req.get_ref().name))]
    async fn delete_role(
        &self,
        req: Request<pb::ItemRequest>,
    ) -> Result<Response<pb::Empty>, Status> {
        let r = req.into_inner();
        self.run(move |s| async move {
            s.delete_role(&r.mount, &r.name).await?;
            Ok(pb::Empty {})
        })
        .await
    }

    #[tracing::instrument(skip_all, fields(mount = %req.get_ref().mount))]
    async fn list_roles(
        &self,
        req: Request<pb::MountRequest>,
    ) -> Result<Response<pb::NamesResponse>, Status> {
        let r = req.into_inner();
        self.run(move |s| async move { s.list_roles(&r.mount).await.map(names) })
            .await
    }

    #[tracing::instrument(skip_all, fields(mount = %req.get_ref().mount, role = %req.get_ref().role))]
    async fn create_credentials(
        &self,
        req: Request<pb::CreateCredentialsRequest>,
    ) -> Result<Response<pb::Credentials>, Status> {
        let r = req.into_inner();
        self.run(move |s| async move { s.create_credentials(r).await })
            .await
    }

    #[tracing::instrument(skip_all, fields(mount = %req.get_ref().mount))]
    async fn revoke_credentials(
        &self,
        req: Request<pb::RevokeCredentialsRequest>,
    ) -> Result<Response<pb::Empty>, Status> {
        let r = req.into_inner();
        self.run(move |s| async move {
            s.revoke_credentials(&r.mount, &r.revoke_data).await?;
            Ok(pb::Empty {})
        })
        .await
    }

    #[tracing::instrument(skip_all, fields(mount = %req.get_ref().mount))]
    async fn renew_credentials(
        &self,
        req: Request<pb::RenewCredentialsRequest>,
    ) -> Result<Response<pb::Empty>, Status> {
        let r = req.into_inner();
        self.run(move |s| async move {
            s.renew_credentials(&r.mount, &r.revoke_data, r.expire_time)
                .await?;
            Ok(pb::Empty {})
        })
        .await
    }

    #[tracing::instrument(skip_all, fields(mount = %req.get_ref().mount))]
    async fn write_static_role(
        &self,
        req: Request<pb::WriteStaticRoleRequest>,
    ) -> Result<Response<pb::Empty>, Status> {
        let r = req.into_inner();
        let role = r
            .role
            .ok_or_else(|| Status::invalid_argument("missing role"))?;
        self.run(move |s| async move {
            s.write_static_role(&r.mount, role).await?;
            Ok(pb::Empty {})
        })
        .await
    }

    #[tracing::instrument(skip_all, fields(mount = %req.get_ref().mount, name = %req.get_ref().name))]
    async fn read_static_role(
        &self,
        req: Request<pb::ItemRequest>,
    ) -> Result<Response<pb::StaticRole>, Status> {
        let r = req.into_inner();
        self.run(move |s| async move { s.read_static_role(&r.mount, &r.name).await })
            .await
    }

    #[tracing::instrument(skip_all, fields(mount = %req.get_ref().mount, name = %req.get_ref().name))]
    async fn delete_static_role(
        &self,
        req: Request<pb::ItemRequest>,
    ) -> Result<Response<pb::Empty>, Status> {
        let r = req.into_inner();
        self.run(move |s| async move {
            s.delete_static_role(&r.mount, &r.name).await?;
            Ok(pb::Empty {})
        })
        .await
    }

    #[tracing::instrument(skip_all, fields(mount = %req.get_ref().mount))]
    async fn list_static_roles(
        &self,
        req: Request<pb::MountRequest>,
    ) -> Result<Response<pb::NamesResponse>, Status> {
        let r = req.into_inner();
        self.run(move |s| async move { s.list_static_roles(&r.mount).await.map(names) })
            .await
    }

    #[tracing::instrument(skip_all, fields(mount = %req.get_ref().mount, name = %req.get_ref().name))]
    async fn get_static_credentials(
        &self,
        req: Request<pb::ItemRequest>,
    ) -> Result<Response<pb::StaticCredentials>, Status> {
        let r = req.into_inner();
        self.run(move |s| async move { s.get_static_credentials(&r.mount, &r.name).await })
            .await
    }

    #[tracing::instrument(skip_all, fields(mount = %req.get_ref().mount, name = %req.get_ref().name))]
    async fn rotate_static_role(
        &self,
        req: Request<pb::ItemRequest>,
    ) -> Result<Response<pb::Empty>, Status> {
        let r = req.into_inner();
        self.run(move |s| async move {
            s.rotate_static_role(&r.mount, &r.name).await?;
            Ok(pb::Empty {})
        })
        .await
    }

    #[tracing::instrument(skip_all, fields(mount = %req.get_ref().mount))]
    async fn drop_mount(
        &self,
        req: Request<pb::MountRequest>,
    ) -> Result<Response<pb::Empty>, Status> {
        let r = req.into_inner();
        self.run(move |s| async move {
            s.drop_mount(&r.mount).await?;
            Ok(pb::Empty {})
        })
        .await
    }
}
