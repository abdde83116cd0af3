//! The complete environment a child starts with ([`Env`]): composed by the
//! session (`session::env`), set by exec on the child, hashed into cache keys.
//!
//! A leaf of its own so that all three can share one type without depending
//! on each other. A session's environment changes rarely and every command of
//! the session reuses it, so it is shared (an `Arc`), and its canonical digest
//! (what a cache key hashes instead of every variable) is worked out once per
//! environment, on first use, instead of on every request: hashing a dozen
//! sorted variables into each key was the single largest cost of a cache hit
//! (issue 17, part 6).

use std::ops::Deref;
use std::sync::{Arc, OnceLock};

/// A child's complete environment, in order; cheap to clone.
#[derive(Debug, Clone)]
pub struct Env(Arc<Inner>);

#[derive(Debug)]
struct Inner {
    vars: Box<[(String, String)]>,
    digest: OnceLock<[u8; 32]>,
}

impl Env {
    /// The BLAKE3 digest of the environment's canonical form: variables by
    /// name, a name given twice counted once with its *last* value (the one
    /// the child sees: exec sets them in order), each name and value
    /// length-prefixed. Two environments a child cannot tell apart have the
    /// same digest, whatever their order; any other difference changes it.
    pub fn digest(&self) -> &[u8; 32] {
        self.0.digest.get_or_init(|| digest_of(&self.0.vars))
    }
}

/// The digest of `vars` (see [`Env::digest`]).
pub fn digest_of(vars: &[(String, String)]) -> [u8; 32] {
    let mut sorted: Vec<(usize, &(String, String))> = vars.iter().enumerate().collect();
    // By name, then the later one first, so that `dedup` keeps the last.
    sorted.sort_by(|(i, a), (j, b)| a.0.cmp(&b.0).then(j.cmp(i)));
    sorted.dedup_by(|later, earlier| later.1 .0 == earlier.1 .0);
    let mut h = blake3::Hasher::new();
    h.update(&(sorted.len() as u64).to_le_bytes());
    for (_, (k, v)) in sorted {
        h.update(&(k.len() as u64).to_le_bytes());
        h.update(k.as_bytes());
        h.update(&(v.len() as u64).to_le_bytes());
        h.update(v.as_bytes());
    }
    *h.finalize().as_bytes()
}

impl Deref for Env {
    type Target = [(String, String)];
    fn deref(&self) -> &[(String, String)] {
        &self.0.vars
    }
}

impl From<Vec<(String, String)>> for Env {
    fn from(vars: Vec<(String, String)>) -> Env {
        Env(Arc::new(Inner {
            vars: vars.into_boxed_slice(),
            digest: OnceLock::new(),
        }))
    }
}

impl FromIterator<(String, String)> for Env {
    fn from_iter<I: IntoIterator<Item = (String, String)>>(iter: I) -> Env {
        iter.into_iter().collect::<Vec<_>>().into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(vars: &[(&str, &str)]) -> Env {
        vars.iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn order_does_not_matter_values_and_names_do() {
        let a = env(&[("A", "1"), ("B", "2")]);
        assert_eq!(a.digest(), env(&[("B", "2"), ("A", "1")]).digest());
        assert_ne!(a.digest(), env(&[("A", "1"), ("B", "3")]).digest());
        assert_ne!(a.digest(), env(&[("A", "1"), ("C", "2")]).digest());
        assert_ne!(a.digest(), env(&[("A", "1")]).digest());
        // Length prefixes: moving a byte from a name to its value is a change.
        assert_ne!(env(&[("AB", "C")]).digest(), env(&[("A", "BC")]).digest());
    }

    #[test]
    fn a_name_given_twice_counts_with_the_value_the_child_sees() {
        // exec sets the variables in order: the last value wins.
        let twice = env(&[("A", "1"), ("B", "2"), ("A", "3")]);
        assert_eq!(twice.digest(), env(&[("A", "3"), ("B", "2")]).digest());
        assert_ne!(twice.digest(), env(&[("A", "1"), ("B", "2")]).digest());
    }

    #[test]
    fn the_digest_is_the_canonical_one_and_kept() {
        let e = env(&[("B", "2"), ("A", "1")]);
        assert_eq!(*e.digest(), digest_of(&e));
        let copy = e.clone();
        assert!(std::ptr::eq(e.digest(), copy.digest()), "worked out once");
    }
}
