//! interlink-cri: a CRI v1 runtime whose pods run remotely through interLink.

pub mod hooks;
pub mod extensions;
