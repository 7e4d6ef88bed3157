//! Image archives: `image save` writes an OCI archive (a tar of an OCI image layout) or
//! a docker-archive (`manifest.json` + config + uncompressed layer tars); `image load`
//! reads both, including what `docker save` and `podman save` write.

mod load;
mod save;
mod tarindex;

pub use load::{load, LoadInput};
pub use save::{save, ArchiveFormat};

/// Annotation containerd and Docker use for the full image name in an OCI archive.
pub const CONTAINERD_NAME_ANNOTATION: &str = "io.containerd.image.name";
