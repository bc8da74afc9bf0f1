//! Bounded reading for the line-based honeypots: every read has an idle
//! timeout, a line keeps at most `max` bytes (the rest is discarded as it
//! arrives), and a connection's total input is capped by the caller's `Take`.

use std::time::Duration;

use tokio::io::{AsyncBufRead, AsyncBufReadExt, AsyncRead, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

use super::Limits;

/// A connection split into a bounded buffered reader and a writer.
pub(crate) struct Conn {
    pub r: BufReader<tokio::io::Take<tokio::net::tcp::OwnedReadHalf>>,
    pub w: tokio::net::tcp::OwnedWriteHalf,
    pub idle: Duration,
    pub max_line: usize,
}

impl Conn {
    pub fn new(stream: TcpStream, limits: &Limits) -> Self {
        let (r, w) = stream.into_split();
        Self {
            r: BufReader::with_capacity(
                8192,
                tokio::io::AsyncReadExt::take(r, limits.max_session_bytes),
            ),
            w,
            idle: limits.idle_timeout,
            max_line: limits.max_line,
        }
    }

    /// The next line without its terminator, lossily decoded; `None` at
    /// end of input, on error, or after the idle timeout.
    pub async fn line(&mut self) -> Option<String> {
        read_line(&mut self.r, self.max_line, self.idle)
            .await
            .map(|b| String::from_utf8_lossy(&b).into_owned())
    }

    /// The next line as bytes.
    pub async fn raw_line(&mut self) -> Option<Vec<u8>> {
        read_line(&mut self.r, self.max_line, self.idle).await
    }

    /// Writes and flushes; false when the peer is gone or too slow.
    pub async fn send(&mut self, data: &[u8]) -> bool {
        write(&mut self.w, data, self.idle).await
    }
}

pub(crate) async fn write<W: AsyncWrite + Unpin>(w: &mut W, data: &[u8], idle: Duration) -> bool {
    matches!(
        tokio::time::timeout(idle, async {
            w.write_all(data).await?;
            w.flush().await
        })
        .await,
        Ok(Ok(()))
    )
}

/// Reads up to and excluding `\n` (and a `\r` before it), keeping at most
/// `max` bytes. Returns what was read when input ends without a newline.
pub(crate) async fn read_line<R: AsyncBufRead + Unpin>(
    r: &mut R,
    max: usize,
    idle: Duration,
) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    let mut seen_any = false;
    loop {
        let Ok(Ok(buf)) = tokio::time::timeout(idle, r.fill_buf()).await else {
            return None;
        };
        if buf.is_empty() {
            return seen_any.then_some(out);
        }
        seen_any = true;
        let (chunk, used, done) = match buf.iter().position(|&b| b == b'\n') {
            Some(i) => (&buf[..i], i + 1, true),
            None => (buf, buf.len(), false),
        };
        let room = max.saturating_sub(out.len());
        out.extend_from_slice(&chunk[..chunk.len().min(room)]);
        r.consume(used);
        if done {
            if out.last() == Some(&b'\r') {
                out.pop();
            }
            return Some(out);
        }
    }
}

/// Reads and discards exactly `n` bytes (or until input ends), keeping at
/// most `keep` of them.
pub(crate) async fn read_exact_capped<R: AsyncRead + Unpin>(
    r: &mut R,
    n: usize,
    keep: usize,
    idle: Duration,
) -> Option<Vec<u8>> {
    use tokio::io::AsyncReadExt;
    let mut out = Vec::with_capacity(n.min(keep));
    let mut left = n;
    let mut buf = [0u8; 4096];
    while left > 0 {
        let want = left.min(buf.len());
        let got = match tokio::time::timeout(idle, r.read(&mut buf[..want])).await {
            Ok(Ok(0) | Err(_)) | Err(_) => return None,
            Ok(Ok(g)) => g,
        };
        let room = keep.saturating_sub(out.len());
        out.extend_from_slice(&buf[..got.min(room)]);
        left -= got;
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn long_lines_are_cut_and_the_rest_skipped() {
        let data = format!("{}\r\nnext\npartial", "a".repeat(10_000));
        let mut r = BufReader::with_capacity(64, data.as_bytes());
        let t = Duration::from_secs(1);
        assert_eq!(read_line(&mut r, 100, t).await.unwrap().len(), 100);
        assert_eq!(read_line(&mut r, 100, t).await.unwrap(), b"next");
        assert_eq!(read_line(&mut r, 100, t).await.unwrap(), b"partial");
        assert_eq!(read_line(&mut r, 100, t).await, None);
    }
}
