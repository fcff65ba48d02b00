//! `sys/` endpoints served by the gateway itself.

pub mod audit;
pub mod auth;
pub mod capabilities;
pub mod keys;
pub mod leases;
pub mod lifecycle;
pub mod mounts;
pub mod policy;
pub mod quotas;
