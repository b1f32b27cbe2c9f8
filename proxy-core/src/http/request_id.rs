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
    let mut bytes = fastrand::u128(..).to_be_bytes();
    bytes[6] = (bytes[6] & 0x0f) | 0x40; // version 4
    bytes[8] = (bytes[8] & 0x3f) | 0x80; // RFC 4122 variant
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut hex = [0u8; 32];
    for (pair, byte) in hex.chunks_exact_mut(2).zip(bytes) {
        pair[0] = HEX[usize::from(byte >> 4)];
        pair[1] = HEX[usize::from(byte & 0x0f)];
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
}
