//! Plumbing shared by every Bulwark service: service names, config, storage and
//! the encrypting barrier, the internal CA and mTLS, the peer allow-list layer,
//! trace-context propagation and metrics, TTL parsing and the gRPC service runtime.
//!
//! This crate holds no domain logic (no tokens, policies or secrets): only what
//! every service needs in the same shape.

#![forbid(unsafe_code)]

pub mod acks;
pub mod barrier;
pub mod bus;
pub mod cidr;
pub mod config;
pub mod grpc;
pub mod hcl_depth;
pub mod keyring;
pub mod metrics;
pub mod names;
pub mod peer;
pub mod storage;
pub mod telemetry;
pub mod tls;
pub mod ttl;

pub use names::ServiceName;
