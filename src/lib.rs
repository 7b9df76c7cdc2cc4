//! tessera: an iipsrv-compatible image tile server.
//!
//! One request flows one way: FastCGI params ([`fcgi`]) → protocol parser
//! ([`protocol`]) → one request model → cache lookup → source read ([`image`]) →
//! pipeline ([`pipeline`]) → encoder ([`encode`]) → response. The [`supervisor`]
//! owns sockets, signals and processes; workers ([`worker`]) own requests.

pub mod fcgi;
pub mod image;
pub mod supervisor;
