//! Compression sniffing: any head of a file is told apart without panicking, and the
//! answer matches the magic bytes (gzip 1f 8b, zstd 28 b5 2f fd; bzip2 and xz refused).
#![no_main]

use libfuzzer_sys::fuzz_target;
use mycontainer_store::Compression;

fuzz_target!(|data: &[u8]| {
    match Compression::sniff(data) {
        Ok(Compression::Gzip) => assert!(data.starts_with(&[0x1f, 0x8b])),
        Ok(Compression::Zstd) => assert!(data.starts_with(&[0x28, 0xb5, 0x2f, 0xfd])),
        Ok(Compression::None) => {
            assert!(
                !data.starts_with(&[0x1f, 0x8b]) && !data.starts_with(&[0x28, 0xb5, 0x2f, 0xfd])
            )
        }
        Err(e) => {
            assert!(
                data.starts_with(b"BZh") || data.starts_with(&[0xfd, b'7', b'z', b'X', b'Z', 0])
            );
            assert!(!e.to_string().contains('\n'));
        }
    }
});
