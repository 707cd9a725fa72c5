//! Shared harness for the end-to-end tests: throwaway clusters and decoding helpers.

pub mod cluster;
pub mod decode;
pub mod object_store;

pub use cluster::TestCluster;
