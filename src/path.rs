//! Validation and normalisation of archive paths, and their B-tree key form.
//!
//! A path is relative UTF-8 with `/` separators. A leading `/` is dropped.
//! In the TOC B-tree a path is stored with every `/` replaced by byte `0x00`
//! (NUL cannot occur in a valid path), so keys sort component by component:
//! a directory's subtree is one contiguous key range directly after the
//! directory itself (`a` < `a/b` < `a-x`).

use crate::error::{Error, Result};

/// Longest accepted path component, in bytes.
pub const MAX_COMPONENT: usize = 255;
/// Longest accepted path, in bytes.
pub const MAX_PATH: usize = 4096;

fn invalid(path: &str, reason: &'static str) -> Error {
    Error::InvalidPath {
        path: path.to_string(),
        reason,
    }
}

/// Validates `path` and returns it without a leading `/`. `""` (the root)
/// is accepted only when `allow_root`.
pub fn normalize(path: &str, allow_root: bool) -> Result<&str> {
    let p = path.strip_prefix('/').unwrap_or(path);
    if p.is_empty() {
        return if allow_root {
            Ok(p)
        } else {
            Err(invalid(path, "the root is not allowed here; name an entry"))
        };
    }
    if p.len() > MAX_PATH {
        return Err(invalid(path, "path longer than 4096 bytes"));
    }
    for comp in p.split('/') {
        check_component(path, comp)?;
    }
    Ok(p)
}

fn check_component(path: &str, comp: &str) -> Result<()> {
    match comp {
        "" => Err(invalid(
            path,
            "empty path component (leading, trailing or double '/')",
        )),
        "." | ".." => Err(invalid(path, "'.' and '..' components are not allowed")),
        _ if comp.len() > MAX_COMPONENT => Err(invalid(path, "component longer than 255 bytes")),
        _ if comp.contains('\0') => Err(invalid(path, "NUL byte in path")),
        _ if comp.contains('\\') => Err(invalid(path, "backslash in path")),
        _ => Ok(()),
    }
}

/// Validates a variable name: non-empty UTF-8 of at most 255 bytes, no NUL.
pub fn check_var_name(name: &str) -> Result<()> {
    if name.is_empty() {
        return Err(invalid(name, "variable name is empty"));
    }
    if name.len() > MAX_COMPONENT {
        return Err(invalid(name, "variable name longer than 255 bytes"));
    }
    if name.contains('\0') {
        return Err(invalid(name, "NUL byte in variable name"));
    }
    Ok(())
}

/// The B-tree key of a normalised path.
pub fn to_key(path: &str) -> Vec<u8> {
    path.bytes()
        .map(|b| if b == b'/' { 0 } else { b })
        .collect()
}

/// The path of a B-tree key; `None` if the key is not a valid path
/// (only possible in a damaged or hostile archive).
pub fn from_key(key: &[u8]) -> Option<String> {
    key_into_path(key.to_vec())
}

/// [`from_key`] of an owned key, turned into its path in place: one pass
/// over the bytes checks every rule of [`normalize`] (no empty, `.` or
/// `..` component, none longer than 255 bytes, no backslash, at most 4096
/// bytes, and no literal `/`, which would turn into a separator), then
/// the UTF-8 check. (A NUL byte is a separator in a key: a path can never
/// hold one. The stored form never has a leading separator: `a` and `/a`
/// must not be two keys for one path.)
pub fn key_into_path(mut key: Vec<u8>) -> Option<String> {
    if key.is_empty() || key.len() > MAX_PATH {
        return None;
    }
    let mut start = 0;
    for i in 0..=key.len() {
        let b = key.get(i).copied();
        if matches!(b, Some(b'/' | b'\\')) {
            return None;
        }
        if b.is_none() || b == Some(0) {
            let comp = &key[start..i];
            if comp.is_empty() || comp == b"." || comp == b".." || comp.len() > MAX_COMPONENT {
                return None;
            }
            if i < key.len() {
                key[i] = b'/';
            }
            start = i + 1;
        }
    }
    String::from_utf8(key).ok()
}

/// The key range `[start, end)` holding every entry strictly below the
/// directory `key` (all entries when `key` is empty, the root).
pub fn subtree_range(key: &[u8]) -> (Vec<u8>, Option<Vec<u8>>) {
    if key.is_empty() {
        return (Vec::new(), None);
    }
    let mut start = key.to_vec();
    start.push(0);
    let mut end = key.to_vec();
    end.push(1);
    (start, Some(end))
}

/// Keys of the proper ancestors of `key` (`a`, `a\0b` for `a\0b\0c`).
pub fn ancestors(key: &[u8]) -> impl Iterator<Item = &[u8]> {
    key.iter()
        .enumerate()
        .filter(|(_, b)| **b == 0)
        .map(move |(i, _)| &key[..i])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_and_refuses() {
        assert_eq!(normalize("/a/b", false).unwrap(), "a/b");
        assert_eq!(normalize("", true).unwrap(), "");
        for bad in ["", "/", "a//b", "a/", "./a", "a/..", "a\\b", "a\0b"] {
            assert!(normalize(bad, false).is_err(), "{bad:?}");
        }
        let long = "x".repeat(256);
        assert!(normalize(&long, false).is_err());
        assert!(normalize(&long[..255], false).is_ok());
    }

    /// `from_key` as it was written before the one-pass version: every
    /// byte mapped, then `String` and `normalize`.
    fn from_key_reference(key: &[u8]) -> Option<String> {
        if key.contains(&b'/') {
            return None;
        }
        let bytes: Vec<u8> = key.iter().map(|&b| if b == 0 { b'/' } else { b }).collect();
        let s = String::from_utf8(bytes).ok()?;
        (normalize(&s, false).ok()? == s).then_some(s)
    }

    #[test]
    fn from_key_agrees_with_normalize() {
        // Every key of up to 5 bytes over an alphabet of the bytes that
        // matter, and longer ones around the length limits.
        let alphabet = [0u8, b'/', b'.', b'\\', b'a', 0xC3, 0xA9, 0xFF];
        let mut keys: Vec<Vec<u8>> = vec![Vec::new()];
        let mut layer: Vec<Vec<u8>> = vec![Vec::new()];
        for _ in 0..5 {
            let mut next = Vec::new();
            for k in &layer {
                for &b in &alphabet {
                    let mut k = k.clone();
                    k.push(b);
                    next.push(k);
                }
            }
            keys.extend(next.iter().cloned());
            layer = next;
        }
        for n in [254, 255, 256] {
            keys.push(vec![b'x'; n]);
            let mut k = b"d\0".to_vec();
            k.extend(std::iter::repeat_n(b'y', n));
            keys.push(k);
        }
        for n in [4095, 4096, 4097] {
            let k: Vec<u8> = (0..n)
                .map(|i| if i % 100 == 99 { 0 } else { b'z' })
                .collect();
            keys.push(k);
        }
        let mut valid = 0;
        for k in &keys {
            let want = from_key_reference(k);
            valid += want.is_some() as usize;
            assert_eq!(from_key(k), want, "{k:?}");
        }
        assert!(valid > 100, "only {valid} valid keys generated");
    }

    #[test]
    fn key_order_is_component_wise() {
        let mut v = [to_key("a-x"), to_key("a/b"), to_key("a")];
        v.sort();
        assert_eq!(v, [to_key("a"), to_key("a/b"), to_key("a-x")]);
        let (s, e) = subtree_range(&to_key("a"));
        assert!(to_key("a/b").as_slice() >= s.as_slice());
        assert!(to_key("a/b").as_slice() < e.unwrap().as_slice());
        let anc: Vec<_> = ancestors(b"a\0b\0c").collect();
        assert_eq!(anc, [&b"a"[..], &b"a\0b"[..]]);
    }
}
