//! beam-prometheus: exports Apache Beam pipeline metrics to Prometheus by remote-write and
//! through a Pushgateway. The Java side (java/) hands each `MetricQueryResults` over in one JNI
//! call using the binary contract of CONTRACT.md; everything else happens here.

pub mod background;
pub mod config;
pub mod contract;
pub mod delivery;
pub mod disk_buffer;
pub mod http;
pub mod intake;
pub mod model;
pub mod naming;
pub mod parallel;
pub mod pipelines;
pub mod pushgateway;
pub mod remote_write;
pub mod remote_write_v2;
pub mod reuse;
pub mod series_order;
pub mod snappy_blocks;

mod jni;

