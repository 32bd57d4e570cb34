//! A small SPDY/3.1 client for the streaming tests, written from the protocol
//! (draft-mbelshe-httpbis-spdy-00 and client-go's remotecommand/portforward
//! usage), not from the host's server code: HTTP/1.1 upgrade by hand, frames
//! encoded and decoded here, header blocks through zlib with the SPDY/3
//! dictionary (the one constant shared with the server, as the spec's data).

use std::collections::HashMap;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use flate2::{Compress, Compression, Decompress, FlushCompress, FlushDecompress};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use interlink_cri::streaming::spdy::dictionary::HEADER_DICTIONARY;

/// One received frame, reduced to what the tests look at.
#[derive(Debug, Clone, PartialEq)]
pub enum Got {
    Reply(u32),
    Data { id: u32, data: Vec<u8>, fin: bool },
    Reset(u32),
    GoAway,
    Ping(u32),
    Other(u16),
}

pub struct SpdyClient {
    sock: TcpStream,
    comp: Compress,
    decomp: Decompress,
    buf: Vec<u8>,
    next_id: u32,
    /// The protocol the server chose (`X-Stream-Protocol-Version`).
    pub protocol: String,
}

/// The HTTP answer to an upgrade that was refused.
#[derive(Debug)]
pub struct Refused {
    pub status: u16,
    pub head: String,
    pub body: String,
}

/// `POST url` with `Upgrade: SPDY/3.1` offering `protocols`. `Err(Refused)` (as
/// the outer `Ok`) when the server answers anything but 101.
pub async fn connect(
    url: &str,
    protocols: &[&str],
) -> Result<std::result::Result<SpdyClient, Refused>> {
    let rest = url.strip_prefix("http://").context("http:// URL")?;
    let (hostport, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
    let mut sock = TcpStream::connect(hostport).await?;
    let mut req = format!(
        "POST {path} HTTP/1.1\r\nHost: {hostport}\r\nConnection: Upgrade\r\nUpgrade: SPDY/3.1\r\nContent-Length: 0\r\n"
    );
    for p in protocols {
        req.push_str(&format!("X-Stream-Protocol-Version: {p}\r\n"));
    }
    req.push_str("\r\n");
    sock.write_all(req.as_bytes()).await?;
    let mut head = Vec::new();
    let mut b = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        if sock.read(&mut b).await? == 0 {
            bail!("connection closed in the response head");
        }
        head.push(b[0]);
    }
    let head = String::from_utf8_lossy(&head).into_owned();
    let status: u16 = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .context("status line")?;
    if status != 101 {
        let len = head
            .lines()
            .find_map(|l| {
                l.to_ascii_lowercase()
                    .strip_prefix("content-length:")
                    .map(|v| v.trim().parse::<usize>().unwrap_or(0))
            })
            .unwrap_or(0);
        let mut body = vec![0u8; len];
        sock.read_exact(&mut body).await?;
        return Ok(Err(Refused {
            status,
            head,
            body: String::from_utf8_lossy(&body).into_owned(),
        }));
    }
    let protocol = head
        .lines()
        .find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case("x-stream-protocol-version")
                .then(|| v.trim().to_string())
        })
        .unwrap_or_default();
    let mut comp = Compress::new(Compression::default(), true);
    comp.set_dictionary(HEADER_DICTIONARY)?;
    Ok(Ok(SpdyClient {
        sock,
        comp,
        decomp: Decompress::new(true),
        buf: Vec::new(),
        next_id: 1,
        protocol,
    }))
}

/// A SPDY client on a plain TCP connection (no HTTP upgrade: a tunnel's end).
pub async fn over_tcp(addr: &str) -> Result<SpdyClient> {
    on_stream(TcpStream::connect(addr).await?, Vec::new())
}

/// A SPDY client on a connection already upgraded; `read_ahead`: bytes read
/// past the upgrade's response head.
pub fn on_stream(sock: TcpStream, read_ahead: Vec<u8>) -> Result<SpdyClient> {
    let mut comp = Compress::new(Compression::default(), true);
    comp.set_dictionary(HEADER_DICTIONARY)?;
    Ok(SpdyClient {
        sock,
        comp,
        decomp: Decompress::new(true),
        buf: read_ahead,
        next_id: 1,
        protocol: String::new(),
    })
}

impl SpdyClient {
    fn header_block(&mut self, headers: &[(&str, &str)]) -> Result<Vec<u8>> {
        let mut raw = Vec::new();
        raw.extend_from_slice(&(headers.len() as u32).to_be_bytes());
        for (k, v) in headers {
            raw.extend_from_slice(&(k.len() as u32).to_be_bytes());
            raw.extend_from_slice(k.as_bytes());
            raw.extend_from_slice(&(v.len() as u32).to_be_bytes());
            raw.extend_from_slice(v.as_bytes());
        }
        let mut out = Vec::with_capacity(raw.len() + 1024);
        self.comp
            .compress_vec(&raw, &mut out, FlushCompress::Sync)?;
        Ok(out)
    }

    /// Run a header block through the decompressor (to keep it in step).
    fn inflate(&mut self, mut input: &[u8]) -> Result<Vec<u8>> {
        let mut out = Vec::with_capacity(64 * 1024);
        loop {
            let before = self.decomp.total_in();
            let r = self
                .decomp
                .decompress_vec(input, &mut out, FlushDecompress::Sync);
            input = &input[(self.decomp.total_in() - before) as usize..];
            match r {
                Err(e) if e.needs_dictionary().is_some() => {
                    self.decomp.set_dictionary(HEADER_DICTIONARY)?;
                }
                Err(e) => bail!("header block: {e}"),
                Ok(_) if input.is_empty() => return Ok(out),
                Ok(_) => {}
            }
        }
    }

    /// SYN_STREAM with `headers`; returns the new stream's id.
    pub async fn open(&mut self, headers: &[(&str, &str)], fin: bool) -> Result<u32> {
        let id = self.next_id;
        self.next_id += 2;
        let block = self.header_block(headers)?;
        let mut f = Vec::new();
        f.extend_from_slice(&[0x80, 0x03, 0x00, 0x01]);
        let len = (block.len() + 10) as u32 | if fin { 0x0100_0000 } else { 0 };
        f.extend_from_slice(&len.to_be_bytes());
        f.extend_from_slice(&id.to_be_bytes());
        f.extend_from_slice(&0u32.to_be_bytes());
        f.extend_from_slice(&[0, 0]);
        f.extend_from_slice(&block);
        self.sock.write_all(&f).await?;
        Ok(id)
    }

    /// One stream per `streamType` (as client-go opens an exec's), in order.
    pub async fn open_typed(&mut self, types: &[&str]) -> Result<Vec<u32>> {
        let mut ids = Vec::with_capacity(types.len());
        for t in types {
            ids.push(self.open(&[("streamtype", t)], false).await?);
        }
        Ok(ids)
    }

    /// A port-forward pair as client-go opens it: the error stream (closed at
    /// once) and the data stream; `request_id` absent as old clients send it.
    pub async fn open_forward(
        &mut self,
        port: &str,
        request_id: Option<&str>,
    ) -> Result<(u32, u32)> {
        let mut h = vec![("streamtype", "error"), ("port", port)];
        if let Some(r) = request_id {
            h.push(("requestid", r));
        }
        let e = self.open(&h, true).await?;
        h[0].1 = "data";
        let d = self.open(&h, false).await?;
        Ok((e, d))
    }

    /// Read frames into `got` until `done(got)` (or `timeout`).
    pub async fn until(
        &mut self,
        got: &mut Collected,
        timeout: Duration,
        done: impl Fn(&Collected) -> bool,
    ) -> Result<()> {
        tokio::time::timeout(timeout, async {
            while !done(got) {
                match self.next().await? {
                    Some(f) => got.absorb(f),
                    None => bail!("the connection ended first: {got:?}"),
                }
            }
            anyhow::Ok(())
        })
        .await
        .context("timed out")?
    }

    /// A data frame (FIN with `fin`).
    pub async fn send(&mut self, id: u32, data: &[u8], fin: bool) -> Result<()> {
        let mut f = Vec::new();
        f.extend_from_slice(&id.to_be_bytes());
        let len = data.len() as u32 | if fin { 0x0100_0000 } else { 0 };
        f.extend_from_slice(&len.to_be_bytes());
        f.extend_from_slice(data);
        self.sock.write_all(&f).await?;
        Ok(())
    }

    pub async fn ping(&mut self, id: u32) -> Result<()> {
        let mut f = vec![0x80, 0x03, 0x00, 0x06, 0, 0, 0, 4];
        f.extend_from_slice(&id.to_be_bytes());
        self.sock.write_all(&f).await?;
        Ok(())
    }

    pub async fn reset(&mut self, id: u32) -> Result<()> {
        let mut f = vec![0x80, 0x03, 0x00, 0x03, 0, 0, 0, 8];
        f.extend_from_slice(&id.to_be_bytes());
        f.extend_from_slice(&5u32.to_be_bytes());
        self.sock.write_all(&f).await?;
        Ok(())
    }

    async fn fill(&mut self, n: usize) -> Result<bool> {
        while self.buf.len() < n {
            let mut tmp = [0u8; 16384];
            let k = self.sock.read(&mut tmp).await?;
            if k == 0 {
                return Ok(false);
            }
            self.buf.extend_from_slice(&tmp[..k]);
        }
        Ok(true)
    }

    /// The next frame; `None` at the end of the connection.
    pub async fn next(&mut self) -> Result<Option<Got>> {
        if !self.fill(8).await? {
            return Ok(None);
        }
        let w0 = u32::from_be_bytes(self.buf[0..4].try_into()?);
        let w1 = u32::from_be_bytes(self.buf[4..8].try_into()?);
        let len = (w1 & 0xff_ffff) as usize;
        let flags = (w1 >> 24) as u8;
        if !self.fill(8 + len).await? {
            bail!("connection ended inside a frame");
        }
        let payload: Vec<u8> = self.buf[8..8 + len].to_vec();
        self.buf.drain(..8 + len);
        if w0 & 0x8000_0000 == 0 {
            return Ok(Some(Got::Data {
                id: w0,
                data: payload,
                fin: flags & 1 != 0,
            }));
        }
        let typ = (w0 & 0xffff) as u16;
        let id = || u32::from_be_bytes(payload[0..4].try_into().unwrap()) & 0x7fff_ffff;
        Ok(Some(match typ {
            2 => {
                let block = self.inflate(&payload[4..])?;
                // an empty header block: a count of 0
                if block != [0, 0, 0, 0] {
                    bail!("SYN_REPLY with headers {block:?}");
                }
                Got::Reply(id())
            }
            3 => Got::Reset(id()),
            6 => Got::Ping(id()),
            7 => Got::GoAway,
            t => Got::Other(t),
        }))
    }

    /// Read frames until the connection ends (or `timeout`): data per stream,
    /// which streams got FIN, whether a GOAWAY came.
    pub async fn drain(&mut self, timeout: Duration) -> Result<Collected> {
        let mut c = Collected::default();
        tokio::time::timeout(timeout, async {
            while let Some(f) = self.next().await? {
                c.absorb(f);
            }
            anyhow::Ok(())
        })
        .await
        .context("the server did not end the session in time")??;
        Ok(c)
    }
}

/// What a session delivered.
#[derive(Debug, Default)]
pub struct Collected {
    pub data: HashMap<u32, Vec<u8>>,
    pub fin: Vec<u32>,
    pub replies: Vec<u32>,
    pub resets: Vec<u32>,
    pub goaway: bool,
}

impl Collected {
    pub fn absorb(&mut self, f: Got) {
        match f {
            Got::Data { id, data, fin } => {
                self.data.entry(id).or_default().extend_from_slice(&data);
                if fin {
                    self.fin.push(id);
                }
            }
            Got::Reply(id) => self.replies.push(id),
            Got::Reset(id) => self.resets.push(id),
            Got::GoAway => self.goaway = true,
            _ => {}
        }
    }

    pub fn text(&self, id: u32) -> String {
        String::from_utf8_lossy(self.data.get(&id).map(Vec::as_slice).unwrap_or_default())
            .into_owned()
    }
}
