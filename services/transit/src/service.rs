//! The `bulwark.transit.v1.Transit` gRPC service over [`TransitStore`].
//!
//! Every RPC answers UNAVAILABLE "Vault is sealed" while the service holds
//! no data key, and runs as a task of its own so a caller that goes away
//! cannot leave a change half done. Work that may be slow (RSA, large
//! batches) runs on the blocking pool. Spans carry the mount, the key name
//! and item counts, never data or keys.

use std::future::Future;
use std::sync::Arc;

use bulwark_proto::transit::v1 as pb;
use bulwark_proto::transit::v1::transit_server::Transit;
use rand::rngs::OsRng;
use rand::RngCore;
use tonic::{Request, Response, Status};
use tracing::Instrument;

use crate::crypto::{self, HashAlg, SigOptions};
use crate::error::TransitError;
use crate::keys::{KeyOptions, KeyRecord, KeyType};
use crate::ops;
use crate::store::TransitStore;

/// Batches larger than this go to the blocking pool.
const INLINE_ITEMS: usize = 16;
/// The most random bytes one request may ask for (Vault's limit).
const MAX_RANDOM_BYTES: u32 = 128 * 1024;

/// The transit service's gRPC handlers.
pub struct TransitService {
    store: Arc<TransitStore>,
}

impl TransitService {
    /// Handlers over `store`.
    pub fn new(store: Arc<TransitStore>) -> Self {
        TransitService { store }
    }

    /// Refuses while sealed, then runs `work` on a task of its own.
    async fn run<T, F, Fut>(&self, work: F) -> Result<Response<T>, Status>
    where
        T: Send + 'static,
        F: FnOnce(Arc<TransitStore>) -> Fut,
        Fut: Future<Output = Result<T, TransitError>> + Send + 'static,
    {
        self.store.ensure_unsealed().await?;
        let fut = work(self.store.clone());
        match tokio::spawn(fut.instrument(tracing::Span::current())).await {
            Ok(result) => Ok(Response::new(result?)),
            Err(e) => {
                tracing::error!(error = %e, "transit task failed");
                Err(Status::internal("internal error"))
            }
        }
    }
}

/// Runs `f` over a loaded key: on the blocking pool when it may be slow
/// (RSA keys, large batches), inline otherwise.
async fn compute<T, F>(
    record: KeyRecord,
    items: usize,
    op: &'static str,
    f: F,
) -> Result<T, TransitError>
where
    T: Send + 'static,
    F: FnOnce(&KeyRecord) -> T + Send + 'static,
{
    let span = tracing::debug_span!(
        "crypto.transit",
        op,
        key_type = record.key_type.as_str(),
        items
    );
    if record.key_type.rsa_bits().is_some() || items > INLINE_ITEMS {
        tokio::task::spawn_blocking(move || span.in_scope(|| f(&record)))
            .await
            .map_err(|e| TransitError::Crypto(e.to_string()))
    } else {
        Ok(span.in_scope(|| f(&record)))
    }
}

fn key_info(record: &KeyRecord, context: &[u8]) -> Result<pb::KeyInfoResponse, TransitError> {
    Ok(pb::KeyInfoResponse {
        found: true,
        key: Some(record.info(context)?),
        created: false,
        warnings: vec![],
    })
}

fn cipher_result(r: Result<(String, u32), TransitError>) -> pb::CipherResult {
    match r {
        Ok((ciphertext, key_version)) => pb::CipherResult {
            ciphertext,
            key_version,
            ..Default::default()
        },
        Err(e) => pb::CipherResult {
            error: e.item_message(),
            internal: !e.is_user_error(),
            ..Default::default()
        },
    }
}

/// The upserted key's options (Vault: derived when a context was given).
fn upsert_options(u: &pb::Upsert) -> Result<(KeyType, KeyOptions), TransitError> {
    let kt = KeyType::parse(&u.r#type)?;
    if !kt.supports_encryption() {
        return Err(TransitError::invalid(format!(
            "key type {} does not support encryption",
            kt.as_str()
        )));
    }
    Ok((
        kt,
        KeyOptions {
            derived: u.derived,
            convergent_encryption: u.convergent_encryption,
            ..Default::default()
        },
    ))
}

/// The text of one exported version (`kind` already checked).
fn export_text(
    record: &KeyRecord,
    kind: &str,
    version: &crate::keys::KeyVersion,
) -> Result<String, TransitError> {
    use base64::engine::general_purpose::STANDARD;
    use base64::Engine as _;
    Ok(match kind {
        "hmac-key" if record.key_type == KeyType::Hmac => STANDARD.encode(&version.key),
        "hmac-key" => STANDARD.encode(&version.hmac_key),
        "public-key" => crypto::public_key_text(record, version, &[])?,
        _ => crypto::private_key_text(record.key_type, version)?.to_string(),
    })
}

fn export(
    record: &KeyRecord,
    kind: &str,
    which: &str,
) -> Result<pb::ExportKeyResponse, TransitError> {
    let kt = record.key_type;
    let allowed = match kind {
        "encryption-key" => kt.supports_encryption(),
        "signing-key" => kt.supports_signing(),
        "hmac-key" => true,
        "public-key" => kt.is_asymmetric(),
        other => {
            return Err(TransitError::invalid(format!(
                "invalid export type {other:?}: use encryption-key, signing-key, hmac-key or public-key"
            )))
        }
    };
    if !allowed {
        return Err(TransitError::invalid(format!(
            "{kind} is not supported for keys of type {}",
            kt.as_str()
        )));
    }
    if kind != "public-key" && !record.exportable {
        return Err(TransitError::invalid(
            "private key material is not exportable",
        ));
    }
    let versions: Vec<u32> = match which {
        "" => record
            .versions
            .keys()
            .copied()
            .filter(|v| *v >= record.min_decryption_version)
            .collect(),
        "latest" => vec![record.latest_version],
        n => {
            let v: u32 = n
                .parse()
                .map_err(|_| TransitError::invalid(format!("invalid version {n:?}")))?;
            if v < record.min_decryption_version || record.version(v).is_none() {
                return Err(TransitError::invalid(format!(
                    "version {v} is not available for export"
                )));
            }
            vec![v]
        }
    };
    let mut keys = Vec::with_capacity(versions.len());
    for v in versions {
        if let Some(material) = record.version(v) {
            keys.push(pb::ExportedKey {
                version: v,
                key: export_text(record, kind, material)?,
            });
        }
    }
    Ok(pb::ExportKeyResponse {
        name: record.name.clone(),
        r#type: kt.as_str().to_string(),
        keys,
    })
}

fn verify_item(
    record: &KeyRecord,
    o: &SigOptions,
    hmac_alg: &Result<HashAlg, TransitError>,
    it: &pb::VerifyItem,
) -> Result<bool, TransitError> {
    match (it.signature.is_empty(), it.hmac.is_empty()) {
        (false, false) => Err(TransitError::invalid(
            "provide either a signature or an hmac, not both",
        )),
        (true, true) => Err(TransitError::invalid("missing signature or hmac to verify")),
        (true, false) => {
            let alg = hmac_alg
                .as_ref()
                .map_err(|e| TransitError::invalid(e.to_string()))?;
            ops::verify_hmac(record, *alg, &it.input, &it.hmac)
        }
        (false, true) => ops::verify_signature(record, o, &it.input, &it.context, &it.signature),
    }
}

#[tonic::async_trait]
impl Transit for TransitService {
    #[tracing::instrument(skip_all, fields(mount = %req.get_ref().mount, key = %req.get_ref().name))]
    async fn create_key(
        &self,
        req: Request<pb::CreateKeyRequest>,
    ) -> Result<Response<pb::KeyInfoResponse>, Status> {
        let req = req.into_inner();
        self.run(|s| async move {
            let kt = KeyType::parse(&req.r#type)?;
            let opts = KeyOptions {
                derived: req.derived,
                convergent_encryption: req.convergent_encryption,
                exportable: req.exportable,
                allow_plaintext_backup: req.allow_plaintext_backup,
                auto_rotate_period: req.auto_rotate_period,
                key_size: req.key_size,
            };
            let (record, created) = s.create(&req.mount, &req.name, kt, &opts).await?;
            let mut resp = key_info(&record, &[])?;
            resp.created = created;
            if !created {
                resp.warnings
                    .push(format!("key {} already existed", req.name));
            }
            Ok(resp)
        })
        .await
    }

    #[tracing::instrument(skip_all, fields(mount = %req.get_ref().mount, key = %req.get_ref().name))]
    async fn read_key(
        &self,
        req: Request<pb::ReadKeyRequest>,
    ) -> Result<Response<pb::KeyInfoResponse>, Status> {
        let req = req.into_inner();
        self.run(|s| async move {
            match s.load(&req.mount, &req.name).await? {
                Some(r) => key_info(&r, &req.context),
                None => Ok(pb::KeyInfoResponse::default()),
            }
        })
        .await
    }

    #[tracing::instrument(skip_all, fields(mount = %req.get_ref().mount))]
    async fn list_keys(
        &self,
        req: Request<pb::MountRequest>,
    ) -> Result<Response<pb::ListResponse>, Status> {
        let req = req.into_inner();
        self.run(|s| async move {
            Ok(pb::ListResponse {
                keys: s.list(&req.mount).await?,
            })
        })
        .await
    }

    #[tracing::instrument(skip_all, fields(mount = %req.get_ref().mount, key = %req.get_ref().name))]
    async fn delete_key(
        &self,
        req: Request<pb::KeyRequest>,
    ) -> Result<Response<pb::Empty>, Status> {
        let req = req.into_inner();
        self.run(|s| async move {
            s.delete(&req.mount, &req.name).await?;
            Ok(pb::Empty {})
        })
        .await
    }

    #[tracing::instrument(skip_all, fields(mount = %req.get_ref().mount, key = %req.get_ref().name))]
    async fn configure_key(
        &self,
        req: Request<pb::ConfigureKeyRequest>,
    ) -> Result<Response<pb::KeyInfoResponse>, Status> {
        let req = req.into_inner();
        self.run(|s| async move {
            let (record, warnings) = s.configure(&req.mount, &req.name, &req).await?;
            let mut resp = key_info(&record, &[])?;
            resp.warnings = warnings;
            Ok(resp)
        })
        .await
    }

    #[tracing::instrument(skip_all, fields(mount = %req.get_ref().mount, key = %req.get_ref().name))]
    async fn rotate_key(
        &self,
        req: Request<pb::KeyRequest>,
    ) -> Result<Response<pb::KeyInfoResponse>, Status> {
        let req = req.into_inner();
        self.run(|s| async move { key_info(&s.rotate(&req.mount, &req.name).await?, &[]) })
            .await
    }

    #[tracing::instrument(skip_all, fields(mount = %req.get_ref().mount, key = %req.get_ref().name))]
    async fn trim_key(
        &self,
        req: Request<pb::TrimKeyRequest>,
    ) -> Result<Response<pb::KeyInfoResponse>, Status> {
        let req = req.into_inner();
        self.run(|s| async move {
            key_info(
                &s.trim(&req.mount, &req.name, req.min_available_version)
                    .await?,
                &[],
            )
        })
        .await
    }

    #[tracing::instrument(skip_all, fields(mount = %req.get_ref().mount, key = %req.get_ref().name, items = req.get_ref().items.len()))]
    async fn encrypt(
        &self,
        req: Request<pb::EncryptRequest>,
    ) -> Result<Response<pb::EncryptResponse>, Status> {
        let req = req.into_inner();
        self.run(|s| async move {
            let (record, upserted) = match s.load(&req.mount, &req.name).await? {
                Some(r) => (r, false),
                None => match req.upsert.as_ref().filter(|u| u.allowed) {
                    Some(u) => {
                        let (kt, opts) = upsert_options(u)?;
                        s.create(&req.mount, &req.name, kt, &opts).await?
                    }
                    None => return Err(TransitError::NotFound("encryption key not found".into())),
                },
            };
            ops::require(&record, record.key_type.supports_encryption(), "encryption")?;
            let version = req.key_version;
            let items = req.items;
            let results = compute(record, items.len(), "encrypt", move |r| {
                items
                    .iter()
                    .map(|it| {
                        let v = if it.key_version != 0 {
                            it.key_version
                        } else {
                            version
                        };
                        cipher_result(ops::encrypt(
                            r,
                            v,
                            &it.plaintext,
                            &it.context,
                            &it.nonce,
                            &it.associated_data,
                        ))
                    })
                    .collect()
            })
            .await?;
            Ok(pb::EncryptResponse { results, upserted })
        })
        .await
    }

    #[tracing::instrument(skip_all, fields(mount = %req.get_ref().mount, key = %req.get_ref().name, items = req.get_ref().items.len()))]
    async fn decrypt(
        &self,
        req: Request<pb::DecryptRequest>,
    ) -> Result<Response<pb::DecryptResponse>, Status> {
        let req = req.into_inner();
        self.run(|s| async move {
            let record = s.require(&req.mount, &req.name).await?;
            ops::require(&record, record.key_type.supports_encryption(), "decryption")?;
            let items = req.items;
            let results = compute(record, items.len(), "decrypt", move |r| {
                items
                    .iter()
                    .map(|it| {
                        match ops::decrypt(r, &it.ciphertext, &it.context, &it.associated_data) {
                            Ok((plain, _)) => pb::PlainResult {
                                plaintext: plain.to_vec(),
                                ..Default::default()
                            },
                            Err(e) => pb::PlainResult {
                                error: e.item_message(),
                                internal: !e.is_user_error(),
                                ..Default::default()
                            },
                        }
                    })
                    .collect()
            })
            .await?;
            Ok(pb::DecryptResponse { results })
        })
        .await
    }

    #[tracing::instrument(skip_all, fields(mount = %req.get_ref().mount, key = %req.get_ref().name, items = req.get_ref().items.len()))]
    async fn rewrap(
        &self,
        req: Request<pb::RewrapRequest>,
    ) -> Result<Response<pb::EncryptResponse>, Status> {
        let req = req.into_inner();
        self.run(|s| async move {
            let record = s.require(&req.mount, &req.name).await?;
            ops::require(&record, record.key_type.supports_encryption(), "encryption")?;
            let version = req.key_version;
            let items = req.items;
            let results = compute(record, items.len(), "rewrap", move |r| {
                items
                    .iter()
                    .map(|it| {
                        cipher_result(
                            ops::decrypt(r, &it.ciphertext, &it.context, &it.associated_data)
                                .and_then(|(plain, _)| {
                                    ops::encrypt(
                                        r,
                                        version,
                                        &plain,
                                        &it.context,
                                        &[],
                                        &it.associated_data,
                                    )
                                }),
                        )
                    })
                    .collect()
            })
            .await?;
            Ok(pb::EncryptResponse {
                results,
                upserted: false,
            })
        })
        .await
    }

    #[tracing::instrument(skip_all, fields(mount = %req.get_ref().mount, key = %req.get_ref().name))]
    async fn generate_data_key(
        &self,
        req: Request<pb::DataKeyRequest>,
    ) -> Result<Response<pb::DataKeyResponse>, Status> {
        let req = req.into_inner();
        self.run(|s| async move {
            let record = s.require(&req.mount, &req.name).await?;
            ops::require(&record, record.key_type.supports_encryption(), "encryption")?;
            ops::data_key_len(req.bits)?;
            let (key, ciphertext, key_version) = compute(record, 1, "datakey", move |r| {
                ops::data_key(r, req.bits, &req.context, &req.nonce, &req.associated_data)
            })
            .await??;
            Ok(pb::DataKeyResponse {
                ciphertext,
                key_version,
                plaintext: if req.with_plaintext {
                    key.to_vec()
                } else {
                    Vec::new()
                },
            })
        })
        .await
    }

    #[tracing::instrument(skip_all, fields(mount = %req.get_ref().mount, key = %req.get_ref().name, items = req.get_ref().inputs.len()))]
    async fn hmac(
        &self,
        req: Request<pb::HmacRequest>,
    ) -> Result<Response<pb::HmacResponse>, Status> {
        let req = req.into_inner();
        self.run(|s| async move {
            let alg = HashAlg::parse_digest(&req.algorithm)?;
            let record = s.require(&req.mount, &req.name).await?;
            let version = req.key_version;
            let inputs = req.inputs;
            let results = compute(record, inputs.len(), "hmac", move |r| {
                inputs
                    .iter()
                    .map(|input| match ops::hmac(r, version, alg, input) {
                        Ok((hmac, key_version)) => pb::HmacResult {
                            hmac,
                            key_version,
                            ..Default::default()
                        },
                        Err(e) => pb::HmacResult {
                            error: e.item_message(),
                            internal: !e.is_user_error(),
                            ..Default::default()
                        },
                    })
                    .collect()
            })
            .await?;
            Ok(pb::HmacResponse { results })
        })
        .await
    }

    #[tracing::instrument(skip_all, fields(mount = %req.get_ref().mount, key = %req.get_ref().name, items = req.get_ref().items.len()))]
    async fn sign(
        &self,
        req: Request<pb::SignRequest>,
    ) -> Result<Response<pb::SignResponse>, Status> {
        let req = req.into_inner();
        self.run(|s| async move {
            let o = SigOptions::parse(&req.options.unwrap_or_default())?;
            let record = s.require(&req.mount, &req.name).await?;
            ops::require(&record, record.key_type.supports_signing(), "signing")?;
            let version = req.key_version;
            let items = req.items;
            let results = compute(record, items.len(), "sign", move |r| {
                items
                    .iter()
                    .map(
                        |it| match ops::sign(r, version, &o, &it.input, &it.context) {
                            Ok((signature, key_version, public_key)) => pb::SignResult {
                                signature,
                                key_version,
                                public_key,
                                ..Default::default()
                            },
                            Err(e) => pb::SignResult {
                                error: e.item_message(),
                                internal: !e.is_user_error(),
                                ..Default::default()
                            },
                        },
                    )
                    .collect()
            })
            .await?;
            Ok(pb::SignResponse { results })
        })
        .await
    }

    #[tracing::instrument(skip_all, fields(mount = %req.get_ref().mount, key = %req.get_ref().name, items = req.get_ref().items.len()))]
    async fn verify(
        &self,
        req: Request<pb::VerifyRequest>,
    ) -> Result<Response<pb::VerifyResponse>, Status> {
        let req = req.into_inner();
        self.run(|s| async move {
            let options = req.options.unwrap_or_default();
            let o = SigOptions::parse(&options)?;
            let hmac_alg = HashAlg::parse_digest(&options.hash_algorithm);
            let record = s.require(&req.mount, &req.name).await?;
            let items = req.items;
            let results = compute(record, items.len(), "verify", move |r| {
                items
                    .iter()
                    .map(|it| match verify_item(r, &o, &hmac_alg, it) {
                        Ok(valid) => pb::VerifyResult {
                            valid,
                            ..Default::default()
                        },
                        Err(e) => pb::VerifyResult {
                            error: e.item_message(),
                            internal: !e.is_user_error(),
                            ..Default::default()
                        },
                    })
                    .collect()
            })
            .await?;
            Ok(pb::VerifyResponse { results })
        })
        .await
    }

    #[tracing::instrument(skip_all)]
    async fn hash(
        &self,
        req: Request<pb::HashRequest>,
    ) -> Result<Response<pb::HashResponse>, Status> {
        let req = req.into_inner();
        self.run(|_| async move {
            let alg = HashAlg::parse_digest(&req.algorithm)?;
            Ok(pb::HashResponse {
                sum: alg.digest(&req.input),
            })
        })
        .await
    }

    #[tracing::instrument(skip_all)]
    async fn random(
        &self,
        req: Request<pb::RandomRequest>,
    ) -> Result<Response<pb::RandomResponse>, Status> {
        let req = req.into_inner();
        self.run(|_| async move {
            let n = if req.bytes == 0 { 32 } else { req.bytes };
            if n > MAX_RANDOM_BYTES {
                return Err(TransitError::invalid(format!(
                    "exceeded maximum allowed number of bytes ({MAX_RANDOM_BYTES})"
                )));
            }
            let mut random = vec![0u8; n as usize];
            OsRng.fill_bytes(&mut random);
            Ok(pb::RandomResponse { random })
        })
        .await
    }

    #[tracing::instrument(skip_all, fields(mount = %req.get_ref().mount, key = %req.get_ref().name))]
    async fn export_key(
        &self,
        req: Request<pb::ExportKeyRequest>,
    ) -> Result<Response<pb::ExportKeyResponse>, Status> {
        let req = req.into_inner();
        self.run(|s| async move {
            let record = s.require(&req.mount, &req.name).await?;
            compute(record, 1, "export", move |r| {
                export(r, &req.key_type, &req.version)
            })
            .await?
        })
        .await
    }

    #[tracing::instrument(skip_all, fields(mount = %req.get_ref().mount, key = %req.get_ref().name))]
    async fn backup_key(
        &self,
        req: Request<pb::KeyRequest>,
    ) -> Result<Response<pb::BackupKeyResponse>, Status> {
        let req = req.into_inner();
        self.run(|s| async move {
            Ok(pb::BackupKeyResponse {
                backup: s.backup(&req.mount, &req.name).await?.to_string(),
            })
        })
        .await
    }

    #[tracing::instrument(skip_all, fields(mount = %req.get_ref().mount, key = %req.get_ref().name))]
    async fn restore_key(
        &self,
        req: Request<pb::RestoreKeyRequest>,
    ) -> Result<Response<pb::KeyInfoResponse>, Status> {
        let req = req.into_inner();
        self.run(|s| async move {
            let record = s
                .restore(&req.mount, &req.name, &req.backup, req.force)
                .await?;
            compute(record, 1, "restore", |r| key_info(r, &[])).await?
        })
        .await
    }

    #[tracing::instrument(skip_all, fields(mount = %req.get_ref().mount))]
    async fn read_cache_config(
        &self,
        req: Request<pb::MountRequest>,
    ) -> Result<Response<pb::CacheConfig>, Status> {
        let req = req.into_inner();
        self.run(|s| async move {
            Ok(pb::CacheConfig {
                size: s.read_cache_config(&req.mount).await?.size,
            })
        })
        .await
    }

    #[tracing::instrument(skip_all, fields(mount = %req.get_ref().mount))]
    async fn write_cache_config(
        &self,
        req: Request<pb::WriteCacheConfigRequest>,
    ) -> Result<Response<pb::CacheConfig>, Status> {
        let req = req.into_inner();
        self.run(|s| async move {
            Ok(pb::CacheConfig {
                size: s.write_cache_config(&req.mount, req.size).await?.size,
            })
        })
        .await
    }

    #[tracing::instrument(skip_all, fields(mount = %req.get_ref().mount))]
    async fn drop_mount(
        &self,
        req: Request<pb::MountRequest>,
    ) -> Result<Response<pb::Empty>, Status> {
        let req = req.into_inner();
        self.run(|s| async move {
            s.drop_mount(&req.mount).await?;
            Ok(pb::Empty {})
        })
        .await
    }
}
