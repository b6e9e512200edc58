//! [`PtTroubleshootPage`]: the Troubleshooting step. First what core's detectors find on
//! this computer (host report, kernel log, and the chosen VM's QEMU log and XML), each with
//! its cause, its fix and a Fix button where the fix is automated; then the searchable
//! knowledge base; and "Copy Report", the Markdown report for a forum post.

use std::cell::RefCell;
use std::path::PathBuf;
use std::rc::Rc;

use adw::prelude::*;
use adw::subclass::prelude::*;
use gettextrs::gettext;
use gtk::{gdk, glib};
use passthrough_core::diagnose::{self, Detection, FixAction, Inputs, Problem};
use passthrough_core::i18n::{gettext_f, ngettext_f};
use passthrough_core::HostRoot;

use crate::widgets::{set_tone_icon, Tone};
use crate::window::Scan;

mod imp {
    use super::*;

    #[derive(Debug, Default, gtk::CompositeTemplate)]
    #[template(file = "troubleshoot_page.ui")]
    pub struct PtTroubleshootPage {
        #[template_child]
        pub(super) status_icon: TemplateChild<gtk::Image>,
        #[template_child]
        pub(super) status_title: TemplateChild<gtk::Label>,
        #[template_child]
        pub(super) status_description: TemplateChild<gtk::Label>,
        #[template_child]
        pub(super) auth_button: TemplateChild<gtk::Button>,
        #[template_child]
        pub(super) problems_group: TemplateChild<adw::PreferencesGroup>,
        #[template_child]
        pub(super) kb_group: TemplateChild<adw::PreferencesGroup>,
        #[template_child]
        pub(super) kb_search: TemplateChild<gtk::SearchEntry>,

        pub(super) root: RefCell<PathBuf>,
        pub(super) scan: RefCell<Option<Rc<Scan>>>,
        /// The VM being diagnosed (its name and XML), from the VM step's Diagnose.
        pub(super) vm: RefCell<Option<(String, String)>>,
        pub(super) kernel_log: RefCell<Option<String>>,
        pub(super) qemu_log: RefCell<Option<String>>,
        pub(super) problems: RefCell<Vec<Problem>>,
        pub(super) problem_rows: RefCell<Vec<gtk::Widget>>,
        /// Knowledge-base rows with the text they are searched by.
        pub(super) kb_rows: RefCell<Vec<(adw::ExpanderRow, String)>>,
        /// The step was shown once: the knowledge base is built and the logs read only
        /// then, not at start-up.
        pub(super) loaded: std::cell::Cell<bool>,
    }

    #[glib::object_subclass]
    impl ObjectSubclass for PtTroubleshootPage {
        const NAME: &'static str = "PtTroubleshootPage";
        type Type = super::PtTroubleshootPage;
        type ParentType = adw::Bin;

        fn class_init(klass: &mut Self::Class) {
            klass.bind_template();
            klass.install_action("troubleshoot.copy-report", None, |page, _, _| {
                page.copy_report();
            });
            klass.install_action("troubleshoot.refresh", None, |page, _, _| {
                page.read_logs();
                page.run();
            });
            klass.install_action_async(
                "troubleshoot.read-with-helper",
                None,
                |page, _, _| async move { page.read_with_helper().await },
            );
            klass.install_action(
                "troubleshoot.fix",
                Some(glib::VariantTy::STRING),
                |page, _, p| {
                    if let Some(id) = p.and_then(|p| p.str()) {
                        page.fix(id);
                    }
                },
            );
            klass.install_action(
                "troubleshoot.search",
                Some(glib::VariantTy::STRING),
                |page, _, p| {
                    if let Some(text) = p.and_then(|p| p.str()) {
                        page.imp().kb_search.set_text(text);
                    }
                },
            );
        }

        fn instance_init(obj: &glib::subclass::InitializingObject<Self>) {
            obj.init_template();
        }
    }

    impl ObjectImpl for PtTroubleshootPage {
        fn constructed(&self) {
            self.parent_constructed();
            let obj = self.obj();
            obj.connect_map(|page| page.ensure_loaded());
            self.kb_search.connect_search_changed(glib::clone!(
                #[weak]
                obj,
                move |_| obj.filter_knowledge_base()
            ));
        }
    }

    impl WidgetImpl for PtTroubleshootPage {}
    impl BinImpl for PtTroubleshootPage {}
}

glib::wrapper! {
    pub struct PtTroubleshootPage(ObjectSubclass<imp::PtTroubleshootPage>)
        @extends adw::Bin, gtk::Widget,
        @implements gtk::Buildable, gtk::ConstraintTarget;
}

impl PtTroubleshootPage {
    pub fn set_root(&self, root: &std::path::Path) {
        self.imp().root.replace(root.to_path_buf());
    }

    pub fn set_scan(&self, scan: &Rc<Scan>) {
        self.imp().scan.replace(Some(scan.clone()));
        if self.imp().loaded.get() {
            self.read_logs();
            self.run();
        } else if self.is_mapped() {
            self.ensure_loaded();
        }
    }

    /// Builds the knowledge base and runs the detectors the first time the step is shown.
    fn ensure_loaded(&self) {
        let imp = self.imp();
        if imp.loaded.get() || imp.scan.borrow().is_none() {
            return;
        }
        imp.loaded.set(true);
        self.fill_knowledge_base();
        self.filter_knowledge_base();
        self.read_logs();
        self.run();
    }

    /// Diagnoses a VM too: its XML, and its QEMU log when it can be read.
    pub fn set_vm(&self, name: &str, xml: &str) {
        self.imp()
            .vm
            .replace(Some((name.to_owned(), xml.to_owned())));
        if self.imp().loaded.get() {
            self.read_logs();
            self.run();
        } else {
            self.ensure_loaded();
        }
    }

    /// Whether the kernel log was read (for tests).
    pub fn has_kernel_log(&self) -> bool {
        self.imp().kernel_log.borrow().is_some()
    }

    /// Problems found (for tests), as their ids.
    pub fn problem_ids(&self) -> Vec<String> {
        self.imp()
            .problems
            .borrow()
            .iter()
            .map(|p| p.id.clone())
            .collect()
    }

    /// Knowledge-base entries shown by the search (for tests).
    pub fn visible_entries(&self) -> usize {
        self.imp()
            .kb_rows
            .borrow()
            .iter()
            .filter(|(row, _)| row.is_visible())
            .count()
    }

    /// The kernel log (the root's `var/log/kern.log` or `dmesg` of a copy; `journalctl -k`
    /// on this computer) and the VM's QEMU log (`var/log/libvirt/qemu/NAME.log`), when
    /// readable. A log this user may not read is left out, and the step says so.
    fn read_logs(&self) {
        let imp = self.imp();
        let root = HostRoot::new(imp.root.borrow().clone());
        let kernel = if root.is_live() {
            std::process::Command::new("journalctl")
                .args(["-k", "-b", "--no-pager", "-o", "cat", "-q"])
                .output()
                .ok()
                .filter(|o| o.status.success() && !o.stdout.is_empty())
                .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        } else {
            ["/var/log/kern.log", "/var/log/dmesg"]
                .iter()
                .find_map(|p| root.read_string(p).ok())
        };
        imp.kernel_log.replace(kernel);
        let qemu = imp.vm.borrow().as_ref().and_then(|(name, _)| {
            root.read_string(format!("/var/log/libvirt/qemu/{name}.log"))
                .ok()
        });
        imp.qemu_log.replace(qemu);
    }

    /// Reads the logs this user may not read through the helper (polkit `read-logs`).
    async fn read_with_helper(&self) {
        let root = self.imp().root.borrow().clone();
        let mut failures = Vec::new();
        if self.imp().kernel_log.borrow().is_none() {
            match crate::helper_client::read_log(&root, "kernel", "").await {
                Ok(text) => {
                    self.imp().kernel_log.replace(Some(text));
                }
                Err(f) => failures.push(f.message()),
            }
        }
        let vm = self.imp().vm.borrow().as_ref().map(|(n, _)| n.clone());
        let qemu_missing = self.imp().qemu_log.borrow().is_none();
        if let (Some(name), true) = (vm, qemu_missing) {
            match crate::helper_client::read_log(&root, "qemu", &name).await {
                Ok(text) => {
                    self.imp().qemu_log.replace(Some(text));
                }
                Err(f) => failures.push(f.message()),
            }
        }
        self.run();
        if std::env::var_os("PASSTHROUGH_TEST_REPORT").is_some() {
            for f in &failures {
                println!("troubleshoot-error: {f}");
            }
        }
        if let (Some(w), false) = (self.window(), failures.is_empty()) {
            w.toast(&failures.join(" "));
        }
    }

    /// Calls `f` with what the detectors read: the scan, the logs and the VM being diagnosed.
    fn with_inputs<R>(&self, f: impl FnOnce(&Inputs) -> R) -> Option<R> {
        let imp = self.imp();
        let scan = imp.scan.borrow().clone()?;
        let kernel = imp.kernel_log.borrow();
        let qemu = imp.qemu_log.borrow();
        let vm = imp.vm.borrow();
        Some(f(&Inputs {
            report: &scan.report,
            kernel_log: kernel.as_deref(),
            qemu_log: qemu.as_deref(),
            domain_xml: vm.as_ref().map(|(_, x)| x.as_str()),
            vm_name: vm.as_ref().map(|(n, _)| n.as_str()),
        }))
    }

    /// Runs the detectors and shows what they found.
    fn run(&self) {
        let imp = self.imp();
        let Some(problems) = self.with_inputs(diagnose::diagnose) else {
            return;
        };
        let kernel = imp.kernel_log.borrow().clone();
        let qemu = imp.qemu_log.borrow().clone();
        let vm = imp.vm.borrow().clone();
        for row in imp.problem_rows.take() {
            imp.problems_group.remove(&row);
        }
        let mut read = vec![gettext("the host's configuration")];
        read.push(match &kernel {
            Some(_) => gettext("the kernel log"),
            None => gettext("not the kernel log (this user may not read it)"),
        });
        if let Some((name, _)) = &vm {
            read.push(gettext_f("the settings of “{name}”", &[("name", name)]));
            read.push(match &qemu {
                Some(_) => gettext_f("its QEMU log", &[]),
                None => gettext("not its QEMU log (only root may read it; run “passthroughctl diagnose --vm NAME” as root)"),
            });
        }
        // Translators: the separator between the items of a list in a sentence.
        let separator = gettext(", ");
        let read = gettext_f("Checked: {list}.", &[("list", &read.join(&separator))]);
        imp.auth_button
            .set_visible(kernel.is_none() || (vm.is_some() && qemu.is_none()));
        if problems.is_empty() {
            set_tone_icon(&imp.status_icon, Some(Tone::Ok));
            imp.status_title
                .set_label(&gettext("No Known Problem Found"));
            imp.status_description.set_label(&read);
            let row = adw::ActionRow::new();
            row.set_title(&gettext("Nothing found"));
            row.set_subtitle(&gettext(
                "If something still goes wrong, look for it in the known problems below, or copy the report and ask in a forum.",
            ));
            imp.problems_group.add(&row);
            imp.problem_rows.borrow_mut().push(row.upcast());
        } else {
            set_tone_icon(&imp.status_icon, Some(Tone::Warning));
            imp.status_title.set_label(&ngettext_f(
                "{n} Problem Found",
                "{n} Problems Found",
                problems.len() as u32,
                &[],
            ));
            imp.status_description.set_label(&read);
        }
        for p in &problems {
            let row = adw::ExpanderRow::new();
            row.set_title(&glib::markup_escape_text(&p.title));
            row.set_subtitle(&glib::markup_escape_text(&p.evidence));
            let icon = gtk::Image::new();
            set_tone_icon(&icon, Some(Tone::Warning));
            row.add_prefix(&icon);
            if p.fix_action.is_some() {
                let button = gtk::Button::with_mnemonic(&gettext("_Fix…"));
                button.set_valign(gtk::Align::Center);
                button.set_action_name(Some("troubleshoot.fix"));
                button.set_action_target_value(Some(&p.id.to_variant()));
                button.add_css_class("suggested-action");
                row.add_action(&button);
            }
            row.add_row(&text_row(&gettext("Cause"), &p.cause));
            row.add_row(&text_row(&gettext("Fix"), &p.fix));
            imp.problems_group.add(&row);
            imp.problem_rows.borrow_mut().push(row.upcast());
        }
        imp.problems.replace(problems);
    }

    fn fill_knowledge_base(&self) {
        let imp = self.imp();
        for entry in diagnose::knowledge_base() {
            let row = adw::ExpanderRow::new();
            row.set_title(&glib::markup_escape_text(&entry.title));
            row.set_subtitle(&glib::markup_escape_text(&entry.symptoms));
            row.add_row(&text_row(&gettext("Cause"), &entry.cause));
            row.add_row(&text_row(&gettext("Fix"), &entry.fix));
            let how: Vec<String> = entry
                .detection
                .iter()
                .map(|d| match d {
                    Detection::Host => gettext("from this computer's configuration"),
                    Detection::KernelLog => gettext("in the kernel log"),
                    Detection::QemuLog => gettext("in the virtual machine's QEMU log"),
                    Detection::DomainXml => gettext("in the virtual machine's settings"),
                    Detection::NotDetectable(why) => why.clone(),
                })
                .collect();
            row.add_row(&text_row(
                &gettext("How Passthrough finds it"),
                &how.join("; "),
            ));
            let haystack = format!(
                "{} {} {} {} {}",
                entry.id, entry.title, entry.symptoms, entry.cause, entry.fix
            )
            .to_lowercase();
            imp.kb_group.add(&row);
            imp.kb_rows.borrow_mut().push((row, haystack));
        }
    }

    fn filter_knowledge_base(&self) {
        let imp = self.imp();
        let query = imp.kb_search.text().to_lowercase();
        let words: Vec<&str> = query.split_whitespace().collect();
        for (row, haystack) in imp.kb_rows.borrow().iter() {
            row.set_visible(words.iter().all(|w| haystack.contains(w)));
        }
    }

    fn window(&self) -> Option<crate::window::PtWindow> {
        self.root().and_downcast::<crate::window::PtWindow>()
    }

    /// The Markdown report, to the clipboard (and stdout for tests).
    fn copy_report(&self) {
        let imp = self.imp();
        let problems = imp.problems.borrow().clone();
        let Some(text) = self.with_inputs(|inputs| diagnose::report_markdown(inputs, &problems))
        else {
            return;
        };
        if let Some(display) = gdk::Display::default() {
            display.clipboard().set_text(&text);
        }
        if std::env::var_os("PASSTHROUGH_TEST_REPORT").is_some() {
            println!("report-bytes: {}", text.len());
            println!(
                "report-has-problems: {}",
                imp.problems
                    .borrow()
                    .iter()
                    .all(|p| text.contains(&p.title))
            );
        }
        if let Some(w) = self.window() {
            w.toast(&gettext(
                "The report is in the clipboard: paste it into a forum post.",
            ));
        }
    }

    /// An automated fix: a boot plan goes to the Boot configuration step (previewed there,
    /// applied through the helper); VM edits go to the VM's Passthrough settings.
    fn fix(&self, id: &str) {
        let problem = self
            .imp()
            .problems
            .borrow()
            .iter()
            .find(|p| p.id == id)
            .cloned();
        let (Some(problem), Some(window)) = (problem, self.window()) else {
            return;
        };
        match problem.fix_action {
            Some(FixAction::Plan(plan)) => window.fix_with_plan(&plan),
            Some(FixAction::VmEdits(edits)) => {
                let vm = self.imp().vm.borrow().as_ref().map(|(n, _)| n.clone());
                match vm {
                    Some(name) => window.fix_vm(&name, edits),
                    None => window.toast(&problem.fix),
                }
            }
            None => {}
        }
    }
}

/// A row with a heading and a wrapped, selectable text.
fn text_row(heading: &str, text: &str) -> gtk::Widget {
    let b = gtk::Box::new(gtk::Orientation::Vertical, 4);
    b.set_margin_top(8);
    b.set_margin_bottom(8);
    b.set_margin_start(12);
    b.set_margin_end(12);
    let h = gtk::Label::new(Some(heading));
    h.set_xalign(0.0);
    h.add_css_class("heading");
    let t = gtk::Label::new(Some(text));
    t.set_xalign(0.0);
    t.set_wrap(true);
    t.set_selectable(true);
    b.append(&h);
    b.append(&t);
    b.upcast()
}
