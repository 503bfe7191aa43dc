//! Reference models keep their entries in a map keyed by path: what lies
//! at or below a path, in one implementation, included by `tests/common`
//! and `tests/support`.

use std::collections::BTreeMap;

/// Whether some key of a path-keyed map (a reference model's entries) lies
/// below `p`.
pub fn has_children<V>(entries: &BTreeMap<String, V>, p: &str) -> bool {
    let pre = format!("{p}/");
    entries
        .range(pre.clone()..)
        .next()
        .is_some_and(|(k, _)| k.starts_with(&pre))
}

/// The keys of a path-keyed map at or below `p` (`""`: all), in order.
pub fn subtree<V>(entries: &BTreeMap<String, V>, p: &str) -> Vec<String> {
    let pre = format!("{p}/");
    entries
        .keys()
        .filter(|k| p.is_empty() || k.as_str() == p || k.starts_with(&pre))
        .cloned()
        .collect()
}
