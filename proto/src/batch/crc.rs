//! CRC-32C of a batch whose bytes are rewritten in place, without a pass over the whole batch.
//!
//! The CRC-32C register is linear over GF(2). With `R(s, m)` the register after feeding message
//! `m` from state `s`, `R(s, m) = Z_len(m)(s) ^ R(0, m)`, where `Z_n` (feeding `n` zero bytes) is
//! a linear map. The CRC is `!R(!0, m)`, so for two messages of the same length
//! `crc(m) ^ crc(m') = R(0, m ^ m')`. When the bytes `old` become `new` and `trailing_bytes`
//! covered bytes follow them, `m ^ m'` is zeros, then `old ^ new`, then `trailing_bytes` zeros;
//! leading zeros leave a zero register unchanged, so the CRC changes by
//! `Z_trailing_bytes(R(0, old ^ new))`.
//!
//! [`ZEROS_OPERATORS`]`[k]` is the matrix of `Z_(2^k)`, built at compile time (zlib's
//! `crc32_combine` method with the Castagnoli polynomial), so an update costs one CRC of the
//! changed bytes plus one 32x32 bit-matrix product per set bit of `trailing_bytes`: about a
//! thousand instructions, where recomputing a 1 MiB batch costs about 400,000.

/// The CRC-32C (Castagnoli) polynomial, bit-reflected.
const POLYNOMIAL_REFLECTED: u32 = 0x82F6_3B78;

/// A linear map on the 32-bit CRC register: entry `n` is the image of bit `n`.
type Operator = [u32; 32];

/// `ZEROS_OPERATORS[k]` advances the register over `2^k` zero bytes; 32 of them cover every
/// `u32` count of bytes.
static ZEROS_OPERATORS: [Operator; 32] = zeros_operators();

/// Returns the CRC-32C that bytes with CRC `crc` have after the bytes `old` among them are
/// replaced by `new` (of the same length), where `trailing_bytes` covered bytes follow them.
pub(crate) fn crc32c_after_rewrite(crc: u32, old: &[u8], new: &[u8], trailing_bytes: u32) -> u32 {
    assert_eq!(old.len(), new.len(), "a rewrite keeps the length");
    let mut difference = [0_u8; 32];
    let mut register = 0_u32;
    for (old_chunk, new_chunk) in old
        .chunks(difference.len())
        .zip(new.chunks(difference.len()))
    {
        let chunk = &mut difference[..old_chunk.len()];
        for ((byte, old), new) in chunk.iter_mut().zip(old_chunk).zip(new_chunk) {
            *byte = old ^ new;
        }
        // R(s, m) from `crc32c_append`, which takes and returns finished (inverted) CRCs.
        register = !crc32c::crc32c_append(!register, chunk);
    }
    crc ^ advance_over_zeros(register, trailing_bytes)
}

/// Feeds `zero_bytes` zero bytes to the register `register`.
fn advance_over_zeros(mut register: u32, zero_bytes: u32) -> u32 {
    let mut remaining = zero_bytes;
    while remaining != 0 {
        let power = remaining.trailing_zeros();
        register = apply(&ZEROS_OPERATORS[power as usize], register);
        remaining &= remaining - 1;
    }
    register
}

const fn apply(operator: &Operator, mut vector: u32) -> u32 {
    let mut sum = 0;
    let mut bit = 0;
    while vector != 0 {
        if vector & 1 == 1 {
            sum ^= operator[bit];
        }
        vector >>= 1;
        bit += 1;
    }
    sum
}

const fn square(operator: &Operator) -> Operator {
    let mut squared = [0; 32];
    let mut bit = 0;
    while bit < 32 {
        squared[bit] = apply(operator, operator[bit]);
        bit += 1;
    }
    squared
}

const fn zeros_operators() -> [Operator; 32] {
    // One zero bit: the reflected register shifts right, and a 1 shifted out adds the polynomial.
    let mut one_bit = [0; 32];
    one_bit[0] = POLYNOMIAL_REFLECTED;
    let mut bit = 1;
    while bit < 32 {
        one_bit[bit] = 1 << (bit - 1);
        bit += 1;
    }
    let one_byte = square(&square(&square(&one_bit)));
    let mut operators = [[0; 32]; 32];
    operators[0] = one_byte;
    let mut power = 1;
    while power < 32 {
        operators[power] = square(&operators[power - 1]);
        power += 1;
    }
    operators
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn rewritten(bytes: &[u8], offset: usize, new: &[u8]) -> Vec<u8> {
        let mut copy = bytes.to_vec();
        copy[offset..offset + new.len()].copy_from_slice(new);
        copy
    }

    #[test]
    fn a_rewrite_gives_the_crc_of_the_new_bytes() {
        let bytes: Vec<u8> = (0..5_000_u32)
            .map(|index| (index * 31 % 251) as u8)
            .collect();
        // (offset, length of the rewrite): at the start, the end, in the middle, empty, long.
        let cases = [
            (0, 14),
            (4_986, 14),
            (22, 14),
            (100, 0),
            (7, 200),
            (0, 5_000),
        ];
        for (offset, length) in cases {
            let new: Vec<u8> = (0..length).map(|index| (index as u8) ^ 0x5A).collect();
            let after = rewritten(&bytes, offset, &new);
            let trailing = (bytes.len() - offset - length) as u32;
            assert_eq!(
                crc32c_after_rewrite(
                    crc32c::crc32c(&bytes),
                    &bytes[offset..offset + length],
                    &new,
                    trailing
                ),
                crc32c::crc32c(&after),
                "offset {offset} length {length}"
            );
        }
    }

    #[test]
    fn advancing_over_zeros_is_feeding_zeros() {
        for zero_bytes in [0_u32, 1, 2, 3, 8, 61, 1_000, 65_537, 1 << 20] {
            let zeros = vec![0_u8; zero_bytes as usize];
            let register = 0xDEAD_BEEF_u32;
            let fed = !crc32c::crc32c_append(!register, &zeros);
            assert_eq!(
                advance_over_zeros(register, zero_bytes),
                fed,
                "{zero_bytes}"
            );
        }
    }

    proptest! {
        #[test]
        fn any_rewrite_matches_a_full_recompute(
            bytes in proptest::collection::vec(any::<u8>(), 1..3_000),
            offset_seed in any::<usize>(),
            new_seed in proptest::collection::vec(any::<u8>(), 0..64),
        ) {
            let offset = offset_seed % bytes.len();
            let length = new_seed.len().min(bytes.len() - offset);
            let new = &new_seed[..length];
            let after = rewritten(&bytes, offset, new);
            let trailing = (bytes.len() - offset - length) as u32;
            prop_assert_eq!(
                crc32c_after_rewrite(crc32c::crc32c(&bytes), &bytes[offset..offset + length], new, trailing),
                crc32c::crc32c(&after)
            );
        }
    }
}
