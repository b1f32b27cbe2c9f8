use std::task::{Context, Poll, ready};

use bytes::Bytes;
use http_body::{Frame, SizeHint};

use super::decode::{Decoded, Decoder};
use super::exchange::{Exchanged, Upload};
use super::{Connection, Error};
use crate::upstream::Pool;

/// A response body read straight off its connection. When the body is complete the
/// connection goes back to its endpoint's pool (if it may carry another request);
/// dropped earlier, it closes with the body, because unread response bytes would
/// corrupt the next exchange.
#[derive(Debug)]
pub(crate) struct ResponseStream {
    /// `None` once the body has ended.
    conn: Option<Box<Connection>>,
    decoder: Decoder,
    keep_alive: bool,
    pool: Pool,
    /// An error held back for one poll; see [`Self::fail`].
    failed: Option<Error>,
    /// The rest of the request, when the response began before it was all sent.
    upload: Option<Box<Upload>>,
}

impl ResponseStream {
    pub(crate) fn new(exchanged: Exchanged, pool: Pool) -> (http::response::Parts, Self) {
        let Exchanged {
            head,
            conn,
            decoder,
            keep_alive,
            upload,
        } = exchanged;
        (head, Self::start(conn, decoder, keep_alive, pool, upload))
    }

    pub(crate) fn start(
        conn: Box<Connection>,
        decoder: Decoder,
        keep_alive: bool,
        pool: Pool,
        upload: Option<Box<Upload>>,
    ) -> Self {
        let mut stream = Self {
            conn: Some(conn),
            decoder,
            keep_alive,
            pool,
            failed: None,
            upload,
        };
        if stream.decoder.is_done() {
            stream.finish();
        }
        stream
    }

    pub(crate) fn is_end_stream(&self) -> bool {
        self.decoder.is_done() && self.failed.is_none()
    }

    /// The connection is back in its pool, or closed: after the poll that ends the
    /// body (or reports its error), or at once for a body that was complete with its
    /// head.
    pub(crate) fn is_settled(&self) -> bool {
        self.conn.is_none()
    }

    pub(crate) fn size_hint(&self) -> SizeHint {
        self.decoder.size_hint()
    }

    pub(crate) fn poll_frame(
        &mut self,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Error>>> {
        if let Some(error) = self.failed.take() {
            return Poll::Ready(Some(Err(error)));
        }
        loop {
            let Some(conn) = self.conn.as_mut() else {
                return Poll::Ready(None);
            };
            if let Some(upload) = self.upload.as_mut() {
                match upload.poll(conn, cx) {
                    Poll::Ready(Ok(())) => self.upload = None,
                    // The client's body broke off: the origin will not see a whole
                    // request, so neither does the client get a whole response.
                    Poll::Ready(Err(error @ Error::RequestBody(_))) => return self.fail(error, cx),
                    // The origin stopped reading; what it still sends is the answer,
                    // and the connection, half a request written, carries no other.
                    Poll::Ready(Err(error)) => {
                        tracing::debug!(%error, "origin stopped taking the request body");
                        self.upload = None;
                        self.keep_alive = false;
                    }
                    Poll::Pending => {}
                }
            }
            match self.decoder.decode(&mut conn.read_buf) {
                // The last frame: the connection is released at the next poll or when
                // the body is dropped, once the frame's bytes (which share its read
                // buffer) have usually gone out, so the buffer goes back to the worker
                // free for the next read instead of staying with the idle connection.
                Ok(Decoded::Frame(frame)) => return Poll::Ready(Some(Ok(frame))),
                Ok(Decoded::End) => {
                    self.finish();
                    return Poll::Ready(None);
                }
                Ok(Decoded::More) => {}
                Err(error) => return self.fail(error, cx),
            }
            let want = self.decoder.read_hint();
            match ready!(conn.poll_fill(cx, want)) {
                Ok(0) if matches!(self.decoder, Decoder::UntilClose) => {
                    self.decoder = Decoder::Done;
                    self.keep_alive = false;
                    self.finish();
                    return Poll::Ready(None);
                }
                Ok(0) => return self.fail(Error::Closed, cx),
                Ok(_) => {}
                Err(error) => return self.fail(error.into(), cx),
            }
        }
    }

    /// The body is complete: the connection goes back to the pool if nothing else is
    /// pending on it. A request still going out when its response ended (the origin
    /// answered early) is cut off with the connection: the client has its answer, and
    /// a connection with half a request written carries no other.
    fn finish(&mut self) {
        let Some(conn) = self.conn.take() else {
            return;
        };
        let uploaded = self.upload.take().is_none();
        release(conn, self.keep_alive && uploaded, &self.pool);
    }

    /// Closes the connection and reports `error` on the next poll, not this one: the
    /// downstream codec flushes what it has buffered when a body is pending, so the
    /// client gets the head and the data that arrived intact before the connection is
    /// cut, whether the bad bytes came in the same read or a later one.
    fn fail<T>(&mut self, error: Error, cx: &mut Context<'_>) -> Poll<T> {
        self.conn = None;
        self.decoder = Decoder::Done;
        self.failed = Some(error);
        cx.waker().wake_by_ref();
        Poll::Pending
    }
}

impl Drop for ResponseStream {
    /// A body whose last frame was taken releases its connection here if it was not
    /// polled again. A body dropped unread whose remaining bytes have all arrived
    /// already (a small response, read with its head, whose client went away before
    /// the body was polled) is as good as read: the connection goes back to the pool
    /// instead of closing. Any other unfinished body closes it.
    fn drop(&mut self) {
        let Some(conn) = self.conn.as_mut() else {
            return;
        };
        if self.decoder.is_done() {
            self.finish();
        } else if let Decoder::Length(left) = self.decoder
            && conn.read_buf.len() as u64 == left
        {
            conn.read_buf.clear();
            self.decoder = Decoder::Done;
            self.finish();
        }
    }
}

/// A connection whose response has been read whole: back to `pool` if it may carry
/// another request, closed otherwise. Bytes past the end of the response were never
/// asked for: the origin is confused or hostile, and the connection is not reused.
pub(super) fn release(mut conn: Box<Connection>, keep_alive: bool, pool: &Pool) {
    if keep_alive && conn.read_buf.is_empty() {
        conn.lend_back_read_buf();
        pool.put(conn);
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    use tokio::net::UnixStream;

    use super::super::{Connection, send};
    use super::*;
    use crate::cluster::{Cluster, ClusterOptions};
    use crate::http::RequestBody;
    use crate::net::Stream;

    /// The idle connections left in the pool after a response to a `GET` is taken as
    /// `raw` and its body dropped without a poll. The origin keeps its side open.
    async fn pooled_after_dropping_the_body(raw: &'static str) -> usize {
        let cluster = Cluster::new("dropped", Vec::new(), ClusterOptions::DEFAULT);
        let (client, mut origin) = UnixStream::pair().unwrap();
        let conn = Connection::new(Stream::Unix(client), cluster.open_connection_for_tests());
        let (parts, ()) = http::Request::get("/")
            .header("host", "o")
            .body(())
            .unwrap()
            .into_parts();
        let pool = Pool::new(4, Duration::from_secs(60));
        let answer = async {
            let mut request = vec![0; 4096];
            let _ = origin.read(&mut request).await.unwrap();
            origin.write_all(raw.as_bytes()).await.unwrap();
        };
        let (mut body, mut in_flight) = (RequestBody::empty(), None);
        let (exchanged, ()) =
            tokio::join!(send(conn, &parts, &mut body, &pool, &mut in_flight), answer);
        let exchanged = exchanged.unwrap();
        let (_, stream) = ResponseStream::new(exchanged, pool.clone());
        drop(stream);
        let pooled = pool.idle_count();
        drop(origin);
        pooled
    }

    /// Sends `GET /` on `conn`, answers with `raw` from `origin`, and reads the whole
    /// body; the connection goes back to `pool`. Returns the body's length.
    async fn exchange(
        conn: Box<Connection>,
        origin: &mut UnixStream,
        raw: &[u8],
        pool: &Pool,
    ) -> usize {
        let mut read = 0;
        exchange_with(conn, origin, raw, pool, |frame| read += frame.len()).await;
        read
    }

    /// [`exchange`], returning the body's frames, still held (as an HTTP/2 connection
    /// holds them until its next write) when the connection is released.
    async fn exchange_keeping_frames(
        conn: Box<Connection>,
        origin: &mut UnixStream,
        raw: &[u8],
        pool: &Pool,
    ) -> Vec<bytes::Bytes> {
        let mut frames = Vec::new();
        exchange_with(conn, origin, raw, pool, |frame| frames.push(frame)).await;
        frames
    }

    async fn exchange_with(
        conn: Box<Connection>,
        origin: &mut UnixStream,
        raw: &[u8],
        pool: &Pool,
        mut on_frame: impl FnMut(bytes::Bytes),
    ) {
        let (parts, ()) = http::Request::get("/")
            .header("host", "o")
            .body(())
            .unwrap()
            .into_parts();
        let answer = async {
            let mut request = vec![0; 4096];
            let _ = origin.read(&mut request).await.unwrap();
            origin.write_all(raw).await.unwrap();
        };
        let (mut body, mut in_flight) = (RequestBody::empty(), None);
        let (exchanged, ()) =
            tokio::join!(send(conn, &parts, &mut body, pool, &mut in_flight), answer);
        let (_, mut stream) = ResponseStream::new(exchanged.unwrap(), pool.clone());
        while let Some(frame) = std::future::poll_fn(|cx| stream.poll_frame(cx)).await {
            on_frame(frame.unwrap().into_data().unwrap());
        }
    }

    #[tokio::test]
    async fn a_block_still_shared_goes_back_and_the_next_response_fills_its_free_end() {
        let cluster = Cluster::new("shared", Vec::new(), ClusterOptions::DEFAULT);
        let pool = Pool::new(4, Duration::from_secs(60));
        let lent = || crate::lent::kept_for_tests(crate::lent::Reading::Responses);
        let before = lent();
        let (client_a, mut origin_a) = UnixStream::pair().unwrap();
        let (client_b, mut origin_b) = UnixStream::pair().unwrap();
        let a = Connection::new(Stream::Unix(client_a), cluster.open_connection_for_tests());
        let b = Connection::new(Stream::Unix(client_b), cluster.open_connection_for_tests());
        let small = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok";

        let first = exchange_keeping_frames(a, &mut origin_a, small, &pool).await;
        let a = pool.checkout().expect("kept alive");
        assert!(
            !a.has_buffer,
            "an idle connection does not pin a block its response still shares"
        );
        assert_eq!(lent(), before + 1);

        let second = exchange_keeping_frames(b, &mut origin_b, small, &pool).await;
        let (first, second) = (&first[0], &second[0]);
        assert_eq!((&first[..], &second[..]), (&b"ok"[..], &b"ok"[..]));
        let gap = second.as_ptr().addr().wrapping_sub(first.as_ptr().addr());
        assert!(
            (small.len()..4096).contains(&gap),
            "the second response was read into the first one's block, right after it \
             ({gap} bytes on)"
        );
        drop(a);
    }

    #[tokio::test]
    async fn a_grown_read_buffer_goes_back_to_the_worker_and_a_head_sized_one_stays() {
        let cluster = Cluster::new("lent", Vec::new(), ClusterOptions::DEFAULT);
        let (client, mut origin) = UnixStream::pair().unwrap();
        let conn = Connection::new(Stream::Unix(client), cluster.open_connection_for_tests());
        let pool = Pool::new(4, Duration::from_secs(60));
        let lent = || crate::lent::kept_for_tests(crate::lent::Reading::Responses);
        let before = lent();

        let small = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok";
        assert_eq!(exchange(conn, &mut origin, small, &pool).await, 2);
        let conn = pool.checkout().expect("kept alive");
        assert!(
            conn.has_buffer,
            "a head-sized buffer stays with its connection"
        );
        assert_eq!(lent(), before);

        let mut large = b"HTTP/1.1 200 OK\r\ncontent-length: 16384\r\n\r\n".to_vec();
        large.resize(large.len() + 16384, b'x');
        assert_eq!(exchange(conn, &mut origin, &large, &pool).await, 16384);
        let conn = pool.checkout().expect("kept alive");
        assert!(
            !conn.has_buffer,
            "a grown buffer goes back once the body is read"
        );
        assert_eq!(lent(), before + 1);

        // The next response is read into a borrowed buffer with room for all of it.
        assert_eq!(exchange(conn, &mut origin, &large, &pool).await, 16384);
        assert_eq!(lent(), before + 1, "borrowed and given back again");
        let conn = pool.checkout().expect("kept alive");
        assert_eq!(conn.read_size, large.len());
    }

    #[tokio::test]
    async fn a_body_dropped_unread_keeps_the_connection_only_when_all_of_it_arrived() {
        let whole = "HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok";
        assert_eq!(pooled_after_dropping_the_body(whole).await, 1);
        let partial = "HTTP/1.1 200 OK\r\ncontent-length: 4\r\n\r\nok";
        assert_eq!(pooled_after_dropping_the_body(partial).await, 0);
        let chunked = "HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n";
        assert_eq!(pooled_after_dropping_the_body(chunked).await, 0);
    }
}
