//! SPDY/3.1 frames as moby/spdystream writes and reads them: an 8-byte header
//! (control bit, version 3, type | stream id; flags and a 24-bit length), then
//! the payload. Header blocks (SYN_STREAM, SYN_REPLY, HEADERS) are compressed
//! with one zlib stream per direction and connection, primed with the SPDY/3
//! dictionary, each block ending in a sync flush.

use bytes::{Buf, BufMut, Bytes, BytesMut};
use flate2::{Compress, Compression, Decompress, FlushCompress, FlushDecompress, Status};

use super::dictionary::HEADER_DICTIONARY;

pub const VERSION: u16 = 3;
/// The largest payload a frame can carry (24-bit length).
pub const MAX_DATA_LENGTH: usize = (1 << 24) - 1;
/// Bound on a control frame's payload this side accepts.
pub const MAX_CONTROL_LENGTH: usize = 1 << 20;
/// Bound on a decompressed header block.
pub const MAX_HEADER_BLOCK: usize = 1 << 20;
/// Bound on the number of headers in a block (spdystream's default).
pub const MAX_HEADER_COUNT: u32 = 1000;

pub const TYPE_SYN_STREAM: u16 = 1;
pub const TYPE_SYN_REPLY: u16 = 2;
pub const TYPE_RST_STREAM: u16 = 3;
pub const TYPE_SETTINGS: u16 = 4;
pub const TYPE_PING: u16 = 6;
pub const TYPE_GOAWAY: u16 = 7;
pub const TYPE_HEADERS: u16 = 8;
pub const TYPE_WINDOW_UPDATE: u16 = 9;

pub const FLAG_FIN: u8 = 0x01;
pub const FLAG_UNIDIRECTIONAL: u8 = 0x02;

/// RST_STREAM status codes.
pub const RST_PROTOCOL_ERROR: u32 = 1;
pub const RST_REFUSED_STREAM: u32 = 3;
pub const RST_CANCEL: u32 = 5;

/// Header names (lowercase) with their values (a SPDY value is NUL-separated).
pub type Headers = Vec<(String, Vec<String>)>;

/// The first value of header `name` (lowercase).
pub fn header<'a>(h: &'a Headers, name: &str) -> Option<&'a str> {
    h.iter()
        .find(|(n, _)| n == name)
        .and_then(|(_, v)| v.first())
        .map(String::as_str)
}

#[derive(Debug, Clone, PartialEq)]
pub enum Frame {
    SynStream {
        stream_id: u32,
        associated_to: u32,
        priority: u8,
        flags: u8,
        headers: Headers,
    },
    SynReply {
        stream_id: u32,
        flags: u8,
        headers: Headers,
    },
    RstStream {
        stream_id: u32,
        status: u32,
    },
    Settings {
        flags: u8,
        /// (flags, id, value)
        values: Vec<(u8, u32, u32)>,
    },
    Ping {
        id: u32,
    },
    GoAway {
        last_good_stream_id: u32,
        status: u32,
    },
    Headers {
        stream_id: u32,
        flags: u8,
        headers: Headers,
    },
    WindowUpdate {
        stream_id: u32,
        delta: u32,
    },
    Data {
        stream_id: u32,
        flags: u8,
        data: Bytes,
    },
    /// A control frame of a type this side does not know: SPDY says ignore it.
    Unknown {
        frame_type: u16,
    },
}

#[derive(Debug, thiserror::Error)]
pub enum FrameError {
    #[error("SPDY protocol error: {0}")]
    Protocol(String),
    #[error("SPDY header compression: {0}")]
    Compression(String),
}

fn proto(msg: impl Into<String>) -> FrameError {
    FrameError::Protocol(msg.into())
}

/// The zlib state of one connection: one compressor for what this side sends,
/// one decompressor for what it receives.
pub struct HeaderCodec {
    compress: Compress,
    decompress: Decompress,
}

impl Default for HeaderCodec {
    fn default() -> Self {
        Self::new()
    }
}

impl HeaderCodec {
    pub fn new() -> Self {
        let mut compress = Compress::new(Compression::best(), true);
        compress
            .set_dictionary(HEADER_DICTIONARY)
            .expect("a fresh zlib stream takes a dictionary");
        HeaderCodec {
            compress,
            decompress: Decompress::new(true),
        }
    }

    fn encode_block(&mut self, h: &Headers) -> Result<Vec<u8>, FrameError> {
        let mut raw = BytesMut::new();
        raw.put_u32(h.len() as u32);
        for (name, values) in h {
            let name = name.to_ascii_lowercase();
            raw.put_u32(name.len() as u32);
            raw.put_slice(name.as_bytes());
            let v = values.join("\0");
            raw.put_u32(v.len() as u32);
            raw.put_slice(v.as_bytes());
        }
        let mut out = Vec::with_capacity(raw.len() + 64);
        let mut input: &[u8] = &raw;
        loop {
            if out.capacity() - out.len() < 64 {
                out.reserve(out.capacity().max(256));
            }
            let before = self.compress.total_in();
            self.compress
                .compress_vec(input, &mut out, FlushCompress::Sync)
                .map_err(|e| FrameError::Compression(e.to_string()))?;
            input = &input[(self.compress.total_in() - before) as usize..];
            // done once all input is taken and the flush fit
            if input.is_empty() && out.len() < out.capacity() {
                break;
            }
        }
        Ok(out)
    }

    fn decode_block(&mut self, mut input: &[u8]) -> Result<Headers, FrameError> {
        let mut out: Vec<u8> = Vec::with_capacity(input.len() * 4 + 64);
        loop {
            if out.len() >= MAX_HEADER_BLOCK {
                return Err(proto("header block too large"));
            }
            if out.capacity() - out.len() < 256 {
                out.reserve(out.capacity().max(1024));
            }
            let before = self.decompress.total_in();
            let r = self
                .decompress
                .decompress_vec(input, &mut out, FlushDecompress::Sync);
            input = &input[(self.decompress.total_in() - before) as usize..];
            match r {
                Ok(Status::StreamEnd) => return Err(proto("header compression stream ended")),
                Ok(_) => {}
                Err(e) if e.needs_dictionary().is_some() => {
                    self.decompress
                        .set_dictionary(HEADER_DICTIONARY)
                        .map_err(|e| FrameError::Compression(e.to_string()))?;
                    continue;
                }
                Err(e) => return Err(FrameError::Compression(e.to_string())),
            }
            if input.is_empty() && out.len() < out.capacity() {
                break;
            }
        }
        parse_block(&out)
    }
}

fn parse_block(mut b: &[u8]) -> Result<Headers, FrameError> {
    let short = || proto("header block truncated");
    if b.len() < 4 {
        return Err(short());
    }
    let n = b.get_u32();
    if n > MAX_HEADER_COUNT {
        return Err(proto(format!("{n} headers in one block")));
    }
    let mut h: Headers = Vec::with_capacity(n as usize);
    for _ in 0..n {
        let mut field = || -> Result<String, FrameError> {
            if b.len() < 4 {
                return Err(short());
            }
            let len = b.get_u32() as usize;
            if b.len() < len {
                return Err(short());
            }
            let s = String::from_utf8_lossy(&b[..len]).into_owned();
            b.advance(len);
            Ok(s)
        };
        let name = field()?.to_ascii_lowercase();
        let value = field()?;
        if h.iter().any(|(n, _)| *n == name) {
            return Err(proto(format!("header {name:?} sent twice")));
        }
        h.push((name, value.split('\0').map(str::to_string).collect()));
    }
    Ok(h)
}

fn control_header(out: &mut BytesMut, frame_type: u16, flags: u8, len: usize) {
    out.put_u16(0x8000 | VERSION);
    out.put_u16(frame_type);
    out.put_u32(((flags as u32) << 24) | len as u32);
}

impl Frame {
    /// Append this frame's bytes to `out` (header blocks through `codec`).
    pub fn encode(&self, codec: &mut HeaderCodec, out: &mut BytesMut) -> Result<(), FrameError> {
        match self {
            Frame::SynStream {
                stream_id,
                associated_to,
                priority,
                flags,
                headers,
            } => {
                let block = codec.encode_block(headers)?;
                control_header(out, TYPE_SYN_STREAM, *flags, block.len() + 10);
                out.put_u32(*stream_id & 0x7fff_ffff);
                out.put_u32(*associated_to & 0x7fff_ffff);
                out.put_u8((*priority & 0x7) << 5);
                out.put_u8(0);
                out.put_slice(&block);
            }
            Frame::SynReply {
                stream_id,
                flags,
                headers,
            }
            | Frame::Headers {
                stream_id,
                flags,
                headers,
            } => {
                let t = if matches!(self, Frame::SynReply { .. }) {
                    TYPE_SYN_REPLY
                } else {
                    TYPE_HEADERS
                };
                let block = codec.encode_block(headers)?;
                control_header(out, t, *flags, block.len() + 4);
                out.put_u32(*stream_id & 0x7fff_ffff);
                out.put_slice(&block);
            }
            Frame::RstStream { stream_id, status } => {
                control_header(out, TYPE_RST_STREAM, 0, 8);
                out.put_u32(*stream_id);
                out.put_u32(*status);
            }
            Frame::Settings { flags, values } => {
                control_header(out, TYPE_SETTINGS, *flags, 4 + values.len() * 8);
                out.put_u32(values.len() as u32);
                for (f, id, v) in values {
                    out.put_u32(((*f as u32) << 24) | (id & 0xff_ffff));
                    out.put_u32(*v);
                }
            }
            Frame::Ping { id } => {
                control_header(out, TYPE_PING, 0, 4);
                out.put_u32(*id);
            }
            Frame::GoAway {
                last_good_stream_id,
                status,
            } => {
                control_header(out, TYPE_GOAWAY, 0, 8);
                out.put_u32(*last_good_stream_id);
                out.put_u32(*status);
            }
            Frame::WindowUpdate { stream_id, delta } => {
                control_header(out, TYPE_WINDOW_UPDATE, 0, 8);
                out.put_u32(*stream_id);
                out.put_u32(*delta);
            }
            Frame::Data {
                stream_id,
                flags,
                data,
            } => {
                if data.len() > MAX_DATA_LENGTH {
                    return Err(proto("data frame too large"));
                }
                out.put_u32(*stream_id & 0x7fff_ffff);
                out.put_u32(((*flags as u32) << 24) | data.len() as u32);
                out.put_slice(data);
            }
            Frame::Unknown { .. } => {}
        }
        Ok(())
    }

    /// Parse one frame from the front of `buf`; `None` when more bytes are needed.
    /// Consumed bytes are removed from `buf`.
    pub fn decode(
        codec: &mut HeaderCodec,
        buf: &mut BytesMut,
    ) -> Result<Option<Frame>, FrameError> {
        if buf.len() < 8 {
            return Ok(None);
        }
        let first = u32::from_be_bytes([buf[0], buf[1], buf[2], buf[3]]);
        let second = u32::from_be_bytes([buf[4], buf[5], buf[6], buf[7]]);
        let flags = (second >> 24) as u8;
        let len = (second & 0xff_ffff) as usize;
        let control = first & 0x8000_0000 != 0;
        if control && len > MAX_CONTROL_LENGTH {
            return Err(proto(format!("control frame of {len} bytes")));
        }
        if buf.len() < 8 + len {
            buf.reserve(8 + len - buf.len());
            return Ok(None);
        }
        buf.advance(8);
        let mut p = buf.split_to(len).freeze();
        if !control {
            let stream_id = first & 0x7fff_ffff;
            if stream_id == 0 {
                return Err(proto("data frame on stream 0"));
            }
            return Ok(Some(Frame::Data {
                stream_id,
                flags,
                data: p,
            }));
        }
        let version = ((first >> 16) & 0x7fff) as u16;
        if version != VERSION {
            return Err(proto(format!("SPDY version {version}, want {VERSION}")));
        }
        let frame_type = (first & 0xffff) as u16;
        let need = |p: &Bytes, n: usize| {
            if p.len() < n {
                Err(proto(format!("control frame type {frame_type} too short")))
            } else {
                Ok(())
            }
        };
        let f = match frame_type {
            TYPE_SYN_STREAM => {
                need(&p, 10)?;
                let stream_id = p.get_u32() & 0x7fff_ffff;
                let associated_to = p.get_u32() & 0x7fff_ffff;
                let priority = p.get_u8() >> 5;
                let _slot = p.get_u8();
                let headers = codec.decode_block(&p)?;
                if stream_id == 0 {
                    return Err(proto("SYN_STREAM for stream 0"));
                }
                Frame::SynStream {
                    stream_id,
                    associated_to,
                    priority,
                    flags,
                    headers,
                }
            }
            TYPE_SYN_REPLY | TYPE_HEADERS => {
                need(&p, 4)?;
                let stream_id = p.get_u32() & 0x7fff_ffff;
                let headers = codec.decode_block(&p)?;
                if frame_type == TYPE_SYN_REPLY {
                    Frame::SynReply {
                        stream_id,
                        flags,
                        headers,
                    }
                } else {
                    Frame::Headers {
                        stream_id,
                        flags,
                        headers,
                    }
                }
            }
            TYPE_RST_STREAM => {
                need(&p, 8)?;
                Frame::RstStream {
                    stream_id: p.get_u32() & 0x7fff_ffff,
                    status: p.get_u32(),
                }
            }
            TYPE_SETTINGS => {
                need(&p, 4)?;
                let n = p.get_u32() as usize;
                if n > p.len() / 8 {
                    return Err(proto("SETTINGS count exceeds its length"));
                }
                let values = (0..n)
                    .map(|_| {
                        let fid = p.get_u32();
                        ((fid >> 24) as u8, fid & 0xff_ffff, p.get_u32())
                    })
                    .collect();
                Frame::Settings { flags, values }
            }
            TYPE_PING => {
                need(&p, 4)?;
                Frame::Ping { id: p.get_u32() }
            }
            TYPE_GOAWAY => {
                need(&p, 4)?;
                let last_good_stream_id = p.get_u32() & 0x7fff_ffff;
                // SPDY/2 GOAWAYs had no status; take 0 (OK)
                let status = if p.len() >= 4 { p.get_u32() } else { 0 };
                Frame::GoAway {
                    last_good_stream_id,
                    status,
                }
            }
            TYPE_WINDOW_UPDATE => {
                need(&p, 8)?;
                Frame::WindowUpdate {
                    stream_id: p.get_u32() & 0x7fff_ffff,
                    delta: p.get_u32() & 0x7fff_ffff,
                }
            }
            other => Frame::Unknown { frame_type: other },
        };
        Ok(Some(f))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn h(pairs: &[(&str, &str)]) -> Headers {
        pairs
            .iter()
            .map(|(n, v)| (n.to_string(), vec![v.to_string()]))
            .collect()
    }

    #[test]
    fn frames_round_trip_through_two_codecs() {
        let mut tx = HeaderCodec::new();
        let mut rx = HeaderCodec::new();
        let frames = vec![
            Frame::SynStream {
                stream_id: 1,
                associated_to: 0,
                priority: 0,
                flags: 0,
                headers: h(&[("streamtype", "error")]),
            },
            Frame::SynStream {
                stream_id: 3,
                associated_to: 0,
                priority: 0,
                flags: FLAG_FIN,
                headers: h(&[("streamtype", "stdout"), ("port", "8080")]),
            },
            Frame::SynReply {
                stream_id: 3,
                flags: 0,
                headers: vec![],
            },
            Frame::Data {
                stream_id: 3,
                flags: FLAG_FIN,
                data: Bytes::from_static(b"hello"),
            },
            Frame::Ping { id: 1 },
            Frame::RstStream {
                stream_id: 5,
                status: RST_CANCEL,
            },
            Frame::WindowUpdate {
                stream_id: 5,
                delta: 1000,
            },
            Frame::Settings {
                flags: 0,
                values: vec![(0, 4, 1000)],
            },
            Frame::GoAway {
                last_good_stream_id: 3,
                status: 0,
            },
        ];
        let mut wire = BytesMut::new();
        for f in &frames {
            f.encode(&mut tx, &mut wire).unwrap();
        }
        // fed one byte at a time: partial frames wait for more
        let mut buf = BytesMut::new();
        let mut got = vec![];
        for b in wire.iter() {
            buf.put_u8(*b);
            while let Some(f) = Frame::decode(&mut rx, &mut buf).unwrap() {
                got.push(f);
            }
        }
        assert_eq!(got, frames);
    }

    #[test]
    fn a_bad_header_block_is_an_error_not_a_panic() {
        let mut rx = HeaderCodec::new();
        let mut buf = BytesMut::new();
        control_header(&mut buf, TYPE_SYN_STREAM, 0, 14);
        buf.put_u32(1);
        buf.put_u32(0);
        buf.put_u16(0);
        buf.put_slice(b"junk");
        assert!(Frame::decode(&mut rx, &mut buf).is_err());
        let mut buf = BytesMut::new();
        control_header(&mut buf, TYPE_PING, 0, MAX_CONTROL_LENGTH + 1);
        assert!(Frame::decode(&mut rx, &mut buf).is_err());
    }
}
