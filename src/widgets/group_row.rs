//! [`PtGroupRow`]: one IOMMU group, its devices listed when expanded.

use adw::prelude::*;
use adw::subclass::prelude::*;
use gtk::glib;
use passthrough_core::i18n::ngettext_f;
use passthrough_core::markdown::device_line;
use passthrough_core::pci::PciDevice;

use super::PtStatusRow;

mod imp {
    use std::cell::{Cell, RefCell};

    use super::*;

    #[derive(Debug, Default, gtk::CompositeTemplate)]
    #[template(file = "group_row.ui")]
    pub struct PtGroupRow {
        #[template_child]
        pub(super) gpu_icon: TemplateChild<gtk::Image>,
        /// Everything a search may match, lower case.
        pub(super) haystack: RefCell<String>,
        pub(super) has_gpu: Cell<bool>,
    }

    #[glib::object_subclass]
    impl ObjectSubclass for PtGroupRow {
        const NAME: &'static str = "PtGroupRow";
        type Type = super::PtGroupRow;
        type ParentType = adw::ExpanderRow;

        fn class_init(klass: &mut Self::Class) {
            klass.bind_template();
        }

        fn instance_init(obj: &glib::subclass::InitializingObject<Self>) {
            obj.init_template();
        }
    }

    impl ObjectImpl for PtGroupRow {}
    impl WidgetImpl for PtGroupRow {}
    impl ListBoxRowImpl for PtGroupRow {}
    impl PreferencesRowImpl for PtGroupRow {}
    impl ExpanderRowImpl for PtGroupRow {}
}

glib::wrapper! {
    pub struct PtGroupRow(ObjectSubclass<imp::PtGroupRow>)
        @extends adw::ExpanderRow, adw::PreferencesRow, gtk::ListBoxRow, gtk::Widget,
        @implements gtk::Actionable, gtk::Buildable, gtk::ConstraintTarget;
}

impl PtGroupRow {
    pub fn new(group: u32, devices: &[&PciDevice]) -> Self {
        let row: Self = glib::Object::new();
        let imp = row.imp();
        let group_s = group.to_string();
        row.set_title(&ngettext_f(
            "Group {group} — {n} device",
            "Group {group} — {n} devices",
            devices.len() as u32,
            &[("group", &group_s)],
        ));
        row.set_subtitle(&glib::markup_escape_text(&summary(devices)));

        let has_gpu = devices.iter().any(|d| d.is_gpu());
        imp.has_gpu.set(has_gpu);
        imp.gpu_icon.set_visible(has_gpu);
        if has_gpu {
            row.add_css_class("gpu-group");
        }

        let mut haystack = format!("group {group_s}\n");
        for d in devices {
            let line = device_line(d);
            haystack.push_str(&line);
            haystack.push('\n');
            haystack.push_str(&d.display_name());
            haystack.push('\n');
            row.add_row(&device_row(d, &line));
        }
        imp.haystack.replace(haystack.to_lowercase());
        row.set_expanded(has_gpu);
        row
    }

    /// Whether the group holds a graphics card.
    pub fn has_gpu(&self) -> bool {
        self.imp().has_gpu.get()
    }

    /// Whether the group matches a lower-case search: its number, or any device's address,
    /// name, class, IDs or driver.
    pub fn matches(&self, query: &str) -> bool {
        query.is_empty() || matches_haystack(&self.imp().haystack.borrow(), query)
    }
}

/// The names of the group's devices, graphics cards first, at most three.
fn summary(devices: &[&PciDevice]) -> String {
    const SHOWN: usize = 3;
    let mut names: Vec<String> = Vec::new();
    let gpus_first = devices
        .iter()
        .filter(|d| d.is_gpu())
        .chain(devices.iter().filter(|d| !d.is_gpu()));
    for d in gpus_first {
        let name = d.short_name();
        if !names.contains(&name) {
            names.push(name);
        }
    }
    if names.len() <= SHOWN {
        return names.join(", ");
    }
    let more = (names.len() - SHOWN) as u32;
    ngettext_f(
        "{names} and {n} more",
        "{names} and {n} more",
        more,
        &[("names", &names[..SHOWN].join(", "))],
    )
}

/// A row for one device: its lspci line; graphics cards marked, bridges dimmed.
pub fn device_row(d: &PciDevice, line: &str) -> PtStatusRow {
    let row = PtStatusRow::new(None, line);
    row.set_summary_selectable(true);
    if d.is_gpu() {
        row.set_icon("video-display-symbolic", Some("accent"));
    } else {
        row.reserve_icon_space();
        if d.is_bridge() {
            row.add_summary_class("dim-label");
        }
    }
    row
}

/// Every word of `query` appears in `haystack` (both lower case). "group 16" matches the
/// group number; "08:00" an address; "10de" a vendor ID.
pub fn matches_haystack(haystack: &str, query: &str) -> bool {
    query.split_whitespace().all(|word| haystack.contains(word))
}
