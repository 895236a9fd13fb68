//! What secrets need: random bytes from the operating system (masking keys,
//! handshake nonces, node ids) and comparison in constant time (session ids, admin
//! tokens).

use std::fs::File;
use std::io::{self, Read};

/// Fills buffers from the operating system's random source, for masking keys (RFC 6455
/// 5.3: keys "MUST be derived from a strong source of entropy") and handshake nonces.
pub struct Urandom {
    file: Option<File>,
    pool: [u8; 64],
    used: usize,
}

impl Default for Urandom {
    fn default() -> Self {
        Self::new()
    }
}

impl Urandom {
    /// A source that opens `/dev/urandom` when first asked.
    pub fn new() -> Self {
        Urandom {
            file: None,
            pool: [0; 64],
            used: 64,
        }
    }

    /// Fills `out` with random bytes.
    pub fn fill(&mut self, out: &mut [u8]) -> io::Result<()> {
        for b in out {
            if self.used == self.pool.len() {
                let file = match &mut self.file {
                    Some(f) => f,
                    None => self.file.insert(File::open("/dev/urandom")?),
                };
                file.read_exact(&mut self.pool)?;
                self.used = 0;
            }
            *b = self.pool[self.used];
            self.used += 1;
        }
        Ok(())
    }
}

/// Masking keys from [`Urandom`] (RFC 6455 5.3). Should the OS source fail, keys come
/// from the standard library's randomly seeded SipHash over a counter: still
/// unpredictable to the peer, which is what 5.3 asks of them.
pub fn masking_keys() -> impl FnMut() -> [u8; 4] + Send {
    use std::hash::BuildHasher;
    let mut random = Urandom::new();
    let fallback = std::collections::hash_map::RandomState::new();
    let mut count = 0u64;
    move || {
        let mut key = [0u8; 4];
        if random.fill(&mut key).is_err() {
            count += 1;
            let h = fallback.hash_one(count).to_le_bytes();
            key.copy_from_slice(&h[..4]);
        }
        key
    }
}

/// A random 64-bit number: from [`Urandom`], or, should that fail, from the time and
/// the process id, which still tell two nodes apart.
pub fn random_u64() -> u64 {
    let mut bytes = [0u8; 8];
    if Urandom::new().fill(&mut bytes).is_ok() {
        return u64::from_le_bytes(bytes);
    }
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    t.as_nanos() as u64 ^ u64::from(std::process::id())
}

/// Compares two byte strings in time that depends only on their lengths, so that a
/// wrong token does not leak how much of it was right.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn equal_only_when_every_byte_is() {
        assert!(constant_time_eq(b"secret", b"secret"));
        assert!(!constant_time_eq(b"secret", b"secreT"));
        assert!(!constant_time_eq(b"secret", b"secret2"));
        assert!(constant_time_eq(b"", b""));
    }

    #[test]
    fn random_numbers_differ() {
        assert_ne!(random_u64(), random_u64());
    }
}
