//! The auth service: the token store (tokens, accessors, parent/child tree,
//! TTLs), the auth methods (token, userpass, AppRole, cert) and the lease
//! registry with its expiration manager.
//!
//! Not built yet: until then `bulwark server` runs this service as the shared
//! runtime alone (`bulwark_shared::grpc::serve_runtime_only`): mTLS, health,
//! and its data key fetched from seal on unseal and zeroized on seal.
#![forbid(unsafe_code)]
