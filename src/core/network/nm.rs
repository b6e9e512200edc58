//! NetworkManager over D-Bus: what the Network step shows, and the bridge made safely.
//!
//! [`Nm`] talks to `org.freedesktop.NetworkManager` on the system bus with zbus. Its methods
//! block (each D-Bus call runs in [`zbus::block_on`]); the app calls them from a worker
//! thread, never from a zbus task.
//!
//! - [`Nm::devices`]: the interfaces NetworkManager knows, with their state, connection,
//!   addresses, gateway, DNS servers and bridge ports.
//! - [`Nm::plan_for_port`]: a [`BridgePlan`] that moves a wired interface's current IP
//!   configuration to a new bridge.
//! - [`Nm::apply_bridge`]: refuses what cannot work before touching anything, then creates a
//!   checkpoint with a rollback timeout ([`APPLY_CHECKPOINT_FLAGS`]: delete new connections,
//!   disconnect new devices), adds the bridge and port connections, activates them and waits
//!   until the bridge is up. Until [`Nm::confirm`] destroys the checkpoint, NetworkManager
//!   undoes everything on its own when the timeout passes: the safety net for a host that
//!   lost its network (and the SSH session of the user who clicked "Apply").
//! - [`Nm::remove_bridge`]: deletes the connections Passthrough made for a bridge and
//!   activates the port's earlier connection again, under a checkpoint too.
//!
//! The connections Passthrough makes carry `user.data` key [`ROLE_KEY`] (`bridge` or `port`),
//! so [`Nm::remove_bridge`] never deletes a bridge the user made by hand.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::time::{Duration, Instant};

use serde::Serialize;
use zbus::proxy::CacheProperties;
use zbus::{ObjectPath, OwnedObjectPath, OwnedVariant, Variant};

use super::{can_bridge, netplan_yaml, BridgePlan, Interface, InterfaceKind, Ipv4, Ipv6, Renderer};
use crate::i18n::gettext_f;

/// NetworkManager's well-known bus name.
pub const NM_BUS_NAME: &str = "org.freedesktop.NetworkManager";

/// `NM_CHECKPOINT_CREATE_FLAG_DELETE_NEW_CONNECTIONS` (2) | `…_DISCONNECT_NEW_DEVICES` (4):
/// a rollback deletes the bridge and port connections made after the checkpoint and takes
/// the new bridge device down, and gives the port its earlier connection back. With flags 0
/// the new bridge would stay up next to the restored port, with the same address twice.
pub const APPLY_CHECKPOINT_FLAGS: u32 = 6;

/// Flags of the checkpoint around [`Nm::remove_bridge`]: none. Removing creates no
/// connection and no device, so "delete new connections" and "disconnect new devices" would
/// find nothing to act on; what a rollback must do there is re-add the deleted bridge and
/// port connections and activate them again, which NetworkManager does for every device in
/// a checkpoint whatever the flags. `DESTROY_ALL` (1) is never used: it would drop a
/// checkpoint someone else is counting on.
pub const REMOVE_CHECKPOINT_FLAGS: u32 = 0;

/// The `user.data` key that marks a connection Passthrough made; its value is `bridge` or
/// `port`.
pub const ROLE_KEY: &str = "io.github.passthrough.role";

/// How long [`Nm::apply_bridge`] and [`Nm::remove_bridge`] wait for the connections to come
/// up, unless [`Nm::set_activation_limit`] says otherwise. A DHCP lease can take a while.
pub const ACTIVATION_LIMIT: Duration = Duration::from_secs(30);

/// NetworkManager's `NMDeviceType` values the Network step tells apart.
pub const DEVICE_TYPE_ETHERNET: u32 = 1;
pub const DEVICE_TYPE_WIFI: u32 = 2;
pub const DEVICE_TYPE_BRIDGE: u32 = 13;
pub const DEVICE_TYPE_VETH: u32 = 20;

/// `NM_ACTIVE_CONNECTION_STATE_ACTIVATED` and `…_DEACTIVATED`.
const AC_ACTIVATED: u32 = 2;
const AC_DEACTIVATED: u32 = 4;

const POLL: Duration = Duration::from_millis(100);

/// The highest `connection.autoconnect-priority` NetworkManager accepts.
const MAX_AUTOCONNECT_PRIORITY: i32 = 999;

type Settings = HashMap<String, HashMap<String, OwnedVariant>>;

#[zbus::proxy(
    interface = "org.freedesktop.NetworkManager",
    default_service = "org.freedesktop.NetworkManager",
    default_path = "/org/freedesktop/NetworkManager"
)]
trait NetworkManager {
    fn get_devices(&self) -> zbus::Result<Vec<OwnedObjectPath>>;

    fn activate_connection(
        &self,
        connection: &ObjectPath<'_>,
        device: &ObjectPath<'_>,
        specific_object: &ObjectPath<'_>,
    ) -> zbus::Result<OwnedObjectPath>;

    fn checkpoint_create(
        &self,
        devices: &[ObjectPath<'_>],
        rollback_timeout: u32,
        flags: u32,
    ) -> zbus::Result<OwnedObjectPath>;

    fn checkpoint_destroy(&self, checkpoint: &ObjectPath<'_>) -> zbus::Result<()>;

    fn checkpoint_rollback(
        &self,
        checkpoint: &ObjectPath<'_>,
    ) -> zbus::Result<HashMap<String, u32>>;

    fn checkpoint_adjust_rollback_timeout(
        &self,
        checkpoint: &ObjectPath<'_>,
        add_timeout: u32,
    ) -> zbus::Result<()>;

    #[zbus(property, name = "Version")]
    fn version(&self) -> zbus::Result<String>;

    #[zbus(property, name = "Checkpoints")]
    fn checkpoints(&self) -> zbus::Result<Vec<OwnedObjectPath>>;
}

#[zbus::proxy(
    interface = "org.freedesktop.NetworkManager.Settings",
    default_service = "org.freedesktop.NetworkManager",
    default_path = "/org/freedesktop/NetworkManager/Settings"
)]
trait NmSettings {
    fn list_connections(&self) -> zbus::Result<Vec<OwnedObjectPath>>;

    fn add_connection(
        &self,
        connection: HashMap<&str, HashMap<&str, Variant<'_>>>,
    ) -> zbus::Result<OwnedObjectPath>;
}

#[zbus::proxy(
    interface = "org.freedesktop.NetworkManager.Settings.Connection",
    default_service = "org.freedesktop.NetworkManager"
)]
trait NmConnectionObject {
    fn get_settings(&self) -> zbus::Result<Settings>;

    fn delete(&self) -> zbus::Result<()>;
}

#[zbus::proxy(
    interface = "org.freedesktop.NetworkManager.Device",
    default_service = "org.freedesktop.NetworkManager"
)]
trait NmDeviceObject {
    fn get_applied_connection(&self, flags: u32) -> zbus::Result<(Settings, u64)>;

    #[zbus(property, name = "Interface")]
    fn interface(&self) -> zbus::Result<String>;

    #[zbus(property, name = "DeviceType")]
    fn device_type(&self) -> zbus::Result<u32>;

    #[zbus(property, name = "State")]
    fn state(&self) -> zbus::Result<u32>;

    #[zbus(property, name = "Managed")]
    fn managed(&self) -> zbus::Result<bool>;

    /// False for the placeholder of a software device (a bridge) whose profile exists but
    /// which was never created.
    #[zbus(property, name = "Real")]
    fn real(&self) -> zbus::Result<bool>;

    #[zbus(property, name = "HwAddress")]
    fn hw_address(&self) -> zbus::Result<String>;

    #[zbus(property, name = "ActiveConnection")]
    fn active_connection(&self) -> zbus::Result<OwnedObjectPath>;

    #[zbus(property, name = "AvailableConnections")]
    fn available_connections(&self) -> zbus::Result<Vec<OwnedObjectPath>>;

    #[zbus(property, name = "Ip4Config")]
    fn ip4_config(&self) -> zbus::Result<OwnedObjectPath>;

    #[zbus(property, name = "Ip6Config")]
    fn ip6_config(&self) -> zbus::Result<OwnedObjectPath>;

    /// NetworkManager 1.34 and later.
    #[zbus(property, name = "Ports")]
    fn ports(&self) -> zbus::Result<Vec<OwnedObjectPath>>;
}

#[zbus::proxy(
    interface = "org.freedesktop.NetworkManager.Device.Bridge",
    default_service = "org.freedesktop.NetworkManager"
)]
trait NmBridgeObject {
    /// The ports before NetworkManager 1.34 (`Device.Ports` since).
    #[zbus(property, name = "Slaves")]
    fn slaves(&self) -> zbus::Result<Vec<OwnedObjectPath>>;
}

#[zbus::proxy(
    interface = "org.freedesktop.NetworkManager.Connection.Active",
    default_service = "org.freedesktop.NetworkManager"
)]
trait NmActiveObject {
    #[zbus(property, name = "Id")]
    fn id(&self) -> zbus::Result<String>;

    #[zbus(property, name = "Uuid")]
    fn uuid(&self) -> zbus::Result<String>;

    #[zbus(property, name = "State")]
    fn state(&self) -> zbus::Result<u32>;

    #[zbus(property, name = "Connection")]
    fn connection(&self) -> zbus::Result<OwnedObjectPath>;
}

#[zbus::proxy(
    interface = "org.freedesktop.NetworkManager.IP4Config",
    default_service = "org.freedesktop.NetworkManager"
)]
trait NmIp4Object {
    #[zbus(property, name = "AddressData")]
    fn address_data(&self) -> zbus::Result<Vec<HashMap<String, OwnedVariant>>>;

    #[zbus(property, name = "Gateway")]
    fn gateway(&self) -> zbus::Result<String>;

    #[zbus(property, name = "Nameservers")]
    fn nameservers(&self) -> zbus::Result<Vec<u32>>;
}

#[zbus::proxy(
    interface = "org.freedesktop.NetworkManager.IP6Config",
    default_service = "org.freedesktop.NetworkManager"
)]
trait NmIp6Object {
    #[zbus(property, name = "AddressData")]
    fn address_data(&self) -> zbus::Result<Vec<HashMap<String, OwnedVariant>>>;

    #[zbus(property, name = "Gateway")]
    fn gateway(&self) -> zbus::Result<String>;

    #[zbus(property, name = "Nameservers")]
    fn nameservers(&self) -> zbus::Result<Vec<Vec<u8>>>;
}

#[zbus::proxy(
    interface = "org.freedesktop.NetworkManager.Checkpoint",
    default_service = "org.freedesktop.NetworkManager"
)]
trait NmCheckpointObject {
    /// `CLOCK_BOOTTIME` in milliseconds when the checkpoint was made.
    #[zbus(property, name = "Created")]
    fn created(&self) -> zbus::Result<i64>;

    /// Seconds after `Created` when NetworkManager rolls back (0: never).
    #[zbus(property, name = "RollbackTimeout")]
    fn rollback_timeout(&self) -> zbus::Result<u32>;
}

/// Why a NetworkManager request failed; every variant holds a translated sentence.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NmError {
    /// Nobody owns `org.freedesktop.NetworkManager` (or the system bus is unreachable).
    NotRunning(String),
    /// NetworkManager's polkit rules (or its `auth-polkit=root-only`) did not allow it.
    PermissionDenied(String),
    /// The request was refused before anything was changed (Wi-Fi port, name in use, …).
    Refused(String),
    /// Activation did not finish in time; the checkpoint was rolled back.
    Timeout(String),
    /// NetworkManager could not activate a connection; the checkpoint was rolled back.
    ActivationFailed(String),
    /// Any other D-Bus error, with NetworkManager's own message appended.
    DBus(String),
}

impl NmError {
    /// The sentence for people.
    pub fn message(&self) -> &str {
        match self {
            NmError::NotRunning(m)
            | NmError::PermissionDenied(m)
            | NmError::Refused(m)
            | NmError::Timeout(m)
            | NmError::ActivationFailed(m)
            | NmError::DBus(m) => m,
        }
    }

    /// The error for a D-Bus error reply `name` with NetworkManager's `detail`.
    pub fn from_dbus_error(name: &str, detail: Option<&str>) -> Self {
        let detail = detail.unwrap_or_default().trim();
        let short = name.rsplit('.').next().unwrap_or_default();
        match short {
            // org.freedesktop.NetworkManager.PermissionDenied,
            // org.freedesktop.NetworkManager.Settings.PermissionDenied,
            // org.freedesktop.NetworkManager.Settings.Connection.PermissionDenied, and the
            // bus's own AccessDenied when its policy keeps us from calling NetworkManager.
            "PermissionDenied" | "AccessDenied" | "AuthFailed" => NmError::PermissionDenied(
                gettext_f(
                    "NetworkManager did not allow this change: your account is not authorized by its polkit rules (ask an administrator, or sign in at the computer itself). Nothing was changed. NetworkManager said: {detail}",
                    &[("detail", detail)],
                ),
            ),
            "ServiceUnknown" | "NameHasNoOwner" | "ServiceNotFound" => not_running(),
            "NoReply" | "Timeout" | "TimedOut" => NmError::Timeout(gettext_f(
                "NetworkManager did not answer in time. NetworkManager said: {detail}",
                &[("detail", detail)],
            )),
            _ => NmError::DBus(if detail.is_empty() {
                gettext_f(
                    "NetworkManager refused the request ({error}).",
                    &[("error", name)],
                )
            } else {
                gettext_f(
                    "NetworkManager refused the request: {detail}",
                    &[("detail", detail)],
                )
            }),
        }
    }

    fn from_zbus(err: zbus::Error) -> Self {
        use zbus::DBusError;
        match &err {
            zbus::Error::MethodError(name, detail, _) => {
                Self::from_dbus_error(name.as_str(), detail.as_deref())
            }
            zbus::Error::FDO(e) => Self::from_dbus_error(e.name().as_str(), e.description()),
            zbus::Error::DBus(e) => Self::from_dbus_error(e.name().as_str(), e.description()),
            zbus::Error::InputOutput(_) | zbus::Error::Address(_) | zbus::Error::Connection(..) => {
                NmError::NotRunning(gettext_f(
                    "Cannot reach the system bus to talk to NetworkManager: {error}",
                    &[("error", &err.to_string())],
                ))
            }
            other => NmError::DBus(gettext_f(
                "Unexpected error while talking to NetworkManager: {error}",
                &[("error", &other.to_string())],
            )),
        }
    }
}

impl std::fmt::Display for NmError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.message())
    }
}

impl std::error::Error for NmError {}

impl From<zbus::Error> for NmError {
    fn from(err: zbus::Error) -> Self {
        Self::from_zbus(err)
    }
}

fn not_running() -> NmError {
    NmError::NotRunning(gettext_f(
        "NetworkManager is not running, so Passthrough cannot read or change the network through it.",
        &[],
    ))
}

/// What a device is, from its `DeviceType`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum NmDeviceKind {
    Ethernet,
    Veth,
    Wifi,
    Bridge,
    Other,
}

impl NmDeviceKind {
    pub fn from_device_type(device_type: u32) -> Self {
        match device_type {
            DEVICE_TYPE_ETHERNET => Self::Ethernet,
            DEVICE_TYPE_VETH => Self::Veth,
            DEVICE_TYPE_WIFI => Self::Wifi,
            DEVICE_TYPE_BRIDGE => Self::Bridge,
            _ => Self::Other,
        }
    }
}

/// `NMDeviceState`, the states the Network step names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum NmDeviceState {
    Unmanaged,
    Unavailable,
    Disconnected,
    /// Preparing, configuring, waiting for addresses (40 to 90).
    Connecting,
    Activated,
    Deactivating,
    Failed,
    Unknown,
}

impl NmDeviceState {
    pub fn from_code(code: u32) -> Self {
        match code {
            10 => Self::Unmanaged,
            20 => Self::Unavailable,
            30 => Self::Disconnected,
            40..=90 => Self::Connecting,
            100 => Self::Activated,
            110 => Self::Deactivating,
            120 => Self::Failed,
            _ => Self::Unknown,
        }
    }
}

/// A device as NetworkManager sees it: what the Network step shows.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct NmDevice {
    /// The D-Bus object path.
    pub path: String,
    pub interface: String,
    pub kind: NmDeviceKind,
    /// NetworkManager's `DeviceType` number.
    pub device_type: u32,
    pub state: NmDeviceState,
    /// NetworkManager's `State` number.
    pub state_code: u32,
    pub managed: bool,
    pub mac: Option<String>,
    /// The active connection's name (`Wired connection 1`) and UUID.
    pub connection_id: Option<String>,
    pub connection_uuid: Option<String>,
    /// IPv4 addresses in CIDR notation.
    pub ipv4_addresses: Vec<String>,
    pub ipv4_gateway: Option<String>,
    /// Global IPv6 addresses in CIDR notation (link-local ones left out).
    pub ipv6_addresses: Vec<String>,
    pub ipv6_gateway: Option<String>,
    /// DNS servers, IPv4 first.
    pub dns: Vec<String>,
    /// For a bridge: the interfaces of its ports.
    pub ports: Vec<String>,
    /// The bridge (or bond, team) this device is a port of.
    pub master: Option<String>,
}

impl NmDevice {
    pub fn is_activated(&self) -> bool {
        self.state == NmDeviceState::Activated
    }
}

/// A connection profile NetworkManager stores.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct NmConnection {
    pub path: String,
    pub id: String,
    pub uuid: String,
    /// `802-3-ethernet`, `bridge`, `veth`, …
    pub kind: String,
    pub interface_name: Option<String>,
    /// The bridge (interface name or UUID) of a port connection.
    pub master: Option<String>,
    pub slave_type: Option<String>,
    pub autoconnect_priority: i32,
    /// When it was last activated (seconds since the epoch; 0 when never).
    pub timestamp: u64,
    /// `bridge` or `port` when Passthrough made it ([`ROLE_KEY`]).
    pub passthrough_role: Option<String>,
}

impl NmConnection {
    fn from_settings(path: String, s: &Settings) -> Self {
        let text = |key: &str| {
            setting(s, "connection", key)
                .and_then(str_of)
                .filter(|t| !t.is_empty())
                .map(str::to_owned)
        };
        let passthrough_role = setting(s, "user", "data")
            .and_then(|d| dict_get(d, ROLE_KEY))
            .and_then(str_of)
            .map(str::to_owned);
        Self {
            path,
            id: text("id").unwrap_or_default(),
            uuid: text("uuid").unwrap_or_default(),
            kind: text("type").unwrap_or_default(),
            interface_name: text("interface-name"),
            master: text("master").or_else(|| text("controller")),
            slave_type: text("slave-type").or_else(|| text("port-type")),
            autoconnect_priority: setting(s, "connection", "autoconnect-priority")
                .and_then(i32_of)
                .unwrap_or(0),
            timestamp: setting(s, "connection", "timestamp")
                .and_then(u64_of)
                .unwrap_or(0),
            passthrough_role,
        }
    }

    /// A connection that gives an interface its own addresses (not a port of something).
    fn is_standalone_wired(&self) -> bool {
        (self.kind == "802-3-ethernet" || self.kind == "veth")
            && self.master.is_none()
            && self.slave_type.is_none()
    }
}

/// What [`Nm::apply_bridge`] did; keep it to [`Nm::confirm`] or [`Nm::rollback`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Applied {
    /// The checkpoint's D-Bus object path.
    pub checkpoint: String,
    pub bridge_uuid: String,
    pub port_uuid: String,
    /// The rollback timeout the checkpoint was made with (seconds; 0 = never).
    pub rollback_timeout_secs: u32,
}

/// What [`Nm::remove_bridge`] did; keep it to [`Nm::confirm`] or [`Nm::rollback`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Removed {
    /// The checkpoint's D-Bus object path.
    pub checkpoint: String,
    /// The UUIDs of the deleted bridge and port connections.
    pub deleted: Vec<String>,
    /// The UUIDs of the earlier connections activated again on the ports.
    pub restored: Vec<String>,
    pub rollback_timeout_secs: u32,
}

/// Whether an interface of NetworkManager's `device_type` can be a bridge port; the error is
/// the same sentence as [`can_bridge`] gives (the reason for Wi-Fi, what to use instead).
/// `master` is the bridge it is already a port of.
pub fn port_refusal(name: &str, device_type: u32, master: Option<&str>) -> Result<(), String> {
    let kind = match NmDeviceKind::from_device_type(device_type) {
        NmDeviceKind::Wifi => InterfaceKind::Wifi,
        NmDeviceKind::Bridge => InterfaceKind::Bridge,
        NmDeviceKind::Ethernet | NmDeviceKind::Veth => InterfaceKind::Wired,
        NmDeviceKind::Other => {
            return Err(gettext_f(
                "{name} is not a wired Ethernet interface, so Passthrough does not make it the port of a bridge.",
                &[("name", name)],
            ))
        }
    };
    can_bridge(&Interface {
        name: name.to_owned(),
        kind,
        mac: None,
        carrier: None,
        operstate: None,
        master: master.map(str::to_owned),
        ports: Vec::new(),
    })
}

/// A connection to NetworkManager.
pub struct Nm {
    conn: zbus::Connection,
    activation_limit: Duration,
}

impl Nm {
    /// Connects to the system bus (`DBUS_SYSTEM_BUS_ADDRESS` when set, as zbus does).
    pub fn system() -> Result<Self, NmError> {
        let conn = zbus::block_on(zbus::Connection::system())?;
        Ok(Self::from_connection(conn))
    }

    pub fn from_connection(conn: zbus::Connection) -> Self {
        Self {
            conn,
            activation_limit: ACTIVATION_LIMIT,
        }
    }

    pub fn connection(&self) -> &zbus::Connection {
        &self.conn
    }

    /// How long to wait for connections to come up (default [`ACTIVATION_LIMIT`]).
    pub fn set_activation_limit(&mut self, limit: Duration) {
        self.activation_limit = limit;
    }

    /// Whether `org.freedesktop.NetworkManager` has an owner on the bus.
    pub fn running(&self) -> Result<bool, NmError> {
        zbus::block_on(async {
            let dbus = zbus::fdo::DBusProxy::new(&self.conn).await?;
            let name = zbus::names::BusName::try_from(NM_BUS_NAME)?;
            Ok(dbus.name_has_owner(name).await.map_err(zbus::Error::from)?)
        })
    }

    /// NetworkManager's version (`1.42.4`).
    pub fn version(&self) -> Result<String, NmError> {
        self.ensure_running()?;
        zbus::block_on(async { Ok(self.manager().await?.version().await?) })
    }

    fn ensure_running(&self) -> Result<(), NmError> {
        if self.running()? {
            Ok(())
        } else {
            Err(not_running())
        }
    }

    /// Every device NetworkManager knows, in its order.
    pub fn devices(&self) -> Result<Vec<NmDevice>, NmError> {
        self.ensure_running()?;
        zbus::block_on(async {
            let paths = self.manager().await?.get_devices().await?;
            let mut devices = Vec::new();
            let mut names = HashMap::new();
            let mut port_paths = HashMap::new();
            for path in &paths {
                let Ok(Some(device)) = self.read_device(path).await else {
                    // Not created yet (a bridge profile that is not active), or gone
                    // between GetDevices and now (a bridge being deleted).
                    continue;
                };
                let ports = self.port_paths(path).await;
                names.insert(path.as_str().to_owned(), device.interface.clone());
                port_paths.insert(path.as_str().to_owned(), ports);
                devices.push(device);
            }
            for device in &mut devices {
                device.ports = port_paths[&device.path]
                    .iter()
                    .filter_map(|p| names.get(p.as_str()).cloned())
                    .collect();
            }
            let masters: HashMap<String, String> = devices
                .iter()
                .flat_map(|d| {
                    d.ports
                        .iter()
                        .map(|p| (p.clone(), d.interface.clone()))
                        .collect::<Vec<_>>()
                })
                .collect();
            for device in &mut devices {
                device.master = masters.get(&device.interface).cloned();
            }
            Ok(devices)
        })
    }

    /// The device of interface `iface`, if NetworkManager knows it.
    pub fn device(&self, iface: &str) -> Result<Option<NmDevice>, NmError> {
        Ok(self.devices()?.into_iter().find(|d| d.interface == iface))
    }

    /// Every connection profile NetworkManager stores.
    pub fn connections(&self) -> Result<Vec<NmConnection>, NmError> {
        self.ensure_running()?;
        zbus::block_on(self.read_connections())
    }

    /// The object paths of the checkpoints that exist now.
    pub fn checkpoints(&self) -> Result<Vec<String>, NmError> {
        self.ensure_running()?;
        zbus::block_on(async {
            let list = self.manager().await?.checkpoints().await?;
            Ok(list.iter().map(|p| p.as_str().to_owned()).collect())
        })
    }

    /// How long until NetworkManager rolls `checkpoint` back; `None` when it no longer exists
    /// (confirmed or rolled back) or never rolls back by itself.
    pub fn checkpoint_remaining(&self, checkpoint: &str) -> Result<Option<Duration>, NmError> {
        if !self.checkpoints()?.iter().any(|c| c == checkpoint) {
            return Ok(None);
        }
        let (created_ms, timeout) = zbus::block_on(async {
            let proxy = NmCheckpointObjectProxy::builder(&self.conn)
                .path(checkpoint)
                .cache_properties(CacheProperties::No)
                .build()
                .await?;
            Ok::<_, zbus::Error>((proxy.created().await?, proxy.rollback_timeout().await?))
        })?;
        if timeout == 0 {
            return Ok(None);
        }
        let Some(now_ms) = boottime_ms() else {
            return Ok(Some(Duration::from_secs(u64::from(timeout))));
        };
        let deadline = created_ms.saturating_add(i64::from(timeout) * 1000);
        Ok(Some(Duration::from_millis(
            deadline.saturating_sub(now_ms).max(0) as u64,
        )))
    }

    /// Gives `checkpoint` `secs` more seconds from now before it rolls back (0: never).
    pub fn adjust_rollback_timeout(&self, checkpoint: &str, secs: u32) -> Result<(), NmError> {
        zbus::block_on(async {
            let path = object_path(checkpoint)?;
            self.manager()
                .await?
                .checkpoint_adjust_rollback_timeout(&path, secs)
                .await?;
            Ok(())
        })
    }

    /// Keeps the change: destroys the checkpoint, so nothing is rolled back. Too late (the
    /// checkpoint is gone, rolled back) is an error that says so.
    pub fn confirm(&self, checkpoint: &str) -> Result<(), NmError> {
        if !self.checkpoints()?.iter().any(|c| c == checkpoint) {
            return Err(NmError::Refused(gettext_f(
                "Too late to keep this network setup: the time had passed and NetworkManager has already undone it.",
                &[],
            )));
        }
        zbus::block_on(async {
            let path = object_path(checkpoint)?;
            self.manager().await?.checkpoint_destroy(&path).await?;
            Ok(())
        })
    }

    /// Undoes the change now (instead of waiting for the timeout).
    pub fn rollback(&self, checkpoint: &str) -> Result<(), NmError> {
        zbus::block_on(async {
            let path = object_path(checkpoint)?;
            self.manager().await?.checkpoint_rollback(&path).await?;
            Ok(())
        })
    }

    /// A bridge plan that moves `iface`'s current IP configuration (from its applied
    /// connection, else its active connection's profile) to the bridge
    /// [`DEFAULT_BRIDGE`](super::DEFAULT_BRIDGE).
    pub fn plan_for_port(&self, iface: &str) -> Result<BridgePlan, NmError> {
        self.ensure_running()?;
        let device = self
            .device(iface)?
            .ok_or_else(|| no_such_interface(iface))?;
        let settings = zbus::block_on(self.current_settings(&device))?.ok_or_else(|| {
            NmError::Refused(gettext_f(
                "{name} has no active NetworkManager connection, so there is no IP configuration to move to a bridge.",
                &[("name", iface)],
            ))
        })?;
        let id = setting(&settings, "connection", "id")
            .and_then(str_of)
            .unwrap_or(iface)
            .to_owned();
        let mut plan = BridgePlan::new(iface);
        plan.ipv4 = ipv4_of(&settings, &id)?;
        plan.ipv6 = ipv6_of(&settings);
        plan.dns = dns_of(&settings);
        Ok(plan)
    }

    /// Makes the bridge of `plan` under a checkpoint that rolls back by itself after
    /// `rollback_timeout_secs` (0: never) unless [`confirm`](Self::confirm)ed.
    ///
    /// Nothing is changed when the plan is invalid, the port is missing, Wi-Fi, not wired, not
    /// managed or already a port, or the bridge's name is taken by a device or a connection.
    /// When the bridge or the port do not come up within the activation limit the checkpoint
    /// is rolled back at once and the error says why.
    ///
    /// The bridge gets the port's MAC address (`ethernet.cloned-mac-address`), so a DHCP
    /// server hands it the lease the port had; STP is off so it forwards at once.
    pub fn apply_bridge(
        &self,
        plan: &BridgePlan,
        rollback_timeout_secs: u32,
    ) -> Result<Applied, NmError> {
        // 1. Refusals, before anything changes.
        netplan_yaml(plan, Renderer::NetworkManager).map_err(NmError::Refused)?;
        check_for_nm(plan).map_err(NmError::Refused)?;
        self.ensure_running()?;
        let devices = self.devices()?;
        let port = devices
            .iter()
            .find(|d| d.interface == plan.port)
            .ok_or_else(|| no_such_interface(&plan.port))?;
        port_refusal(&port.interface, port.device_type, port.master.as_deref())
            .map_err(NmError::Refused)?;
        if !port.managed || port.state == NmDeviceState::Unmanaged {
            return Err(NmError::Refused(gettext_f(
                "NetworkManager does not manage {name}, so it cannot make it the port of a bridge.",
                &[("name", &port.interface)],
            )));
        }
        let connections = self.connections()?;
        if let Some(other) = connections
            .iter()
            .find(|c| c.interface_name.as_deref() == Some(plan.bridge.as_str()))
        {
            return Err(NmError::Refused(gettext_f(
                "The name {bridge} is already used by the NetworkManager connection “{connection}”: choose another name for the new bridge, or delete that connection first.",
                &[("bridge", &plan.bridge), ("connection", &other.id)],
            )));
        }
        if let Some(other) = devices.iter().find(|d| d.interface == plan.bridge) {
            return Err(NmError::Refused(gettext_f(
                "The name {bridge} is already used by the interface {bridge} on this host: choose another name for the new bridge, or attach the VM to {bridge} if it is a bridge already.",
                &[("bridge", &other.interface)],
            )));
        }
        // The port connection must win over the port's earlier ones after a reboot.
        let current = zbus::block_on(self.current_settings(port))?;
        let old_priority = connections
            .iter()
            .filter(|c| c.interface_name.as_deref() == Some(plan.port.as_str()))
            .map(|c| c.autoconnect_priority)
            .chain(
                current
                    .as_ref()
                    .and_then(|s| setting(s, "connection", "autoconnect-priority"))
                    .and_then(i32_of),
            )
            .max()
            .unwrap_or(0);
        let priority = old_priority.saturating_add(1).min(MAX_AUTOCONNECT_PRIORITY);

        // 2. The checkpoint.
        let checkpoint = zbus::block_on(async {
            let path = self
                .manager()
                .await?
                .checkpoint_create(&[], rollback_timeout_secs, APPLY_CHECKPOINT_FLAGS)
                .await?;
            Ok::<_, NmError>(path.as_str().to_owned())
        })?;
        // 3. and 4. Everything after it is undone at once when it fails.
        let bridge_uuid = new_uuid();
        let port_uuid = new_uuid();
        let result = self.add_and_activate(plan, port, &bridge_uuid, &port_uuid, priority);
        match result {
            Ok(()) => Ok(Applied {
                checkpoint,
                bridge_uuid,
                port_uuid,
                rollback_timeout_secs,
            }),
            Err(e) => {
                let _ = self.rollback(&checkpoint);
                Err(e)
            }
        }
    }

    fn add_and_activate(
        &self,
        plan: &BridgePlan,
        port: &NmDevice,
        bridge_uuid: &str,
        port_uuid: &str,
        priority: i32,
    ) -> Result<(), NmError> {
        let bridge_settings = bridge_settings(plan, bridge_uuid, port.mac.as_deref())?;
        let port_settings = port_settings(plan, port, port_uuid, bridge_uuid, priority);
        let (bridge_active, port_active) = zbus::block_on(async {
            let settings = self.settings().await?;
            let bridge_conn = settings.add_connection(bridge_settings).await?;
            let port_conn = settings.add_connection(port_settings).await?;
            let manager = self.manager().await?;
            let none = ObjectPath::from_static_str("/")?;
            let bridge_active = manager
                .activate_connection(&bridge_conn, &none, &none)
                .await?;
            let port_device = object_path(&port.path)?;
            let port_active = manager
                .activate_connection(&port_conn, &port_device, &none)
                .await?;
            Ok::<_, NmError>((bridge_active, port_active))
        })?;
        self.wait_activated(&[
            (bridge_active, plan.bridge.as_str()),
            (port_active, plan.port.as_str()),
        ])
    }

    /// Deletes the connections Passthrough made for `bridge` (the bridge and its ports) and
    /// activates each port's earlier connection again, under a checkpoint that rolls back by
    /// itself after `rollback_timeout_secs` (0: never) unless [`confirm`](Self::confirm)ed.
    /// Checkpoint flags: [`REMOVE_CHECKPOINT_FLAGS`].
    pub fn remove_bridge(
        &self,
        bridge: &str,
        rollback_timeout_secs: u32,
    ) -> Result<Removed, NmError> {
        super::validate_interface_name(bridge).map_err(NmError::Refused)?;
        self.ensure_running()?;
        let connections = self.connections()?;
        let bridges: Vec<&NmConnection> = connections
            .iter()
            .filter(|c| {
                c.kind == "bridge"
                    && c.interface_name.as_deref() == Some(bridge)
                    && c.passthrough_role.as_deref() == Some("bridge")
            })
            .collect();
        if bridges.is_empty() {
            return Err(NmError::Refused(gettext_f(
                "Passthrough did not make a bridge named {bridge}, so it does not remove it: remove it where it was made (for example in Settings, Network).",
                &[("bridge", bridge)],
            )));
        }
        let ports: Vec<&NmConnection> = connections
            .iter()
            .filter(|c| {
                c.passthrough_role.as_deref() == Some("port")
                    && c.slave_type.as_deref() == Some("bridge")
                    && bridges.iter().any(|b| {
                        c.master.as_deref() == Some(b.uuid.as_str())
                            || c.master.as_deref() == Some(bridge)
                    })
            })
            .collect();
        let port_names: Vec<String> = ports
            .iter()
            .filter_map(|p| p.interface_name.clone())
            .collect();
        let deleted: Vec<String> = bridges
            .iter()
            .chain(ports.iter())
            .map(|c| c.uuid.clone())
            .collect();
        let delete_paths: Vec<String> = ports
            .iter()
            .chain(bridges.iter())
            .map(|c| c.path.clone())
            .collect();

        let checkpoint = zbus::block_on(async {
            let path = self
                .manager()
                .await?
                .checkpoint_create(&[], rollback_timeout_secs, REMOVE_CHECKPOINT_FLAGS)
                .await?;
            Ok::<_, NmError>(path.as_str().to_owned())
        })?;
        match self.delete_and_restore(&delete_paths, &port_names) {
            Ok(restored) => Ok(Removed {
                checkpoint,
                deleted,
                restored,
                rollback_timeout_secs,
            }),
            Err(e) => {
                let _ = self.rollback(&checkpoint);
                Err(e)
            }
        }
    }

    fn delete_and_restore(
        &self,
        delete_paths: &[String],
        port_names: &[String],
    ) -> Result<Vec<String>, NmError> {
        zbus::block_on(async {
            for path in delete_paths {
                self.connection_object(path).await?.delete().await?;
            }
            Ok::<_, NmError>(())
        })?;
        let connections = self.connections()?;
        let devices = self.devices()?;
        let mut restored = Vec::new();
        let mut waits = Vec::new();
        for name in port_names {
            let Some(device) = devices.iter().find(|d| &d.interface == name) else {
                continue;
            };
            let available = zbus::block_on(async {
                let proxy = self.device_object(&device.path).await?;
                Ok::<_, NmError>(proxy.available_connections().await.unwrap_or_default())
            })?;
            let earlier = connections
                .iter()
                .filter(|c| c.is_standalone_wired() && c.passthrough_role.is_none())
                .filter(|c| {
                    c.interface_name.as_deref() == Some(name.as_str())
                        || available.iter().any(|a| a.as_str() == c.path)
                })
                .max_by_key(|c| (c.autoconnect_priority, c.timestamp));
            let Some(earlier) = earlier else {
                continue;
            };
            let active = zbus::block_on(async {
                let none = ObjectPath::from_static_str("/")?;
                let conn = object_path(&earlier.path)?;
                let dev = object_path(&device.path)?;
                Ok::<_, NmError>(
                    self.manager()
                        .await?
                        .activate_connection(&conn, &dev, &none)
                        .await?,
                )
            })?;
            restored.push(earlier.uuid.clone());
            waits.push((active, name.as_str()));
        }
        self.wait_activated(&waits)?;
        Ok(restored)
    }

    /// Waits until every active connection is activated, within the activation limit.
    fn wait_activated(&self, actives: &[(OwnedObjectPath, &str)]) -> Result<(), NmError> {
        let start = Instant::now();
        loop {
            let mut pending = None;
            for (path, name) in actives {
                let state = zbus::block_on(async {
                    let proxy = NmActiveObjectProxy::builder(&self.conn)
                        .path(path.clone())
                        .cache_properties(CacheProperties::No)
                        .build()
                        .await?;
                    proxy.state().await
                });
                match state {
                    Ok(AC_ACTIVATED) => {}
                    // Deactivated, or the object is gone: activation failed.
                    Ok(AC_DEACTIVATED) | Err(_) => {
                        return Err(NmError::ActivationFailed(gettext_f(
                            "NetworkManager could not bring up {name}, so the change was undone.",
                            &[("name", name)],
                        )))
                    }
                    Ok(_) => pending = Some(*name),
                }
            }
            let Some(name) = pending else {
                return Ok(());
            };
            if start.elapsed() >= self.activation_limit {
                let secs = self.activation_limit.as_secs().to_string();
                return Err(NmError::Timeout(gettext_f(
                    "{name} did not come up within {seconds} seconds (no DHCP answer?), so the change was undone.",
                    &[("name", name), ("seconds", &secs)],
                )));
            }
            std::thread::sleep(POLL);
        }
    }

    async fn manager(&self) -> zbus::Result<NetworkManagerProxy<'static>> {
        NetworkManagerProxy::builder(&self.conn)
            .cache_properties(CacheProperties::No)
            .build()
            .await
    }

    async fn settings(&self) -> zbus::Result<NmSettingsProxy<'static>> {
        NmSettingsProxy::builder(&self.conn)
            .cache_properties(CacheProperties::No)
            .build()
            .await
    }

    async fn device_object(&self, path: &str) -> zbus::Result<NmDeviceObjectProxy<'static>> {
        NmDeviceObjectProxy::builder(&self.conn)
            .path(path.to_owned())
            .cache_properties(CacheProperties::No)
            .build()
            .await
    }

    async fn connection_object(
        &self,
        path: &str,
    ) -> zbus::Result<NmConnectionObjectProxy<'static>> {
        NmConnectionObjectProxy::builder(&self.conn)
            .path(path.to_owned())
            .cache_properties(CacheProperties::No)
            .build()
            .await
    }

    async fn read_connections(&self) -> Result<Vec<NmConnection>, NmError> {
        let paths = self.settings().await?.list_connections().await?;
        let mut out = Vec::new();
        for path in paths {
            let Ok(proxy) = self.connection_object(path.as_str()).await else {
                continue;
            };
            // A connection deleted meanwhile is simply not listed.
            if let Ok(settings) = proxy.get_settings().await {
                out.push(NmConnection::from_settings(
                    path.as_str().to_owned(),
                    &settings,
                ));
            }
        }
        Ok(out)
    }

    async fn read_device(&self, path: &OwnedObjectPath) -> Result<Option<NmDevice>, NmError> {
        let proxy = self.device_object(path.as_str()).await?;
        if !proxy.real().await.unwrap_or(true) {
            return Ok(None);
        }
        let device_type = proxy.device_type().await?;
        let state_code = proxy.state().await?;
        let mut device = NmDevice {
            path: path.as_str().to_owned(),
            interface: proxy.interface().await?,
            kind: NmDeviceKind::from_device_type(device_type),
            device_type,
            state: NmDeviceState::from_code(state_code),
            state_code,
            managed: proxy.managed().await?,
            mac: proxy.hw_address().await.ok().filter(|m| !m.is_empty()),
            connection_id: None,
            connection_uuid: None,
            ipv4_addresses: Vec::new(),
            ipv4_gateway: None,
            ipv6_addresses: Vec::new(),
            ipv6_gateway: None,
            dns: Vec::new(),
            ports: Vec::new(),
            master: None,
        };
        if let Some(active) = real_path(proxy.active_connection().await.ok()) {
            if let Ok(ac) = NmActiveObjectProxy::builder(&self.conn)
                .path(active)
                .cache_properties(CacheProperties::No)
                .build()
                .await
            {
                device.connection_id = ac.id().await.ok();
                device.connection_uuid = ac.uuid().await.ok();
            }
        }
        if let Some(ip4) = real_path(proxy.ip4_config().await.ok()) {
            let ip4 = NmIp4ObjectProxy::builder(&self.conn)
                .path(ip4)
                .cache_properties(CacheProperties::No)
                .build()
                .await?;
            device.ipv4_addresses = cidrs(&ip4.address_data().await.unwrap_or_default());
            device.ipv4_gateway = ip4.gateway().await.ok().filter(|g| !g.is_empty());
            device.dns.extend(
                ip4.nameservers()
                    .await
                    .unwrap_or_default()
                    .into_iter()
                    .map(|n| ipv4_from_nm(n).to_string()),
            );
        }
        if let Some(ip6) = real_path(proxy.ip6_config().await.ok()) {
            let ip6 = NmIp6ObjectProxy::builder(&self.conn)
                .path(ip6)
                .cache_properties(CacheProperties::No)
                .build()
                .await?;
            device.ipv6_addresses = cidrs(&ip6.address_data().await.unwrap_or_default())
                .into_iter()
                .filter(|a| !is_link_local_v6(a))
                .collect();
            device.ipv6_gateway = ip6.gateway().await.ok().filter(|g| !g.is_empty());
            device.dns.extend(
                ip6.nameservers()
                    .await
                    .unwrap_or_default()
                    .iter()
                    .filter_map(|b| ipv6_from_bytes(b))
                    .map(|a| a.to_string()),
            );
        }
        Ok(Some(device))
    }

    /// The ports of a bridge (or bond, team) device, as object paths.
    async fn port_paths(&self, path: &OwnedObjectPath) -> Vec<OwnedObjectPath> {
        if let Ok(proxy) = self.device_object(path.as_str()).await {
            if let Ok(ports) = proxy.ports().await {
                return ports;
            }
        }
        match NmBridgeObjectProxy::builder(&self.conn)
            .path(path.clone())
            .cache_properties(CacheProperties::No)
            .build()
            .await
        {
            Ok(bridge) => bridge.slaves().await.unwrap_or_default(),
            Err(_) => Vec::new(),
        }
    }

    /// The settings `device` runs with: its applied connection, else its active connection's
    /// profile; `None` when it has no connection.
    async fn current_settings(&self, device: &NmDevice) -> Result<Option<Settings>, NmError> {
        let proxy = self.device_object(&device.path).await?;
        if let Ok((settings, _version)) = proxy.get_applied_connection(0).await {
            return Ok(Some(settings));
        }
        let Some(active) = real_path(proxy.active_connection().await.ok()) else {
            return Ok(None);
        };
        let ac = NmActiveObjectProxy::builder(&self.conn)
            .path(active)
            .cache_properties(CacheProperties::No)
            .build()
            .await?;
        let Some(conn) = real_path(ac.connection().await.ok()) else {
            return Ok(None);
        };
        Ok(Some(
            self.connection_object(conn.as_str())
                .await?
                .get_settings()
                .await?,
        ))
    }
}

/// What NetworkManager would reject in a plan that is otherwise valid (checked by
/// [`netplan_yaml`]): IPv6 DNS servers on a bridge without IPv6 (`ipv6.dns` is not allowed
/// with `method=disabled`).
pub fn check_for_nm(plan: &BridgePlan) -> Result<(), String> {
    if plan.ipv6 == Ipv6::Off {
        if let Some(server) = plan
            .dns
            .iter()
            .find(|d| d.trim().parse::<Ipv6Addr>().is_ok())
        {
            return Err(gettext_f(
                "The DNS server {address} is an IPv6 address, but IPv6 is off on the bridge: turn IPv6 on or remove that server.",
                &[("address", server)],
            ));
        }
    }
    Ok(())
}

fn no_such_interface(name: &str) -> NmError {
    NmError::Refused(gettext_f(
        "NetworkManager knows no interface named {name}.",
        &[("name", name)],
    ))
}

/// `None` for NetworkManager's "no object" path `/`.
fn real_path(path: Option<OwnedObjectPath>) -> Option<OwnedObjectPath> {
    path.filter(|p| p.as_str() != "/")
}

fn object_path(path: &str) -> Result<ObjectPath<'static>, NmError> {
    ObjectPath::try_from(path.to_owned()).map_err(NmError::from)
}

/// `CLOCK_BOOTTIME` in milliseconds (the clock of a checkpoint's `Created`), from
/// `/proc/uptime`, which the kernel reads from that clock.
fn boottime_ms() -> Option<i64> {
    let text = std::fs::read_to_string("/proc/uptime").ok()?;
    let secs: f64 = text.split_whitespace().next()?.parse().ok()?;
    Some((secs * 1000.0) as i64)
}

/// A random (version 4) UUID for a new connection.
fn new_uuid() -> String {
    if let Ok(text) = std::fs::read_to_string("/proc/sys/kernel/random/uuid") {
        let text = text.trim();
        if text.len() == 36 {
            return text.to_owned();
        }
    }
    use std::hash::{BuildHasher, Hasher};
    let state = std::collections::hash_map::RandomState::new();
    let mut bytes = [0u8; 16];
    for (i, chunk) in bytes.chunks_mut(8).enumerate() {
        let mut h = state.build_hasher();
        h.write_usize(i);
        h.write_u128(
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos())
                .unwrap_or_default(),
        );
        chunk.copy_from_slice(&h.finish().to_ne_bytes());
    }
    bytes[6] = (bytes[6] & 0x0f) | 0x40;
    bytes[8] = (bytes[8] & 0x3f) | 0x80;
    let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    format!(
        "{}-{}-{}-{}-{}",
        &hex[0..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..32]
    )
}

// ---- Reading NetworkManager's variants ----

fn inner<'a>(v: &'a Variant<'a>) -> &'a Variant<'a> {
    match v {
        Variant::Variant(boxed) => inner(boxed),
        other => other,
    }
}

fn str_of<'a>(v: &'a Variant<'a>) -> Option<&'a str> {
    match inner(v) {
        Variant::Str(s) => Some(s),
        Variant::ObjectPath(p) => Some(p.as_str()),
        _ => None,
    }
}

fn u32_of(v: &Variant<'_>) -> Option<u32> {
    match inner(v) {
        Variant::U32(n) => Some(*n),
        Variant::U8(n) => Some(u32::from(*n)),
        Variant::U16(n) => Some(u32::from(*n)),
        _ => None,
    }
}

fn i32_of(v: &Variant<'_>) -> Option<i32> {
    match inner(v) {
        Variant::I32(n) => Some(*n),
        Variant::U32(n) => i32::try_from(*n).ok(),
        _ => None,
    }
}

fn u64_of(v: &Variant<'_>) -> Option<u64> {
    match inner(v) {
        Variant::U64(n) => Some(*n),
        Variant::U32(n) => Some(u64::from(*n)),
        _ => None,
    }
}

fn items<'a>(v: &'a Variant<'a>) -> &'a [Variant<'a>] {
    match inner(v) {
        Variant::Array(a) => a.inner(),
        _ => &[],
    }
}

fn dict_get<'a>(v: &'a Variant<'a>, key: &str) -> Option<&'a Variant<'a>> {
    match inner(v) {
        Variant::Dict(d) => d
            .iter()
            .find(|(k, _)| str_of(k) == Some(key))
            .map(|(_, v)| v),
        _ => None,
    }
}

fn setting<'a>(s: &'a Settings, section: &str, key: &str) -> Option<&'a Variant<'static>> {
    s.get(section)?.get(key).map(|v| &**v)
}

/// `address`/`prefix` dictionaries (AddressData) as CIDR strings.
fn cidrs(list: &[HashMap<String, OwnedVariant>]) -> Vec<String> {
    list.iter()
        .filter_map(|entry| {
            let address = str_of(entry.get("address")?)?;
            let prefix = u32_of(entry.get("prefix")?)?;
            Some(format!("{address}/{prefix}"))
        })
        .collect()
}

/// The same from a settings value (`address-data`, `aa{sv}`).
fn cidrs_of_setting(v: &Variant<'_>) -> Vec<String> {
    items(v)
        .iter()
        .filter_map(|entry| {
            let address = str_of(dict_get(entry, "address")?)?;
            let prefix = u32_of(dict_get(entry, "prefix")?)?;
            Some(format!("{address}/{prefix}"))
        })
        .collect()
}

/// NetworkManager's IPv4 `u32`: the address bytes in network order, in host memory.
fn ipv4_from_nm(n: u32) -> Ipv4Addr {
    Ipv4Addr::from(n.to_ne_bytes())
}

fn ipv4_to_nm(a: Ipv4Addr) -> u32 {
    u32::from_ne_bytes(a.octets())
}

fn ipv6_from_bytes(b: &[u8]) -> Option<Ipv6Addr> {
    <[u8; 16]>::try_from(b).ok().map(Ipv6Addr::from)
}

fn bytes_of(v: &Variant<'_>) -> Vec<u8> {
    items(v)
        .iter()
        .filter_map(|b| match b {
            Variant::U8(b) => Some(*b),
            _ => None,
        })
        .collect()
}

fn is_link_local_v6(cidr: &str) -> bool {
    cidr.split('/')
        .next()
        .and_then(|a| a.parse::<Ipv6Addr>().ok())
        .is_some_and(|a| a.segments()[0] & 0xffc0 == 0xfe80)
}

fn gateway_of(s: &Settings, section: &str) -> Option<String> {
    setting(s, section, "gateway")
        .and_then(str_of)
        .filter(|g| !g.is_empty())
        .map(str::to_owned)
}

fn ipv4_of(s: &Settings, connection: &str) -> Result<Ipv4, NmError> {
    let method = setting(s, "ipv4", "method")
        .and_then(str_of)
        .unwrap_or("auto");
    match method {
        "auto" => Ok(Ipv4::Dhcp),
        "manual" => Ok(Ipv4::Static {
            addresses: setting(s, "ipv4", "address-data")
                .map(cidrs_of_setting)
                .unwrap_or_default(),
            gateway: gateway_of(s, "ipv4"),
        }),
        other => Err(NmError::Refused(gettext_f(
            "The connection “{connection}” uses the IPv4 method “{method}”, which Passthrough cannot move to a bridge: only automatic (DHCP) and manual addresses can be moved.",
            &[("connection", connection), ("method", other)],
        ))),
    }
}

fn ipv6_of(s: &Settings) -> Ipv6 {
    match setting(s, "ipv6", "method")
        .and_then(str_of)
        .unwrap_or("auto")
    {
        "auto" => Ipv6::Ra,
        "dhcp" => Ipv6::Dhcp,
        "manual" => Ipv6::Static {
            addresses: setting(s, "ipv6", "address-data")
                .map(cidrs_of_setting)
                .unwrap_or_default(),
            gateway: gateway_of(s, "ipv6"),
        },
        // ignore, disabled, link-local, shared: no global address to move.
        _ => Ipv6::Off,
    }
}

/// The DNS servers of a connection: `dns-data` (strings) where NetworkManager has it, else
/// `ipv4.dns` (`au`, network order) and `ipv6.dns` (`aay`).
fn dns_of(s: &Settings) -> Vec<String> {
    let mut out = Vec::new();
    for section in ["ipv4", "ipv6"] {
        let data: Vec<String> = setting(s, section, "dns-data")
            .map(|v| {
                items(v)
                    .iter()
                    .filter_map(str_of)
                    // dns-data may carry "#name" or "%iface" suffixes: keep the address.
                    .filter_map(|t| t.split(['#', '%']).next())
                    .filter_map(|t| t.parse::<IpAddr>().ok())
                    .map(|a| a.to_string())
                    .collect()
            })
            .unwrap_or_default();
        if !data.is_empty() {
            out.extend(data);
            continue;
        }
        let Some(dns) = setting(s, section, "dns") else {
            continue;
        };
        for item in items(dns) {
            let addr = if section == "ipv4" {
                u32_of(item).map(|n| IpAddr::V4(ipv4_from_nm(n)))
            } else {
                ipv6_from_bytes(&bytes_of(item)).map(IpAddr::V6)
            };
            out.extend(addr.map(|a| a.to_string()));
        }
    }
    out
}

// ---- Writing connections ----

type Section = HashMap<&'static str, Variant<'static>>;

fn address_data(list: &[String]) -> Variant<'static> {
    let entries: Vec<HashMap<&'static str, Variant<'static>>> = list
        .iter()
        .filter_map(|cidr| {
            let (address, prefix) = cidr.split_once('/')?;
            let prefix: u32 = prefix.parse().ok()?;
            let mut entry: HashMap<&'static str, Variant<'static>> = HashMap::new();
            entry.insert("address", Variant::from(address.to_owned()));
            entry.insert("prefix", Variant::from(prefix));
            Some(entry)
        })
        .collect();
    Variant::from(entries)
}

fn role(value: &'static str) -> Section {
    let mut data: HashMap<&'static str, &'static str> = HashMap::new();
    data.insert(ROLE_KEY, value);
    let mut user = Section::new();
    user.insert("data", Variant::from(data));
    user
}

fn bridge_settings(
    plan: &BridgePlan,
    uuid: &str,
    mac: Option<&str>,
) -> Result<HashMap<&'static str, Section>, NmError> {
    let mut connection = Section::new();
    connection.insert(
        "id",
        Variant::from(gettext_f(
            "Passthrough bridge {bridge}",
            &[("bridge", &plan.bridge)],
        )),
    );
    connection.insert("uuid", Variant::from(uuid.to_owned()));
    connection.insert("type", Variant::from("bridge"));
    connection.insert("interface-name", Variant::from(plan.bridge.clone()));
    connection.insert("autoconnect", Variant::from(true));

    let mut bridge = Section::new();
    bridge.insert("stp", Variant::from(false));

    let (mut dns4, mut dns6) = (Vec::new(), Vec::new());
    for server in &plan.dns {
        match server.trim().parse::<IpAddr>() {
            Ok(IpAddr::V4(a)) => dns4.push(ipv4_to_nm(a)),
            Ok(IpAddr::V6(a)) => dns6.push(a.octets().to_vec()),
            Err(_) => {
                return Err(NmError::Refused(gettext_f(
                    "“{address}” is not a valid IP address.",
                    &[("address", server)],
                )))
            }
        }
    }

    let mut ipv4 = Section::new();
    match &plan.ipv4 {
        Ipv4::Dhcp => {
            ipv4.insert("method", Variant::from("auto"));
        }
        Ipv4::Static { addresses, gateway } => {
            ipv4.insert("method", Variant::from("manual"));
            ipv4.insert("address-data", address_data(addresses));
            if let Some(gateway) = gateway {
                ipv4.insert("gateway", Variant::from(gateway.clone()));
            }
        }
    }
    if !dns4.is_empty() {
        ipv4.insert("dns", Variant::from(dns4));
    }

    let mut ipv6 = Section::new();
    match &plan.ipv6 {
        Ipv6::Ra => {
            ipv6.insert("method", Variant::from("auto"));
        }
        Ipv6::Dhcp => {
            ipv6.insert("method", Variant::from("dhcp"));
        }
        Ipv6::Static { addresses, gateway } => {
            ipv6.insert("method", Variant::from("manual"));
            ipv6.insert("address-data", address_data(addresses));
            if let Some(gateway) = gateway {
                ipv6.insert("gateway", Variant::from(gateway.clone()));
            }
        }
        Ipv6::Off => {
            ipv6.insert("method", Variant::from("disabled"));
        }
    }
    if !dns6.is_empty() {
        ipv6.insert("dns", Variant::from(dns6));
    }

    let mut settings = HashMap::new();
    settings.insert("connection", connection);
    settings.insert("bridge", bridge);
    settings.insert("ipv4", ipv4);
    settings.insert("ipv6", ipv6);
    if let Some(mac) = mac {
        // The bridge keeps the port's MAC address, and with it the DHCP lease.
        let mut ethernet = Section::new();
        // `cloned-mac-address` as a string: `assigned-mac-address` on D-Bus (its `ay` form
        // takes bytes).
        ethernet.insert("assigned-mac-address", Variant::from(mac.to_owned()));
        settings.insert("802-3-ethernet", ethernet);
    }
    settings.insert("user", role("bridge"));
    Ok(settings)
}

fn port_settings(
    plan: &BridgePlan,
    port: &NmDevice,
    uuid: &str,
    bridge_uuid: &str,
    priority: i32,
) -> HashMap<&'static str, Section> {
    let mut connection = Section::new();
    connection.insert(
        "id",
        Variant::from(gettext_f(
            "Passthrough bridge {bridge} port {port}",
            &[("bridge", &plan.bridge), ("port", &plan.port)],
        )),
    );
    connection.insert("uuid", Variant::from(uuid.to_owned()));
    // An Ethernet profile also applies to a veth device (NetworkManager 1.42 accepts it; the
    // "veth" type would require naming the peer, which may live in another namespace).
    connection.insert("type", Variant::from("802-3-ethernet"));
    connection.insert("interface-name", Variant::from(port.interface.clone()));
    connection.insert("master", Variant::from(bridge_uuid.to_owned()));
    connection.insert("slave-type", Variant::from("bridge"));
    connection.insert("autoconnect", Variant::from(true));
    connection.insert("autoconnect-priority", Variant::from(priority));
    let mut settings = HashMap::new();
    settings.insert("connection", connection);
    settings.insert("802-3-ethernet", Section::new());
    settings.insert("user", role("port"));
    settings
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wifi_is_refused_with_the_same_reason_as_can_bridge() {
        let wifi = Interface {
            name: "wlp3s0".into(),
            kind: InterfaceKind::Wifi,
            mac: None,
            carrier: None,
            operstate: None,
            master: None,
            ports: Vec::new(),
        };
        let expected = can_bridge(&wifi).unwrap_err();
        assert_eq!(
            port_refusal("wlp3s0", DEVICE_TYPE_WIFI, None),
            Err(expected)
        );
        assert!(port_refusal("enp5s0", DEVICE_TYPE_ETHERNET, None).is_ok());
        assert!(port_refusal("veth0", DEVICE_TYPE_VETH, None).is_ok());
        assert!(port_refusal("br0", DEVICE_TYPE_BRIDGE, None)
            .unwrap_err()
            .contains("already a bridge"));
        assert!(port_refusal("enp5s0", DEVICE_TYPE_ETHERNET, Some("br0"))
            .unwrap_err()
            .contains("port of the bridge br0"));
        assert!(port_refusal("lo", 32, None)
            .unwrap_err()
            .contains("not a wired"));
    }

    #[test]
    fn ipv4_numbers_are_in_network_order() {
        // 10.77.0.53 as NetworkManager sends it (ipv4.dns "au") on this host.
        let addr: Ipv4Addr = "10.77.0.53".parse().unwrap();
        assert_eq!(ipv4_from_nm(ipv4_to_nm(addr)), addr);
        assert_eq!(
            ipv4_to_nm(addr).to_ne_bytes(),
            [10, 77, 0, 53],
            "the bytes in memory are the address in order"
        );
    }

    #[test]
    fn dbus_errors_become_sentences() {
        let e = NmError::from_dbus_error(
            "org.freedesktop.NetworkManager.Settings.PermissionDenied",
            Some("Insufficient privileges"),
        );
        assert!(matches!(e, NmError::PermissionDenied(_)), "{e:?}");
        assert!(e.message().contains("polkit"), "{e}");
        assert!(e.message().contains("Insufficient privileges"), "{e}");
        let e = NmError::from_dbus_error(
            "org.freedesktop.NetworkManager.PermissionDenied",
            Some("Not authorized to control networking."),
        );
        assert!(matches!(e, NmError::PermissionDenied(_)));
        let e = NmError::from_dbus_error("org.freedesktop.DBus.Error.ServiceUnknown", None);
        assert!(matches!(e, NmError::NotRunning(_)));
        let e = NmError::from_dbus_error(
            "org.freedesktop.NetworkManager.Settings.Connection.InvalidProperty",
            Some("bridge.stp: invalid"),
        );
        assert!(matches!(e, NmError::DBus(_)));
        assert!(e.message().ends_with("bridge.stp: invalid"), "{e}");
    }

    #[test]
    fn link_local_ipv6_is_recognized() {
        assert!(is_link_local_v6("fe80::1/64"));
        assert!(!is_link_local_v6("fd00:77::1/64"));
        assert!(!is_link_local_v6("10.0.0.1/24"));
    }

    #[test]
    fn uuids_look_like_uuids() {
        let a = new_uuid();
        assert_eq!(a.len(), 36);
        assert_eq!(a.matches('-').count(), 4);
        assert_ne!(a, new_uuid());
    }
}
