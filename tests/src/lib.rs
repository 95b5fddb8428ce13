//! Test infrastructure shared by the integration and end-to-end tests: mock
//! OpenAI and Anthropic upstreams that speak the exact wire formats, an OTLP
//! trace receiver, a harness that runs the real `watershed` binary, and a TCP
//! proxy that can be cut.

pub mod harness;
pub mod mock;
pub mod proxy;
pub mod sse;
