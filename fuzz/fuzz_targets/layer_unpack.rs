//! A layer blob (tar, gzip or zstd, sniffed as an import does) unpacked into an empty
//! directory: any input may be refused, none may panic, hang or write outside the layer
//! directory (`../x`, `../../sibling/x`, absolute names, symlinks and hard links leading
//! out). The layer directory sits `DEPTH` levels down a private temp tree with a file, a
//! directory and a symlink beside it at every level; the whole tree but the layer is
//! recorded before (names, types, modes, link counts, contents, link targets) and must be
//! exactly the same after, so an escape by up to `DEPTH` levels, into a sibling or
//! through a link is caught wherever it lands in the tree.
#![no_main]

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::{symlink, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use libfuzzer_sys::fuzz_target;

const DEPTH: usize = 6;

/// What one entry of the tree is: type and mode, then content (file) or target (link).
type Entry = (String, u32, Vec<u8>);

/// Every entry under `dir` (relative paths), not descending into `skip`.
fn record(top: &Path, dir: &Path, skip: &Path, out: &mut BTreeMap<PathBuf, Entry>) {
    for entry in fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        let meta = fs::symlink_metadata(&path).unwrap();
        let mode = meta.permissions().mode();
        let kind = meta.file_type();
        let rel = path.strip_prefix(top).unwrap().to_path_buf();
        if path == skip {
            assert!(kind.is_dir(), "the layer directory was replaced: {meta:?}");
            out.insert(rel, ("layer".into(), 0, Vec::new()));
        } else if kind.is_dir() {
            out.insert(rel, ("dir".into(), mode, Vec::new()));
            record(top, &path, skip, out);
        } else if kind.is_symlink() {
            let target = fs::read_link(&path).unwrap();
            out.insert(
                rel,
                (
                    "link".into(),
                    0,
                    target.into_os_string().into_encoded_bytes(),
                ),
            );
        } else if kind.is_file() {
            // The link count too: a hard link made inside the layer to a file outside
            // would let whatever writes into the layer later write outside.
            let kind = format!("file, {} links", meta.nlink());
            out.insert(rel, (kind, mode, fs::read(&path).unwrap()));
        } else {
            out.insert(rel, (format!("{kind:?}"), mode, Vec::new()));
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let top = tempfile::tempdir().unwrap();
    let mut dir = top.path().to_path_buf();
    for level in 0..DEPTH {
        fs::write(dir.join("outside"), format!("untouched {level}")).unwrap();
        fs::create_dir(dir.join("sibling")).unwrap();
        fs::write(dir.join("sibling/inside"), b"untouched").unwrap();
        symlink("sibling", dir.join("link")).unwrap();
        dir = dir.join(format!("d{level}"));
        fs::create_dir(&dir).unwrap();
    }
    let layer = dir.join("layer");
    fs::create_dir(&layer).unwrap();
    let mut before = BTreeMap::new();
    record(top.path(), top.path(), &layer, &mut before);

    let _ = mycontainer_store::unpack_layer_bytes(data, &layer);

    let mut after = BTreeMap::new();
    record(top.path(), top.path(), &layer, &mut after);
    if before != after {
        let changed: Vec<&PathBuf> = before
            .keys()
            .chain(after.keys())
            .filter(|k| before.get(*k) != after.get(*k))
            .collect();
        panic!("the unpacker wrote outside the layer directory: {changed:?}");
    }
});
