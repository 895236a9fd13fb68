//! XOR masking (RFC 6455 5.3).
//!
//! "Octet i of the transformed data is the XOR of octet i of the original data with
//! octet at index i modulo 4 of the masking key." Every byte a client sends passes
//! through here, and so does every byte a server receives, so this is the hot loop of
//! the receive path.
//!
//! Both functions take the `offset` of `buf` within the payload (how many payload bytes
//! were masked before it) and return the offset for the next piece, so a payload that
//! arrives across several reads is unmasked piece by piece without copying it together.

/// Masks `buf` in place one byte at a time: the RFC's formula read literally. The fast
/// path is tested against it.
pub fn apply_mask_reference(buf: &mut [u8], key: [u8; 4], offset: usize) -> usize {
    for (i, byte) in buf.iter_mut().enumerate() {
        *byte ^= key[(offset + i) % 4];
    }
    (offset + buf.len()) % 4
}

/// Masks `buf` in place, 32 bytes at a time.
///
/// 1. Rotate the key so that key byte 0 lines up with `buf[0]`.
/// 2. XOR whole 32-byte blocks with the key repeated eight times; the compiler turns
///    this into vector loads and XORs (unaligned loads are free on current CPUs, so
///    there is no byte-wise walk to alignment first).
/// 3. XOR the 8-byte words of the rest, then the last bytes one at a time.
pub fn apply_mask(buf: &mut [u8], key: [u8; 4], offset: usize) -> usize {
    let next = (offset + buf.len()) % 4;
    // 1.
    let o = offset % 4;
    let key4 = [key[o], key[(o + 1) % 4], key[(o + 2) % 4], key[(o + 3) % 4]];
    let word = u64::from_ne_bytes([
        key4[0], key4[1], key4[2], key4[3], key4[0], key4[1], key4[2], key4[3],
    ]);
    // 2.
    let (blocks, rest) = buf.as_chunks_mut::<32>();
    for block in blocks {
        let (words, _) = block.as_chunks_mut::<8>();
        for w in words {
            *w = (u64::from_ne_bytes(*w) ^ word).to_ne_bytes();
        }
    }
    // 3.
    let (words, tail) = rest.as_chunks_mut::<8>();
    for w in words {
        *w = (u64::from_ne_bytes(*w) ^ word).to_ne_bytes();
    }
    for (i, byte) in tail.iter_mut().enumerate() {
        *byte ^= key4[i % 4];
    }
    next
}

/// Appends `src` masked with `key` to `dst` ("mask while copying"): the payload is
/// copied out of the read buffer once and unmasked while it is hot in cache.
pub fn extend_masked(dst: &mut Vec<u8>, src: &[u8], key: [u8; 4], offset: usize) -> usize {
    let start = dst.len();
    dst.extend_from_slice(src);
    apply_mask(&mut dst[start..], key, offset)
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: [u8; 4] = [0x37, 0xfa, 0x21, 0x3d];

    #[test]
    fn rfc_example_hello() {
        // RFC 6455 5.7: "Hello" masked with 37 fa 21 3d.
        let mut buf = *b"Hello";
        let next = apply_mask(&mut buf, KEY, 0);
        assert_eq!(buf, [0x7f, 0x9f, 0x4d, 0x51, 0x58]);
        assert_eq!(next, 1);
    }

    #[test]
    fn fast_matches_reference_at_every_length_and_offset() {
        let data: Vec<u8> = (0..64u32).map(|i| (i * 7 + 3) as u8).collect();
        for len in 0..=64 {
            for offset in 0..=3 {
                let mut fast = data[..len].to_vec();
                let mut slow = data[..len].to_vec();
                let a = apply_mask(&mut fast, KEY, offset);
                let b = apply_mask_reference(&mut slow, KEY, offset);
                assert_eq!(fast, slow, "len {len} offset {offset}");
                assert_eq!(a, b);
            }
        }
    }

    #[test]
    fn piecewise_equals_whole() {
        let data: Vec<u8> = (0..1000u32).map(|i| (i % 251) as u8).collect();
        let mut whole = data.clone();
        apply_mask(&mut whole, KEY, 0);
        for split in [1, 3, 7, 31, 33, 500] {
            let mut out = Vec::new();
            let mut off = 0;
            for piece in data.chunks(split) {
                off = extend_masked(&mut out, piece, KEY, off);
            }
            assert_eq!(out, whole, "split {split}");
        }
    }

    #[test]
    fn masking_twice_is_identity() {
        let mut buf: Vec<u8> = (0..100u8).collect();
        apply_mask(&mut buf, KEY, 2);
        apply_mask(&mut buf, KEY, 2);
        assert_eq!(buf, (0..100u8).collect::<Vec<_>>());
    }
}
