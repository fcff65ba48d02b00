//! The kv service: kv v1, kv v2 and cubbyhole mounts (cubbyhole also holds
//! response-wrapping payloads).
//!
//! Not built yet: until then `bulwark server` runs this service as the shared
//! runtime alone (`bulwark_shared::grpc::serve_runtime_only`).
#![forbid(unsafe_code)]
