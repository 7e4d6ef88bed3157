//! Image manifests, indexes and configs as a registry or an archive gives them: the input
//! is a manifest (or index) document, a NUL byte, then a config document. Any bytes are
//! read or refused without panicking: the index is told from a manifest and the host's
//! platform picked from it (src/registry/platform.rs, included by path), and the manifest
//! and config are parsed and checked against each other as the store does before adding
//! an image (`check_image_documents`), including the size it would show.
#![no_main]

use libfuzzer_sys::fuzz_target;

/// The two media types platform.rs takes from the registry client (`super::client`).
mod client {
    pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
    pub const DOCKER_MANIFEST_LIST: &str =
        "application/vnd.docker.distribution.manifest.list.v2+json";
}
#[allow(dead_code)]
#[path = "../../src/registry/platform.rs"]
mod platform;

fuzz_target!(|data: &[u8]| {
    let (manifest, config) = match data.iter().position(|&b| b == 0) {
        Some(at) => (&data[..at], &data[at + 1..]),
        None => (data, &b""[..]),
    };
    if let Ok(doc) = serde_json::from_slice::<serde_json::Value>(manifest) {
        let media_type = platform::declared_media_type(&doc, "");
        if platform::is_index(&media_type, &doc) {
            let _ = platform::pick_platform(&doc);
        }
    }
    let _ = mycontainer_store::check_image_documents(manifest, config);
});
