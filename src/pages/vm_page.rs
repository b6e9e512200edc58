//! [`PtVmPage`]: the Virtual machine step. Lists the VMs of the libvirt connection with
//! their state, starts and stops them, opens the viewer, adds them to the app grid, opens
//! the Passthrough settings of a VM made elsewhere, and creates a new one with the wizard.

use std::cell::{Cell, RefCell};
use std::path::PathBuf;
use std::rc::Rc;

use adw::prelude::*;
use adw::subclass::prelude::*;
use gettextrs::gettext;
use gtk::{gio, glib};
use passthrough_core::i18n::gettext_f;
use passthrough_core::vm::libvirt::{DomainInfo, DomainState};
use passthrough_core::vm::{features, launcher};
use passthrough_core::HostRoot;

use crate::vm_service::VmService;
use crate::widgets::{set_tone_icon, PtVmPanel, PtVmWizard, Tone};
use crate::window::Scan;

mod imp {
    use super::*;

    #[derive(Debug, Default, gtk::CompositeTemplate)]
    #[template(file = "vm_page.ui")]
    pub struct PtVmPage {
        #[template_child]
        pub(super) status_icon: TemplateChild<gtk::Image>,
        #[template_child]
        pub(super) status_title: TemplateChild<gtk::Label>,
        #[template_child]
        pub(super) status_description: TemplateChild<gtk::Label>,
        #[template_child]
        pub(super) vms_group: TemplateChild<adw::PreferencesGroup>,

        pub(super) root: RefCell<PathBuf>,
        pub(super) scan: RefCell<Option<Rc<Scan>>>,
        pub(super) service: RefCell<Option<VmService>>,
        pub(super) rows: RefCell<Vec<gtk::Widget>>,
        pub(super) domains: RefCell<Vec<DomainInfo>>,
        /// A list or an action is under way (tests wait for it).
        pub(super) busy: Cell<u32>,
        /// Whether the last listing worked (for tests).
        pub(super) connected: Cell<bool>,
        /// The last error shown (for tests).
        pub(super) last_error: RefCell<Option<String>>,
    }

    #[glib::object_subclass]
    impl ObjectSubclass for PtVmPage {
        const NAME: &'static str = "PtVmPage";
        type Type = super::PtVmPage;
        type ParentType = adw::Bin;

        fn class_init(klass: &mut Self::Class) {
            klass.bind_template();
            klass.install_action("vm.new", None, |page, _, _| page.open_wizard());
            klass.install_action("vm.refresh", None, |page, _, _| page.refresh_all());
            for (name, op) in [
                ("vm.start", Op::Start),
                ("vm.shutdown", Op::Shutdown),
                ("vm.force-off", Op::ForceOff),
                ("vm.open", Op::Open),
                ("vm.settings", Op::Settings),
                ("vm.add-launcher", Op::AddLauncher),
                ("vm.remove-launcher", Op::RemoveLauncher),
                ("vm.delete", Op::Delete),
                ("vm.diagnose", Op::Diagnose),
            ] {
                klass.install_action(name, Some(glib::VariantTy::STRING), move |page, _, p| {
                    if let Some(uuid) = p.and_then(|p| p.str()) {
                        page.run_op(op, uuid.to_owned());
                    }
                });
            }
        }

        fn instance_init(obj: &glib::subclass::InitializingObject<Self>) {
            obj.init_template();
        }
    }

    impl ObjectImpl for PtVmPage {}
    impl WidgetImpl for PtVmPage {}
    impl BinImpl for PtVmPage {}
}

glib::wrapper! {
    pub struct PtVmPage(ObjectSubclass<imp::PtVmPage>)
        @extends adw::Bin, gtk::Widget,
        @implements gtk::Buildable, gtk::ConstraintTarget;
}

/// What a VM row's buttons and menu do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Op {
    Start,
    Shutdown,
    ForceOff,
    Open,
    Settings,
    AddLauncher,
    RemoveLauncher,
    Delete,
    Diagnose,
}

/// Where launchers go: `$XDG_DATA_HOME` (`~/.local/share`).
pub fn data_home() -> PathBuf {
    launcher::data_home().unwrap_or_else(glib::user_data_dir)
}

/// The libvirt URI: `PASSTHROUGH_LIBVIRT_URI`, else the `libvirt-uri` setting, else
/// `qemu:///system`.
pub fn libvirt_uri() -> String {
    if std::env::var_os(launcher::URI_ENV).is_some_and(|u| !u.is_empty()) {
        return launcher::default_uri();
    }
    gio::Application::default()
        .and_downcast::<crate::application::PtApplication>()
        .and_then(|app| {
            app.settings_with_key("libvirt-uri")
                .map(|s| s.string("libvirt-uri").to_string())
        })
        .filter(|u| !u.is_empty())
        .unwrap_or_else(launcher::default_uri)
}

impl PtVmPage {
    pub fn set_root(&self, root: &std::path::Path) {
        self.imp().root.replace(root.to_path_buf());
    }

    pub fn set_scan(&self, scan: &Rc<Scan>) {
        self.imp().scan.replace(Some(scan.clone()));
    }

    /// The libvirt connection, started on first use (the step is not visited at start-up).
    pub fn service(&self) -> VmService {
        let imp = self.imp();
        let uri = libvirt_uri();
        let current = imp.service.borrow().clone();
        match current {
            Some(s) if s.uri() == uri => s,
            _ => {
                let s = VmService::new(&uri);
                imp.service.replace(Some(s.clone()));
                s
            }
        }
    }

    /// Whether a listing or action is under way (for tests).
    pub fn is_busy(&self) -> bool {
        self.imp().busy.get() > 0
    }

    /// VMs listed (for tests).
    pub fn vm_count(&self) -> usize {
        self.imp().domains.borrow().len()
    }

    /// The VMs listed, as `name:state` (for tests).
    pub fn vm_states(&self) -> Vec<String> {
        self.imp()
            .domains
            .borrow()
            .iter()
            .map(|d| format!("{}:{:?}", d.name, d.state))
            .collect()
    }

    /// Whether the last listing reached libvirt (for tests).
    pub fn connected(&self) -> bool {
        self.imp().connected.get()
    }

    pub fn last_error(&self) -> Option<String> {
        self.imp().last_error.borrow().clone()
    }

    fn begin(&self) {
        let imp = self.imp();
        imp.busy.set(imp.busy.get() + 1);
    }

    fn end(&self) {
        let imp = self.imp();
        imp.busy.set(imp.busy.get().saturating_sub(1));
    }

    fn window(&self) -> Option<crate::window::PtWindow> {
        self.root().and_downcast::<crate::window::PtWindow>()
    }

    fn toast(&self, text: &str) {
        if let Some(w) = self.window() {
            w.toast(text);
        }
    }

    fn error(&self, text: &str) {
        self.imp().last_error.replace(Some(text.to_owned()));
        eprintln!("vm: {text}");
        self.toast(text);
    }

    /// Lists the VMs again here and on the Launch step.
    fn refresh_all(&self) {
        match self.window() {
            Some(w) => w.refresh_vms(),
            None => self.refresh(),
        }
    }

    /// Lists the VMs again.
    pub fn refresh(&self) {
        let service = self.service();
        self.begin();
        glib::spawn_future_local(glib::clone!(
            #[weak(rename_to = page)]
            self,
            async move {
                let result = service.call(|c| c.domains().map_err(|e| e.message())).await;
                page.show_domains(result, service.uri());
                page.end();
            }
        ));
    }

    fn show_domains(&self, result: Result<Vec<DomainInfo>, String>, uri: &str) {
        let imp = self.imp();
        for row in imp.rows.take() {
            imp.vms_group.remove(&row);
        }
        match result {
            Ok(domains) => {
                imp.connected.set(true);
                let running = domains
                    .iter()
                    .filter(|d| d.state == DomainState::Running)
                    .count();
                set_tone_icon(&imp.status_icon, Some(Tone::Ok));
                imp.status_title.set_label(&gettext("Connected to libvirt"));
                imp.status_description
                    .set_label(&ngettext_vms(domains.len(), running, uri));
                if domains.is_empty() {
                    let row = adw::ActionRow::new();
                    row.set_title(&gettext("No virtual machines yet"));
                    row.set_subtitle(&gettext(
                        "Create one for Windows with the reserved graphics card.",
                    ));
                    imp.vms_group.add(&row);
                    imp.rows.borrow_mut().push(row.upcast());
                }
                let launchers: Vec<String> = launcher::installed(&data_home())
                    .into_iter()
                    .map(|(uuid, _)| uuid)
                    .collect();
                for d in &domains {
                    let row = self.domain_row(d, launchers.contains(&d.uuid));
                    imp.vms_group.add(&row);
                    imp.rows.borrow_mut().push(row.upcast());
                }
                // Launchers whose VM is gone go too.
                let uuids: Vec<String> = domains.iter().map(|d| d.uuid.clone()).collect();
                for stale in launcher::stale(&data_home(), &uuids) {
                    let _ = std::fs::remove_file(&stale);
                }
                imp.domains.replace(domains);
            }
            Err(message) => {
                imp.connected.set(false);
                imp.domains.replace(Vec::new());
                set_tone_icon(&imp.status_icon, Some(Tone::Error));
                imp.status_title.set_label(&gettext("Cannot Reach libvirt"));
                imp.status_description.set_label(&message);
                imp.last_error.replace(Some(message));
            }
        }
    }

    fn domain_row(&self, d: &DomainInfo, has_launcher: bool) -> adw::ActionRow {
        let row = adw::ActionRow::new();
        row.set_title(&glib::markup_escape_text(&d.name));
        row.set_subtitle(&glib::markup_escape_text(&d.state.label()));
        let icon = gtk::Image::from_icon_name(match d.state {
            DomainState::Running => "media-playback-start-symbolic",
            DomainState::Paused => "media-playback-pause-symbolic",
            _ => "system-shutdown-symbolic",
        });
        row.add_prefix(&icon);
        let target = d.uuid.to_variant();
        let (label, action) = match d.state {
            DomainState::Running | DomainState::Paused => (gettext("Shut _Down"), "vm.shutdown"),
            _ => (gettext("_Start"), "vm.start"),
        };
        let primary = gtk::Button::with_mnemonic(&label);
        primary.set_valign(gtk::Align::Center);
        primary.set_action_name(Some(action));
        primary.set_action_target_value(Some(&target));
        if action == "vm.start" {
            primary.add_css_class("suggested-action");
        }
        row.add_suffix(&primary);

        let menu = gio::Menu::new();
        let section = gio::Menu::new();
        let item = |label: &str, action: &str| {
            let i = gio::MenuItem::new(Some(label), None);
            i.set_action_and_target_value(Some(action), Some(&target));
            i
        };
        section.append_item(&item(&gettext("_Open"), "vm.open"));
        if d.state == DomainState::Running {
            section.append_item(&item(&gettext("_Force Off"), "vm.force-off"));
        }
        menu.append_section(None, &section);
        let section = gio::Menu::new();
        section.append_item(&item(&gettext("_Passthrough Settings…"), "vm.settings"));
        section.append_item(&item(&gettext("D_iagnose"), "vm.diagnose"));
        if has_launcher {
            section.append_item(&item(
                &gettext("_Remove from App Grid"),
                "vm.remove-launcher",
            ));
        } else {
            section.append_item(&item(&gettext("_Add to App Grid"), "vm.add-launcher"));
        }
        menu.append_section(None, &section);
        let section = gio::Menu::new();
        section.append_item(&item(&gettext("_Delete…"), "vm.delete"));
        menu.append_section(None, &section);
        let more = gtk::MenuButton::new();
        more.set_icon_name("view-more-symbolic");
        more.set_valign(gtk::Align::Center);
        more.set_menu_model(Some(&menu));
        more.add_css_class("flat");
        more.set_tooltip_text(Some(&gettext("More")));
        row.add_suffix(&more);
        row
    }

    /// A listed VM by UUID (the rows' actions) or name (tests).
    fn domain(&self, uuid_or_name: &str) -> Option<DomainInfo> {
        let domains = self.imp().domains.borrow();
        domains
            .iter()
            .find(|d| d.uuid == uuid_or_name)
            .or_else(|| domains.iter().find(|d| d.name == uuid_or_name))
            .cloned()
    }

    fn run_op(&self, op: Op, uuid: String) {
        let Some(domain) = self.domain(&uuid) else {
            self.error(&gettext_f(
                "There is no virtual machine “{name}”.",
                &[("name", &uuid)],
            ));
            return;
        };
        let uuid = domain.uuid.clone();
        match op {
            Op::Open => self.open_viewer(&domain),
            Op::Settings => self.open_panel(&domain),
            Op::AddLauncher => {
                match launcher::install(&data_home(), &domain.name, &domain.uuid) {
                    Ok(_) => self.toast(&gettext_f(
                        "“{name}” is in the app grid.",
                        &[("name", &domain.name)],
                    )),
                    Err(e) => self.error(&gettext_f(
                        "Cannot add “{name}” to the app grid: {error}",
                        &[("name", &domain.name), ("error", &e.to_string())],
                    )),
                }
                self.refresh_all();
            }
            Op::RemoveLauncher => {
                if let Err(e) = launcher::remove(&data_home(), &domain.uuid) {
                    self.error(&e.to_string());
                }
                self.refresh_all();
            }
            Op::Diagnose => {
                let service = self.service();
                self.begin();
                glib::spawn_future_local(glib::clone!(
                    #[weak(rename_to = page)]
                    self,
                    async move {
                        let id = domain.uuid.clone();
                        match service
                            .call(move |c| c.xml(&id).map_err(|e| e.message()))
                            .await
                        {
                            Ok(xml) => {
                                if let Some(w) = page.window() {
                                    w.diagnose_vm(&domain.name, &xml);
                                }
                            }
                            Err(message) => page.error(&message),
                        }
                        page.end();
                    }
                ));
            }
            Op::Delete => {
                glib::spawn_future_local(glib::clone!(
                    #[weak(rename_to = page)]
                    self,
                    async move { page.delete(domain).await }
                ));
            }
            Op::Start | Op::Shutdown | Op::ForceOff => {
                let service = self.service();
                self.begin();
                glib::spawn_future_local(glib::clone!(
                    #[weak(rename_to = page)]
                    self,
                    async move {
                        let id = uuid.clone();
                        let root = HostRoot::new(page.imp().root.borrow().clone());
                        let report = page.imp().scan.borrow().as_ref().map(|s| s.report.clone());
                        let result = service
                            .call(move |c| {
                                if op == Op::Start {
                                    // The boot GPU is removed and the bus rescanned first,
                                    // as the launcher does (the reference post's fix).
                                    if let Some(report) = &report {
                                        let xml = c.xml(&id).map_err(|e| e.message())?;
                                        let hostdevs = features::read(&xml)
                                            .map_err(|e| e.message().to_owned())?
                                            .hostdevs;
                                        for a in launcher::boot_vga_hostdevs(report, &hostdevs) {
                                            launcher::reset_gpu_with_helper(&root, &a)?;
                                        }
                                    }
                                }
                                match op {
                                    Op::Start => c.start(&id),
                                    Op::Shutdown => c.shutdown(&id),
                                    _ => c.force_off(&id),
                                }
                                .map_err(|e| e.message())
                            })
                            .await;
                        if let Err(message) = result {
                            page.error(&message);
                        }
                        page.end();
                        page.refresh_all();
                    }
                ));
            }
        }
    }

    /// Changes a VM's settings (a fix from the Troubleshooting step) and defines it again.
    pub fn apply_edits(&self, name: &str, edits: Vec<features::Edit>) {
        let Some(domain) = self.domain(name) else {
            self.error(&gettext_f(
                "There is no virtual machine “{name}”.",
                &[("name", name)],
            ));
            return;
        };
        let service = self.service();
        self.begin();
        glib::spawn_future_local(glib::clone!(
            #[weak(rename_to = page)]
            self,
            async move {
                let id = domain.uuid.clone();
                let result = service
                    .call(move |c| {
                        let xml = c.xml(&id).map_err(|e| e.message())?;
                        let new =
                            features::edit(&xml, &edits).map_err(|e| e.message().to_owned())?;
                        c.define(&new).map_err(|e| e.message())
                    })
                    .await;
                match result {
                    Ok(_) => page.toast(&gettext_f(
                        "The settings of “{name}” were changed. Start it again to use them.",
                        &[("name", &domain.name)],
                    )),
                    Err(message) => page.error(&message),
                }
                page.end();
            }
        ));
    }

    async fn delete(&self, domain: DomainInfo) {
        let Some(window) = self.window() else { return };
        let dialog = adw::MessageDialog::new(
            Some(&window),
            Some(&gettext_f(
                "Delete “{name}”?",
                &[("name", &domain.name)],
            )),
            Some(&gettext(
                "The virtual machine, its firmware variables and its TPM state are removed, and so is its launcher in the app grid. Its disk image is kept.",
            )),
        );
        dialog.add_responses(&[
            ("cancel", &gettext("_Cancel")),
            ("delete", &gettext("_Delete")),
        ]);
        dialog.set_response_appearance("delete", adw::ResponseAppearance::Destructive);
        dialog.set_default_response(Some("cancel"));
        dialog.set_close_response("cancel");
        // Tests press Delete without the dialog.
        if std::env::var_os("PASSTHROUGH_TEST_ACTIONS").is_none()
            && crate::widgets::dialog_response(&dialog).await != "delete"
        {
            return;
        }
        let service = self.service();
        self.begin();
        let uuid = domain.uuid.clone();
        let running = domain.state == DomainState::Running;
        let result = service
            .call(move |c| {
                if running {
                    c.force_off(&uuid).map_err(|e| e.message())?;
                }
                c.undefine(&uuid).map_err(|e| e.message())
            })
            .await;
        match result {
            Ok(()) => {
                let _ = launcher::remove(&data_home(), &domain.uuid);
                self.toast(&gettext_f(
                    "“{name}” was deleted.",
                    &[("name", &domain.name)],
                ));
            }
            Err(message) => self.error(&message),
        }
        self.end();
        self.refresh_all();
    }

    fn open_viewer(&self, domain: &DomainInfo) {
        let path = std::env::var_os("PATH").unwrap_or_default();
        let viewer = launcher::find_viewer(&path);
        match launcher::viewer_command(&viewer, &libvirt_uri(), &domain.uuid) {
            Some(argv) => {
                if let Err(e) = launcher::spawn_detached(&argv, &[]) {
                    self.error(&gettext_f(
                        "Cannot open {viewer}: {error}",
                        &[("viewer", &argv[0]), ("error", &e.to_string())],
                    ));
                }
            }
            None => self.error(&launcher::no_viewer_hint()),
        }
    }

    fn open_wizard(&self) {
        let Some(window) = self.window() else { return };
        let Some(scan) = self.imp().scan.borrow().clone() else {
            return;
        };
        let wizard = PtVmWizard::new(&window, &scan, &self.imp().root.borrow(), self.service());
        wizard.connect_closure(
            "created",
            false,
            glib::closure_local!(
                #[weak(rename_to = page)]
                self,
                move |_: PtVmWizard, name: String| {
                    page.toast(&gettext_f("“{name}” was created.", &[("name", &name)]));
                    page.refresh_all();
                }
            ),
        );
        wizard.present();
    }

    fn open_panel(&self, domain: &DomainInfo) {
        let Some(window) = self.window() else { return };
        let scan = self.imp().scan.borrow().clone();
        let panel = PtVmPanel::new(&window, domain, scan.as_deref(), self.service());
        panel.present();
    }
}

fn ngettext_vms(total: usize, running: usize, uri: &str) -> String {
    passthrough_core::i18n::ngettext_f(
        "{n} virtual machine on {uri}, {running} running.",
        "{n} virtual machines on {uri}, {running} running.",
        total as u32,
        &[("uri", uri), ("running", &running.to_string())],
    )
}
