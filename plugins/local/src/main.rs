//! `interlink-local`: the local plugin served over HTTP (see the library docs).
//! `interlink-local __shim` is the per-container supervisor it starts itself.

use std::sync::Arc;

use interlink_plugin_kit::cli::{self, Info};
use interlink_plugin_local::{LocalOptions, LocalProvider, supervise};

fn main() -> anyhow::Result<()> {
    if std::env::args_os().nth(1).is_some_and(|a| a == "__shim") {
        std::process::exit(supervise::shim_main());
    }
    cli::run::<LocalOptions, _, _, _>(
        Info::new(
            "interlink-local",
            "interLink plugin running pods as local processes (no image isolation)",
        ),
        |s| async move {
            Ok(Arc::new(LocalProvider::with_options(
                s.data_root,
                s.plugin,
            )?))
        },
    )
}
