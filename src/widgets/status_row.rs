//! [`PtStatusRow`]: a list row with a status icon and up to three lines of wrapped text
//! (a heading, a summary, a dimmed detail). Used for checks, notes, explanations and
//! device lines.

use adw::prelude::*;
use adw::subclass::prelude::*;
use gtk::glib;

use super::{set_tone_icon, Tone};

mod imp {
    use super::*;

    #[derive(Debug, Default, gtk::CompositeTemplate)]
    #[template(file = "status_row.ui")]
    pub struct PtStatusRow {
        #[template_child]
        pub(super) icon: TemplateChild<gtk::Image>,
        #[template_child]
        pub(super) heading_label: TemplateChild<gtk::Label>,
        #[template_child]
        pub(super) summary_label: TemplateChild<gtk::Label>,
        #[template_child]
        pub(super) detail_label: TemplateChild<gtk::Label>,
    }

    #[glib::object_subclass]
    impl ObjectSubclass for PtStatusRow {
        const NAME: &'static str = "PtStatusRow";
        type Type = super::PtStatusRow;
        type ParentType = adw::PreferencesRow;

        fn class_init(klass: &mut Self::Class) {
            klass.bind_template();
        }

        fn instance_init(obj: &glib::subclass::InitializingObject<Self>) {
            obj.init_template();
        }
    }

    impl ObjectImpl for PtStatusRow {}
    impl WidgetImpl for PtStatusRow {}
    impl ListBoxRowImpl for PtStatusRow {}
    impl PreferencesRowImpl for PtStatusRow {}
}

glib::wrapper! {
    pub struct PtStatusRow(ObjectSubclass<imp::PtStatusRow>)
        @extends adw::PreferencesRow, gtk::ListBoxRow, gtk::Widget,
        @implements gtk::Actionable, gtk::Buildable, gtk::ConstraintTarget;
}

impl Default for PtStatusRow {
    fn default() -> Self {
        glib::Object::new()
    }
}

impl PtStatusRow {
    /// A row showing `text` with the icon of `tone` (none when `None`).
    pub fn new(tone: Option<Tone>, text: &str) -> Self {
        let row = Self::default();
        row.set_tone(tone);
        row.set_summary(text);
        row
    }

    pub fn set_tone(&self, tone: Option<Tone>) {
        set_tone_icon(&self.imp().icon, tone);
    }

    /// Shows a custom icon instead of a status icon.
    pub fn set_icon(&self, icon_name: &str, css_class: Option<&str>) {
        let icon = &self.imp().icon;
        icon.set_icon_name(Some(icon_name));
        if let Some(class) = css_class {
            icon.add_css_class(class);
        }
        icon.set_visible(true);
    }

    /// Keeps the icon's place empty, so rows with and without an icon line up.
    pub fn reserve_icon_space(&self) {
        let icon = &self.imp().icon;
        if !icon.is_visible() {
            icon.set_icon_name(None);
            icon.set_visible(true);
        }
    }

    /// The bold first line; also the row's title for assistive technologies.
    pub fn set_heading(&self, text: &str) {
        self.set_title(text);
        set_label(&self.imp().heading_label, text);
    }

    pub fn set_summary(&self, text: &str) {
        if self.title().is_empty() {
            self.set_title(text);
        }
        set_label(&self.imp().summary_label, text);
    }

    /// The dimmed last line: what it means, what to do.
    pub fn set_detail(&self, text: &str) {
        set_label(&self.imp().detail_label, text);
    }

    /// Lets people select and copy the summary (addresses, IDs, lspci lines).
    pub fn set_summary_selectable(&self, selectable: bool) {
        self.imp().summary_label.set_selectable(selectable);
    }

    /// Adds a style class to the summary line (e.g. `dim-label`, `monospace`).
    pub fn add_summary_class(&self, class: &str) {
        self.imp().summary_label.add_css_class(class);
    }
}

fn set_label(label: &gtk::Label, text: &str) {
    label.set_label(text);
    label.set_visible(!text.is_empty());
}
