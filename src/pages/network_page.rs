//! [`PtNetworkPage`]: the Network step. Shows how the computer is connected, proposes a
//! bridge over a wired interface that takes over its addresses, applies it, and asks "Keep
//! this network setup?" with a countdown: without an answer (the user was cut off), the
//! change undoes itself.
//!
//! Two routes, picked from what manages the network:
//! - NetworkManager (running, on the live host): the app talks to NetworkManager over D-Bus
//!   (`network::nm`), under a checkpoint that NetworkManager rolls back by itself.
//! - netplan or systemd-networkd: the helper writes the files as a transaction and undoes it
//!   by itself unless confirmed (`ApplyNetwork`/`ConfirmNetwork`).
//!
//! After a bridge is kept, a libvirt network with `<forward mode="bridge"/>` on it is defined
//! and autostarted (as the reference post does), so the new-VM wizard offers it.

use std::cell::{Cell, RefCell};
use std::path::{Path, PathBuf};
use std::time::Duration;

use adw::prelude::*;
use adw::subclass::prelude::*;
use gettextrs::gettext;
use gtk::{gio, glib};
use passthrough_core::i18n::{gettext_f, ngettext_f};
use passthrough_core::network::nm::{Nm, NmDevice};
use passthrough_core::network::render::{self, NetworkChange};
use passthrough_core::network::{
    self, BridgePlan, Interface, InterfaceKind, Manager, NetworkReport, Renderer,
};
use passthrough_core::HostRoot;

use crate::helper_client;
use crate::vm_service::VmService;

/// Seconds the user has to keep a network change before it undoes itself.
const CONFIRM_SECONDS: u32 = 60;

/// Who makes the change.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Route {
    /// NetworkManager over D-Bus, with its checkpoint.
    Nm,
    /// The helper, with netplan or networkd files.
    Helper,
    /// Nothing Passthrough can change: the sentence says what to do.
    None(String),
}

impl Route {
    fn name(&self) -> &'static str {
        match self {
            Route::Nm => "networkmanager",
            Route::Helper => "helper",
            Route::None(_) => "none",
        }
    }
}

/// What the page shows, read off the GTK thread.
#[derive(Debug, Clone)]
struct Scan {
    report: NetworkReport,
    route: Route,
    /// NetworkManager's view (addresses), when it manages the network.
    devices: Vec<NmDevice>,
    /// Bridges Passthrough made, which it may remove.
    own_bridges: Vec<String>,
    /// For each wired interface that can be a port: the plan that moves its configuration.
    plans: Vec<BridgePlan>,
}

/// A change waiting for the user's "Keep".
#[derive(Debug, Clone, PartialEq, Eq)]
enum Pending {
    Helper { id: String },
    Nm { checkpoint: String },
}

/// How the last change ended (for tests and the status line).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Outcome {
    #[default]
    None,
    Kept,
    Undone,
    Expired,
    Failed,
}

impl Outcome {
    pub fn name(self) -> &'static str {
        match self {
            Outcome::None => "-",
            Outcome::Kept => "kept",
            Outcome::Undone => "undone",
            Outcome::Expired => "expired",
            Outcome::Failed => "failed",
        }
    }
}

mod imp {
    use super::*;

    #[derive(Debug, Default, gtk::CompositeTemplate)]
    #[template(file = "network_page.ui")]
    pub struct PtNetworkPage {
        #[template_child]
        pub(super) host_group: TemplateChild<adw::PreferencesGroup>,
        #[template_child]
        pub(super) bridge_group: TemplateChild<adw::PreferencesGroup>,
        #[template_child]
        pub(super) port_row: TemplateChild<adw::ComboRow>,
        #[template_child]
        pub(super) ports: TemplateChild<gtk::StringList>,
        #[template_child]
        pub(super) name_row: TemplateChild<adw::EntryRow>,
        #[template_child]
        pub(super) warning_row: TemplateChild<adw::ActionRow>,
        #[template_child]
        pub(super) summary_label: TemplateChild<gtk::Label>,
        #[template_child]
        pub(super) files_expander: TemplateChild<gtk::Expander>,
        #[template_child]
        pub(super) files_view: TemplateChild<gtk::TextView>,
        #[template_child]
        pub(super) status_label: TemplateChild<gtk::Label>,
        #[template_child]
        pub(super) apply_button: TemplateChild<gtk::Button>,
        #[template_child]
        pub(super) bridges_group: TemplateChild<adw::PreferencesGroup>,
        #[template_child]
        pub(super) wifi_group: TemplateChild<adw::PreferencesGroup>,
        pub(super) root: RefCell<PathBuf>,
        pub(super) service: RefCell<Option<VmService>>,
        pub(super) scan: RefCell<Option<Scan>>,
        pub(super) host_rows: RefCell<Vec<gtk::Widget>>,
        pub(super) bridge_rows: RefCell<Vec<gtk::Widget>>,
        /// libvirt networks on a host bridge: (network, bridge).
        pub(super) libvirt: RefCell<Vec<(String, String)>>,
        pub(super) pending: RefCell<Option<Pending>>,
        pub(super) keep_dialog: RefCell<Option<adw::MessageDialog>>,
        pub(super) outcome: Cell<Outcome>,
        pub(super) busy: Cell<bool>,
        pub(super) scanned: Cell<bool>,
        pub(super) preview_ok: Cell<bool>,
        pub(super) filling: Cell<bool>,
    }

    #[glib::object_subclass]
    impl ObjectSubclass for PtNetworkPage {
        const NAME: &'static str = "PtNetworkPage";
        type Type = super::PtNetworkPage;
        type ParentType = adw::Bin;

        fn class_init(klass: &mut Self::Class) {
            klass.bind_template();
            klass.install_action_async("network.apply", None, |page, _, _| async move {
                page.apply().await;
            });
            klass.install_action_async(
                "network.remove",
                Some(glib::VariantTy::STRING),
                |page, _, target| async move {
                    if let Some(bridge) = target.and_then(|t| t.get::<String>()) {
                        page.remove(&bridge).await;
                    }
                },
            );
            klass.install_action_async(
                "network.libvirt",
                Some(glib::VariantTy::STRING),
                |page, _, target| async move {
                    if let Some(bridge) = target.and_then(|t| t.get::<String>()) {
                        if let Err(message) = page.define_libvirt_network(&bridge).await {
                            page.set_status(&message);
                        }
                        page.refresh_libvirt().await;
                    }
                },
            );
            // Answers of the "Keep this network setup?" dialog (tests press them too).
            klass.install_action("network.keep", None, |page, _, _| {
                page.answer("keep");
            });
            klass.install_action("network.revert", None, |page, _, _| {
                page.answer("revert");
            });
            klass.install_action_async("network.refresh", None, |page, _, _| async move {
                page.refresh().await;
            });
        }

        fn instance_init(obj: &glib::subclass::InitializingObject<Self>) {
            obj.init_template();
        }
    }

    impl ObjectImpl for PtNetworkPage {
        fn constructed(&self) {
            self.parent_constructed();
            let obj = self.obj();
            self.port_row.connect_selected_notify(glib::clone!(
                #[weak]
                obj,
                move |_| obj.update_preview()
            ));
            self.name_row.connect_changed(glib::clone!(
                #[weak]
                obj,
                move |_| obj.update_preview()
            ));
            // The network is read when the step is first shown, not at start-up.
            obj.connect_map(|page| {
                if !page.imp().scanned.replace(true) {
                    let page = page.clone();
                    glib::spawn_future_local(async move { page.refresh().await });
                }
            });
        }
    }
    impl WidgetImpl for PtNetworkPage {}
    impl BinImpl for PtNetworkPage {}
}

glib::wrapper! {
    pub struct PtNetworkPage(ObjectSubclass<imp::PtNetworkPage>)
        @extends adw::Bin, gtk::Widget,
        @implements gtk::Buildable, gtk::ConstraintTarget;
}

/// The seconds to keep a change (tests shorten it with `PASSTHROUGH_TEST_NETWORK_CONFIRM`).
fn confirm_seconds() -> u32 {
    std::env::var("PASSTHROUGH_TEST_NETWORK_CONFIRM")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(CONFIRM_SECONDS)
}

fn manager_sentence(manager: Manager) -> String {
    match manager {
        Manager::Netplan {
            renderer: Renderer::NetworkManager,
        } => gettext("Managed by netplan, which hands it to NetworkManager."),
        Manager::Netplan {
            renderer: Renderer::Networkd,
        } => gettext("Managed by netplan with systemd-networkd."),
        Manager::NetworkManager => gettext("Managed by NetworkManager."),
        Manager::Networkd => gettext("Managed by systemd-networkd."),
        Manager::None => gettext("Nothing Passthrough knows manages it."),
    }
}

/// Reads the network: the host root's files and, on the live host, NetworkManager.
fn read_network(root: &Path) -> Scan {
    let host = HostRoot::new(root);
    let report = network::scan(&host);
    let nm_managed = matches!(
        report.manager,
        Manager::NetworkManager
            | Manager::Netplan {
                renderer: Renderer::NetworkManager
            }
    );
    // NetworkManager is the live host's: never for a copy of another host.
    let nm = (host.is_live() && nm_managed)
        .then(Nm::system)
        .and_then(Result::ok)
        .filter(|nm| nm.running().unwrap_or(false));
    let devices = nm
        .as_ref()
        .and_then(|nm| nm.devices().ok())
        .unwrap_or_default();
    let route = match (&nm, report.manager) {
        (Some(_), _) => Route::Nm,
        (None, Manager::Netplan { .. } | Manager::Networkd) => Route::Helper,
        (None, Manager::NetworkManager) => Route::None(gettext(
            "NetworkManager manages this computer's network, and it is not answering on the system bus. Start NetworkManager and open this step again.",
        )),
        (None, Manager::None) => Route::None(render::by_hand()),
    };
    let own_bridges = match &nm {
        Some(nm) => nm
            .connections()
            .unwrap_or_default()
            .into_iter()
            .filter(|c| c.passthrough_role.as_deref() == Some("bridge"))
            .filter_map(|c| c.interface_name)
            .collect(),
        None => render::own_bridges(&host),
    };
    let plans = report
        .interfaces
        .iter()
        .filter(|i| network::can_bridge(i).is_ok())
        .map(|i| {
            nm.as_ref()
                .and_then(|nm| nm.plan_for_port(&i.name).ok())
                .unwrap_or_else(|| network::current::plan_from_host(&host, &report, &i.name))
        })
        .collect();
    Scan {
        report,
        route,
        devices,
        own_bridges,
        plans,
    }
}

impl PtNetworkPage {
    pub fn set_root(&self, root: &Path) {
        self.imp().root.replace(root.to_path_buf());
    }

    /// The libvirt connection (the VM step's), for the bridge's libvirt network.
    pub fn set_service(&self, service: VmService) {
        self.imp().service.replace(Some(service));
    }

    pub fn is_busy(&self) -> bool {
        self.imp().busy.get()
    }

    /// One line for tests.
    pub fn test_report(&self) -> String {
        let imp = self.imp();
        let scan = imp.scan.borrow();
        let (manager, route, interfaces, bridges) = match scan.as_ref() {
            Some(s) => (
                serde_json::to_value(s.report.manager)
                    .ok()
                    .and_then(|v| v.get("kind").and_then(|k| k.as_str()).map(str::to_owned))
                    .unwrap_or_default(),
                s.route.name(),
                s.report
                    .interfaces
                    .iter()
                    .map(|i| i.name.as_str())
                    .collect::<Vec<_>>()
                    .join(","),
                s.own_bridges.join(","),
            ),
            None => ("-".into(), "-", String::new(), String::new()),
        };
        format!(
            "network: manager={manager} route={route} interfaces={interfaces} own-bridges={bridges} apply={} warnings={} pending={} outcome={} libvirt={} status={}",
            imp.apply_button.is_sensitive(),
            if imp.warning_row.is_visible() {
                imp.warning_row
                    .subtitle()
                    .map(|t| t.lines().count())
                    .unwrap_or(0)
            } else {
                0
            },
            match imp.pending.borrow().as_ref() {
                Some(Pending::Helper { id }) => id.clone(),
                Some(Pending::Nm { checkpoint }) => checkpoint.clone(),
                None => "-".into(),
            },
            imp.outcome.get().name(),
            imp.libvirt
                .borrow()
                .iter()
                .map(|(n, b)| format!("{n}:{b}"))
                .collect::<Vec<_>>()
                .join(","),
            imp.status_label.text().replace('\n', " "),
        )
    }

    /// Reads the network again and shows it.
    pub async fn refresh(&self) {
        let root = self.imp().root.borrow().clone();
        let busy = self.imp().busy.replace(true);
        let scan = gio::spawn_blocking(move || read_network(&root))
            .await
            .expect("the network scan does not panic");
        self.imp().busy.set(busy);
        self.show(scan);
        self.refresh_libvirt().await;
    }

    async fn refresh_libvirt(&self) {
        let Some(service) = self.imp().service.borrow().clone() else {
            return;
        };
        let networks = service
            .call(|c| c.networks().map_err(|e| e.message().to_owned()))
            .await
            .unwrap_or_default();
        let list = networks
            .into_iter()
            .filter(|n| n.forward.as_deref() == Some("bridge"))
            .filter_map(|n| n.bridge.map(|b| (n.name, b)))
            .collect();
        self.imp().libvirt.replace(list);
        self.show_bridges();
    }

    fn show(&self, scan: Scan) {
        let imp = self.imp();
        for row in imp.host_rows.take() {
            imp.host_group.remove(&row);
        }
        let mut description = manager_sentence(scan.report.manager);
        if let Route::None(text) = &scan.route {
            description = format!("{description} {text}");
        }
        imp.host_group.set_description(Some(&description));
        for iface in &scan.report.interfaces {
            let row = interface_row(iface, &scan);
            imp.host_group.add(&row);
            imp.host_rows.borrow_mut().push(row.upcast());
        }
        if scan.report.interfaces.is_empty() {
            let row = adw::ActionRow::new();
            row.set_title(&gettext("No network interface found"));
            imp.host_group.add(&row);
            imp.host_rows.borrow_mut().push(row.upcast());
        }
        imp.wifi_group.set_visible(
            scan.report
                .interfaces
                .iter()
                .any(|i| i.kind == InterfaceKind::Wifi),
        );
        // Fill the port list without a preview per item.
        imp.filling.set(true);
        let names: Vec<String> = scan.plans.iter().map(|p| p.port.clone()).collect();
        imp.ports.splice(0, imp.ports.n_items(), &[]);
        for n in &names {
            imp.ports.append(n);
        }
        let default = scan
            .report
            .default_route
            .as_ref()
            .and_then(|r| names.iter().position(|n| n == r))
            .unwrap_or(0);
        imp.port_row.set_selected(default as u32);
        let name = free_bridge_name(&scan.report);
        if imp.name_row.text().is_empty()
            || scan
                .report
                .interface(imp.name_row.text().as_str())
                .is_some()
        {
            imp.name_row.set_text(&name);
        }
        imp.filling.set(false);
        imp.scan.replace(Some(scan));
        self.update_preview();
        self.show_bridges();
    }

    fn show_bridges(&self) {
        let imp = self.imp();
        for row in imp.bridge_rows.take() {
            imp.bridges_group.remove(&row);
        }
        let scan = imp.scan.borrow();
        let Some(scan) = scan.as_ref() else { return };
        let libvirt = imp.libvirt.borrow();
        let mut any = false;
        for iface in scan
            .report
            .interfaces
            .iter()
            .filter(|i| i.kind == InterfaceKind::Bridge)
        {
            any = true;
            let row = adw::ActionRow::new();
            row.set_title(&iface.name);
            let ports = if iface.ports.is_empty() {
                gettext("no ports")
            } else {
                gettext_f("ports: {ports}", &[("ports", &iface.ports.join(", "))])
            };
            let vm = match libvirt.iter().find(|(_, b)| *b == iface.name) {
                Some((n, _)) => gettext_f(
                    "virtual machines use it through the libvirt network “{name}”",
                    &[("name", n)],
                ),
                None => gettext("not offered to virtual machines yet"),
            };
            row.set_subtitle(&glib::markup_escape_text(&format!("{ports} · {vm}")));
            row.set_subtitle_lines(0);
            let icon = gtk::Image::from_icon_name("network-workgroup-symbolic");
            row.add_prefix(&icon);
            if !libvirt.iter().any(|(_, b)| *b == iface.name) {
                row.add_suffix(&row_button(
                    &gettext("_Use for Virtual Machines"),
                    "network.libvirt",
                    &iface.name,
                ));
            }
            if scan.own_bridges.contains(&iface.name) && !matches!(scan.route, Route::None(_)) {
                row.add_suffix(&remove_button(&iface.name));
            }
            imp.bridges_group.add(&row);
            imp.bridge_rows.borrow_mut().push(row.upcast());
        }
        // A bridge Passthrough made but that is not up (yet): still removable.
        for bridge in scan
            .own_bridges
            .iter()
            .filter(|b| scan.report.interface(b).is_none())
        {
            any = true;
            let row = adw::ActionRow::new();
            row.set_title(bridge);
            let mut subtitle = gettext("Set up by Passthrough, not active yet");
            if let Some((n, _)) = libvirt.iter().find(|(_, b)| b == bridge) {
                subtitle.push_str(" · ");
                subtitle.push_str(&gettext_f(
                    "virtual machines use it through the libvirt network “{name}”",
                    &[("name", n)],
                ));
            }
            row.set_subtitle(&glib::markup_escape_text(&subtitle));
            row.set_subtitle_lines(0);
            row.add_suffix(&remove_button(bridge));
            imp.bridges_group.add(&row);
            imp.bridge_rows.borrow_mut().push(row.upcast());
        }
        imp.bridges_group.set_visible(any);
    }

    /// The plan as the form says: the selected port's plan with the bridge name typed.
    fn current_plan(&self) -> Option<BridgePlan> {
        let imp = self.imp();
        let scan = imp.scan.borrow();
        let plan = scan
            .as_ref()?
            .plans
            .get(imp.port_row.selected() as usize)?
            .clone();
        Some(BridgePlan {
            bridge: imp.name_row.text().trim().to_owned(),
            ..plan
        })
    }

    fn set_status(&self, text: &str) {
        let label = &self.imp().status_label;
        label.set_text(text);
        label.set_visible(!text.is_empty());
    }

    fn update_preview(&self) {
        let imp = self.imp();
        if imp.filling.get() {
            return;
        }
        let scan = imp.scan.borrow();
        let Some(scan) = scan.as_ref() else { return };
        let root = imp.root.borrow().clone();
        let plan = self.current_plan();
        imp.preview_ok.set(false);
        let (summary, files, error) = match (&scan.route, &plan) {
            (Route::None(text), _) => (String::new(), String::new(), Some(text.clone())),
            (_, None) => (
                String::new(),
                String::new(),
                Some(gettext(
                    "No wired interface can be a bridge port: a bridge needs a network cable.",
                )),
            ),
            (route, Some(plan)) => {
                let summary = network::describe(plan)
                    .iter()
                    .map(|l| format!("• {l}"))
                    .collect::<Vec<_>>()
                    .join("\n");
                let checked = match route {
                    Route::Nm => passthrough_core::network::nm::check_for_nm(plan)
                        .and_then(|()| network::netplan_yaml(plan, Renderer::NetworkManager))
                        .map(|_| {
                            gettext_f(
                                "NetworkManager connections “Passthrough bridge {bridge}” and its port {port}, made under a checkpoint: NetworkManager undoes them by itself unless you keep the change.",
                                &[("bridge", &plan.bridge), ("port", &plan.port)],
                            )
                        }),
                    _ => render::render(
                        &HostRoot::new(&root),
                        &scan.report,
                        &NetworkChange::Create { plan: plan.clone() },
                    )
                    .map(|r| files_text(&r)),
                };
                match checked {
                    Ok(files) => (summary, files, None),
                    Err(e) => (summary, String::new(), Some(e)),
                }
            }
        };
        imp.summary_label.set_text(&summary);
        imp.summary_label.set_visible(!summary.is_empty());
        imp.files_view.buffer().set_text(&files);
        imp.files_expander.set_visible(!files.is_empty());
        imp.files_expander
            .set_label(Some(&if scan.route == Route::Nm {
                gettext("NetworkManager")
            } else {
                gettext("Files")
            }));
        imp.preview_ok.set(error.is_none());
        imp.apply_button
            .set_sensitive(error.is_none() && !imp.busy.get());
        if imp.pending.borrow().is_none() && imp.outcome.get() == Outcome::None {
            self.set_status(error.as_deref().unwrap_or(""));
        } else if let Some(e) = &error {
            self.set_status(e);
        }
        // Warnings: the port carries the default route, or the app runs over SSH.
        let mut warnings = Vec::new();
        if let Some(plan) = &plan {
            if scan.report.default_route.as_deref() == Some(plan.port.as_str()) {
                warnings.push(gettext_f(
                    "This computer reaches the internet through {port}: its connection drops for a few seconds while the bridge takes over, and the router may give the bridge another address.",
                    &[("port", &plan.port)],
                ));
            }
        }
        if std::env::var_os("SSH_CONNECTION").is_some() {
            warnings.push(gettext(
                "You are connected over SSH: the session may drop. If you cannot answer “Keep” in time, the change undoes itself.",
            ));
        }
        imp.warning_row.set_visible(!warnings.is_empty());
        imp.warning_row
            .set_subtitle(&glib::markup_escape_text(&warnings.join("\n")));
    }

    async fn apply(&self) {
        let Some(plan) = self.current_plan() else {
            return;
        };
        if !self.imp().preview_ok.get() || self.imp().busy.get() {
            return;
        }
        let warnings = self.imp().warning_row.is_visible();
        if warnings && !self.confirm_apply(&plan).await {
            return;
        }
        let change = NetworkChange::Create { plan };
        self.run_change(change).await;
    }

    async fn remove(&self, bridge: &str) {
        if self.imp().busy.get() {
            return;
        }
        if std::env::var_os("PASSTHROUGH_TEST_ACTIONS").is_none() {
            let Some(window) = self.root().and_downcast::<gtk::Window>() else {
                return;
            };
            let dialog = adw::MessageDialog::new(
                Some(&window),
                Some(&gettext_f("Remove the Bridge {name}?", &[("name", bridge)])),
                Some(&gettext(
                    "The wired interface gets its earlier setup back. Virtual machines that use the bridge lose their network until you pick another one. You have a minute to keep the result.",
                )),
            );
            dialog.add_responses(&[
                ("cancel", &gettext("_Cancel")),
                ("remove", &gettext("_Remove")),
            ]);
            dialog.set_response_appearance("remove", adw::ResponseAppearance::Destructive);
            dialog.set_close_response("cancel");
            if crate::widgets::dialog_response(&dialog).await != "remove" {
                return;
            }
        }
        self.run_change(NetworkChange::Remove {
            bridge: bridge.to_owned(),
        })
        .await;
    }

    async fn confirm_apply(&self, plan: &BridgePlan) -> bool {
        if std::env::var_os("PASSTHROUGH_TEST_ACTIONS").is_some() {
            return true;
        }
        let Some(window) = self.root().and_downcast::<gtk::Window>() else {
            return false;
        };
        let body = format!(
            "{}\n\n{}",
            self.imp().warning_row.subtitle().unwrap_or_default(),
            ngettext_f(
                "If you cannot answer afterwards, the earlier setup comes back by itself after {n} second.",
                "If you cannot answer afterwards, the earlier setup comes back by itself after {n} seconds.",
                confirm_seconds(),
                &[("n", &confirm_seconds().to_string())],
            )
        );
        let dialog = adw::MessageDialog::new(
            Some(&window),
            Some(&gettext_f(
                "Move {port} to the Bridge {bridge}?",
                &[("port", &plan.port), ("bridge", &plan.bridge)],
            )),
            Some(&body),
        );
        dialog.add_responses(&[
            ("cancel", &gettext("_Cancel")),
            ("apply", &gettext("_Create Bridge")),
        ]);
        dialog.set_response_appearance("apply", adw::ResponseAppearance::Suggested);
        dialog.set_close_response("cancel");
        crate::widgets::dialog_response(&dialog).await == "apply"
    }

    /// Makes the change by its route, then asks whether to keep it.
    async fn run_change(&self, change: NetworkChange) {
        let imp = self.imp();
        let route = imp.scan.borrow().as_ref().map(|s| s.route.clone());
        let Some(route) = route else { return };
        imp.busy.set(true);
        imp.apply_button.set_sensitive(false);
        imp.outcome.set(Outcome::None);
        self.set_status(&gettext("Changing the network…"));
        let seconds = confirm_seconds();
        let root = imp.root.borrow().clone();
        let result: Result<Pending, String> = match route {
            Route::Nm => {
                let change = change.clone();
                gio::spawn_blocking(move || {
                    let nm = Nm::system().map_err(|e| e.message().to_owned())?;
                    match change {
                        NetworkChange::Create { plan } => nm
                            .apply_bridge(&plan, seconds)
                            .map(|a| Pending::Nm {
                                checkpoint: a.checkpoint,
                            })
                            .map_err(|e| e.message().to_owned()),
                        NetworkChange::Remove { bridge } => nm
                            .remove_bridge(&bridge, seconds)
                            .map(|r| Pending::Nm {
                                checkpoint: r.checkpoint,
                            })
                            .map_err(|e| e.message().to_owned()),
                    }
                })
                .await
                .unwrap_or_else(|_| Err(gettext("The network change stopped unexpectedly.")))
            }
            Route::Helper => {
                let json = serde_json::to_string(&change).expect("a change serializes");
                helper_client::apply_network(&root, &json, seconds, |_, _| {})
                    .await
                    .map(|id| Pending::Helper { id })
                    .map_err(|f| f.message())
            }
            Route::None(text) => Err(text),
        };
        imp.busy.set(false);
        match result {
            Ok(pending) => {
                imp.pending.replace(Some(pending));
                self.set_status(&gettext("Waiting for your answer…"));
                self.ask_keep(seconds, change).await;
            }
            Err(message) => {
                imp.outcome.set(Outcome::Failed);
                self.set_status(&message);
                self.update_preview();
            }
        }
    }

    /// "Keep this network setup?" with a countdown. No answer: the change undoes itself.
    async fn ask_keep(&self, seconds: u32, change: NetworkChange) {
        let Some(window) = self.root().and_downcast::<gtk::Window>() else {
            return;
        };
        let heading = match &change {
            NetworkChange::Create { .. } => gettext("Keep This Network Setup?"),
            NetworkChange::Remove { .. } => gettext("Keep the Network Without the Bridge?"),
        };
        let body = |left: u32| {
            ngettext_f(
                "If this computer can still reach the network, keep the change. If you do nothing, the earlier setup comes back in {n} second.",
                "If this computer can still reach the network, keep the change. If you do nothing, the earlier setup comes back in {n} seconds.",
                left,
                &[("n", &left.to_string())],
            )
        };
        let dialog = adw::MessageDialog::new(Some(&window), Some(&heading), Some(&body(seconds)));
        dialog.add_responses(&[
            ("revert", &gettext("_Undo Now")),
            ("keep", &gettext("_Keep")),
        ]);
        dialog.set_response_appearance("keep", adw::ResponseAppearance::Suggested);
        dialog.set_default_response(Some("keep"));
        dialog.set_close_response("revert");
        self.imp().keep_dialog.replace(Some(dialog.clone()));
        let left = std::rc::Rc::new(Cell::new(seconds));
        let expired = std::rc::Rc::new(Cell::new(false));
        let tick = glib::timeout_add_seconds_local(
            1,
            glib::clone!(
                #[weak]
                dialog,
                #[strong]
                left,
                #[strong]
                expired,
                #[upgrade_or]
                glib::ControlFlow::Break,
                move || {
                    let n = left.get().saturating_sub(1);
                    left.set(n);
                    if n == 0 {
                        expired.set(true);
                        dialog.response("expired");
                        return glib::ControlFlow::Break;
                    }
                    dialog.set_body(&body(n));
                    glib::ControlFlow::Continue
                }
            ),
        );
        let answer = crate::widgets::dialog_response(&dialog).await;
        if !expired.get() {
            tick.remove();
        }
        dialog.close();
        self.imp().keep_dialog.replace(None);
        let pending = self.imp().pending.take();
        let Some(pending) = pending else { return };
        self.imp().busy.set(true);
        let outcome = match answer.as_str() {
            "keep" => self.keep(&pending).await,
            "expired" => {
                self.set_status(&gettext("Waiting for the earlier setup to come back…"));
                // NetworkManager or the helper undoes it at the deadline: give them a moment.
                glib::timeout_future(Duration::from_secs(2)).await;
                Ok(Outcome::Expired)
            }
            _ => self.undo(&pending).await,
        };
        match outcome {
            Ok(outcome) => {
                self.imp().outcome.set(outcome);
                let text = match (outcome, &change) {
                    (Outcome::Kept, NetworkChange::Create { plan }) => gettext_f(
                        "The bridge {bridge} is set up and kept.",
                        &[("bridge", &plan.bridge)],
                    ),
                    (Outcome::Kept, NetworkChange::Remove { bridge }) => gettext_f(
                        "The bridge {bridge} is removed, and the wired interface has its earlier setup back.",
                        &[("bridge", bridge)],
                    ),
                    (Outcome::Expired, _) => gettext(
                        "The change was not kept in time, so the earlier network setup came back.",
                    ),
                    _ => gettext("The change was undone: the earlier network setup is back."),
                };
                self.set_status(&text);
                if let (Outcome::Kept, NetworkChange::Create { plan }) = (outcome, &change) {
                    // Defined first, so the refresh (which lists libvirt's networks) shows it.
                    let libvirt = self.define_libvirt_network(&plan.bridge).await;
                    self.refresh().await;
                    match libvirt {
                        Ok(()) => self.set_status(&text),
                        Err(message) => self.set_status(&format!("{text}\n{message}")),
                    }
                    self.imp().busy.set(false);
                    return;
                }
            }
            Err(message) => {
                self.imp().outcome.set(Outcome::Failed);
                self.set_status(&message);
            }
        }
        self.refresh().await;
        self.imp().busy.set(false);
    }

    async fn keep(&self, pending: &Pending) -> Result<Outcome, String> {
        let root = self.imp().root.borrow().clone();
        match pending.clone() {
            Pending::Helper { id } => helper_client::confirm_network(&root, &id)
                .await
                .map(|()| Outcome::Kept)
                .map_err(|f| f.message()),
            Pending::Nm { checkpoint } => gio::spawn_blocking(move || {
                Nm::system()
                    .and_then(|nm| nm.confirm(&checkpoint))
                    .map(|()| Outcome::Kept)
                    .map_err(|e| e.message().to_owned())
            })
            .await
            .unwrap_or_else(|_| Err(gettext("The network change stopped unexpectedly."))),
        }
    }

    async fn undo(&self, pending: &Pending) -> Result<Outcome, String> {
        let root = self.imp().root.borrow().clone();
        match pending.clone() {
            Pending::Helper { id } => helper_client::rollback(&root, &id, |_, _| {})
                .await
                .map(|()| Outcome::Undone)
                .map_err(|f| f.message()),
            Pending::Nm { checkpoint } => gio::spawn_blocking(move || {
                Nm::system()
                    .and_then(|nm| nm.rollback(&checkpoint))
                    .map(|()| Outcome::Undone)
                    .map_err(|e| e.message().to_owned())
            })
            .await
            .unwrap_or_else(|_| Err(gettext("The network change stopped unexpectedly."))),
        }
    }

    /// Answers the open "Keep?" dialog (the dialog's buttons, and tests).
    fn answer(&self, response: &str) {
        if let Some(dialog) = self.imp().keep_dialog.borrow().as_ref() {
            dialog.response(response);
        }
    }

    /// Defines and autostarts a libvirt network on `bridge`, so new VMs can use it; the
    /// error sentence when libvirt refuses. The caller lists the networks again.
    async fn define_libvirt_network(&self, bridge: &str) -> Result<(), String> {
        let Some(service) = self.imp().service.borrow().clone() else {
            return Ok(());
        };
        let bridge_name = bridge.to_owned();
        let result = service
            .call(move |c| {
                c.define_bridge_network(&bridge_name, &bridge_name)
                    .map_err(|e| e.message().to_owned())
            })
            .await;
        let info = result?;
        if let Some(win) = self.root().and_downcast::<crate::window::PtWindow>() {
            win.toast(&gettext_f(
                "Virtual machines can now use the bridge through the libvirt network “{name}”.",
                &[("name", &info.name)],
            ));
        }
        Ok(())
    }
}

/// A button of a bridge's row that activates `action` with the bridge's name.
fn row_button(label: &str, action: &str, bridge: &str) -> gtk::Button {
    let button = gtk::Button::with_mnemonic(label);
    button.set_valign(gtk::Align::Center);
    button.set_action_name(Some(action));
    button.set_action_target_value(Some(&bridge.to_variant()));
    button
}

/// Remove…, for a bridge Passthrough made.
fn remove_button(bridge: &str) -> gtk::Button {
    let button = row_button(&gettext("_Remove…"), "network.remove", bridge);
    button.add_css_class("destructive-action");
    button.set_tooltip_text(Some(&gettext(
        "Remove the bridge and give the wired interface its earlier setup back",
    )));
    button
}

/// The first of br0, br1, … that no interface has.
fn free_bridge_name(report: &NetworkReport) -> String {
    (0..)
        .map(|n| format!("br{n}"))
        .find(|n| report.interface(n).is_none())
        .expect("some brN is free")
}

fn files_text(rendered: &passthrough_core::plan::Rendered) -> String {
    let mut out = String::new();
    for f in &rendered.files {
        match &f.after {
            Some(text) => {
                out.push_str(&format!("# {}\n{text}\n", f.path));
            }
            None => out.push_str(&gettext_f("# {path}: removed\n", &[("path", &f.path)])),
        }
    }
    for c in &rendered.commands {
        out.push_str(&format!("$ {}\n", c.join(" ")));
    }
    out
}

fn interface_row(iface: &Interface, scan: &Scan) -> adw::ActionRow {
    let row = adw::ActionRow::new();
    row.set_title(&iface.name);
    let mut facts = vec![match iface.kind {
        InterfaceKind::Wired => gettext("wired"),
        InterfaceKind::Wifi => gettext("Wi-Fi (cannot be bridged)"),
        InterfaceKind::Bridge => gettext("bridge"),
    }];
    match (iface.kind, iface.carrier) {
        (InterfaceKind::Wired, Some(true)) => facts.push(gettext("cable connected")),
        (InterfaceKind::Wired, Some(false)) => facts.push(gettext("no cable")),
        (InterfaceKind::Wifi, Some(true)) => facts.push(gettext("connected")),
        _ => {}
    }
    if let Some(d) = scan.devices.iter().find(|d| d.interface == iface.name) {
        let addresses: Vec<&str> = d
            .ipv4_addresses
            .iter()
            .chain(d.ipv6_addresses.iter())
            .map(String::as_str)
            .collect();
        if !addresses.is_empty() {
            facts.push(addresses.join(", "));
        }
    }
    if scan.report.default_route.as_deref() == Some(iface.name.as_str()) {
        facts.push(gettext("default route"));
    }
    if let Some(master) = &iface.master {
        facts.push(gettext_f("port of {bridge}", &[("bridge", master)]));
    }
    row.set_subtitle(&glib::markup_escape_text(&facts.join(" · ")));
    row.set_subtitle_lines(0);
    let icon = match iface.kind {
        InterfaceKind::Wired => "network-wired-symbolic",
        InterfaceKind::Wifi => "network-wireless-symbolic",
        InterfaceKind::Bridge => "network-workgroup-symbolic",
    };
    row.add_prefix(&gtk::Image::from_icon_name(icon));
    row
}
