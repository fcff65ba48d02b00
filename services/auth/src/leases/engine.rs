//! The engines that end or extend a lease's secret, behind [`LeaseEngine`];
//! [`Engines`] is the one place an engine name maps to its implementation.

use std::sync::Arc;
use std::time::Duration;

use bulwark_proto::dynamicdb::v1::dynamic_db_client::DynamicDbClient;
use bulwark_proto::dynamicdb::v1::{RenewCredentialsRequest, RevokeCredentialsRequest};
use bulwark_shared::grpc::Channel;
use futures::future::BoxFuture;
use tonic::Status;

/// The engine name of the dynamic-db service's leases.
pub const DYNAMIC_DB: &str = "dynamic-db";

/// How long one engine call may take.
pub const ENGINE_CALL_TIMEOUT: Duration = Duration::from_secs(30);

/// Revokes or renews the secret behind a lease. `mount` is the engine
/// mount's UUID and `data` the opaque bytes the engine gave at issue.
/// Implementations must not put `data` in an error.
pub trait LeaseEngine: Send + Sync + 'static {
    fn revoke<'a>(&'a self, mount: &'a str, data: &'a [u8]) -> BoxFuture<'a, Result<(), Status>>;
    /// `expire_time`: the lease's new expiry (Unix seconds).
    fn renew<'a>(
        &'a self,
        mount: &'a str,
        data: &'a [u8],
        expire_time: i64,
    ) -> BoxFuture<'a, Result<(), Status>>;
}

/// Every engine that can own leases, by name.
#[derive(Clone)]
pub struct Engines {
    dynamic_db: Arc<dyn LeaseEngine>,
}

impl Engines {
    pub fn new(dynamic_db: Arc<dyn LeaseEngine>) -> Self {
        Engines { dynamic_db }
    }

    /// The real engines: gRPC clients over these channels.
    pub fn grpc(dynamic_db: Channel) -> Self {
        Engines::new(Arc::new(DynamicDbClient::new(dynamic_db)))
    }

    /// The engine called `name` (as given at registration).
    pub fn get(&self, name: &str) -> Option<&dyn LeaseEngine> {
        match name {
            DYNAMIC_DB => Some(self.dynamic_db.as_ref()),
            _ => None,
        }
    }
}

fn timed_out(what: &str) -> Status {
    Status::unavailable(format!("{what} timed out"))
}

impl LeaseEngine for DynamicDbClient<Channel> {
    fn revoke<'a>(&'a self, mount: &'a str, data: &'a [u8]) -> BoxFuture<'a, Result<(), Status>> {
        let mut client = self.clone();
        Box::pin(async move {
            let req = RevokeCredentialsRequest {
                mount: mount.to_string(),
                revoke_data: data.to_vec(),
            };
            tokio::time::timeout(ENGINE_CALL_TIMEOUT, client.revoke_credentials(req))
                .await
                .map_err(|_| timed_out("dynamic-db RevokeCredentials"))??;
            Ok(())
        })
    }

    fn renew<'a>(
        &'a self,
        mount: &'a str,
        data: &'a [u8],
        expire_time: i64,
    ) -> BoxFuture<'a, Result<(), Status>> {
        let mut client = self.clone();
        Box::pin(async move {
            let req = RenewCredentialsRequest {
                mount: mount.to_string(),
                revoke_data: data.to_vec(),
                expire_time,
            };
            tokio::time::timeout(ENGINE_CALL_TIMEOUT, client.renew_credentials(req))
                .await
                .map_err(|_| timed_out("dynamic-db RenewCredentials"))??;
            Ok(())
        })
    }
}

#[cfg(test)]
pub(crate) mod test_engine {
    //! An engine for tests: records calls, fails on demand.

    use super::*;
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
    use std::sync::Mutex;

    #[derive(Default)]
    pub(crate) struct TestEngine {
        pub down: AtomicBool,
        pub revoke_calls: AtomicUsize,
        pub revoked: Mutex<Vec<Vec<u8>>>,
        pub renewed: Mutex<Vec<(Vec<u8>, i64)>>,
    }

    impl TestEngine {
        pub fn set_down(&self, down: bool) {
            self.down.store(down, Ordering::SeqCst);
        }

        pub fn revoked(&self) -> Vec<Vec<u8>> {
            self.revoked.lock().unwrap().clone()
        }

        pub fn calls(&self) -> usize {
            self.revoke_calls.load(Ordering::SeqCst)
        }

        fn check(&self) -> Result<(), Status> {
            if self.down.load(Ordering::SeqCst) {
                Err(Status::unavailable("database unreachable"))
            } else {
                Ok(())
            }
        }
    }

    impl LeaseEngine for TestEngine {
        fn revoke<'a>(
            &'a self,
            _mount: &'a str,
            data: &'a [u8],
        ) -> BoxFuture<'a, Result<(), Status>> {
            Box::pin(async move {
                self.revoke_calls.fetch_add(1, Ordering::SeqCst);
                self.check()?;
                self.revoked.lock().unwrap().push(data.to_vec());
                Ok(())
            })
        }

        fn renew<'a>(
            &'a self,
            _mount: &'a str,
            data: &'a [u8],
            expire_time: i64,
        ) -> BoxFuture<'a, Result<(), Status>> {
            Box::pin(async move {
                self.check()?;
                self.renewed
                    .lock()
                    .unwrap()
                    .push((data.to_vec(), expire_time));
                Ok(())
            })
        }
    }

    #[test]
    fn engines_map_names() {
        let engine = Arc::new(TestEngine::default());
        let engines = Engines::new(engine);
        assert!(engines.get(DYNAMIC_DB).is_some());
        assert!(engines.get("kv").is_none());
        assert!(engines.get("").is_none());
    }
}
