//! The local plugin: runs each pod's containers as processes on this host.
