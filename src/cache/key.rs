//! Cache keys: a hash of a versioned canonical form of everything that decides a
//! command's output.
//!
//! The recipe follows the Bazel action cache: the command, its environment, the
//! tenant and the cwd (`$PWD`, which every child sees) in every key; by class, the
//! host and the tenant's generation; each field length-prefixed so that no two
//! different inputs share an encoding. The tenant is in every key, pure lines
//! included: no tenant ever receives, or learns of, another tenant's answer
//! (identical large outputs still share their bytes, invisibly: `blobs`). BLAKE3 (not
//! xxh3) because keys of different tenants share one key space: with a
//! non-cryptographic hash a tenant could craft a collision and plant its output
//! in another tenant's entry. It costs well under a microsecond for these inputs.

use super::policy::Class;
use std::path::Path;

/// Bumped whenever the recipe changes, so a new build never reads old entries.
pub const KEY_FORMAT: u32 = 5;

/// A cache key: 128 bits of a BLAKE3 digest.
pub type Key = u128;

/// Everything a key is computed from.
#[derive(Debug, Clone, Copy)]
pub struct KeyParts<'a> {
    /// The line's class (decides which scope fields are used).
    pub class: Class,
    /// The command line, trimmed.
    pub command: &'a str,
    /// The digest of the child's complete environment (base plus session;
    /// [`crate::env::Env::digest`]: canonical, whatever the order). The whole
    /// environment, not just the referenced variables: programs read variables
    /// implicitly (`LC_ALL`, `TZ`, `LS_COLORS`). A digest rather than the
    /// variables: it is worked out once per environment, where hashing every
    /// variable into every key cost more than the rest of a cache hit.
    pub env: &'a [u8; 32],
    /// The tenant.
    pub tenant: &'a str,
    /// The session's cwd (the child's `$PWD`).
    pub cwd: &'a Path,
    /// This machine's name (`hostname`, `uname -n` differ between instances).
    pub host: &'a str,
    /// The tenant's generation (fs-read and volatile).
    pub generation: u64,
    /// A validated fs-read line (see `cache::inputs`): its entries carry their own
    /// validity, so the generation stays out of the key.
    pub validated: bool,
}

impl KeyParts<'_> {
    /// The key.
    ///
    /// The canonical form is written into one buffer and hashed in one call:
    /// fed field by field, BLAKE3's incremental hasher cost ~150 instructions
    /// of bookkeeping per `update`, and fourteen of them were 15 % of a cached
    /// request's instructions (callgrind, `benches/hot_path`); one call hashes
    /// the same ~100 bytes in two compressions. The recipe's name and version
    /// are the hash's key (BLAKE3's keyed mode: domain separation without
    /// hashing them as bytes).
    pub fn key(&self) -> Key {
        let cwd = self.cwd.as_os_str().as_encoded_bytes();
        let scoped = self.class != Class::Pure;
        let class = self.class.as_str().as_bytes();
        // Seven length-prefixed fields at most, the longest scope field
        // `validated` (9 bytes): sized once, never grown.
        let mut buf = Vec::with_capacity(
            7 * 8
                + class.len()
                + self.command.len()
                + self.env.len()
                + self.tenant.len()
                + cwd.len()
                + self.host.len()
                + 9,
        );
        let mut field = |bytes: &[u8]| {
            buf.extend_from_slice(&(bytes.len() as u64).to_le_bytes());
            buf.extend_from_slice(bytes);
        };
        field(class);
        field(self.command.as_bytes());
        field(self.env);
        field(self.tenant.as_bytes());
        field(cwd);
        if scoped {
            field(self.host.as_bytes());
        }
        match self.class {
            Class::Pure | Class::Session => {}
            _ if self.validated => field(b"validated"),
            _ => field(&self.generation.to_le_bytes()),
        }
        let digest = blake3::keyed_hash(&RECIPE, &buf);
        let mut b = [0u8; 16];
        b.copy_from_slice(&digest.as_bytes()[..16]);
        u128::from_le_bytes(b)
    }
}

/// The key of BLAKE3's keyed mode for cache keys: the recipe's name and
/// [`KEY_FORMAT`], padded to BLAKE3's 32-byte key.
const RECIPE: [u8; 32] = {
    let name = b"voxterm-cache-key";
    let mut k = [0u8; 32];
    let mut i = 0;
    while i < name.len() {
        k[i] = name[i];
        i += 1;
    }
    let format = KEY_FORMAT.to_le_bytes();
    let mut j = 0;
    while j < 4 {
        k[28 + j] = format[j];
        j += 1;
    }
    k
};

#[cfg(test)]
mod tests {
    use super::*;

    fn parts<'a>(class: Class, env: &'a [u8; 32], tenant: &'a str) -> KeyParts<'a> {
        KeyParts {
            class,
            command: "echo $A",
            env,
            tenant,
            cwd: Path::new("/tmp"),
            host: "h",
            generation: 0,
            validated: false,
        }
    }

    #[test]
    fn scope_by_class() {
        let env = crate::env::digest_of(&[("A".to_owned(), "1".to_owned())]);
        let env2 = crate::env::digest_of(&[("A".to_owned(), "2".to_owned())]);
        // Every class: per tenant, per cwd ($PWD) and per env value.
        for c in [Class::Pure, Class::Session, Class::FsRead] {
            assert_ne!(parts(c, &env, "a").key(), parts(c, &env, "b").key());
            assert_ne!(parts(c, &env, "a").key(), parts(c, &env2, "a").key());
            let mut elsewhere = parts(c, &env, "a");
            elsewhere.cwd = Path::new("/tmp/docs");
            assert_ne!(parts(c, &env, "a").key(), elsewhere.key());
        }
        let mut g = parts(Class::FsRead, &env, "a");
        let k0 = g.key();
        g.generation = 1;
        assert_ne!(k0, g.key());
        // Validated lines: the generation is not part of the key, and the key is
        // not the one of the blind entry.
        let mut v = parts(Class::FsRead, &env, "a");
        v.validated = true;
        let kv = v.key();
        v.generation = 7;
        assert_eq!(kv, v.key());
        assert_ne!(kv, k0);
    }

    #[test]
    fn env_order_does_not_matter() {
        let e1: crate::env::Env = vec![("A".into(), "1".into()), ("B".into(), "2".into())].into();
        let e2: crate::env::Env = vec![("B".into(), "2".into()), ("A".into(), "1".into())].into();
        assert_eq!(
            parts(Class::Pure, e1.digest(), "a").key(),
            parts(Class::Pure, e2.digest(), "a").key()
        );
    }
}
