//! The runtime: turns an OCI runtime-spec config.json plus a rootfs into a supervised process.
