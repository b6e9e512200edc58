//! [`PtPreferencesWindow`]: the host being examined and the app's few settings.

use adw::prelude::*;
use adw::subclass::prelude::*;
use gettextrs::gettext;
use gtk::glib;

use crate::application::PtApplication;

mod imp {
    use super::*;

    #[derive(Debug, Default, gtk::CompositeTemplate)]
    #[template(file = "preferences_window.ui")]
    pub struct PtPreferencesWindow {
        #[template_child]
        pub(super) root_row: TemplateChild<adw::ActionRow>,
        #[template_child]
        pub(super) groups_group: TemplateChild<adw::PreferencesGroup>,
        #[template_child]
        pub(super) show_all_switch: TemplateChild<gtk::Switch>,
        #[template_child]
        pub(super) libvirt_group: TemplateChild<adw::PreferencesGroup>,
        #[template_child]
        pub(super) uri_row: TemplateChild<adw::EntryRow>,
    }

    #[glib::object_subclass]
    impl ObjectSubclass for PtPreferencesWindow {
        const NAME: &'static str = "PtPreferencesWindow";
        type Type = super::PtPreferencesWindow;
        type ParentType = adw::PreferencesWindow;

        fn class_init(klass: &mut Self::Class) {
            klass.bind_template();
        }

        fn instance_init(obj: &glib::subclass::InitializingObject<Self>) {
            obj.init_template();
        }
    }

    impl ObjectImpl for PtPreferencesWindow {}
    impl WidgetImpl for PtPreferencesWindow {}
    impl WindowImpl for PtPreferencesWindow {}
    impl AdwWindowImpl for PtPreferencesWindow {}
    impl PreferencesWindowImpl for PtPreferencesWindow {}
}

glib::wrapper! {
    pub struct PtPreferencesWindow(ObjectSubclass<imp::PtPreferencesWindow>)
        @extends adw::PreferencesWindow, adw::Window, gtk::Window, gtk::Widget,
        @implements gtk::Buildable, gtk::ConstraintTarget, gtk::Native,
            gtk::Root, gtk::ShortcutManager;
}

impl PtPreferencesWindow {
    pub fn new(app: &PtApplication) -> Self {
        let window: Self = glib::Object::new();
        let imp = window.imp();
        let root = app.root();
        let root_s = root.display().to_string();
        imp.root_row.set_subtitle(&if root_s == "/" {
            gettext("/ (this computer)")
        } else {
            root_s
        });
        app.bind_property("show-all-devices", &*imp.show_all_switch, "active")
            .bidirectional()
            .sync_create()
            .build();
        if app.settings_with_key("show-all-devices").is_none() {
            imp.groups_group.set_description(Some(&gettext(
                "The settings schema is not installed, so this is kept only until Passthrough closes.",
            )));
        }
        match app.settings_with_key("libvirt-uri").cloned() {
            Some(settings) => {
                imp.uri_row.set_text(&settings.string("libvirt-uri"));
                imp.uri_row.connect_apply(move |row| {
                    let uri = row.text().trim().to_owned();
                    let uri = if uri.is_empty() {
                        "qemu:///system".to_owned()
                    } else {
                        uri
                    };
                    if let Err(e) = settings.set_string("libvirt-uri", &uri) {
                        tracing::warn!("cannot save the libvirt URI: {e}");
                    }
                });
            }
            None => {
                imp.libvirt_group.set_sensitive(false);
                imp.uri_row
                    .set_text(&passthrough_core::vm::launcher::default_uri());
            }
        }
        window
    }
}
