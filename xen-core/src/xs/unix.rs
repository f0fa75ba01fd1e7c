//! A Unix-socket XenStore transport (`std` only), for dom0 userspace talking to `/run/xenstored/socket`.

extern crate std;

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::Path as FsPath;
use std::time::Duration;

use super::transport::XsTransport;
use super::wire::Error;

/// The socket C xenstored and oxenstored listen on.
pub const DEFAULT_SOCKET: &str = "/run/xenstored/socket";

/// A connected xenstored socket.
#[derive(Debug)]
pub struct UnixTransport {
    stream: UnixStream,
}

impl UnixTransport {
    /// Connects to the socket at `path` (usually [`DEFAULT_SOCKET`]).
    pub fn connect(path: impl AsRef<FsPath>) -> std::io::Result<Self> {
        Ok(Self {
            stream: UnixStream::connect(path)?,
        })
    }

    /// Wraps an already connected stream (e.g. one end of a `UnixStream::pair` in tests).
    pub fn from_stream(stream: UnixStream) -> Self {
        Self { stream }
    }

    /// Bounds how long [`XsTransport::recv`] waits, so a dead daemon cannot hang the caller.
    pub fn set_timeout(&self, timeout: Option<Duration>) -> std::io::Result<()> {
        self.stream.set_read_timeout(timeout)?;
        self.stream.set_write_timeout(timeout)
    }
}

impl XsTransport for UnixTransport {
    fn send(&mut self, msg: &[u8]) -> Result<(), Error> {
        self.stream.write_all(msg).map_err(|_| Error::Transport)
    }

    fn recv(&mut self, buf: &mut [u8]) -> Result<usize, Error> {
        loop {
            match self.stream.read(buf) {
                Ok(n) => return Ok(n),
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(_) => return Err(Error::Transport),
            }
        }
    }

    fn try_recv(&mut self, buf: &mut [u8]) -> Result<usize, Error> {
        self.stream
            .set_nonblocking(true)
            .map_err(|_| Error::Transport)?;
        let r = self.stream.read(buf);
        self.stream
            .set_nonblocking(false)
            .map_err(|_| Error::Transport)?;
        match r {
            Ok(0) => Err(Error::Transport),
            Ok(n) => Ok(n),
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::Interrupted
                ) =>
            {
                Ok(0)
            }
            Err(_) => Err(Error::Transport),
        }
    }
}
