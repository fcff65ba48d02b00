//! Where a device's lines go: a file (or stdout, or nowhere), a socket, or
//! syslog. A sink opens lazily, writes a batch of lines at once and, for a
//! file, fsyncs once per batch. A failed write closes it, so the next batch
//! opens (or connects) again.
//!
//! File I/O runs on the blocking pool; network writes are bounded by the
//! device's `write_timeout`.

use std::future::Future;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use tokio::io::AsyncWriteExt;
use tokio::net::{TcpStream, UdpSocket};

use crate::options::{SinkSpec, SocketType, SYSLOG_SEVERITY};

/// The local syslog socket.
pub const DEV_LOG: &str = "/dev/log";

/// How long a syslog datagram may take to send.
const SYSLOG_TIMEOUT: Duration = Duration::from_secs(2);

/// One device's destination.
pub enum Sink {
    /// Writes nothing, always succeeds.
    Discard,
    /// This process's standard output.
    Stdout,
    File(FileSink),
    Socket(SocketSink),
    Syslog(SyslogSink),
    /// A stored device whose options no longer validate: every write fails
    /// (so it counts as failed, never as silently recording).
    Broken(String),
}

impl Sink {
    /// An unopened sink for `spec`.
    pub fn new(spec: &SinkSpec) -> Sink {
        match spec {
            SinkSpec::Discard => Sink::Discard,
            SinkSpec::Stdout => Sink::Stdout,
            SinkSpec::File { path, mode } => Sink::File(FileSink {
                path: path.clone(),
                mode: *mode,
                file: None,
            }),
            SinkSpec::Socket {
                address,
                socket_type,
                write_timeout,
            } => Sink::Socket(SocketSink {
                address: address.clone(),
                socket_type: *socket_type,
                timeout: *write_timeout,
                conn: None,
            }),
            SinkSpec::Syslog {
                facility,
                tag,
                address,
            } => Sink::Syslog(SyslogSink {
                priority: u16::from(*facility) * 8 + u16::from(SYSLOG_SEVERITY),
                tag: tag.clone(),
                address: address.clone(),
                hostname: hostname(),
                conn: None,
            }),
        }
    }

    /// Opens (or connects) now if not open yet. The error names the
    /// destination and the reason, for the sanity check at enable.
    pub async fn open(&mut self) -> Result<(), String> {
        match self {
            Sink::Discard | Sink::Stdout => Ok(()),
            Sink::File(f) => f.open().await.map_err(|e| {
                format!(
                    "unable to open {:?} for writing: {e}",
                    f.path.to_string_lossy()
                )
            }),
            Sink::Socket(s) => s
                .open()
                .await
                .map_err(|e| format!("unable to connect to {:?}: {e}", s.address)),
            Sink::Syslog(s) => s.open().await.map_err(|e| {
                format!(
                    "unable to open syslog at {:?}: {e}",
                    s.address.as_deref().unwrap_or(DEV_LOG)
                )
            }),
            Sink::Broken(reason) => Err(reason.clone()),
        }
    }

    /// Writes `lines` (each ending in `\n`) and, for a file, fsyncs; all or
    /// nothing as far as the caller is concerned.
    pub async fn write(&mut self, lines: &[Vec<u8>]) -> io::Result<()> {
        match self {
            Sink::Discard => Ok(()),
            Sink::Stdout => {
                let buf = lines.concat();
                blocking(move || {
                    let mut out = io::stdout().lock();
                    out.write_all(&buf)?;
                    out.flush()
                })
                .await
            }
            Sink::File(f) => f.write(lines).await,
            Sink::Socket(s) => s.write(lines).await,
            Sink::Syslog(s) => s.write(lines).await,
            Sink::Broken(reason) => Err(io::Error::other(reason.clone())),
        }
    }

    /// Closes and opens again (log rotation). Devices other than files and
    /// sockets have nothing to reopen.
    pub async fn reopen(&mut self) -> Result<(), String> {
        match self {
            Sink::File(f) => f.file = None,
            Sink::Socket(s) => s.conn = None,
            _ => return Ok(()),
        }
        self.open().await
    }

    /// Closes whatever is open (writes are synced already).
    pub fn close(&mut self) {
        match self {
            Sink::File(f) => f.file = None,
            Sink::Socket(s) => s.conn = None,
            Sink::Syslog(s) => s.conn = None,
            _ => {}
        }
    }
}

/// Runs blocking I/O on the blocking pool.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> io::Result<T> + Send + 'static,
) -> io::Result<T> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| io::Error::other(format!("I/O task failed: {e}")))?
}

/// Bounds `fut` by `limit` (zero: unbounded).
async fn timed<T>(limit: Duration, fut: impl Future<Output = io::Result<T>>) -> io::Result<T> {
    if limit.is_zero() {
        return fut.await;
    }
    tokio::time::timeout(limit, fut)
        .await
        .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "timed out"))?
}

/// A file opened for append.
pub struct FileSink {
    path: PathBuf,
    mode: u32,
    file: Option<Arc<std::fs::File>>,
}

impl FileSink {
    async fn open(&mut self) -> io::Result<()> {
        if self.file.is_none() {
            let (path, mode) = (self.path.clone(), self.mode);
            let file = blocking(move || open_append(&path, mode)).await?;
            self.file = Some(Arc::new(file));
        }
        Ok(())
    }

    async fn write(&mut self, lines: &[Vec<u8>]) -> io::Result<()> {
        self.open().await?;
        let Some(file) = self.file.clone() else {
            return Err(io::Error::other("file not open"));
        };
        let buf = lines.concat();
        let written = blocking(move || {
            (&*file).write_all(&buf)?;
            file.sync_data()
        })
        .await;
        if written.is_err() {
            self.file = None;
        }
        written
    }
}

/// Opens `path` for append, creating it with `mode` (0: 0600); a non-zero
/// `mode` is also applied to an existing regular file, as Vault does.
fn open_append(path: &Path, mode: u32) -> io::Result<std::fs::File> {
    let mut options = std::fs::OpenOptions::new();
    options.create(true).append(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
        options.mode(if mode == 0 { 0o600 } else { mode });
        let file = options.open(path)?;
        let meta = file.metadata()?;
        // Only regular files: never chmod a device such as /dev/null.
        if mode != 0 && meta.is_file() && meta.permissions().mode() & 0o7777 != mode {
            file.set_permissions(std::fs::Permissions::from_mode(mode))?;
        }
        Ok(file)
    }
    #[cfg(not(unix))]
    {
        let _ = mode;
        options.open(path)
    }
}

enum Conn {
    Tcp(TcpStream),
    Udp(UdpSocket),
    #[cfg(unix)]
    Unix(tokio::net::UnixStream),
}

/// A TCP, UDP or unix stream socket. UDP sends one datagram per line.
pub struct SocketSink {
    address: String,
    socket_type: SocketType,
    timeout: Duration,
    conn: Option<Conn>,
}

impl SocketSink {
    async fn open(&mut self) -> io::Result<()> {
        if self.conn.is_none() {
            let conn = timed(self.timeout, self.connect()).await?;
            self.conn = Some(conn);
        }
        Ok(())
    }

    async fn connect(&self) -> io::Result<Conn> {
        match self.socket_type {
            SocketType::Tcp => {
                let stream = TcpStream::connect(&self.address).await?;
                stream.set_nodelay(true)?;
                Ok(Conn::Tcp(stream))
            }
            SocketType::Udp => Ok(Conn::Udp(udp_connect(&self.address).await?)),
            #[cfg(unix)]
            SocketType::Unix => Ok(Conn::Unix(
                tokio::net::UnixStream::connect(&self.address).await?,
            )),
            #[cfg(not(unix))]
            SocketType::Unix => Err(io::Error::new(
                io::ErrorKind::Unsupported,
                "unix sockets are not supported on this platform",
            )),
        }
    }

    /// Writes the batch; on a broken connection, reconnects once and tries
    /// again before failing.
    async fn write(&mut self, lines: &[Vec<u8>]) -> io::Result<()> {
        let was_connected = self.conn.is_some();
        let first = self.try_write(lines).await;
        let result = match first {
            Err(_) if was_connected => {
                self.conn = None;
                self.try_write(lines).await
            }
            other => other,
        };
        if result.is_err() {
            self.conn = None;
        }
        result
    }

    async fn try_write(&mut self, lines: &[Vec<u8>]) -> io::Result<()> {
        self.open().await?;
        let timeout = self.timeout;
        match &mut self.conn {
            Some(Conn::Tcp(s)) => timed(timeout, s.write_all(&lines.concat())).await,
            #[cfg(unix)]
            Some(Conn::Unix(s)) => timed(timeout, s.write_all(&lines.concat())).await,
            Some(Conn::Udp(s)) => {
                for line in lines {
                    timed(timeout, s.send(line)).await?;
                }
                Ok(())
            }
            None => Err(io::Error::other("not connected")),
        }
    }
}

/// A UDP socket connected to `address` (resolved now).
async fn udp_connect(address: &str) -> io::Result<UdpSocket> {
    let mut last = None;
    for addr in tokio::net::lookup_host(address).await? {
        let local = if addr.is_ipv4() {
            "0.0.0.0:0"
        } else {
            "[::]:0"
        };
        let attempt = async {
            let socket = UdpSocket::bind(local).await?;
            socket.connect(addr).await?;
            Ok::<_, io::Error>(socket)
        };
        match attempt.await {
            Ok(socket) => return Ok(socket),
            Err(e) => last = Some(e),
        }
    }
    Err(last
        .unwrap_or_else(|| io::Error::new(io::ErrorKind::NotFound, "address resolved to nothing")))
}

enum SyslogConn {
    Udp(UdpSocket),
    #[cfg(unix)]
    UnixDatagram(tokio::net::UnixDatagram),
    #[cfg(unix)]
    UnixStream(tokio::net::UnixStream),
}

/// Syslog: one message per line, framed as Go's `log/syslog` frames them
/// (`<PRI>TIMESTAMP HOSTNAME TAG[PID]: line` over the network;
/// `<PRI>Stamp TAG[PID]: line` on the local socket).
pub struct SyslogSink {
    priority: u16,
    tag: String,
    address: Option<String>,
    hostname: String,
    conn: Option<SyslogConn>,
}

impl SyslogSink {
    async fn open(&mut self) -> io::Result<()> {
        if self.conn.is_none() {
            let conn = timed(SYSLOG_TIMEOUT, self.connect()).await?;
            self.conn = Some(conn);
        }
        Ok(())
    }

    async fn connect(&self) -> io::Result<SyslogConn> {
        if let Some(address) = &self.address {
            return Ok(SyslogConn::Udp(udp_connect(address).await?));
        }
        #[cfg(unix)]
        {
            let datagram =
                tokio::net::UnixDatagram::unbound().and_then(|s| s.connect(DEV_LOG).map(|()| s));
            match datagram {
                Ok(s) => Ok(SyslogConn::UnixDatagram(s)),
                // Some systems serve /dev/log as a stream socket.
                Err(_) => Ok(SyslogConn::UnixStream(
                    tokio::net::UnixStream::connect(DEV_LOG).await?,
                )),
            }
        }
        #[cfg(not(unix))]
        Err(io::Error::new(
            io::ErrorKind::Unsupported,
            "no local syslog on this platform: set address",
        ))
    }

    /// The syslog message carrying `line`.
    fn frame(&self, line: &[u8]) -> Vec<u8> {
        let header = if self.address.is_some() {
            let now = chrono::Local::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
            format!(
                "<{}>{now} {} {}[{}]: ",
                self.priority,
                self.hostname,
                self.tag,
                std::process::id()
            )
        } else {
            let now = chrono::Local::now().format("%b %e %H:%M:%S");
            format!(
                "<{}>{now} {}[{}]: ",
                self.priority,
                self.tag,
                std::process::id()
            )
        };
        let mut out = header.into_bytes();
        out.extend_from_slice(line);
        if !line.ends_with(b"\n") {
            out.push(b'\n');
        }
        out
    }

    async fn write(&mut self, lines: &[Vec<u8>]) -> io::Result<()> {
        let was_connected = self.conn.is_some();
        let result = match self.try_write(lines).await {
            Err(_) if was_connected => {
                self.conn = None;
                self.try_write(lines).await
            }
            other => other,
        };
        if result.is_err() {
            self.conn = None;
        }
        result
    }

    async fn try_write(&mut self, lines: &[Vec<u8>]) -> io::Result<()> {
        self.open().await?;
        let frames: Vec<Vec<u8>> = lines.iter().map(|l| self.frame(l)).collect();
        for frame in &frames {
            match &mut self.conn {
                Some(SyslogConn::Udp(s)) => {
                    timed(SYSLOG_TIMEOUT, s.send(frame)).await?;
                }
                #[cfg(unix)]
                Some(SyslogConn::UnixDatagram(s)) => {
                    timed(SYSLOG_TIMEOUT, s.send(frame)).await?;
                }
                #[cfg(unix)]
                Some(SyslogConn::UnixStream(s)) => {
                    timed(SYSLOG_TIMEOUT, s.write_all(frame)).await?;
                }
                None => return Err(io::Error::other("not connected")),
            }
        }
        Ok(())
    }
}

/// This machine's host name, for syslog headers.
fn hostname() -> String {
    ["/proc/sys/kernel/hostname", "/etc/hostname"]
        .iter()
        .filter_map(|p| std::fs::read_to_string(p).ok())
        .map(|s| s.trim().to_string())
        .find(|s| !s.is_empty() && !s.contains(char::is_whitespace))
        .or_else(|| std::env::var("HOSTNAME").ok().filter(|h| !h.is_empty()))
        .unwrap_or_else(|| "localhost".to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncBufReadExt;

    #[tokio::test]
    async fn file_appends_creates_with_mode_and_reopens() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.log");
        let mut sink = Sink::new(&SinkSpec::File {
            path: path.clone(),
            mode: 0o640,
        });
        sink.open().await.unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o7777;
            assert_eq!(mode, 0o640);
        }
        sink.write(&[b"one\n".to_vec(), b"two\n".to_vec()])
            .await
            .unwrap();
        std::fs::rename(&path, dir.path().join("a.log.1")).unwrap();
        sink.write(&[b"three\n".to_vec()]).await.unwrap();
        sink.reopen().await.unwrap();
        sink.write(&[b"four\n".to_vec()]).await.unwrap();
        let old = std::fs::read_to_string(dir.path().join("a.log.1")).unwrap();
        assert_eq!(old, "one\ntwo\nthree\n");
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "four\n");
    }

    #[tokio::test]
    async fn file_failures() {
        let dir = tempfile::tempdir().unwrap();
        let mut sink = Sink::new(&SinkSpec::File {
            path: dir.path().join("missing/a.log"),
            mode: 0o600,
        });
        let err = sink.open().await.unwrap_err();
        assert!(err.starts_with("unable to open \""), "{err}");
        assert!(err.contains("for writing: "), "{err}");
        assert!(sink.write(&[b"x\n".to_vec()]).await.is_err());
        // A device that opens but cannot write.
        if Path::new("/dev/full").exists() {
            let mut full = Sink::new(&SinkSpec::File {
                path: "/dev/full".into(),
                mode: 0,
            });
            full.open().await.unwrap();
            assert!(full.write(&[b"x\n".to_vec()]).await.is_err());
        }
        let mut broken = Sink::Broken("bad options".into());
        assert_eq!(broken.open().await.unwrap_err(), "bad options");
        assert!(broken.write(&[b"x\n".to_vec()]).await.is_err());
        assert!(Sink::Discard.write(&[b"x\n".to_vec()]).await.is_ok());
    }

    #[tokio::test]
    async fn tcp_reconnects_once() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let mut sink = Sink::new(&SinkSpec::Socket {
            address: addr.clone(),
            socket_type: SocketType::Tcp,
            write_timeout: Duration::from_secs(2),
        });
        sink.open().await.unwrap();
        let (first, _) = listener.accept().await.unwrap();
        sink.write(&[b"a\n".to_vec()]).await.unwrap();
        let mut lines = tokio::io::BufReader::new(first).lines();
        assert_eq!(lines.next_line().await.unwrap().as_deref(), Some("a"));
        drop(lines);
        // The peer went away: the first writes may still land in the
        // kernel's buffer, but a broken pipe reconnects and writes again.
        let accept = tokio::spawn(async move {
            let (second, _) = listener.accept().await.unwrap();
            let mut lines = tokio::io::BufReader::new(second).lines();
            lines.next_line().await.unwrap()
        });
        let mut ok = false;
        for _ in 0..50 {
            sink.write(&[b"b\n".to_vec()]).await.unwrap();
            if accept.is_finished() {
                ok = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert!(ok, "never reconnected");
        assert_eq!(accept.await.unwrap().as_deref(), Some("b"));

        // Nobody listening: the sanity check names the address.
        let closed = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap().to_string()
        };
        let mut dead = Sink::new(&SinkSpec::Socket {
            address: closed.clone(),
            socket_type: SocketType::Tcp,
            write_timeout: Duration::from_secs(2),
        });
        let err = dead.open().await.unwrap_err();
        assert!(err.contains(&closed), "{err}");
    }

    #[cfg(unix)]
    #[tokio::test]
    async fn unix_socket_and_udp() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.sock");
        let listener = tokio::net::UnixListener::bind(&path).unwrap();
        let mut sink = Sink::new(&SinkSpec::Socket {
            address: path.to_string_lossy().to_string(),
            socket_type: SocketType::Unix,
            write_timeout: Duration::ZERO,
        });
        sink.open().await.unwrap();
        let (stream, _) = listener.accept().await.unwrap();
        sink.write(&[b"u1\n".to_vec(), b"u2\n".to_vec()])
            .await
            .unwrap();
        let mut lines = tokio::io::BufReader::new(stream).lines();
        assert_eq!(lines.next_line().await.unwrap().as_deref(), Some("u1"));
        assert_eq!(lines.next_line().await.unwrap().as_deref(), Some("u2"));

        // UDP: one datagram per line.
        let server = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let mut sink = Sink::new(&SinkSpec::Socket {
            address: server.local_addr().unwrap().to_string(),
            socket_type: SocketType::Udp,
            write_timeout: Duration::from_secs(2),
        });
        sink.write(&[b"d1\n".to_vec(), b"d2\n".to_vec()])
            .await
            .unwrap();
        let mut buf = [0u8; 64];
        for want in [&b"d1\n"[..], b"d2\n"] {
            let n = server.recv(&mut buf).await.unwrap();
            assert_eq!(&buf[..n], want);
        }
    }

    #[tokio::test]
    async fn syslog_frames() {
        let server = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let addr = server.local_addr().unwrap().to_string();
        let mut sink = Sink::new(&SinkSpec::Syslog {
            facility: 16,
            tag: "bulwark".into(),
            address: Some(addr),
        });
        sink.open().await.unwrap();
        sink.write(&[b"{\"a\":1}\n".to_vec(), b"{\"b\":2}\n".to_vec()])
            .await
            .unwrap();
        let mut buf = vec![0u8; 4096];
        for want in ["{\"a\":1}\n", "{\"b\":2}\n"] {
            let n = server.recv(&mut buf).await.unwrap();
            let msg = String::from_utf8(buf[..n].to_vec()).unwrap();
            assert!(msg.starts_with("<134>"), "{msg}");
            let pid = format!(" bulwark[{}]: ", std::process::id());
            assert!(msg.contains(&pid), "{msg}");
            assert!(msg.ends_with(want), "{msg}");
        }
    }
}
