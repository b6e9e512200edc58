//! A real NetworkManager for the tests (PLATFORM.md, "NetworkManager in a network namespace"):
//! a private system-type `dbus-daemon`, two network namespaces joined by a veth pair, and
//! `NetworkManager --no-daemon` in the first one, in a private mount namespace whose `/run`
//! and `/var/lib/NetworkManager` are directories of the test and whose `/sys` is read-only
//! but for `/sys/devices/virtual/net` (else NetworkManager waits for udev, which does not run
//! here). The port `ptv0` starts with the static profile "Wired connection 1" (made with
//! nmcli); its peer `ptv1` in the second namespace holds [`PEER_ADDRESS`] and pings.
//!
//! Everything is stopped by PID and deleted when the [`NmLab`] is dropped, in this order:
//! NetworkManager, dbus-daemon, the namespaces, the temp dir.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use passthrough_core::network::nm::Nm;

use super::{chmod, have, is_root, out_text, system_conf, Daemon};

/// The port NetworkManager manages, in the lab's namespace.
pub const PORT: &str = "ptv0";
/// Its peer, in the peer namespace.
pub const PEER_IF: &str = "ptv1";
pub const PORT_ADDRESS: &str = "10.77.0.1/24";
pub const PORT_IP: &str = "10.77.0.1";
pub const PORT_GATEWAY: &str = "10.77.0.254";
pub const PORT_DNS: &str = "10.77.0.53";
pub const PORT_ADDRESS6: &str = "fd00:77::1/64";
pub const PORT_DNS6: &str = "fd00:77::53";
pub const PEER_ADDRESS: &str = "10.77.0.2/24";
/// The profile the port has before any bridge.
pub const WIRED: &str = "Wired connection 1";
/// The prefix of the namespace names (followed by the PID and a counter).
pub const NS_PREFIX: &str = "ptnm";

static COUNTER: AtomicUsize = AtomicUsize::new(0);

/// Why the NetworkManager tests cannot run here, if they cannot.
pub fn missing() -> Option<String> {
    if !is_root() {
        return Some("needs root (network namespaces)".into());
    }
    for program in [
        "NetworkManager",
        "nmcli",
        "ip",
        "ping",
        "unshare",
        "dbus-daemon",
        "setpriv",
    ] {
        if !have(program) {
            return Some(format!("{program} is not installed"));
        }
    }
    if !Path::new(NM_DBUS_POLICY).exists() {
        return Some(format!("{NM_DBUS_POLICY} is missing"));
    }
    if !Path::new("/var/lib/NetworkManager").is_dir() {
        return Some("/var/lib/NetworkManager is missing".into());
    }
    None
}

const NM_DBUS_POLICY: &str = "/usr/share/dbus-1/system.d/org.freedesktop.NetworkManager.conf";

/// Two network namespaces, deleted when dropped.
pub struct Netns {
    pub names: Vec<String>,
}

impl Drop for Netns {
    fn drop(&mut self) {
        for name in &self.names {
            let _ = Command::new("ip").args(["netns", "del", name]).status();
        }
    }
}

/// The lab: dropped in field order.
pub struct NmLab {
    pub nm: Daemon,
    pub bus: Daemon,
    netns: Netns,
    /// The namespace NetworkManager runs in, and the peer's.
    pub ns: String,
    pub peer: String,
    pub address: String,
    pub dir: tempfile::TempDir,
}

fn run(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(out.status.success(), "{cmd:?}: {}", out_text(&out));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

impl NmLab {
    /// Starts everything and gives the port "Wired connection 1" (static IPv4 and IPv6,
    /// gateway, DNS), activated. NetworkManager runs with `auth-polkit=false`, as in
    /// PLATFORM.md: every caller may change everything.
    pub fn start() -> Self {
        Self::start_with_auth("false")
    }

    /// The same with another `auth-polkit` value: `root-only` denies every other user, as
    /// polkit does for a user its rules do not allow (and root stays allowed).
    pub fn start_with_auth(auth_polkit: &str) -> Self {
        let n = COUNTER.fetch_add(1, Ordering::SeqCst);
        let id = format!("{NS_PREFIX}{}x{n}", std::process::id());
        let ns = id.clone();
        let peer = format!("{id}p");
        let dir = tempfile::Builder::new()
            .prefix(&format!("{id}-"))
            .tempdir()
            .unwrap();
        // Other users (nobody) must reach the bus socket.
        chmod(dir.path(), 0o755);
        let path = |name: &str| dir.path().join(name);
        for sub in ["system.d", "run", "lib", "connections", "conf.d"] {
            std::fs::create_dir(path(sub)).unwrap();
        }
        chmod(&path("system.d"), 0o755);
        std::fs::copy(
            NM_DBUS_POLICY,
            path("system.d").join("org.freedesktop.NetworkManager.conf"),
        )
        .unwrap();
        let socket = path("system_bus_socket");
        std::fs::write(path("system.conf"), system_conf(&socket, &path("system.d"))).unwrap();

        // The bus.
        let mut child = Command::new("dbus-daemon")
            .arg(format!("--config-file={}", path("system.conf").display()))
            .args(["--nofork", "--print-address=1"])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("dbus-daemon");
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let bus = Daemon {
            name: "dbus-daemon",
            child,
        };
        let address = line.trim().to_owned();
        assert!(address.starts_with("unix:"), "dbus-daemon said {address:?}");

        // The namespaces and the veth pair. The guard exists before the namespaces.
        let netns = Netns {
            names: vec![ns.clone(), peer.clone()],
        };
        run(Command::new("ip").args(["netns", "add", &ns]));
        run(Command::new("ip").args(["netns", "add", &peer]));
        run(Command::new("ip").args([
            "link", "add", PORT, "netns", &ns, "type", "veth", "peer", "name", PEER_IF, "netns",
            &peer,
        ]));
        run(Command::new("ip").args(["-n", &ns, "link", "set", "lo", "up"]));
        run(Command::new("ip").args(["-n", &peer, "link", "set", "lo", "up"]));
        run(Command::new("ip").args(["-n", &peer, "addr", "add", PEER_ADDRESS, "dev", PEER_IF]));
        run(Command::new("ip").args(["-n", &peer, "link", "set", PEER_IF, "up"]));

        // NetworkManager.
        let config = format!(
            "[main]\nplugins=keyfile\nauth-polkit={auth_polkit}\ndns=none\nrc-manager=unmanaged\n\
             no-auto-default=*\n\n[keyfile]\npath={connections}\n\n\
             [device-passthrough-test]\nmatch-device=interface-name:{PORT}\nmanaged=1\n\n\
             [logging]\nlevel=INFO\n",
            connections = path("connections").display()
        );
        std::fs::write(path("NetworkManager.conf"), config).unwrap();
        let script = format!(
            "set -e\n\
             mount --bind {run} /run\n\
             mount --bind {lib} /var/lib/NetworkManager\n\
             mount --bind /sys/devices/virtual/net /sys/devices/virtual/net\n\
             mount -o remount,bind,ro /sys\n\
             exec NetworkManager --no-daemon --debug --config={conf} --config-dir={confd} \
             --system-config-dir={confd}",
            run = path("run").display(),
            lib = path("lib").display(),
            conf = path("NetworkManager.conf").display(),
            confd = path("conf.d").display(),
        );
        let log = std::fs::File::create(path("NetworkManager.log")).unwrap();
        let nm = Daemon {
            name: "NetworkManager",
            child: Command::new("ip")
                .args([
                    "netns",
                    "exec",
                    &ns,
                    "unshare",
                    "-m",
                    "--propagation",
                    "private",
                ])
                .args(["sh", "-c", &script])
                .env("DBUS_SYSTEM_BUS_ADDRESS", &address)
                .stdin(Stdio::null())
                .stdout(log.try_clone().unwrap())
                .stderr(log)
                .spawn()
                .expect("ip netns exec … NetworkManager"),
        };
        let mut lab = Self {
            nm,
            bus,
            netns,
            ns,
            peer,
            address,
            dir,
        };
        lab.wait_for_port();
        lab.nmcli(&[
            "connection",
            "add",
            "type",
            "ethernet",
            "ifname",
            PORT,
            "con-name",
            WIRED,
            "ipv4.method",
            "manual",
            "ipv4.addresses",
            PORT_ADDRESS,
            "ipv4.gateway",
            PORT_GATEWAY,
            "ipv4.dns",
            PORT_DNS,
            "ipv6.method",
            "manual",
            "ipv6.addresses",
            PORT_ADDRESS6,
            "ipv6.dns",
            PORT_DNS6,
        ]);
        lab.nmcli(&["connection", "up", WIRED]);
        lab
    }

    fn wait_for_port(&mut self) {
        let start = Instant::now();
        loop {
            if let Some(status) = self.nm.exited() {
                panic!(
                    "NetworkManager exited ({status}) at start:\n{}",
                    self.nm_log()
                );
            }
            if let Ok(nm) = self.try_client() {
                if let Ok(Some(d)) = nm.device(PORT) {
                    if d.state_code >= 30 {
                        return;
                    }
                }
            }
            assert!(
                start.elapsed() < Duration::from_secs(15),
                "NetworkManager did not show {PORT} ready within 15 s:\n{}",
                self.nm_log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn try_client(&self) -> Result<Nm, zbus::Error> {
        let conn =
            zbus::block_on(zbus::connection::Builder::address(self.address.as_str()).build())?;
        Ok(Nm::from_connection(conn))
    }

    /// The code under test, connected to the lab's bus.
    pub fn client(&self) -> Nm {
        self.try_client().expect("connect to the lab's bus")
    }

    /// nmcli against the lab's NetworkManager; panics when it fails.
    pub fn nmcli(&self, args: &[&str]) -> String {
        run(Command::new("nmcli")
            .args(args)
            .env("DBUS_SYSTEM_BUS_ADDRESS", &self.address))
    }

    pub fn nm_log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("NetworkManager.log")).unwrap_or_default()
    }

    /// `ip -j addr` in the lab's namespace.
    pub fn ip_addr(&self) -> serde_json::Value {
        let text = run(Command::new("ip").args(["-n", &self.ns, "-j", "addr", "show"]));
        serde_json::from_str(&text).unwrap()
    }

    fn link(&self, name: &str) -> Option<serde_json::Value> {
        self.ip_addr()
            .as_array()
            .unwrap()
            .iter()
            .find(|l| l["ifname"] == name)
            .cloned()
    }

    pub fn has_link(&self, name: &str) -> bool {
        self.link(name).is_some()
    }

    /// The global addresses (CIDR) of `name` in the lab's namespace.
    pub fn addresses(&self, name: &str) -> Vec<String> {
        let Some(link) = self.link(name) else {
            return Vec::new();
        };
        link["addr_info"]
            .as_array()
            .map(|list| {
                list.iter()
                    .filter(|a| a["scope"] == "global")
                    .map(|a| format!("{}/{}", a["local"].as_str().unwrap(), a["prefixlen"]))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// The bridge `name` is a port of.
    pub fn master(&self, name: &str) -> Option<String> {
        self.link(name)?["master"].as_str().map(str::to_owned)
    }

    /// Whether the peer gets an answer from the port's address.
    pub fn ping(&self) -> bool {
        Command::new("ip")
            .args(["netns", "exec", &self.peer])
            .args(["ping", "-c1", "-W2", PORT_IP])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    }

    /// Polls `check` every 100 ms for up to `limit`.
    pub fn wait_until(&self, limit: Duration, mut check: impl FnMut() -> bool) -> bool {
        let start = Instant::now();
        while start.elapsed() < limit {
            if check() {
                return true;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        check()
    }

    pub fn dir(&self) -> PathBuf {
        self.dir.path().to_owned()
    }

    /// The namespace names, to check afterwards that they are gone.
    pub fn netns_names(&self) -> Vec<String> {
        self.netns.names.clone()
    }
}

impl Drop for NmLab {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("--- NetworkManager log ---\n{}", self.nm_log());
        }
    }
}

/// The namespaces whose names start with `prefix` (`ip netns list`).
pub fn netns_with_prefix(prefix: &str) -> Vec<String> {
    let out = Command::new("ip").args(["netns", "list"]).output().unwrap();
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .filter(|n| n.starts_with(prefix))
        .map(str::to_owned)
        .collect()
}

/// The processes whose command line mentions `text` (`pgrep -f`), as "PID command".
pub fn processes_mentioning(text: &str) -> Vec<String> {
    let out = Command::new("pgrep")
        .args(["-a", "-f", "--", text])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_owned)
        .collect()
}
