//! Bulwark's gRPC contracts: one package per service (`bulwark.<service>.v1`),
//! generated at build time from `proto/bulwark/**.proto`.

#![allow(clippy::all, clippy::pedantic)]

pub mod audit {
    pub mod v1 {
        tonic::include_proto!("bulwark.audit.v1");
    }
}

pub mod auth {
    pub mod v1 {
        tonic::include_proto!("bulwark.auth.v1");
    }
}

pub mod dynamicdb {
    pub mod v1 {
        tonic::include_proto!("bulwark.dynamicdb.v1");
    }
}

pub mod kv {
    pub mod v1 {
        tonic::include_proto!("bulwark.kv.v1");
    }
}

pub mod pki {
    pub mod v1 {
        tonic::include_proto!("bulwark.pki.v1");
    }
}

pub mod policy {
    pub mod v1 {
        tonic::include_proto!("bulwark.policy.v1");
    }
}

pub mod seal {
    pub mod v1 {
        tonic::include_proto!("bulwark.seal.v1");
    }
}

/// Encoded `FileDescriptorSet` of every Bulwark proto (for reflection).
pub const FILE_DESCRIPTOR_SET: &[u8] = tonic::include_file_descriptor_set!("bulwark_descriptor");

pub mod telemetry {
    pub mod v1 {
        tonic::include_proto!("bulwark.telemetry.v1");
    }
}

pub mod transit {
    pub mod v1 {
        tonic::include_proto!("bulwark.transit.v1");
    }
}
