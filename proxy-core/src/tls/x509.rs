//! The few certificate facts rustls does not hand out: validity dates, and the subject
//! as an RFC 4514 string. SANs come from `webpki` (already rustls's parser).
//!
//! A deliberately small DER reader: it walks only the path to `validity` and the
//! attribute values of a `Name`, never trusts a length it has not bounds-checked, and
//! returns `None` (never panics) on anything malformed. It runs at load/reload time on
//! operator files and once per handshake on a client certificate rustls has already
//! verified.

use std::fmt::Write as _;

use rustls_pki_types::CertificateDer;

/// What the proxy reports about one certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct CertFacts {
    /// `notAfter`, seconds since the Unix epoch.
    pub(crate) not_after: i64,
    /// `notBefore`, seconds since the Unix epoch.
    pub(crate) not_before: i64,
    /// The subject, RFC 4514 (most specific first: `CN=a,O=b,C=c`), as Envoy prints it.
    pub(crate) subject: String,
    /// DNS-name SANs, wildcards included (`*.example.com`).
    pub(crate) dns_names: Vec<String>,
    /// URI SANs (e.g. SPIFFE ids).
    pub(crate) uris: Vec<String>,
}

/// Parses `der`; `None` when it is not an X.509 v3 certificate this reader understands.
pub(crate) fn facts(der: &CertificateDer<'_>) -> Option<CertFacts> {
    let (not_before, not_after) = validity(der.as_ref())?;
    let (subject, dns_names, uris) = match webpki::EndEntityCert::try_from(der) {
        Ok(cert) => (
            format_name(cert.subject()).unwrap_or_default(),
            cert.valid_dns_names().map(str::to_owned).collect(),
            cert.valid_uri_names().map(str::to_owned).collect(),
        ),
        // webpki reads v3 end-entity certificates only; an old v1 certificate still has
        // dates, which is all a served chain needs from us.
        Err(_) => (String::new(), Vec::new(), Vec::new()),
    };
    Some(CertFacts {
        not_after,
        not_before,
        subject,
        dns_names,
        uris,
    })
}

const SEQUENCE: u8 = 0x30;
const SET: u8 = 0x31;
const INTEGER: u8 = 0x02;
const OID: u8 = 0x06;
const UTC_TIME: u8 = 0x17;
const GENERALIZED_TIME: u8 = 0x18;
/// `[0] EXPLICIT Version` in `TBSCertificate`.
const VERSION: u8 = 0xa0;

/// One DER element: tag, contents, and the whole encoding (for `#hex` values).
struct Element<'a> {
    tag: u8,
    contents: &'a [u8],
    encoded: &'a [u8],
}

/// Reads consecutive DER elements out of a byte slice.
struct Reader<'a> {
    rest: &'a [u8],
}

impl<'a> Reader<'a> {
    fn new(input: &'a [u8]) -> Self {
        Self { rest: input }
    }

    fn is_empty(&self) -> bool {
        self.rest.is_empty()
    }

    fn peek_tag(&self) -> Option<u8> {
        self.rest.first().copied()
    }

    fn next(&mut self) -> Option<Element<'a>> {
        let input = self.rest;
        let (&tag, after_tag) = input.split_first()?;
        if tag & 0x1f == 0x1f {
            return None; // high tag numbers never occur on the paths we walk
        }
        let (&first, mut after_len) = after_tag.split_first()?;
        let len = if first < 0x80 {
            usize::from(first)
        } else {
            let count = usize::from(first & 0x7f);
            if count == 0 || count > 4 {
                return None; // indefinite length (BER) or absurdly long
            }
            let (bytes, after) = split(after_len, count)?;
            after_len = after;
            bytes
                .iter()
                .fold(0usize, |len, &byte| (len << 8) | usize::from(byte))
        };
        let (contents, rest) = split(after_len, len)?;
        let header = input.len() - after_len.len();
        let encoded = input.get(..header.checked_add(len)?)?;
        self.rest = rest;
        Some(Element {
            tag,
            contents,
            encoded,
        })
    }

    fn expect(&mut self, tag: u8) -> Option<&'a [u8]> {
        let element = self.next()?;
        (element.tag == tag).then_some(element.contents)
    }
}

fn split(input: &[u8], at: usize) -> Option<(&[u8], &[u8])> {
    (at <= input.len()).then(|| input.split_at(at))
}

/// `(notBefore, notAfter)` of a DER certificate, in Unix seconds.
pub(crate) fn validity(cert: &[u8]) -> Option<(i64, i64)> {
    let certificate = Reader::new(cert).expect(SEQUENCE)?;
    let mut tbs = Reader::new(Reader::new(certificate).expect(SEQUENCE)?);
    if tbs.peek_tag() == Some(VERSION) {
        tbs.next()?;
    }
    tbs.expect(INTEGER)?; // serialNumber
    tbs.expect(SEQUENCE)?; // signature
    tbs.expect(SEQUENCE)?; // issuer
    let mut validity = Reader::new(tbs.expect(SEQUENCE)?);
    let not_before = time(validity.next()?)?;
    let not_after = time(validity.next()?)?;
    Some((not_before, not_after))
}

/// A DER `UTCTime` (`YYMMDDHHMMSSZ`) or `GeneralizedTime` (`YYYYMMDDHHMMSSZ`).
fn time(element: Element<'_>) -> Option<i64> {
    let text = element.contents;
    let (year, rest) = match element.tag {
        UTC_TIME if text.len() == 13 => {
            let yy = digits(text.get(..2)?)?;
            // RFC 5280 §4.1.2.5.1: 50..99 are 19xx, 00..49 are 20xx.
            (if yy >= 50 { 1900 + yy } else { 2000 + yy }, text.get(2..)?)
        }
        GENERALIZED_TIME if text.len() == 15 => (digits(text.get(..4)?)?, text.get(4..)?),
        _ => return None,
    };
    if rest.last() != Some(&b'Z') {
        return None;
    }
    let month = digits(rest.get(0..2)?)?;
    let day = digits(rest.get(2..4)?)?;
    let hour = digits(rest.get(4..6)?)?;
    let minute = digits(rest.get(6..8)?)?;
    let second = digits(rest.get(8..10)?)?;
    if !(1..=12).contains(&month)
        || !(1..=31).contains(&day)
        || hour > 23
        || minute > 59
        || second > 60
    {
        return None;
    }
    let days = days_from_civil(year, month, day);
    Some(days * 86_400 + hour * 3_600 + minute * 60 + second)
}

fn digits(text: &[u8]) -> Option<i64> {
    text.iter().try_fold(0i64, |value, &byte| {
        byte.is_ascii_digit()
            .then(|| value * 10 + i64::from(byte - b'0'))
    })
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let year = if month <= 2 { year - 1 } else { year };
    let era = year.div_euclid(400);
    let year_of_era = year - era * 400;
    let month_index = (month + 9) % 12; // March = 0
    let day_of_year = (153 * month_index + 2) / 5 + day - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    era * 146_097 + day_of_era - 719_468
}

/// `(year, month, day)` of a day count since 1970-01-01; the inverse of the above.
fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let days = days + 719_468;
    let era = days.div_euclid(146_097);
    let day_of_era = days - era * 146_097;
    let year_of_era =
        (day_of_era - day_of_era / 1_460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let month_index = (5 * day_of_year + 2) / 153;
    let day = day_of_year - (153 * month_index + 2) / 5 + 1;
    let month = if month_index < 10 {
        month_index + 3
    } else {
        month_index - 9
    };
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

/// `2025-01-31T23:59:59Z` for Unix seconds `secs`, for error messages and logs.
pub(crate) fn format_time(secs: i64) -> String {
    let (year, month, day) = civil_from_days(secs.div_euclid(86_400));
    let in_day = secs.rem_euclid(86_400);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        in_day / 3_600,
        in_day % 3_600 / 60,
        in_day % 60
    )
}

/// The contents of a DER `Name` (without its outer SEQUENCE header) as RFC 4514 text,
/// last RDN first, as OpenSSL's `XN_FLAG_RFC2253` (and so Envoy) prints it.
pub(crate) fn format_name(name: &[u8]) -> Option<String> {
    let mut rdns = Vec::new();
    let mut reader = Reader::new(name);
    while !reader.is_empty() {
        rdns.push(reader.expect(SET)?);
    }
    let mut out = String::new();
    for (index, rdn) in rdns.iter().rev().enumerate() {
        if index > 0 {
            out.push(',');
        }
        let mut attributes = Reader::new(rdn);
        let mut first = true;
        while !attributes.is_empty() {
            let mut attribute = Reader::new(attributes.expect(SEQUENCE)?);
            let oid = attribute.expect(OID)?;
            let value = attribute.next()?;
            if !first {
                out.push('+');
            }
            first = false;
            match short_name(oid) {
                Some(name) => out.push_str(name),
                None => out.push_str(&dotted_oid(oid)?),
            }
            out.push('=');
            match string_value(&value) {
                Some(text) => escape_value(&text, &mut out),
                None => {
                    // RFC 4514 §2.4: a value that is not a string is its BER, hex-encoded.
                    out.push('#');
                    for byte in value.encoded {
                        let _ = write!(out, "{byte:02x}");
                    }
                }
            }
        }
    }
    Some(out)
}

/// OpenSSL's short names for the attribute types seen in practice.
fn short_name(oid: &[u8]) -> Option<&'static str> {
    Some(match oid {
        [0x55, 0x04, 0x03] => "CN",
        [0x55, 0x04, 0x04] => "SN",
        [0x55, 0x04, 0x05] => "serialNumber",
        [0x55, 0x04, 0x06] => "C",
        [0x55, 0x04, 0x07] => "L",
        [0x55, 0x04, 0x08] => "ST",
        [0x55, 0x04, 0x09] => "street",
        [0x55, 0x04, 0x0a] => "O",
        [0x55, 0x04, 0x0b] => "OU",
        [0x55, 0x04, 0x0c] => "title",
        [0x55, 0x04, 0x2a] => "GN",
        [0x09, 0x92, 0x26, 0x89, 0x93, 0xf2, 0x2c, 0x64, 0x01, 0x01] => "UID",
        [0x09, 0x92, 0x26, 0x89, 0x93, 0xf2, 0x2c, 0x64, 0x01, 0x19] => "DC",
        [0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x09, 0x01] => "emailAddress",
        _ => return None,
    })
}

/// `2.5.4.3` for the DER contents of an OBJECT IDENTIFIER.
fn dotted_oid(oid: &[u8]) -> Option<String> {
    let mut arcs = Vec::new();
    let mut value: u64 = 0;
    let mut pending = false;
    for &byte in oid {
        value = value.checked_mul(128)? | u64::from(byte & 0x7f);
        pending = byte & 0x80 != 0;
        if !pending {
            arcs.push(value);
            value = 0;
        }
    }
    let (&first, rest) = arcs.split_first()?;
    if pending {
        return None;
    }
    let (a, b) = match first {
        0..=39 => (0, first),
        40..=79 => (1, first - 40),
        _ => (2, first - 80),
    };
    let mut out = format!("{a}.{b}");
    for arc in rest {
        let _ = write!(out, ".{arc}");
    }
    Some(out)
}

/// The text of a directory string, or `None` for other types (then printed as `#hex`).
fn string_value(value: &Element<'_>) -> Option<String> {
    let bytes = value.contents;
    match value.tag {
        // UTF8String, PrintableString, IA5String, VisibleString, NumericString
        0x0c | 0x13 | 0x16 | 0x1a | 0x12 => std::str::from_utf8(bytes).ok().map(str::to_owned),
        // TeletexString: in practice Latin-1, which is how OpenSSL shows it too.
        0x14 => Some(bytes.iter().map(|&b| char::from(b)).collect()),
        // BMPString: UCS-2 big-endian.
        0x1e => {
            let units: Vec<u16> = bytes
                .chunks(2)
                .map(|pair| match pair {
                    [hi, lo] => Some(u16::from_be_bytes([*hi, *lo])),
                    _ => None,
                })
                .collect::<Option<_>>()?;
            String::from_utf16(&units).ok()
        }
        // UniversalString: UCS-4 big-endian.
        0x1c => bytes
            .chunks(4)
            .map(|quad| match quad {
                [a, b, c, d] => char::from_u32(u32::from_be_bytes([*a, *b, *c, *d])),
                _ => None,
            })
            .collect(),
        _ => None,
    }
}

/// RFC 4514 §2.4 escaping of an attribute value.
fn escape_value(text: &str, out: &mut String) {
    let last = text.chars().count().saturating_sub(1);
    for (index, c) in text.chars().enumerate() {
        match c {
            '"' | '+' | ',' | ';' | '<' | '>' | '\\' => {
                out.push('\\');
                out.push(c);
            }
            '#' if index == 0 => out.push_str("\\#"),
            ' ' if index == 0 || index == last => out.push_str("\\ "),
            '\0' => out.push_str("\\00"),
            c if c.is_control() => {
                let mut buf = [0; 4];
                for byte in c.encode_utf8(&mut buf).bytes() {
                    let _ = write!(out, "\\{byte:02x}");
                }
            }
            c => out.push(c),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn certificate(params: rcgen::CertificateParams) -> CertificateDer<'static> {
        let key = rcgen::KeyPair::generate().unwrap();
        params.self_signed(&key).unwrap().der().clone()
    }

    #[test]
    fn reads_validity_subject_and_sans() {
        let mut params = rcgen::CertificateParams::new(vec![
            "a.example.com".to_owned(),
            "*.b.example.com".to_owned(),
        ])
        .unwrap();
        params.not_before = rcgen::date_time_ymd(2001, 2, 3);
        params.not_after = rcgen::date_time_ymd(2071, 12, 31);
        params.distinguished_name = rcgen::DistinguishedName::new();
        params
            .distinguished_name
            .push(rcgen::DnType::CountryName, "US");
        params
            .distinguished_name
            .push(rcgen::DnType::OrganizationName, "Acme, Inc.");
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, " client #1");
        params.subject_alt_names.push(rcgen::SanType::URI(
            "spiffe://example.org/ns/a/sa/b".try_into().unwrap(),
        ));
        let facts = facts(&certificate(params)).unwrap();
        assert_eq!(format_time(facts.not_before), "2001-02-03T00:00:00Z");
        // 2071 is past 2049, so this also covers GeneralizedTime.
        assert_eq!(format_time(facts.not_after), "2071-12-31T00:00:00Z");
        assert_eq!(facts.subject, r"CN=\ client #1,O=Acme\, Inc.,C=US");
        assert_eq!(facts.dns_names, ["a.example.com", "*.b.example.com"]);
        assert_eq!(facts.uris, ["spiffe://example.org/ns/a/sa/b"]);
    }

    #[test]
    fn truncated_or_corrupted_input_is_rejected_without_panicking() {
        let params = rcgen::CertificateParams::new(vec!["x.test".to_owned()]).unwrap();
        let der = certificate(params);
        let bytes = der.as_ref();
        assert!(validity(bytes).is_some());
        for len in 0..bytes.len() {
            let _ = validity(&bytes[..len]);
            let _ = facts(&CertificateDer::from(&bytes[..len]));
        }
        for index in 0..bytes.len() {
            let mut corrupt = bytes.to_vec();
            corrupt[index] ^= 0xff;
            let _ = validity(&corrupt);
            let _ = format_name(&corrupt[index..]);
        }
    }

    #[test]
    fn civil_dates_round_trip() {
        for days in [-800_000, -1, 0, 1, 11_016, 19_999, 2_932_896] {
            let (y, m, d) = civil_from_days(days);
            assert_eq!(days_from_civil(y, m, d), days, "{y}-{m}-{d}");
        }
        assert_eq!(format_time(0), "1970-01-01T00:00:00Z");
        assert_eq!(format_time(951_782_400), "2000-02-29T00:00:00Z");
    }

    #[test]
    fn unknown_attribute_types_print_dotted_and_non_strings_as_hex() {
        // SET { SEQUENCE { OID 1.2.3.4, INTEGER 5 } }
        let name = [
            0x31, 0x08, 0x30, 0x06, 0x06, 0x03, 0x2a, 0x03, 0x04, 0x02, 0x01, 0x05,
        ];
        // Lengths that disagree with the content (SET says 8, SEQUENCE 6): rejected.
        assert_eq!(format_name(&name), None);
        let name = [
            0x31, 0x0a, 0x30, 0x08, 0x06, 0x03, 0x2a, 0x03, 0x04, 0x02, 0x01, 0x05,
        ];
        assert_eq!(format_name(&name).as_deref(), Some("1.2.3.4=#020105"));
    }
}
