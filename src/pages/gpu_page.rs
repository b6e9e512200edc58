//! [`PtGpuPage`]: the Graphics card step. One card per GPU with its verdict, and every IOMMU
//! group in a searchable list.

use adw::prelude::*;
use adw::subclass::prelude::*;
use gettextrs::gettext;
use gtk::glib;
use passthrough_core::i18n::ngettext_f;
use passthrough_core::markdown::device_line;

use crate::widgets::{PtGpuCard, PtGroupRow, PtStatusRow, Tone};
use crate::window::Scan;

/// The two views of the page.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GpuView {
    Cards,
    Groups,
}

impl GpuView {
    fn name(self) -> &'static str {
        match self {
            GpuView::Cards => "cards",
            GpuView::Groups => "groups",
        }
    }
}

mod imp {
    use std::cell::{Cell, RefCell};

    use super::*;

    #[derive(Debug, Default, gtk::CompositeTemplate, glib::Properties)]
    #[template(file = "gpu_page.ui")]
    #[properties(wrapper_type = super::PtGpuPage)]
    pub struct PtGpuPage {
        #[template_child]
        pub(super) state: TemplateChild<gtk::Stack>,
        #[template_child]
        pub(super) views: TemplateChild<gtk::Stack>,
        #[template_child]
        pub(super) cards_state: TemplateChild<gtk::Stack>,
        #[template_child]
        pub(super) cards_box: TemplateChild<gtk::Box>,
        #[template_child]
        pub(super) groups_view: TemplateChild<gtk::Box>,
        #[template_child]
        pub(super) search_entry: TemplateChild<gtk::SearchEntry>,
        #[template_child]
        pub(super) groups_state: TemplateChild<gtk::Stack>,
        #[template_child]
        pub(super) groups_list: TemplateChild<gtk::ListBox>,
        #[template_child]
        pub(super) hidden_label: TemplateChild<gtk::Label>,
        #[template_child]
        pub(super) iommu_off_page: TemplateChild<adw::StatusPage>,
        #[template_child]
        pub(super) devices_list: TemplateChild<gtk::ListBox>,

        /// List every group, not only those that hold a graphics card.
        #[property(get, set = Self::set_show_all_devices)]
        pub(super) show_all_devices: Cell<bool>,
        pub(super) group_rows: RefCell<Vec<PtGroupRow>>,
        /// The plain device list shown when the IOMMU is off, with what a search matches.
        pub(super) device_rows: RefCell<Vec<(PtStatusRow, String)>>,
        pub(super) iommu_enabled: Cell<bool>,
        pub(super) searching: Cell<bool>,
    }

    #[glib::object_subclass]
    impl ObjectSubclass for PtGpuPage {
        const NAME: &'static str = "PtGpuPage";
        type Type = super::PtGpuPage;
        type ParentType = adw::Bin;

        fn class_init(klass: &mut Self::Class) {
            klass.bind_template();
            klass.bind_template_instance_callbacks();
        }

        fn instance_init(obj: &glib::subclass::InitializingObject<Self>) {
            obj.init_template();
        }
    }

    #[glib::derived_properties]
    impl ObjectImpl for PtGpuPage {
        fn constructed(&self) {
            self.parent_constructed();
            let obj = self.obj();
            self.search_entry
                .set_key_capture_widget(Some(&*self.groups_view));
            self.groups_list.set_filter_func(glib::clone!(
                #[weak]
                obj,
                #[upgrade_or]
                true,
                move |row| obj.group_row_visible(row)
            ));
        }
    }

    impl WidgetImpl for PtGpuPage {}
    impl BinImpl for PtGpuPage {}

    impl PtGpuPage {
        fn set_show_all_devices(&self, show: bool) {
            if self.show_all_devices.replace(show) != show {
                self.obj().apply_filter();
            }
        }
    }
}

glib::wrapper! {
    pub struct PtGpuPage(ObjectSubclass<imp::PtGpuPage>)
        @extends adw::Bin, gtk::Widget,
        @implements gtk::Buildable, gtk::ConstraintTarget;
}

#[gtk::template_callbacks]
impl PtGpuPage {
    pub fn show_view(&self, view: GpuView) {
        self.imp().views.set_visible_child_name(view.name());
    }

    pub fn focus_search(&self) {
        self.show_view(GpuView::Groups);
        self.imp().search_entry.grab_focus();
    }

    /// Shows the groups that match `text`, as if it had been typed in the search entry.
    pub fn search_for(&self, text: &str) {
        self.show_view(GpuView::Groups);
        self.imp().search_entry.set_text(text);
        // The entry reports changes after a delay; filter now.
        self.apply_filter();
    }

    pub fn set_failed(&self) {
        self.imp().state.set_visible_child_name("failed");
    }

    pub fn set_scan(&self, scan: &Scan) {
        let imp = self.imp();
        let report = &scan.report;

        while let Some(child) = imp.cards_box.first_child() {
            imp.cards_box.remove(&child);
        }
        // The cards that can be passed through first, the boot GPU after the others.
        let mut gpus: Vec<_> = report.gpus.iter().collect();
        gpus.sort_by_key(|g| (Tone::from(g.verdict), g.boot_vga, g.address));
        for gpu in gpus {
            imp.cards_box.append(&PtGpuCard::new(gpu, &report.pci));
        }
        imp.cards_state
            .set_visible_child_name(if report.gpus.is_empty() {
                "empty"
            } else {
                "list"
            });

        for row in imp.group_rows.take() {
            imp.groups_list.remove(&row);
        }
        for (row, _) in imp.device_rows.take() {
            imp.devices_list.remove(&row);
        }
        imp.iommu_enabled.set(report.pci.iommu_enabled);
        if report.pci.iommu_enabled {
            let rows: Vec<PtGroupRow> = report
                .pci
                .groups()
                .iter()
                .map(|(group, devices)| PtGroupRow::new(*group, devices))
                .collect();
            for row in &rows {
                imp.groups_list.append(row);
            }
            imp.group_rows.replace(rows);
        } else {
            let mut description =
                gettext("Without the IOMMU the kernel makes no IOMMU groups, so no device can be passed through yet.");
            if let Some(check) = scan.checks.iter().find(|c| c.id == "iommu") {
                description.push(' ');
                description.push_str(&check.detail);
            }
            imp.iommu_off_page.set_description(Some(&description));
            let rows: Vec<(PtStatusRow, String)> = report
                .pci
                .devices
                .iter()
                .map(|d| {
                    let line = device_line(d);
                    let haystack = format!("{line}\n{}", d.display_name()).to_lowercase();
                    (crate::widgets::device_row(d, &line), haystack)
                })
                .collect();
            for (row, _) in &rows {
                imp.devices_list.append(row);
            }
            imp.device_rows.replace(rows);
        }
        self.apply_filter();
        imp.state.set_visible_child_name("content");
    }

    fn query(&self) -> String {
        self.imp().search_entry.text().trim().to_lowercase()
    }

    fn group_row_visible(&self, row: &gtk::ListBoxRow) -> bool {
        let Some(row) = row.downcast_ref::<PtGroupRow>() else {
            return true;
        };
        (self.show_all_devices() || row.has_gpu()) && row.matches(&self.query())
    }

    /// Shows the groups (or devices) that match the search and the settings.
    fn apply_filter(&self) {
        let imp = self.imp();
        let query = self.query();
        let searching = !query.is_empty();
        let was_searching = imp.searching.replace(searching);

        if !imp.iommu_enabled.get() {
            let mut shown = 0;
            for (row, haystack) in imp.device_rows.borrow().iter() {
                let visible = crate::widgets::matches_haystack(haystack, &query);
                row.set_visible(visible);
                shown += usize::from(visible);
            }
            imp.groups_state
                .set_visible_child_name(if shown == 0 && searching {
                    "no-results"
                } else {
                    "iommu-off"
                });
            return;
        }

        imp.groups_list.invalidate_filter();
        let rows = imp.group_rows.borrow();
        let mut shown = 0;
        for row in rows.iter() {
            if self.group_row_visible(row.upcast_ref()) {
                shown += 1;
                if searching {
                    row.set_expanded(true);
                }
            }
            if was_searching && !searching {
                row.set_expanded(row.has_gpu());
            }
        }
        let hidden = if self.show_all_devices() {
            0
        } else {
            rows.iter()
                .filter(|r| !r.has_gpu() && r.matches(&query))
                .count() as u32
        };
        imp.hidden_label.set_visible(hidden > 0);
        imp.hidden_label.set_label(&ngettext_f(
            "{n} group without a graphics card is not listed. Turn on “Show all PCI devices” in Preferences to list it.",
            "{n} groups without a graphics card are not listed. Turn on “Show all PCI devices” in Preferences to list them.",
            hidden,
            &[],
        ));
        imp.groups_state
            .set_visible_child_name(if shown == 0 && searching {
                "no-results"
            } else {
                "list"
            });
    }

    #[template_callback]
    fn on_search_changed(&self) {
        self.apply_filter();
    }

    #[template_callback]
    fn on_stop_search(&self) {
        self.imp().search_entry.set_text("");
    }
}
