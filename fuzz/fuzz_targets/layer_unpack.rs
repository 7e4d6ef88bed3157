//! A layer blob (tar, gzip or zstd, sniffed as an import does) unpacked into an empty
//! directory: any input may be refused, none may panic, hang or write beside the layer
//! directory (`../x`, absolute names, symlinks and hard links leading out).
#![no_main]

use std::fs;

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let outer = tempfile::tempdir().unwrap();
    let layer = outer.path().join("layer");
    fs::create_dir(&layer).unwrap();
    let outside = outer.path().join("outside");
    fs::write(&outside, b"untouched").unwrap();

    let _ = mycontainer_store::unpack_layer_bytes(data, &layer);

    let mut names: Vec<String> = fs::read_dir(outer.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(
        names,
        ["layer", "outside"],
        "the unpacker wrote beside the layer"
    );
    let meta = fs::symlink_metadata(&outside).unwrap();
    assert!(meta.file_type().is_file() && meta.len() == 9);
    assert_eq!(fs::read(&outside).unwrap(), b"untouched");
    assert!(fs::symlink_metadata(&layer).unwrap().is_dir());
});
