//! [`PtBootPage`]: the Boot configuration step. The user picks the cards to reserve and the
//! kernel options; the page shows exactly what will change (rendered by core, the same code
//! the privileged helper runs), applies it through the helper after polkit says yes, and
//! lists earlier changes with a way back.

use std::cell::{Cell, RefCell};
use std::path::{Path, PathBuf};
use std::rc::Rc;

use adw::prelude::*;
use adw::subclass::prelude::*;
use gettextrs::gettext;
use gtk::{gio, glib};
use passthrough_core::cmdline::{KernelCmdline, PassthroughArgs};
use passthrough_core::cpu::CpuVendor;
use passthrough_core::gpu::{GpuVerdict, Verdict};
use passthrough_core::i18n::{gettext_f, ngettext_f};
use passthrough_core::pci::PciAddress;
use passthrough_core::plan::{BindBy, Plan, Rendered};
use passthrough_core::transaction::{self, TransactionRecord, TransactionState};
use passthrough_core::trial::{self, TrialStatus};
use passthrough_core::{markdown, plan_render, HostRoot};

use crate::helper_client::Failure;
use crate::widgets::{set_tone_icon, Tone};
use crate::window::Scan;

mod imp {
    use super::*;

    #[derive(Debug, Default, gtk::CompositeTemplate)]
    #[template(file = "boot_page.ui")]
    pub struct PtBootPage {
        #[template_child]
        pub(super) state: TemplateChild<gtk::Stack>,
        #[template_child]
        pub(super) status_icon: TemplateChild<gtk::Image>,
        #[template_child]
        pub(super) status_title: TemplateChild<gtk::Label>,
        #[template_child]
        pub(super) status_description: TemplateChild<gtk::Label>,
        #[template_child]
        pub(super) trial_actions: TemplateChild<gtk::Box>,
        #[template_child]
        pub(super) permanent_button: TemplateChild<gtk::Button>,
        #[template_child]
        pub(super) discard_button: TemplateChild<gtk::Button>,
        #[template_child]
        pub(super) trial_row: TemplateChild<adw::ActionRow>,
        #[template_child]
        pub(super) trial_switch: TemplateChild<gtk::Switch>,
        #[template_child]
        pub(super) gpus_group: TemplateChild<adw::PreferencesGroup>,
        #[template_child]
        pub(super) bind_row: TemplateChild<adw::ComboRow>,
        #[template_child]
        pub(super) iommu_row: TemplateChild<adw::ActionRow>,
        #[template_child]
        pub(super) iommu_switch: TemplateChild<gtk::Switch>,
        #[template_child]
        pub(super) pt_switch: TemplateChild<gtk::Switch>,
        #[template_child]
        pub(super) msrs_switch: TemplateChild<gtk::Switch>,
        #[template_child]
        pub(super) fb_row: TemplateChild<adw::ActionRow>,
        #[template_child]
        pub(super) fb_switch: TemplateChild<gtk::Switch>,
        #[template_child]
        pub(super) acs_switch: TemplateChild<gtk::Switch>,
        #[template_child]
        pub(super) preview_summary: TemplateChild<gtk::Label>,
        #[template_child]
        pub(super) diff_expander: TemplateChild<gtk::Expander>,
        #[template_child]
        pub(super) diff_view: TemplateChild<gtk::TextView>,
        #[template_child]
        pub(super) progress_revealer: TemplateChild<gtk::Revealer>,
        #[template_child]
        pub(super) progress_spinner: TemplateChild<gtk::Spinner>,
        #[template_child]
        pub(super) progress_label: TemplateChild<gtk::Label>,
        #[template_child]
        pub(super) progress_view: TemplateChild<gtk::TextView>,
        #[template_child]
        pub(super) history_group: TemplateChild<adw::PreferencesGroup>,

        pub(super) root: RefCell<PathBuf>,
        pub(super) scan: RefCell<Option<Rc<Scan>>>,
        /// One check button per GPU, with whether the card is reserved now.
        pub(super) gpu_checks: RefCell<Vec<(PciAddress, bool, gtk::CheckButton)>>,
        pub(super) gpu_rows: RefCell<Vec<adw::ActionRow>>,
        pub(super) history_rows: RefCell<Vec<adw::ActionRow>>,
        /// The last preview, applied as shown.
        pub(super) rendered: RefCell<Option<Rendered>>,
        /// Increases with every preview request, so a late answer never overwrites a newer one.
        pub(super) preview_serial: Cell<u64>,
        /// The serial of the last preview shown: behind `preview_serial` while one is worked
        /// out (tests wait for it before they press Apply).
        pub(super) preview_shown: Cell<u64>,
        /// Updating widgets from a scan: switch signals must not start previews meanwhile.
        pub(super) loading: Cell<bool>,
        pub(super) history_len: Cell<usize>,
        pub(super) apply_enabled: Cell<bool>,
        pub(super) status_tone: Cell<Option<Tone>>,
        /// The boot files give the next boot other arguments than the running kernel got.
        pub(super) config_differs: Cell<bool>,
        /// A change was applied in this session: the host needs a restart.
        pub(super) restart_pending: Cell<bool>,
        /// An Apply or Roll Back is under way (for tests, which wait for it).
        pub(super) busy: Cell<bool>,
        /// How the last Apply ended (for tests).
        pub(super) apply_outcome: Cell<ApplyOutcome>,
        /// The transaction the last Apply made (for tests).
        pub(super) applied: RefCell<Option<String>>,
        /// Progress lines received from the helper for the last Apply or Roll Back.
        pub(super) progress_lines: Cell<usize>,
        /// The applied trial whose entry is still there, and how it went.
        pub(super) trial: RefCell<Option<(TransactionRecord, TrialStatus)>>,
        /// The host has an AMD processor.
        pub(super) amd: Cell<bool>,
        /// Try once was offered already (it is switched on by default only the first time).
        pub(super) trial_offered: Cell<bool>,
    }

    #[glib::object_subclass]
    impl ObjectSubclass for PtBootPage {
        const NAME: &'static str = "PtBootPage";
        type Type = super::PtBootPage;
        type ParentType = adw::Bin;

        fn class_init(klass: &mut Self::Class) {
            klass.bind_template();
            klass.install_action("boot.apply", None, |page, _, _| {
                page.start_apply();
            });
            klass.install_action("boot.make-permanent", None, |page, _, _| {
                page.start_make_permanent();
            });
            klass.install_action("boot.discard-trial", None, |page, _, _| {
                page.discard_trial();
            });
        }

        fn instance_init(obj: &glib::subclass::InitializingObject<Self>) {
            obj.init_template();
        }
    }

    impl ObjectImpl for PtBootPage {
        fn constructed(&self) {
            self.parent_constructed();
            let obj = self.obj();
            for switch in [
                &*self.iommu_switch,
                &*self.pt_switch,
                &*self.msrs_switch,
                &*self.fb_switch,
                &*self.acs_switch,
                &*self.trial_switch,
            ] {
                switch.connect_active_notify(glib::clone!(
                    #[weak]
                    obj,
                    move |_| obj.refresh_preview()
                ));
            }
            self.bind_row.connect_selected_notify(glib::clone!(
                #[weak]
                obj,
                move |_| obj.refresh_preview()
            ));
            obj.action_set_enabled("boot.apply", false);
        }
    }

    impl WidgetImpl for PtBootPage {}
    impl BinImpl for PtBootPage {}
}

/// How the last Apply ended (for tests).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub enum ApplyOutcome {
    /// Not pressed yet, or still running.
    #[default]
    None,
    /// The helper applied the plan.
    Applied,
    /// The helper serves another host root than the app's: nothing was sent.
    OtherRoot,
    /// The helper could not be reached: nothing was sent.
    NotSent,
    /// The helper refused (polkit, validation) or failed and rolled back.
    Refused,
}

impl ApplyOutcome {
    pub fn name(self) -> &'static str {
        match self {
            Self::None => "none",
            Self::Applied => "applied",
            Self::OtherRoot => "other-root",
            Self::NotSent => "not-sent",
            Self::Refused => "refused",
        }
    }
}

glib::wrapper! {
    pub struct PtBootPage(ObjectSubclass<imp::PtBootPage>)
        @extends adw::Bin, gtk::Widget,
        @implements gtk::Buildable, gtk::ConstraintTarget;
}

/// Whether the kernel command line (or the driver) says the card is reserved already.
fn is_reserved(gpu: &GpuVerdict, args: &PassthroughArgs) -> bool {
    gpu.driver.as_deref() == Some("vfio-pci")
        || gpu.ids().is_some_and(|ids| {
            args.vfio_pci_ids
                .iter()
                .any(|i| i.eq_ignore_ascii_case(&ids))
        })
}

impl PtBootPage {
    pub fn set_root(&self, root: &Path) {
        self.imp().root.replace(root.to_path_buf());
    }

    pub fn set_failed(&self) {
        self.imp().state.set_visible_child_name("loading");
    }

    /// Fills the page from a new scan: the cards, what is set already, the history.
    pub fn set_scan(&self, scan: &Rc<Scan>) {
        let imp = self.imp();
        imp.loading.set(true);
        imp.scan.replace(Some(scan.clone()));
        let report = &scan.report;
        // Switches show what the boot files say (the next boot), which is what a plan
        // changes; the running kernel's arguments tell whether a restart is pending.
        let root = HostRoot::new(imp.root.borrow().clone());
        let configured = plan_render::configured_args(&root, report)
            .map(|words| KernelCmdline::parse(&words.join(" ")))
            .ok();
        let running = report.cmdline.clone().unwrap_or_default();
        let configured = configured.unwrap_or_else(|| running.clone());
        let relevant = |c: &KernelCmdline| -> Vec<String> {
            let mut v: Vec<String> = c.relevant().iter().map(|a| a.to_string()).collect();
            v.sort();
            v
        };
        imp.config_differs
            .set(relevant(&configured) != relevant(&running));
        let args = &configured.passthrough_args();

        for row in imp.gpu_rows.take() {
            imp.gpus_group.remove(&row);
        }
        let mut checks = Vec::new();
        for gpu in &report.gpus {
            let reserved = is_reserved(gpu, args);
            let row = adw::ActionRow::new();
            row.set_title(&glib::markup_escape_text(&gpu.display_name()));
            row.set_subtitle(&glib::markup_escape_text(&format!(
                "{} · {}",
                gpu.address,
                markdown::verdict_label(gpu.verdict)
            )));
            let check = gtk::CheckButton::new();
            check.set_valign(gtk::Align::Center);
            check.set_active(reserved);
            // Without an IOMMU nothing can be reserved; a card in a shared group only with the
            // ACS override, which the preview explains when it refuses.
            let possible = gpu.verdict != Verdict::NoIommu;
            check.set_sensitive(possible || reserved);
            check.connect_toggled(glib::clone!(
                #[weak(rename_to = page)]
                self,
                move |_| page.refresh_preview()
            ));
            row.add_prefix(&check);
            row.set_activatable_widget(Some(&check));
            imp.gpus_group.add(&row);
            imp.gpu_rows.borrow_mut().push(row);
            checks.push((gpu.address, reserved, check));
        }
        imp.gpu_checks.replace(checks);

        let amd = report.cpu.as_ref().map(|c| c.vendor) == Some(CpuVendor::Amd);
        imp.amd.set(amd);
        let set_switch = |switch: &gtk::Switch, on: bool| {
            // What the running kernel already has is shown on; turning it off again is what
            // Rollback is for.
            switch.set_active(on);
            switch.set_sensitive(!on);
        };
        if amd {
            imp.iommu_row.set_subtitle(&gettext(
                "On AMD processors the kernel turns the IOMMU on by itself: nothing to add. Turn it on in the firmware setup if it is off.",
            ));
            imp.iommu_switch.set_active(report.pci.iommu_enabled);
            imp.iommu_switch.set_sensitive(false);
        } else {
            imp.iommu_row
                .set_subtitle(&gettext("intel_iommu=on: needed on Intel processors."));
            set_switch(&imp.iommu_switch, args.intel_iommu_on());
        }
        set_switch(&imp.pt_switch, args.iommu.as_deref() == Some("pt"));
        set_switch(
            &imp.msrs_switch,
            args.kvm_ignore_msrs.as_deref() == Some("1"),
        );
        set_switch(
            &imp.fb_switch,
            args.efifb_off() || args.initcall_blacklist.iter().any(|i| i == "sysfb_init"),
        );
        set_switch(&imp.acs_switch, args.pcie_acs_override.is_some());
        // Try once where the boot loader can boot an entry once; on by default there.
        match trial::target(&root, report) {
            Ok(_) => {
                imp.trial_row.set_subtitle(&gettext(
                    "The next start uses the new kernel arguments once, through an extra boot entry. If it fails, restarting again brings back the old ones; after a good start, Passthrough offers to make them permanent.",
                ));
                imp.trial_switch.set_sensitive(true);
                if !imp.trial_offered.replace(true) {
                    imp.trial_switch.set_active(true);
                }
            }
            Err(reason) => {
                imp.trial_row
                    .set_subtitle(&glib::markup_escape_text(&reason));
                imp.trial_switch.set_active(false);
                imp.trial_switch.set_sensitive(false);
            }
        }
        imp.fb_row.set_subtitle(&gettext(
            "video=efifb:off, or initcall_blacklist=sysfb_init on kernels with simpledrm: the host's console lets go of the card, which the boot GPU needs.",
        ));
        imp.loading.set(false);

        self.update_status();
        self.refresh_history();
        self.refresh_preview();
        imp.state.set_visible_child_name("content");
    }

    /// Ticks a card for reservation (the Graphics card step's Reserve button).
    pub fn reserve(&self, address: PciAddress) {
        for (addr, _, check) in self.imp().gpu_checks.borrow().iter() {
            if *addr == address && check.is_sensitive() {
                check.set_active(true);
            }
        }
    }

    /// Whether the page examines this computer rather than a copy of a host (`--root`),
    /// whose changes go only to a helper that serves that copy.
    fn is_live(&self) -> bool {
        HostRoot::new(self.imp().root.borrow().clone()).is_live()
    }

    /// The verification shown at the top (for tests): `ready` when the IOMMU is on and a
    /// card is held by vfio-pci, `restart` when the boot files await a restart, else `choose`.
    pub fn status_name(&self) -> &'static str {
        match self.imp().trial.borrow().as_ref().map(|(_, s)| *s) {
            Some(TrialStatus::Pending) => return "trial-pending",
            Some(TrialStatus::Worked) => return "trial-worked",
            Some(TrialStatus::FellBack) => return "trial-failed",
            None => {}
        }
        match self.imp().status_tone.get() {
            Some(Tone::Ok) => "ready",
            Some(Tone::Warning) => "restart",
            _ => "choose",
        }
    }

    /// Files the current preview changes (for tests).
    pub fn preview_files(&self) -> usize {
        self.imp()
            .rendered
            .borrow()
            .as_ref()
            .map_or(0, |r| r.files.len())
    }

    /// Whether Apply can be pressed now (for tests).
    pub fn apply_enabled(&self) -> bool {
        self.imp().apply_enabled.get()
    }

    /// Transactions listed in the history (for tests).
    pub fn history_len(&self) -> usize {
        self.imp().history_len.get()
    }

    /// Whether an Apply or Roll Back, or working out the preview, is under way (for tests).
    pub fn is_busy(&self) -> bool {
        let imp = self.imp();
        imp.busy.get() || imp.preview_shown.get() != imp.preview_serial.get()
    }

    /// How the last Apply ended (for tests).
    pub fn apply_outcome(&self) -> ApplyOutcome {
        self.imp().apply_outcome.get()
    }

    /// The transaction the last Apply made (for tests).
    pub fn applied_id(&self) -> Option<String> {
        self.imp().applied.borrow().clone()
    }

    /// The sentence above the progress lines, and the lines, as shown (for tests).
    pub fn progress_text(&self) -> (String, Vec<String>) {
        let imp = self.imp();
        let buffer = imp.progress_view.buffer();
        let text = buffer.text(&buffer.start_iter(), &buffer.end_iter(), false);
        (
            imp.progress_label.label().to_string(),
            text.lines().map(str::to_owned).collect(),
        )
    }

    /// Progress lines received from the helper for the last Apply or Roll Back (for tests).
    pub fn progress_lines(&self) -> usize {
        self.imp().progress_lines.get()
    }

    /// Sets the step's choices from a plan (a fix proposed by the Troubleshooting step); the
    /// preview then shows what it changes, and nothing is applied before Apply.
    pub fn load_plan(&self, plan: &Plan) {
        let imp = self.imp();
        let set = |switch: &gtk::Switch, on: bool| {
            if on && switch.is_sensitive() {
                switch.set_active(true);
            }
        };
        set(&imp.iommu_switch, plan.enable_iommu);
        set(&imp.pt_switch, plan.iommu_pt);
        set(&imp.msrs_switch, plan.ignore_msrs);
        set(&imp.fb_switch, plan.boot_gpu_fix);
        set(&imp.acs_switch, plan.acs_override);
        for (addr, _, check) in imp.gpu_checks.borrow().iter() {
            if plan.reserve.contains(addr) && check.is_sensitive() {
                check.set_active(true);
            }
            if plan.release.contains(addr) {
                check.set_active(false);
            }
        }
        imp.bind_row.set_selected(match plan.bind_by {
            BindBy::Auto => 0,
            BindBy::Ids => 1,
            BindBy::Address => 2,
        });
        self.refresh_preview();
        self.show_changes();
    }

    /// Sets the Try Once First switch, where the host can try once.
    pub fn set_try_once(&self, on: bool) {
        let switch = &self.imp().trial_switch;
        if switch.is_sensitive() {
            switch.set_active(on);
        }
    }

    /// Unfolds the exact diff of the preview.
    pub fn show_changes(&self) {
        self.imp().diff_expander.set_expanded(true);
    }

    fn plan(&self) -> Plan {
        let imp = self.imp();
        let mut plan = Plan {
            // On AMD the switch only shows the IOMMU's state (nothing to add), but the plan
            // still asks for it: that removes an invalid amd_iommu=on or an amd_iommu=off.
            enable_iommu: imp.iommu_switch.is_active()
                && (imp.iommu_switch.is_sensitive() || imp.amd.get()),
            iommu_pt: imp.pt_switch.is_active() && imp.pt_switch.is_sensitive(),
            ignore_msrs: imp.msrs_switch.is_active() && imp.msrs_switch.is_sensitive(),
            boot_gpu_fix: imp.fb_switch.is_active() && imp.fb_switch.is_sensitive(),
            acs_override: imp.acs_switch.is_active() && imp.acs_switch.is_sensitive(),
            try_once: imp.trial_switch.is_active() && imp.trial_switch.is_sensitive(),
            bind_by: match imp.bind_row.selected() {
                1 => BindBy::Ids,
                2 => BindBy::Address,
                _ => BindBy::Auto,
            },
            ..Plan::default()
        };
        for (addr, reserved, check) in imp.gpu_checks.borrow().iter() {
            match (check.is_active(), *reserved) {
                (true, false) => plan.reserve.push(*addr),
                (false, true) => plan.release.push(*addr),
                _ => {}
            }
        }
        plan
    }

    /// Renders the plan off the GTK thread and shows its summary and diff.
    fn refresh_preview(&self) {
        let imp = self.imp();
        if imp.loading.get() {
            return;
        }
        let Some(scan) = imp.scan.borrow().clone() else {
            return;
        };
        let serial = imp.preview_serial.get() + 1;
        imp.preview_serial.set(serial);
        let plan = self.plan();
        let root = imp.root.borrow().clone();
        let report = scan.report.clone();
        glib::spawn_future_local(glib::clone!(
            #[weak(rename_to = page)]
            self,
            async move {
                let result = gio::spawn_blocking(move || {
                    plan_render::render(&HostRoot::new(root), &report, &plan)
                        .map(|r| {
                            let diff = plan_render::unified_diff(&r);
                            (r, diff)
                        })
                        .map_err(|e| e.to_string())
                })
                .await;
                if page.imp().preview_serial.get() != serial {
                    return;
                }
                page.imp().preview_shown.set(serial);
                match result {
                    Ok(Ok((rendered, diff))) => page.show_preview(Some(rendered), &diff, None),
                    Ok(Err(message)) => page.show_preview(None, "", Some(&message)),
                    Err(_) => page.show_preview(
                        None,
                        "",
                        Some(&gettext("Working out the changes failed unexpectedly.")),
                    ),
                }
            }
        ));
    }

    fn show_preview(&self, rendered: Option<Rendered>, diff: &str, error: Option<&str>) {
        let imp = self.imp();
        imp.diff_view.buffer().set_text(diff);
        let text = match (&rendered, error) {
            (_, Some(message)) => message.to_owned(),
            (Some(r), None) if r.is_empty() => {
                gettext("Nothing to change: the boot configuration already matches these choices.")
            }
            (Some(r), None) => summary(r),
            (None, None) => String::new(),
        };
        let has_changes = rendered.as_ref().is_some_and(|r| !r.is_empty());
        imp.diff_expander.set_visible(has_changes);
        // The helper changes the root it serves (`/` on a real system): a plan made for a copy
        // of another computer is sent only to a helper that serves that copy, which Apply
        // asks first.
        let can_apply = has_changes;
        let text = if has_changes && !self.is_live() {
            format!(
                "{text}\n{}",
                gettext("This is a copy of another computer: Apply changes it only through a Passthrough helper started for this copy, and otherwise sends nothing.")
            )
        } else {
            text
        };
        imp.preview_summary.set_label(&text);
        imp.rendered.replace(rendered);
        imp.apply_enabled.set(can_apply);
        self.action_set_enabled("boot.apply", can_apply);
    }

    fn update_status(&self) {
        let imp = self.imp();
        let Some(scan) = imp.scan.borrow().clone() else {
            return;
        };
        let report = &scan.report;
        let held: Vec<&GpuVerdict> = report
            .gpus
            .iter()
            .filter(|g| g.driver.as_deref() == Some("vfio-pci"))
            .collect();
        let root = HostRoot::new(imp.root.borrow().clone());
        let records = transaction::list(&root).unwrap_or_default();
        let current = trial::current(&root, report, &records);
        let status = current.as_ref().map(|(_, s)| *s);
        imp.trial.replace(current);
        imp.trial_actions.set_visible(matches!(
            status,
            Some(TrialStatus::Worked | TrialStatus::FellBack)
        ));
        imp.permanent_button
            .set_visible(status == Some(TrialStatus::Worked));
        let (tone, title, description) = if let Some(status) = status {
            match status {
                TrialStatus::Pending => (
                    Tone::Warning,
                    gettext("Restart to Try the New Settings"),
                    gettext_f(
                        "The next start uses “{entry}” once, with the new kernel arguments. If the computer does not start properly, restart it again: the start after it uses the previous settings.",
                        &[("entry", trial::TITLE)],
                    ),
                ),
                TrialStatus::Worked => (
                    Tone::Ok,
                    gettext("The Trial Start Worked"),
                    gettext("This start uses the new kernel arguments. Make them permanent to keep them at every start, or remove the trial to go back."),
                ),
                TrialStatus::FellBack => (
                    Tone::Error,
                    gettext("The Trial Start Did Not Finish"),
                    gettext("The computer started again with the previous settings, so the trial entry did not reach the desktop or was not chosen. Remove the trial, then look at the Troubleshooting step before trying again."),
                ),
            }
        } else if imp.restart_pending.get() || imp.config_differs.get() {
            (
                Tone::Warning,
                gettext("Restart to Finish"),
                gettext("The new boot configuration is written. It takes effect when the computer restarts; after that, this page checks that the IOMMU is on and the card is held by vfio-pci."),
            )
        } else if report.pci.iommu_enabled && !held.is_empty() {
            let names: Vec<String> = held.iter().map(|g| g.display_name()).collect();
            (
                Tone::Ok,
                gettext("Ready"),
                ngettext_f(
                    "The IOMMU is on and {names} is held by vfio-pci. Go on with the Network step.",
                    "The IOMMU is on and {names} are held by vfio-pci. Go on with the Network step.",
                    held.len() as u32,
                    &[("names", &names.join(", "))],
                ),
            )
        } else {
            (
                Tone::Info,
                gettext("Choose What to Change"),
                gettext("Nothing is written until you press Apply and authenticate. Every change is backed up and can be rolled back."),
            )
        };
        imp.status_tone.set(Some(tone));
        set_tone_icon(&imp.status_icon, Some(tone));
        imp.status_title.set_label(&title);
        imp.status_description.set_label(&description);
    }

    /// Lists the transactions recorded on the host, newest first, each with Rollback.
    fn refresh_history(&self) {
        let imp = self.imp();
        for row in imp.history_rows.take() {
            imp.history_group.remove(&row);
        }
        let root = HostRoot::new(imp.root.borrow().clone());
        let records = match transaction::list(&root) {
            Ok(records) => records,
            Err(e) => {
                tracing::warn!("cannot read the transaction journal: {e}");
                Vec::new()
            }
        };
        imp.history_len.set(records.len());
        if records.is_empty() {
            let row = adw::ActionRow::new();
            row.set_title(&gettext("No changes yet"));
            imp.history_group.add(&row);
            imp.history_rows.borrow_mut().push(row);
            return;
        }
        for record in records {
            let row = adw::ActionRow::new();
            let title = if record.is_trial() {
                gettext_f("Trial start: {summary}", &[("summary", &record.summary)])
            } else {
                record.summary.clone()
            };
            row.set_title(&glib::markup_escape_text(&title));
            let when = glib::DateTime::from_unix_local(record.started as i64)
                .and_then(|t| t.format("%x %X"))
                .map(|t| t.to_string())
                .unwrap_or_default();
            row.set_subtitle(&glib::markup_escape_text(&format!(
                "{when} · {} · {}",
                record.id,
                record.state.label()
            )));
            // On a copy of a host, Roll Back (like Apply) goes only to a helper serving it.
            if record.state == TransactionState::Applied {
                let button = gtk::Button::with_mnemonic(&gettext("_Roll Back…"));
                button.set_valign(gtk::Align::Center);
                let id = record.id.to_string();
                button.connect_clicked(glib::clone!(
                    #[weak(rename_to = page)]
                    self,
                    move |_| {
                        let id = id.clone();
                        glib::spawn_future_local(async move { page.rollback(id).await });
                    }
                ));
                row.add_suffix(&button);
            }
            imp.history_group.add(&row);
            imp.history_rows.borrow_mut().push(row);
        }
    }

    fn window(&self) -> Option<crate::window::PtWindow> {
        self.root().and_downcast::<crate::window::PtWindow>()
    }

    fn start_progress(&self, label: &str) {
        let imp = self.imp();
        imp.progress_view.buffer().set_text("");
        imp.progress_lines.set(0);
        set_progress_view_visible(&imp.progress_view, false);
        imp.progress_label.set_label(label);
        imp.progress_spinner.set_visible(true);
        imp.progress_spinner.start();
        imp.progress_revealer.set_reveal_child(true);
        imp.apply_enabled.set(false);
        self.action_set_enabled("boot.apply", false);
    }

    fn stop_progress(&self, label: &str) {
        let imp = self.imp();
        imp.progress_label.set_label(label);
        imp.progress_spinner.stop();
        // A stopped spinner would leave a blank square before the sentence.
        imp.progress_spinner.set_visible(false);
    }

    /// Shows a `Progress` signal: a step starting (empty `line`) or a line of its output.
    fn append_progress(&self, step: &str, line: &str) {
        let imp = self.imp();
        imp.progress_lines.set(imp.progress_lines.get() + 1);
        set_progress_view_visible(&imp.progress_view, true);
        let text = if line.is_empty() {
            step.to_owned()
        } else {
            format!("    {line}")
        };
        let buffer = imp.progress_view.buffer();
        buffer.insert(&mut buffer.end_iter(), &text);
        buffer.insert(&mut buffer.end_iter(), "\n");
    }

    /// Presses Apply: marks the page busy at once (tests wait for it), then applies.
    pub fn start_apply(&self) {
        let imp = self.imp();
        if !imp.apply_enabled.get() || imp.busy.replace(true) {
            return;
        }
        glib::spawn_future_local(glib::clone!(
            #[weak(rename_to = page)]
            self,
            async move { page.apply(page.plan()).await }
        ));
    }

    /// Makes the trial that worked permanent: asks with a summary of what changes, then
    /// applies the trial's permanent plan (which also removes the trial entry).
    pub fn start_make_permanent(&self) {
        let imp = self.imp();
        let Some(plan) = imp
            .trial
            .borrow()
            .as_ref()
            .and_then(|(record, _)| record.permanent.clone())
        else {
            return;
        };
        let Some(scan) = imp.scan.borrow().clone() else {
            return;
        };
        let root = HostRoot::new(imp.root.borrow().clone());
        let text = match plan_render::render(&root, &scan.report, &plan) {
            Ok(rendered) => summary(&rendered),
            Err(e) => e.message(),
        };
        if imp.busy.replace(true) {
            return;
        }
        glib::spawn_future_local(glib::clone!(
            #[weak(rename_to = page)]
            self,
            async move {
                if page.confirm_permanent(&text).await {
                    page.apply(plan).await;
                } else {
                    page.imp().busy.set(false);
                }
            }
        ));
    }

    async fn confirm_permanent(&self, text: &str) -> bool {
        // Tests press it without a dialog.
        if std::env::var_os("PASSTHROUGH_TEST_ACTIONS").is_some() {
            return true;
        }
        let Some(window) = self.window() else {
            return false;
        };
        let dialog = adw::MessageDialog::new(
            Some(&window),
            Some(&gettext("Make the New Settings Permanent?")),
            Some(text),
        );
        dialog.add_responses(&[
            ("cancel", &gettext("_Cancel")),
            ("apply", &gettext("_Make Permanent")),
        ]);
        dialog.set_response_appearance("apply", adw::ResponseAppearance::Suggested);
        dialog.set_default_response(Some("apply"));
        dialog.set_close_response("cancel");
        crate::widgets::dialog_response(&dialog).await == "apply"
    }

    /// Rolls the trial back (its entry goes, the one-shot request is cancelled).
    pub fn discard_trial(&self) {
        let Some(id) = self
            .imp()
            .trial
            .borrow()
            .as_ref()
            .map(|(record, _)| record.id.to_string())
        else {
            return;
        };
        glib::spawn_future_local(glib::clone!(
            #[weak(rename_to = page)]
            self,
            async move { page.rollback(id).await }
        ));
    }

    /// Applies `plan` through the helper (polkit asks for authentication). On a copy of a
    /// host the helper is asked first whether it serves that copy; if not, nothing is sent.
    async fn apply(&self, plan: Plan) {
        // The caller marked the page busy.
        let imp = self.imp();
        imp.apply_outcome.set(ApplyOutcome::None);
        imp.applied.replace(None);
        let Ok(plan_json) = serde_json::to_string(&plan) else {
            imp.busy.set(false);
            return;
        };
        self.start_progress(&gettext("Applying the new boot configuration…"));
        let root = imp.root.borrow().clone();
        let result = crate::helper_client::apply(&root, &plan_json, |step, line| {
            self.append_progress(step, line);
        })
        .await;
        match result {
            Ok(id) => {
                self.stop_progress(&gettext_f(
                    "Done. Change {id} is recorded in the history.",
                    &[("id", &id)],
                ));
                imp.apply_outcome.set(ApplyOutcome::Applied);
                imp.applied.replace(Some(id));
                imp.restart_pending.set(true);
                self.update_status();
                self.refresh_history();
                self.ask_restart();
            }
            Err(failure) => {
                imp.apply_outcome.set(match failure {
                    Failure::OtherRoot { .. } => ApplyOutcome::OtherRoot,
                    Failure::NotSent(_) => ApplyOutcome::NotSent,
                    Failure::Refused(_) => ApplyOutcome::Refused,
                });
                self.stop_progress(&failure.message());
                self.refresh_preview();
            }
        }
        imp.busy.set(false);
    }

    async fn rollback(&self, id: String) {
        let Some(window) = self.window() else { return };
        let dialog = adw::MessageDialog::new(
            Some(&window),
            Some(&gettext("Roll Back This Change?")),
            Some(&gettext("The files it changed are restored exactly as they were, and the boot files are regenerated. Restart afterwards.")),
        );
        dialog.add_responses(&[
            ("cancel", &gettext("_Cancel")),
            ("rollback", &gettext("_Roll Back")),
        ]);
        dialog.set_response_appearance("rollback", adw::ResponseAppearance::Destructive);
        dialog.set_default_response(Some("cancel"));
        dialog.set_close_response("cancel");
        if crate::widgets::dialog_response(&dialog).await != "rollback" {
            return;
        }
        if self.imp().busy.replace(true) {
            return;
        }
        self.start_progress(&gettext("Rolling back…"));
        let root = self.imp().root.borrow().clone();
        let result = crate::helper_client::rollback(&root, &id, |step, line| {
            self.append_progress(step, line);
        })
        .await;
        match result {
            Ok(()) => {
                self.stop_progress(&gettext(
                    "Rolled back. Restart to use the restored configuration.",
                ));
                self.imp().restart_pending.set(true);
                self.update_status();
                self.refresh_history();
                self.ask_restart();
            }
            Err(failure) => self.stop_progress(&failure.message()),
        }
        self.imp().busy.set(false);
        self.refresh_preview();
    }

    fn ask_restart(&self) {
        let Some(window) = self.window() else { return };
        let dialog = adw::MessageDialog::new(
            Some(&window),
            Some(&gettext("Restart Now?")),
            Some(&gettext("The new boot configuration takes effect after a restart. Save your work in other apps first.")),
        );
        dialog.add_responses(&[
            ("later", &gettext("_Later")),
            ("restart", &gettext("_Restart")),
        ]);
        dialog.set_response_appearance("restart", adw::ResponseAppearance::Suggested);
        dialog.set_default_response(Some("later"));
        dialog.set_close_response("later");
        glib::spawn_future_local(glib::clone!(
            #[weak]
            window,
            async move {
                if crate::widgets::dialog_response(&dialog).await == "restart" {
                    if let Err(message) = crate::helper_client::reboot().await {
                        window.toast(&message);
                    }
                }
            }
        ));
    }
}

/// Shows the progress lines' box only when there are lines to show.
fn set_progress_view_visible(view: &gtk::TextView, visible: bool) {
    if let Some(scrolled) = view.parent() {
        scrolled.set_visible(visible);
    }
}

/// A plain-language summary of a rendered plan.
fn summary(r: &Rendered) -> String {
    let mut parts = Vec::new();
    if !r.kernel_args.add.is_empty() {
        parts.push(gettext_f(
            "Adds to the kernel command line: {args}",
            &[("args", &r.kernel_args.add.join(" "))],
        ));
    }
    if !r.kernel_args.remove.is_empty() {
        parts.push(gettext_f(
            "Removes from the kernel command line: {args}",
            &[("args", &r.kernel_args.remove.join(" "))],
        ));
    }
    if !r.files.is_empty() {
        let paths: Vec<&str> = r.files.iter().map(|f| f.path.as_str()).collect();
        parts.push(ngettext_f(
            "Changes {n} file: {files}",
            "Changes {n} files: {files}",
            paths.len() as u32,
            &[("files", &paths.join(", "))],
        ));
    }
    if !r.commands.is_empty() {
        let commands: Vec<String> = r.commands.iter().map(|c| c.join(" ")).collect();
        parts.push(gettext_f(
            "Then runs: {commands}",
            &[("commands", &commands.join("; "))],
        ));
    }
    parts.extend(r.notes.iter().cloned());
    parts.join("\n")
}
