//! What every guest module shares besides its WIT bindings (which each module
//! generates for its own world).
//!
//! [`ConfigCell`]: a module's configuration, the JSON text its host import
//! `config()` returns (the file `<module>.json` beside the module), parsed on
//! first use and kept. Empty text is the module's `Default` configuration;
//! text that does not parse is an error every call reports, so a module with
//! a broken configuration fails visibly (and a policy module can fail closed).
//!
//! ```ignore
//! interlink_guest_sdk::config!(Config, config);
//! // then, in a hook:
//! with_config(|cfg| handle(cfg, &input))?
//! ```

use std::cell::OnceCell;

use serde::de::DeserializeOwned;

/// Parse a module's configuration text: empty (or blank) is `T::default()`.
pub fn parse<T: DeserializeOwned + Default>(text: &str) -> Result<T, String> {
    if text.trim().is_empty() {
        Ok(T::default())
    } else {
        serde_json::from_str(text).map_err(|e| e.to_string())
    }
}

/// A configuration read and parsed once, on first use.
pub struct ConfigCell<T> {
    cell: OnceCell<Result<T, String>>,
}

impl<T> ConfigCell<T> {
    pub const fn new() -> ConfigCell<T> {
        ConfigCell {
            cell: OnceCell::new(),
        }
    }
}

impl<T> Default for ConfigCell<T> {
    fn default() -> Self {
        ConfigCell::new()
    }
}

impl<T: DeserializeOwned + Default> ConfigCell<T> {
    /// The configuration, reading its text with `read` (the module's `config`
    /// import) the first time; the parse error (serde's message) if it is bad.
    pub fn get(&self, read: impl FnOnce() -> String) -> Result<&T, &str> {
        self.cell
            .get_or_init(|| parse(&read()))
            .as_ref()
            .map_err(String::as_str)
    }
}

/// Define `fn with_config<R>(f: impl FnOnce(&$ty) -> R) -> Result<R, String>`
/// in the calling module: `f` applied to the configuration read through the
/// module's `$read` import (once per instance), or `"bad configuration: ..."`.
#[macro_export]
macro_rules! config {
    ($ty:ty, $read:path) => {
        fn with_config<R>(f: impl FnOnce(&$ty) -> R) -> Result<R, String> {
            ::std::thread_local! {
                static CONFIG: $crate::ConfigCell<$ty> = const { $crate::ConfigCell::new() };
            }
            CONFIG.with(|cell| {
                cell.get($read)
                    .map(f)
                    .map_err(|e| format!("bad configuration: {e}"))
            })
        }
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, Default, PartialEq, serde::Deserialize)]
    #[serde(default, deny_unknown_fields)]
    struct Cfg {
        n: u32,
    }

    #[test]
    fn empty_is_default_and_errors_persist() {
        assert_eq!(parse::<Cfg>("  \n"), Ok(Cfg::default()));
        assert_eq!(parse::<Cfg>("{\"n\": 3}"), Ok(Cfg { n: 3 }));
        assert!(
            parse::<Cfg>("{\"x\": 1}")
                .unwrap_err()
                .contains("unknown field")
        );
        let reads = std::cell::Cell::new(0);
        let cell: ConfigCell<Cfg> = ConfigCell::new();
        let read = || {
            reads.set(reads.get() + 1);
            "{\"n\": \"no\"}".to_string()
        };
        assert!(cell.get(read).is_err());
        assert!(cell.get(read).is_err());
        assert_eq!(reads.get(), 1, "read once");
    }

    mod macro_use {
        use super::Cfg;
        fn config() -> String {
            "{\"n\": 7}".into()
        }
        crate::config!(Cfg, config);

        #[test]
        fn defines_with_config() {
            assert_eq!(with_config(|c| c.n), Ok(7));
        }
    }
}
