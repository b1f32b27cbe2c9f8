//! `Date` on long-lived HTTP/2 connections.
//!
//! `h2`'s HPACK encoder puts a response field in the connection's dynamic table and, to
//! find a value already there, compares it with every entry of the same name, oldest
//! first. `Date` adds a value each second, so on a connection N seconds old a response
//! compares up to N stale dates (≈ 55 fit the default 4 KiB table), and each new date
//! evicts an entry other fields could have reused. A value marked sensitive is sent as a
//! literal the table never keeps (Huffman-coded each time), though it is still compared
//! with the dates already there.
//!
//! Measured through `bench-proxy` (callgrind, `h2load -c 50 -m 10`, 12-byte responses
//! from nginx), instructions per response:
//!
//! | `Date` | connections < 20 s old | 70–85 s old |
//! |---|---:|---:|
//! | always indexed (`h2`'s default) | 39.8k | 42.9k |
//! | always a literal | 40.1k | 40.0k |
//! | indexed for the first 15 s, a literal after (this module) | 39.9k | 41.1k |
//!
//! The table is the better deal while a connection is young (few dates to compare, and a
//! date repeated within its second costs one byte on the wire); after 15 s the walk costs
//! more than the Huffman coding. The last 1.1k is the walk over the 15 dates indexed
//! early, which stay in the table. The fix belongs in `h2` (a lookup that does not walk);
//! until then this bounds the cost.

use std::time::{Duration, Instant};

use http::{Response, header};

/// How long a connection lets `Date` into its HPACK table: about where the walk over
/// stale dates starts to cost more than Huffman-coding the literal.
const INDEXED_DATE_FOR: Duration = Duration::from_secs(15);

/// Marks `response`'s `Date` as a never-indexed literal once the connection accepted
/// at `accepted` is old enough for its HPACK table to hold many stale dates.
pub(super) fn keep_date_out_of_old_tables<B>(response: &mut Response<B>, accepted: Instant) {
    if accepted.elapsed() < INDEXED_DATE_FOR {
        return;
    }
    if let Some(date) = response.headers_mut().get_mut(header::DATE) {
        date.set_sensitive(true);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dated() -> Response<()> {
        let mut response = Response::new(());
        response.headers_mut().insert(
            header::DATE,
            http::HeaderValue::from_static("Sun, 22 Nov 2026 06:00:00 GMT"),
        );
        response
    }

    #[test]
    fn a_young_connection_indexes_date() {
        let mut response = dated();
        keep_date_out_of_old_tables(&mut response, Instant::now());
        assert!(!response.headers()[header::DATE].is_sensitive());
    }

    #[test]
    fn an_old_connection_sends_date_as_a_literal() {
        let Some(accepted) = Instant::now().checked_sub(INDEXED_DATE_FOR) else {
            return; // the monotonic clock started less than 15 s ago: nothing to test
        };
        let mut response = dated();
        keep_date_out_of_old_tables(&mut response, accepted);
        assert!(response.headers()[header::DATE].is_sensitive());
        // A response without `Date` is left alone (hyper adds its own).
        let mut bare = Response::new(());
        keep_date_out_of_old_tables(&mut bare, accepted);
        assert!(bare.headers().is_empty());
    }
}
