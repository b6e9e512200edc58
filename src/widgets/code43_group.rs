//! [`PtCode43Group`]: the settings against error 43 as switches, each explained (the new-VM
//! wizard and the Passthrough settings of a VM show the same group).

use adw::prelude::*;
use adw::subclass::prelude::*;
use gtk::glib;
use passthrough_core::vm::code43::{self, Code43Setting, DEFAULT_VENDOR_ID};
use passthrough_core::vm::Code43;

mod imp {
    use super::*;

    #[derive(Debug, Default, gtk::CompositeTemplate)]
    #[template(file = "code43_group.ui")]
    pub struct PtCode43Group {
        #[template_child]
        pub(super) vendor_row: TemplateChild<adw::ActionRow>,
        #[template_child]
        pub(super) vendor_switch: TemplateChild<gtk::Switch>,
        #[template_child]
        pub(super) vendor_entry: TemplateChild<adw::EntryRow>,
        #[template_child]
        pub(super) hidden_row: TemplateChild<adw::ActionRow>,
        #[template_child]
        pub(super) hidden_switch: TemplateChild<gtk::Switch>,
        #[template_child]
        pub(super) ioapic_row: TemplateChild<adw::ActionRow>,
        #[template_child]
        pub(super) ioapic_switch: TemplateChild<gtk::Switch>,
        #[template_child]
        pub(super) msrs_row: TemplateChild<adw::ActionRow>,
        #[template_child]
        pub(super) msrs_switch: TemplateChild<gtk::Switch>,
    }

    #[glib::object_subclass]
    impl ObjectSubclass for PtCode43Group {
        const NAME: &'static str = "PtCode43Group";
        type Type = super::PtCode43Group;
        type ParentType = adw::PreferencesGroup;

        fn class_init(klass: &mut Self::Class) {
            klass.bind_template();
        }

        fn instance_init(obj: &glib::subclass::InitializingObject<Self>) {
            obj.init_template();
        }
    }

    impl ObjectImpl for PtCode43Group {
        fn constructed(&self) {
            self.parent_constructed();
            let entry = self.vendor_entry.clone();
            self.vendor_switch
                .connect_active_notify(move |s| entry.set_visible(s.is_active()));
            self.vendor_entry.set_visible(false);
            for (row, setting) in [
                (&*self.vendor_row, Code43Setting::VendorId),
                (&*self.hidden_row, Code43Setting::KvmHidden),
                (&*self.ioapic_row, Code43Setting::IoapicKvm),
                (&*self.msrs_row, Code43Setting::IgnoreMsrs),
            ] {
                row.set_subtitle(&glib::markup_escape_text(&code43::explain(setting)));
            }
        }
    }

    impl WidgetImpl for PtCode43Group {}
    impl PreferencesGroupImpl for PtCode43Group {}
}

glib::wrapper! {
    pub struct PtCode43Group(ObjectSubclass<imp::PtCode43Group>)
        @extends adw::PreferencesGroup, gtk::Widget,
        @implements gtk::Buildable, gtk::ConstraintTarget;
}

impl PtCode43Group {
    /// Shows these settings.
    pub fn set(&self, c: &Code43) {
        let imp = self.imp();
        imp.vendor_switch.set_active(c.vendor_id.is_some());
        imp.vendor_entry
            .set_text(c.vendor_id.as_deref().unwrap_or(DEFAULT_VENDOR_ID));
        imp.hidden_switch.set_active(c.kvm_hidden);
        imp.ioapic_switch.set_active(c.ioapic_kvm);
        imp.msrs_switch.set_active(c.ignore_msrs);
    }

    /// Turns on what `c` has, keeping what is on already.
    pub fn add(&self, c: &Code43) {
        let mut now = self.value();
        if now.vendor_id.is_none() {
            now.vendor_id = c.vendor_id.clone();
        }
        now.kvm_hidden |= c.kvm_hidden;
        now.ioapic_kvm |= c.ioapic_kvm;
        now.ignore_msrs |= c.ignore_msrs;
        self.set(&now);
    }

    /// Every setting on (with the vendor ID shown) or off.
    pub fn set_all(&self, on: bool) {
        let imp = self.imp();
        for s in [
            &*imp.vendor_switch,
            &*imp.hidden_switch,
            &*imp.ioapic_switch,
            &*imp.msrs_switch,
        ] {
            s.set_active(on);
        }
    }

    /// The settings as shown.
    pub fn value(&self) -> Code43 {
        let imp = self.imp();
        Code43 {
            vendor_id: imp
                .vendor_switch
                .is_active()
                .then(|| imp.vendor_entry.text().trim().to_owned()),
            kvm_hidden: imp.hidden_switch.is_active(),
            ioapic_kvm: imp.ioapic_switch.is_active(),
            ignore_msrs: imp.msrs_switch.is_active(),
        }
    }
}
