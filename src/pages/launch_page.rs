//! [`PtLaunchPage`]: the Launch step. Each VM with a switch that puts it in the app grid and
//! a Launch button that does exactly what its launcher does (`passthrough --launch-vm
//! UUID`), and which viewer opens it.

use std::cell::RefCell;

use adw::prelude::*;
use adw::subclass::prelude::*;
use gettextrs::gettext;
use gtk::glib;
use passthrough_core::i18n::gettext_f;
use passthrough_core::vm::launcher::{self, Viewer};
use passthrough_core::vm::libvirt::DomainInfo;

use crate::pages::vm_page::data_home;
use crate::vm_service::VmService;

mod imp {
    use super::*;

    #[derive(Debug, Default, gtk::CompositeTemplate)]
    #[template(file = "launch_page.ui")]
    pub struct PtLaunchPage {
        #[template_child]
        pub(super) grid_group: TemplateChild<adw::PreferencesGroup>,
        #[template_child]
        pub(super) viewer_row: TemplateChild<adw::ActionRow>,
        pub(super) rows: RefCell<Vec<gtk::Widget>>,
        pub(super) domains: RefCell<Vec<DomainInfo>>,
    }

    #[glib::object_subclass]
    impl ObjectSubclass for PtLaunchPage {
        const NAME: &'static str = "PtLaunchPage";
        type Type = super::PtLaunchPage;
        type ParentType = adw::Bin;

        fn class_init(klass: &mut Self::Class) {
            klass.bind_template();
            klass.install_action(
                "launch.start",
                Some(glib::VariantTy::STRING),
                |page, _, p| {
                    if let Some(uuid) = p.and_then(|p| p.str()) {
                        page.launch(uuid);
                    }
                },
            );
        }

        fn instance_init(obj: &glib::subclass::InitializingObject<Self>) {
            obj.init_template();
        }
    }

    impl ObjectImpl for PtLaunchPage {
        fn constructed(&self) {
            self.parent_constructed();
            self.obj().show_viewer();
        }
    }
    impl WidgetImpl for PtLaunchPage {}
    impl BinImpl for PtLaunchPage {}
}

glib::wrapper! {
    pub struct PtLaunchPage(ObjectSubclass<imp::PtLaunchPage>)
        @extends adw::Bin, gtk::Widget,
        @implements gtk::Buildable, gtk::ConstraintTarget;
}

impl PtLaunchPage {
    /// Lists the VMs of `service` with their launcher switches.
    pub fn refresh(&self, service: VmService) {
        glib::spawn_future_local(glib::clone!(
            #[weak(rename_to = page)]
            self,
            async move {
                let result = service.call(|c| c.domains().map_err(|e| e.message())).await;
                page.show(result);
            }
        ));
    }

    /// VMs with a launcher (for tests).
    pub fn launchers(&self) -> usize {
        let installed: Vec<String> = launcher::installed(&data_home())
            .into_iter()
            .map(|(u, _)| u)
            .collect();
        self.imp()
            .domains
            .borrow()
            .iter()
            .filter(|d| installed.contains(&d.uuid))
            .count()
    }

    fn show(&self, result: Result<Vec<DomainInfo>, String>) {
        let imp = self.imp();
        for row in imp.rows.take() {
            imp.grid_group.remove(&row);
        }
        let domains = match result {
            Ok(d) => d,
            Err(message) => {
                let row = adw::ActionRow::new();
                row.set_title(&gettext("Cannot Reach libvirt"));
                row.set_subtitle(&glib::markup_escape_text(&message));
                imp.grid_group.add(&row);
                imp.rows.borrow_mut().push(row.upcast());
                imp.domains.replace(Vec::new());
                return;
            }
        };
        if domains.is_empty() {
            let row = adw::ActionRow::new();
            row.set_title(&gettext("No virtual machines yet"));
            row.set_subtitle(&gettext("Create one on the Virtual machine step."));
            imp.grid_group.add(&row);
            imp.rows.borrow_mut().push(row.upcast());
        }
        let installed: Vec<String> = launcher::installed(&data_home())
            .into_iter()
            .map(|(u, _)| u)
            .collect();
        for d in &domains {
            let row = adw::ActionRow::new();
            row.set_title(&glib::markup_escape_text(&d.name));
            row.set_subtitle(&glib::markup_escape_text(&d.state.label()));
            let icon = gtk::Image::from_icon_name(launcher::ICON);
            icon.set_pixel_size(32);
            row.add_prefix(&icon);
            let switch = gtk::Switch::new();
            switch.set_valign(gtk::Align::Center);
            switch.set_active(installed.contains(&d.uuid));
            switch.set_tooltip_text(Some(&gettext("In the app grid")));
            let (name, uuid) = (d.name.clone(), d.uuid.clone());
            switch.connect_state_set(glib::clone!(
                #[weak(rename_to = page)]
                self,
                #[upgrade_or]
                glib::Propagation::Proceed,
                move |_, on| {
                    let result = if on {
                        launcher::install(&data_home(), &name, &uuid).map(|_| ())
                    } else {
                        launcher::remove(&data_home(), &uuid).map(|_| ())
                    };
                    match result {
                        Ok(()) => glib::Propagation::Proceed,
                        Err(e) => {
                            page.toast(&gettext_f(
                                "Cannot change the app grid: {error}",
                                &[("error", &e.to_string())],
                            ));
                            glib::Propagation::Stop
                        }
                    }
                }
            ));
            row.add_suffix(&switch);
            let button = gtk::Button::with_mnemonic(&gettext("_Launch"));
            button.set_valign(gtk::Align::Center);
            button.set_action_name(Some("launch.start"));
            button.set_action_target_value(Some(&d.uuid.to_variant()));
            row.add_suffix(&button);
            imp.grid_group.add(&row);
            imp.rows.borrow_mut().push(row.upcast());
        }
        imp.domains.replace(domains);
    }

    fn toast(&self, text: &str) {
        if let Some(w) = self.root().and_downcast::<crate::window::PtWindow>() {
            w.toast(text);
        }
    }

    /// Does what the launcher does: `passthrough --launch-vm UUID` as its own process, so
    /// it goes on (notifications, viewer) whatever happens to this window.
    fn launch(&self, uuid: &str) {
        let exe = std::env::current_exe()
            .map(|p| p.display().to_string())
            .unwrap_or_else(|_| "passthrough".to_owned());
        let argv = vec![exe, "--launch-vm".to_owned(), uuid.to_owned()];
        let env = vec![(
            launcher::URI_ENV.to_owned(),
            crate::pages::vm_page::libvirt_uri(),
        )];
        match launcher::spawn_detached(&argv, &env) {
            Ok(_) => self.toast(&gettext("Starting the virtual machine…")),
            Err(e) => self.toast(&e.to_string()),
        }
    }

    fn show_viewer(&self) {
        let imp = self.imp();
        let path = std::env::var_os("PATH").unwrap_or_default();
        match launcher::find_viewer(&path) {
            Viewer::LookingGlass(p) => {
                imp.viewer_row.set_title(&gettext("Looking Glass"));
                imp.viewer_row.set_subtitle(&glib::markup_escape_text(&gettext_f(
                    "The guest's screen is shown by {program}, copied from the passed-through card with almost no delay (the guest needs the Looking Glass host application and an IVSHMEM device).",
                    &[("program", &p.display().to_string())],
                )));
            }
            Viewer::VirtViewer(p) => {
                imp.viewer_row.set_title(&gettext("Virt Viewer"));
                imp.viewer_row.set_subtitle(&glib::markup_escape_text(&gettext_f(
                    "The emulated display is shown by {program}. Once the graphics card drives a monitor (or a dummy plug), use it directly or stream it with Parsec or Steam Link.",
                    &[("program", &p.display().to_string())],
                )));
            }
            _ => {
                imp.viewer_row.set_title(&gettext("No viewer installed"));
                imp.viewer_row
                    .set_subtitle(&glib::markup_escape_text(&launcher::no_viewer_hint()));
            }
        }
    }
}
