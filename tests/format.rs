//! `--format` (Go templates, `table`, `json`), `--filter` and `--label` (issue 18).

mod common;

use std::fs;

use common::{ok, stderr, World};

fn build_labelled(w: &World) {
    let recipe = w.dir.path().join("lab.toml");
    fs::write(
        &recipe,
        "name = \"lab\"\nbuilder = \"busybox\"\ncreated = \"2024-01-01T00:00:00Z\"\n\n\
         [busybox]\nhost_paths = [\"/bin/busybox\"]\n\n[config]\ncmd = [\"sleep\", \"1000\"]\n\
         labels = { tier = \"image\", from = \"image\" }\n",
    )
    .unwrap();
    ok(w.mc(&["image", "build", recipe.to_str().unwrap()]));
}

#[test]
fn ps_formats_and_filters_as_docker() {
    let w = World::new();
    build_labelled(&w);
    ok(w.mc(&[
        "run",
        "-d",
        "--name",
        "web",
        "--label",
        "team=a",
        "-l",
        "tier=flag",
        "lab",
    ]));
    ok(w.run(&["--name", "job", "--label", "team=b"], &["true"]));
    assert_eq!(
        ok(w.mc(&["ps", "--format", "{{.Names}}\\t{{.State}}"])),
        "web\trunning\n"
    );
    let table = ok(w.mc(&[
        "ps",
        "-a",
        "--format",
        "table {{.ID}}\\t{{.Names}}\\t{{.Image}}",
    ]));
    let lines: Vec<&str> = table.lines().collect();
    assert_eq!(lines.len(), 3, "{table}");
    assert!(
        lines[0].starts_with("CONTAINER ID   NAMES     IMAGE"),
        "{table}"
    );
    assert!(
        lines.iter().any(|l| l.contains("   web       lab")),
        "{table}"
    );
    // json: one object per line, Docker's field names.
    let json = ok(w.mc(&["ps", "-a", "--format", "json"]));
    let mut rows: Vec<serde_json::Value> = json
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    rows.sort_by_key(|r| r["Names"].as_str().unwrap().to_string());
    assert_eq!(rows.len(), 2);
    assert_eq!(rows[0]["Names"], "job");
    assert_eq!(rows[0]["State"], "exited");
    assert_eq!(rows[1]["State"], "running");
    assert_eq!(rows[1]["Labels"], "from=image,team=a,tier=flag");
    assert_eq!(
        ok(w.mc(&["ps", "--format", "{{json .Names}}"])),
        "\"web\"\n"
    );
    // Filters: status (shows stopped ones without -a), name, label, ancestor; one key's
    // values are alternatives, different keys must all hold. (Sorted: both were
    // created within the same second.)
    let names = |args: &[&str]| {
        let mut all = vec!["ps", "--format", "{{.Names}}"];
        all.extend_from_slice(args);
        let mut lines: Vec<String> = ok(w.mc(&all)).lines().map(|l| format!("{l}\n")).collect();
        lines.sort();
        lines.concat()
    };
    assert_eq!(names(&["--filter", "status=exited"]), "job\n");
    assert_eq!(names(&["-a", "--filter", "name=we"]), "web\n");
    assert_eq!(names(&["-a", "-f", "label=team=b"]), "job\n");
    assert_eq!(names(&["-a", "-f", "label=team"]), "job\nweb\n");
    assert_eq!(names(&["-a", "-f", "label=from=image"]), "web\n");
    assert_eq!(names(&["-a", "-f", "ancestor=lab"]), "web\n");
    assert_eq!(
        names(&["-a", "-f", "status=running", "-f", "status=exited"]),
        "job\nweb\n"
    );
    assert_eq!(
        names(&["-a", "-f", "status=running", "-f", "label=team=b"]),
        ""
    );
    for bad in [
        &["ps", "-f", "colour=red"][..],
        &["ps", "--format", "{{.Names"][..],
    ] {
        let out = w.mc(bad);
        assert_eq!(out.status.code(), Some(1), "{bad:?}");
        assert!(!stderr(&out).is_empty());
    }
}

#[test]
fn inspect_shows_labels_and_volume_mounts_and_takes_a_format() {
    let w = World::new();
    build_labelled(&w);
    ok(w.mc(&[
        "run",
        "-d",
        "--name",
        "lab1",
        "--label",
        "tier=flag",
        "-v",
        "data:/data",
        "lab",
    ]));
    let labels = ok(w.mc(&["inspect", "--format", "{{json .Config.Labels}}", "lab1"]));
    assert_eq!(labels, "{\"from\":\"image\",\"tier\":\"flag\"}\n");
    assert_eq!(
        ok(w.mc(&["inspect", "-f", "{{.State.Status}} {{.Name}}", "lab1"])),
        "running /lab1\n"
    );
    let mounts = ok(w.mc(&["inspect", "-f", "{{json .Mounts}}", "lab1"]));
    let mounts: serde_json::Value = serde_json::from_str(&mounts).unwrap();
    assert_eq!(mounts[0]["Type"], "volume");
    assert_eq!(mounts[0]["Name"], "data");
    assert_eq!(mounts[0]["Destination"], "/data");
    assert_eq!(
        ok(w.mc(&["inspect", "-f", "json", "lab1"])).lines().count(),
        1
    );
    assert_eq!(
        ok(w.mc(&["image", "inspect", "-f", "{{.Config.Labels.tier}}", "lab"])),
        "image\n"
    );
}

#[test]
fn image_ls_formats_and_filters_by_reference_dangling_and_label() {
    let w = World::new();
    build_labelled(&w);
    ok(w.mc(&["image", "tag", "lab", "other/lab:v2"]));
    assert_eq!(
        ok(w.mc(&["image", "ls", "--format", "{{.Repository}}:{{.Tag}}"])),
        "lab:latest\nother/lab:v2\n"
    );
    let table = ok(w.mc(&["image", "ls", "--format", "table {{.Repository}}\\t{{.ID}}"]));
    assert!(table.starts_with("REPOSITORY   IMAGE ID\n"), "{table}");
    let f = |args: &[&str]| {
        let mut all = vec!["image", "ls", "--format", "{{.Repository}}"];
        all.extend_from_slice(args);
        ok(w.mc(&all))
    };
    assert_eq!(f(&["--filter", "reference=other/*"]), "other/lab\n");
    // Each name is a row of its own, matched on its own.
    assert_eq!(f(&["--filter", "reference=lab"]), "lab\n");
    assert_eq!(f(&["--filter", "reference=lab:latest"]), "lab\n");
    assert_eq!(f(&["--filter", "reference=nothing*"]), "");
    assert_eq!(f(&["--filter", "dangling=true"]), "");
    assert_eq!(
        f(&["--filter", "dangling=false", "--filter", "label=tier=image"]),
        "lab\nother/lab\n"
    );
    assert_eq!(f(&["--filter", "label=tier=flag"]), "");
    let json = ok(w.mc(&["image", "ls", "--format", "json"]));
    let first: serde_json::Value = serde_json::from_str(json.lines().next().unwrap()).unwrap();
    assert_eq!(first["Repository"], "lab");
    assert_eq!(first["Tag"], "latest");
    // A filter Docker does not know: the verb fails (1, as `docker image ls`).
    assert_eq!(
        w.mc(&["image", "ls", "--filter", "size=1"]).status.code(),
        Some(1)
    );
}

#[test]
fn volume_ls_and_inspect_take_a_format() {
    let w = World::new();
    ok(w.mc(&["volume", "create", "--label", "k=v", "v1"]));
    ok(w.mc(&["volume", "create", "v2"]));
    assert_eq!(
        ok(w.mc(&[
            "volume",
            "ls",
            "--format",
            "{{.Name}} {{.Driver}} {{.Labels}}"
        ])),
        "v1 local k=v\nv2 local \n"
    );
    let table = ok(w.mc(&[
        "volume",
        "ls",
        "--format",
        "table {{.Name}}\\t{{.Mountpoint}}",
    ]));
    assert!(table.starts_with("VOLUME NAME   MOUNTPOINT\n"), "{table}");
    let json = ok(w.mc(&["volume", "ls", "--format", "json"]));
    assert_eq!(json.lines().count(), 2);
    assert_eq!(
        ok(w.mc(&[
            "volume",
            "inspect",
            "--format",
            "{{.Name}}:{{.Scope}}:{{.Labels.k}}",
            "v1"
        ])),
        "v1:local:v\n"
    );
}
