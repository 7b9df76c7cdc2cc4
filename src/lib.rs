//! tessera: an iipsrv-compatible image tile server.
//!
//! One request flows one way: FastCGI params ([`fcgi`]) → protocol parser
//! ([`protocol`]) → one request model ([`model`]) → cache lookup → source read
//! ([`image`]) → pipeline ([`pipeline`]) → encoder ([`encode`]) → response
//! ([`response`]), orchestrated by [`render`]. The [`supervisor`] owns sockets,
//! signals and processes; workers ([`worker`]) own requests.

pub mod access;
pub mod budget;
pub mod cli;
pub mod cnum;
pub mod config;
pub mod encode;
pub mod fcgi;
pub mod http;
pub mod image;
pub mod logging;
pub mod memcached;
pub mod model;
pub mod pipeline;
pub mod policy;
pub mod protocol;
pub mod render;
pub mod response;
pub mod supervisor;
pub mod turbo;
pub mod worker;
