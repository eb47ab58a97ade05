//! The object codec end to end: round trips through the streaming adapters, typed refusals, and
//! corruption (every single-byte flip, every truncation, trailing junk) never reading as success.

use std::io::{self, BufRead, Read, Write};

use proptest::prelude::*;
use rand::rngs::StdRng;
use rand::{Rng, RngCore, SeedableRng};
use walship_common::codec::{
    Codec, CodecError, HEADER_LEN, ObjectReader, ObjectWriter, Recorded, TRAILER_LEN, crc_of_piece,
    decode_to_vec, encode_to_vec,
};

const CODECS: [Codec; 4] = [
    Codec::None,
    Codec::Lz4,
    Codec::Zstd { level: 1 },
    Codec::Zstd { level: 3 },
];

/// A reader that returns at most `step` bytes per call, to exercise partial reads.
struct Trickle<'a> {
    data: &'a [u8],
    step: usize,
}

impl Read for Trickle<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = buf.len().min(self.step).min(self.data.len());
        buf[..n].copy_from_slice(&self.data[..n]);
        self.data = &self.data[n..];
        Ok(n)
    }
}

/// Something like a WAL segment: 8 KiB pages with a page header, records that repeat with small
/// variations, and a zeroed tail (as after a segment switch).
fn wal_like(len: usize, seed: u64) -> Vec<u8> {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut out = Vec::with_capacity(len);
    let mut lsn: u64 = 0x0300_0000;
    while out.len() < len * 3 / 4 {
        out.extend_from_slice(&0xD116u16.to_le_bytes());
        out.extend_from_slice(&[0x05, 0x00]);
        out.extend_from_slice(&1u32.to_le_bytes());
        out.extend_from_slice(&lsn.to_le_bytes());
        out.extend_from_slice(&[0u8; 8]);
        let page_end = out.len() - 24 + 8192;
        while out.len() < page_end {
            let record_len = rng.random_range(40..200usize).min(page_end - out.len());
            let xid: u32 = rng.random_range(700..720);
            for i in 0..record_len {
                out.push(match i % 32 {
                    0..4 => xid.to_le_bytes()[i % 4],
                    4 => rng.random(),
                    _ => (i as u8).wrapping_mul(7),
                });
            }
        }
        lsn += 8192;
    }
    out.resize(len, 0);
    out
}

fn random_bytes(len: usize, seed: u64) -> Vec<u8> {
    let mut data = vec![0u8; len];
    StdRng::seed_from_u64(seed).fill_bytes(&mut data);
    data
}

/// Encodes through the streaming writer, writing `write_step` bytes per call.
fn encode_streaming(content: &[u8], codec: Codec, write_step: usize) -> Vec<u8> {
    let mut stored = Vec::new();
    let mut writer = ObjectWriter::new(&mut stored, codec).unwrap();
    for piece in content.chunks(write_step.max(1)) {
        writer.write_all(piece).unwrap();
    }
    let summary = writer.finish().unwrap();
    assert_eq!(summary.raw_len, content.len() as u64);
    assert_eq!(summary.crc32c, crc32c::crc32c(content));
    assert_eq!(summary.stored_len, stored.len() as u64);
    assert_eq!(summary.stored_crc32c, crc32c::crc32c(&stored));
    stored
}

/// Checks what a reader that reached the end says about the object: the content it gave
/// (`out`: length and crc32c) and the stored bytes it read (`stored`: length and crc32c).
fn assert_verified_summary(reader: &ObjectReader<Trickle<'_>>, out: &[u8], stored: &[u8]) {
    let summary = reader.verified_summary().expect("the end means verified");
    assert_eq!(summary.raw_len, out.len() as u64);
    assert_eq!(summary.crc32c, crc32c::crc32c(out));
    assert_eq!(summary.crc32c, reader.content_crc32c());
    assert_eq!(summary.stored_len, stored.len() as u64);
    assert_eq!(summary.stored_crc32c, crc32c::crc32c(stored));
}

/// Decodes through the streaming reader over a trickling source, reading `read_step` per call.
fn decode_streaming(
    stored: &[u8],
    source_step: usize,
    read_step: usize,
) -> Result<Vec<u8>, CodecError> {
    let mut reader = ObjectReader::new(Trickle {
        data: stored,
        step: source_step,
    })?;
    let mut out = Vec::new();
    let mut buf = vec![0u8; read_step];
    loop {
        let n = reader.read(&mut buf)?;
        if n == 0 {
            assert_verified_summary(&reader, &out, stored);
            return Ok(out);
        }
        out.extend_from_slice(&buf[..n]);
    }
}

/// Decodes through `fill_buf`/`consume` over a trickling source, taking `take_step` bytes
/// at most per `consume` (what `verify` does), and checks on the way that the running
/// content crc32c and `crc_of_piece` agree with hashing the pieces.
fn decode_buffered(
    stored: &[u8],
    source_step: usize,
    take_step: usize,
) -> Result<Vec<u8>, CodecError> {
    let mut reader = ObjectReader::new(Trickle {
        data: stored,
        step: source_step,
    })?;
    let mut out = Vec::new();
    loop {
        let before = reader.content_crc32c();
        let available = reader.fill_buf().map_err(CodecError::from)?;
        if available.is_empty() {
            assert_verified_summary(&reader, &out, stored);
            // Reading on after the end keeps saying so.
            assert!(reader.fill_buf().unwrap().is_empty());
            assert_eq!(reader.read(&mut [0u8; 8]).unwrap(), 0);
            return Ok(out);
        }
        let n = available.len().min(take_step.max(1));
        let piece = available[..n].to_vec();
        reader.consume(n);
        assert_eq!(reader.content_len(), (out.len() + n) as u64);
        assert_eq!(
            crc_of_piece(before, reader.content_crc32c(), n as u64),
            crc32c::crc32c(&piece)
        );
        out.extend_from_slice(&piece);
    }
}

fn assert_round_trip(
    content: &[u8],
    codec: Codec,
    write_step: usize,
    source_step: usize,
    read_step: usize,
) {
    let stored = encode_streaming(content, codec, write_step);
    let decoded = decode_streaming(&stored, source_step, read_step)
        .unwrap_or_else(|e| panic!("{codec}: {} bytes did not round trip: {e}", content.len()));
    assert!(
        decoded == content,
        "{codec}: {} bytes round tripped to different content",
        content.len()
    );
    let buffered = decode_buffered(&stored, source_step, read_step)
        .unwrap_or_else(|e| panic!("{codec}: {} bytes did not round trip: {e}", content.len()));
    assert!(
        buffered == content,
        "{codec}: fill_buf gave different content"
    );
    assert_eq!(
        decode_to_vec(&encode_to_vec(content, codec).unwrap(), u64::MAX).unwrap(),
        content
    );
}

#[test]
fn round_trips_empty_and_small_inputs_with_odd_steps() {
    let small = wal_like(5000, 1);
    for codec in CODECS {
        assert_round_trip(b"", codec, 1, 1, 1);
        assert_round_trip(b"x", codec, 1, 3, 7);
        for (write_step, source_step, read_step) in
            [(1, 1, 1), (7, 13, 3), (333, 5, 4096), (5000, 1000, 17)]
        {
            assert_round_trip(&small, codec, write_step, source_step, read_step);
        }
    }
}

#[test]
fn round_trips_16_mib_wal_like_segment() {
    let segment = wal_like(16 << 20, 2);
    for codec in CODECS {
        assert_round_trip(&segment, codec, 65_521, 100_003, 8191);
        let stored = encode_to_vec(&segment, codec).unwrap();
        if codec != Codec::None {
            assert!(
                stored.len() < segment.len() / 2,
                "{codec} compressed 16 MiB of WAL to only {}",
                stored.len()
            );
        }
    }
}

#[test]
fn round_trips_incompressible_input() {
    let noise = random_bytes(3 * (1 << 20) + 12_345, 3);
    for codec in CODECS {
        assert_round_trip(&noise, codec, 1_000_003, 77_777, 65_537);
        let stored = encode_to_vec(&noise, codec).unwrap();
        // Framing and incompressible blocks cost little: well under 1%.
        assert!(
            stored.len() < noise.len() + noise.len() / 100,
            "{codec}: {}",
            stored.len()
        );
    }
}

/// Every way of reading an object must fail for `stored`; returns the error of the streaming reader.
fn assert_rejected(stored: &[u8], what: &str) -> CodecError {
    if let Ok(content) = decode_to_vec(stored, u64::MAX) {
        panic!("{what}: read as success ({} bytes)", content.len());
    }
    if let Ok(content) = decode_buffered(stored, 4099, 1000) {
        panic!("{what}: fill_buf read as success ({} bytes)", content.len());
    }
    match decode_streaming(stored, 4099, 1000) {
        Ok(content) => panic!(
            "{what}: streaming read as success ({} bytes)",
            content.len()
        ),
        Err(err) => err,
    }
}

#[test]
fn crc_of_piece_is_the_crc_of_any_piece_between_two_running_crcs() {
    let data = random_bytes(100_000, 9);
    let mut rng = StdRng::seed_from_u64(10);
    for _ in 0..200 {
        let a = rng.random_range(0..data.len());
        let b = rng.random_range(a..=data.len());
        let before = crc32c::crc32c(&data[..a]);
        let after = crc32c::crc32c(&data[..b]);
        assert_eq!(
            crc_of_piece(before, after, (b - a) as u64),
            crc32c::crc32c(&data[a..b]),
            "{a}..{b}"
        );
    }
}

#[test]
fn fill_buf_obeys_the_limit_and_a_failure_sticks() {
    let content: Vec<u8> = (0..1u32 << 20).map(|i| (i % 251) as u8).collect();
    for codec in CODECS {
        let stored = streamed(&content, codec);
        let mut reader = ObjectReader::new(&stored[..])
            .unwrap()
            .with_limit(4096)
            .unwrap();
        let err = loop {
            match reader.fill_buf() {
                Ok([]) => panic!("{codec}: read past the limit"),
                Ok(block) => {
                    let n = block.len();
                    reader.consume(n)
                }
                Err(e) => break CodecError::from(e),
            }
        };
        assert!(
            matches!(err, CodecError::TooLarge { limit: 4096, .. }),
            "{codec}: {err}"
        );
        assert!(reader.content_len() <= 4096, "{codec}");
        let again = CodecError::from(reader.fill_buf().unwrap_err());
        assert!(
            matches!(again, CodecError::AlreadyFailed { .. }),
            "{codec}: {again}"
        );
    }
}

#[test]
fn every_single_byte_flip_of_a_small_object_is_detected() {
    let content = wal_like(700, 4);
    for codec in CODECS {
        for stored in [
            encode_to_vec(&content, codec).unwrap(),
            encode_streaming(&content, codec, 100),
        ] {
            for pos in 0..stored.len() {
                for mask in [0x01u8, 0x80, 0xFF] {
                    let mut bad = stored.clone();
                    bad[pos] ^= mask;
                    let err = assert_rejected(&bad, &format!("{codec}: byte {pos} ^ {mask:#04x}"));
                    assert!(
                        err.is_corruption() || matches!(err, CodecError::UnsupportedVersion { .. }),
                        "{err}"
                    );
                }
            }
        }
    }
}

#[test]
fn sampled_byte_flips_of_a_large_object_are_detected() {
    let content = wal_like(2 << 20, 5);
    let mut rng = StdRng::seed_from_u64(6);
    for codec in CODECS {
        let stored = encode_streaming(&content, codec, 40_000);
        let len = stored.len();
        // The header, the first chunk's length, the end chunk, the trailer, and random places.
        let mut positions: Vec<usize> = (0..HEADER_LEN + 4).collect();
        positions.extend(len - TRAILER_LEN - 8..len);
        positions.extend((0..150).map(|_| rng.random_range(0..len)));
        for pos in positions {
            let mut bad = stored.clone();
            bad[pos] ^= 1 << rng.random_range(0..8);
            assert_rejected(&bad, &format!("{codec}: byte {pos} of {len}"));
        }
    }
}

#[test]
fn every_truncation_is_detected() {
    let content = wal_like(900, 7);
    for codec in CODECS {
        let stored = encode_to_vec(&content, codec).unwrap();
        for len in 0..stored.len() {
            let err = assert_rejected(&stored[..len], &format!("{codec}: cut at {len}"));
            assert!(err.is_corruption(), "{codec}: cut at {len}: {err}");
        }
        let big = encode_streaming(&wal_like(1 << 20, 8), codec, 9999);
        for len in (0..big.len()).step_by(997).chain(big.len() - 40..big.len()) {
            assert!(matches!(
                assert_rejected(&big[..len], "cut"),
                CodecError::Truncated { .. } | CodecError::CorruptPayload { .. }
            ));
        }
    }
}

#[test]
fn truncation_in_the_trailer_says_so() {
    let stored = encode_to_vec(b"hello", Codec::Lz4).unwrap();
    let err = assert_rejected(&stored[..stored.len() - 3], "cut trailer");
    assert!(
        matches!(
            err,
            CodecError::Truncated {
                section: "trailer",
                ..
            }
        ),
        "{err}"
    );
    let err = assert_rejected(&stored[..10], "cut header");
    assert!(
        matches!(
            err,
            CodecError::Truncated {
                section: "header",
                offset: 10
            }
        ),
        "{err}"
    );
}

#[test]
fn trailing_junk_is_detected() {
    for codec in CODECS {
        let stored = encode_to_vec(b"some content", codec).unwrap();
        let second = encode_to_vec(b"another object", codec).unwrap();
        for junk in [&b"\0"[..], b"0123456789abcdef0123", &second] {
            let mut bad = stored.clone();
            bad.extend_from_slice(junk);
            let err = assert_rejected(&bad, &format!("{codec}: {} junk bytes", junk.len()));
            assert!(
                matches!(err, CodecError::TrailingJunk { offset } if offset == stored.len() as u64),
                "{err}"
            );
        }
    }
}

#[test]
fn checksum_mismatch_reports_expected_and_found() {
    let content = b"0123456789".repeat(10);
    let stored = encode_to_vec(&content, Codec::None).unwrap();
    let mut bad = stored.clone();
    // Content starts after the header and the first chunk's 4-byte length.
    bad[HEADER_LEN + 4 + 5] = b'X';
    let mut altered = content.clone();
    altered[5] = b'X';
    match assert_rejected(&bad, "altered content") {
        CodecError::ChecksumMismatch {
            recorded,
            expected,
            found,
        } => {
            assert_eq!(recorded, Recorded::Trailer);
            assert_eq!(expected, crc32c::crc32c(&content));
            assert_eq!(found, crc32c::crc32c(&altered));
        }
        other => panic!("expected a checksum mismatch, got {other}"),
    }
}

/// Rewrites header bytes and fixes the header checksum, as a writer of that header would.
fn with_header(stored: &[u8], edit: impl Fn(&mut [u8])) -> Vec<u8> {
    let mut out = stored.to_vec();
    edit(&mut out[..HEADER_LEN]);
    let crc = crc32c::crc32c(&out[..28]);
    out[28..32].copy_from_slice(&crc.to_le_bytes());
    out
}

#[test]
fn header_refusals_are_typed() {
    let stored = encode_to_vec(b"content", Codec::Lz4).unwrap();
    let err = assert_rejected(
        b"PGDMP\0\0\0 not an object at all, long enough",
        "bad magic",
    );
    assert!(matches!(err, CodecError::BadMagic { .. }), "{err}");
    let err = assert_rejected(&with_header(&stored, |h| h[8] = 2), "version 2");
    assert!(
        matches!(
            err,
            CodecError::UnsupportedVersion {
                found: 2,
                supported: 1
            }
        ),
        "{err}"
    );
    let err = assert_rejected(&with_header(&stored, |h| h[10] = 9), "codec 9");
    assert!(
        matches!(err, CodecError::UnsupportedCodec { id: 9 }),
        "{err}"
    );
    let err = assert_rejected(&with_header(&stored, |h| h[12] |= 1), "encrypted");
    assert!(matches!(err, CodecError::Encrypted), "{err}");
    assert!(err.to_string().contains("encrypted"));
    let err = assert_rejected(&with_header(&stored, |h| h[13] |= 0x10), "unknown flag");
    assert!(
        matches!(err, CodecError::UnsupportedFlags { flags: 0x1000 }),
        "{err}"
    );
    let mut bad = stored.clone();
    bad[11] ^= 1;
    let err = assert_rejected(&bad, "header bit flip");
    assert!(
        matches!(err, CodecError::HeaderChecksumMismatch { .. }),
        "{err}"
    );
}

#[test]
fn header_summary_is_checked_against_the_content() {
    let stored = encode_to_vec(b"content!", Codec::None).unwrap();
    // A header that claims other content, with a matching header checksum: the trailer agrees with
    // the content, the header does not.
    let bad = with_header(&stored, |h| h[24] ^= 1);
    let err = assert_rejected(&bad, "header crc");
    assert!(
        matches!(
            err,
            CodecError::ChecksumMismatch {
                recorded: Recorded::Header,
                ..
            }
        ),
        "{err}"
    );
    let bad = with_header(&stored, |h| h[16] = 3);
    let err = assert_rejected(&bad, "header len");
    assert!(
        matches!(
            err,
            CodecError::LengthMismatch {
                recorded: Recorded::Header,
                expected: 3,
                ..
            }
        ),
        "{err}"
    );
}

#[test]
fn writer_refuses_content_that_differs_from_its_declaration() {
    let mut stored = Vec::new();
    let mut writer =
        ObjectWriter::with_declared_summary(&mut stored, Codec::Lz4, 5, crc32c::crc32c(b"hello"))
            .unwrap();
    writer.write_all(b"hellO").unwrap();
    let err = writer.finish().unwrap_err();
    assert!(
        matches!(
            err,
            CodecError::ChecksumMismatch {
                recorded: Recorded::Declared,
                ..
            }
        ),
        "{err}"
    );
    // What was written is not a complete object.
    assert!(decode_to_vec(&stored, u64::MAX).is_err());
}

#[test]
fn a_caller_computed_crc_goes_into_the_trailer_and_a_wrong_one_never_reads_as_success() {
    let content = wal_like(700_000, 3);
    let (a, b) = content.split_at(123_457);
    // The caller hashes its pieces separately and combines them, as the backup bundler does.
    let combined = crc32c::crc32c_combine(crc32c::crc32c(a), crc32c::crc32c(b), b.len());
    assert_eq!(combined, crc32c::crc32c(&content));
    for codec in CODECS {
        let encode = |crc: u32| {
            let mut stored = Vec::new();
            let mut writer = ObjectWriter::with_caller_crc(&mut stored, codec).unwrap();
            writer.write_all(a).unwrap();
            writer.write_all(b).unwrap();
            let (summary, _) = writer.finish_with_crc(crc).unwrap();
            assert_eq!(summary.crc32c, crc);
            assert_eq!(summary.raw_len, content.len() as u64);
            stored
        };
        let stored = encode(combined);
        let trailer = &stored[stored.len() - TRAILER_LEN..];
        assert_eq!(trailer[0..8], (content.len() as u64).to_le_bytes());
        assert_eq!(trailer[8..12], crc32c::crc32c(&content).to_le_bytes());
        assert!(
            decode_to_vec(&stored, u64::MAX).unwrap() == content,
            "{codec}"
        );

        let err = assert_rejected(&encode(combined ^ 1), "wrong caller crc");
        assert!(
            matches!(
                err,
                CodecError::ChecksumMismatch {
                    recorded: Recorded::Trailer,
                    ..
                }
            ),
            "{codec}: {err}"
        );
    }
    // Such a writer cannot be finished without the value, and a writer that computes its
    // own refuses a different one.
    let mut stored = Vec::new();
    let writer = ObjectWriter::with_caller_crc(&mut stored, Codec::Lz4).unwrap();
    assert!(writer.finish().is_err());
    assert!(decode_to_vec(&stored, u64::MAX).is_err());
    let mut writer = ObjectWriter::new(Vec::new(), Codec::Lz4).unwrap();
    writer.write_all(b"hello").unwrap();
    let err = writer
        .finish_with_crc(crc32c::crc32c(b"hellO"))
        .unwrap_err();
    assert!(matches!(err, CodecError::ChecksumMismatch { .. }), "{err}");
}

#[test]
fn unfinished_writer_leaves_a_truncated_object() {
    let mut stored = Vec::new();
    {
        let mut writer = ObjectWriter::new(&mut stored, Codec::Zstd { level: 3 }).unwrap();
        writer.write_all(&wal_like(600_000, 9)).unwrap();
        writer.flush().unwrap();
    }
    let err = assert_rejected(&stored, "unfinished");
    assert!(matches!(err, CodecError::Truncated { .. }), "{err}");
}

#[test]
fn io_errors_of_the_source_are_not_reported_as_corruption() {
    struct Failing<'a>(&'a [u8]);
    impl Read for Failing<'_> {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            if self.0.is_empty() {
                return Err(io::Error::new(
                    io::ErrorKind::ConnectionReset,
                    "network went away",
                ));
            }
            let n = buf.len().min(self.0.len());
            buf[..n].copy_from_slice(&self.0[..n]);
            self.0 = &self.0[n..];
            Ok(n)
        }
    }
    for codec in CODECS {
        let stored = encode_to_vec(&wal_like(300_000, 10), codec).unwrap();
        let mut reader = ObjectReader::new(Failing(&stored[..stored.len() / 2])).unwrap();
        let err = CodecError::from(io::copy(&mut reader, &mut io::sink()).unwrap_err());
        assert!(
            matches!(&err, CodecError::Io(e) if e.kind() == io::ErrorKind::ConnectionReset),
            "{codec}: {err}"
        );
        assert!(!err.is_corruption());
        // A failed reader stays failed.
        assert!(reader.read(&mut [0u8; 10]).is_err());
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    #[test]
    fn random_content_round_trips(
        content in prop::collection::vec(any::<u8>(), 0..40_000),
        repeat in 1usize..4,
        codec_index in 0usize..4,
        write_step in 1usize..5000,
        source_step in 1usize..5000,
        read_step in 1usize..5000,
    ) {
        let content = content.repeat(repeat);
        let codec = CODECS[codec_index];
        let stored = encode_streaming(&content, codec, write_step);
        let decoded = decode_streaming(&stored, source_step, read_step).unwrap();
        prop_assert_eq!(decoded, content);
    }
}

/// Content streamed into an object (no summary in the header), as `walship archive` writes
/// segments and as a hostile writer makes a decompression bomb.
fn streamed(content: &[u8], codec: Codec) -> Vec<u8> {
    let mut out = Vec::new();
    let mut writer = ObjectWriter::new(&mut out, codec).unwrap();
    writer.write_all(content).unwrap();
    writer.finish().unwrap();
    out
}

#[test]
fn a_limit_refuses_a_declared_length_before_decoding() {
    for codec in CODECS {
        let stored = encode_to_vec(&[7u8; 100], codec).unwrap();
        assert_eq!(decode_to_vec(&stored, 100).unwrap(), [7u8; 100], "{codec}");
        let err = decode_to_vec(&stored, 99).unwrap_err();
        assert!(
            matches!(
                err,
                CodecError::TooLarge {
                    limit: 99,
                    found: 100
                }
            ),
            "{codec}: {err}"
        );
        let err = ObjectReader::new(&stored[..])
            .unwrap()
            .with_limit(99)
            .err()
            .unwrap();
        assert!(matches!(err, CodecError::TooLarge { .. }), "{codec}: {err}");
    }
}

#[test]
fn a_limit_stops_streamed_content_at_the_limit() {
    let content: Vec<u8> = (0..1u32 << 20).map(|i| (i % 251) as u8).collect();
    for codec in CODECS {
        let stored = streamed(&content, codec);
        assert!(decode_to_vec(&stored, content.len() as u64).unwrap() == content);
        let err = decode_to_vec(&stored, 1000).unwrap_err();
        match err {
            CodecError::TooLarge { limit: 1000, found } => {
                assert!(
                    found > 1000 && found <= 1000 + (64 << 10),
                    "{codec}: {found}"
                )
            }
            other => panic!("{codec}: {other}"),
        }
        assert!(err_is_corruption(&stored, 1000), "{codec}");
        // The streaming reader keeps failing once it failed.
        let mut reader = ObjectReader::new(&stored[..])
            .unwrap()
            .with_limit(4096)
            .unwrap();
        let mut sink = Vec::new();
        let err = CodecError::from(reader.read_to_end(&mut sink).unwrap_err());
        assert!(
            matches!(err, CodecError::TooLarge { limit: 4096, .. }),
            "{err}"
        );
        assert!(
            sink.len() <= 4096,
            "{codec}: handed out {} bytes",
            sink.len()
        );
    }
}

fn err_is_corruption(stored: &[u8], limit: u64) -> bool {
    decode_to_vec(stored, limit).unwrap_err().is_corruption()
}

/// A zstd frame without a content size (streamed) that decodes to 256 MiB: refused after
/// about the limit, quickly, with the limit and the length found in the error.
#[test]
fn a_zstd_bomb_costs_the_limit_not_its_content() {
    let zeros = vec![0u8; 1 << 20];
    let mut stored = Vec::new();
    // The writer streams: its zstd frame has no content size, its header no summary.
    let mut writer = ObjectWriter::new(&mut stored, Codec::Zstd { level: 1 }).unwrap();
    for _ in 0..256 {
        writer.write_all(&zeros).unwrap();
    }
    writer.finish().unwrap();
    assert!(stored.len() < 1 << 20, "{} bytes", stored.len());
    let started = std::time::Instant::now();
    let err = decode_to_vec(&stored, 16 << 20).unwrap_err();
    assert!(
        matches!(err, CodecError::TooLarge { limit, .. } if limit == 16 << 20),
        "{err}"
    );
    assert!(err.to_string().contains("16777216 bytes"), "{err}");
    assert!(started.elapsed() < std::time::Duration::from_secs(10));
}

/// lz4 objects of independent blocks decode through a faster path; it obeys the limit too.
#[test]
fn the_lz4_fast_path_obeys_the_limit() {
    let content: Vec<u8> = (0..1u32 << 20).map(|i| (i % 251) as u8).collect();
    for stored in [
        encode_to_vec(&content, Codec::Lz4).unwrap(),
        streamed(&content, Codec::Lz4),
    ] {
        assert!(decode_to_vec(&stored, 1 << 20).unwrap() == content);
        let err = decode_to_vec(&stored, (1 << 20) - 1).unwrap_err();
        assert!(matches!(err, CodecError::TooLarge { .. }), "{err}");
    }
}
