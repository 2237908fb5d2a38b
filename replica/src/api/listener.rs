//! The replica's listeners, hardened: every accepted TCP connection takes
//! one of a bounded number of slots (past the limit a connection is closed
//! at once), a TLS handshake must finish within a timeout, and accept
//! errors (EMFILE, ENFILE, ECONNABORTED...) are logged and retried after a
//! pause: a listener never stops on them. What comes out is a stream of
//! ready connections for tonic, or a [`axum::serve::Listener`] for axum.
//!
//! Keepalive of idle HTTP/2 connections is the servers' job (set in
//! `cli/serve.rs`); this file only owns accepting.

use crate::metrics::Metrics;
use crate::security::reload::{Active, Tls};
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc};
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;
use tonic::transport::server::{Connected, TcpConnectInfo};

/// Connections one listener holds open at most, by default.
pub const DEFAULT_MAX_CONNECTIONS: usize = 4096;
/// How long a client may take to finish its TLS handshake.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// The pause after a failed accept (e.g. out of file descriptors).
const ACCEPT_ERROR_PAUSE: Duration = Duration::from_millis(100);

#[derive(Clone, Debug)]
pub struct ListenerOptions {
    /// `grpc` or `http`: the `listener` label of the metrics.
    pub name: &'static str,
    pub max_connections: usize,
    pub handshake_timeout: Duration,
}

impl ListenerOptions {
    pub fn new(name: &'static str) -> ListenerOptions {
        ListenerOptions {
            name,
            max_connections: DEFAULT_MAX_CONNECTIONS,
            handshake_timeout: HANDSHAKE_TIMEOUT,
        }
    }
}

/// A TCP connection holding its slot until it is dropped.
pub struct Limited {
    inner: TcpStream,
    _slot: OwnedSemaphorePermit,
    open: prometheus::IntGauge,
}

impl Drop for Limited {
    fn drop(&mut self) {
        self.open.dec();
    }
}

impl Connected for Limited {
    type ConnectInfo = TcpConnectInfo;

    fn connect_info(&self) -> TcpConnectInfo {
        self.inner.connect_info()
    }
}

impl AsyncRead for Limited {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl AsyncWrite for Limited {
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
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// Ready connections of one listener.
pub struct Incoming<IO> {
    ready: mpsc::Receiver<IO>,
    local: SocketAddr,
}

impl<IO> tokio_stream::Stream for Incoming<IO> {
    type Item = io::Result<IO>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.ready.poll_recv(cx).map(|c| c.map(Ok))
    }
}

impl<IO> axum::serve::Listener for Incoming<IO>
where
    IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    type Io = IO;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (IO, SocketAddr) {
        match self.ready.recv().await {
            Some(io) => (io, self.local),
            // The accept loop only ends when this side is gone.
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> io::Result<SocketAddr> {
        Ok(self.local)
    }
}

/// Plain TCP connections.
pub fn plain(
    listener: TcpListener,
    options: ListenerOptions,
    metrics: Metrics,
) -> Incoming<Limited> {
    accept_loop(
        listener,
        options,
        metrics,
        |tcp, _, _| async move { Some(tcp) },
    )
}

/// TLS connections, handshaken with the server configuration `which`
/// picks from the material current when the connection arrives.
pub fn tls(
    listener: TcpListener,
    tls: Arc<Tls>,
    which: fn(&Active) -> Arc<rustls::ServerConfig>,
    options: ListenerOptions,
    metrics: Metrics,
) -> Incoming<TlsStream<Limited>> {
    accept_loop(listener, options, metrics, move |tcp, options, metrics| {
        let acceptor = TlsAcceptor::from(which(&tls.current()));
        async move {
            let peer = tcp.inner.peer_addr().ok();
            let failed = |reason: &str| {
                metrics
                    .tls_handshake_failures
                    .with_label_values(&[options.name, reason])
                    .inc();
            };
            match tokio::time::timeout(options.handshake_timeout, acceptor.accept(tcp)).await {
                Ok(Ok(stream)) => Some(stream),
                Ok(Err(e)) => {
                    failed("error");
                    tracing::debug!(?peer, error = %e, listener = options.name, "TLS handshake failed");
                    None
                }
                Err(_) => {
                    failed("timeout");
                    tracing::debug!(?peer, listener = options.name, "TLS handshake timed out");
                    None
                }
            }
        }
    })
}

fn accept_loop<IO, F, Fut>(
    listener: TcpListener,
    options: ListenerOptions,
    metrics: Metrics,
    handshake: F,
) -> Incoming<IO>
where
    IO: Send + 'static,
    F: Fn(Limited, ListenerOptions, Metrics) -> Fut + Send + 'static,
    Fut: Future<Output = Option<IO>> + Send + 'static,
{
    let local = listener
        .local_addr()
        .unwrap_or_else(|_| SocketAddr::from(([0, 0, 0, 0], 0)));
    let (tx, ready) = mpsc::channel(256);
    let slots = Arc::new(Semaphore::new(options.max_connections));
    tokio::spawn(async move {
        let mut last_error_log: Option<Instant> = None;
        loop {
            let accepted = tokio::select! {
                _ = tx.closed() => return,
                accepted = listener.accept() => accepted,
            };
            let tcp = match accepted {
                Ok((tcp, _)) => tcp,
                Err(e) => {
                    metrics
                        .accept_errors
                        .with_label_values(&[options.name])
                        .inc();
                    if last_error_log.is_none_or(|t| t.elapsed() >= Duration::from_secs(10)) {
                        last_error_log = Some(Instant::now());
                        tracing::error!(
                            listener = options.name,
                            error = %e,
                            "cannot accept connections; retrying (out of file descriptors? raise the limit)"
                        );
                    }
                    tokio::time::sleep(ACCEPT_ERROR_PAUSE).await;
                    continue;
                }
            };
            let Ok(slot) = slots.clone().try_acquire_owned() else {
                metrics
                    .connections_refused
                    .with_label_values(&[options.name])
                    .inc();
                drop(tcp);
                continue;
            };
            let _ = tcp.set_nodelay(true);
            let open = metrics.connections_open.with_label_values(&[options.name]);
            open.inc();
            let tcp = Limited {
                inner: tcp,
                _slot: slot,
                open,
            };
            let tx = tx.clone();
            let ready = handshake(tcp, options.clone(), metrics.clone());
            tokio::spawn(async move {
                if let Some(io) = ready.await {
                    let _ = tx.send(io).await;
                }
            });
        }
    });
    Incoming { ready, local }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncReadExt;
    use tokio_stream::StreamExt;

    #[tokio::test]
    async fn connections_past_the_limit_are_closed_and_slots_come_back() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let metrics = Metrics::new();
        let options = ListenerOptions {
            max_connections: 2,
            ..ListenerOptions::new("grpc")
        };
        let mut incoming = plain(listener, options, metrics.clone());
        let _a = TcpStream::connect(addr).await.unwrap();
        let _b = TcpStream::connect(addr).await.unwrap();
        let first = incoming.next().await.unwrap().unwrap();
        let _second = incoming.next().await.unwrap().unwrap();
        let mut third = TcpStream::connect(addr).await.unwrap();
        let mut buf = [0u8; 1];
        let read = tokio::time::timeout(Duration::from_secs(10), third.read(&mut buf))
            .await
            .expect("the excess connection is closed, not left hanging");
        assert!(matches!(read, Ok(0) | Err(_)), "{read:?}");
        let refused = metrics.connections_refused.with_label_values(&["grpc"]);
        assert_eq!(refused.get(), 1);
        let open = metrics.connections_open.with_label_values(&["grpc"]);
        assert_eq!(open.get(), 2);
        drop(first);
        assert_eq!(open.get(), 1);
        let _d = TcpStream::connect(addr).await.unwrap();
        let fourth = tokio::time::timeout(Duration::from_secs(10), incoming.next()).await;
        assert!(
            matches!(fourth, Ok(Some(Ok(_)))),
            "a freed slot takes a new connection"
        );
    }
}
