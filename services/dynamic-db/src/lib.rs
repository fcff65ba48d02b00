//! The dynamic-db service: the database secrets engine (PostgreSQL first,
//! then MySQL/MariaDB): connections, roles, leased dynamic credentials,
//! static roles and root rotation.
//!
//! Not built yet: until then `bulwark server` runs this service as the shared
//! runtime alone (`bulwark_shared::grpc::serve_runtime_only`).
#![forbid(unsafe_code)]
