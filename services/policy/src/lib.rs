//! The policy service: ACL policies in HCL, the compiled path matcher and
//! `Authorize(policies, path, operation)`; `root` and `default` built in.
//!
//! Not built yet: until then `bulwark server` runs this service as the shared
//! runtime alone (`bulwark_shared::grpc::serve_runtime_only`).
#![forbid(unsafe_code)]
