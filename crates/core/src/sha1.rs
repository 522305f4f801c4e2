//! SHA-1 as a `const fn`. Redis names a cached script by the SHA-1 of its
//! source, so computing it at compile time saves every request from hashing
//! kilobytes of Lua before its first `EVALSHA`. The lottery's purchase digest
//! (built in Lua with `redis.sha1hex`) is recomputed with it too.
//!
//! SHA-1 is not used for anything that needs collision resistance here: it
//! is the name Redis gives scripts, and the lottery chain only has to be
//! reproducible by anyone (the draw's unpredictability comes from the
//! committed seed, see `lottery`).

/// The SHA-1 digest of `data` (FIPS 180-4).
///
/// At compile time this runs in rustc's interpreter; the largest script
/// (about 8 KB) stays well inside the step budget of the deny-by-default
/// `long_running_const_eval` lint, but a script several times larger would
/// need its digest computed another way.
pub const fn digest(data: &[u8]) -> [u8; 20] {
    let mut state: [u32; 5] = [
        0x6745_2301,
        0xEFCD_AB89,
        0x98BA_DCFE,
        0x1032_5476,
        0xC3D2_E1F0,
    ];
    // The message is followed by 0x80, zeros, and its length in bits as a
    // big-endian u64, up to a multiple of 64 bytes.
    let padded_len = (data.len() + 9).div_ceil(64) * 64;
    let bit_len = (data.len() as u64).wrapping_mul(8);
    let mut block = 0;
    while block < padded_len {
        let mut w = [0u32; 80];
        let mut t = 0;
        while t < 16 {
            let mut word = 0u32;
            let mut b = 0;
            while b < 4 {
                let i = block + 4 * t + b;
                let byte = if i < data.len() {
                    data[i]
                } else if i == data.len() {
                    0x80
                } else if i >= padded_len - 8 {
                    (bit_len >> (8 * (padded_len - 1 - i))) as u8
                } else {
                    0
                };
                word = (word << 8) | byte as u32;
                b += 1;
            }
            w[t] = word;
            t += 1;
        }
        while t < 80 {
            w[t] = (w[t - 3] ^ w[t - 8] ^ w[t - 14] ^ w[t - 16]).rotate_left(1);
            t += 1;
        }
        let [mut a, mut b, mut c, mut d, mut e] = state;
        t = 0;
        while t < 80 {
            let (f, k) = match t {
                0..20 => ((b & c) | (!b & d), 0x5A82_7999),
                20..40 => (b ^ c ^ d, 0x6ED9_EBA1),
                40..60 => ((b & c) | (b & d) | (c & d), 0x8F1B_BCDC),
                _ => (b ^ c ^ d, 0xCA62_C1D6),
            };
            let next = a
                .rotate_left(5)
                .wrapping_add(f)
                .wrapping_add(e)
                .wrapping_add(k)
                .wrapping_add(w[t]);
            e = d;
            d = c;
            c = b.rotate_left(30);
            b = a;
            a = next;
            t += 1;
        }
        state[0] = state[0].wrapping_add(a);
        state[1] = state[1].wrapping_add(b);
        state[2] = state[2].wrapping_add(c);
        state[3] = state[3].wrapping_add(d);
        state[4] = state[4].wrapping_add(e);
        block += 64;
    }
    let mut out = [0u8; 20];
    let mut i = 0;
    while i < 5 {
        let bytes = state[i].to_be_bytes();
        out[4 * i] = bytes[0];
        out[4 * i + 1] = bytes[1];
        out[4 * i + 2] = bytes[2];
        out[4 * i + 3] = bytes[3];
        i += 1;
    }
    out
}

/// `digest(data)` in lowercase hex, as `redis.sha1hex` and `SCRIPT LOAD`
/// write it.
pub const fn hex_digest(data: &[u8]) -> [u8; 40] {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let digest = digest(data);
    let mut out = [0u8; 40];
    let mut i = 0;
    while i < 20 {
        out[2 * i] = DIGITS[(digest[i] >> 4) as usize];
        out[2 * i + 1] = DIGITS[(digest[i] & 0x0f) as usize];
        i += 1;
    }
    out
}

/// [`hex_digest`] as a `String`.
pub fn hex_string(data: &[u8]) -> String {
    hex_digest(data).iter().map(|&b| b as char).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_answers() {
        // FIPS 180 examples, plus the lengths around the padding boundary.
        assert_eq!(hex_string(b""), "da39a3ee5e6b4b0d3255bfef95601890afd80709");
        assert_eq!(
            hex_string(b"abc"),
            "a9993e364706816aba3e25717850c26c9cd0d89d"
        );
        assert_eq!(
            hex_string(b"abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq"),
            "84983e441c3bd26ebaae4aa1f95129e5e54670f1"
        );
    }

    #[test]
    fn matches_an_independent_implementation_at_every_length() {
        let data: Vec<u8> = (0..300u32).map(|i| (i * 31 + 7) as u8).collect();
        for len in 0..data.len() {
            let ours = hex_string(&data[..len]);
            let theirs = sha1_smol::Sha1::from(&data[..len]).digest().to_string();
            assert_eq!(ours, theirs, "length {len}");
        }
    }
}
