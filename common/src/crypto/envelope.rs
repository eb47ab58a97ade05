//! The encrypted envelope (`docs/FORMAT.md`, "Envelope layout"): [`SealingWriter`] seals a
//! plain object's stored bytes in AES-256-GCM chunks, [`OpeningReader`] verifies each chunk
//! before handing out a byte of it.
//!
//! Each object gets its own key, HKDF-SHA256 of the data key and a random 32-byte salt, so chunk
//! nonces are plain counters. Every chunk's AAD holds the 96 header bytes, the object's
//! repository key, the chunk index and the final flag: a changed byte, a reordered, dropped or
//! foreign chunk, an object moved to another key, or a missing final chunk all fail.

use std::io::{self, Read, Write};

use aws_lc_rs::aead::{AES_256_GCM, Aad, LessSafeKey, Nonce, UnboundKey};
use aws_lc_rs::hkdf::{HKDF_SHA256, Salt};

use super::dek::DekId;
use super::secret::{SecretKey, random_bytes};
use crate::codec::{
    Codec, CodecError, HEADER_LEN, ObjectReader, ObjectWriter, check_envelope_header,
    envelope_header,
};

/// Bytes before the first sealed chunk: the object header and the encryption header.
pub const ENVELOPE_HEADER_LEN: usize = HEADER_LEN + 64;
/// AEAD id of AES-256-GCM in the encryption header.
const AEAD_AES_256_GCM: u8 = 1;
/// Plaintext bytes a writer seals per chunk.
const PLAIN_CHUNK: usize = 256 << 10;
/// AES-GCM tag length.
const TAG_LEN: usize = 16;
/// The largest sealed chunk a reader accepts: 1 MiB of plaintext and the tag.
const MAX_SEALED: u32 = (1 << 20) + TAG_LEN as u32;
/// Bit 31 of a chunk's length word: this is the final chunk.
const FINAL_BIT: u32 = 1 << 31;
/// HKDF info for per-object keys.
const OBJECT_KEY_INFO: &[u8] = b"walship-object-v1";

/// The 96 bytes that start an encrypted object: which data key, and the object's salt.
#[derive(Clone)]
pub struct EnvelopeHeader {
    dek_id: DekId,
    bytes: [u8; ENVELOPE_HEADER_LEN],
}

impl EnvelopeHeader {
    /// A header for a new object under `dek_id`, with a fresh random salt.
    fn new(dek_id: DekId) -> EnvelopeHeader {
        let mut bytes = [0u8; ENVELOPE_HEADER_LEN];
        bytes[..HEADER_LEN].copy_from_slice(&envelope_header());
        let enc = &mut bytes[HEADER_LEN..];
        enc[0] = AEAD_AES_256_GCM;
        enc[4..20].copy_from_slice(dek_id.as_bytes());
        enc[20..52].copy_from_slice(&random_bytes::<32>());
        EnvelopeHeader { dek_id, bytes }
    }

    /// Reads and validates the 96 header bytes from `source`.
    pub fn read<R: Read>(source: &mut R) -> Result<EnvelopeHeader, CodecError> {
        let mut bytes = [0u8; ENVELOPE_HEADER_LEN];
        let got = read_full(source, &mut bytes)?;
        if got < HEADER_LEN {
            return Err(CodecError::Truncated {
                offset: got as u64,
                section: "header",
            });
        }
        let mut head = [0u8; HEADER_LEN];
        head.copy_from_slice(&bytes[..HEADER_LEN]);
        check_envelope_header(&head)?;
        if got < ENVELOPE_HEADER_LEN {
            return Err(CodecError::Truncated {
                offset: got as u64,
                section: "encryption header",
            });
        }
        let enc = &bytes[HEADER_LEN..];
        if enc[0] != AEAD_AES_256_GCM || enc[1..4] != [0; 3] || enc[52..64] != [0; 12] {
            return Err(CodecError::UnsupportedCodec { id: enc[0] });
        }
        let mut id = [0u8; 16];
        id.copy_from_slice(&enc[4..20]);
        Ok(EnvelopeHeader {
            dek_id: DekId::from_bytes(id),
            bytes,
        })
    }

    /// The data key this object is encrypted with.
    pub fn dek_id(&self) -> &DekId {
        &self.dek_id
    }

    fn salt(&self) -> &[u8] {
        &self.bytes[HEADER_LEN + 20..HEADER_LEN + 52]
    }

    /// The per-object AEAD key and the AAD prefix (header bytes and object key).
    fn cipher(&self, dek: &SecretKey, object_key: &str) -> (LessSafeKey, Vec<u8>) {
        let prk = Salt::new(HKDF_SHA256, self.salt()).extract(dek.expose());
        let mut derived = [0u8; 32];
        prk.expand(&[OBJECT_KEY_INFO], HKDF_SHA256)
            .and_then(|okm| okm.fill(&mut derived))
            .expect("HKDF-SHA256 of 32 bytes cannot fail");
        let derived = SecretKey::from_bytes(derived);
        let key = LessSafeKey::new(
            UnboundKey::new(&AES_256_GCM, derived.expose()).expect("a 32-byte AES-256 key"),
        );
        let mut aad = Vec::with_capacity(ENVELOPE_HEADER_LEN + 4 + object_key.len() + 9);
        aad.extend_from_slice(&self.bytes);
        aad.extend_from_slice(&(object_key.len() as u32).to_le_bytes());
        aad.extend_from_slice(object_key.as_bytes());
        (key, aad)
    }
}

/// A chunk's nonce: 4 zero bytes and the chunk index, big-endian.
fn nonce(index: u64) -> Nonce {
    let mut n = [0u8; 12];
    n[4..].copy_from_slice(&index.to_be_bytes());
    Nonce::assume_unique_for_key(n)
}

/// The AAD of one chunk: the prefix, the index and the final flag.
fn chunk_aad(prefix: &mut Vec<u8>, base: usize, index: u64, last: bool) -> Aad<&[u8]> {
    prefix.truncate(base);
    prefix.extend_from_slice(&index.to_le_bytes());
    prefix.push(u8::from(last));
    Aad::from(&prefix[..])
}

/// Seals everything written to it into an encrypted envelope on `inner`.
/// [`SealingWriter::finish`] writes the final chunk; without it the object is incomplete and
/// every reader refuses it.
pub struct SealingWriter<W: Write> {
    inner: W,
    /// Bytes written to `inner` so far, and their crc32c.
    written: u64,
    crc: u32,
    key: LessSafeKey,
    aad: Vec<u8>,
    aad_base: usize,
    /// The chunk being filled: at most [`PLAIN_CHUNK`] bytes, with room for the tag.
    buf: Vec<u8>,
    index: u64,
}

impl<W: Write> SealingWriter<W> {
    /// Starts an object stored under `object_key` (its repository key), encrypted with the data
    /// key `dek` whose id is `dek_id`; writes the header at once.
    pub fn new(
        mut inner: W,
        dek_id: DekId,
        dek: &SecretKey,
        object_key: &str,
    ) -> io::Result<SealingWriter<W>> {
        let header = EnvelopeHeader::new(dek_id);
        inner.write_all(&header.bytes)?;
        let (key, aad) = header.cipher(dek, object_key);
        Ok(SealingWriter {
            inner,
            written: ENVELOPE_HEADER_LEN as u64,
            crc: crate::crc::crc32c(&header.bytes),
            key,
            aad_base: aad.len(),
            aad,
            buf: Vec::with_capacity(PLAIN_CHUNK + TAG_LEN),
            index: 0,
        })
    }

    /// Seals the buffered chunk (all of `buf`) in place, writes it out and empties `buf`,
    /// which keeps its capacity: no allocation and no copy beyond the one into `buf`.
    fn seal(&mut self, last: bool) -> io::Result<()> {
        let aad = chunk_aad(&mut self.aad, self.aad_base, self.index, last);
        self.key
            .seal_in_place_append_tag(nonce(self.index), aad, &mut self.buf)
            .map_err(|_| io::Error::other("AES-256-GCM sealing failed"))?;
        let word = (self.buf.len() as u32 | if last { FINAL_BIT } else { 0 }).to_le_bytes();
        self.inner.write_all(&word)?;
        self.inner.write_all(&self.buf)?;
        self.crc = crate::crc::crc32c_append(crc32c::crc32c_append(self.crc, &word), &self.buf);
        self.written += (word.len() + self.buf.len()) as u64;
        self.index += 1;
        self.buf.clear();
        Ok(())
    }

    /// Seals what is buffered as the final chunk and returns the sink.
    pub fn finish(self) -> io::Result<W> {
        Ok(self.finish_counted()?.0)
    }

    /// [`SealingWriter::finish`], also returning the stored length and crc32c of the whole
    /// envelope (what the storage holds).
    pub fn finish_counted(mut self) -> io::Result<(W, u64, u32)> {
        self.seal(true)?;
        self.inner.flush()?;
        Ok((self.inner, self.written, self.crc))
    }
}

impl<W: Write> Write for SealingWriter<W> {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        let mut rest = data;
        while !rest.is_empty() {
            // A full chunk is sealed only once more bytes follow it, so that `finish` always
            // has the final chunk to seal (an empty final chunk only for empty content).
            if self.buf.len() == PLAIN_CHUNK {
                self.seal(false)?;
            }
            let take = (PLAIN_CHUNK - self.buf.len()).min(rest.len());
            self.buf.extend_from_slice(&rest[..take]);
            rest = &rest[take..];
        }
        Ok(data.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// Hands out the plaintext of an encrypted envelope, one verified chunk at a time; `Ok(0)` only
/// after the final chunk verified and nothing follows it. Every failure is an `io::Error`
/// wrapping a [`CodecError`] (`Decrypt`, `Truncated`, `CorruptPayload`, `TrailingJunk`).
pub struct OpeningReader<R: Read> {
    inner: R,
    key: LessSafeKey,
    aad: Vec<u8>,
    aad_base: usize,
    chunk: Vec<u8>,
    pos: usize,
    index: u64,
    offset: u64,
    done: bool,
}

impl<R: Read> OpeningReader<R> {
    /// Opens the chunks that follow `header` (already read from `inner`) with the data key
    /// `dek`, for the object stored under `object_key`.
    pub fn new(
        inner: R,
        header: &EnvelopeHeader,
        dek: &SecretKey,
        object_key: &str,
    ) -> OpeningReader<R> {
        let (key, aad) = header.cipher(dek, object_key);
        OpeningReader {
            inner,
            key,
            aad_base: aad.len(),
            aad,
            chunk: Vec::new(),
            pos: 0,
            index: 0,
            offset: ENVELOPE_HEADER_LEN as u64,
            done: false,
        }
    }

    /// Reads, authenticates and decrypts the next chunk into `self.chunk`.
    fn next_chunk(&mut self) -> Result<(), CodecError> {
        let mut word = [0u8; 4];
        let got = read_full(&mut self.inner, &mut word)?;
        if got < 4 {
            return Err(CodecError::Truncated {
                offset: self.offset + got as u64,
                section: "encrypted chunks (no final chunk)",
            });
        }
        let word = u32::from_le_bytes(word);
        let last = word & FINAL_BIT != 0;
        let len = word & !FINAL_BIT;
        if !(TAG_LEN as u32..=MAX_SEALED).contains(&len) {
            return Err(CodecError::CorruptPayload {
                offset: self.offset,
                detail: format!("sealed chunk {} has length {len}", self.index),
            });
        }
        self.offset += 4;
        self.chunk.resize(len as usize, 0);
        let got = read_full(&mut self.inner, &mut self.chunk)?;
        if got < len as usize {
            return Err(CodecError::Truncated {
                offset: self.offset + got as u64,
                section: "sealed chunk",
            });
        }
        self.offset += u64::from(len);
        let aad = chunk_aad(&mut self.aad, self.aad_base, self.index, last);
        let plain_len = self
            .key
            .open_in_place(nonce(self.index), aad, &mut self.chunk)
            .map_err(|_| CodecError::Decrypt { chunk: self.index })?
            .len();
        self.chunk.truncate(plain_len);
        self.pos = 0;
        self.index += 1;
        if last {
            let mut probe = [0u8; 1];
            if read_full(&mut self.inner, &mut probe)? != 0 {
                return Err(CodecError::TrailingJunk {
                    offset: self.offset,
                });
            }
            self.done = true;
        }
        Ok(())
    }
}

impl<R: Read> Read for OpeningReader<R> {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        while self.pos == self.chunk.len() {
            if self.done || out.is_empty() {
                return Ok(0);
            }
            self.next_chunk()?;
        }
        let n = out.len().min(self.chunk.len() - self.pos);
        out[..n].copy_from_slice(&self.chunk[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}

/// Reads until `buf` is full or the input ends; returns how many bytes were read.
fn read_full<R: Read>(source: &mut R, buf: &mut [u8]) -> Result<usize, CodecError> {
    let mut got = 0;
    while got < buf.len() {
        match source.read(&mut buf[got..]) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(CodecError::from(e)),
        }
    }
    Ok(got)
}

/// Encodes `content` with `codec` into a plain object and seals it, all in memory: the
/// encrypted counterpart of [`crate::codec::encode_to_vec`].
pub fn seal_to_vec(
    content: &[u8],
    codec: Codec,
    dek_id: DekId,
    dek: &SecretKey,
    object_key: &str,
) -> Result<Vec<u8>, CodecError> {
    let sealer = SealingWriter::new(Vec::new(), dek_id, dek, object_key)?;
    let crc = crate::crc::crc32c(content);
    let mut writer = ObjectWriter::with_declared_summary(sealer, codec, content.len() as u64, crc)?;
    writer.write_all(content)?;
    let (_, sealer) = writer.finish_into_inner()?;
    Ok(sealer.finish()?)
}

/// Opens and decodes an encrypted object held in memory, whose content may be at most `limit`
/// bytes: the encrypted counterpart of [`crate::codec::decode_to_vec`]. `dek` must be the data
/// key the header names ([`EnvelopeHeader::dek_id`]); any other key fails with `Decrypt`.
pub fn open_to_vec(
    stored: &[u8],
    dek: &SecretKey,
    object_key: &str,
    limit: u64,
) -> Result<Vec<u8>, CodecError> {
    let mut source = stored;
    let header = EnvelopeHeader::read(&mut source)?;
    let opener = OpeningReader::new(source, &header, dek, object_key);
    let mut reader = ObjectReader::new(opener)?.with_limit(limit)?;
    let mut content = Vec::new();
    reader.read_to_end(&mut content)?;
    Ok(content)
}

#[cfg(test)]
#[path = "envelope_tests.rs"]
mod tests;
