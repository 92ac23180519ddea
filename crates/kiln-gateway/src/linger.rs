//! Lingering close: before a connection the gateway closes is dropped, what the client is still
//! sending is read and thrown away for a moment, so that the answer already written reaches it.
//!
//! A client (the edge, usually) may still be sending a request body when the gateway has answered
//! without reading it all: a `413` for a chunked body over `KILN_GATEWAY_MAX_BODY_MB`, a `400` for a
//! malformed one. hyper then closes the connection. Closing a socket with unread bytes in its
//! receive buffer makes the kernel send a reset instead of a FIN, and a reset that arrives before
//! the client has read the answer destroys it: nginx, streaming the body upstream, then reports a
//! `502` instead of the gateway's `413`. nginx itself avoids this the same way (`lingering_close`);
//! hyper does not, so this wrapper does it for the connections the gateway serves: on shutdown it
//! sends its FIN, then reads until the client closes too, nothing arrives for [`LINGER_IDLE`], or
//! [`LINGER_TIME`] or [`LINGER_BYTES`] is reached.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, ready};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::{Instant, Sleep};

/// The longest a closing connection is read from.
pub const LINGER_TIME: Duration = Duration::from_secs(5);
/// How long a closing connection may stay silent before it is dropped.
pub const LINGER_IDLE: Duration = Duration::from_secs(1);
/// The most a closing connection reads before it is dropped all the same.
pub const LINGER_BYTES: usize = 64 * 1024 * 1024;

/// A stream that lingers when shut down (see the module's documentation).
pub struct Lingering<S> {
    inner: S,
    state: State,
}

enum State {
    Open,
    Draining {
        until: Instant,
        idle: Pin<Box<Sleep>>,
        read: usize,
    },
    Closed,
}

impl<S> Lingering<S> {
    pub fn new(inner: S) -> Self {
        Lingering {
            inner,
            state: State::Open,
        }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Lingering<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncWrite for Lingering<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = &mut *self;
        loop {
            match &mut this.state {
                State::Open => {
                    // The FIN goes out after the answer; a client that closes in turn ends the wait.
                    ready!(Pin::new(&mut this.inner).poll_shutdown(cx))?;
                    this.state = State::Draining {
                        until: Instant::now() + LINGER_TIME,
                        idle: Box::pin(tokio::time::sleep(LINGER_IDLE)),
                        read: 0,
                    };
                }
                State::Draining { until, idle, read } => {
                    let mut scratch = [0u8; 8192];
                    let mut buf = ReadBuf::new(&mut scratch);
                    match Pin::new(&mut this.inner).poll_read(cx, &mut buf) {
                        Poll::Ready(Ok(())) if !buf.filled().is_empty() => {
                            *read += buf.filled().len();
                            if *read >= LINGER_BYTES || Instant::now() >= *until {
                                this.state = State::Closed;
                            } else {
                                let next = (Instant::now() + LINGER_IDLE).min(*until);
                                idle.as_mut().reset(next);
                            }
                        }
                        // The client closed its side too, or the connection is gone.
                        Poll::Ready(_) => this.state = State::Closed,
                        Poll::Pending => {
                            ready!(idle.as_mut().poll(cx));
                            this.state = State::Closed;
                        }
                    }
                }
                State::Closed => return Poll::Ready(Ok(())),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::{TcpListener, TcpStream};

    /// A server that answers before reading a large upload and closes: with lingering the client
    /// reads the answer whole; the upload is read and dropped meanwhile.
    #[tokio::test]
    async fn an_answer_written_before_the_upload_was_read_reaches_the_client() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let server = tokio::spawn(async move {
            let (stream, _) = listener.accept().await.unwrap();
            let mut stream = Lingering::new(stream);
            let mut head = [0u8; 16];
            stream.read_exact(&mut head).await.unwrap();
            let answer = b"HTTP/1.1 413 Payload Too Large\r\nContent-Length: 0\r\n\r\n";
            stream.write_all(answer).await.unwrap();
            let started = Instant::now();
            stream.shutdown().await.unwrap();
            started.elapsed()
        });
        // As the edge does: the whole upload is sent before the answer is read. It is far more than
        // the socket buffers hold, so unread bytes are still arriving when the server closes.
        let mut client = TcpStream::connect(addr).await.unwrap();
        let _ = client.write_all(b"POST / HTTP/1.1\r\n").await;
        let sent = client.write_all(&vec![b'x'; 8 * 1024 * 1024]).await;
        let mut answer = Vec::new();
        let read = client.read_to_end(&mut answer).await;
        assert!(
            sent.is_ok() && read.is_ok() && answer.starts_with(b"HTTP/1.1 413"),
            "sent: {sent:?}, read: {read:?}, answer: {}",
            String::from_utf8_lossy(&answer)
        );
        let lingered = server.await.unwrap();
        assert!(
            lingered < LINGER_TIME + Duration::from_secs(1),
            "{lingered:?}"
        );
    }

    #[tokio::test]
    async fn a_silent_client_is_let_go_after_the_idle_time() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let _client = TcpStream::connect(addr).await.unwrap();
        let (stream, _) = listener.accept().await.unwrap();
        let mut stream = Lingering::new(stream);
        let started = Instant::now();
        stream.shutdown().await.unwrap();
        let took = started.elapsed();
        assert!(took >= LINGER_IDLE && took < LINGER_IDLE * 3, "{took:?}");
    }
}
