//! The store through its public API: import (plain, gzip, zstd), layer content,
//! whiteouts, hostile archives, corrupt input, naming, removal, gc, concurrency.

use std::fs;
use std::io::Write;
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use mycontainer_store::{Error, ImageSpec, ImportSource, NoProgress, Reference, Store};
use tar::{EntryType, Header};

/// Builds tar archives entry by entry, including names tar::Builder would refuse.
struct TarBuilder {
    bytes: Vec<u8>,
}

impl TarBuilder {
    fn new() -> Self {
        TarBuilder { bytes: Vec::new() }
    }

    fn raw(self, name: &str, kind: EntryType, link: Option<&str>, data: &[u8], mode: u32) -> Self {
        self.raw_at(name, kind, link, data, mode, 1_600_000_000)
    }

    fn raw_at(
        mut self,
        name: &str,
        kind: EntryType,
        link: Option<&str>,
        data: &[u8],
        mode: u32,
        mtime: u64,
    ) -> Self {
        let mut header = Header::new_ustar();
        {
            let old = header.as_old_mut();
            old.name = [0; 100];
            old.name[..name.len()].copy_from_slice(name.as_bytes());
            if let Some(link) = link {
                old.linkname[..link.len()].copy_from_slice(link.as_bytes());
            }
        }
        header.set_entry_type(kind);
        header.set_mode(mode);
        header.set_uid(1000);
        header.set_gid(1001);
        header.set_mtime(mtime);
        header.set_size(data.len() as u64);
        header.set_cksum();
        self.bytes.extend_from_slice(header.as_bytes());
        self.bytes.extend_from_slice(data);
        let pad = (512 - data.len() % 512) % 512;
        self.bytes.extend(std::iter::repeat_n(0u8, pad));
        self
    }

    fn dir(self, name: &str) -> Self {
        self.raw(name, EntryType::Directory, None, b"", 0o755)
    }
    fn file(self, name: &str, data: &[u8]) -> Self {
        self.raw(name, EntryType::Regular, None, data, 0o644)
    }
    fn symlink(self, name: &str, target: &str) -> Self {
        self.raw(name, EntryType::Symlink, Some(target), b"", 0o777)
    }
    fn hardlink(self, name: &str, target: &str) -> Self {
        self.raw(name, EntryType::Link, Some(target), b"", 0o644)
    }

    fn finish(mut self) -> Vec<u8> {
        self.bytes.extend(std::iter::repeat_n(0u8, 1024));
        self.bytes
    }
}

struct TestStore {
    _dir: tempfile::TempDir,
    store: Store,
}

impl TestStore {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        TestStore { _dir: dir, store }
    }

    fn root(&self) -> &Path {
        self.store.root()
    }

    fn import(
        &self,
        bytes: Vec<u8>,
        name: Option<&str>,
    ) -> mycontainer_store::Result<mycontainer_store::Image> {
        let reference = name.map(|n| Reference::parse(n).unwrap());
        let source = ImportSource::Stream(Box::new(std::io::Cursor::new(bytes)));
        self.store
            .import_image(
                source,
                &ImageSpec::default(),
                reference.as_ref(),
                &NoProgress,
            )
            .map(|(image, _)| image)
    }

    fn count(&self, dir: &str) -> usize {
        fs::read_dir(self.root().join(dir))
            .map(|d| d.count())
            .unwrap_or(0)
    }

    /// Nothing visible and nothing left in tmp: the state after a failed import.
    fn assert_untouched(&self) {
        assert_eq!(self.count("store/blobs/sha256"), 0, "blobs left");
        assert_eq!(self.count("layers"), 0, "layer dirs left");
        assert_eq!(self.count("tmp"), 0, "temp entries left");
        assert!(
            self.store.images().unwrap().is_empty(),
            "an image is listed"
        );
    }
}

fn sample_tar() -> Vec<u8> {
    TarBuilder::new()
        .dir("./")
        .dir("etc/")
        .file("etc/hello", b"hello world\n")
        .raw(
            "bin/tool",
            EntryType::Regular,
            None,
            b"#!/bin/sh\necho tool\n",
            0o4755,
        )
        .symlink("bin/link", "/etc/hello")
        .hardlink("etc/hello2", "etc/hello")
        .raw("readonly/", EntryType::Directory, None, b"", 0o555)
        .file("readonly/inside", b"x")
        .finish()
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    encoder.write_all(bytes).unwrap();
    encoder.finish().unwrap()
}

fn layer_path(store: &Store, image: &mycontainer_store::Image) -> PathBuf {
    store.layer_dir(&image.layers.last().unwrap().diff_id)
}

#[test]
fn root_mount_holds_the_layers_and_lists_the_top_one_first() {
    let t = TestStore::new();
    let image = t.import(sample_tar(), Some("sample")).unwrap();
    let root = t
        .store
        .root_mount(&image, "c1", PathBuf::from("/u"), PathBuf::from("/w"))
        .unwrap();
    assert_eq!(root.lowerdirs, vec![layer_path(&t.store, &image)]);
    assert_eq!((root.upperdir, root.workdir), ("/u".into(), "/w".into()));
    // Held: the layer outlives its image until the holder lets go.
    t.store.remove_image("sample").unwrap();
    t.store.gc().unwrap();
    assert!(layer_path(&t.store, &image).is_dir());
    t.store.release_layers("c1").unwrap();
    t.store.gc().unwrap();
    assert!(!layer_path(&t.store, &image).exists());
}

#[test]
fn imports_a_plain_tar_with_content_modes_links_and_owners() {
    let t = TestStore::new();
    let image = t.import(sample_tar(), Some("sample")).unwrap();
    assert_eq!(image.names, vec!["sample:latest"]);
    assert_eq!(image.layers.len(), 1);
    assert_eq!(
        image.layers[0].digest, image.layers[0].diff_id,
        "a plain tar is its own diff"
    );
    let layer = layer_path(&t.store, &image);
    assert_eq!(fs::read(layer.join("etc/hello")).unwrap(), b"hello world\n");
    let tool = fs::metadata(layer.join("bin/tool")).unwrap();
    assert_eq!(
        tool.permissions().mode() & 0o7777,
        0o4755,
        "setuid survives chown"
    );
    assert_eq!(
        fs::read_link(layer.join("bin/link")).unwrap(),
        Path::new("/etc/hello")
    );
    let a = fs::metadata(layer.join("etc/hello")).unwrap();
    let b = fs::metadata(layer.join("etc/hello2")).unwrap();
    assert_eq!(a.ino(), b.ino(), "hardlink shares the inode");
    assert_eq!(a.mtime(), 1_600_000_000);
    let ro = fs::metadata(layer.join("readonly")).unwrap();
    assert_eq!(ro.permissions().mode() & 0o777, 0o555);
    assert_eq!(
        ro.mtime(),
        1_600_000_000,
        "directory mtime set after its children"
    );
    if unsafe_geteuid_is_root() {
        assert_eq!((a.uid(), a.gid()), (1000, 1001));
    }
    assert_eq!(t.count("tmp"), 0);
    // The store is an OCI layout: blobs named by their digest.
    for digest in [&image.id, &image.manifest_digest, &image.layers[0].digest] {
        assert!(t
            .root()
            .join("store/blobs/sha256")
            .join(digest.hex())
            .is_file());
    }
}

fn unsafe_geteuid_is_root() -> bool {
    fs::metadata("/proc/self")
        .map(|m| m.uid() == 0)
        .unwrap_or(false)
}

#[test]
fn the_archive_root_entry_never_sets_the_layer_roots_mode_or_owner() {
    // A ".", "./" or "/" entry is the layer root itself: a setuid, sticky,
    // world-writable mode or a foreign owner there would land on a directory of the
    // host's store. The rule: the store's 0755 directory, whatever the entry says.
    for (name, mode) in [
        (".", 0o4777),
        ("./", 0o1777),
        ("./", 0o700),
        ("/", 0o4777),
        ("/", 0o700),
    ] {
        let t = TestStore::new();
        let tar = TarBuilder::new()
            .raw(name, EntryType::Directory, None, b"", mode)
            .file("etc/hello", b"hello\n")
            .finish();
        let image = t.import(tar, Some("dot")).unwrap();
        let layer = fs::metadata(layer_path(&t.store, &image)).unwrap();
        assert_eq!(layer.mode() & 0o7777, 0o755, "{name:?} with mode {mode:o}");
        // SAFETY: geteuid has no preconditions.
        assert_eq!(layer.uid(), unsafe { libc::geteuid() }, "{name:?}");
    }
}

#[test]
fn a_file_that_replaces_a_directory_keeps_its_own_mode_and_mtime() {
    // The directory's metadata is applied at the end: it must not land on the file
    // (or the symlink) that later took the directory's name.
    let t = TestStore::new();
    let tar = TarBuilder::new()
        .raw_at("a", EntryType::Directory, None, b"", 0o1777, 1_700_000_000)
        .raw("a", EntryType::Regular, None, b"secret", 0o600)
        .raw_at("b/", EntryType::Directory, None, b"", 0o1777, 1_700_000_000)
        .raw("b", EntryType::Symlink, Some("a"), b"", 0o777)
        .finish();
    let image = t.import(tar, Some("dirfile")).unwrap();
    let layer = layer_path(&t.store, &image);
    let file = fs::symlink_metadata(layer.join("a")).unwrap();
    assert!(file.is_file());
    assert_eq!(file.mode() & 0o7777, 0o600);
    assert_eq!(file.mtime(), 1_600_000_000);
    let link = fs::symlink_metadata(layer.join("b")).unwrap();
    assert!(link.file_type().is_symlink());
    assert_eq!(link.mtime(), 1_600_000_000);
    // Nor was the symlink followed: its target is the file, still 0600.
    assert_eq!(
        fs::metadata(layer.join("b")).unwrap().mode() & 0o7777,
        0o600
    );
}

#[test]
fn a_name_taken_earlier_in_the_tar_is_replaced_never_written_through() {
    // The unpacker creates first and clears a taken name only when the create finds
    // it: each later entry below must replace what holds its name, and the file that
    // replaces a symlink to a host file must not write to that host file.
    let host = tempfile::tempdir().unwrap();
    let victim = host.path().join("victim");
    fs::write(&victim, b"host data").unwrap();
    let victim_name = victim.to_str().unwrap();
    let t = TestStore::new();
    let tar = TarBuilder::new()
        .symlink("passwd", victim_name)
        .raw("passwd", EntryType::Regular, None, b"layer data", 0o640)
        .file("twice", b"first")
        .raw("twice", EntryType::Regular, None, b"second", 0o600)
        .symlink("link", "old-target")
        .symlink("link", "new-target")
        .file("becomes-dir", b"x")
        .raw("becomes-dir", EntryType::Directory, None, b"", 0o750)
        .symlink("dir-link", host.path().to_str().unwrap())
        .raw("dir-link", EntryType::Directory, None, b"", 0o700)
        .file("dir-link/inside", b"y")
        .finish();
    let image = t.import(tar, Some("replaced")).unwrap();
    let layer = layer_path(&t.store, &image);
    assert_eq!(fs::read(&victim).unwrap(), b"host data");
    let passwd = fs::symlink_metadata(layer.join("passwd")).unwrap();
    assert!(passwd.is_file());
    assert_eq!(passwd.mode() & 0o7777, 0o640);
    assert_eq!(passwd.mtime(), 1_600_000_000);
    assert_eq!(fs::read(layer.join("passwd")).unwrap(), b"layer data");
    assert_eq!(fs::read(layer.join("twice")).unwrap(), b"second");
    assert_eq!(
        fs::read_link(layer.join("link")).unwrap(),
        Path::new("new-target")
    );
    let dir = fs::symlink_metadata(layer.join("becomes-dir")).unwrap();
    assert!(dir.is_dir());
    assert_eq!(dir.mode() & 0o7777, 0o750);
    assert!(fs::symlink_metadata(layer.join("dir-link"))
        .unwrap()
        .is_dir());
    assert_eq!(fs::read(layer.join("dir-link/inside")).unwrap(), b"y");
    assert!(!host.path().join("inside").exists());
}

#[test]
fn absolute_names_are_resolved_inside_the_layer() {
    // umoci writes "/" and "/etc/" entries; GNU tar and containerd take absolute names
    // inside the layer. Symlinks, absolute ones included, are still never followed.
    let t = TestStore::new();
    let tar = TarBuilder::new()
        .raw("/", EntryType::Directory, None, b"", 0o755)
        .dir("/etc/")
        .file("/etc/passwd", b"root:x:0:0::/root:/bin/sh\n")
        .symlink("/etc/hostlink", "/etc")
        .hardlink("/etc/passwd-", "/etc/passwd")
        .finish();
    let image = t.import(tar, Some("umoci")).unwrap();
    let layer = layer_path(&t.store, &image);
    assert_eq!(
        fs::read(layer.join("etc/passwd")).unwrap(),
        b"root:x:0:0::/root:/bin/sh\n"
    );
    assert!(fs::symlink_metadata(layer.join("etc")).unwrap().is_dir());
    let link = fs::symlink_metadata(layer.join("etc/hostlink")).unwrap();
    assert!(link.file_type().is_symlink());
    assert_eq!(
        fs::read_link(layer.join("etc/hostlink")).unwrap(),
        Path::new("/etc")
    );
    let passwd = fs::metadata(layer.join("etc/passwd")).unwrap();
    assert_eq!(passwd.nlink(), 2);
    assert_eq!(
        fs::metadata(layer.join("etc/passwd-")).unwrap().ino(),
        passwd.ino()
    );

    // Writing through an absolute symlink is refused as through any symlink.
    let t = TestStore::new();
    let tar = TarBuilder::new()
        .symlink("/etc", "/etc")
        .file("/etc/evil", b"x")
        .finish();
    let err = t.import(tar, Some("evil")).unwrap_err();
    assert!(matches!(err, Error::HostileEntry { .. }), "{err}");
    assert!(err.to_string().contains("/etc/evil"), "{err}");
    t.assert_untouched();
    assert!(!Path::new("/etc/evil").exists());
}

#[test]
fn a_new_store_is_private_and_its_lock_files_are_0600() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("state");
    let store = Store::open(&root).unwrap();
    let mode = |path: &Path| fs::metadata(path).unwrap().mode() & 0o7777;
    for private in ["", "layers", "tmp"] {
        assert_eq!(mode(&root.join(private)), 0o700, "<root>/{private}");
    }
    let source = ImportSource::Stream(Box::new(std::io::Cursor::new(sample_tar())));
    let import = |source, name| {
        let _ingest = store.ingest_lock().unwrap();
        let reference = Reference::parse(name).unwrap();
        store
            .import_image(source, &ImageSpec::default(), Some(&reference), &NoProgress)
            .unwrap();
    };
    import(source, "sample");
    for lock in ["index.lock", "gc.lock"] {
        assert_eq!(mode(&root.join(lock)), 0o600, "{lock}");
    }
    // Lock files an older version made with the umask's 0644 are closed when next used.
    for lock in ["index.lock", "gc.lock"] {
        fs::set_permissions(root.join(lock), fs::Permissions::from_mode(0o644)).unwrap();
    }
    let again = ImportSource::Stream(Box::new(std::io::Cursor::new(sample_tar())));
    import(again, "another");
    for lock in ["index.lock", "gc.lock"] {
        assert_eq!(mode(&root.join(lock)), 0o600, "{lock}");
    }
}

#[test]
fn gzip_and_zstd_share_the_unpacked_layer_and_reimport_stores_nothing() {
    let t = TestStore::new();
    let plain = sample_tar();
    let a = t.import(plain.clone(), Some("plain")).unwrap();
    let b = t.import(gzip(&plain), Some("gz")).unwrap();
    let c = t
        .import(zstd::encode_all(plain.as_slice(), 3).unwrap(), Some("zst"))
        .unwrap();
    assert_eq!(a.layers[0].diff_id, b.layers[0].diff_id);
    assert_eq!(a.layers[0].diff_id, c.layers[0].diff_id);
    assert_ne!(a.layers[0].digest, b.layers[0].digest);
    assert!(b.layers[0].media_type.ends_with("tar+gzip"));
    assert!(c.layers[0].media_type.ends_with("tar+zstd"));
    assert_eq!(t.count("layers"), 1, "one unpacked copy for all three");
    let blobs = t.count("store/blobs/sha256");
    let again = t.import(gzip(&plain), Some("gz2")).unwrap();
    assert_eq!(again.id, b.id);
    assert_eq!(
        t.count("store/blobs/sha256"),
        blobs,
        "re-import wrote no blob"
    );
}

#[test]
fn reimporting_a_file_is_recognised_by_its_digest() {
    let t = TestStore::new();
    let file = t.root().join("input.tar");
    fs::write(&file, sample_tar()).unwrap();
    let spec = ImageSpec::default();
    let (_, first) = t
        .store
        .import_image(ImportSource::File(&file), &spec, None, &NoProgress)
        .unwrap();
    assert!(!first.reused);
    let (_, second) = t
        .store
        .import_image(ImportSource::File(&file), &spec, None, &NoProgress)
        .unwrap();
    assert!(second.reused);
    assert_eq!(first.layer, second.layer);
}

#[test]
fn whiteouts_become_overlay_whiteouts() {
    let t = TestStore::new();
    let tar = TarBuilder::new()
        .dir("etc/")
        .file("etc/.wh.removed", b"")
        .dir("opaque/")
        .file("opaque/.wh..wh..opq", b"")
        .file("opaque/kept", b"k")
        .finish();
    let image = t.import(tar, Some("wh")).unwrap();
    let layer = layer_path(&t.store, &image);
    let whiteout = fs::symlink_metadata(layer.join("etc/removed")).unwrap();
    assert!(whiteout.file_type().is_char_device());
    assert_eq!(whiteout.rdev(), 0);
    assert!(!layer.join("etc/.wh.removed").exists());
    let value = xattr(&layer.join("opaque"), "trusted.overlay.opaque");
    assert_eq!(value.as_deref(), Some(&b"y"[..]));
    assert!(!layer.join("opaque/.wh..wh..opq").exists());
}

fn xattr(path: &Path, name: &str) -> Option<Vec<u8>> {
    let c_path = std::ffi::CString::new(path.as_os_str().as_encoded_bytes()).ok()?;
    let c_name = std::ffi::CString::new(name).ok()?;
    let mut buf = [0u8; 64];
    // SAFETY: valid strings and a buffer of the given length.
    let n = unsafe {
        libc_lgetxattr(
            c_path.as_ptr(),
            c_name.as_ptr(),
            buf.as_mut_ptr(),
            buf.len(),
        )
    };
    (n >= 0).then(|| buf[..n as usize].to_vec())
}

extern "C" {
    #[link_name = "lgetxattr"]
    fn libc_lgetxattr(
        path: *const std::ffi::c_char,
        name: *const std::ffi::c_char,
        value: *mut u8,
        size: usize,
    ) -> isize;
}

#[test]
fn device_nodes_fifos_and_xattrs_are_kept() {
    if !unsafe_geteuid_is_root() {
        return; // mknod needs CAP_MKNOD
    }
    let t = TestStore::new();
    let mut builder = tar::Builder::new(Vec::new());
    let mut header = Header::new_ustar();
    header.set_entry_type(EntryType::Char);
    header.set_device_major(1).unwrap();
    header.set_device_minor(3).unwrap();
    header.set_mode(0o666);
    header.set_uid(0);
    header.set_gid(0);
    header.set_mtime(0);
    header.set_size(0);
    builder
        .append_data(&mut header, "dev/null", std::io::empty())
        .unwrap();
    let mut fifo = Header::new_ustar();
    fifo.set_entry_type(EntryType::Fifo);
    fifo.set_mode(0o600);
    fifo.set_uid(0);
    fifo.set_gid(0);
    fifo.set_mtime(0);
    fifo.set_size(0);
    builder
        .append_data(&mut fifo, "run/fifo", std::io::empty())
        .unwrap();
    builder
        .append_pax_extensions([("SCHILY.xattr.user.origin", &b"test"[..])])
        .unwrap();
    let mut file = Header::new_ustar();
    file.set_mode(0o644);
    file.set_uid(0);
    file.set_gid(0);
    file.set_mtime(0);
    file.set_size(1);
    builder.append_data(&mut file, "tagged", &b"t"[..]).unwrap();
    let image = t
        .import(builder.into_inner().unwrap(), Some("dev"))
        .unwrap();
    let layer = layer_path(&t.store, &image);
    let null = fs::symlink_metadata(layer.join("dev/null")).unwrap();
    assert!(null.file_type().is_char_device());
    assert_eq!(null.rdev(), libc_makedev(1, 3));
    assert!(fs::symlink_metadata(layer.join("run/fifo"))
        .unwrap()
        .file_type()
        .is_fifo());
    assert_eq!(
        xattr(&layer.join("tagged"), "user.origin").as_deref(),
        Some(&b"test"[..])
    );
}

fn libc_makedev(major: u64, minor: u64) -> u64 {
    ((major & 0xfffff000) << 32)
        | ((major & 0xfff) << 8)
        | ((minor & 0xffffff00) << 12)
        | (minor & 0xff)
}

#[test]
fn hostile_archives_are_refused_naming_the_entry_and_leave_nothing() {
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("../evil", TarBuilder::new().file("../evil", b"x").finish()),
        (
            "a/../../evil",
            TarBuilder::new().file("a/../../evil", b"x").finish(),
        ),
        (
            "/../escape",
            TarBuilder::new().file("/../escape", b"x").finish(),
        ),
        (
            "/etc/../../evil",
            TarBuilder::new().file("/etc/../../evil", b"x").finish(),
        ),
        (
            "link/passwd",
            TarBuilder::new()
                .symlink("link", "/etc")
                .file("link/passwd", b"x")
                .finish(),
        ),
        (
            "rel/escape",
            TarBuilder::new()
                .symlink("rel", "../../..")
                .file("rel/escape", b"x")
                .finish(),
        ),
        (
            "hard",
            TarBuilder::new()
                .hardlink("hard", "../../etc/passwd")
                .finish(),
        ),
        // An absolute hardlink target is taken inside the layer, where there is no
        // etc/passwd.
        (
            "abs-hard",
            TarBuilder::new()
                .hardlink("abs-hard", "/etc/passwd")
                .finish(),
        ),
        (
            "via-link",
            TarBuilder::new()
                .symlink("etcdir", "/etc")
                .hardlink("via-link", "etcdir/passwd")
                .finish(),
        ),
        (".wh..", TarBuilder::new().file(".wh..", b"").finish()),
    ];
    for (entry, tar) in cases {
        let t = TestStore::new();
        let err = t.import(tar, Some("evil")).unwrap_err();
        assert!(matches!(err, Error::HostileEntry { .. }), "{entry}: {err}");
        assert!(
            err.to_string().contains(entry),
            "{entry}: message {err} does not name it"
        );
        t.assert_untouched();
    }
    // And nothing was written outside the store.
    assert!(!Path::new("/escape").exists() && !Path::new("/evil").exists());
}

#[test]
fn a_huge_pax_path_is_refused() {
    let t = TestStore::new();
    let mut builder = tar::Builder::new(Vec::new());
    let long = "d/".repeat(3000) + "f";
    builder
        .append_pax_extensions([("path", long.as_bytes())])
        .unwrap();
    let mut header = Header::new_ustar();
    header.set_size(0);
    header.set_mode(0o644);
    builder
        .append_data(&mut header, "short", std::io::empty())
        .unwrap();
    let err = t.import(builder.into_inner().unwrap(), None).unwrap_err();
    assert!(err.to_string().contains("longer than PATH_MAX"), "{err}");
    t.assert_untouched();
}

#[test]
fn corrupt_input_gives_one_clear_error_and_leaves_nothing() {
    let tar = sample_tar();
    let mut bad_gzip = gzip(&tar);
    let middle = bad_gzip.len() / 2;
    bad_gzip[middle..middle + 16].copy_from_slice(&[0xAA; 16]);
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        ("empty", Vec::new(), "empty"),
        (
            "text",
            b"this is not a tar archive at all, just text\n".repeat(20),
            "tar",
        ),
        (
            "truncated",
            tar[..tar.len() - 1024 - 300].to_vec(),
            "truncated",
        ),
        ("corrupt gzip", bad_gzip, "gzip"),
        ("truncated gzip", gzip(&tar)[..100].to_vec(), "gzip"),
        (
            "xz",
            vec![0xfd, b'7', b'z', b'X', b'Z', 0, 1, 2],
            "xz is not supported",
        ),
    ];
    for (what, bytes, expect) in cases {
        let t = TestStore::new();
        let err = t.import(bytes, Some("bad")).unwrap_err().to_string();
        assert!(err.contains(expect), "{what}: {err}");
        assert!(!err.contains('\n'), "{what}: one line please: {err}");
        t.assert_untouched();
    }
}

#[test]
fn names_tags_removal_and_shared_layers() {
    let t = TestStore::new();
    let a = t.import(sample_tar(), Some("app:v1")).unwrap();
    t.store
        .tag("app:v1", &Reference::parse("app:v2").unwrap())
        .unwrap();
    let b = t
        .import(
            TarBuilder::new().file("other", b"o").finish(),
            Some("other"),
        )
        .unwrap();
    assert_eq!(t.store.image("app:v2").unwrap().id, a.id);
    assert_eq!(t.store.image(&a.id.hex()[..12]).unwrap().id, a.id);
    assert!(matches!(
        t.store.image("missing"),
        Err(Error::ImageNotFound(_))
    ));

    let (removed, deleted) = t.store.remove_image("app:v1").unwrap();
    assert_eq!((removed, deleted), (vec!["app:v1".to_string()], false));
    assert!(t.store.layer_dir(&a.layers[0].diff_id).exists());

    // A container holding the layer keeps it through the image's removal.
    t.store
        .hold_layers("ctr1", &[a.layers[0].diff_id.clone()])
        .unwrap();
    let (_, deleted) = t.store.remove_image("app:v2").unwrap();
    assert!(deleted);
    assert!(
        t.store.layer_dir(&a.layers[0].diff_id).exists(),
        "held layer was swept"
    );
    assert!(!t
        .root()
        .join("store/blobs/sha256")
        .join(a.manifest_digest.hex())
        .exists());
    t.store.release_layers("ctr1").unwrap();
    let report = t.store.gc().unwrap();
    assert_eq!(report.layers, 1);
    assert!(!t.store.layer_dir(&a.layers[0].diff_id).exists());
    // The other image is untouched.
    assert!(t.store.layer_dir(&b.layers[0].diff_id).exists());
    assert_eq!(t.store.images().unwrap().len(), 1);
    assert_eq!(t.count("tmp"), 0);
}

#[test]
fn concurrent_imports_all_land_in_the_index() {
    let t = TestStore::new();
    std::thread::scope(|scope| {
        for i in 0..6 {
            let t = &t;
            scope.spawn(move || {
                let tar = TarBuilder::new()
                    .file(&format!("file{i}"), format!("{i}").as_bytes())
                    .finish();
                t.import(tar, Some(&format!("img{i}"))).unwrap();
            });
        }
    });
    assert_eq!(t.store.images().unwrap().len(), 6);
}

#[test]
fn open_reclaims_temp_entries_of_dead_writers_only() {
    let t = TestStore::new();
    let dead = t.root().join("tmp/layer-999999-dead");
    fs::create_dir_all(dead.join("partial")).unwrap();
    let live = t.store.temp_dir("live").unwrap();
    Store::open(t.root()).unwrap();
    assert!(!dead.exists(), "abandoned temp dir survived");
    assert!(live.path().exists(), "a live writer's temp dir was taken");
    drop(live);
    assert_eq!(t.count("tmp"), 0);
}

#[test]
fn the_layout_is_an_oci_image_layout() {
    let t = TestStore::new();
    let image = t.import(sample_tar(), Some("layout")).unwrap();
    let layout: serde_json::Value =
        serde_json::from_slice(&fs::read(t.root().join("store/oci-layout")).unwrap()).unwrap();
    assert_eq!(layout["imageLayoutVersion"], "1.0.0");
    let index: serde_json::Value =
        serde_json::from_slice(&fs::read(t.root().join("store/index.json")).unwrap()).unwrap();
    assert_eq!(
        index["manifests"][0]["annotations"]["org.opencontainers.image.ref.name"],
        "layout:latest"
    );
    assert_eq!(
        index["manifests"][0]["digest"],
        image.manifest_digest.to_string()
    );
    // Blobs are read-only once written.
    let mode = fs::metadata(t.root().join("store/blobs/sha256").join(image.id.hex()))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o222, 0);
}

#[test]
fn an_image_copied_blob_by_blob_keeps_its_digests() {
    let source = TestStore::new();
    let image = source
        .import(gzip(&sample_tar()), Some("copy/me:v1"))
        .unwrap();
    let manifest = source.store.read_blob(&image.manifest_digest).unwrap();
    let config = source.store.read_blob(&image.id).unwrap();

    let target = TestStore::new();
    let _ingest = target.store.ingest_lock().unwrap();
    let layer = &image.layers[0];
    assert!(target.store.layer_for_blob(&layer.digest).is_none());
    // A blob that is not what the manifest says is refused, and nothing is stored.
    let wrong = mycontainer_store::Digest::of_bytes(b"something else");
    let err = target
        .store
        .import_layer(
            fs::File::open(
                source
                    .root()
                    .join("store/blobs/sha256")
                    .join(layer.digest.hex()),
            )
            .unwrap(),
            Some(&wrong),
            None,
            &NoProgress,
        )
        .unwrap_err();
    assert!(matches!(err, Error::DigestMismatch { .. }), "{err}");
    target.assert_untouched();
    // Adding the image before its layer is refused too.
    assert!(target.store.add_image(&manifest, &config, None).is_err());

    let blob = source.store.open_blob(&layer.digest).unwrap();
    let imported = target
        .store
        .import_layer(blob, Some(&layer.digest), None, &NoProgress)
        .unwrap();
    assert_eq!(imported.layer.diff_id, layer.diff_id);
    assert_eq!(
        target.store.layer_for_blob(&layer.digest),
        Some(layer.diff_id.clone())
    );
    let copy = target
        .store
        .add_image(
            &manifest,
            &config,
            Some(&Reference::parse("copy/me:v1").unwrap()),
        )
        .unwrap();
    assert_eq!(
        (copy.id, copy.manifest_digest),
        (image.id, image.manifest_digest)
    );
    // A config that is not the one the manifest names is refused.
    assert!(matches!(
        target.store.add_image(&manifest, b"{}", None),
        Err(Error::DigestMismatch { .. })
    ));
}

#[test]
fn a_manifest_declaring_huge_layer_sizes_adds_up_without_overflow() {
    // Found writing the image_manifest fuzz target: the sizes come from the manifest (a
    // registry's or an archive's), and their sum overflowed (a panic in debug builds, a
    // wrapped size in release) for two layers of 2^63 bytes each.
    let t = TestStore::new();
    let image = t.import(gzip(&sample_tar()), Some("huge:v1")).unwrap();
    let mut manifest: serde_json::Value =
        serde_json::from_slice(&t.store.read_blob(&image.manifest_digest).unwrap()).unwrap();
    let mut config: serde_json::Value =
        serde_json::from_slice(&t.store.read_blob(&image.id).unwrap()).unwrap();
    let diff_id = config["rootfs"]["diff_ids"][0].clone();
    config["rootfs"]["diff_ids"] = serde_json::json!([diff_id, diff_id]);
    let config = serde_json::to_vec(&config).unwrap();
    let mut layer = manifest["layers"][0].clone();
    layer["size"] = serde_json::json!(1u64 << 63);
    manifest["layers"] = serde_json::json!([layer, layer]);
    manifest["config"]["digest"] =
        serde_json::json!(mycontainer_store::Digest::of_bytes(&config).to_string());
    manifest["config"]["size"] = serde_json::json!(config.len());
    let manifest = serde_json::to_vec(&manifest).unwrap();

    let _ingest = t.store.ingest_lock().unwrap();
    let added = t.store.add_image(&manifest, &config, None).unwrap();
    assert_eq!(added.size, u64::MAX);
    assert_eq!(added.layers.len(), 2);
}

#[test]
fn commit_turns_an_upper_dir_into_a_layer_with_oci_whiteouts() {
    if !unsafe_geteuid_is_root() {
        return; // overlay whiteouts are device nodes
    }
    let t = TestStore::new();
    let base = t
        .import(
            TarBuilder::new()
                .dir("etc/")
                .file("etc/gone", b"g")
                .dir("data/")
                .file("data/old", b"o")
                .finish(),
            Some("base"),
        )
        .unwrap();
    // What overlayfs leaves in an upper dir after: rm /etc/gone; rm -r /data; mkdir /data;
    // echo new > /data/new; ln -s /etc/x /link; echo hi > /hello (hardlinked twice).
    let upper = tempfile::tempdir().unwrap();
    let u = upper.path();
    fs::create_dir(u.join("etc")).unwrap();
    let c_path = std::ffi::CString::new(u.join("etc/gone").as_os_str().as_encoded_bytes()).unwrap();
    // SAFETY: valid path; makes the overlay whiteout (char 0/0) the kernel would.
    assert_eq!(unsafe { libc_mknod(c_path.as_ptr(), 0o020000, 0) }, 0);
    fs::create_dir(u.join("data")).unwrap();
    let c_data = std::ffi::CString::new(u.join("data").as_os_str().as_encoded_bytes()).unwrap();
    // SAFETY: valid path, name and value.
    assert_eq!(
        unsafe {
            libc_lsetxattr(
                c_data.as_ptr(),
                c"trusted.overlay.opaque".as_ptr(),
                b"y".as_ptr(),
                1,
                0,
            )
        },
        0
    );
    fs::write(u.join("data/new"), b"new").unwrap();
    std::os::unix::fs::symlink("/etc/x", u.join("link")).unwrap();
    fs::write(u.join("hello"), b"hi").unwrap();
    fs::hard_link(u.join("hello"), u.join("hello2")).unwrap();

    let spec = ImageSpec::default();
    let image = t
        .store
        .commit_dir(
            &base,
            u,
            &spec,
            Some(&Reference::parse("committed").unwrap()),
        )
        .unwrap();
    assert_eq!(image.layers.len(), 2);
    assert_eq!(image.layers[0], base.layers[0]);
    // The blob carries OCI whiteouts...
    let blob = t.store.open_blob(&image.layers[1].digest).unwrap();
    let mut names: Vec<String> = tar::Archive::new(blob)
        .entries()
        .unwrap()
        .map(|e| e.unwrap().path().unwrap().display().to_string())
        .collect();
    names.sort();
    assert!(names.contains(&"etc/.wh.gone".to_string()), "{names:?}");
    assert!(
        names.contains(&"data/.wh..wh..opq".to_string()),
        "{names:?}"
    );
    // ...and unpacks back into overlay whiteouts.
    let layer = t.store.layer_dir(&image.layers[1].diff_id);
    let gone = fs::symlink_metadata(layer.join("etc/gone")).unwrap();
    assert!(gone.file_type().is_char_device() && gone.rdev() == 0);
    assert_eq!(
        xattr(&layer.join("data"), "trusted.overlay.opaque").as_deref(),
        Some(&b"y"[..])
    );
    assert_eq!(fs::read(layer.join("data/new")).unwrap(), b"new");
    assert_eq!(
        fs::read_link(layer.join("link")).unwrap(),
        Path::new("/etc/x")
    );
    let (a, b) = (
        fs::metadata(layer.join("hello")).unwrap(),
        fs::metadata(layer.join("hello2")).unwrap(),
    );
    assert_eq!(a.ino(), b.ino());
    // An empty diff is a valid layer too.
    let empty = tempfile::tempdir().unwrap();
    let image = t
        .store
        .commit_dir(&base, empty.path(), &spec, None)
        .unwrap();
    assert_eq!(image.layers.len(), 2);
    assert_eq!(t.count("tmp"), 0);
}

extern "C" {
    #[link_name = "mknod"]
    fn libc_mknod(path: *const std::ffi::c_char, mode: u32, dev: u64) -> i32;
    #[link_name = "lsetxattr"]
    fn libc_lsetxattr(
        path: *const std::ffi::c_char,
        name: *const std::ffi::c_char,
        value: *const u8,
        size: usize,
        flags: i32,
    ) -> i32;
}
