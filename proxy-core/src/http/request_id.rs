use http::HeaderValue;

/// A random (version 4) UUID for `x-request-id`.
///
/// Drawn from a per-thread fast generator rather than the OS: an id only has to be
/// unique enough to correlate logs, and a `getrandom` syscall per request would cost
/// more than the rest of the header work combined.
pub(crate) fn generate() -> HeaderValue {
    // Only hex digits and dashes: always a valid header value.
    HeaderValue::from_bytes(&uuid())
        .unwrap_or_else(|_| HeaderValue::from_static("00000000-0000-4000-8000-000000000000"))
}

/// [`generate`]'s id as text, for a head written as bytes.
pub(crate) fn uuid() -> [u8; 36] {
    let mut random = fastrand::u128(..);
    random = (random & !(0xf << 76)) | (0x4 << 76); // version 4
    random = (random & !(0x3 << 62)) | (0x2 << 62); // RFC 4122 variant
    let mut hex = [0u8; 32];
    for (digits, word) in hex.chunks_exact_mut(8).zip((0..4).rev()) {
        digits.copy_from_slice(&hex_digits((random >> (32 * word)) as u32));
    }
    // 8-4-4-4-12 digits.
    let mut out = [b'-'; 36];
    out[..8].copy_from_slice(&hex[..8]);
    out[9..13].copy_from_slice(&hex[8..12]);
    out[14..18].copy_from_slice(&hex[12..16]);
    out[19..23].copy_from_slice(&hex[16..20]);
    out[24..].copy_from_slice(&hex[20..]);
    out
}

/// The eight lowercase hex digits of `word`, most significant first, computed eight at
/// a time in one `u64` (a table lookup per digit was most of an id's cost).
fn hex_digits(word: u32) -> [u8; 8] {
    // Spread the nibbles one per byte: 0x12345678 -> 0x0102030405060708.
    let mut x = u64::from(word);
    x = (x | (x << 16)) & 0x0000_ffff_0000_ffff;
    x = (x | (x << 8)) & 0x00ff_00ff_00ff_00ff;
    x = (x | (x << 4)) & 0x0f0f_0f0f_0f0f_0f0f;
    // 1 in each byte whose nibble is past 9, which then skips to 'a' ('a' - '0' - 10).
    let letters = ((x + 0x0606_0606_0606_0606) >> 4) & 0x0101_0101_0101_0101;
    (x + 0x3030_3030_3030_3030 + letters * 39).to_be_bytes()
}

#[cfg(test)]
mod tests {
    #[test]
    fn looks_like_a_v4_uuid() {
        let id = super::generate();
        let s = id.to_str().unwrap();
        assert_eq!(s.len(), 36);
        assert_eq!(&s[14..15], "4");
        assert!(matches!(&s[19..20], "8" | "9" | "a" | "b"));
        assert_ne!(super::generate(), id);
    }

    #[test]
    fn hex_digits_match_formatting() {
        for word in [
            0,
            1,
            9,
            10,
            15,
            0x1234_5678,
            0x9abc_def0,
            0xa0b0_c0d0,
            u32::MAX,
        ] {
            let digits = super::hex_digits(word);
            assert_eq!(std::str::from_utf8(&digits).unwrap(), format!("{word:08x}"));
        }
        for _ in 0..1000 {
            let word = fastrand::u32(..);
            let digits = super::hex_digits(word);
            assert_eq!(std::str::from_utf8(&digits).unwrap(), format!("{word:08x}"));
        }
    }
}
