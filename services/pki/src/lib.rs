//! The pki service: CA issuers (root and intermediate), roles, issue, sign,
//! revoke and CRLs, with rcgen and x509-parser.
//!
//! Not built yet: until then `bulwark server` runs this service as the shared
//! runtime alone (`bulwark_shared::grpc::serve_runtime_only`).
#![forbid(unsafe_code)]
