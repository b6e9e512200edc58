//! [`PtApplication`]: command-line options, app-wide actions and settings.

use std::path::PathBuf;

use adw::prelude::*;
use adw::subclass::prelude::*;
use gettextrs::gettext;
use gtk::{gio, glib};
use passthrough_core::i18n::gettext_f;

use crate::config;
use crate::widgets::PtPreferencesWindow;
use crate::window::{is_page_name, PtWindow, PAGES, PAGE_ALIASES};

mod imp {
    use std::cell::{Cell, OnceCell, RefCell};
    use std::ops::ControlFlow;

    use super::*;

    #[derive(Debug, Default, glib::Properties)]
    #[properties(wrapper_type = super::PtApplication)]
    pub struct PtApplication {
        /// List every IOMMU group, not only those that hold a graphics card. Bound to the
        /// `show-all-devices` key when the settings schema is installed (default: true).
        #[property(get, set)]
        pub(super) show_all_devices: Cell<bool>,
        /// `--root DIR`: the directory read as the host's `/`.
        pub(super) root: RefCell<Option<PathBuf>>,
        /// `--page NAME`: the step shown first.
        pub(super) start_page: RefCell<Option<String>>,
        /// The app's settings, when its schema is installed.
        pub(super) settings: OnceCell<Option<gio::Settings>>,
        /// `--launch-vm UUID`: launch this VM instead of showing the window.
        pub(super) launch_target: RefCell<Option<String>>,
        /// The exit code of a `--launch-vm` run, once it is over.
        pub(super) launch_exit_code: Cell<Option<u8>>,
    }

    #[glib::object_subclass]
    impl ObjectSubclass for PtApplication {
        const NAME: &'static str = "PtApplication";
        type Type = super::PtApplication;
        type ParentType = adw::Application;
    }

    #[glib::derived_properties]
    impl ObjectImpl for PtApplication {
        fn constructed(&self) {
            self.parent_constructed();
            self.show_all_devices.set(true);
            let obj = self.obj();
            obj.add_main_option(
                "root",
                glib::Char::from(0),
                glib::OptionFlags::NONE,
                glib::OptionArg::Filename,
                &gettext("Examine the host whose root file system is DIR instead of this one"),
                Some(&gettext("DIR")),
            );
            obj.add_main_option(
                "page",
                glib::Char::from(0),
                glib::OptionFlags::NONE,
                glib::OptionArg::String,
                &gettext_f("Start on a step: {names}", &[("names", &page_names())]),
                Some(&gettext("NAME")),
            );
            obj.add_main_option(
                "launch-vm",
                glib::Char::from(0),
                glib::OptionFlags::NONE,
                glib::OptionArg::String,
                &gettext("Start the virtual machine UUID with its graphics card and open its screen, without the main window"),
                Some(&gettext("UUID")),
            );
            obj.add_main_option(
                "version",
                glib::Char::from(0),
                glib::OptionFlags::NONE,
                glib::OptionArg::None,
                &gettext("Print the version and exit"),
                None,
            );
        }
    }

    impl ApplicationImpl for PtApplication {
        fn handle_local_options(&self, options: &glib::VariantDict) -> ControlFlow<glib::ExitCode> {
            if options.contains("version") {
                println!("passthrough {}", config::VERSION);
                return ControlFlow::Break(glib::ExitCode::SUCCESS);
            }
            if let Ok(Some(root)) = options.lookup::<PathBuf>("root") {
                if !root.is_dir() {
                    eprintln!(
                        "{}",
                        gettext_f(
                            "passthrough: --root {dir}: not a directory",
                            &[("dir", &root.display().to_string())]
                        )
                    );
                    return ControlFlow::Break(glib::ExitCode::from(2));
                }
                // Absolute, so messages say which directory is meant.
                self.root
                    .replace(Some(std::fs::canonicalize(&root).unwrap_or(root)));
            }
            if let Ok(Some(page)) = options.lookup::<String>("page") {
                if !is_page_name(&page) {
                    eprintln!(
                        "{}",
                        gettext_f(
                            "passthrough: --page {name}: unknown step (known: {names})",
                            &[("name", &page), ("names", &page_names())]
                        )
                    );
                    return ControlFlow::Break(glib::ExitCode::from(2));
                }
                self.start_page.replace(Some(page));
            }
            if let Ok(Some(target)) = options.lookup::<String>("launch-vm") {
                if target.trim().is_empty() {
                    eprintln!(
                        "{}",
                        gettext(
                            "passthrough: --launch-vm needs the UUID or name of a virtual machine"
                        )
                    );
                    return ControlFlow::Break(glib::ExitCode::from(2));
                }
                self.launch_target.replace(Some(target));
            }
            self.parent_handle_local_options(options)
        }

        fn startup(&self) {
            self.parent_startup();
            let obj = self.obj();
            obj.setup_settings();
            obj.setup_actions();
            if std::env::var_os("PASSTHROUGH_TEST_SCREENSHOT").is_some() {
                // Screenshots show the end state, not a transition half-way.
                if let Some(settings) = gtk::Settings::default() {
                    settings.set_gtk_enable_animations(false);
                }
            }
        }

        fn activate(&self) {
            self.parent_activate();
            let obj = self.obj();
            if let Some(target) = self.launch_target.take() {
                crate::launch::start(&obj, target);
                return;
            }
            if let Some(window) = obj.active_window() {
                window.present();
                return;
            }
            let root = self
                .root
                .borrow()
                .clone()
                .unwrap_or_else(|| PathBuf::from("/"));
            let window = PtWindow::new(&obj, &root, self.start_page.borrow().as_deref());
            window.present();
            if std::env::var_os("PASSTHROUGH_TIMING").is_some_and(|v| v == "1") {
                // For build-aux/bench: prints `first-frame-ns` and quits after the first frame.
                crate::timing::report_first_frame(&window, true);
            }
            // The host is read only once the window is on screen, so startup stays fast.
            window.start_first_scan();
        }
    }

    impl GtkApplicationImpl for PtApplication {}
    impl AdwApplicationImpl for PtApplication {}
}

glib::wrapper! {
    pub struct PtApplication(ObjectSubclass<imp::PtApplication>)
        @extends adw::Application, gtk::Application, gio::Application,
        @implements gio::ActionGroup, gio::ActionMap;
}

impl Default for PtApplication {
    fn default() -> Self {
        Self::new()
    }
}

impl PtApplication {
    pub fn new() -> Self {
        glib::Object::builder()
            .property("application-id", config::APP_ID)
            .property("flags", gio::ApplicationFlags::NON_UNIQUE)
            .property("resource-base-path", config::RESOURCE_BASE_PATH)
            .build()
    }

    /// The directory examined as the host's `/`.
    pub fn root(&self) -> PathBuf {
        self.imp()
            .root
            .borrow()
            .clone()
            .unwrap_or_else(|| PathBuf::from("/"))
    }

    /// The exit code of a `--launch-vm` run, once it is over.
    pub fn launch_exit_code(&self) -> Option<u8> {
        self.imp().launch_exit_code.get()
    }

    pub(crate) fn set_launch_exit_code(&self, code: u8) {
        self.imp().launch_exit_code.set(Some(code));
    }

    /// The app's settings, or `None` when the schema is not installed (then everything keeps
    /// its default and nothing is saved). `gio::Settings::new` would abort in that case.
    pub fn settings(&self) -> Option<&gio::Settings> {
        self.imp()
            .settings
            .get_or_init(|| {
                let schema = gio::SettingsSchemaSource::default()
                    .and_then(|source| source.lookup(config::APP_ID, true))?;
                if schema.path().is_none() {
                    tracing::warn!("the settings schema {} has no path", config::APP_ID);
                    return None;
                }
                Some(gio::Settings::new_full(
                    &schema,
                    None::<&gio::SettingsBackend>,
                    None,
                ))
            })
            .as_ref()
    }

    /// The settings, if the schema is installed and has `key` (so reading it cannot abort).
    pub fn settings_with_key(&self, key: &str) -> Option<&gio::Settings> {
        self.settings().filter(|s| {
            s.settings_schema()
                .is_some_and(|schema| schema.has_key(key))
        })
    }

    fn setup_settings(&self) {
        match self.settings_with_key("show-all-devices") {
            Some(settings) => settings
                .bind("show-all-devices", self, "show-all-devices")
                .build(),
            None => tracing::info!(
                "settings schema {} not installed: using defaults, nothing is saved",
                config::APP_ID
            ),
        }
    }

    fn setup_actions(&self) {
        // Closing the windows (rather than `quit()`) lets them save their size first.
        let quit = gio::ActionEntry::builder("quit")
            .activate(|app: &Self, _, _| {
                for window in app.windows() {
                    window.close();
                }
            })
            .build();
        let about = gio::ActionEntry::builder("about")
            .activate(|app: &Self, _, _| app.show_about())
            .build();
        let preferences = gio::ActionEntry::builder("preferences")
            .activate(|app: &Self, _, _| app.show_preferences())
            .build();
        self.add_action_entries([quit, about, preferences]);

        self.set_accels_for_action("app.quit", &["<Control>q"]);
        self.set_accels_for_action("app.preferences", &["<Control>comma"]);
        self.set_accels_for_action("win.refresh", &["<Control>r", "F5"]);
        self.set_accels_for_action("win.search", &["<Control>f"]);
        self.set_accels_for_action("win.back", &["<Alt>Left"]);
    }

    fn show_about(&self) {
        let about = adw::AboutWindow::builder()
            .application_name(gettext("Passthrough"))
            .application_icon(config::APP_ID)
            .version(config::VERSION)
            .developer_name(gettext("The Passthrough developers"))
            .license_type(gtk::License::Gpl30)
            .website("https://github.com/passthrough/passthrough")
            .issue_url("https://github.com/passthrough/passthrough/issues")
            // Translators: Replace "translator-credits" with your name/username, and optionally an email or URL.
            .translator_credits(gettext("translator-credits"))
            .modal(true)
            .build();
        if let Some(window) = self.active_window() {
            about.set_transient_for(Some(&window));
        }
        about.present();
    }

    fn show_preferences(&self) {
        let window = PtPreferencesWindow::new(self);
        if let Some(parent) = self.active_window() {
            window.set_transient_for(Some(&parent));
        }
        window.present();
    }
}

/// The names `--page` accepts, for messages.
fn page_names() -> String {
    PAGES
        .iter()
        .chain(PAGE_ALIASES)
        .copied()
        .collect::<Vec<_>>()
        .join(", ")
}
