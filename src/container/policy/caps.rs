//! Docker's default capability set.

/// Docker's default capability set, as OCI names ("CAP_CHOWN", ...).
pub const DEFAULT_CAPS: &[&str] = &[
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_FSETID",
    "CAP_FOWNER",
    "CAP_MKNOD",
    "CAP_NET_RAW",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETFCAP",
    "CAP_SETPCAP",
    "CAP_NET_BIND_SERVICE",
    "CAP_SYS_CHROOT",
    "CAP_KILL",
    "CAP_AUDIT_WRITE",
];

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runtime::security::{mask_of_names, CapMasks};
    use oci_spec::runtime::{Capabilities, LinuxCapabilitiesBuilder};

    #[test]
    fn docker_default_set_gives_the_docker_mask() {
        let defaults: Capabilities = DEFAULT_CAPS
            .iter()
            .map(|name| serde_json::from_value(serde_json::json!(name)).unwrap())
            .collect();
        let caps = LinuxCapabilitiesBuilder::default()
            .bounding(defaults.clone())
            .effective(defaults.clone())
            .permitted(defaults.clone())
            .inheritable(defaults)
            .ambient(Capabilities::new())
            .build()
            .unwrap();
        let masks = CapMasks::from_spec(Some(&caps), 40).unwrap();
        assert_eq!(masks.effective, 0xa804_25fb);
        assert_eq!(masks.bounding, 0xa804_25fb);
        assert_eq!(masks.permitted, 0xa804_25fb);
        assert_eq!(masks.inheritable, 0xa804_25fb);
        assert_eq!(masks.ambient, 0);
        assert_eq!(mask_of_names(DEFAULT_CAPS).unwrap(), 0xa804_25fb);
    }
}
