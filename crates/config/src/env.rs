//! A snapshot of the process environment. Loading takes one instead of
//! reading `std::env` directly so tests can hand in their own variables and
//! `gateway dev` can fill in development secrets without mutating the
//! process environment.

use std::collections::HashMap;

#[derive(Debug, Clone, Default)]
pub struct Environment {
    vars: HashMap<String, String>,
}

/// Prefix of variables that override keys of the file.
pub(crate) const OVERRIDE_PREFIX: &str = "GATEWAY_";

impl Environment {
    /// The variables of this process.
    pub fn from_process() -> Self {
        Self {
            vars: std::env::vars().collect(),
        }
    }

    pub fn from_pairs<K: Into<String>, V: Into<String>>(
        pairs: impl IntoIterator<Item = (K, V)>,
    ) -> Self {
        Self {
            vars: pairs
                .into_iter()
                .map(|(k, v)| (k.into(), v.into()))
                .collect(),
        }
    }

    pub fn get(&self, name: &str) -> Option<&str> {
        self.vars.get(name).map(String::as_str)
    }

    pub fn set(&mut self, name: impl Into<String>, value: impl Into<String>) {
        self.vars.insert(name.into(), value.into());
    }

    /// `GATEWAY_<SECTION>__<KEY>` variables as (path segments, value), sorted
    /// so that the outcome never depends on hash order.
    pub(crate) fn overrides(&self) -> Vec<(Vec<String>, &str)> {
        let mut found: Vec<_> = self
            .vars
            .iter()
            .filter_map(|(name, value)| {
                let path = name.strip_prefix(OVERRIDE_PREFIX)?;
                // Only the documented form counts: a section and a key joined by
                // `__`. This keeps unrelated GATEWAY_* variables from failing start-up.
                path.contains("__").then(|| {
                    let segments = path.split("__").map(str::to_ascii_lowercase).collect();
                    (segments, value.as_str())
                })
            })
            .collect();
        found.sort();
        found
    }
}
