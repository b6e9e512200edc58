//! The D-Bus contract between the app (or `passthroughctl`) and the privileged helper
//! `passthrough-helper`: names, the proxy, the error enum and the JSON encoding of the DTOs.
//!
//! It lives here, once, so the service and its clients cannot drift apart. DTOs cross the bus
//! as JSON strings of core's serde types ([`Plan`], [`Rendered`], transaction records): simple
//! to read in `busctl`/`gdbus`, and a new optional field does not change the D-Bus signature.
//!
//! | member | signature | privilege |
//! |---|---|---|
//! | `Preview(plan)` → `rendered` | `s` → `s` | none |
//! | `Apply(plan)` → `transaction` | `s` → `s` | polkit [`ACTION_CONFIGURE_HOST`] |
//! | `Rollback(transaction)` | `s` → `` | polkit [`ACTION_CONFIGURE_HOST`] |
//! | `Transactions()` → `list` | `` → `s` | none |
//! | `ResetGpu(address)`: remove the GPU from the PCI bus, rescan (the boot-GPU fix) | `s` → `` | polkit [`ACTION_MANAGE_DEVICES`] |
//! | `ReadLog(kind, vm)` → `text`: the end (≤ 1 MiB) of the kernel log (`kernel`, `vm` empty) or of a VM's QEMU log (`qemu`) | `ss` → `s` | polkit [`ACTION_READ_LOGS`] |
//! | signal `Progress(transaction, step, line)` | `sss` | |
//! | property `Version` | `s` | |
//! | property `Root` (the host root it serves, `/` on a real system) | `s` | |

use crate::i18n::gettext_f;
use crate::plan::{Plan, Rendered};

/// Well-known bus name of the helper.
pub const BUS_NAME: &str = "io.github.passthrough.Helper1";
/// Object path of the helper's one object.
pub const OBJECT_PATH: &str = "/io/github/passthrough/Helper1";
/// Interface name.
pub const INTERFACE: &str = "io.github.passthrough.Helper1";
/// Prefix of the helper's error names (`…Error.NotAuthorized`).
pub const ERROR_PREFIX: &str = "io.github.passthrough.Helper1.Error";

/// polkit action for boot arguments, vfio binding, initramfs and host network files.
pub const ACTION_CONFIGURE_HOST: &str = "io.github.passthrough.configure-host";
/// polkit action for runtime unbind/rescan and hooks.
pub const ACTION_MANAGE_DEVICES: &str = "io.github.passthrough.manage-devices";
/// polkit action for reading the kernel log and the VMs' QEMU logs (`ReadLog`).
pub const ACTION_READ_LOGS: &str = "io.github.passthrough.read-logs";

/// The largest argument string the helper accepts (a plan is a few hundred bytes).
pub const MAX_ARGUMENT_LEN: usize = 64 * 1024;

/// The client side of the helper's interface.
///
/// Method calls have no timeout of their own: `Apply` waits for the polkit dialog and for the
/// initramfs to be rebuilt, which can take minutes. Watch `Progress` to show that it is alive.
#[zbus::proxy(
    interface = "io.github.passthrough.Helper1",
    default_service = "io.github.passthrough.Helper1",
    default_path = "/io/github/passthrough/Helper1"
)]
pub trait Helper1 {
    /// The `Rendered` JSON of `plan` (a `Plan` JSON) on this host. No privilege.
    fn preview(&self, plan: &str) -> zbus::Result<String>;

    /// Applies `plan` as one transaction and returns its ID. polkit `configure-host`.
    fn apply(&self, plan: &str) -> zbus::Result<String>;

    /// Restores the files of `transaction` byte for byte. polkit `configure-host`.
    fn rollback(&self, transaction: &str) -> zbus::Result<()>;

    /// JSON list of the journalled transactions, oldest first. No privilege.
    fn transactions(&self) -> zbus::Result<String>;

    /// The boot-GPU fix: removes the graphics card at `address` (`0000:08:00.0`) from the PCI
    /// bus and rescans the bus, before its VM starts. polkit `manage-devices`; the card must
    /// be bound to vfio-pci (or no driver), never one the host uses.
    fn reset_gpu(&self, address: &str) -> zbus::Result<()>;

    /// The end (at most 1 MiB, cut at a line start, UTF-8) of a log only root may read:
    /// `kind` `"kernel"` with `vm` empty (the kernel log of the current boot) or `"qemu"` with
    /// `vm` a libvirt domain name (`/var/log/libvirt/qemu/NAME.log`). polkit `read-logs`;
    /// `NotFound` when there is no such log.
    fn read_log(&self, kind: &str, vm: &str) -> zbus::Result<String>;

    /// The `Rendered` JSON of a network change (`NetworkChange` JSON) on this host, checked
    /// by `netplan generate`. No privilege.
    fn preview_network(&self, change: &str) -> zbus::Result<String>;

    /// Applies a network change and returns its transaction ID; the helper undoes it after
    /// `confirm_within` seconds (2 to 600) unless [`confirm_network`](Self::confirm_network)
    /// keeps it. polkit `configure-host`.
    fn apply_network(&self, change: &str, confirm_within: u32) -> zbus::Result<String>;

    /// Keeps a network change; fails when it was undone already. polkit `configure-host`.
    fn confirm_network(&self, transaction: &str) -> zbus::Result<()>;

    /// A line of output (or a step starting, with an empty `line`) of a running transaction.
    #[zbus(signal)]
    fn progress(&self, transaction: &str, step: &str, line: &str) -> zbus::Result<()>;

    /// The helper's version (the package version).
    #[zbus(property)]
    fn version(&self) -> zbus::Result<String>;

    /// The host root the helper reads and changes: `/` on a real system, the directory of
    /// its `--root` option in tests. A client working on a copy of a host checks it before
    /// it sends a plan.
    #[zbus(property(emits_changed_signal = "const"))]
    fn root(&self) -> zbus::Result<String>;
}

impl Helper1Proxy<'_> {
    /// [`preview`](Self::preview) with typed arguments.
    pub async fn preview_plan(&self, plan: &Plan) -> zbus::Result<Rendered> {
        let rendered = self.preview(&encode(plan)?).await?;
        decode(&rendered)
    }

    /// [`apply`](Self::apply) with a typed plan; returns the transaction ID.
    pub async fn apply_plan(&self, plan: &Plan) -> zbus::Result<String> {
        self.apply(&encode(plan)?).await
    }
}

/// Encodes a DTO as it crosses the bus.
pub fn encode<T: serde::Serialize>(value: &T) -> zbus::Result<String> {
    serde_json::to_string(value).map_err(|e| zbus::Error::Failure(e.to_string()))
}

/// Decodes a DTO received from the bus.
pub fn decode<T: serde::de::DeserializeOwned>(json: &str) -> zbus::Result<T> {
    serde_json::from_str(json).map_err(|e| zbus::Error::Failure(e.to_string()))
}

/// The errors the helper replies with. The `String` is a sentence for people, already
/// translated by the helper (in the system's language); [`user_message`] builds the sentence
/// the app shows.
#[derive(Debug, Clone, PartialEq, Eq, zbus::DBusError)]
#[zbus(prefix = "io.github.passthrough.Helper1.Error")]
pub enum HelperError {
    /// polkit did not authorize the caller (refused, cancelled, or no agent to ask).
    NotAuthorized(String),
    /// An argument failed validation; nothing was changed.
    InvalidArgument(String),
    /// The action was attempted and failed (and what it had done was rolled back).
    Failed(String),
    /// No such transaction.
    NotFound(String),
}

impl HelperError {
    /// The error name and detail the helper sent, if `err` is one of ours.
    pub fn from_zbus(err: &zbus::Error) -> Option<Self> {
        let (name, detail) = name_and_detail(err)?;
        let short = name.strip_prefix(ERROR_PREFIX)?.strip_prefix('.')?;
        let detail = detail.unwrap_or_default();
        Some(match short {
            "NotAuthorized" => Self::NotAuthorized(detail),
            "InvalidArgument" => Self::InvalidArgument(detail),
            "Failed" => Self::Failed(detail),
            "NotFound" => Self::NotFound(detail),
            _ => return None,
        })
    }
}

/// The D-Bus error name and description carried by `err`, if it is a D-Bus error reply.
fn name_and_detail(err: &zbus::Error) -> Option<(String, Option<String>)> {
    use zbus::DBusError;
    match err {
        zbus::Error::MethodError(name, detail, _) => Some((name.to_string(), detail.clone())),
        zbus::Error::FDO(e) => Some((e.name().to_string(), e.description().map(str::to_owned))),
        zbus::Error::DBus(e) => Some((e.name().to_string(), e.description().map(str::to_owned))),
        _ => None,
    }
}

/// A translated sentence for a failed call to the helper, never a raw D-Bus error name.
pub fn user_message(err: &zbus::Error) -> String {
    if let Some(helper) = HelperError::from_zbus(err) {
        return match helper {
            HelperError::NotAuthorized(_) => gettext_f(
                "You are not allowed to change the system configuration: authentication was refused or cancelled. Nothing was changed.",
                &[],
            ),
            HelperError::InvalidArgument(detail) => gettext_f(
                "The helper refused the request, and nothing was changed: {detail}",
                &[("detail", &detail)],
            ),
            HelperError::Failed(detail) => gettext_f(
                "The change failed: {detail}",
                &[("detail", &detail)],
            ),
            HelperError::NotFound(detail) => {
                gettext_f("Not found: {detail}", &[("detail", &detail)])
            }
        };
    }
    let Some((name, detail)) = name_and_detail(err) else {
        return match err {
            zbus::Error::InputOutput(_) | zbus::Error::Connection(..) => gettext_f(
                "Cannot reach the system bus to talk to the Passthrough helper.",
                &[],
            ),
            other => gettext_f(
                "Unexpected error while talking to the Passthrough helper: {error}",
                &[("error", &other.to_string())],
            ),
        };
    };
    let short = name.rsplit('.').next().unwrap_or_default();
    match short {
        "ServiceUnknown" | "NameHasNoOwner" | "ServiceNotFound" | "SpawnFailed"
        | "SpawnExecFailed" | "SpawnChildExited" | "SpawnChildSignaled" => gettext_f(
            "The Passthrough helper is not installed or could not be started.",
            &[],
        ),
        "AccessDenied" | "AuthFailed" | "InteractiveAuthorizationRequired" => gettext_f(
            "The system does not allow this program to talk to the Passthrough helper.",
            &[],
        ),
        "NoReply" | "Timeout" | "TimedOut" => {
            gettext_f("The Passthrough helper did not answer in time.", &[])
        }
        "UnknownMethod" | "UnknownInterface" | "UnknownObject" | "UnknownProperty"
        | "InvalidArgs" => gettext_f(
            "The installed Passthrough helper does not match this version of the app.",
            &[],
        ),
        _ => match detail.filter(|d| !d.is_empty()) {
            Some(detail) => gettext_f(
                "Unexpected error from the Passthrough helper: {error}",
                &[("error", &detail)],
            ),
            None => gettext_f("Unexpected error from the Passthrough helper.", &[]),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use zbus::DBusError;

    fn reply_error(name: &str, detail: &str) -> zbus::Error {
        // An error reply as a proxy receives it.
        let call = zbus::Message::method_call(OBJECT_PATH, "Apply")
            .sender(":1.7")
            .destination(BUS_NAME)
            .interface(INTERFACE)
            .build(&("{}",))
            .unwrap();
        let name = zbus::names::ErrorName::try_from(name).unwrap();
        let reply = zbus::Message::error(&call.header(), name)
            .build(&(detail,))
            .unwrap();
        zbus::Error::from(reply)
    }

    #[test]
    fn error_names_carry_the_prefix() {
        let e = HelperError::NotAuthorized("no".into());
        assert_eq!(
            e.name().as_str(),
            "io.github.passthrough.Helper1.Error.NotAuthorized"
        );
        assert_eq!(e.description(), Some("no"));
        assert_eq!(
            HelperError::InvalidArgument(String::new()).name().as_str(),
            format!("{ERROR_PREFIX}.InvalidArgument")
        );
    }

    #[test]
    fn replies_decode_to_the_enum() {
        let err = reply_error(&format!("{ERROR_PREFIX}.InvalidArgument"), "bad address");
        assert_eq!(
            HelperError::from_zbus(&err),
            Some(HelperError::InvalidArgument("bad address".into()))
        );
        let err = reply_error("org.freedesktop.DBus.Error.AccessDenied", "policy");
        assert_eq!(HelperError::from_zbus(&err), None);
    }

    #[test]
    fn user_messages_never_show_error_names() {
        for (name, detail) in [
            (format!("{ERROR_PREFIX}.NotAuthorized"), "polkit said no"),
            (format!("{ERROR_PREFIX}.InvalidArgument"), "bad address"),
            (format!("{ERROR_PREFIX}.Failed"), "update-grub failed"),
            (format!("{ERROR_PREFIX}.NotFound"), "no such transaction"),
            (
                "org.freedesktop.DBus.Error.ServiceUnknown".to_owned(),
                "The name is not activatable",
            ),
            (
                "org.freedesktop.DBus.Error.AccessDenied".to_owned(),
                "Rejected send message",
            ),
            ("org.freedesktop.DBus.Error.NoReply".to_owned(), "timeout"),
            ("com.example.Weird".to_owned(), "something odd"),
        ] {
            let msg = user_message(&reply_error(&name, detail));
            assert!(!msg.contains(&name), "{msg}");
            assert!(!msg.contains("org.freedesktop"), "{msg}");
            assert!(!msg.is_empty());
        }
        let msg = user_message(&reply_error(
            &format!("{ERROR_PREFIX}.NotAuthorized"),
            "polkit said no",
        ));
        assert!(msg.contains("not allowed"), "{msg}");
        let msg = user_message(&reply_error(
            &format!("{ERROR_PREFIX}.InvalidArgument"),
            "bad address",
        ));
        assert!(msg.ends_with("bad address"), "{msg}");
    }

    #[test]
    fn dtos_round_trip() {
        let plan = Plan {
            enable_iommu: true,
            reserve: vec!["0000:08:00.0".parse().unwrap()],
            ..Plan::default()
        };
        let back: Plan = decode(&encode(&plan).unwrap()).unwrap();
        assert_eq!(back, plan);
        assert!(decode::<Plan>("{").is_err());
    }
}
