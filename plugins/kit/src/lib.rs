//! The plugin kit: serves the plugin side of the interLink API and hands typed
//! calls to a [`Provider`]. Validation, errors, tracing, metrics and config
//! loading live here once for every plugin.

pub mod provider;

pub use provider::{LogStream, PluginError, Provider};

pub mod serve;

pub use serve::{Listen, serve};
