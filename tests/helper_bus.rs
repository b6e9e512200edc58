//! The privileged helper on a private system bus with a real polkitd (PLATFORM.md), and its
//! data files (bus policy, activation file, polkit policy, systemd unit).
//!
//! The bus test needs root: it starts polkitd as root and installs a test policy and a test
//! rule in polkit's fixed directories (removed again by Drop guards, even when it fails). It
//! runs every scenario in one test function, so the daemons are started once and nothing
//! runs in parallel on the shared polkit directories.

mod common;

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use common::*;
use passthrough_core::dbus::{Helper1Proxy, HelperError, BUS_NAME, INTERFACE, OBJECT_PATH};
use passthrough_core::plan::Plan;

const POLICY_DTD: &str = "/usr/share/polkit-1/policyconfig-1.dtd";
/// Applies `plan` to `root` in this process and stops it by a panic at its last fault
/// point, leaving a journal that says it started and never ended. Returns its ID.
fn interrupt_a_transaction(root: &Path, plan: &Plan) -> String {
    use passthrough_core::transaction::{self, ApplyHooks, HostRunner, TransactionState};
    use passthrough_core::{HostReport, HostRoot, ScanOptions};
    use std::cell::Cell;
    use std::panic::{catch_unwind, AssertUnwindSafe};

    let host = HostRoot::new(root);
    let report = HostReport::scan(&host, &ScanOptions::default());
    let rendered = passthrough_core::plan_render::render(&host, &report, plan).unwrap();
    let runner = HostRunner::new(host.clone());
    // Count the fault points on a scratch copy of the root first.
    let scratch = tempfile::tempdir().unwrap();
    let ok = Command::new("cp")
        .arg("-a")
        .arg(root)
        .arg(scratch.path().join("root"))
        .status()
        .unwrap()
        .success();
    assert!(ok);
    let scratch_root = HostRoot::new(scratch.path().join("root"));
    let points = std::rc::Rc::new(Cell::new(0));
    let counter = points.clone();
    let hooks = ApplyHooks {
        before_step: Box::new(move |k| counter.set(counter.get().max(k + 1))),
    };
    let scratch_runner = HostRunner::new(scratch_root.clone());
    transaction::apply_with_hooks(
        &scratch_root,
        &rendered,
        &scratch_runner,
        &mut |_| {},
        &hooks,
    )
    .unwrap();
    let last = points.get().checked_sub(1).expect("no fault point");
    let hooks = ApplyHooks {
        before_step: Box::new(move |k| {
            if k == last {
                panic!("simulated crash at fault point {k}");
            }
        }),
    };
    let crashed = catch_unwind(AssertUnwindSafe(|| {
        transaction::apply_with_hooks(&host, &rendered, &runner, &mut |_| {}, &hooks)
    }));
    assert!(crashed.is_err(), "the simulated crash did not happen");
    let records = transaction::list(&host).unwrap();
    let record = records
        .iter()
        .find(|r| r.state == TransactionState::Interrupted)
        .expect("an interrupted transaction");
    record.id.to_string()
}

fn plan_json(plan: &Plan) -> String {
    serde_json::to_string(plan).unwrap()
}

/// A JSON plan with one field changed (or added).
fn plan_with(field: &str, value: serde_json::Value) -> String {
    let mut v = serde_json::to_value(Plan::default()).unwrap();
    v[field] = value;
    v.to_string()
}

/// A GVariant text literal of a string, for gdbus.
fn gvariant_str(s: &str) -> String {
    format!("'{}'", s.replace('\\', "\\\\").replace('\'', "\\'"))
}

/// The helper's error variant, or a panic with what came instead.
fn helper_error<T: std::fmt::Debug>(result: zbus::Result<T>) -> HelperError {
    match result {
        Err(e) => HelperError::from_zbus(&e).unwrap_or_else(|| panic!("not a helper error: {e}")),
        Ok(v) => panic!("expected an error, got {v:?}"),
    }
}

/// Drains the signals already received on `stream`, without waiting for more.
fn drain<S: futures_core::Stream + Unpin>(stream: &mut S) -> Vec<S::Item> {
    use std::pin::Pin;
    use std::task::{Context, Poll, Wake, Waker};
    struct Noop;
    impl Wake for Noop {
        fn wake(self: std::sync::Arc<Self>) {}
    }
    let waker = Waker::from(std::sync::Arc::new(Noop));
    let mut cx = Context::from_waker(&waker);
    let mut items = Vec::new();
    while let Poll::Ready(Some(item)) = Pin::new(&mut *stream).poll_next(&mut cx) {
        items.push(item);
    }
    items
}

#[test]
fn helper_on_a_private_system_bus_with_polkit() {
    const TEST: &str = "helper_on_a_private_system_bus_with_polkit";
    if !is_root() {
        skip(
            TEST,
            "needs root: it starts polkitd and installs a polkit rule",
        );
        return;
    }
    for program in ["dbus-daemon", "setpriv", "gdbus", "msgfmt"] {
        assert!(
            have(program),
            "{program} is missing: build-aux/deps test installs it"
        );
    }
    assert!(
        Path::new(POLKITD).exists(),
        "{POLKITD} is missing: build-aux/deps test installs polkitd"
    );
    let bus = Bus::start();
    let temp = root_copy("b550-blog");
    let root = temp.path().join("root");
    let before = snapshot(&root);

    // polkitd accepted our policy file and reads the defaults we wrote.
    let conn = bus.connect();
    let actions = zbus::block_on(async {
        let authority = zbus_polkit::policykit1::AuthorityProxy::new(&conn).await?;
        authority.enumerate_actions("").await
    })
    .unwrap();
    for id in [
        "io.github.passthrough.configure-host",
        "io.github.passthrough.manage-devices",
        "io.github.passthrough.read-logs",
    ] {
        use zbus_polkit::policykit1::ImplicitAuthorization as Auth;
        let action = actions
            .iter()
            .find(|a| a.action_id == id)
            .unwrap_or_else(|| panic!("polkitd did not load {id}"));
        assert!(!action.description.is_empty() && !action.message.is_empty());
        assert_eq!(
            action.implicit_any,
            Auth::AdministratorAuthenticationRequired
        );
        assert_eq!(
            action.implicit_inactive,
            Auth::AdministratorAuthenticationRequired
        );
        assert_eq!(
            action.implicit_active,
            Auth::AdministratorAuthenticationRequiredRetained
        );
    }

    let mut helper = bus.helper(&root, 0);
    bus.wait_for_name(BUS_NAME, Duration::from_secs(10));

    // Anyone may read the version; root through the core proxy, nobody through gdbus.
    let version = zbus::block_on(async {
        let proxy = Helper1Proxy::new(&conn).await?;
        proxy.version().await
    })
    .unwrap();
    assert_eq!(version, env!("CARGO_PKG_VERSION"));
    let out = bus.call_as_nobody(
        BUS_NAME,
        OBJECT_PATH,
        "org.freedesktop.DBus.Properties.Get",
        &[INTERFACE, "Version"],
    );
    assert!(
        out.status.success(),
        "nobody reads Version: {}",
        out_text(&out)
    );
    assert!(out_text(&out).contains(&version), "{}", out_text(&out));

    // The bus policy: nobody may not own the name, nor call other interfaces on it.
    let out = bus.call_as_nobody(
        "org.freedesktop.DBus",
        "/org/freedesktop/DBus",
        "org.freedesktop.DBus.RequestName",
        &[BUS_NAME, "4"],
    );
    assert!(!out.status.success());
    assert!(
        out_text(&out).contains("AccessDenied"),
        "{}",
        out_text(&out)
    );
    let out = bus.call_as_nobody(BUS_NAME, OBJECT_PATH, "org.example.Other.Method", &[]);
    assert!(!out.status.success());
    assert!(
        out_text(&out).contains("AccessDenied"),
        "{}",
        out_text(&out)
    );

    let proxy = zbus::block_on(Helper1Proxy::new(&conn)).unwrap();
    let plan = Plan {
        iommu_pt: true,
        ignore_msrs: true,
        ..Plan::default()
    };

    // No transactions yet; anyone may list them.
    let list = zbus::block_on(proxy.transactions()).unwrap();
    assert_eq!(list, "[]");
    let out = bus.call_helper_as_nobody("Transactions", &[]);
    assert!(out.status.success(), "{}", out_text(&out));

    // Preview needs no privilege: root and nobody get the same exact change.
    let rendered = zbus::block_on(proxy.preview_plan(&plan)).unwrap();
    assert!(!rendered.files.is_empty(), "{rendered:?}");
    assert!(rendered.files.iter().any(|f| f.path == "/etc/default/grub"));
    assert!(rendered.kernel_args.add.iter().any(|a| a == "iommu=pt"));
    let out = bus.call_helper_as_nobody("Preview", &[&gvariant_str(&plan_json(&plan))]);
    assert!(out.status.success(), "nobody previews: {}", out_text(&out));
    assert!(out_text(&out).contains("iommu=pt"), "{}", out_text(&out));

    // nobody may not apply nor roll back: polkit says no before anything is looked at (even
    // a malformed argument gets NotAuthorized), with a sentence, and nothing changes.
    for (method, arg) in [
        ("Apply", plan_json(&plan)),
        ("Apply", "{not json".to_owned()),
        ("Rollback", "../../etc".to_owned()),
    ] {
        let out = bus.call_helper_as_nobody(method, &[&gvariant_str(&arg)]);
        let text = out_text(&out);
        assert!(!out.status.success(), "nobody {method}: {text}");
        assert!(
            text.contains("io.github.passthrough.Helper1.Error.NotAuthorized")
                && text.contains("not allowed"),
            "nobody {method}({arg}): {text}"
        );
    }
    assert!(before == snapshot(&root), "a refused call changed the root");

    // Bad arguments from an authorized caller (root) get InvalidArgument or NotFound, and
    // change nothing.
    for (what, json) in [
        ("malformed JSON", "{not json".to_owned()),
        ("not an object", "[]".to_owned()),
        (
            "an unknown field",
            plan_with("write_file", "/etc/shadow".into()),
        ),
        (
            "a path for an address",
            plan_with("reserve", serde_json::json!(["../../etc"])),
        ),
        (
            "an unknown address",
            plan_with("reserve", serde_json::json!(["0000:42:00.0"])),
        ),
        (
            "a non-GPU address",
            plan_with("reserve", serde_json::json!(["0000:08:00.1"])),
        ),
    ] {
        for method in ["Apply", "Preview"] {
            let result = zbus::block_on(async {
                if method == "Apply" {
                    proxy.apply(&json).await
                } else {
                    proxy.preview(&json).await
                }
            });
            let error = helper_error(result);
            assert!(
                matches!(error, HelperError::InvalidArgument(_)),
                "{method} with {what}: {error:?}"
            );
        }
    }
    for bad in ["../x", "", "a b", &"a".repeat(65)] {
        let error = helper_error(zbus::block_on(proxy.rollback(bad)));
        assert!(
            matches!(error, HelperError::InvalidArgument(_)),
            "Rollback({bad:?}): {error:?}"
        );
    }
    let error = helper_error(zbus::block_on(proxy.rollback("20990101-000000-abcdef")));
    assert!(matches!(error, HelperError::NotFound(_)), "{error:?}");
    assert!(before == snapshot(&root), "a refused call changed the root");

    // root (allowed by the rule) applies: the files change as previewed, the recorders ran,
    // Progress told the steps and the output, and the journal lists it.
    let mut progress = zbus::block_on(proxy.receive_progress()).unwrap();
    let id = zbus::block_on(proxy.apply_plan(&plan))
        .unwrap_or_else(|e| panic!("Apply: {e}\n{}", bus.helper_log()));
    for file in &rendered.files {
        let now = std::fs::read_to_string(root.join(file.path.trim_start_matches('/'))).ok();
        assert_eq!(now, file.after, "{} is not as previewed", file.path);
    }
    let recorded = std::fs::read_to_string(root.join("var/log/recorded-commands")).unwrap();
    assert!(recorded.contains("update-grub"), "{recorded}");
    let list: serde_json::Value =
        serde_json::from_str(&zbus::block_on(proxy.transactions()).unwrap()).unwrap();
    assert_eq!(list[0]["id"], id.as_str(), "{list}");
    assert_eq!(list[0]["state"], "applied", "{list}");
    let signals = drain(&mut progress);
    let args: Vec<(String, String, String)> = signals
        .iter()
        .map(|s| {
            let a = s.args().unwrap();
            (
                a.transaction.to_owned(),
                a.step.to_owned(),
                a.line.to_owned(),
            )
        })
        .collect();
    assert!(!args.is_empty(), "no Progress signal");
    assert!(args.iter().all(|(t, _, _)| *t == id), "{args:?}");
    assert!(
        args.iter()
            .any(|(_, _, line)| line.contains("recorder: update-grub ran")),
        "{args:?}"
    );

    // Applying the same plan again changes nothing.
    let error = helper_error(zbus::block_on(proxy.apply_plan(&plan)));
    assert!(
        matches!(error, HelperError::InvalidArgument(_)),
        "{error:?}"
    );

    // Rollback restores every file byte for byte.
    zbus::block_on(proxy.rollback(&id))
        .unwrap_or_else(|e| panic!("Rollback: {e}\n{}", bus.helper_log()));
    assert!(
        outside_var(before.clone()) == outside_var(snapshot(&root)),
        "Rollback did not restore the root"
    );
    let list: serde_json::Value =
        serde_json::from_str(&zbus::block_on(proxy.transactions()).unwrap()).unwrap();
    assert_eq!(list[0]["state"], "rolled-back", "{list}");
    let after_rollback = snapshot(&root);

    // A second helper cannot take the name from the running one: it exits with an error.
    let mut second = bus.helper(&root, 0);
    let status = second
        .wait_exit(Duration::from_secs(10))
        .expect("a second helper exits");
    assert!(
        !status.success(),
        "a second helper must fail to own the name"
    );

    assert!(
        helper.exited().is_none(),
        "helper died:\n{}",
        bus.helper_log()
    );
    assert!(after_rollback == snapshot(&root), "the root changed");
    drop(helper);

    // A transaction interrupted half-way (as if the helper died) is rolled back by the next
    // helper when it starts, before it serves Apply or Rollback.
    let interrupted = interrupt_a_transaction(&root, &plan);
    assert!(outside_var(after_rollback.clone()) != outside_var(snapshot(&root)));

    // Idle exit: with --idle-timeout 1 the helper exits by itself, successfully, and gives
    // the name back.
    let mut idle = bus.helper(&root, 1);
    bus.wait_for_name(BUS_NAME, Duration::from_secs(10));
    let started = Instant::now();
    let status = idle
        .wait_exit(Duration::from_secs(15))
        .unwrap_or_else(|| panic!("the idle helper did not exit:\n{}", bus.helper_log()));
    assert!(status.success(), "{status}: {}", bus.helper_log());
    assert!(started.elapsed() >= Duration::from_millis(500));
    assert!(!bus.has_owner(BUS_NAME));
    assert!(bus.helper_log().contains("exiting: idle"));
    // ... and it had recovered the interrupted transaction first.
    assert!(
        outside_var(after_rollback) == outside_var(snapshot(&root)),
        "the interrupted transaction was not rolled back:\n{}",
        bus.helper_log()
    );
    let records = {
        use passthrough_core::transaction::{list, TransactionState};
        let records = list(&passthrough_core::HostRoot::new(&root)).unwrap();
        assert!(records
            .iter()
            .all(|r| r.state != TransactionState::Interrupted));
        records
    };
    assert!(records.iter().any(|r| r.id.to_string() == interrupted));

    reset_gpu_scenarios(&bus, &conn);
    read_log_scenarios(&bus, &conn);
    network_scenarios(&bus, &conn);

    eprintln!(
        "bus at {}, polkitd pid {}, dbus-daemon pid {}",
        bus.address,
        bus.polkitd.pid(),
        bus.daemon.pid()
    );
}

/// The network bridge on a root of its own (the post's b550 host: enp7s0 wired, wlp6s0
/// Wi-Fi, netplan over NetworkManager) with a `netplan` recorder: PreviewNetwork needs no
/// privilege and is checked by the real `netplan generate`; nobody may not apply; bad
/// changes (Wi-Fi, a bad name, unknown fields, a confirmation time out of range) change
/// nothing; an applied bridge not confirmed in time is undone by the helper itself (even by
/// a helper started after the one that applied it died); a confirmed one stays, and can be
/// confirmed once only; removing it restores the root byte for byte.
fn network_scenarios(bus: &Bus, conn: &zbus::Connection) {
    use passthrough_core::network::NETPLAN_FILE;
    use std::os::unix::fs::PermissionsExt;
    let temp = root_copy("b550-blog");
    let root = temp.path().join("root");
    let recorder = root.join("usr/sbin/netplan");
    std::fs::write(&recorder, RECORDER).unwrap();
    chmod(&recorder, 0o755);
    let before = snapshot(&root);
    let helper = bus.helper(&root, 0);
    bus.wait_for_name(BUS_NAME, Duration::from_secs(10));
    let proxy = zbus::block_on(Helper1Proxy::new(conn)).unwrap();
    let create = |port: &str| {
        serde_json::json!({"action": "create", "plan": {
            "bridge": "br0", "port": port, "ipv4": "dhcp", "ipv6": "ra", "dns": []}})
        .to_string()
    };
    let file = root.join(NETPLAN_FILE.trim_start_matches('/'));
    let recorded =
        || std::fs::read_to_string(root.join("var/log/recorded-commands")).unwrap_or_default();
    let state_of = |proxy: &Helper1Proxy, id: &str| -> serde_json::Value {
        let list: serde_json::Value =
            serde_json::from_str(&zbus::block_on(proxy.transactions()).unwrap()).unwrap();
        list.as_array()
            .unwrap()
            .iter()
            .find(|t| t["id"] == id)
            .cloned()
            .unwrap_or_else(|| panic!("{id} not listed: {list}"))
    };

    // Preview: anyone; the YAML for NetworkManager's renderer, checked by netplan.
    let out = bus.call_helper_as_nobody("PreviewNetwork", &[&gvariant_str(&create("enp7s0"))]);
    assert!(out.status.success(), "nobody previews: {}", out_text(&out));
    let rendered: passthrough_core::plan::Rendered =
        serde_json::from_str(&zbus::block_on(proxy.preview_network(&create("enp7s0"))).unwrap())
            .unwrap();
    assert_eq!(rendered.files.len(), 1);
    assert_eq!(rendered.files[0].path, NETPLAN_FILE);
    let yaml = rendered.files[0].after.clone().unwrap();
    assert!(
        yaml.contains("renderer: NetworkManager") && yaml.contains("enp7s0"),
        "{yaml}"
    );

    // nobody may not apply or confirm.
    for (method, args) in [
        (
            "ApplyNetwork",
            vec![gvariant_str(&create("enp7s0")), "uint32 30".to_owned()],
        ),
        (
            "ConfirmNetwork",
            vec![gvariant_str("20990101-000000-abcdef")],
        ),
    ] {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let out = bus.call_helper_as_nobody(method, &args);
        let text = out_text(&out);
        assert!(
            !out.status.success() && text.contains("Error.NotAuthorized"),
            "nobody {method}: {text}"
        );
    }
    // Bad changes from root: InvalidArgument, with the reason.
    for (what, json, seconds, needle) in [
        ("Wi-Fi", create("wlp6s0"), 30, "Wi-Fi"),
        ("a missing port", create("enp9s0"), 30, "enp9s0"),
        ("a bad name", create("en p7s0"), 30, "en p7s0"),
        (
            "unknown fields",
            r#"{"action":"create","plan":{},"path":"/etc/shadow"}"#.to_owned(),
            30,
            "not valid",
        ),
        (
            "removing what is not ours",
            r#"{"action":"remove","bridge":"br0"}"#.to_owned(),
            30,
            "only what it made",
        ),
        ("too short a confirmation", create("enp7s0"), 1, "2 to 600"),
        (
            "too long a confirmation",
            create("enp7s0"),
            3600,
            "2 to 600",
        ),
    ] {
        let error = helper_error(zbus::block_on(proxy.apply_network(&json, seconds)));
        match &error {
            HelperError::InvalidArgument(text) => assert!(text.contains(needle), "{what}: {text}"),
            other => panic!("{what}: {other:?}"),
        }
    }
    assert!(
        before == snapshot(&root),
        "a refused network change changed the root"
    );

    // Applied and not confirmed: undone by the helper after 2 s.
    let id = zbus::block_on(proxy.apply_network(&create("enp7s0"), 2))
        .unwrap_or_else(|e| panic!("ApplyNetwork: {e}\n{}", bus.helper_log()));
    assert_eq!(std::fs::read_to_string(&file).unwrap(), yaml);
    assert_eq!(
        std::fs::metadata(&file).unwrap().permissions().mode() & 0o777,
        0o600
    );
    assert_eq!(recorded(), "netplan apply\n");
    assert!(state_of(&proxy, &id)["confirm_by"].as_u64().is_some());
    let limit = Instant::now() + Duration::from_secs(10);
    while file.exists() && Instant::now() < limit {
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(!file.exists(), "not undone:\n{}", bus.helper_log());
    let limit = Instant::now() + Duration::from_secs(5);
    while state_of(&proxy, &id)["state"] != "rolled-back" && Instant::now() < limit {
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(state_of(&proxy, &id)["state"], "rolled-back");
    assert_eq!(recorded(), "netplan apply\nnetplan apply\n");
    let error = helper_error(zbus::block_on(proxy.confirm_network(&id)));
    assert!(
        matches!(error, HelperError::Failed(_)),
        "too late: {error:?}"
    );
    assert!(bus.helper_log().contains("not confirmed in time"));

    // Applied, then the helper dies before anyone confirms: the next helper undoes it.
    let id = zbus::block_on(proxy.apply_network(&create("enp7s0"), 3)).unwrap();
    assert!(file.exists());
    drop(helper);
    let _next = bus.helper(&root, 0);
    bus.wait_for_name(BUS_NAME, Duration::from_secs(10));
    // A connection of its own: the old one may still wait for the dead helper's replies.
    let conn = bus.connect();
    let proxy = zbus::block_on(Helper1Proxy::new(&conn)).unwrap();
    let limit = Instant::now() + Duration::from_secs(10);
    while file.exists() && Instant::now() < limit {
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(
        !file.exists(),
        "the next helper did not undo it:\n{}",
        bus.helper_log()
    );
    let limit = Instant::now() + Duration::from_secs(5);
    while state_of(&proxy, &id)["state"] != "rolled-back" && Instant::now() < limit {
        std::thread::sleep(Duration::from_millis(100));
    }

    // Applied and confirmed: it stays; a second confirmation fails.
    let id = zbus::block_on(proxy.apply_network(&create("enp7s0"), 4)).unwrap();
    zbus::block_on(proxy.confirm_network(&id)).unwrap();
    std::thread::sleep(Duration::from_secs(5));
    assert!(
        file.exists(),
        "a confirmed change was undone:\n{}",
        bus.helper_log()
    );
    assert_eq!(state_of(&proxy, &id)["state"], "applied");
    assert!(state_of(&proxy, &id).get("confirm_by").is_none());
    let error = helper_error(zbus::block_on(proxy.confirm_network(&id)));
    assert!(matches!(error, HelperError::Failed(_)), "{error:?}");

    // One click removes it (confirmed too); the root is as it was.
    let rid =
        zbus::block_on(proxy.apply_network(r#"{"action":"remove","bridge":"br0"}"#, 30)).unwrap();
    zbus::block_on(proxy.confirm_network(&rid)).unwrap();
    assert!(!file.exists());
    assert!(
        outside_var(before) == outside_var(snapshot(&root)),
        "removing the bridge did not restore the root"
    );
}

/// `ResetGpu` (the boot-GPU fix) on a root of its own, served by a helper of its own: polkit
/// `manage-devices` first (nobody is refused whatever the address), then the address (a bad
/// one, a missing device, a non-GPU, the host's own card: InvalidArgument), and nothing
/// changes until root asks for the reserved card; then both sysfs files hold "1".
fn reset_gpu_scenarios(bus: &Bus, conn: &zbus::Connection) {
    const GPU: &str = "0000:08:00.0";
    let temp = root_copy("b550-blog");
    let root = temp.path().join("root");
    let (remove, rescan) = add_pci_reset_files(&root, GPU);
    let before = snapshot(&root);
    let _helper = bus.helper(&root, 0);
    bus.wait_for_name(BUS_NAME, Duration::from_secs(10));
    let proxy = zbus::block_on(Helper1Proxy::new(conn)).unwrap();

    for address in [GPU, "../../etc", "0000:08:00.1"] {
        let out = bus.call_helper_as_nobody("ResetGpu", &[&gvariant_str(address)]);
        let text = out_text(&out);
        assert!(!out.status.success(), "nobody ResetGpu({address}): {text}");
        assert!(
            text.contains("io.github.passthrough.Helper1.Error.NotAuthorized")
                && text.contains("not allowed"),
            "nobody ResetGpu({address}): {text}"
        );
    }
    assert!(
        before == snapshot(&root),
        "a refused ResetGpu changed the root"
    );

    for (what, address) in [
        ("an empty address", ""),
        ("a path", "../../../../etc/shadow"),
        ("a path after an address", "0000:08:00.0/../../../rescan"),
        ("a sysfs path", "/sys/bus/pci/devices/0000:08:00.0"),
        ("a function out of range", "0000:08:00.8"),
        ("an unknown device", "0000:42:00.0"),
        ("a non-GPU (the card's HDMI audio)", "0000:08:00.1"),
        ("the host's own card (amdgpu)", "0000:04:00.0"),
    ] {
        let error = helper_error(zbus::block_on(proxy.reset_gpu(address)));
        assert!(
            matches!(error, HelperError::InvalidArgument(_)),
            "ResetGpu with {what}: {error:?}"
        );
    }
    assert!(
        before == snapshot(&root),
        "an invalid ResetGpu changed the root"
    );

    zbus::block_on(proxy.reset_gpu(GPU))
        .unwrap_or_else(|e| panic!("ResetGpu: {e}\n{}", bus.helper_log()));
    assert_eq!(std::fs::read_to_string(&remove).unwrap(), "1");
    assert_eq!(std::fs::read_to_string(&rescan).unwrap(), "1");
    let after = snapshot(&root);
    let changed: Vec<&Path> = after
        .iter()
        .filter(|(path, content)| before.get(*path) != Some(content))
        .map(|(path, _)| path.as_path())
        .collect();
    let expected = [
        Path::new("sys/bus/pci/rescan"),
        Path::new("sys/devices/pci0000:00/0000:00:03.1/0000:08:00.0/remove"),
    ];
    assert_eq!(changed, expected);
    assert_eq!(after.len(), before.len(), "ResetGpu made or removed files");
    let log = bus.helper_log();
    assert!(
        log.contains("io.github.passthrough.manage-devices") && log.contains("ResetGpu"),
        "{log}"
    );
}

/// `ReadLog` on a root of its own: polkit `read-logs` first (nobody is refused whatever the
/// arguments, and gets no text), then the arguments (a bad kind, a path or an empty name:
/// InvalidArgument), then the log: the root's kernel log file, a VM's QEMU log whose name has
/// quotes, spaces and Chinese, never a symlink planted as a VM's log, and the last 1 MiB of a
/// 3 MiB log, ending with its last line. Nothing in the root changes.
fn read_log_scenarios(bus: &Bus, conn: &zbus::Connection) {
    const VM: &str = "Game's \"VM\" 游戏";
    let temp = root_copy("b550-blog");
    let root = temp.path().join("root");
    let qemu_dir = root.join("var/log/libvirt/qemu");
    std::fs::create_dir_all(&qemu_dir).unwrap();
    let kernel_log = "kernel: Linux version 6.1.0-13-amd64\n\
        kernel: vfio-pci 0000:08:00.0: BAR 1: can't reserve [mem 0xd0000000-0xdfffffff 64bit pref]\n";
    std::fs::write(root.join("var/log/kern.log"), kernel_log).unwrap();
    let qemu_log = "2026-01-01 12:00:00.000+0000: starting up libvirt version: 9.0.0\n\
        qemu-system-x86_64: -device vfio-pci,host=0000:08:00.0: vfio 0000:08:00.0: failed to setup container\n";
    std::fs::write(qemu_dir.join(format!("{VM}.log")), qemu_log).unwrap();
    // A symlink planted as a VM's log, to a file only root may read.
    std::os::unix::fs::symlink("/etc/shadow", qemu_dir.join("planted.log")).unwrap();
    // A 3 MiB log.
    let mut big = String::new();
    let mut n = 0;
    while big.len() < 3 * 1024 * 1024 {
        big.push_str(&format!("2026-01-01 qemu line {n}: 日志 text\n"));
        n += 1;
    }
    let last_line = format!("2026-01-01 qemu line {}: 日志 text\n", n - 1);
    std::fs::write(qemu_dir.join("big.log"), &big).unwrap();
    let before = snapshot(&root);
    let shadow = std::fs::read_to_string("/etc/shadow").unwrap_or_default();
    let shadow_line = shadow.lines().find(|l| l.contains(':')).unwrap_or("root:");
    let _helper = bus.helper(&root, 0);
    bus.wait_for_name(BUS_NAME, Duration::from_secs(10));
    let proxy = zbus::block_on(Helper1Proxy::new(conn)).unwrap();

    for (kind, vm) in [
        ("kernel", ""),
        ("qemu", VM),
        ("qemu", "planted"),
        ("qemu", "../x"),
        ("nonsense", ""),
    ] {
        let out = bus.call_helper_as_nobody("ReadLog", &[&gvariant_str(kind), &gvariant_str(vm)]);
        let text = out_text(&out);
        assert!(
            !out.status.success(),
            "nobody ReadLog({kind}, {vm}): {text}"
        );
        assert!(
            text.contains("io.github.passthrough.Helper1.Error.NotAuthorized")
                && text.contains("not allowed"),
            "nobody ReadLog({kind}, {vm}): {text}"
        );
        assert!(
            !text.contains("vfio") && !text.contains("qemu line"),
            "nobody got a log: {text}"
        );
    }

    for (what, kind, vm) in [
        ("an unknown kind", "journal", ""),
        ("an empty kind", "", ""),
        ("a kind in capitals", "KERNEL", ""),
        ("a name with the kernel log", "kernel", VM),
        ("an empty name", "qemu", ""),
        ("a path up", "qemu", "../x"),
        ("a path down", "qemu", "a/b"),
        ("an absolute path", "qemu", "/etc/shadow"),
        ("a dot", "qemu", "."),
        ("two dots", "qemu", ".."),
        ("a newline", "qemu", "a\nb"),
        ("a name too long", "qemu", &"a".repeat(101)),
    ] {
        let error = helper_error(zbus::block_on(proxy.read_log(kind, vm)));
        let HelperError::InvalidArgument(text) = &error else {
            panic!("ReadLog with {what}: {error:?}");
        };
        assert!(text.ends_with('.'), "ReadLog with {what}: {text}");
    }
    for (what, vm) in [
        ("a symlink planted as the log", "planted"),
        ("a VM without a log", "missing"),
    ] {
        let error = helper_error(zbus::block_on(proxy.read_log("qemu", vm)));
        let (HelperError::InvalidArgument(text) | HelperError::NotFound(text)) = &error else {
            panic!("ReadLog with {what}: {error:?}");
        };
        assert!(
            text.contains(&format!("{vm}.log")) && !text.contains(shadow_line),
            "ReadLog with {what}: {text}"
        );
    }

    let text = zbus::block_on(proxy.read_log("kernel", ""))
        .unwrap_or_else(|e| panic!("ReadLog(kernel): {e}\n{}", bus.helper_log()));
    assert_eq!(text, kernel_log);
    let text = zbus::block_on(proxy.read_log("qemu", VM))
        .unwrap_or_else(|e| panic!("ReadLog(qemu, {VM}): {e}\n{}", bus.helper_log()));
    assert_eq!(text, qemu_log);
    let text = zbus::block_on(proxy.read_log("qemu", "big"))
        .unwrap_or_else(|e| panic!("ReadLog(qemu, big): {e}\n{}", bus.helper_log()));
    assert!(text.len() <= 1024 * 1024, "{} bytes", text.len());
    assert!(text.len() > 1024 * 1024 - 100, "{} bytes", text.len());
    assert!(
        text.ends_with(&last_line),
        "the end is not the file's last line"
    );
    assert!(
        text.starts_with("2026-01-01 qemu line "),
        "not cut at a line"
    );
    assert!(big.ends_with(&text));

    assert!(before == snapshot(&root), "ReadLog changed the root");
    let log = bus.helper_log();
    assert!(
        log.contains("io.github.passthrough.read-logs") && log.contains("ReadLog"),
        "{log}"
    );
}

// ---- data files ------------------------------------------------------------------------

fn xmllint(args: &[&str], file: &Path) {
    let out = Command::new("xmllint")
        .args(args)
        .arg(file)
        .output()
        .expect("xmllint (libxml2-utils)");
    assert!(out.status.success(), "xmllint {file:?}: {}", out_text(&out));
}

#[test]
fn bus_policy_is_well_formed_and_narrow() {
    let conf = data("io.github.passthrough.Helper1.conf");
    xmllint(&["--noout"], &conf);
    // dbus-daemon's own parser (see bus_accepts_policy for why not the DTD), and that a
    // broken policy is refused by it (so the check can fail).
    let dir = tempfile::tempdir().unwrap();
    std::fs::copy(&conf, dir.path().join("io.github.passthrough.Helper1.conf")).unwrap();
    bus_accepts_policy(dir.path()).unwrap();
    std::fs::write(
        dir.path().join("io.github.passthrough.Helper1.conf"),
        "<busconfig><policy context=\"default\"><allow send_destinatio=\"x\"/></policy></busconfig>",
    )
    .unwrap();
    assert!(bus_accepts_policy(dir.path()).is_err());
    let text = std::fs::read_to_string(&conf).unwrap();
    assert!(text.contains(r#"<policy user="root">"#));
    assert_eq!(text.matches("<allow own=").count(), 1, "only root owns");
    assert!(!text.contains("send_destination=\"io.github.passthrough.Helper1\"/>"));
    // Every allow in the default context names our destination and one of four interfaces.
    let default = text.split(r#"<policy context="default">"#).nth(1).unwrap();
    for allow in default.split("<allow").skip(1) {
        assert!(allow.contains(r#"send_destination="io.github.passthrough.Helper1""#));
        let interface = allow.split("send_interface=\"").nth(1).unwrap();
        let interface = interface.split('"').next().unwrap();
        assert!(
            [
                INTERFACE,
                "org.freedesktop.DBus.Introspectable",
                "org.freedesktop.DBus.Properties",
                "org.freedesktop.DBus.Peer"
            ]
            .contains(&interface),
            "{interface}"
        );
    }
}

fn ini(path: &Path) -> BTreeMap<String, Vec<String>> {
    let mut out: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for line in std::fs::read_to_string(path).unwrap().lines() {
        if let Some((k, v)) = line.split_once('=') {
            if !line.starts_with('#') {
                out.entry(k.trim().to_owned())
                    .or_default()
                    .push(v.trim().to_owned());
            }
        }
    }
    out
}

#[test]
fn activation_file_and_unit_agree() {
    let service = ini(&data("io.github.passthrough.Helper1.service"));
    assert_eq!(service["Name"], [BUS_NAME]);
    assert_eq!(service["Exec"], ["@libexecdir@/passthrough-helper"]);
    assert_eq!(service["User"], ["root"]);
    assert_eq!(service["SystemdService"], ["passthrough-helper.service"]);
    let unit = ini(&data("passthrough-helper.service"));
    assert_eq!(unit["Type"], ["dbus"]);
    assert_eq!(unit["BusName"], [BUS_NAME]);
    assert_eq!(unit["ExecStart"], ["@libexecdir@/passthrough-helper"]);
    for (key, value) in [
        ("ProtectSystem", "strict"),
        ("ProtectHome", "yes"),
        ("PrivateTmp", "yes"),
        ("NoNewPrivileges", "yes"),
        ("RestrictAddressFamilies", "AF_UNIX"),
        ("PrivateNetwork", "yes"),
    ] {
        assert_eq!(unit[key], [value], "{key}");
    }
    assert!(!unit.contains_key("User"), "the helper runs as root");
    let caps = unit["CapabilityBoundingSet"].join(" ");
    for forbidden in [
        "CAP_SYS_ADMIN",
        "CAP_SYS_MODULE",
        "CAP_NET_ADMIN",
        "CAP_SYS_PTRACE",
    ] {
        assert!(!caps.contains(forbidden), "{forbidden}");
    }
}

#[test]
fn systemd_unit_verifies_and_is_hardened() {
    const TEST: &str = "systemd_unit_verifies_and_is_hardened";
    if !have("systemd-analyze") {
        skip(TEST, "systemd-analyze is not installed (package systemd)");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let bin_dir = helper_binary().parent().unwrap().to_owned();
    let unit = dir.path().join("passthrough-helper.service");
    let text = std::fs::read_to_string(data("passthrough-helper.service")).unwrap();
    std::fs::write(
        &unit,
        text.replace("@libexecdir@", &bin_dir.display().to_string()),
    )
    .unwrap();
    let out = Command::new("systemd-analyze")
        .arg("verify")
        .arg(&unit)
        .output()
        .unwrap();
    let report = out_text(&out);
    assert!(
        out.status.success() && !report.contains("passthrough-helper.service:"),
        "systemd-analyze verify:\n{report}"
    );
    let out = Command::new("systemd-analyze")
        .args(["security", "--offline=yes", "--no-pager"])
        .arg(&unit)
        .output()
        .unwrap();
    let report = out_text(&out);
    let score: f32 = report
        .lines()
        .find_map(|l| {
            l.split("exposure level for passthrough-helper.service: ")
                .nth(1)
        })
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no exposure level in:\n{report}"));
    eprintln!("systemd-analyze security exposure: {score}");
    assert!(score <= 2.0, "exposure {score} (keep it ≤ 2.0):\n{report}");
}

#[test]
fn polkit_policy_validates_and_translates() {
    let template = data("io.github.passthrough.policy.in");
    xmllint(&["--noout"], &template);
    let dir = tempfile::tempdir().unwrap();
    let policy = translated_policy(dir.path());
    xmllint(&["--noout"], &policy);
    if Path::new(POLICY_DTD).exists() {
        xmllint(&["--noout", "--dtdvalid", POLICY_DTD], &template);
        xmllint(&["--noout", "--dtdvalid", POLICY_DTD], &policy);
    } else {
        skip(
            "polkit DTD validation",
            &format!("{POLICY_DTD} is not installed (package polkitd)"),
        );
    }
    let text = std::fs::read_to_string(&policy).unwrap();
    for id in [
        "io.github.passthrough.configure-host",
        "io.github.passthrough.manage-devices",
        "io.github.passthrough.read-logs",
    ] {
        let action = text
            .split(&format!(r#"<action id="{id}">"#))
            .nth(1)
            .unwrap_or_else(|| panic!("no action {id}"));
        let action = action.split("</action>").next().unwrap();
        assert!(action.contains("<allow_any>auth_admin</allow_any>"), "{id}");
        assert!(
            action.contains("<allow_inactive>auth_admin</allow_inactive>"),
            "{id}"
        );
        assert!(
            action.contains("<allow_active>auth_admin_keep</allow_active>"),
            "{id}"
        );
    }
}
