//! Unit tests of the envelope: round trips, and every way an encrypted object can be damaged
//! or misused fails with a typed error, never as content.

use super::*;
use crate::codec::{Codec, decode_to_vec, is_envelope};

const KEY: &str = "wal/0000000100000003/000000010000000300000042";
const LIMIT: u64 = 64 << 20;

fn content(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i * 7 % 251) as u8).collect()
}

fn sealed(len: usize) -> (Vec<u8>, Vec<u8>, SecretKey) {
    let dek = SecretKey::generate();
    let plain = content(len);
    let stored = seal_to_vec(&plain, Codec::None, DekId::generate(), &dek, KEY).unwrap();
    (plain, stored, dek)
}

/// Offsets where sealed chunks start (their length words), and the final one's.
fn chunk_starts(stored: &[u8]) -> Vec<usize> {
    let mut at = ENVELOPE_HEADER_LEN;
    let mut starts = Vec::new();
    while at < stored.len() {
        starts.push(at);
        let word = u32::from_le_bytes(stored[at..at + 4].try_into().unwrap());
        at += 4 + (word & !FINAL_BIT) as usize;
    }
    assert_eq!(at, stored.len());
    starts
}

#[test]
fn round_trips_every_codec_and_size() {
    for codec in [Codec::None, Codec::Lz4, Codec::Zstd { level: 3 }] {
        for len in [0, 1, PLAIN_CHUNK - 60, PLAIN_CHUNK, 3 * PLAIN_CHUNK + 5] {
            let dek = SecretKey::generate();
            let plain = content(len);
            let stored = seal_to_vec(&plain, codec, DekId::generate(), &dek, KEY).unwrap();
            assert!(is_envelope(&stored));
            assert_eq!(open_to_vec(&stored, &dek, KEY, LIMIT).unwrap(), plain);
        }
    }
}

#[test]
fn names_its_data_key_and_hides_the_content() {
    let dek = SecretKey::generate();
    let id = DekId::generate();
    let marker = b"walship-secret-marker-string".repeat(1000);
    let stored = seal_to_vec(&marker, Codec::None, id, &dek, KEY).unwrap();
    let header = EnvelopeHeader::read(&mut &stored[..]).unwrap();
    assert_eq!(header.dek_id(), &id);
    assert!(
        !stored.windows(14).any(|w| w == b"walship-secret"),
        "plaintext visible in the stored bytes"
    );
}

#[test]
fn readers_without_a_key_refuse_it() {
    let (_, stored, _) = sealed(1000);
    let err = decode_to_vec(&stored, LIMIT).unwrap_err();
    assert!(matches!(err, CodecError::Encrypted), "{err}");
}

#[test]
fn wrong_key_fails_with_decrypt() {
    let (_, stored, _) = sealed(1000);
    let err = open_to_vec(&stored, &SecretKey::generate(), KEY, LIMIT).unwrap_err();
    assert!(matches!(err, CodecError::Decrypt { chunk: 0 }), "{err}");
    assert!(err.to_string().contains("cannot decrypt"), "{err}");
}

#[test]
fn another_object_key_fails() {
    let (_, stored, dek) = sealed(1000);
    let other = "wal/0000000100000003/000000010000000300000043";
    let err = open_to_vec(&stored, &dek, other, LIMIT).unwrap_err();
    assert!(matches!(err, CodecError::Decrypt { .. }), "{err}");
}

#[test]
fn every_flipped_byte_fails() {
    // Every byte of a one-chunk object, and every byte around each chunk boundary of a
    // multi-chunk one (length words, tags, first bytes): AES-GCM makes the middle no different.
    let (_, small, dek) = sealed(300);
    let (_, big, big_dek) = sealed(2 * PLAIN_CHUNK + 100);
    let mut positions: Vec<usize> = Vec::new();
    for start in chunk_starts(&big) {
        positions.extend(start.saturating_sub(40)..(start + 40).min(big.len()));
    }
    positions.extend(0..ENVELOPE_HEADER_LEN);
    positions.extend(big.len() - 40..big.len());
    for (stored, key, at_list) in [
        (&small, &dek, (0..small.len()).collect::<Vec<_>>()),
        (&big, &big_dek, positions),
    ] {
        for at in at_list {
            let mut bad = stored.clone();
            bad[at] ^= 0x01;
            let result = open_to_vec(&bad, key, KEY, LIMIT);
            assert!(result.is_err(), "flip at {at} of {} accepted", stored.len());
        }
    }
}

#[test]
fn truncation_at_every_chunk_boundary_and_inside_fails() {
    let (_, stored, dek) = sealed(3 * PLAIN_CHUNK + 5);
    let starts = chunk_starts(&stored);
    assert_eq!(starts.len(), 4);
    for &cut in starts
        .iter()
        .chain(&[stored.len() - 1, ENVELOPE_HEADER_LEN - 1, 10])
    {
        let err = open_to_vec(&stored[..cut], &dek, KEY, LIMIT).unwrap_err();
        assert!(
            matches!(err, CodecError::Truncated { .. }),
            "cut at {cut}: {err}"
        );
    }
}

#[test]
fn dropped_reordered_and_appended_chunks_fail() {
    let (_, stored, dek) = sealed(3 * PLAIN_CHUNK + 5);
    let s = chunk_starts(&stored);
    let piece = |i: usize| {
        let end = s.get(i + 1).copied().unwrap_or(stored.len());
        stored[s[i]..end].to_vec()
    };
    let head = stored[..ENVELOPE_HEADER_LEN].to_vec();
    let dropped = [head.clone(), piece(0), piece(2), piece(3)].concat();
    let swapped = [head.clone(), piece(1), piece(0), piece(2), piece(3)].concat();
    let appended = [stored.clone(), piece(3)].concat();
    for (name, bad) in [("dropped", dropped), ("swapped", swapped)] {
        let err = open_to_vec(&bad, &dek, KEY, LIMIT).unwrap_err();
        assert!(matches!(err, CodecError::Decrypt { .. }), "{name}: {err}");
    }
    let err = open_to_vec(&appended, &dek, KEY, LIMIT).unwrap_err();
    assert!(matches!(err, CodecError::TrailingJunk { .. }), "{err}");
}

#[test]
fn chunks_spliced_from_another_object_fail() {
    let dek = SecretKey::generate();
    let id = DekId::generate();
    let a = seal_to_vec(&content(2 * PLAIN_CHUNK + 1), Codec::None, id, &dek, KEY).unwrap();
    let b = seal_to_vec(&content(2 * PLAIN_CHUNK + 1), Codec::None, id, &dek, KEY).unwrap();
    let (sa, sb) = (chunk_starts(&a), chunk_starts(&b));
    // a's header and first chunk, then b's second and final chunks: same key, same DEK.
    let spliced = [&a[..sa[1]], &b[sb[1]..]].concat();
    let err = open_to_vec(&spliced, &dek, KEY, LIMIT).unwrap_err();
    assert!(matches!(err, CodecError::Decrypt { chunk: 1 }), "{err}");
}

#[test]
fn streaming_reader_hands_out_verified_chunks() {
    let (plain, stored, dek) = sealed(2 * PLAIN_CHUNK + 9);
    let mut source = &stored[..];
    let header = EnvelopeHeader::read(&mut source).unwrap();
    let mut opener = OpeningReader::new(source, &header, &dek, KEY);
    let mut inner = Vec::new();
    opener.read_to_end(&mut inner).unwrap();
    assert_eq!(decode_to_vec(&inner, LIMIT).unwrap(), plain);
}

#[test]
fn finish_counted_reports_the_stored_bytes() {
    let dek = SecretKey::generate();
    let mut sealer = SealingWriter::new(Vec::new(), DekId::generate(), &dek, KEY).unwrap();
    sealer.write_all(&content(PLAIN_CHUNK * 2 + 3)).unwrap();
    let (out, len, crc) = sealer.finish_counted().unwrap();
    assert_eq!(len, out.len() as u64);
    assert_eq!(crc, crc32c::crc32c(&out));
}

/// The plaintext length of each sealed chunk of `stored`.
fn chunk_plain_lens(stored: &[u8]) -> Vec<usize> {
    chunk_starts(stored)
        .iter()
        .map(|&at| {
            let word = u32::from_le_bytes(stored[at..at + 4].try_into().unwrap());
            (word & !FINAL_BIT) as usize - TAG_LEN
        })
        .collect()
}

/// The layout FORMAT.md fixes: every chunk but the last holds exactly 256 KiB, the last holds
/// the rest (1 to 256 KiB; 0 only for empty content), whatever sizes the writes came in.
#[test]
fn chunk_layout_does_not_depend_on_write_sizes() {
    let dek = SecretKey::generate();
    for len in [
        0,
        1,
        PLAIN_CHUNK,
        PLAIN_CHUNK + 1,
        2 * PLAIN_CHUNK,
        2 * PLAIN_CHUNK + 7,
    ] {
        let plain = content(len);
        let mut layouts = Vec::new();
        for piece in [len.max(1), 1000, PLAIN_CHUNK - 1, PLAIN_CHUNK + 3] {
            let mut sealer = SealingWriter::new(Vec::new(), DekId::generate(), &dek, KEY).unwrap();
            for part in plain.chunks(piece) {
                sealer.write_all(part).unwrap();
            }
            let stored = sealer.finish().unwrap();
            let mut source = &stored[..];
            let header = EnvelopeHeader::read(&mut source).unwrap();
            let mut opened = Vec::new();
            OpeningReader::new(source, &header, &dek, KEY)
                .read_to_end(&mut opened)
                .unwrap();
            assert_eq!(opened, plain, "len {len}, writes of {piece}");
            layouts.push(chunk_plain_lens(&stored));
        }
        let want: Vec<usize> = if len == 0 {
            vec![0]
        } else {
            let full = (len - 1) / PLAIN_CHUNK;
            let mut v = vec![PLAIN_CHUNK; full];
            v.push(len - full * PLAIN_CHUNK);
            v
        };
        for layout in layouts {
            assert_eq!(layout, want, "len {len}");
        }
    }
}
