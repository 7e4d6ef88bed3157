//! The files, directories and sockets the binary makes on the host, attacked by a
//! non-root host user (`nobody`, a real setuid in the child), by root inside a real
//! container, and through the caller's umask: none may let them read a secret, reach a
//! container's root (the attach socket), plant or swap a file that root later writes
//! or trusts, or get a world-writable `/` or /etc/hosts inside a container.

mod common;

use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use common::{
    as_nobody, assert_denied, ok, run_dir, shared_network_home, stderr, stdout, wait_for, Fixture,
    World,
};

fn mode(path: &Path) -> u32 {
    fs::symlink_metadata(path).unwrap().mode() & 0o7777
}

fn chmod(path: &Path, mode: u32) {
    fs::set_permissions(path, fs::Permissions::from_mode(mode)).unwrap();
}

/// `mycontainer --root <root> <args...>` run by a shell whose umask is `mask`.
fn mc_with_umask(root: &Path, mask: &str, args: &[&str]) -> Output {
    Command::new("sh")
        .arg("-c")
        .arg("umask $0 && exec \"$@\"")
        .arg(mask)
        .arg(common::BIN)
        .arg("--root")
        .arg(root)
        .args(args)
        .env_remove("MYCONTAINER_ROOT")
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

/// `mycontainer --root <root> <args...>` (a root that is not a fixture's).
fn mc_in(root: &Path, args: &[&str]) -> Output {
    Command::new(common::BIN)
        .env_remove("MYCONTAINER_ROOT")
        .arg("--root")
        .arg(root)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

/// Every file and directory below `dir` (not following links, not crossing into another
/// filesystem: a container's merged root, its netns bind mounts) that group or others
/// may write.
fn writable_by_others(dir: &Path, found: &mut Vec<String>) {
    let Ok(top) = fs::symlink_metadata(dir) else {
        return;
    };
    let mut stack = vec![(dir.to_path_buf(), top.dev())];
    while let Some((d, dev)) = stack.pop() {
        let Ok(entries) = fs::read_dir(&d) else {
            continue;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            let Ok(meta) = fs::symlink_metadata(&path) else {
                continue;
            };
            if meta.file_type().is_symlink() || meta.dev() != dev {
                continue;
            }
            if meta.mode() & 0o022 != 0 {
                found.push(format!("{:o} {}", meta.mode() & 0o7777, path.display()));
            }
            if meta.is_dir() {
                stack.push((path, dev));
            }
        }
    }
}

#[test]
fn the_callers_umask_never_reaches_a_container_or_our_files() {
    let w = World::new();
    let fx: &Fixture = &w;
    let rootfs = fx.rootfs.to_str().unwrap();
    // umask 000: before, the container's `/` (its upper dir's root) was 0777 and its
    // /etc/hosts, /etc/hostname and /etc/resolv.conf 0666; records, caches and the store
    // were world-writable too.
    let open = |args: &[&str]| ok(mc_with_umask(&fx.root, "000", args));
    open(&[
        "run",
        "-d",
        "--name",
        "u000",
        "-v",
        "umaskvol:/data",
        "--rootfs",
        rootfs,
        "sleep",
        "1000",
    ]);
    open(&["exec", "u000", "true"]);
    open(&["run", "--rm", "--rootfs", rootfs, "true"]);
    // A user in the container tries to plant a file in `/` and to rewrite the names and
    // the resolver that root in the container trusts.
    let probe = open(&[
        "exec",
        "-u",
        "65534",
        "u000",
        "sh",
        "-c",
        "for f in / /etc/hosts /etc/hostname /etc/resolv.conf /data; do stat -c '%a %n' $f; done; \
         touch /planted 2>/dev/null && echo WROTE /; \
         for f in hosts hostname resolv.conf; do (echo 10.6.6.6 evil >> /etc/$f) 2>/dev/null && echo WROTE $f; done; true",
    ]);
    assert!(!probe.contains("WROTE"), "{probe}");
    assert_eq!(
        probe.lines().collect::<Vec<_>>(),
        [
            "755 /",
            "644 /etc/hosts",
            "644 /etc/hostname",
            "644 /etc/resolv.conf",
            "755 /data"
        ],
        "{probe}"
    );
    // On the host: nothing of ours that group or others may write.
    let mut found = Vec::new();
    for dir in [fx.root.clone(), run_dir(&fx.root), shared_network_home()] {
        assert!(dir.is_dir(), "{} was made", dir.display());
        writable_by_others(&dir, &mut found);
    }
    assert!(found.is_empty(), "writable by others: {found:#?}");

    // umask 077: before, the container's `/` was 0700 and every non-root container
    // failed to exec its command.
    let out = ok(mc_with_umask(
        &fx.root,
        "077",
        &[
            "run",
            "--rm",
            "-u",
            "65534",
            "--rootfs",
            rootfs,
            "sh",
            "-c",
            "stat -c %a /; cat /etc/hosts",
        ],
    ));
    assert!(
        out.starts_with("755\n") && out.contains("localhost"),
        "{out}"
    );

    // A file written for the caller keeps the caller's umask.
    for (mask, want) in [("077", 0o600), ("000", 0o666)] {
        let file = fx.dir.path().join(format!("export-{mask}.tar"));
        let file_arg = file.to_str().unwrap();
        ok(mc_with_umask(
            &fx.root,
            mask,
            &["export", "-o", file_arg, "u000"],
        ));
        assert_eq!(mode(&file), want, "export -o under umask {mask}");
    }
    ok(fx.mc(&["rm", "-f", "u000"]));
    ok(fx.mc(&["volume", "rm", "umaskvol"]));
}

#[test]
fn a_host_user_reaches_no_run_directory_lease_log_or_attach_socket() {
    let w = World::new();
    let fx: &Fixture = &w;
    // The test's own directory is open to everyone, so that what the binary makes is
    // the only barrier.
    chmod(fx.dir.path(), 0o755);
    let id = fx.run_detached(
        &["-e", "API_TOKEN=hunter2"],
        &["sh", "-c", "echo token=$API_TOKEN; exec sleep 1000"],
    );
    let record = fx.root.join("containers").join(&id);
    let log = record.join("container.log");
    assert!(
        wait_for(10, || fs::read_to_string(&log)
            .is_ok_and(|l| l.contains("hunter2"))),
        "the container did not start"
    );
    ok(fx.mc(&["exec", &id, "true"]));

    // The run directory, its generated /etc files and netns bind mount, and the default
    // network's leases: closed (0700 directories, as Docker's exec-root and Podman's
    // runroot).
    let run = run_dir(&fx.root);
    let base = run.parent().unwrap().to_path_buf();
    let home = shared_network_home();
    for dir in [
        &base,
        &run,
        &home,
        &run.join("containers"),
        &run.join("netns"),
    ] {
        assert_eq!(mode(dir), 0o700, "{}", dir.display());
        assert_eq!(fs::metadata(dir).unwrap().uid(), 0, "{}", dir.display());
    }
    let hosts = run.join("containers").join(&id).join("hosts");
    let netns = run.join("netns").join(&id);
    assert!(hosts.is_file() && netns.exists());
    assert_denied(&["ls", base.to_str().unwrap()]);
    assert_denied(&["cat", hosts.to_str().unwrap()]);
    assert_denied(&["cat", netns.to_str().unwrap()]);
    assert_denied(&["ls", home.to_str().unwrap()]);

    // The attach socket is root in the container. Even with every directory on its way
    // opened (an admin's chmod), nobody cannot connect: the socket itself is 0600.
    let sock = record.join("attach.sock");
    for dir in [&fx.root, &fx.root.join("containers"), &record] {
        chmod(dir, 0o755);
    }
    assert_eq!(mode(&sock), 0o600);
    // (By a relative name: the full path is longer than a socket address may be.)
    let connect = "import os,socket,sys\nos.chdir(sys.argv[1])\ns=socket.socket(socket.AF_UNIX)\ns.connect('attach.sock')\nprint('connected')";
    let out = as_nobody(&["/usr/bin/python3", "-c", connect, record.to_str().unwrap()]);
    assert!(
        !out.status.success() && stderr(&out).contains("Permission denied"),
        "nobody connected to the attach socket: {}{}",
        stdout(&out),
        stderr(&out)
    );
    // ... while root can (it is the live socket).
    let root_connects = Command::new("/usr/bin/python3")
        .args(["-c", connect, record.to_str().unwrap()])
        .output()
        .unwrap();
    assert_eq!(
        stdout(&root_connects),
        "connected\n",
        "{}",
        stderr(&root_connects)
    );
    // Secrets stay 0600 with the directories open.
    for secret in ["config.json", "container.log", "state.json"] {
        assert_denied(&["cat", record.join(secret).to_str().unwrap()]);
    }
    // The next command closes the root again.
    ok(fx.mc(&["ps", "-q"]));
    assert_eq!(mode(&fx.root), 0o700);
    assert_eq!(mode(&fx.root.join("containers")), 0o700);
    ok(fx.mc(&["rm", "-f", &id]));
}

/// A directory made by `nobody` (so it is theirs) at `path`, mode 0777.
fn nobodys_dir(path: &Path) {
    let out = as_nobody(&["mkdir", "-m", "777", path.to_str().unwrap()]);
    assert!(out.status.success(), "{}", stderr(&out));
}

fn listing(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

#[test]
fn a_state_root_another_user_could_plant_files_in_is_refused() {
    let fx = Fixture::new();
    chmod(fx.dir.path(), 0o755);
    let rootfs = fx.rootfs.to_str().unwrap();
    let run = ["run", "--rm", "--rootfs", rootfs, "true"];
    // Where the seccomp program is cached (`<root>/cache/seccomp-*.bpf`, loaded into
    // every later container): a directory of nobody's there would let them replace it.
    let planted_cache = |root: &Path| -> PathBuf {
        let cache = root.join("cache");
        nobodys_dir(&cache);
        cache
    };
    let refused = |root: &Path, what: &str| {
        let out = mc_in(root, &run);
        assert_eq!(out.status.code(), Some(125), "{}", stderr(&out));
        assert!(stderr(&out).contains(what), "{}", stderr(&out));
        assert_eq!(stderr(&out).lines().count(), 1, "{}", stderr(&out));
    };

    // A sticky directory shared with everyone (`--root /tmp`).
    let sticky = fx.dir.path().join("sticky");
    fs::create_dir(&sticky).unwrap();
    chmod(&sticky, 0o1777);
    let cache = planted_cache(&sticky);
    refused(&sticky, "sticky");
    assert_eq!(
        listing(&cache),
        Vec::<String>::new(),
        "nothing written in nobody's dir"
    );
    assert_eq!(listing(&sticky), ["cache"]);

    // A root that belongs to another user.
    let open = fx.dir.path().join("open");
    fs::create_dir(&open).unwrap();
    chmod(&open, 0o777);
    let theirs = open.join("theirs");
    nobodys_dir(&theirs);
    refused(&theirs, "belongs to uid 65534");
    assert_eq!(listing(&theirs), Vec::<String>::new());

    // A root of ours that was left open: nobody planted the cache directory (or a file
    // one level down, in a directory that was open too) before we tightened it.
    let wide = fx.dir.path().join("wide");
    fs::create_dir(&wide).unwrap();
    chmod(&wide, 0o777);
    let cache = planted_cache(&wide);
    refused(&wide, "cache, which belongs to uid 65534");
    assert_eq!(listing(&cache), Vec::<String>::new());
    assert_eq!(mode(&wide), 0o777, "left as it was");
    fs::remove_dir(&cache).unwrap();
    fs::create_dir(wide.join("names")).unwrap();
    chmod(&wide.join("names"), 0o777);
    let planted = wide.join("names").join("web");
    assert!(as_nobody(&["ln", "-s", "/etc", planted.to_str().unwrap()])
        .status
        .success());
    refused(&wide, "names/web, which belongs to uid 65534");
    fs::remove_file(&planted).unwrap();
    // Once only our own files are left, it is tightened and used.
    ok(mc_in(&wide, &run));
    assert_eq!(mode(&wide), 0o700);
    common::remove_run_dir(&wide);
}

#[test]
fn links_planted_by_container_root_steer_no_host_write_or_removal() {
    let w = World::new();
    let fx: &Fixture = &w;
    // A host directory and file the container names by their host paths.
    let canary = fx.dir.path().join("canary");
    fs::create_dir(&canary).unwrap();
    fs::write(canary.join("keep"), "host data\n").unwrap();
    // Big enough to show in the container's size, were its links followed.
    fs::write(canary.join("big"), vec![7u8; 8 << 20]).unwrap();
    let canary_dir = canary.to_str().unwrap();
    let canary_file = canary.join("keep");
    let canary_file = canary_file.to_str().unwrap();
    // Container root fills its upper dir with links to them where the host later works:
    // at the top, in /etc next to the generated files, and a directory whose every
    // entry is a link; it also tries to replace the generated files themselves.
    let script = format!(
        "ln -s {canary_dir} /hostdir; ln -s {canary_file} /etc/hosts.new; \
         mkdir /d; ln -s {canary_file} /d/keep; ln {canary_file} /d/hard 2>/dev/null; \
         rm -f /etc/hosts 2>/dev/null && echo REMOVED hosts; \
         (mv /etc/hostname /etc/x) 2>/dev/null && echo MOVED hostname; \
         (ln -sf {canary_file} /etc/resolv.conf) 2>/dev/null && echo LINKED resolv; \
         echo planted; exec sleep 1000"
    );
    let id = fx.run_detached(&["--name", "planter"], &["sh", "-c", &script]);
    let log = fx.root.join("containers").join(&id).join("container.log");
    assert!(
        wait_for(10, || fs::read_to_string(&log)
            .is_ok_and(|l| l.contains("planted"))),
        "the container did not start"
    );
    let said = fs::read_to_string(&log).unwrap();
    for word in ["REMOVED", "MOVED", "LINKED"] {
        assert!(!said.contains(word), "{said}");
    }
    // The run directory, the state root and the attach socket are out of its reach
    // (mountinfo names the overlay's host directories, as with Docker: names only).
    let record = fx.root.join("containers").join(&id);
    let mut paths = vec![
        fx.root.clone(),
        record.join("attach.sock"),
        record.join("config.json"),
        run_dir(&fx.root),
        run_dir(&fx.root).join("netns").join(&id),
        shared_network_home(),
    ];
    paths.push("/run/mycontainer".into());
    let mut probe = vec!["exec", "planter", "ls", "-d"];
    let paths: Vec<String> = paths
        .iter()
        .map(|p| p.to_string_lossy().into_owned())
        .collect();
    probe.extend(paths.iter().map(String::as_str));
    let out = fx.mc(&probe);
    assert!(!out.status.success(), "{}", stdout(&out));
    assert_eq!(stdout(&out), "", "the container reached host paths");
    assert_eq!(
        stderr(&out).matches("No such file or directory").count(),
        paths.len(),
        "{}",
        stderr(&out)
    );
    // Stop, a reboot (the generated files are gone and written again at the next
    // start), a start, the size of its upper dir, export, remove and gc: the host's
    // files stay as they were, and no export carries them.
    ok(fx.mc(&["stop", "-t", "1", "planter"]));
    common::reboot_run_dir(&fx.root);
    ok(fx.mc(&["start", "planter"]));
    let hosts = ok(fx.mc(&["exec", "planter", "cat", "/etc/hosts"]));
    assert!(
        hosts.contains("localhost") && !hosts.contains("host data"),
        "{hosts}"
    );
    let df = ok(fx.mc(&["system", "df", "--format", "json"]));
    let containers = df.lines().find(|l| l.contains("\"Containers\"")).unwrap();
    assert!(containers.contains("\"Size\":\"0B\""), "{df}");
    let tar = fx.dir.path().join("planter.tar");
    ok(fx.mc(&["export", "-o", tar.to_str().unwrap(), "planter"]));
    let listed = Command::new("tar").arg("-tvf").arg(&tar).output().unwrap();
    let listed = stdout(&listed);
    assert!(
        listed.contains(&format!("hostdir -> {canary_dir}")),
        "{listed}"
    );
    ok(fx.mc(&["rm", "-f", "planter"]));
    ok(fx.mc(&["gc"]));
    assert_eq!(
        fs::read_to_string(canary.join("keep")).unwrap(),
        "host data\n"
    );
    assert_eq!(listing(&canary), ["big", "keep"]);
}

#[test]
fn a_run_directory_another_user_could_plant_files_in_is_refused() {
    let fx = Fixture::new();
    chmod(fx.dir.path(), 0o755);
    let open = fx.dir.path().join("open");
    fs::create_dir(&open).unwrap();
    chmod(&open, 0o777);
    // A host file only root may read.
    let secret = fx.dir.path().join("shadow");
    fs::write(&secret, "host secret\n").unwrap();
    chmod(&secret, 0o600);
    let rootfs = fx.rootfs.to_str().unwrap();
    let mc_run = |base: &Path, args: &[&str]| {
        Command::new(common::BIN)
            .env_remove("MYCONTAINER_ROOT")
            .env("MYCONTAINER_RUNROOT", base)
            .arg("--root")
            .arg(&fx.root)
            .args(args)
            .stdin(Stdio::null())
            .output()
            .unwrap()
    };
    // `MYCONTAINER_RUNROOT` on a directory of nobody's, and on a root-owned one that
    // everyone may write.
    let theirs = open.join("theirs");
    nobodys_dir(&theirs);
    let wide = fx.dir.path().join("wide");
    fs::create_dir(&wide).unwrap();
    chmod(&wide, 0o777);
    // The root's run directory has a predictable name: nobody makes it first.
    let key = run_dir(&fx.root).file_name().unwrap().to_owned();
    for base in [&theirs, &wide] {
        nobodys_dir(&base.join(&key));
        let out = mc_run(
            base,
            &[
                "run",
                "--name",
                "c",
                "--network",
                "none",
                "--rootfs",
                rootfs,
                "cat",
                "/etc/hosts",
            ],
        );
        if out.status.success() {
            // What nobody can then do: swap the generated /etc/hosts for a link to a
            // host file, which the next start bind-mounts into the container.
            let id = fx.container_ids().pop().unwrap();
            // (Its `containers` is root's, but the directory holding it is nobody's.)
            let swap = format!(
                "cd {} && mv containers old && mkdir -p containers/{id}/init/etc && cd containers/{id} \
                 && touch hostname resolv.conf && ln -s /proc/mounts init/etc/mtab && ln -s {} hosts",
                base.join(&key).display(),
                secret.display()
            );
            let swapped = as_nobody(&["sh", "-c", &swap]);
            let seen = stdout(&mc_run(base, &["start", "-a", "c"]));
            let _ = mc_run(base, &["rm", "-f", "c"]);
            panic!(
                "run accepted the run directory {} (swap: {}): the container then read {seen:?}",
                base.display(),
                swapped.status
            );
        }
        assert_eq!(out.status.code(), Some(125), "{}", stderr(&out));
        assert!(
            stderr(&out).contains("is open to other users"),
            "{}",
            stderr(&out)
        );
        let planted = base.join(&key);
        assert_eq!(
            listing(&planted),
            Vec::<String>::new(),
            "nothing made in it"
        );
    }
    fx.assert_no_containers();
    // A private one is used.
    let private = fx.dir.path().join("private");
    fs::create_dir(&private).unwrap();
    chmod(&private, 0o700);
    let out = ok(mc_run(
        &private,
        &[
            "run",
            "--rm",
            "--network",
            "none",
            "--rootfs",
            rootfs,
            "cat",
            "/etc/hosts",
        ],
    ));
    assert!(out.contains("localhost"), "{out}");
}

#[test]
fn container_root_filling_its_etc_files_fills_our_own_tmpfs_not_the_hosts_run() {
    let fx = Fixture::new();
    // A host whose /run is a tmpfs (systemd's), in a mount namespace of this test's:
    // the run directory's files, and whatever container root appends to its /etc/hosts,
    // land there unless we mount a tmpfs of our own.
    let script = r#"
        set -e
        mount -t tmpfs -o size=256m hostrun /run
        "$0" --root "$1" run --name filler --network none --rootfs "$2" sh -c \
            'dd if=/dev/zero of=/etc/hosts bs=1M count=128 2>/dev/null || true; df -k /etc/hosts | tail -n 1'
        echo "host-run-used $(df -k /run | tail -n 1 | awk '{print $3}')"
        "$0" --root "$1" rm filler >/dev/null
    "#;
    let out = Command::new("unshare")
        .args([
            "-m",
            "--propagation",
            "private",
            "sh",
            "-c",
            script,
            common::BIN,
        ])
        .arg(&fx.root)
        .arg(&fx.rootfs)
        .env_remove("MYCONTAINER_ROOT")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let said = ok(out);
    let mut lines = said.lines();
    let etc = lines.next().unwrap_or_default();
    let used: u64 = lines
        .next()
        .and_then(|l| l.strip_prefix("host-run-used "))
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or_else(|| panic!("{said}"));
    // The container's /etc/hosts is on its own small tmpfs (src/container/etcfs.rs),
    // which it filled; the host's /run kept its room.
    let size: u64 = etc
        .split_whitespace()
        .nth(1)
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("{said}"));
    assert!(
        etc.starts_with("mycontainer-etc ") && etc.contains(" 100% ") && size <= 4096,
        "{said}"
    );
    assert!(used < 1024, "the host's /run took {used} KiB: {said}");
    fx.assert_no_containers();
}
