//! What a worker lends to the connections it serves: read and write buffers, held only
//! while bytes are in them. Downstream, a connection borrows its read buffer when the
//! client's bytes arrive and gives it back between requests (`server::h1`); upstream, a
//! connection gives back a buffer grown for a large response once it is consumed, and
//! borrows one when the origin's next bytes arrive (`upstream::h1`); one whose block
//! is still shared by what was read into it goes back too, for its free end to take
//! the next reads. What a worker
//! holds is then set by how many messages are being read at one instant — on a
//! single-threaded worker, one or two — not by how many connections wait. A busy
//! worker also cycles through the same few blocks, which stay in cache.
//!
//! Workers are single-threaded runtimes, so a thread-local list is each worker's own,
//! with no contention. What a worker keeps is bounded: [`KEPT_BUFFERS`] of each kind.

use std::cell::RefCell;
use std::thread::LocalKey;

use bytes::BytesMut;

/// Buffers of each kind a worker keeps for its next requests; more are freed. Idle
/// client connections give theirs back, so this is what 10,000 of them still cost.
const KEPT_BUFFERS: usize = 64;

/// The block that successive response reads fill while what was read before still
/// waits to be sent (see [`read_buffer`]). Larger than a connection's own buffer: each
/// new block is an allocation of a size glibc serves slowly (≈ 9 k instructions,
/// consolidating its small-block lists), and a 32 KiB one takes a hundred small
/// responses.
const SHARED_READS_BLOCK: usize = 32 * 1024;

/// What a read buffer is for. Each kind has its own list: a response buffer grows to
/// the size of the responses read into it (a 16 KiB body is read whole, in one system
/// call), and handed to a client connection for its requests' heads it would be wasted
/// there while a response read got a small one and had to grow it again — two reads
/// and a copy of the first half per 16 KiB response, measured.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Reading {
    /// Requests, off client connections.
    Requests,
    /// Responses, off origin connections.
    Responses,
}

impl Reading {
    fn list(self) -> &'static LocalKey<RefCell<Vec<BytesMut>>> {
        match self {
            Reading::Requests => &REQUEST_BUFFERS,
            Reading::Responses => &RESPONSE_BUFFERS,
        }
    }

    /// The block that replaces a returned buffer too short for the next read whose
    /// block is still shared. Responses relayed to HTTP/2 clients leave their blocks
    /// shared for a while, every one of them; a client connection's request head
    /// rarely does, and gets a block of its usual size.
    fn replacement(self, block: usize) -> usize {
        match self {
            Reading::Requests => block,
            Reading::Responses => SHARED_READS_BLOCK,
        }
    }
}

thread_local! {
    static REQUEST_BUFFERS: RefCell<Vec<BytesMut>> = const { RefCell::new(Vec::new()) };
    static RESPONSE_BUFFERS: RefCell<Vec<BytesMut>> = const { RefCell::new(Vec::new()) };
    static WRITE_BUFFERS: RefCell<Vec<Vec<u8>>> = const { RefCell::new(Vec::new()) };
}

/// The last value put on a worker's `list`, if any.
fn take<T>(list: &'static LocalKey<RefCell<Vec<T>>>) -> Option<T> {
    // `try_with` fails only while the thread exits; then nothing is kept.
    list.try_with(|list| list.borrow_mut().pop()).ok().flatten()
}

/// Keeps `value` on a worker's `list` unless it holds `kept` already.
pub(crate) fn give<T>(list: &'static LocalKey<RefCell<Vec<T>>>, value: T, kept: usize) {
    let _ = list.try_with(|list| {
        let mut list = list.borrow_mut();
        if list.len() < kept {
            list.push(value);
        }
    });
}

/// An empty read buffer with at least `room` bytes free: the last one returned if it
/// has that much (still in cache; and taking the same few again leaves the rest
/// unused), else a new block of `block` bytes (or `room`, if larger).
///
/// A returned buffer may be the free end of a block whose start still backs field
/// values or body chunks on their way out: reading into that end is safe (it is this
/// buffer's alone), so successive small reads fill one block, as in an arena, and the
/// block is freed when the last of them is sent. When that end is too short and the
/// block still shared, the next reads go to a new one (for responses, a
/// [`SHARED_READS_BLOCK`]).
pub(crate) fn read_buffer(reading: Reading, room: usize, block: usize) -> BytesMut {
    match take(reading.list()) {
        Some(mut buffer) => {
            // Its free end, or the whole block once nothing else shares it.
            if buffer.try_reclaim(room) {
                buffer
            } else {
                BytesMut::with_capacity(room.max(reading.replacement(block)))
            }
        }
        None => BytesMut::with_capacity(room.max(block)),
    }
}

/// Returns a read buffer; what it holds is discarded.
pub(crate) fn give_read_buffer(reading: Reading, mut buffer: BytesMut) {
    if buffer.capacity() > 0 {
        buffer.clear();
        give(reading.list(), buffer, KEPT_BUFFERS);
    }
}

pub(crate) fn write_buffer() -> Vec<u8> {
    take(&WRITE_BUFFERS).unwrap_or_default()
}

pub(crate) fn give_write_buffer(mut buffer: Vec<u8>) {
    if buffer.capacity() > 0 {
        buffer.clear();
        give(&WRITE_BUFFERS, buffer, KEPT_BUFFERS);
    }
}

/// Read buffers of `reading`'s kind this thread keeps.
#[cfg(test)]
pub(crate) fn kept_for_tests(reading: Reading) -> usize {
    reading.list().with(|list| list.borrow().len())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_returned_read_buffer_is_lent_again_empty() {
        let mut buffer = read_buffer(Reading::Requests, 8192, 8192);
        buffer.extend_from_slice(b"GET / HTTP/1.1\r\n");
        let block = buffer.as_ptr();
        give_read_buffer(Reading::Requests, buffer);
        let again = read_buffer(Reading::Requests, 8192, 8192);
        assert!(again.is_empty());
        assert!(again.capacity() >= 8192);
        assert_eq!(
            again.as_ptr(),
            block,
            "the block is reused, not reallocated"
        );
    }

    #[test]
    fn a_buffer_still_shared_by_field_values_is_not_overwritten() {
        let mut buffer = read_buffer(Reading::Requests, 8192, 8192);
        buffer.extend_from_slice(b"host: a\r\n");
        let field = buffer.split_to(7).freeze();
        give_read_buffer(Reading::Requests, buffer);
        let mut again = read_buffer(Reading::Requests, 8192, 8192);
        again.extend_from_slice(b"xxxxxxxxxxxxxxxx");
        assert_eq!(&field[..], b"host: a");
    }

    #[test]
    fn what_a_worker_keeps_is_bounded() {
        std::thread::spawn(|| {
            for _ in 0..KEPT_BUFFERS * 2 {
                give_write_buffer(Vec::with_capacity(16));
            }
            let kept = WRITE_BUFFERS.with(|list| list.borrow().len());
            assert_eq!(kept, KEPT_BUFFERS);
        })
        .join()
        .unwrap();
    }
}
