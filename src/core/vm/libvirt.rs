//! libvirt itself, through the `virt` crate: one connection ([`Libvirt`]) that lists, defines,
//! starts, stops and deletes virtual machines, lists the storage pools and networks the VM
//! wizard offers, and makes the network on a host bridge (`<forward mode="bridge"/>`) that
//! connects VMs to the LAN.
//!
//! Every call blocks (a remote `qemu+ssh://` host can take seconds), so the app runs them off
//! the GTK thread. Errors are [`VirtError`]s: a translated sentence that names what failed
//! and carries libvirt's own message.
//!
//! XML sent to libvirt is built as a tree and written by a serializer (xmltree), so a name
//! with quotes, `<`, `&` or Chinese characters stays data.

use std::sync::Once;

use serde::Serialize;
use virt::connect::Connect;
use virt::domain::Domain;
use virt::error::{Error, ErrorNumber};
use virt::network::Network;
use virt::storage_pool::StoragePool;
use virt::storage_vol::StorageVol;
use virt::sys;
use xmltree::{Element, EmitterConfig, XMLNode};

use crate::i18n::gettext_f;
use crate::libvirt::{current_user, LibvirtInfo};
use crate::network::validate_interface_name;
use crate::root::HostRoot;

/// The largest disk [`Libvirt::create_volume`] makes (64 TiB).
pub const MAX_VOLUME_GIB: u64 = 64 * 1024;

/// The longest network name [`bridge_network_xml`] takes, in characters. libvirt names a
/// network's files after it (`NAME.xml`, and its autostart link): 50 characters stay within
/// the 255-byte limit of a file name in any script (4 bytes a character at most in UTF-8).
pub const MAX_NETWORK_NAME_LEN: usize = 50;

/// A connection to one libvirt URI (`qemu:///system`, `qemu+ssh://host/system`,
/// `test:///default`, …). Closed when dropped.
pub struct Libvirt {
    conn: Connect,
    requested: String,
}

impl std::fmt::Debug for Libvirt {
    fn fmt(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.debug_struct("Libvirt").field("uri", &self.uri()).finish()
    }
}

/// A virtual machine (libvirt domain) as lists show it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DomainInfo {
    pub name: String,
    pub uuid: String,
    pub state: DomainState,
    /// Defined (kept when it stops), not only running.
    pub persistent: bool,
    /// Started with the host.
    pub autostart: bool,
}

/// What a virtual machine is doing, as far as the app cares.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum DomainState {
    /// Running (or blocked on a resource, which is running too).
    Running,
    /// Paused, or suspended by the guest itself (sleep).
    Paused,
    ShutOff,
    /// Shutting down, crashed, or no state.
    Other,
}

impl DomainState {
    /// A translated word for lists.
    pub fn label(&self) -> String {
        match self {
            Self::Running => gettext_f("Running", &[]),
            Self::Paused => gettext_f("Paused", &[]),
            Self::ShutOff => gettext_f("Shut off", &[]),
            Self::Other => gettext_f("Shutting down or crashed", &[]),
        }
    }

    fn from_virt(state: sys::virDomainState) -> Self {
        match state {
            sys::VIR_DOMAIN_RUNNING | sys::VIR_DOMAIN_BLOCKED => Self::Running,
            sys::VIR_DOMAIN_PAUSED | sys::VIR_DOMAIN_PMSUSPENDED => Self::Paused,
            sys::VIR_DOMAIN_SHUTOFF => Self::ShutOff,
            _ => Self::Other,
        }
    }
}

/// A libvirt network.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct NetworkInfo {
    pub name: String,
    pub active: bool,
    /// Its bridge device (`virbr0`; a host bridge such as `br0` for `forward` `bridge`).
    pub bridge: Option<String>,
    /// The forward mode: `nat`, `route`, `open`, `bridge`, `passthrough`, …; `None` for an
    /// isolated network.
    pub forward: Option<String>,
    /// Started with libvirt (a defined network only; a transient one never is).
    pub autostart: bool,
}

/// What went wrong, with the facts the sentence needs. `NetworkSpec` carries the sentence
/// of [`bridge_network_xml`]'s refusal.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Kind {
    Connect { uri: String, hint: Option<Hint> },
    NoDomain { uri: String, uuid: String },
    NotAUuid { text: String },
    ListDomains,
    Lookup { what: String },
    Define,
    Start { name: String },
    Shutdown { name: String },
    ForceOff { name: String },
    Undefine { name: String },
    ReadXml { name: String },
    ListPools,
    NoPool { uri: String, pool: String },
    VolumeName { name: String },
    VolumeSize { size_gib: u64 },
    CreateVolume { pool: String, name: String },
    ListNetworks,
    NetworkSpec { message: String },
    NetworkTaken(Box<Taken>),
    NoNetwork { uri: String, name: String },
    LookupNetwork { name: String },
    DefineNetwork { name: String },
    NetworkAutostart { name: String },
    StartNetwork { name: String },
    RemoveNetwork { name: String },
}

/// The network found under the name [`Libvirt::define_bridge_network`] was asked for, which
/// is not `forward` `bridge` on `bridge` (boxed in [`Kind`]: it is large).
#[derive(Debug, Clone, PartialEq, Eq)]
struct Taken {
    bridge: String,
    found: NetworkInfo,
}

/// Why `qemu:///system` could not be reached, when this machine tells.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Hint {
    /// The daemon's socket does not exist.
    NotRunning,
    /// The socket exists, but the user is not in the libvirt group (nor root).
    NotInGroup { group_exists: bool },
}

/// A failed libvirt call: a translated sentence ([`message`](Self::message)) that says what
/// failed, with libvirt's own message ([`libvirt_message`](Self::libvirt_message)).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VirtError {
    kind: Kind,
    libvirt: Option<String>,
    code: Option<ErrorNumber>,
}

impl VirtError {
    fn new(kind: Kind, error: Option<&Error>) -> Self {
        Self {
            kind,
            libvirt: error.map(|e| e.message().trim().to_owned()),
            code: error.and_then(|e| e.code().known()),
        }
    }

    fn from_virt(kind: Kind) -> impl FnOnce(Error) -> Self {
        move |e| Self::new(kind, Some(&e))
    }

    /// libvirt's own message, if libvirt reported the error (in libvirt's language).
    pub fn libvirt_message(&self) -> Option<&str> {
        self.libvirt.as_deref()
    }

    /// The virtual machine, storage pool or network does not exist.
    pub fn is_not_found(&self) -> bool {
        matches!(
            self.kind,
            Kind::NoDomain { .. } | Kind::NoPool { .. } | Kind::NoNetwork { .. }
        )
    }

    /// [`Libvirt::define_bridge_network`] found a network of that name that is something
    /// else, and left it as it was.
    pub fn is_name_taken(&self) -> bool {
        matches!(self.kind, Kind::NetworkTaken(_))
    }

    /// The connection could not be opened.
    pub fn is_connect(&self) -> bool {
        matches!(self.kind, Kind::Connect { .. })
    }

    /// A translated sentence for people.
    pub fn message(&self) -> String {
        let error = self.libvirt.as_deref().unwrap_or_default();
        match &self.kind {
            Kind::Connect { uri, hint } => {
                let mut text = gettext_f(
                    "Cannot connect to libvirt at {uri}: {error}",
                    &[("uri", uri), ("error", error)],
                );
                let hint = match hint {
                    Some(Hint::NotRunning) => Some(gettext_f(
                        "The libvirt daemon is not running: start it with “sudo systemctl enable --now libvirtd.socket” (or virtqemud.socket where libvirt uses modular daemons).",
                        &[],
                    )),
                    Some(Hint::NotInGroup { group_exists: true }) => Some(gettext_f(
                        "Your user is not in the “libvirt” group: add it with “sudo usermod -aG libvirt $USER”, then log out and back in.",
                        &[],
                    )),
                    Some(Hint::NotInGroup {
                        group_exists: false,
                    }) => Some(gettext_f(
                        "This system has no “libvirt” group: is the libvirt daemon package installed?",
                        &[],
                    )),
                    None => None,
                };
                if let Some(hint) = hint {
                    text.push('\n');
                    text.push_str(&hint);
                }
                text
            }
            Kind::NoDomain { uri, uuid } => gettext_f(
                "There is no virtual machine with the UUID {uuid} at {uri}.",
                &[("uuid", uuid), ("uri", uri)],
            ),
            Kind::NotAUuid { text } => gettext_f(
                "“{text}” is not the UUID of a virtual machine.",
                &[("text", text)],
            ),
            Kind::ListDomains => gettext_f(
                "Cannot list the virtual machines: {error}",
                &[("error", error)],
            ),
            Kind::Lookup { what } => gettext_f(
                "Cannot look up the virtual machine {name}: {error}",
                &[("name", what), ("error", error)],
            ),
            Kind::Define => gettext_f(
                "Cannot create the virtual machine: {error}",
                &[("error", error)],
            ),
            Kind::Start { name } => gettext_f(
                "Cannot start the virtual machine {name}: {error}",
                &[("name", name), ("error", error)],
            ),
            Kind::Shutdown { name } => gettext_f(
                "Cannot shut down the virtual machine {name}: {error}",
                &[("name", name), ("error", error)],
            ),
            Kind::ForceOff { name } => gettext_f(
                "Cannot force off the virtual machine {name}: {error}",
                &[("name", name), ("error", error)],
            ),
            Kind::Undefine { name } => gettext_f(
                "Cannot delete the virtual machine {name}: {error}",
                &[("name", name), ("error", error)],
            ),
            Kind::ReadXml { name } => gettext_f(
                "Cannot read the settings of the virtual machine {name}: {error}",
                &[("name", name), ("error", error)],
            ),
            Kind::ListPools => gettext_f(
                "Cannot list the storage pools: {error}",
                &[("error", error)],
            ),
            Kind::NoPool { uri, pool } => gettext_f(
                "There is no storage pool named “{pool}” at {uri}.",
                &[("pool", pool), ("uri", uri)],
            ),
            Kind::VolumeName { name } => gettext_f(
                "“{name}” cannot be the name of a disk: it must have 1 to 255 bytes, no “/” and no control characters, and must not start with a dot.",
                &[("name", name)],
            ),
            Kind::VolumeSize { size_gib } => gettext_f(
                "A disk of {size} GiB cannot be made: the size must be between 1 and {max} GiB.",
                &[
                    ("size", &size_gib.to_string()),
                    ("max", &MAX_VOLUME_GIB.to_string()),
                ],
            ),
            Kind::CreateVolume { pool, name } => gettext_f(
                "Cannot create the disk {name} in the storage pool {pool}: {error}",
                &[("name", name), ("pool", pool), ("error", error)],
            ),
            Kind::ListNetworks => gettext_f(
                "Cannot list the networks: {error}",
                &[("error", error)],
            ),
            Kind::NetworkSpec { message } => message.clone(),
            Kind::NetworkTaken(taken) => {
                let Taken { bridge, found } = taken.as_ref();
                match (&found.forward, &found.bridge) {
                    (Some(mode), Some(other)) if mode == "bridge" => gettext_f(
                        "There is already a libvirt network named “{name}”, on the host bridge {other} instead of {bridge}. Choose another name, or delete that network first.",
                        &[("name", &found.name), ("other", other), ("bridge", bridge)],
                    ),
                    (None, _) => gettext_f(
                        "There is already a libvirt network named “{name}”: an isolated network, not one on the host bridge {bridge}. Choose another name, or delete that network first.",
                        &[("name", &found.name), ("bridge", bridge)],
                    ),
                    (Some(mode), _) => gettext_f(
                        "There is already a libvirt network named “{name}” with the forward mode “{mode}”, not one on the host bridge {bridge}. Choose another name, or delete that network first.",
                        &[("name", &found.name), ("mode", mode), ("bridge", bridge)],
                    ),
                }
            }
            Kind::NoNetwork { uri, name } => gettext_f(
                "There is no network named “{name}” at {uri}.",
                &[("name", name), ("uri", uri)],
            ),
            Kind::LookupNetwork { name } => gettext_f(
                "Cannot look up the network {name}: {error}",
                &[("name", name), ("error", error)],
            ),
            Kind::DefineNetwork { name } => gettext_f(
                "Cannot create the network {name}: {error}",
                &[("name", name), ("error", error)],
            ),
            Kind::NetworkAutostart { name } => gettext_f(
                "Cannot make the network {name} start with the host: {error}",
                &[("name", name), ("error", error)],
            ),
            Kind::StartNetwork { name } => gettext_f(
                "Cannot start the network {name}: {error}",
                &[("name", name), ("error", error)],
            ),
            Kind::RemoveNetwork { name } => gettext_f(
                "Cannot delete the network {name}: {error}",
                &[("name", name), ("error", error)],
            ),
        }
    }
}

impl std::fmt::Display for VirtError {
    fn fmt(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str(&self.message())
    }
}

impl std::error::Error for VirtError {}

/// libvirt prints every error to stderr unless told otherwise; ours are returned instead.
fn quiet_libvirt() {
    static ONCE: Once = Once::new();
    ONCE.call_once(virt::error::clear_error_callback);
}

fn is_code(e: &Error, code: ErrorNumber) -> bool {
    e.code().is(code)
}

/// A local system URI (`qemu:///system` and its spellings), whose daemon socket and group
/// this machine can check.
fn is_local_system_uri(uri: &str) -> bool {
    let uri = uri.trim();
    uri.is_empty()
        || uri.split_once("://").is_some_and(|(scheme, rest)| {
            let local = matches!(scheme, "qemu" | "qemu+unix");
            local && (rest == "/system" || rest.starts_with("/system?"))
        })
}

/// Why a local `qemu:///system` could not be reached: no daemon socket, or a user outside the
/// libvirt group. `None` when neither applies or the URI is not local.
fn connect_hint(uri: &str, error: &Error) -> Option<Hint> {
    if !is_local_system_uri(uri) {
        return None;
    }
    let root = HostRoot::default();
    let user = current_user(&root);
    let info = LibvirtInfo::detect(&root, user.as_deref());
    if !info.running {
        return Some(Hint::NotRunning);
    }
    let refused = [
        ErrorNumber::AuthFailed,
        ErrorNumber::AuthCancelled,
        ErrorNumber::AuthUnavailable,
        ErrorNumber::AccessDenied,
        ErrorNumber::SystemError,
    ]
    .into_iter()
    .any(|code| is_code(error, code));
    let is_root = user.as_deref() == Some("root");
    (refused && !is_root && info.user_group.is_none()).then_some(Hint::NotInGroup {
        group_exists: info.group_exists,
    })
}

/// True for a UUID in libvirt's text form: 32 hex digits, optionally with hyphens as
/// `8-4-4-4-12`.
fn is_uuid(text: &str) -> bool {
    let hex = |s: &str| s.bytes().all(|b| b.is_ascii_hexdigit());
    match text.len() {
        32 => hex(text),
        36 => {
            let parts: Vec<&str> = text.split('-').collect();
            parts.iter().map(|p| p.len()).eq([8, 4, 4, 4, 12]) && parts.iter().all(|p| hex(p))
        }
        _ => false,
    }
}

/// A volume name libvirt can make a file of in a directory pool.
fn valid_volume_name(name: &str) -> bool {
    (1..=255).contains(&name.len())
        && !name.starts_with('.')
        && !name.contains('/')
        && !name.chars().any(char::is_control)
}

/// `<volume><name>…</name><capacity unit='GiB'>…</capacity><target><format type='qcow2'/>
/// </target></volume>`, written by xmltree.
fn volume_xml(name: &str, size_gib: u64) -> String {
    let mut volume = Element::new("volume");
    volume
        .children
        .push(XMLNode::Element(text_element("name", name)));
    let mut capacity = text_element("capacity", &size_gib.to_string());
    capacity.attributes.insert("unit".into(), "GiB".into());
    volume.children.push(XMLNode::Element(capacity));
    let mut format = Element::new("format");
    format.attributes.insert("type".into(), "qcow2".into());
    let mut target = Element::new("target");
    target.children.push(XMLNode::Element(format));
    volume.children.push(XMLNode::Element(target));
    write_xml(&volume)
}

fn text_element(name: &str, text: &str) -> Element {
    let mut e = Element::new(name);
    e.children.push(XMLNode::Text(text.to_owned()));
    e
}

fn write_xml(element: &Element) -> String {
    let mut out = Vec::new();
    let config = EmitterConfig::new()
        .write_document_declaration(false)
        .perform_indent(true);
    element
        .write_with_config(&mut out, config)
        .expect("writing XML to memory cannot fail");
    String::from_utf8(out).expect("xmltree writes UTF-8")
}

/// The bridge and forward mode of a network's XML (`None`s when it cannot be read).
fn network_facts(xml: &str) -> (Option<String>, Option<String>) {
    let Ok(network) = Element::parse(xml.as_bytes()) else {
        return (None, None);
    };
    let bridge = network
        .get_child("bridge")
        .and_then(|b| b.attributes.get("name"))
        .filter(|n| !n.is_empty())
        .cloned();
    // A <forward> without a mode is NAT (libvirt's default).
    let forward = network.get_child("forward").map(|f| {
        f.attributes
            .get("mode")
            .cloned()
            .unwrap_or_else(|| "nat".to_owned())
    });
    (bridge, forward)
}

/// Checks the name of a libvirt network: libvirt takes any text but `/` (its files are named
/// after it), so quotes, `&`, spaces inside and Chinese characters are fine.
pub fn check_network_name(name: &str) -> Result<(), String> {
    if name.trim().is_empty() {
        return Err(gettext_f("The network needs a name.", &[]));
    }
    if name.trim() != name {
        return Err(gettext_f(
            "The network name cannot begin or end with a space.",
            &[],
        ));
    }
    if name.contains('/') {
        return Err(gettext_f(
            "The network name cannot contain “/”: libvirt names the network's files after it.",
            &[],
        ));
    }
    if name.chars().any(char::is_control) {
        return Err(gettext_f(
            "The network name cannot contain line breaks or other control characters.",
            &[],
        ));
    }
    if name.chars().count() > MAX_NETWORK_NAME_LEN {
        return Err(gettext_f(
            "The network name is too long: at most {max} characters.",
            &[("max", &MAX_NETWORK_NAME_LEN.to_string())],
        ));
    }
    Ok(())
}

/// Checks the host bridge of a libvirt network: an interface name
/// ([`validate_interface_name`]) made only of the characters libvirt's schema takes for a
/// device (`deviceName` in `basictypes.rng`), less `\`, `:` and `/`.
fn check_network_bridge(bridge: &str) -> Result<(), String> {
    validate_interface_name(bridge)?;
    if !bridge
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_'))
    {
        return Err(gettext_f(
            "“{name}” cannot be the bridge of a libvirt network: libvirt takes only the letters A to Z, digits, “.”, “-” and “_” in a device name.",
            &[("name", bridge)],
        ));
    }
    Ok(())
}

/// The tree of [`bridge_network_xml`], with a `<uuid>` when one is given.
fn bridge_network_element(name: &str, bridge: &str, uuid: Option<&str>) -> Element {
    let mut network = Element::new("network");
    network
        .children
        .push(XMLNode::Element(text_element("name", name)));
    if let Some(uuid) = uuid {
        network
            .children
            .push(XMLNode::Element(text_element("uuid", uuid)));
    }
    let mut forward = Element::new("forward");
    forward.attributes.insert("mode".into(), "bridge".into());
    network.children.push(XMLNode::Element(forward));
    let mut bridge_element = Element::new("bridge");
    bridge_element
        .attributes
        .insert("name".into(), bridge.to_owned());
    network.children.push(XMLNode::Element(bridge_element));
    network
}

/// The XML of a libvirt network named `name` that connects VMs to the existing host bridge
/// `bridge` (as the reference post does for `br0`):
/// `<network><name>…</name><forward mode="bridge"/><bridge name="…"/></network>`, written by
/// xmltree. Either is refused with a translated sentence when libvirt cannot take it.
pub fn bridge_network_xml(name: &str, bridge: &str) -> Result<String, String> {
    check_network_name(name)?;
    check_network_bridge(bridge)?;
    Ok(write_xml(&bridge_network_element(name, bridge, None)))
}

/// What the network lists show of one network.
fn network_info(network: &Network) -> Result<NetworkInfo, Error> {
    let xml = network.xml_desc(0)?;
    let (bridge, forward) = network_facts(&xml);
    let persistent = network.is_persistent()?;
    Ok(NetworkInfo {
        name: network.name()?,
        active: network.is_active()?,
        bridge,
        forward,
        // A transient network has no autostart (some drivers say so with an error).
        autostart: persistent && network.autostart().unwrap_or(false),
    })
}

impl Libvirt {
    /// Opens a connection to `uri` (an empty string: libvirt's default URI). The default of
    /// the app, `qemu:///system`, is the caller's to pass.
    pub fn open(uri: &str) -> Result<Libvirt, VirtError> {
        quiet_libvirt();
        let requested = uri.trim().to_owned();
        let target = (!requested.is_empty()).then_some(requested.as_str());
        match Connect::open(target) {
            Ok(conn) => Ok(Libvirt { conn, requested }),
            Err(e) => {
                let hint = connect_hint(&requested, &e);
                let shown = if requested.is_empty() {
                    gettext_f("the default URI", &[])
                } else {
                    requested.clone()
                };
                Err(VirtError::new(Kind::Connect { uri: shown, hint }, Some(&e)))
            }
        }
    }

    /// The URI of the connection as libvirt names it (`qemu:///system`), else as it was
    /// asked for.
    pub fn uri(&self) -> String {
        self.conn
            .uri()
            .ok()
            .filter(|u| !u.is_empty())
            .unwrap_or_else(|| self.requested.clone())
    }

    /// Every virtual machine, running or not, sorted by name.
    pub fn domains(&self) -> Result<Vec<DomainInfo>, VirtError> {
        let domains = self
            .conn
            .list_all_domains(0)
            .map_err(VirtError::from_virt(Kind::ListDomains))?;
        let mut out = Vec::with_capacity(domains.len());
        for domain in &domains {
            match info(domain) {
                Ok(info) => out.push(info),
                // Undefined between the listing and now: it is gone, not an error.
                Err(e) if is_code(&e, ErrorNumber::NoDomain) => {}
                Err(e) => return Err(VirtError::new(Kind::ListDomains, Some(&e))),
            }
        }
        out.sort_by(|a, b| a.name.cmp(&b.name).then_with(|| a.uuid.cmp(&b.uuid)));
        Ok(out)
    }

    /// The virtual machine with this UUID or, failing that, this name; `None` if there is
    /// none.
    pub fn find(&self, name_or_uuid: &str) -> Result<Option<DomainInfo>, VirtError> {
        let lookup = VirtError::from_virt(Kind::Lookup {
            what: name_or_uuid.to_owned(),
        });
        if is_uuid(name_or_uuid) {
            match self.conn.lookup_domain_by_uuid_string(name_or_uuid) {
                Ok(domain) => return info(&domain).map(Some).map_err(lookup),
                Err(e) if is_code(&e, ErrorNumber::NoDomain) => {}
                Err(e) => return Err(lookup(e)),
            }
        }
        if name_or_uuid.is_empty() {
            return Ok(None);
        }
        match self.conn.lookup_domain_by_name(name_or_uuid) {
            Ok(domain) => info(&domain).map(Some).map_err(lookup),
            Err(e) if is_code(&e, ErrorNumber::NoDomain) => Ok(None),
            Err(e) => Err(lookup(e)),
        }
    }

    /// Defines (creates, without starting) a virtual machine from its domain XML, or
    /// replaces the definition of the one with the same name and UUID.
    pub fn define(&self, xml: &str) -> Result<DomainInfo, VirtError> {
        let domain = self
            .conn
            .define_domain_xml(xml)
            .map_err(VirtError::from_virt(Kind::Define))?;
        info(&domain).map_err(VirtError::from_virt(Kind::Define))
    }

    /// Starts a defined virtual machine.
    pub fn start(&self, uuid: &str) -> Result<(), VirtError> {
        let (domain, name) = self.domain(uuid)?;
        domain
            .create()
            .map(drop)
            .map_err(VirtError::from_virt(Kind::Start { name }))
    }

    /// Asks the guest to shut down by pressing its (ACPI) power button; it returns at once,
    /// the guest takes its time (and may ignore it).
    pub fn shutdown(&self, uuid: &str) -> Result<(), VirtError> {
        let (domain, name) = self.domain(uuid)?;
        match domain.shutdown_flags(sys::VIR_DOMAIN_SHUTDOWN_ACPI_POWER_BTN) {
            Ok(_) => Ok(()),
            // A driver without shutdown modes (libvirt's test driver) has only its default.
            Err(e) if is_code(&e, ErrorNumber::InvalidArg) => domain
                .shutdown()
                .map(drop)
                .map_err(VirtError::from_virt(Kind::Shutdown { name })),
            Err(e) => Err(VirtError::new(Kind::Shutdown { name }, Some(&e))),
        }
    }

    /// Turns a virtual machine off at once, as pulling the plug does.
    pub fn force_off(&self, uuid: &str) -> Result<(), VirtError> {
        let (domain, name) = self.domain(uuid)?;
        domain
            .destroy()
            .map(drop)
            .map_err(VirtError::from_virt(Kind::ForceOff { name }))
    }

    /// Deletes the definition of a virtual machine with its UEFI variables (NVRAM) and TPM
    /// state; its disks stay. A running one keeps running until it stops (then it is gone).
    pub fn undefine(&self, uuid: &str) -> Result<(), VirtError> {
        let (domain, name) = self.domain(uuid)?;
        // Drivers that keep no NVRAM or TPM state (the test driver) refuse the flags as
        // unsupported: then ask again without them.
        let attempts = [
            sys::VIR_DOMAIN_UNDEFINE_NVRAM | sys::VIR_DOMAIN_UNDEFINE_TPM,
            sys::VIR_DOMAIN_UNDEFINE_NVRAM,
            0,
        ];
        let mut last = None;
        for flags in attempts {
            match domain.undefine_flags(flags) {
                Ok(_) => return Ok(()),
                Err(e) if is_code(&e, ErrorNumber::InvalidArg) => last = Some(e),
                Err(e) => return Err(VirtError::new(Kind::Undefine { name }, Some(&e))),
            }
        }
        Err(VirtError::new(Kind::Undefine { name }, last.as_ref()))
    }

    /// The persistent (inactive) domain XML, with the secrets it holds (SPICE passwords) so
    /// that an edited copy can be defined again; without them on a read-only connection.
    pub fn xml(&self, uuid: &str) -> Result<String, VirtError> {
        let (domain, name) = self.domain(uuid)?;
        match domain.xml_desc(sys::VIR_DOMAIN_XML_INACTIVE | sys::VIR_DOMAIN_XML_SECURE) {
            Ok(xml) => Ok(xml),
            Err(e)
                if is_code(&e, ErrorNumber::OperationDenied)
                    || is_code(&e, ErrorNumber::AccessDenied) =>
            {
                domain
                    .xml_desc(sys::VIR_DOMAIN_XML_INACTIVE)
                    .map_err(VirtError::from_virt(Kind::ReadXml { name }))
            }
            Err(e) => Err(VirtError::new(Kind::ReadXml { name }, Some(&e))),
        }
    }

    /// The names of the active storage pools (where a disk can be made now), sorted.
    pub fn pools(&self) -> Result<Vec<String>, VirtError> {
        let pools = self
            .conn
            .list_all_storage_pools(sys::VIR_CONNECT_LIST_STORAGE_POOLS_ACTIVE)
            .map_err(VirtError::from_virt(Kind::ListPools))?;
        let mut names = pools
            .iter()
            .map(StoragePool::name)
            .collect::<Result<Vec<_>, _>>()
            .map_err(VirtError::from_virt(Kind::ListPools))?;
        names.sort();
        Ok(names)
    }

    /// Makes a qcow2 disk of `size_gib` GiB named `name` in the storage pool `pool` and
    /// returns its path.
    pub fn create_volume(
        &self,
        pool: &str,
        name: &str,
        size_gib: u64,
    ) -> Result<String, VirtError> {
        if !valid_volume_name(name) {
            return Err(VirtError::new(
                Kind::VolumeName {
                    name: name.chars().take(100).collect(),
                },
                None,
            ));
        }
        if !(1..=MAX_VOLUME_GIB).contains(&size_gib) {
            return Err(VirtError::new(Kind::VolumeSize { size_gib }, None));
        }
        let failed = || Kind::CreateVolume {
            pool: pool.to_owned(),
            name: name.to_owned(),
        };
        let storage_pool = match self.conn.lookup_storage_pool_by_name(pool) {
            Ok(p) => p,
            Err(e) if is_code(&e, ErrorNumber::NoStoragePool) => {
                return Err(VirtError::new(
                    Kind::NoPool {
                        uri: self.uri(),
                        pool: pool.to_owned(),
                    },
                    Some(&e),
                ))
            }
            Err(e) => return Err(VirtError::new(failed(), Some(&e))),
        };
        let volume = StorageVol::create_xml(&storage_pool, &volume_xml(name, size_gib), 0)
            .map_err(|e| VirtError::new(failed(), Some(&e)))?;
        volume
            .path()
            .map_err(|e| VirtError::new(failed(), Some(&e)))
    }

    /// Every libvirt network, active or not, sorted by name.
    pub fn networks(&self) -> Result<Vec<NetworkInfo>, VirtError> {
        let networks = self
            .conn
            .list_all_networks(0)
            .map_err(VirtError::from_virt(Kind::ListNetworks))?;
        let mut out = Vec::with_capacity(networks.len());
        for network in &networks {
            match network_info(network) {
                Ok(info) => out.push(info),
                Err(e) if is_code(&e, ErrorNumber::NoNetwork) => {}
                Err(e) => return Err(VirtError::new(Kind::ListNetworks, Some(&e))),
            }
        }
        out.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(out)
    }

    /// A network that connects VMs to the host bridge `bridge` (see [`bridge_network_xml`]),
    /// named `name`, defined, started with the host and started now.
    ///
    /// A network of that name on that bridge already is reused (made persistent, autostarted
    /// and started if it was not); one of another kind is left alone and refused
    /// ([`VirtError::is_name_taken`]). A network this call defined is undefined again when it
    /// cannot be autostarted or started, so nothing half-made stays behind.
    pub fn define_bridge_network(
        &self,
        name: &str,
        bridge: &str,
    ) -> Result<NetworkInfo, VirtError> {
        let xml = bridge_network_xml(name, bridge)
            .map_err(|message| VirtError::new(Kind::NetworkSpec { message }, None))?;
        let named = |kind: fn(String) -> Kind| VirtError::from_virt(kind(name.to_owned()));
        let lookup = |name| Kind::LookupNetwork { name };
        match self.conn.lookup_network_by_name(name) {
            Ok(network) => return self.reuse_bridge_network(&network, name, bridge),
            Err(e) if is_code(&e, ErrorNumber::NoNetwork) => {}
            Err(e) => return Err(named(lookup)(e)),
        }
        let network = self
            .conn
            .define_network_xml(&xml)
            .map_err(named(|name| Kind::DefineNetwork { name }))?;
        let made = network
            .set_autostart(true)
            .map_err(named(|name| Kind::NetworkAutostart { name }))
            .and_then(|()| {
                network
                    .create()
                    .map_err(named(|name| Kind::StartNetwork { name }))
            });
        if let Err(e) = made {
            // Undefining also removes the autostart link.
            let _ = network.undefine();
            return Err(e);
        }
        network_info(&network).map_err(named(lookup))
    }

    /// [`define_bridge_network`](Self::define_bridge_network) for a network of that name that
    /// exists already.
    fn reuse_bridge_network(
        &self,
        network: &Network,
        name: &str,
        bridge: &str,
    ) -> Result<NetworkInfo, VirtError> {
        let named = |kind: fn(String) -> Kind| VirtError::from_virt(kind(name.to_owned()));
        let lookup = |name| Kind::LookupNetwork { name };
        let info = network_info(network).map_err(named(lookup))?;
        if info.forward.as_deref() != Some("bridge") || info.bridge.as_deref() != Some(bridge) {
            return Err(VirtError::new(
                Kind::NetworkTaken(Box::new(Taken {
                    bridge: bridge.to_owned(),
                    found: info,
                })),
                None,
            ));
        }
        // A transient (running, never defined) one becomes defined: the same UUID, so that
        // libvirt takes the definition as this network's.
        if !network.is_persistent().map_err(named(lookup))? {
            let uuid = network.uuid_string().map_err(named(lookup))?;
            let xml = write_xml(&bridge_network_element(name, bridge, Some(&uuid)));
            self.conn
                .define_network_xml(&xml)
                .map_err(named(|name| Kind::DefineNetwork { name }))?;
        }
        if !network.autostart().unwrap_or(false) {
            network
                .set_autostart(true)
                .map_err(named(|name| Kind::NetworkAutostart { name }))?;
        }
        if !network.is_active().map_err(named(lookup))? {
            network
                .create()
                .map_err(named(|name| Kind::StartNetwork { name }))?;
        }
        network_info(network).map_err(named(lookup))
    }

    /// Stops the network `name` if it runs, and deletes its definition (and autostart).
    pub fn remove_network(&self, name: &str) -> Result<(), VirtError> {
        let network = match self.conn.lookup_network_by_name(name) {
            Ok(n) => n,
            Err(e) if is_code(&e, ErrorNumber::NoNetwork) => {
                return Err(VirtError::new(
                    Kind::NoNetwork {
                        uri: self.uri(),
                        name: name.to_owned(),
                    },
                    Some(&e),
                ))
            }
            Err(e) => {
                return Err(VirtError::new(
                    Kind::LookupNetwork {
                        name: name.to_owned(),
                    },
                    Some(&e),
                ))
            }
        };
        let failed = || Kind::RemoveNetwork {
            name: name.to_owned(),
        };
        // A transient network is gone once stopped; a defined one needs undefining too.
        let persistent = network
            .is_persistent()
            .map_err(|e| VirtError::new(failed(), Some(&e)))?;
        if network
            .is_active()
            .map_err(|e| VirtError::new(failed(), Some(&e)))?
        {
            network
                .destroy()
                .map_err(|e| VirtError::new(failed(), Some(&e)))?;
        }
        if persistent {
            network
                .undefine()
                .map_err(|e| VirtError::new(failed(), Some(&e)))?;
        }
        Ok(())
    }

    /// The domain with this UUID and its name, or why not.
    fn domain(&self, uuid: &str) -> Result<(Domain, String), VirtError> {
        if !is_uuid(uuid) {
            return Err(VirtError::new(
                Kind::NotAUuid {
                    text: uuid.chars().take(100).collect(),
                },
                None,
            ));
        }
        let domain = match self.conn.lookup_domain_by_uuid_string(uuid) {
            Ok(d) => d,
            Err(e) if is_code(&e, ErrorNumber::NoDomain) => {
                return Err(VirtError::new(
                    Kind::NoDomain {
                        uri: self.uri(),
                        uuid: uuid.to_owned(),
                    },
                    Some(&e),
                ))
            }
            Err(e) => {
                return Err(VirtError::new(
                    Kind::Lookup {
                        what: uuid.to_owned(),
                    },
                    Some(&e),
                ))
            }
        };
        let name = domain.name().unwrap_or_else(|_| uuid.to_owned());
        Ok((domain, name))
    }
}

fn info(domain: &Domain) -> Result<DomainInfo, Error> {
    let (state, _) = domain.state()?;
    let state = DomainState::from_virt(state.to_raw());
    let persistent = domain.is_persistent()?;
    Ok(DomainInfo {
        name: domain.name()?,
        uuid: domain.uuid_string()?,
        state,
        persistent,
        // A transient domain has no autostart (some drivers say so with an error).
        autostart: persistent && domain.autostart().unwrap_or(false),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uuids() {
        assert!(is_uuid("6695eb01-f6a4-8304-79aa-97f2502e193f"));
        assert!(is_uuid("6695EB01F6A4830479AA97F2502E193F"));
        for bad in [
            "",
            "test",
            "6695eb01-f6a4-8304-79aa-97f2502e193",
            "6695eb01f-6a4-8304-79aa-97f2502e193f",
            "6695eb01-f6a4-8304-79aa-97f2502e193g",
            "../../etc/passwd/../../../../../../x",
        ] {
            assert!(!is_uuid(bad), "{bad}");
        }
    }

    #[test]
    fn volume_names() {
        for ok in ["win11.qcow2", "游戏 机.qcow2", "a", "x'\"<&>.img"] {
            assert!(valid_volume_name(ok), "{ok}");
        }
        for bad in ["", ".hidden", "..", "a/b", "a\nb", &"a".repeat(256)] {
            assert!(!valid_volume_name(bad), "{bad:?}");
        }
    }

    #[test]
    fn volume_xml_keeps_names_as_data() {
        let xml = volume_xml("a<b>&'\"c", 64);
        let tree = Element::parse(xml.as_bytes()).unwrap();
        assert_eq!(
            tree.get_child("name").unwrap().get_text().unwrap(),
            "a<b>&'\"c"
        );
        let capacity = tree.get_child("capacity").unwrap();
        assert_eq!(capacity.get_text().unwrap(), "64");
        assert_eq!(capacity.attributes["unit"], "GiB");
        let format = tree
            .get_child("target")
            .and_then(|t| t.get_child("format"))
            .unwrap();
        assert_eq!(format.attributes["type"], "qcow2");
        assert!(!xml.contains("a<b>"), "{xml}");
    }

    #[test]
    fn network_xml_facts() {
        let nat =
            "<network><name>default</name><forward mode='nat'/><bridge name='virbr0'/></network>";
        assert_eq!(
            network_facts(nat),
            (Some("virbr0".into()), Some("nat".into()))
        );
        let host =
            "<network><name>host</name><forward mode='bridge'/><bridge name='br0'/></network>";
        assert_eq!(
            network_facts(host),
            (Some("br0".into()), Some("bridge".into()))
        );
        let isolated = "<network><name>iso</name><bridge name='virbr1'/></network>";
        assert_eq!(network_facts(isolated), (Some("virbr1".into()), None));
        let default_mode = "<network><name>n</name><forward/></network>";
        assert_eq!(network_facts(default_mode), (None, Some("nat".into())));
        assert_eq!(network_facts("<network"), (None, None));
    }

    #[test]
    fn system_uris() {
        for local in [
            "qemu:///system",
            "qemu+unix:///system",
            "",
            "qemu:///system?socket=/x",
        ] {
            assert!(is_local_system_uri(local), "{local}");
        }
        for other in [
            "qemu:///session",
            "qemu+ssh://host/system",
            "test:///default",
            "qemu://host/system",
        ] {
            assert!(!is_local_system_uri(other), "{other}");
        }
    }

    #[test]
    fn messages_name_what_failed() {
        let e = VirtError::new(
            Kind::NoDomain {
                uri: "test:///default".into(),
                uuid: "00000000-0000-0000-0000-000000000000".into(),
            },
            None,
        );
        assert!(e.is_not_found());
        assert!(e.message().contains("00000000-0000-0000-0000-000000000000"));
        assert!(e.message().contains("test:///default"));
        let e = VirtError::new(
            Kind::Connect {
                uri: "qemu:///system".into(),
                hint: Some(Hint::NotRunning),
            },
            None,
        );
        assert!(e.message().contains("qemu:///system"), "{}", e.message());
        assert!(e.message().contains("not running"), "{}", e.message());
        let e = VirtError::new(
            Kind::Connect {
                uri: "qemu:///system".into(),
                hint: Some(Hint::NotInGroup { group_exists: true }),
            },
            None,
        );
        assert!(e.message().contains("usermod"), "{}", e.message());
        assert_eq!(e.to_string(), e.message());
    }
}
