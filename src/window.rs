//! [`PtWindow`]: the setup steps in a sidebar, the selected step beside it.
//!
//! The host is scanned off the GTK thread once the window is on screen, and again on
//! `win.refresh`. Window actions: `win.refresh`, `win.show-page` (a step name, or `groups`
//! for the IOMMU groups of the Graphics card step), `win.search`, `win.search-for` (a text),
//! `win.reserve-gpu` (an address: ticks the card on the Boot configuration step),
//! `win.show-changes` (unfolds the exact diff there), `win.apply-changes` (presses that
//! step's Apply button: the helper is asked, as with a click; nothing happens while Apply is
//! disabled), `win.try-once` (a boolean: the step's Try Once First switch, where it can be
//! on), `win.make-permanent` (presses Make Permanent after a trial start that worked; tests
//! get no confirmation dialog), `win.back`.
//!
//! Hooks for tests, read from the environment: `PASSTHROUGH_TEST_ACTIONS` (actions run after
//! the first scan, each once the scan, preview, Apply or Roll Back it started is over),
//! `PASSTHROUGH_TEST_REPORT=1` (prints `ready: gpus=N checks=M page=NAME …`, the Boot
//! configuration step's state included: `applied=ID|-`, `apply-outcome=NAME`,
//! `progress-lines=N`; before it, the step's progress as `boot-progress-label: TEXT` and one
//! `boot-progress: LINE` per line shown),
//! `PASSTHROUGH_TEST_SCREENSHOT=FILE.png` (saves the window, then quits) and
//! `PASSTHROUGH_TIMING=1` (prints `first-window: MS` on stderr, and `first-frame-ns` on
//! stdout for build-aux/bench, then quits).

use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::time::Duration;

use adw::prelude::*;
use adw::subclass::prelude::*;
use gettextrs::gettext;
use gtk::{gio, glib};
use passthrough_core::checks::{self, Check};
use passthrough_core::{HostReport, HostRoot, ScanOptions};

use crate::application::PtApplication;
use crate::pages::{
    GpuView, PtBootPage, PtGpuPage, PtLaunchPage, PtNetworkPage, PtSystemPage, PtTroubleshootPage,
    PtVmPage,
};

/// The steps, in the order of the sidebar; `--page` and `win.show-page` take these names.
pub const PAGES: &[&str] = &[
    "system",
    "gpu",
    "boot",
    "network",
    "vm",
    "launch",
    "troubleshoot",
];

/// Further names `--page` and `win.show-page` accept: `groups` opens the IOMMU groups view
/// of the Graphics card step.
pub const PAGE_ALIASES: &[&str] = &["groups"];

pub fn is_page_name(name: &str) -> bool {
    PAGES.contains(&name) || PAGE_ALIASES.contains(&name)
}

/// What one scan of the host produced.
#[derive(Debug)]
pub struct Scan {
    pub report: HostReport,
    pub checks: Vec<Check>,
}

// A scan is made on a worker thread and handed to the GTK thread: it must be `Send`.
const _: fn() = || {
    fn is_send<T: Send>() {}
    is_send::<Scan>();
};

const DEFAULT_WIDTH: i32 = 1100;
const DEFAULT_HEIGHT: i32 = 720;

mod imp {
    use std::cell::{Cell, RefCell};

    use super::*;

    #[derive(Debug, Default, gtk::CompositeTemplate)]
    #[template(file = "window.ui")]
    pub struct PtWindow {
        #[template_child]
        pub(super) leaflet: TemplateChild<adw::Leaflet>,
        #[template_child]
        pub(super) sidebar_list: TemplateChild<gtk::ListBox>,
        #[template_child]
        pub(super) content: TemplateChild<gtk::Box>,
        #[template_child]
        pub(super) content_title: TemplateChild<adw::WindowTitle>,
        #[template_child]
        pub(super) scan_spinner: TemplateChild<gtk::Spinner>,
        #[template_child]
        pub(super) toast_overlay: TemplateChild<adw::ToastOverlay>,
        #[template_child]
        pub(super) stack: TemplateChild<gtk::Stack>,
        #[template_child]
        pub(super) system_page: TemplateChild<PtSystemPage>,
        #[template_child]
        pub(super) gpu_page: TemplateChild<PtGpuPage>,
        #[template_child]
        pub(super) boot_page: TemplateChild<PtBootPage>,
        #[template_child]
        pub(super) network_page: TemplateChild<PtNetworkPage>,
        #[template_child]
        pub(super) vm_page: TemplateChild<PtVmPage>,
        #[template_child]
        pub(super) launch_page: TemplateChild<PtLaunchPage>,
        #[template_child]
        pub(super) troubleshoot_page: TemplateChild<PtTroubleshootPage>,
        /// The VM steps were shown once (libvirt is reached only from then on).
        pub(super) vms_listed: Cell<bool>,

        /// The directory read as the host's `/`.
        pub(super) root: RefCell<PathBuf>,
        /// The last scan shown.
        pub(super) scan: RefCell<Option<Rc<Scan>>>,
        pub(super) scanning: Cell<bool>,
        /// Completed scans, reported to tests so they can tell a refresh happened.
        pub(super) scans_done: Cell<u32>,
        pub(super) mapped_once: Cell<bool>,
    }

    #[glib::object_subclass]
    impl ObjectSubclass for PtWindow {
        const NAME: &'static str = "PtWindow";
        type Type = super::PtWindow;
        type ParentType = adw::ApplicationWindow;

        fn class_init(klass: &mut Self::Class) {
            PtSystemPage::ensure_type();
            PtGpuPage::ensure_type();
            PtBootPage::ensure_type();
            PtNetworkPage::ensure_type();
            PtVmPage::ensure_type();
            PtLaunchPage::ensure_type();
            PtTroubleshootPage::ensure_type();
            klass.bind_template();
            klass.bind_template_instance_callbacks();

            klass.install_action_async("win.refresh", None, |win, _, _| async move {
                win.scan().await;
            });
            klass.install_action(
                "win.show-page",
                Some(glib::VariantTy::STRING),
                |win, _, param| {
                    if let Some(name) = param.and_then(|p| p.str()) {
                        win.show_page(name);
                    }
                },
            );
            klass.install_action("win.search", None, |win, _, _| {
                win.show_page("groups");
                win.imp().gpu_page.focus_search();
            });
            klass.install_action(
                "win.search-for",
                Some(glib::VariantTy::STRING),
                |win, _, param| {
                    if let Some(text) = param.and_then(|p| p.str()) {
                        win.show_page("groups");
                        win.imp().gpu_page.search_for(text);
                    }
                },
            );
            klass.install_action(
                "win.reserve-gpu",
                Some(glib::VariantTy::STRING),
                |win, _, param| {
                    let address = param.and_then(|p| p.str()).and_then(|a| a.parse().ok());
                    if let Some(address) = address {
                        win.show_page("boot");
                        win.imp().boot_page.reserve(address);
                    }
                },
            );
            klass.install_action("win.show-changes", None, |win, _, _| {
                win.show_page("boot");
                win.imp().boot_page.show_changes();
            });
            klass.install_action("win.apply-changes", None, |win, _, _| {
                win.show_page("boot");
                let page = &win.imp().boot_page;
                if page.apply_enabled() {
                    page.start_apply();
                } else {
                    tracing::warn!("win.apply-changes: Apply is disabled");
                }
            });
            klass.install_action(
                "win.try-once",
                Some(glib::VariantTy::BOOLEAN),
                |win, _, param| {
                    if let Some(on) = param.and_then(|p| p.get::<bool>()) {
                        win.imp().boot_page.set_try_once(on);
                    }
                },
            );
            klass.install_action("win.make-permanent", None, |win, _, _| {
                win.show_page("boot");
                win.imp().boot_page.start_make_permanent();
            });
            klass.install_action("win.back", None, |win, _, _| {
                let leaflet = &win.imp().leaflet;
                if leaflet.is_folded() {
                    leaflet.navigate(adw::NavigationDirection::Back);
                }
            });
        }

        fn instance_init(obj: &glib::subclass::InitializingObject<Self>) {
            obj.init_template();
        }
    }

    impl ObjectImpl for PtWindow {
        fn constructed(&self) {
            self.parent_constructed();
            let obj = self.obj();
            self.root.replace(PathBuf::from("/"));
            obj.connect_map(|win| {
                if !win.imp().mapped_once.replace(true) && env_is_1("PASSTHROUGH_TIMING") {
                    eprintln!("first-window: {}", crate::ms_since_process_start());
                }
            });
        }
    }

    impl WidgetImpl for PtWindow {}

    impl WindowImpl for PtWindow {
        fn close_request(&self) -> glib::Propagation {
            self.obj().save_window_size();
            self.parent_close_request()
        }
    }

    impl ApplicationWindowImpl for PtWindow {}
    impl AdwApplicationWindowImpl for PtWindow {}
}

glib::wrapper! {
    pub struct PtWindow(ObjectSubclass<imp::PtWindow>)
        @extends adw::ApplicationWindow, gtk::ApplicationWindow, gtk::Window, gtk::Widget,
        @implements gio::ActionGroup, gio::ActionMap, gtk::Buildable,
            gtk::ConstraintTarget, gtk::Native, gtk::Root, gtk::ShortcutManager;
}

#[gtk::template_callbacks]
impl PtWindow {
    pub fn new(app: &PtApplication, root: &Path, start_page: Option<&str>) -> Self {
        let win: Self = glib::Object::builder().property("application", app).build();
        win.imp().root.replace(root.to_path_buf());
        win.imp().system_page.set_root(root);
        win.imp().boot_page.set_root(root);
        win.imp().vm_page.set_root(root);
        win.imp().network_page.set_root(root);
        win.imp()
            .network_page
            .set_service(win.imp().vm_page.service());
        win.imp().troubleshoot_page.set_root(root);
        app.bind_property("show-all-devices", &*win.imp().gpu_page, "show-all-devices")
            .sync_create()
            .build();
        win.load_window_size(app);
        win.show_page(start_page.unwrap_or("system"));
        win.on_page_changed();
        win
    }

    fn app(&self) -> Option<PtApplication> {
        self.application().and_downcast::<PtApplication>()
    }

    /// Shows a step (see [`PAGES`]) or `groups`; in a folded window, the step's page.
    pub fn show_page(&self, name: &str) {
        let imp = self.imp();
        let (page, view) = match name {
            "groups" => ("gpu", Some(GpuView::Groups)),
            "gpu" => ("gpu", Some(GpuView::Cards)),
            other => (other, None),
        };
        if imp.stack.child_by_name(page).is_none() {
            tracing::warn!("no page named {name:?}");
            return;
        }
        imp.stack.set_visible_child_name(page);
        if let Some(view) = view {
            imp.gpu_page.show_view(view);
        }
        imp.leaflet.set_visible_child(&*imp.content);
    }

    /// The name of the step shown, e.g. `gpu`.
    pub fn visible_page(&self) -> String {
        self.imp()
            .stack
            .visible_child_name()
            .map(|n| n.to_string())
            .unwrap_or_default()
    }

    fn sidebar_row(&self, name: &str) -> Option<gtk::ListBoxRow> {
        let list = &self.imp().sidebar_list;
        (0..)
            .map_while(|i| list.row_at_index(i))
            .find(|row| row.widget_name() == name)
    }

    #[template_callback]
    fn on_step_selected(&self, row: Option<&gtk::ListBoxRow>) {
        if let Some(row) = row {
            self.imp().stack.set_visible_child_name(&row.widget_name());
        }
    }

    #[template_callback]
    fn on_step_activated(&self, row: &gtk::ListBoxRow) {
        self.show_page(&row.widget_name());
    }

    #[template_callback]
    fn on_page_changed(&self) {
        let imp = self.imp();
        let Some(child) = imp.stack.visible_child() else {
            return;
        };
        let page = imp.stack.page(&child);
        imp.content_title
            .set_title(&page.title().map(|t| t.to_string()).unwrap_or_default());
        self.sync_sidebar();
        // libvirt is reached when a VM step is first shown, not at start-up.
        if matches!(page.name().as_deref(), Some("vm" | "launch")) {
            imp.vms_listed.set(true);
            self.refresh_vms();
        }
    }

    /// A fix from the Troubleshooting step that is a boot plan: shown on the Boot
    /// configuration step, previewed, applied only with Apply.
    pub fn fix_with_plan(&self, plan: &passthrough_core::plan::Plan) {
        self.show_page("boot");
        self.imp().boot_page.load_plan(plan);
    }

    /// A fix from the Troubleshooting step that changes a VM's settings: applied to its XML
    /// and defined again, as the Passthrough settings do.
    pub fn fix_vm(&self, name: &str, edits: Vec<passthrough_core::vm::features::Edit>) {
        self.imp().vm_page.apply_edits(name, edits);
    }

    /// Diagnoses a VM on the Troubleshooting step (the VM step's Diagnose).
    pub fn diagnose_vm(&self, name: &str, xml: &str) {
        self.show_page("troubleshoot");
        self.imp().troubleshoot_page.set_vm(name, xml);
    }

    /// Lists the VMs again on the Virtual machine and Launch steps.
    pub fn refresh_vms(&self) {
        let imp = self.imp();
        imp.vm_page.refresh();
        imp.launch_page.refresh(imp.vm_page.service());
    }

    /// A folded window shows one side at a time: its sidebar selects nothing, a click opens
    /// the step. Unfolded, the sidebar marks the step shown.
    #[template_callback]
    fn on_folded_changed(&self) {
        let imp = self.imp();
        let mode = if imp.leaflet.is_folded() {
            gtk::SelectionMode::None
        } else {
            gtk::SelectionMode::Single
        };
        imp.sidebar_list.set_selection_mode(mode);
        self.sync_sidebar();
    }

    fn sync_sidebar(&self) {
        let imp = self.imp();
        if imp.sidebar_list.selection_mode() == gtk::SelectionMode::None {
            return;
        }
        let current = self.visible_page();
        let selected = imp.sidebar_list.selected_row();
        if selected.as_ref().map(|r| r.widget_name()) != Some(current.as_str().into()) {
            if let Some(row) = self.sidebar_row(&current) {
                imp.sidebar_list.select_row(Some(&row));
            }
        }
    }

    /// Starts the first scan; call after `present()`.
    /// Starts the first scan once the window's first frame is on screen, so the window
    /// appears as fast as an empty one and fills in a moment later.
    pub fn start_first_scan(&self) {
        let start = glib::clone!(
            #[weak(rename_to = win)]
            self,
            move || {
                glib::spawn_future_local(async move { win.scan().await });
            }
        );
        match self.frame_clock() {
            Some(clock) => {
                let handler: Rc<std::cell::RefCell<Option<glib::SignalHandlerId>>> = Rc::default();
                let start = std::cell::Cell::new(Some(start));
                let h = handler.clone();
                let id = clock.connect_after_paint(move |clock| {
                    if let Some(id) = h.borrow_mut().take() {
                        clock.disconnect(id);
                    }
                    if let Some(start) = start.take() {
                        start();
                    }
                });
                handler.replace(Some(id));
            }
            // Not realized (cannot happen after present(), but never lose the scan).
            None => start(),
        }
    }

    /// Reads the host again off the GTK thread and shows the result in every page.
    pub async fn scan(&self) {
        let imp = self.imp();
        if imp.scanning.replace(true) {
            return;
        }
        let first = imp.scan.borrow().is_none();
        imp.scan_spinner.set_visible(true);
        imp.scan_spinner.start();
        self.action_set_enabled("win.refresh", false);

        let root = imp.root.borrow().clone();
        let result = gio::spawn_blocking(move || {
            let report = HostReport::scan(&HostRoot::new(root), &ScanOptions::default());
            let checks = checks::run(&report);
            Scan { report, checks }
        })
        .await;

        imp.scanning.set(false);
        imp.scan_spinner.stop();
        imp.scan_spinner.set_visible(false);
        self.action_set_enabled("win.refresh", true);

        match result {
            Ok(scan) => {
                imp.scans_done.set(imp.scans_done.get() + 1);
                let scan = Rc::new(scan);
                imp.system_page.set_scan(&scan);
                imp.gpu_page.set_scan(&scan);
                imp.boot_page.set_scan(&scan);
                imp.vm_page.set_scan(&scan);
                imp.troubleshoot_page.set_scan(&scan);
                imp.scan.replace(Some(scan));
                if first {
                    self.after_first_scan();
                } else {
                    self.toast(&gettext("Host scanned again"));
                }
            }
            Err(_) => {
                tracing::error!("the host scan panicked");
                self.toast(&gettext("Could not examine this computer"));
                if first {
                    imp.system_page.set_failed();
                    imp.gpu_page.set_failed();
                    imp.boot_page.set_failed();
                    self.after_first_scan();
                }
            }
        }
    }

    /// Shows a message for a few seconds (plain text: toasts take markup, so it is escaped).
    pub fn toast(&self, text: &str) {
        self.imp()
            .toast_overlay
            .add_toast(adw::Toast::new(&glib::markup_escape_text(text)));
    }

    /// Test hooks, run once the first scan is on screen: first the actions listed in
    /// `PASSTHROUGH_TEST_ACTIONS`, then the report line and the screenshot.
    fn after_first_scan(&self) {
        match std::env::var("PASSTHROUGH_TEST_ACTIONS") {
            Ok(actions) if !actions.trim().is_empty() => {
                glib::spawn_future_local(glib::clone!(
                    #[weak(rename_to = win)]
                    self,
                    async move {
                        win.run_test_actions(&actions).await;
                        win.report_for_tests();
                    }
                ));
            }
            _ => self.report_for_tests(),
        }
    }

    /// Activates detailed action names separated by `;` (`win.show-page::groups;win.refresh`),
    /// one after the other, each once the scan it may have started is done.
    async fn run_test_actions(&self, actions: &str) {
        for item in actions.split(';').map(str::trim).filter(|s| !s.is_empty()) {
            match gio::Action::parse_detailed_name(item) {
                Ok((name, target)) => {
                    if let Err(e) = self.activate_anywhere(&name, target.as_ref()) {
                        eprintln!("test action {item}: {e}");
                    }
                }
                Err(e) => eprintln!("test action {item}: {e}"),
            }
            glib::timeout_future(Duration::from_millis(300)).await;
            while self.imp().scanning.get()
                || self.imp().boot_page.is_busy()
                || self.imp().vm_page.is_busy()
                || self.imp().network_page.is_busy()
                || self.dialog().is_some_and(|d| d.is_busy())
            {
                glib::timeout_future(Duration::from_millis(50)).await;
            }
        }
    }

    /// Activates an action of the window, of a step's page (`vm.`, `launch.`, `boot.`) or
    /// of an open dialog (`wizard.`, `panel.`).
    fn activate_anywhere(
        &self,
        name: &str,
        target: Option<&glib::Variant>,
    ) -> Result<(), glib::BoolError> {
        let imp = self.imp();
        let mut widgets: Vec<gtk::Widget> = vec![
            self.clone().upcast(),
            imp.vm_page.clone().upcast(),
            imp.launch_page.clone().upcast(),
            imp.troubleshoot_page.clone().upcast(),
            imp.boot_page.clone().upcast(),
            imp.network_page.clone().upcast(),
        ];
        widgets.extend(self.dialog().map(|d| d.widget().upcast()));
        let mut last = None;
        for w in widgets {
            match WidgetExt::activate_action(&w, name, target) {
                Ok(()) => return Ok(()),
                Err(e) => last = Some(e),
            }
        }
        Err(last.expect("at least the window was tried"))
    }

    /// The VM wizard or Passthrough settings window open over this one, if any.
    fn dialog(&self) -> Option<Dialog> {
        gtk::Window::list_toplevels()
            .into_iter()
            .rev()
            .find_map(|w| {
                w.downcast_ref::<crate::widgets::PtVmWizard>()
                    .map(|d| Dialog::Wizard(d.clone()))
                    .or_else(|| {
                        w.downcast_ref::<crate::widgets::PtVmPanel>()
                            .map(|d| Dialog::Panel(d.clone()))
                    })
                    .or_else(|| {
                        w.downcast_ref::<adw::MessageDialog>()
                            .map(|d| Dialog::Message(d.clone()))
                    })
            })
            .filter(|d| d.widget().is_visible())
    }

    fn report_for_tests(&self) {
        if env_is_1("PASSTHROUGH_TEST_REPORT") {
            let boot = &self.imp().boot_page;
            let (label, lines) = boot.progress_text();
            println!("boot-progress-label: {}", label.replace('\n', " "));
            for line in lines {
                println!("boot-progress: {line}");
            }
            match self.imp().scan.borrow().as_ref() {
                Some(scan) => println!(
                    "ready: gpus={} checks={} page={} scans={} history={} preview={} apply={} boot={} applied={} apply-outcome={} progress-lines={}",
                    scan.report.gpus.len(),
                    scan.checks.len(),
                    self.visible_page(),
                    self.imp().scans_done.get(),
                    self.imp().boot_page.history_len(),
                    self.imp().boot_page.preview_files(),
                    self.imp().boot_page.apply_enabled(),
                    self.imp().boot_page.status_name(),
                    boot.applied_id().as_deref().unwrap_or("-"),
                    boot.apply_outcome().name(),
                    boot.progress_lines()
                ),
                None => println!("scan-failed: page={}", self.visible_page()),
            }
            if self.visible_page() == "network" {
                println!("{}", self.imp().network_page.test_report());
            }
            let ts = &self.imp().troubleshoot_page;
            println!(
                "troubleshoot: problems={} kb-visible={} kernel-log={}",
                ts.problem_ids().join(","),
                ts.visible_entries(),
                ts.has_kernel_log()
            );
            let vm = &self.imp().vm_page;
            if self.imp().vms_listed.get() {
                println!(
                    "vms: count={} connected={} launchers={} states={} dialog={}",
                    vm.vm_count(),
                    vm.connected(),
                    self.imp().launch_page.launchers(),
                    vm.vm_states().join(","),
                    self.dialog().map_or("-", |d| d.name())
                );
                if let Some(e) = vm.last_error() {
                    println!("vm-error: {e}");
                }
            }
        }
        if let Some(path) =
            std::env::var_os("PASSTHROUGH_TEST_SCREENSHOT").filter(|p| !p.is_empty())
        {
            let path = PathBuf::from(path);
            // With PASSTHROUGH_TEST_SCREENSHOT_DIALOG=1 the open dialog is saved instead.
            let dialog = env_is_1("PASSTHROUGH_TEST_SCREENSHOT_DIALOG")
                .then(|| self.dialog())
                .flatten();
            if let Some(dialog) = dialog {
                glib::timeout_add_local_once(
                    Duration::from_millis(800),
                    glib::clone!(
                        #[weak(rename_to = win)]
                        self,
                        move || {
                            match save_screenshot_of(dialog.widget().upcast_ref(), &path) {
                                Ok(()) => println!("screenshot: {}", path.display()),
                                Err(e) => eprintln!("screenshot failed: {e}"),
                            }
                            if let Some(app) = win.app() {
                                app.quit();
                            }
                        }
                    ),
                );
                return;
            }
            glib::timeout_add_local_once(
                Duration::from_millis(500),
                glib::clone!(
                    #[weak(rename_to = win)]
                    self,
                    move || win.take_screenshot_and_quit(path)
                ),
            );
        }
    }

    /// Saves a screenshot and quits. A window that is being laid out again has nothing to
    /// draw for a moment, so this tries again for a few seconds before it gives up.
    fn take_screenshot_and_quit(&self, path: PathBuf) {
        let mut attempts = 0;
        glib::timeout_add_local(
            Duration::from_millis(100),
            glib::clone!(
                #[weak(rename_to = win)]
                self,
                #[upgrade_or]
                glib::ControlFlow::Break,
                move || {
                    attempts += 1;
                    match win.save_screenshot(&path) {
                        Ok(()) => println!("screenshot: {}", path.display()),
                        Err(e) if attempts < 50 => {
                            tracing::debug!("screenshot not ready: {e}");
                            return glib::ControlFlow::Continue;
                        }
                        Err(e) => {
                            eprintln!("screenshot failed: {e}");
                            std::process::exit(1);
                        }
                    }
                    if let Some(app) = win.app() {
                        app.quit();
                    }
                    glib::ControlFlow::Break
                }
            ),
        );
    }

    /// Renders the window as it is on screen into a PNG file.
    pub fn save_screenshot(&self, path: &Path) -> Result<(), String> {
        save_screenshot_of(self.upcast_ref(), path)
    }

    fn load_window_size(&self, app: &PtApplication) {
        match size_settings(app) {
            Some(s) => {
                let (w, h) = (s.int("window-width"), s.int("window-height"));
                if w > 0 && h > 0 {
                    self.set_default_size(w, h);
                } else {
                    self.set_default_size(DEFAULT_WIDTH, DEFAULT_HEIGHT);
                }
                if s.boolean("is-maximized") {
                    self.maximize();
                }
            }
            None => self.set_default_size(DEFAULT_WIDTH, DEFAULT_HEIGHT),
        }
    }

    fn save_window_size(&self) {
        let Some(s) = self.app().as_ref().and_then(size_settings) else {
            return;
        };
        let (w, h) = self.default_size();
        let results = [
            s.set_int("window-width", w),
            s.set_int("window-height", h),
            s.set_boolean("is-maximized", self.is_maximized()),
        ];
        for r in results {
            if let Err(e) = r {
                tracing::warn!("cannot save the window size: {e}");
            }
        }
    }
}

const SIZE_KEYS: [&str; 3] = ["window-width", "window-height", "is-maximized"];

/// The settings, when the schema is installed and has the window size keys.
fn size_settings(app: &PtApplication) -> Option<gio::Settings> {
    if SIZE_KEYS.iter().all(|k| app.settings_with_key(k).is_some()) {
        app.settings().cloned()
    } else {
        None
    }
}

fn env_is_1(name: &str) -> bool {
    std::env::var_os(name).is_some_and(|v| v == "1")
}

/// Renders a window as it is on screen into a PNG file.
fn save_screenshot_of(window: &gtk::Window, path: &Path) -> Result<(), String> {
    let (width, height) = (window.width(), window.height());
    if width <= 0 || height <= 0 {
        return Err("the window has no size".into());
    }
    let paintable = gtk::WidgetPaintable::new(Some(window));
    let snapshot = gtk::Snapshot::new();
    paintable.snapshot(&snapshot, f64::from(width), f64::from(height));
    let node = snapshot
        .to_node()
        .ok_or_else(|| "nothing was drawn".to_string())?;
    let renderer = window
        .native()
        .and_then(|native| native.renderer())
        .ok_or_else(|| "the window has no renderer".to_string())?;
    let bounds = gtk::graphene::Rect::new(0.0, 0.0, width as f32, height as f32);
    let texture = renderer.render_texture(&node, Some(&bounds));
    texture
        .save_to_png(path)
        .map_err(|e| format!("cannot write {}: {e}", path.display()))
}

/// A dialog of the VM steps open over the main window.
enum Dialog {
    Wizard(crate::widgets::PtVmWizard),
    Panel(crate::widgets::PtVmPanel),
    /// A question (e.g. the Network step's "Keep this network setup?").
    Message(adw::MessageDialog),
}

impl Dialog {
    fn widget(&self) -> gtk::Window {
        match self {
            Self::Wizard(w) => w.clone().upcast(),
            Self::Panel(p) => p.clone().upcast(),
            Self::Message(m) => m.clone().upcast(),
        }
    }

    fn name(&self) -> &'static str {
        match self {
            Self::Wizard(_) => "wizard",
            Self::Panel(_) => "panel",
            Self::Message(_) => "message",
        }
    }

    /// Loading or saving (tests wait for it).
    fn is_busy(&self) -> bool {
        match self {
            Self::Wizard(w) => w.is_busy(),
            Self::Panel(p) => !p.is_loaded() || p.is_saving(),
            Self::Message(_) => false,
        }
    }
}
