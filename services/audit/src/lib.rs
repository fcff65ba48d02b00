//! The audit service: audit devices (file, socket, syslog), HMAC of sensitive
//! fields with a per-device salt, fail-closed logging of every request and
//! response.
//!
//! Not built yet: until then `bulwark server` runs this service as the shared
//! runtime alone (`bulwark_shared::grpc::serve_runtime_only`).
#![forbid(unsafe_code)]
