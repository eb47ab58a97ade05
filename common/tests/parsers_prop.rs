//! Property tests of the parsers of outside input (issue 19, item 5): timeline history files,
//! the object format reader, backup manifests, the tar stream parser, connection strings and
//! URIs, and the configuration file. Each must never panic on arbitrary or damaged input, and
//! where the format has a printer, parse-then-print (or print-then-parse) is the identity.
//! Memory is bounded, measured by a counting allocator (this test binary's global allocator,
//! counting per thread): a decompression bomb is refused within its limit, an object and a
//! tar entry claiming gigabytes are streamed, and history files, manifests, connection strings
//! and config files take memory in proportion to their input, whatever it holds.
//! Archive file names have theirs next to the code (`common/src/pg/file_name_tests.rs`), and
//! the object codec's round trips are in `codec.rs`.

use std::collections::BTreeMap;

use bytes::Bytes;
use proptest::prelude::*;
use walship_common::Lsn;
use walship_common::backup::tar_stream::{EntryKind, TarItem, TarStream};
use walship_common::catalog::BackupManifest;
use walship_common::codec::{Codec, ObjectReader, decode_to_vec, encode_to_vec};
use walship_common::config::{Config, Options, Sources};
use walship_common::pg::TimelineId;
use walship_common::pg::history::TimelineHistory;
use walship_common::pgconn::conninfo::parse_settings;

/// A global allocator that forwards to the system's and counts, per thread, the bytes held
/// and their peak: a test measures what one parse on its own thread took, whatever other
/// tests run beside it.
mod counting {
    use std::alloc::{GlobalAlloc, Layout, System};
    use std::cell::Cell;

    /// The counting allocator.
    pub struct Counting;

    thread_local! {
        static HELD: Cell<isize> = const { Cell::new(0) };
        static PEAK: Cell<isize> = const { Cell::new(0) };
    }

    fn count(bytes: isize) {
        // `try_with`: a thread being torn down may still free memory.
        let _ = HELD.try_with(|held| {
            let now = held.get() + bytes;
            held.set(now);
            let _ = PEAK.try_with(|peak| peak.set(peak.get().max(now)));
        });
    }

    // The workspace denies unsafe code; a global allocator cannot be written without it. Every
    // call goes to `System` unchanged, the counting touches only const-initialised
    // thread-locals (no allocation, no destructor), and this is a test binary.
    #[allow(unsafe_code)]
    unsafe impl GlobalAlloc for Counting {
        unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
            // SAFETY: the caller's contract for `alloc`, passed on unchanged.
            let ptr = unsafe { System.alloc(layout) };
            if !ptr.is_null() {
                count(layout.size() as isize);
            }
            ptr
        }

        unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
            // SAFETY: as `alloc`.
            let ptr = unsafe { System.alloc_zeroed(layout) };
            if !ptr.is_null() {
                count(layout.size() as isize);
            }
            ptr
        }

        unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
            // SAFETY: `ptr` came from this allocator, that is from `System`, with `layout`.
            unsafe { System.dealloc(ptr, layout) };
            count(-(layout.size() as isize));
        }

        unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
            // SAFETY: as `dealloc`, and the caller's contract for `realloc`.
            let new = unsafe { System.realloc(ptr, layout, new_size) };
            if !new.is_null() {
                count(new_size as isize - layout.size() as isize);
            }
            new
        }
    }

    /// Runs `f` and returns its result and the most bytes this thread held at once while it
    /// ran, above what it held before.
    pub fn peak_during<T>(f: impl FnOnce() -> T) -> (T, usize) {
        let before = HELD.with(Cell::get);
        PEAK.with(|peak| peak.set(before));
        let out = f();
        let peak = PEAK.with(Cell::get) - before;
        (out, peak.max(0) as usize)
    }
}

#[global_allocator]
static ALLOCATOR: counting::Counting = counting::Counting;

use counting::peak_during;

const MIB: usize = 1 << 20;

fn config() -> ProptestConfig {
    ProptestConfig {
        cases: 128,
        ..ProptestConfig::default()
    }
}

// ---------------------------------------------------------------------------------------------
// Timeline history files

/// A history of `reasons.len()` switches built the way promotion writes it.
fn built_history(steps: &[(u64, String)]) -> TimelineHistory {
    let mut history = TimelineHistory::first();
    let mut lsn = 0u64;
    for (i, (advance, reason)) in steps.iter().enumerate() {
        lsn += advance;
        history = history
            .child(TimelineId(i as u32 + 2), Lsn(lsn), reason)
            .unwrap();
    }
    history
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn history_never_panics(timeline in any::<u32>(), content in prop::collection::vec(any::<u8>(), 0..400)) {
        let _ = TimelineHistory::parse(TimelineId(timeline), &content);
    }

    #[test]
    fn history_lines_never_panic(
        timeline in 1u32..10,
        lines in prop::collection::vec("[0-9A-Fa-f/\t #xX-]{0,30}", 0..6),
    ) {
        let _ = TimelineHistory::parse(TimelineId(timeline), lines.join("\n").as_bytes());
    }

    /// What promotion writes parses back to the same entries, and its bytes are kept as read.
    #[test]
    fn history_written_parses_to_itself(
        steps in prop::collection::vec((0u64..1 << 40, "[ -~]{0,40}\n?"), 0..8),
    ) {
        let history = built_history(&steps);
        let parsed = TimelineHistory::parse(history.timeline(), history.to_bytes()).unwrap();
        prop_assert_eq!(parsed.entries(), history.entries());
        prop_assert_eq!(parsed.to_bytes(), history.to_bytes());
    }
}

// ---------------------------------------------------------------------------------------------
// The object format reader

const CODECS: [Codec; 3] = [Codec::None, Codec::Lz4, Codec::Zstd { level: 1 }];

proptest! {
    #![proptest_config(config())]

    #[test]
    fn object_reader_never_panics_on_arbitrary_bytes(stored in prop::collection::vec(any::<u8>(), 0..2000)) {
        let _ = decode_to_vec(&stored, 1 << 20);
        if let Ok(mut reader) = ObjectReader::new(&stored[..]) {
            let _ = std::io::copy(&mut reader, &mut std::io::sink());
        }
    }

    /// A damaged object (bytes overwritten, cut, or extended) never decodes to other content:
    /// it is refused, or (damage in a field the checks do not cover) decodes to the original.
    #[test]
    fn damaged_objects_never_decode_to_other_content(
        content in prop::collection::vec(any::<u8>(), 0..5000),
        codec in 0usize..3,
        damage in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..4),
        cut in proptest::option::of(any::<prop::sample::Index>()),
        extra in prop::collection::vec(any::<u8>(), 0..3),
    ) {
        let mut stored = encode_to_vec(&content, CODECS[codec]).unwrap();
        for (at, byte) in &damage {
            let i = at.index(stored.len());
            stored[i] = stored[i].wrapping_add(byte | 1);
        }
        if let Some(cut) = cut {
            stored.truncate(cut.index(stored.len()));
        }
        stored.extend_from_slice(&extra);
        if let Ok(decoded) = decode_to_vec(&stored, 1 << 20) {
            prop_assert_eq!(decoded, content);
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 32, ..ProptestConfig::default() })]

    /// Bounded work on a lying object: a trailer that claims another length (up to 1 GiB, its
    /// stored crc32c recomputed so that only the content checks can tell) is refused, without
    /// producing that much content.
    #[test]
    fn an_object_lying_about_its_length_is_refused(
        content in prop::collection::vec(any::<u8>(), 1..3000),
        codec in 0usize..3,
        claimed in prop_oneof![0u64..10_000, Just(1u64 << 30), Just(u64::MAX)],
    ) {
        let mut stored = encode_to_vec(&content, CODECS[codec]).unwrap();
        prop_assume!(claimed != content.len() as u64);
        let trailer = stored.len() - 20;
        stored[trailer..trailer + 8].copy_from_slice(&claimed.to_le_bytes());
        let crc = crc32c::crc32c(&stored[..trailer]);
        stored[trailer + 12..trailer + 16].copy_from_slice(&crc.to_le_bytes());
        let started = std::time::Instant::now();
        prop_assert!(decode_to_vec(&stored, 1 << 20).is_err());
        prop_assert!(started.elapsed() < std::time::Duration::from_secs(2));
    }
}

// ---------------------------------------------------------------------------------------------
// Backup manifests

/// A manifest as `walship backup` writes it, with the varying fields from the strategy.
fn manifest_json(
    label: &str,
    system_identifier: u64,
    lsns: (u64, u64),
    files: &[(String, u64, u32)],
) -> serde_json::Value {
    let files: Vec<serde_json::Value> = files
        .iter()
        .map(|(path, size, crc)| {
            serde_json::json!({
                "path": path, "kind": "file", "size": size, "mode": 0o600, "mtime": 1_700_000_000,
                "crc32c": crc, "bundle": 0, "offset": 0, "link_target": null,
            })
        })
        .collect();
    serde_json::json!({
        "format_version": 1,
        "id": "20261122T140300Z",
        "label": label,
        "system_identifier": system_identifier.to_string(),
        "pg_major": 15, "pg_version_num": 150010, "wal_segment_size": 16777216,
        "start_timeline": 1, "stop_timeline": 1,
        "start_lsn": Lsn(lsns.0.min(lsns.1)).to_string(),
        "stop_lsn": Lsn(lsns.0.max(lsns.1)).to_string(),
        "start_time": "2026-11-22T14:03:00Z", "stop_time": "2026-11-22T14:04:00Z",
        "duration_ms": 60000,
        "backup_label": "START WAL LOCATION: 0/2000028\n",
        "tablespace_map": null, "tablespaces": [], "pg_backup_manifest": null,
        "bytes_raw": 1, "bytes_stored": 1, "walship_version": "0.1.0",
        "bundles": [{"name": "b0", "raw_len": 1, "stored_len": 1}],
        "files": files,
    })
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn manifest_never_panics_on_arbitrary_json(text in "[{}\\[\\]\":,0-9a-z_ ]{0,200}") {
        let _ = serde_json::from_str::<BackupManifest>(&text);
    }

    /// Parse, print, parse: the same manifest; print is stable.
    #[test]
    fn manifest_parse_print_is_the_identity(
        label in "[ -~\u{e9}\u{4e2d}]{0,40}",
        system_identifier in any::<u64>(),
        lsns in (any::<u64>(), any::<u64>()),
        files in prop::collection::vec(("[a-z_/0-9]{1,30}", any::<u64>(), any::<u32>()), 0..5),
    ) {
        let json = manifest_json(&label, system_identifier, lsns, &files);
        let parsed: BackupManifest = match serde_json::from_value(json.clone()) {
            Ok(m) => m,
            Err(e) => return Err(TestCaseError::fail(format!("{e}: {json}"))),
        };
        prop_assert_eq!(parsed.system_identifier, system_identifier);
        let printed = serde_json::to_string(&parsed).unwrap();
        let again: BackupManifest = serde_json::from_str(&printed).unwrap();
        prop_assert_eq!(&again, &parsed);
        prop_assert_eq!(serde_json::to_string(&again).unwrap(), printed);
    }

    /// A manifest with one byte changed parses to something or is refused, never panics.
    #[test]
    fn damaged_manifest_never_panics(at in any::<prop::sample::Index>(), byte in any::<u8>()) {
        let mut text = serde_json::to_vec(&manifest_json("l", 7, (1, 2), &[("base/1".into(), 3, 4)])).unwrap();
        let i = at.index(text.len());
        text[i] = byte;
        let _ = serde_json::from_slice::<BackupManifest>(&text);
    }
}

// ---------------------------------------------------------------------------------------------
// The tar stream parser, against the `tar` crate's writer

/// What the parser saw: (name, kind, mode, link target, data) per entry.
type Parsed = Vec<(Vec<u8>, EntryKind, u32, Vec<u8>, Vec<u8>)>;

/// Feeds `archive` to [`TarStream`] in pieces of the given sizes (cycled) and collects it.
fn parse_tar(archive: &[u8], pieces: &[usize]) -> Result<Parsed, String> {
    let mut parser = TarStream::new();
    let mut out: Parsed = Vec::new();
    let mut at = 0;
    let mut piece = pieces.iter().cycle();
    while at < archive.len() {
        let n = (*piece.next().unwrap()).clamp(1, archive.len() - at);
        let mut input = Bytes::copy_from_slice(&archive[at..at + n]);
        at += n;
        while let Some(item) = parser.next_item(&mut input).map_err(|e| e.to_string())? {
            match item {
                TarItem::Entry(h) => out.push((h.name, h.kind, h.mode, h.link_name, Vec::new())),
                TarItem::Data(d) => out.last_mut().unwrap().4.extend_from_slice(&d),
                TarItem::EntryEnd => {}
            }
        }
    }
    parser.finish().map_err(|e| e.to_string())?;
    Ok(out)
}

/// One entry of a generated archive.
#[derive(Debug, Clone)]
enum Gen {
    File(String, Vec<u8>, u32),
    Dir(String),
    Link(String, String),
}

fn gen_entry() -> impl Strategy<Value = Gen> {
    // Up to 83 bytes: within ustar's 100-byte name field, as pg_basebackup's names are.
    let name = "[a-z0-9_]{1,20}(/[a-z0-9_]{1,16}(\\.[a-z]{1,3})?){0,3}";
    prop_oneof![
        (
            name,
            prop::collection::vec(any::<u8>(), 0..3000),
            0o400u32..0o777
        )
            .prop_map(|(n, d, m)| Gen::File(n, d, m)),
        name.prop_map(Gen::Dir),
        (name, "(/[a-z0-9_]{1,12}){1,4}").prop_map(|(n, t)| Gen::Link(n, t)),
    ]
}

/// The archive the `tar` crate writes for `entries` (ustar headers, as pg_basebackup's).
fn write_tar(entries: &[Gen]) -> Vec<u8> {
    let mut builder = tar::Builder::new(Vec::new());
    for entry in entries {
        let mut header = tar::Header::new_ustar();
        header.set_mtime(1_700_000_000);
        match entry {
            Gen::File(name, data, mode) => {
                header.set_entry_type(tar::EntryType::Regular);
                header.set_size(data.len() as u64);
                header.set_mode(*mode);
                builder.append_data(&mut header, name, &data[..]).unwrap();
            }
            Gen::Dir(name) => {
                header.set_entry_type(tar::EntryType::Directory);
                header.set_size(0);
                header.set_mode(0o700);
                builder
                    .append_data(&mut header, name, std::io::empty())
                    .unwrap();
            }
            Gen::Link(name, target) => {
                header.set_entry_type(tar::EntryType::Symlink);
                header.set_size(0);
                header.set_mode(0o777);
                builder.append_link(&mut header, name, target).unwrap();
            }
        }
    }
    builder.into_inner().unwrap()
}

proptest! {
    #![proptest_config(config())]

    /// Whatever the `tar` crate writes, our parser reads back entry for entry, in any
    /// split of the input.
    #[test]
    fn tar_parser_reads_what_the_tar_crate_writes(
        entries in prop::collection::vec(gen_entry(), 0..8),
        pieces in prop::collection::vec(1usize..1500, 1..5),
    ) {
        let archive = write_tar(&entries);
        let parsed = parse_tar(&archive, &pieces).map_err(TestCaseError::fail)?;
        prop_assert_eq!(parsed.len(), entries.len());
        for (got, want) in parsed.iter().zip(&entries) {
            let (name, kind, mode, link, data) = got;
            match want {
                Gen::File(n, d, m) => {
                    prop_assert_eq!((name.as_slice(), *kind, *mode), (n.as_bytes(), EntryKind::File, *m));
                    prop_assert_eq!(data, d);
                }
                Gen::Dir(n) => {
                    let stored = name.strip_suffix(b"/").unwrap_or(name);
                    prop_assert_eq!((stored, *kind), (n.as_bytes(), EntryKind::Dir));
                }
                Gen::Link(n, t) => {
                    prop_assert_eq!((name.as_slice(), *kind, link.as_slice()), (n.as_bytes(), EntryKind::Symlink, t.as_bytes()));
                }
            }
        }
    }

    #[test]
    fn tar_parser_never_panics_on_arbitrary_bytes(
        archive in prop::collection::vec(any::<u8>(), 0..3000),
        pieces in prop::collection::vec(1usize..700, 1..4),
    ) {
        let _ = parse_tar(&archive, &pieces);
    }

    /// A damaged archive (bytes changed, cut short) is refused or read, never a panic; a cut
    /// inside an entry is always refused.
    #[test]
    fn damaged_tar_never_panics(
        entries in prop::collection::vec(gen_entry(), 1..4),
        damage in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 0..3),
        cut in any::<prop::sample::Index>(),
    ) {
        let mut archive = write_tar(&entries);
        for (at, byte) in &damage {
            let i = at.index(archive.len());
            archive[i] = *byte;
        }
        let _ = parse_tar(&archive, &[512]);
        let clean = write_tar(&entries);
        // Everything but the two end-of-archive blocks, cut somewhere inside.
        let body = clean.len() - 1024;
        let cut = cut.index(body);
        if cut % 512 != 0 {
            prop_assert!(parse_tar(&clean[..cut], &[4096]).is_err(), "cut at {} accepted", cut);
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Connection strings and URIs

/// libpq's quoting of a value in `key='value'`.
fn quote(value: &str) -> String {
    format!("'{}'", value.replace('\\', "\\\\").replace('\'', "\\'"))
}

/// Percent-encodes every byte outside unreserved characters.
fn percent(value: &str) -> String {
    value
        .bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

fn settings() -> impl Strategy<Value = BTreeMap<String, String>> {
    let value = "[ -~\u{e9}]{0,20}";
    (
        value,
        value,
        proptest::option::of(value),
        proptest::option::of(value),
    )
        .prop_map(|(user, dbname, password, application_name)| {
            let mut m = BTreeMap::new();
            m.insert("user".to_string(), user);
            m.insert("dbname".to_string(), dbname);
            if let Some(p) = password {
                m.insert("password".to_string(), p);
            }
            if let Some(a) = application_name {
                m.insert("application_name".to_string(), a);
            }
            m
        })
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn conninfo_never_panics(text in "[ -~\u{e9}]{0,80}") {
        let _ = parse_settings(&text);
        let _ = walship_common::pgconn::ConnParams::parse_with_env(&text, &|_| None);
    }

    #[test]
    fn uri_never_panics(rest in "[ -~]{0,80}") {
        let _ = parse_settings(&format!("postgresql://{rest}"));
        let _ = walship_common::pgconn::ConnParams::parse_with_env(&format!("postgres://{rest}"), &|_| None);
    }

    /// Settings printed as `key='value'` with libpq's quoting parse back to themselves.
    #[test]
    fn key_value_print_then_parse_is_the_identity(settings in settings()) {
        let text: Vec<String> = settings.iter().map(|(k, v)| format!("{k}={}", quote(v))).collect();
        prop_assert_eq!(parse_settings(&text.join(" ")).unwrap(), settings);
    }

    /// The same settings printed as a percent-encoded URI parse back to themselves (empty
    /// user or password mean "not set" in a URI, as in libpq).
    #[test]
    fn uri_print_then_parse_is_the_identity(settings in settings(), host in "[a-z][a-z0-9]{0,10}", port in 1u16..) {
        let mut uri = "postgresql://".to_string();
        uri.push_str(&percent(&settings["user"]));
        if let Some(p) = settings.get("password") {
            uri.push(':');
            uri.push_str(&percent(p));
        }
        uri.push_str(&format!("@{host}:{port}/{}", percent(&settings["dbname"])));
        if let Some(a) = settings.get("application_name") {
            uri.push_str(&format!("?application_name={}", percent(a)));
        }
        let mut want = settings.clone();
        want.retain(|k, v| !(v.is_empty() && (k == "user" || k == "password" || k == "dbname")));
        want.insert("host".to_string(), host);
        want.insert("port".to_string(), port.to_string());
        let mut got = parse_settings(&uri).map_err(|e| TestCaseError::fail(format!("{uri}: {e}")))?;
        got.retain(|k, v| !(v.is_empty() && (k == "user" || k == "password" || k == "dbname")));
        prop_assert_eq!(got, want, "{}", uri);
    }
}

// ---------------------------------------------------------------------------------------------
// The configuration file

fn load_file(text: &str) -> Result<Config, String> {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("walship.toml");
    std::fs::write(&path, text).unwrap();
    let sources = Sources {
        options: Options {
            config: Some(path),
            ..Options::default()
        },
        env: BTreeMap::new(),
        default_config_file: dir.path().join("absent.toml"),
    };
    Config::load(&sources).map_err(|e| e.to_string())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    #[test]
    fn config_file_never_panics(text in "[\\[\\]a-z_.=\" 0-9\n#:/]{0,200}") {
        let _ = load_file(&text);
    }

    /// A file that sets keys to values in their syntax loads with exactly those values.
    #[test]
    fn config_file_values_load_as_written(
        parallel in 1usize..=256,
        prefetch in 0usize..=256,
        seconds in 1u64..100_000,
        mib in 5u64..5000,
        slot in "[a-z0-9_]{1,63}",
    ) {
        let text = format!(
            "repo = \"file:///var/lib/walship\"\n[archive]\nparallel = {parallel}\n\
             [fetch]\nprefetch = \"{prefetch}\"\n[s3]\nconnect_timeout = \"{seconds}s\"\n\
             part_size = \"{mib}MiB\"\n[stream]\nslot = \"{slot}\"\n"
        );
        let config = load_file(&text).map_err(TestCaseError::fail)?;
        prop_assert_eq!(config.archive.parallel, parallel);
        prop_assert_eq!(config.fetch.prefetch, prefetch);
        prop_assert_eq!(config.s3.connect_timeout, std::time::Duration::from_secs(seconds));
        prop_assert_eq!(config.s3.part_size.0, mib << 20);
        prop_assert_eq!(config.stream.slot, slot);
    }
}

/// A configuration printed (its serialized form, in the file's syntax) as a file loads back
/// to the same configuration: parse, print, parse is the identity.
fn printed_as_file(config: &Config) -> String {
    let json = serde_json::to_value(config).unwrap();
    let scalar = |v: &serde_json::Value| -> Option<toml::Value> {
        match v {
            serde_json::Value::String(s) => Some(toml::Value::String(s.clone())),
            serde_json::Value::Bool(b) => Some(toml::Value::Boolean(*b)),
            serde_json::Value::Number(n) => n.as_i64().map(toml::Value::Integer),
            _ => None,
        }
    };
    let mut file = toml::Table::new();
    for (key, value) in json.as_object().unwrap() {
        match value {
            serde_json::Value::Object(section) => {
                let table: toml::Table = section
                    .iter()
                    .filter_map(|(k, v)| Some((k.clone(), scalar(v)?)))
                    .collect();
                file.insert(key.clone(), toml::Value::Table(table));
            }
            v if key != "config_file" => {
                if let Some(v) = scalar(v) {
                    file.insert(key.clone(), v);
                }
            }
            _ => {}
        }
    }
    toml::to_string(&file).unwrap()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    #[test]
    fn config_parse_print_parse_is_the_identity(
        parallel in 1usize..=256,
        read_ahead in 0usize..=256,
        millis in 1u64..10_000_000,
        part_mib in 5u64..5000,
        zstd in proptest::option::of(1i32..=22),
        path_style in any::<bool>(),
        region in "[a-z]{2}-[a-z]{4,9}-[1-9]",
    ) {
        let compression = zstd.map_or("lz4".to_string(), |l| format!("zstd:{l}"));
        let text = format!(
            "repo = \"s3://bucket/prefix\"\ncompression = \"{compression}\"\n\
             [s3]\nendpoint = \"http://127.0.0.1:8333\"\nregion = \"{region}\"\n\
             path_style = {path_style}\noperation_timeout = \"{millis}ms\"\n\
             part_size = \"{part_mib}MiB\"\n\
             [archive]\nparallel = {parallel}\nread_ahead = {read_ahead}\n\
             [restore]\nparallel = {parallel}\n"
        );
        let first = load_file(&text).map_err(TestCaseError::fail)?;
        let printed = printed_as_file(&first);
        let again = load_file(&printed).map_err(|e| TestCaseError::fail(format!("{e}\n{printed}")))?;
        let strip = |c: Config| Config { config_file: None, ..c };
        prop_assert_eq!(strip(again), strip(first));
    }
}

// ---------------------------------------------------------------------------------------------
// Bounded memory, measured

/// A genuine object much larger than any buffer is read as a stream: the reader holds the
/// decompressor's state (an lz4 block compressed and decompressed: 8 MiB), the same for 8 MiB
/// of content as for 32 MiB, never the content.
#[test]
fn a_large_object_is_streamed_in_bounded_memory() {
    // Incompressible enough: a 1 MiB pseudo-random block, each copy marked with its number.
    let mut state = 0x9E37_79B9_u32;
    let block: Vec<u8> = (0..MIB)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 17;
            state ^= state << 5;
            state as u8
        })
        .collect();
    for codec in CODECS {
        let mut peaks = Vec::new();
        for size in [8 * MIB, 32 * MIB] {
            let mut content = Vec::with_capacity(size);
            for copy in 0..size / MIB {
                content.extend_from_slice(&block);
                content[copy * MIB] = copy as u8;
            }
            let stored = encode_to_vec(&content, codec).unwrap();
            drop(content);
            let (read, peak) = peak_during(|| {
                let mut reader = ObjectReader::new(&stored[..]).unwrap();
                std::io::copy(&mut reader, &mut std::io::sink()).unwrap()
            });
            assert_eq!(read, size as u64);
            assert!(
                peak < 9 * MIB,
                "{codec:?}: the reader held {peak} bytes for {size} of content"
            );
            peaks.push(peak);
        }
        assert!(
            peaks[1] <= peaks[0] + 64 * 1024,
            "{codec:?}: memory grew with the content: {peaks:?}"
        );
    }
}

#[test]
fn the_counting_allocator_sees_what_a_parse_holds() {
    // The measurement itself: 3 MiB held at once is seen, freed memory is not counted twice.
    let ((), peak) = peak_during(|| {
        let a = vec![1u8; MIB];
        let b = vec![2u8; 2 * MIB];
        drop((a, b));
        let c = vec![3u8; MIB];
        drop(c);
    });
    assert!((3 * MIB..3 * MIB + 4096).contains(&peak), "{peak}");
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 4, ..ProptestConfig::default() })]

    /// A decompression bomb (64 MiB of one byte value stored in a few KiB) is refused by a
    /// reader limited to 1 MiB without ever holding much more than that limit, read whole or
    /// streamed.
    #[test]
    fn a_decompression_bomb_is_refused_within_its_limit(codec in 1usize..3, byte in any::<u8>()) {
        let stored = encode_to_vec(&vec![byte; 64 * MIB], CODECS[codec]).unwrap();
        prop_assert!(stored.len() < MIB, "{} bytes stored", stored.len());
        let (decoded, peak) = peak_during(|| decode_to_vec(&stored, MIB as u64));
        prop_assert!(decoded.is_err());
        prop_assert!(peak < 3 * MIB, "decode_to_vec held {peak} bytes");
        let (streamed, peak) = peak_during(|| {
            let mut reader = ObjectReader::new(&stored[..])?.with_limit(MIB as u64)?;
            std::io::copy(&mut reader, &mut std::io::sink()).map_err(Into::into)
        });
        let streamed: Result<u64, walship_common::codec::CodecError> = streamed;
        prop_assert!(streamed.is_err());
        prop_assert!(peak < 3 * MIB, "the streaming reader held {peak} bytes");
    }

    /// A tar entry whose header claims up to 64 GiB is passed through as it arrives: the
    /// parser holds a header's worth, not the data (here 16 MiB of it in 64 KiB pieces).
    #[test]
    fn a_tar_entry_claiming_gigabytes_is_streamed_not_buffered(claimed in (16u64 << 20)..(64u64 << 30)) {
        static PIECE: [u8; 64 * 1024] = [0u8; 64 * 1024];
        let mut header = tar::Header::new_ustar();
        header.set_path("base/1/huge").unwrap();
        header.set_entry_type(tar::EntryType::Regular);
        header.set_size(claimed);
        header.set_mode(0o600);
        header.set_cksum();
        let header = Bytes::copy_from_slice(header.as_bytes());
        let (seen, peak) = peak_during(|| {
            let mut parser = TarStream::new();
            let mut seen = 0u64;
            let pieces = std::iter::once(header.clone())
                .chain((0..256).map(|_| Bytes::from_static(&PIECE)));
            for mut input in pieces {
                while let Some(item) = parser.next_item(&mut input).unwrap() {
                    if let TarItem::Data(d) = item {
                        seen += d.len() as u64;
                    }
                }
            }
            seen
        });
        prop_assert_eq!(seen, 256 * 64 * 1024);
        prop_assert!(peak < 64 * 1024, "the tar parser held {peak} bytes");
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    /// History files, manifests (as JSON text), connection strings and config files: whatever
    /// they hold (valid or not), a parse takes memory in proportion to the input.
    #[test]
    fn text_parsers_take_memory_in_proportion_to_their_input(
        unit in prop_oneof![
            "[0-9A-F/\t x]{1,40}\n",
            "[{}\\[\\]\":,0-9a-z_ ]{1,40}",
            "[a-z_]{1,8}=('[^']{0,20}'|[a-z0-9]{1,8}) ",
            "\\[[a-z]{1,6}\\]\n[a-z_]{1,10} = \"[a-z0-9/:]{0,30}\"\n",
        ],
        repeat in 1usize..20_000,
    ) {
        let input = unit.repeat(repeat);
        let bound = 16 * input.len() + 64 * 1024;
        let (_, peak) = peak_during(|| TimelineHistory::parse(TimelineId(2), input.as_bytes()).map(drop));
        prop_assert!(peak < bound, "history: {peak} bytes for {} of input", input.len());
        let (_, peak) = peak_during(|| serde_json::from_str::<BackupManifest>(&input).map(drop));
        prop_assert!(peak < bound, "manifest: {peak} bytes for {} of input", input.len());
        let (_, peak) = peak_during(|| parse_settings(&input).map(drop));
        prop_assert!(peak < bound, "conninfo: {peak} bytes for {} of input", input.len());
        let (_, peak) = peak_during(|| load_file(&input).map(drop));
        prop_assert!(peak < bound, "config: {peak} bytes for {} of input", input.len());
    }
}
