//! [`PtSystemPage`]: the System check step, one row per check, grouped by area, under a
//! summary of what needs attention.

use std::path::Path;

use adw::prelude::*;
use adw::subclass::prelude::*;
use gettextrs::gettext;
use gtk::glib;
use passthrough_core::checks::{Check, Status};
use passthrough_core::i18n::{gettext_f, ngettext_f};

use crate::widgets::{set_tone_icon, PtStatusRow, Tone};
use crate::window::Scan;

/// The areas of the page and the checks (by id) in each; checks not named here go to the
/// last group.
const AREAS: &[(Area, &[&str])] = &[
    (Area::Processor, &["cpu", "kvm", "iommu", "kernel-args"]),
    (Area::Graphics, &["gpus"]),
    (Area::Boot, &["boot-loader", "initramfs"]),
    (
        Area::Vm,
        &["libvirt", "libvirt-group", "firmware", "virtio-win"],
    ),
];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Area {
    Processor,
    Graphics,
    Boot,
    Vm,
    Other,
}

impl Area {
    fn title(self) -> String {
        match self {
            Area::Processor => gettext("Processor and Kernel"),
            Area::Graphics => gettext("Graphics Cards"),
            Area::Boot => gettext("Boot"),
            Area::Vm => gettext("Virtual Machines"),
            Area::Other => gettext("Other"),
        }
    }

    fn of(check: &Check) -> Self {
        AREAS
            .iter()
            .find(|(_, ids)| ids.contains(&check.id))
            .map(|(area, _)| *area)
            .unwrap_or(Area::Other)
    }
}

mod imp {
    use super::*;

    #[derive(Debug, Default, gtk::CompositeTemplate)]
    #[template(file = "system_page.ui")]
    pub struct PtSystemPage {
        #[template_child]
        pub(super) state: TemplateChild<gtk::Stack>,
        #[template_child]
        pub(super) summary_icon: TemplateChild<gtk::Image>,
        #[template_child]
        pub(super) summary_title: TemplateChild<gtk::Label>,
        #[template_child]
        pub(super) summary_description: TemplateChild<gtk::Label>,
        #[template_child]
        pub(super) root_label: TemplateChild<gtk::Label>,
        #[template_child]
        pub(super) groups_box: TemplateChild<gtk::Box>,
    }

    #[glib::object_subclass]
    impl ObjectSubclass for PtSystemPage {
        const NAME: &'static str = "PtSystemPage";
        type Type = super::PtSystemPage;
        type ParentType = adw::Bin;

        fn class_init(klass: &mut Self::Class) {
            klass.bind_template();
        }

        fn instance_init(obj: &glib::subclass::InitializingObject<Self>) {
            obj.init_template();
        }
    }

    impl ObjectImpl for PtSystemPage {}
    impl WidgetImpl for PtSystemPage {}
    impl BinImpl for PtSystemPage {}
}

glib::wrapper! {
    pub struct PtSystemPage(ObjectSubclass<imp::PtSystemPage>)
        @extends adw::Bin, gtk::Widget,
        @implements gtk::Buildable, gtk::ConstraintTarget;
}

impl PtSystemPage {
    /// Says which directory is examined, when it is not this computer's `/`.
    pub fn set_root(&self, root: &Path) {
        let label = &self.imp().root_label;
        if root == Path::new("/") {
            label.set_visible(false);
        } else {
            label.set_label(&gettext_f(
                "Examining {path} (a copy of another computer), not this one.",
                &[("path", &root.display().to_string())],
            ));
            label.set_visible(true);
        }
    }

    pub fn set_failed(&self) {
        self.imp().state.set_visible_child_name("failed");
    }

    pub fn set_scan(&self, scan: &Scan) {
        let imp = self.imp();
        self.show_summary(&scan.checks);

        while let Some(child) = imp.groups_box.first_child() {
            imp.groups_box.remove(&child);
        }
        let areas = AREAS
            .iter()
            .map(|(area, _)| *area)
            .chain(std::iter::once(Area::Other));
        for area in areas {
            let checks: Vec<&Check> = scan.checks.iter().filter(|c| Area::of(c) == area).collect();
            if checks.is_empty() {
                continue;
            }
            let group = adw::PreferencesGroup::new();
            group.set_title(&area.title());
            for check in checks {
                group.add(&check_row(check));
            }
            imp.groups_box.append(&group);
        }

        let report = &scan.report;
        let problems: Vec<_> = report.notes.iter().chain(&report.pci.notes).collect();
        if !problems.is_empty() {
            let group = adw::PreferencesGroup::new();
            group.set_title(&gettext("Problems Reading This Computer"));
            for note in problems {
                group.add(&PtStatusRow::new(Some(note.severity.into()), &note.text));
            }
            imp.groups_box.append(&group);
        }
        imp.state.set_visible_child_name("content");
    }

    fn show_summary(&self, checks: &[Check]) {
        let imp = self.imp();
        let errors = checks.iter().filter(|c| c.status == Status::Error).count() as u32;
        let warnings = checks
            .iter()
            .filter(|c| c.status == Status::Warning)
            .count() as u32;
        let (tone, title, description) = if errors + warnings == 0 {
            (
                Tone::Ok,
                gettext("Ready for passthrough"),
                gettext("Nothing on this computer stands in the way. Go on with the Graphics card step."),
            )
        } else {
            let title = ngettext_f(
                "{n} thing needs attention",
                "{n} things need attention",
                errors + warnings,
                &[],
            );
            if errors > 0 {
                (
                    Tone::Error,
                    title,
                    ngettext_f(
                        "{n} of them stops passthrough: fix it first, then refresh.",
                        "{n} of them stop passthrough: fix them first, then refresh.",
                        errors,
                        &[],
                    ),
                )
            } else {
                (
                    Tone::Warning,
                    title,
                    gettext("Passthrough can work, but read the warnings below first."),
                )
            }
        };
        set_tone_icon(&imp.summary_icon, Some(tone));
        imp.summary_title.set_label(&title);
        imp.summary_description.set_label(&description);
    }
}

fn check_row(check: &Check) -> PtStatusRow {
    let row = PtStatusRow::new(Some(check.status.into()), &check.summary);
    row.set_heading(&check.title);
    row.set_detail(&check.detail);
    row.set_widget_name(check.id);
    row
}
