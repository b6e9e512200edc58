//! [`PtGpuCard`]: one graphics card with its verdict, its facts, what goes with it, what
//! stands in the way and what can be done about it.

use adw::prelude::*;
use adw::subclass::prelude::*;
use gettextrs::gettext;
use gtk::glib;
use passthrough_core::gpu::{GpuVerdict, Verdict};
use passthrough_core::markdown::{device_line, lanes_label, link_label, verdict_label};
use passthrough_core::pci::{PciAddress, PciScan};

use super::{set_tone_icon, PtStatusRow, Tone};

mod imp {
    use super::*;

    #[derive(Debug, Default, gtk::CompositeTemplate)]
    #[template(file = "gpu_card.ui")]
    pub struct PtGpuCard {
        #[template_child]
        pub(super) name_label: TemplateChild<gtk::Label>,
        #[template_child]
        pub(super) address_label: TemplateChild<gtk::Label>,
        #[template_child]
        pub(super) verdict_label: TemplateChild<gtk::Label>,
        #[template_child]
        pub(super) reserve_button: TemplateChild<gtk::Button>,
        #[template_child]
        pub(super) explanation_row: TemplateChild<PtStatusRow>,
        #[template_child]
        pub(super) group_value: TemplateChild<gtk::Label>,
        #[template_child]
        pub(super) ids_row: TemplateChild<adw::ActionRow>,
        #[template_child]
        pub(super) ids_value: TemplateChild<gtk::Label>,
        #[template_child]
        pub(super) driver_value: TemplateChild<gtk::Label>,
        #[template_child]
        pub(super) boot_icon: TemplateChild<gtk::Image>,
        #[template_child]
        pub(super) boot_value: TemplateChild<gtk::Label>,
        #[template_child]
        pub(super) lanes_value: TemplateChild<gtk::Label>,
        #[template_child]
        pub(super) link_row: TemplateChild<adw::ActionRow>,
        #[template_child]
        pub(super) link_value: TemplateChild<gtk::Label>,
        #[template_child]
        pub(super) companions_group: TemplateChild<adw::PreferencesGroup>,
        #[template_child]
        pub(super) blockers_group: TemplateChild<adw::PreferencesGroup>,
        #[template_child]
        pub(super) options_group: TemplateChild<adw::PreferencesGroup>,
        #[template_child]
        pub(super) notes_group: TemplateChild<adw::PreferencesGroup>,
    }

    #[glib::object_subclass]
    impl ObjectSubclass for PtGpuCard {
        const NAME: &'static str = "PtGpuCard";
        type Type = super::PtGpuCard;
        type ParentType = gtk::Box;

        fn class_init(klass: &mut Self::Class) {
            PtStatusRow::ensure_type();
            klass.bind_template();
        }

        fn instance_init(obj: &glib::subclass::InitializingObject<Self>) {
            obj.init_template();
        }
    }

    impl ObjectImpl for PtGpuCard {}
    impl WidgetImpl for PtGpuCard {}
    impl BoxImpl for PtGpuCard {}
}

glib::wrapper! {
    pub struct PtGpuCard(ObjectSubclass<imp::PtGpuCard>)
        @extends gtk::Box, gtk::Widget,
        @implements gtk::Buildable, gtk::ConstraintTarget, gtk::Orientable;
}

impl PtGpuCard {
    pub fn new(gpu: &GpuVerdict, pci: &PciScan) -> Self {
        let card: Self = glib::Object::new();
        card.fill(gpu, pci);
        card
    }

    fn fill(&self, gpu: &GpuVerdict, pci: &PciScan) {
        let imp = self.imp();
        let tone = Tone::from(gpu.verdict);

        imp.name_label.set_label(&gpu.display_name());
        imp.address_label.set_label(&gpu.address.to_string());
        let verdict = verdict_label(gpu.verdict);
        imp.verdict_label.set_label(&verdict);
        imp.verdict_label.add_css_class(tone.css_class());
        // Offered for a card that can go to a VM and is not held by vfio-pci yet.
        if gpu.verdict == Verdict::Isolated && gpu.driver.as_deref() != Some("vfio-pci") {
            imp.reserve_button
                .set_action_target_value(Some(&gpu.address.to_string().to_variant()));
            imp.reserve_button.set_visible(true);
        }
        imp.explanation_row.set_tone(Some(tone));
        imp.explanation_row.set_heading(&verdict);
        imp.explanation_row.set_summary(&gpu.explanation);

        imp.group_value.set_label(
            &gpu.iommu_group
                .map(|g| g.to_string())
                // Translators: the IOMMU group of a card when it has none.
                .unwrap_or_else(|| gettext("None")),
        );
        match gpu.ids() {
            Some(ids) => imp.ids_value.set_label(&ids),
            None => imp.ids_row.set_visible(false),
        }
        imp.driver_value.set_label(
            &gpu.driver
                .clone()
                // Translators: no kernel driver holds the card.
                .unwrap_or_else(|| gettext("None")),
        );
        if gpu.boot_vga {
            imp.boot_value.set_label(&gettext("Yes"));
            set_tone_icon(&imp.boot_icon, Some(Tone::Warning));
        } else {
            imp.boot_value.set_label(&gettext("No"));
        }
        imp.lanes_value.set_label(&lanes_label(gpu.lanes));
        match link_label(&gpu.link) {
            Some(link) => imp.link_value.set_label(&link),
            None => imp.link_row.set_visible(false),
        }

        fill_devices(&imp.companions_group, &gpu.companions, pci, None);
        fill_devices(
            &imp.blockers_group,
            &gpu.blockers,
            pci,
            Some(if gpu.verdict == passthrough_core::gpu::Verdict::Shared {
                Tone::Error
            } else {
                Tone::Warning
            }),
        );
        for option in &gpu.options {
            let row = PtStatusRow::new(None, option);
            row.set_icon("object-select-symbolic", Some("dim-label"));
            imp.options_group.add(&row);
        }
        imp.options_group.set_visible(!gpu.options.is_empty());
        for note in &gpu.notes {
            imp.notes_group
                .add(&PtStatusRow::new(Some(note.severity.into()), &note.text));
        }
        imp.notes_group.set_visible(!gpu.notes.is_empty());
    }
}

/// One row per device, as lspci shows it.
fn fill_devices(
    group: &adw::PreferencesGroup,
    addresses: &[PciAddress],
    pci: &PciScan,
    tone: Option<Tone>,
) {
    for address in addresses {
        let line = match pci.get(address) {
            Some(d) => device_line(d),
            None => address.to_string(),
        };
        let row = PtStatusRow::new(tone, &line);
        row.set_summary_selectable(true);
        group.add(&row);
    }
    group.set_visible(!addresses.is_empty());
}
