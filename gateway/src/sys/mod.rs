//! `sys/` endpoints served by the gateway itself.

pub mod lifecycle;
