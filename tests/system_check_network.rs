//! `system check` on networks: corrupt or half-written configs, leases and attachments
//! of containers that no longer run, a bridge or nftables table gone under running
//! containers; each reported, then repaired by `--repair` without losing the network.
//! Every test runs in a network namespace of its own (tests/common: `private_network`).

mod common;

use std::fs;
use std::process::{Command, Stdio};

use common::*;

/// `system check` (with `--repair` when asked): its exit code and output.
fn check(w: &World, repair: bool) -> (i32, String) {
    let mut args = vec!["system", "check"];
    if repair {
        args.push("--repair");
    }
    let out = w.mc(&args);
    let text = format!("{}{}", stdout(&out), stderr(&out));
    (out.status.code().unwrap_or(-1), text)
}

fn entries(w: &World, rel: &str) -> Vec<String> {
    let mut names: Vec<String> = fs::read_dir(w.root.join(rel))
        .map(|d| {
            d.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}

fn config(w: &World, name: &str) -> serde_json::Value {
    let path = w.root.join("networks").join(format!("{name}.json"));
    serde_json::from_slice(&fs::read(path).unwrap()).unwrap()
}

#[track_caller]
fn assert_serves(addr: &str, text: &str) {
    let mut got = String::new();
    let reached = wait_for(60, || {
        got = http_get(addr);
        got.contains(text)
    });
    assert!(reached, "{addr}: {got}");
}

fn run_tool(tool: &str, args: &[&str]) {
    let out = Command::new(tool).args(args).output().unwrap();
    assert!(out.status.success(), "{tool} {args:?}: {}", stderr(&out));
}

#[test]
fn a_corrupt_config_under_a_running_container_is_rebuilt_from_its_attachment() {
    let w = World::new();
    ok(w.mc(&["network", "create", "app", "--subnet", "10.78.0.0/24"]));
    w.run_detached(&["--name", "srv", "--network", "app"], &["sleep", "300"]);
    let before = config(&w, "app");
    // What a torn write leaves: the start of a config.
    let path = w.root.join("networks/app.json");
    fs::write(&path, b"{\"name\": \"app\", \"id\": \"12").unwrap();

    let (code, out) = check(&w, false);
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains("network app: its config cannot be read"),
        "{out}"
    );
    let (code, out) = check(&w, true);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("rebuilt it from the attachments"), "{out}");
    let (code, out) = check(&w, false);
    assert_eq!(code, 0, "{out}");

    // The same network: id, subnet, gateway and bridge as before.
    let after = config(&w, "app");
    for key in ["id", "subnet", "gateway", "bridge", "internal"] {
        assert_eq!(after[key], before[key], "{key}: {after} vs {before}");
    }
    // And it works: a new container on it reaches the running one.
    let out = ok(w.run(
        &["--rm", "--network", "app"],
        &[
            "sh",
            "-c",
            "ping -c 1 -W 5 10.78.0.2 >/dev/null && echo reached",
        ],
    ));
    assert!(out.contains("reached"), "{out}");
    ok(w.mc(&["rm", "-f", "srv"]));
    ok(w.mc(&["network", "rm", "app"]));
}

#[test]
fn an_empty_config_nothing_runs_on_is_made_again_and_a_temp_file_removed() {
    let w = World::new();
    ok(w.mc(&["network", "create", "spare"]));
    // Used once, so that its bridge and table exist.
    ok(w.run(&["--rm", "--network", "spare"], &["true"]));
    let old_bridge = config(&w, "spare")["bridge"].as_str().unwrap().to_string();
    assert!(links().contains(&old_bridge), "{:?}", links());
    let dir = w.root.join("networks");
    fs::write(dir.join("spare.json"), b"").unwrap();
    fs::write(dir.join("spare.json.tmp"), b"{\"name\": \"sp").unwrap();
    // Every network command fails on it.
    let out = w.mc(&["network", "ls"]);
    assert_eq!(out.status.code(), Some(1), "{}", stdout(&out));

    let (code, out) = check(&w, false);
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains("network spare: its config cannot be read"),
        "{out}"
    );
    assert!(
        out.contains("network spare: a half-written config"),
        "{out}"
    );
    let (code, out) = check(&w, true);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("made it again with subnet"), "{out}");
    assert_eq!(check(&w, false).0, 0);
    assert!(!dir.join("spare.json.tmp").exists());
    // Its old bridge went with it; the network is there again and works.
    assert!(!links().contains(&old_bridge), "{:?}", links());
    assert!(ok(w.mc(&["network", "ls"])).contains("spare"));
    let out = ok(w.run(
        &["--rm", "--network", "spare"],
        &["sh", "-c", "ip -4 -o addr show eth0"],
    ));
    let subnet = config(&w, "spare")["subnet"].as_str().unwrap().to_string();
    let prefix = subnet.rsplit_once('.').unwrap().0;
    assert!(out.contains(&format!("inet {prefix}.2/")), "{out} {subnet}");
    ok(w.mc(&["network", "rm", "spare"]));
    assert!(
        !links().iter().any(|l| l.starts_with("mc-")),
        "{:?}",
        links()
    );
}

#[test]
fn leases_and_attachments_of_gone_containers_are_freed_and_a_running_ones_kept() {
    let w = World::new();
    ok(w.mc(&["network", "create", "app", "--subnet", "10.80.0.0/24"]));
    let live = w.run_detached(&["--name", "live", "--network", "app"], &["sleep", "300"]);
    // A foreground run whose CLI is killed: every command (check too) first reclaims
    // what such a run left, so check has nothing to say about it.
    let mut cli = w
        .run_cmd(&["--name", "victim", "--network", "app"], &["sleep", "300"])
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    // Running, so attached (a kill between taking the lease and recording the
    // attachment leaves a lease only gc or check sees: as below).
    assert!(wait_for(60, || stdout(&w.mc(&["ps"])).contains("victim")));
    assert_eq!(entries(&w, "networks/app.leases").len(), 2);
    cli.kill().unwrap();
    cli.wait().unwrap();
    let (code, out) = check(&w, false);
    assert_eq!(code, 0, "{out}");
    assert_eq!(entries(&w, "networks/app.leases"), vec!["10.80.0.2"]);

    // What reclaim cannot see, as a killed `rm` or a lost record leaves it: an
    // attachment and a lease of a container whose record is gone, and a lease naming
    // nobody (a kill between creating the lease file and writing the id into it).
    let gone = "ab".repeat(32);
    let netns = run_dir(&w.root).join("netns");
    let mut attachment: serde_json::Value =
        serde_json::from_slice(&fs::read(netns.join(format!("{live}.json"))).unwrap()).unwrap();
    attachment["ip"] = "10.80.0.7".into();
    attachment["veth"] = "mcabababababab".into();
    fs::write(
        netns.join(format!("{gone}.json")),
        serde_json::to_vec(&attachment).unwrap(),
    )
    .unwrap();
    let leases = w.root.join("networks/app.leases");
    fs::write(leases.join("10.80.0.7"), &gone).unwrap();
    fs::write(leases.join("10.80.0.8"), "cd".repeat(32)).unwrap();
    fs::write(leases.join("10.80.0.9"), b"").unwrap();

    let (code, out) = check(&w, false);
    assert_eq!(code, 1, "{out}");
    for line in [
        "container abababababab: no longer runs but still holds address 10.80.0.7 on network app",
        "network app: address 10.80.0.8 is leased to container cdcdcdcdcdcd, which no longer runs",
        "network app: address 10.80.0.9 is leased to no container",
    ] {
        assert!(out.contains(line), "{line} not in {out}");
    }
    assert!(!out.contains("10.80.0.2"), "{out}");
    let (code, out) = check(&w, true);
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains("released them") && out.contains("freed it"),
        "{out}"
    );
    assert_eq!(check(&w, false).0, 0);
    assert_eq!(entries(&w, "networks/app.leases"), vec!["10.80.0.2"]);
    let mut attached: Vec<String> = fs::read_dir(&netns)
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    attached.sort();
    assert_eq!(attached, vec![live.clone(), format!("{live}.json")]);
    // The running container kept its address and its way out.
    let out = ok(w.mc(&[
        "exec",
        "live",
        "sh",
        "-c",
        "ping -c 1 -W 5 10.80.0.1 >/dev/null && echo gateway-ok",
    ]));
    assert!(out.contains("gateway-ok"), "{out}");
    // The freed addresses are handed out again.
    let out = ok(w.run(
        &["--rm", "--network", "app"],
        &["ip", "-4", "-o", "addr", "show", "eth0"],
    ));
    assert!(out.contains("inet 10.80.0.3/24"), "{out}");
    ok(w.mc(&["rm", "-f", "live", "victim"]));
    ok(w.mc(&["network", "rm", "app"]));
}

#[test]
fn a_bridge_or_table_gone_under_a_running_container_is_made_again() {
    let w = World::new();
    ok(w.mc(&["network", "create", "web", "--subnet", "10.81.0.0/24"]));
    w.run_detached(
        &["--name", "srv", "--network", "web", "-p", "18090:8080"],
        &[
            "sh",
            "-c",
            "mkdir -p /www && echo hi-repaired > /www/index.html && exec httpd -f -p 8080 -h /www",
        ],
    );
    assert_serves("127.0.0.1:18090", "hi-repaired");
    let bridge = config(&w, "web")["bridge"].as_str().unwrap().to_string();

    // The bridge deleted by hand: the container is cut off.
    run_tool("ip", &["link", "del", &bridge]);
    assert!(!http_get("127.0.0.1:18090").contains("hi-repaired"));
    let (code, out) = check(&w, false);
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains(&format!(
            "network web: its bridge {bridge} is missing while 1 container(s) use it"
        )),
        "{out}"
    );
    let (code, out) = check(&w, true);
    assert_eq!(code, 0, "{out}");
    assert_eq!(check(&w, false).0, 0);
    assert_serves("127.0.0.1:18090", "hi-repaired");
    let out = ok(w.mc(&[
        "exec",
        "srv",
        "sh",
        "-c",
        "ping -c 1 -W 5 10.81.0.1 >/dev/null && echo gateway-ok",
    ]));
    assert!(out.contains("gateway-ok"), "{out}");

    // The table deleted by hand: the published port is gone.
    run_tool("nft", &["delete", "table", "ip", "mycontainer-web"]);
    assert!(!http_get("127.0.0.1:18090").contains("hi-repaired"));
    let (code, out) = check(&w, false);
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains("network web: its nftables table ip mycontainer-web is missing"),
        "{out}"
    );
    let (code, out) = check(&w, true);
    assert_eq!(code, 0, "{out}");
    assert_eq!(check(&w, false).0, 0);
    assert_serves("127.0.0.1:18090", "hi-repaired");

    ok(w.mc(&["rm", "-f", "srv"]));
    ok(w.mc(&["network", "rm", "web"]));
    assert!(
        !links().iter().any(|l| l.starts_with("mc")),
        "{:?}",
        links()
    );
}

// The default network is shared by every state root in the namespace, and so are its
// leases: one root's check frees another root's lease whose container is gone for good
// (no record, no veth) and keeps the lease of that root's running container.
#[test]
fn check_frees_another_roots_dead_lease_on_the_default_network_and_keeps_a_live_one() {
    let a = World::new();
    let b = World::new();
    a.run_detached(&["--name", "live"], &["sleep", "300"]);
    let leases = shared_network_home().join("bridge.leases");
    let listed = || {
        let mut names: Vec<String> = fs::read_dir(&leases)
            .unwrap()
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    };
    assert_eq!(listed(), vec!["172.17.0.2"]);
    let dead = "ef".repeat(32);
    fs::write(
        leases.join("172.17.0.9"),
        format!("{dead}\n{}", a.root.display()),
    )
    .unwrap();
    let (code, out) = check(&b, false);
    assert_eq!(code, 1, "{out}");
    let line = format!(
        "network bridge: address 172.17.0.9 is leased to container efefefefefef of state root {}, which no longer runs",
        a.root.display()
    );
    assert!(out.contains(&line), "{line} not in {out}");
    assert!(!out.contains("172.17.0.2"), "{out}");
    let (code, out) = check(&b, true);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("freed it"), "{out}");
    assert_eq!(listed(), vec!["172.17.0.2"]);
    assert_eq!(check(&a, false).0, 0);
    assert_eq!(check(&b, false).0, 0);
    let out = ok(a.mc(&[
        "exec",
        "live",
        "sh",
        "-c",
        "ping -c 1 -W 5 172.17.0.1 >/dev/null && echo gateway-ok",
    ]));
    assert!(out.contains("gateway-ok"), "{out}");
    ok(a.mc(&["rm", "-f", "live"]));
}

// Published ports are claimed per network namespace, by every state root in it (as the
// default network's leases are): one root's check reports the claim of another root's
// container killed with its CLI, `--repair` frees it (and the port then serves b), and
// the claim of that root's running container is kept.
#[test]
fn check_frees_another_roots_dead_port_claim_and_keeps_a_live_one() {
    let a = World::new();
    let b = World::new();
    let mut cli = a
        .run_cmd(
            &["--name", "gone", "-p", "127.0.0.1:18291:80"],
            &["sleep", "300"],
        )
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let id = a.wait_running();
    let serve = "mkdir -p /www && echo served > /www/index.html && exec httpd -f -p 80 -h /www";
    a.run_detached(
        &["--name", "live", "-p", "127.0.0.1:18290:80"],
        &["sh", "-c", serve],
    );
    assert_serves("127.0.0.1:18290", "served");
    let claims = || {
        let mut names: Vec<String> = fs::read_dir(shared_network_home().join("ports"))
            .map(|d| {
                d.flatten()
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .collect()
            })
            .unwrap_or_default();
        names.sort();
        names
    };
    assert_eq!(claims().len(), 2);
    cli.kill().unwrap();
    cli.wait().unwrap();
    let pid = a.state(&id)["pid"].as_i64().unwrap() as i32;
    // SAFETY: kill with signal 0 only checks that the pid exists.
    assert!(wait_for(60, || unsafe { libc::kill(pid, 0) } != 0));
    let (code, out) = check(&b, false);
    assert_eq!(code, 1, "{out}");
    let line = format!(
        "container gone of state root {}, which no longer runs, still publishes 127.0.0.1:18291->80/tcp",
        a.root.display()
    );
    assert!(out.contains(&line), "{line} not in {out}");
    assert!(!out.contains("18290"), "{out}");
    assert_eq!(claims().len(), 2, "check without --repair changes nothing");
    let (code, out) = check(&b, true);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("freed them"), "{out}");
    let live = ok(a.mc(&["inspect", "-f", "{{.Id}}", "live"]));
    assert_eq!(claims(), vec![live.trim().to_string()]);
    assert_eq!(check(&b, false).0, 0);
    b.run_detached(
        &["--name", "web-b", "-p", "127.0.0.1:18291:80"],
        &["sh", "-c", serve],
    );
    assert_serves("127.0.0.1:18291", "served");
    assert_serves("127.0.0.1:18290", "served");
    ok(a.mc(&["rm", "-f", "live"]));
    ok(b.mc(&["rm", "-f", "web-b"]));
}
