//! [`PtVmPanel`]: the Passthrough settings of an existing VM (made here or in
//! virt-manager): which of the settings a passthrough guest needs it has, and adds or
//! removes them. The domain XML is read from libvirt, changed by core's `features::edit`
//! (a tree edit that keeps everything else) and defined again.
//!
//! Actions (also used by the tests): `panel.save`, `panel.remove-display`,
//! `panel.add-gpu`, `panel.set-code43` (a boolean: every setting against error 43 on or off),
//! `panel.set-rom` (the card's ROM file; empty for none).

use std::cell::{Cell, RefCell};

use adw::prelude::*;
use adw::subclass::prelude::*;
use gettextrs::gettext;
use gtk::glib;
use passthrough_core::gpu::{GpuVerdict, Verdict};
use passthrough_core::i18n::gettext_f;
use passthrough_core::vm::code43::{self, Code43Setting};
use passthrough_core::vm::features::{self, Edit, PassthroughSettings};
use passthrough_core::vm::libvirt::DomainInfo;
use passthrough_core::HostReport;

use crate::vm_service::VmService;
use crate::widgets::vm_wizard::{gpu_ids, group_of};
use crate::widgets::{set_tone_icon, Tone};
use crate::window::Scan;

mod imp {
    use super::*;

    #[derive(Debug, Default, gtk::CompositeTemplate)]
    #[template(file = "vm_panel.ui")]
    pub struct PtVmPanel {
        #[template_child]
        pub(super) title: TemplateChild<adw::WindowTitle>,
        #[template_child]
        pub(super) save_button: TemplateChild<gtk::Button>,
        #[template_child]
        pub(super) toasts: TemplateChild<adw::ToastOverlay>,
        #[template_child]
        pub(super) machine_group: TemplateChild<adw::PreferencesGroup>,
        #[template_child]
        pub(super) gpu_group: TemplateChild<adw::PreferencesGroup>,
        #[template_child]
        pub(super) code43_group: TemplateChild<crate::widgets::PtCode43Group>,
        #[template_child]
        pub(super) display_row: TemplateChild<adw::ActionRow>,
        #[template_child]
        pub(super) display_button: TemplateChild<gtk::Button>,

        pub(super) service: RefCell<Option<VmService>>,
        pub(super) domain: RefCell<Option<DomainInfo>>,
        pub(super) report: RefCell<Option<HostReport>>,
        pub(super) xml: RefCell<Option<String>>,
        pub(super) settings: RefCell<Option<PassthroughSettings>>,
        /// Edits chosen with buttons (display, card), applied on Save with the switches.
        pub(super) pending: RefCell<Vec<Edit>>,
        pub(super) rows: RefCell<Vec<gtk::Widget>>,
        pub(super) saving: Cell<bool>,
        pub(super) failed: Cell<bool>,
        /// The ROM file row of the VM's graphics card, with its address.
        pub(super) rom: RefCell<Option<(passthrough_core::pci::PciAddress, adw::EntryRow)>>,
    }

    #[glib::object_subclass]
    impl ObjectSubclass for PtVmPanel {
        const NAME: &'static str = "PtVmPanel";
        type Type = super::PtVmPanel;
        type ParentType = adw::Window;

        fn class_init(klass: &mut Self::Class) {
            crate::widgets::PtCode43Group::ensure_type();
            klass.bind_template();
            klass.install_action("panel.save", None, |p, _, _| p.save());
            klass.install_action("panel.remove-display", None, |p, _, _| {
                p.imp()
                    .pending
                    .borrow_mut()
                    .push(Edit::RemoveEmulatedDisplay);
                p.imp().display_button.set_sensitive(false);
                p.imp().display_row.set_subtitle(&gettext(
                    "Removed when you save: the graphics card is then the only display.",
                ));
            });
            klass.install_action("panel.add-gpu", None, |p, _, _| p.add_gpu());
            klass.install_action("panel.set-rom", Some(glib::VariantTy::STRING), |p, _, v| {
                if let (Some(file), Some((_, row))) =
                    (v.and_then(|v| v.str()), p.imp().rom.borrow().as_ref())
                {
                    row.set_text(file);
                }
            });
            klass.install_action(
                "panel.set-code43",
                Some(glib::VariantTy::BOOLEAN),
                |p, _, v| {
                    if let Some(on) = v.and_then(|v| v.get::<bool>()) {
                        p.imp().code43_group.set_all(on);
                    }
                },
            );
        }

        fn instance_init(obj: &glib::subclass::InitializingObject<Self>) {
            obj.init_template();
        }
    }

    impl ObjectImpl for PtVmPanel {}
    impl WidgetImpl for PtVmPanel {}
    impl WindowImpl for PtVmPanel {}
    impl AdwWindowImpl for PtVmPanel {}
}

glib::wrapper! {
    pub struct PtVmPanel(ObjectSubclass<imp::PtVmPanel>)
        @extends adw::Window, gtk::Window, gtk::Widget,
        @implements gtk::Buildable, gtk::ConstraintTarget, gtk::Native, gtk::Root,
            gtk::ShortcutManager;
}

impl PtVmPanel {
    pub fn new(
        parent: &impl IsA<gtk::Window>,
        domain: &DomainInfo,
        scan: Option<&Scan>,
        service: VmService,
    ) -> Self {
        let panel: Self = glib::Object::builder()
            .property("transient-for", parent)
            .build();
        let imp = panel.imp();
        imp.title.set_subtitle(&domain.name);
        imp.domain.replace(Some(domain.clone()));
        imp.report.replace(scan.map(|s| s.report.clone()));
        imp.service.replace(Some(service));
        imp.save_button.set_sensitive(false);
        panel.load();
        panel
    }

    fn toast(&self, text: &str) {
        let toast = adw::Toast::new(&glib::markup_escape_text(text));
        toast.set_timeout(8);
        self.imp().toasts.add_toast(toast);
        if std::env::var_os("PASSTHROUGH_TEST_REPORT").is_some() {
            println!("panel-message: {text}");
        }
    }

    /// Whether the settings are read (for tests).
    pub fn is_loaded(&self) -> bool {
        self.imp().settings.borrow().is_some() || self.imp().failed.get()
    }

    /// Saving (tests wait for it).
    pub fn is_saving(&self) -> bool {
        self.imp().saving.get()
    }

    fn load(&self) {
        let Some(service) = self.imp().service.borrow().clone() else {
            return;
        };
        let uuid = self
            .imp()
            .domain
            .borrow()
            .as_ref()
            .map(|d| d.uuid.clone())
            .unwrap_or_default();
        glib::spawn_future_local(glib::clone!(
            #[weak(rename_to = p)]
            self,
            async move {
                let result = service
                    .call(move |c| c.xml(&uuid).map_err(|e| e.message()))
                    .await;
                match result.and_then(|xml| {
                    features::read(&xml)
                        .map(|s| (xml, s))
                        .map_err(|e| e.message().to_owned())
                }) {
                    Ok((xml, settings)) => p.show(xml, settings),
                    Err(message) => {
                        p.imp().failed.set(true);
                        p.toast(&message);
                    }
                }
            }
        ));
    }

    fn show(&self, xml: String, s: PassthroughSettings) {
        let imp = self.imp();
        for row in imp.rows.take() {
            if let Some(group) = row
                .parent()
                .and_then(|p| p.ancestor(adw::PreferencesGroup::static_type()))
                .and_downcast::<adw::PreferencesGroup>()
            {
                group.remove(&row);
            }
        }
        let machine = [
            (
                s.machine_q35,
                gettext("Q35 machine"),
                gettext("PCI Express, which graphics cards expect."),
                gettext("An i440FX machine: graphics cards work better on Q35 (virt-manager sets it only when the VM is made)."),
            ),
            (
                s.efi,
                gettext("UEFI firmware (OVMF)"),
                gettext("Needed by the cards' UEFI option ROMs and by Windows 11."),
                gettext("Legacy BIOS (SeaBIOS): passthrough works best with UEFI; it can only be chosen when the VM is made."),
            ),
            (
                s.secure_boot,
                gettext("Secure Boot"),
                gettext("Windows 11 requires it."),
                gettext("Off: Windows 11 refuses to install without it."),
            ),
            (
                s.tpm,
                gettext("TPM"),
                gettext("An emulated TPM 2.0 (swtpm), which Windows 11 requires."),
                gettext("None: Windows 11 refuses to install without one."),
            ),
        ];
        for (ok, title, good, bad) in machine {
            let row = adw::ActionRow::new();
            row.set_title(&title);
            row.set_subtitle(&glib::markup_escape_text(if ok { &good } else { &bad }));
            let icon = gtk::Image::new();
            set_tone_icon(&icon, Some(if ok { Tone::Ok } else { Tone::Warning }));
            row.add_prefix(&icon);
            imp.machine_group.add(&row);
            imp.rows.borrow_mut().push(row.upcast());
        }

        // The card: what the VM has, and the reserved card it could get.
        if s.hostdevs.is_empty() {
            let row = adw::ActionRow::new();
            row.set_title(&gettext("No PCI device is passed through"));
            imp.gpu_group.add(&row);
            imp.rows.borrow_mut().push(row.upcast());
        }
        let report = imp.report.borrow().clone();
        for address in &s.hostdevs {
            let row = adw::ActionRow::new();
            let name = report
                .as_ref()
                .and_then(|r| r.pci.get(address))
                .map(|d| d.display_name())
                .unwrap_or_else(|| gettext("Unknown device"));
            row.set_title(&glib::markup_escape_text(&name));
            let rom = s
                .rom_files
                .iter()
                .find(|(a, _)| a == address)
                .map(|(_, f)| gettext_f("ROM file {file}", &[("file", f)]));
            row.set_subtitle(&glib::markup_escape_text(&match rom {
                Some(rom) => format!("{address} · {rom}"),
                None => address.to_string(),
            }));
            imp.gpu_group.add(&row);
            imp.rows.borrow_mut().push(row.upcast());
        }
        // The ROM file of the VM's graphics card (the first hostdev that is one).
        let gpu_address = s.hostdevs.iter().copied().find(|a| {
            report
                .as_ref()
                .is_some_and(|r| r.gpus.iter().any(|g| g.address == *a))
        });
        imp.rom.replace(None);
        if let Some(address) = gpu_address {
            let row = adw::EntryRow::new();
            row.set_title(&gettext("ROM file of the card (optional, full path)"));
            row.set_tooltip_text(Some(&code43::explain(Code43Setting::RomFile)));
            if let Some((_, file)) = s.rom_files.iter().find(|(a, _)| *a == address) {
                row.set_text(file);
            }
            imp.gpu_group.add(&row);
            imp.rows.borrow_mut().push(row.clone().upcast());
            imp.rom.replace(Some((address, row)));
        }
        if let Some(gpu) = self.reserved_gpu_not_in(&s) {
            let row = adw::ActionRow::new();
            row.set_title(&glib::markup_escape_text(&gpu.display_name()));
            row.set_subtitle(&gettext(
                "Reserved for vfio-pci and not in this virtual machine yet.",
            ));
            let button = gtk::Button::with_mnemonic(&gettext("_Add"));
            button.set_valign(gtk::Align::Center);
            button.set_action_name(Some("panel.add-gpu"));
            row.add_suffix(&button);
            imp.gpu_group.add(&row);
            imp.rows.borrow_mut().push(row.upcast());
            let (vendor, device) = gpu_ids(&gpu);
            if let Some(hint) = code43::reset_bug_hint(&vendor, &device) {
                imp.gpu_group.set_description(Some(&hint));
            }
        }

        let c = &s.code43;
        imp.code43_group.set(c);

        imp.display_button.set_visible(s.emulated_display);
        imp.display_row.set_subtitle(&if s.emulated_display {
            gettext("QXL/SPICE or VNC, used to install Windows. Remove it once the graphics card's driver works: Windows then uses only the card.")
        } else {
            gettext("None: the graphics card is the only display.")
        });
        imp.xml.replace(Some(xml));
        imp.settings.replace(Some(s));
        imp.save_button.set_sensitive(true);
    }

    /// An isolated card held by vfio-pci that the VM does not have.
    fn reserved_gpu_not_in(&self, s: &PassthroughSettings) -> Option<GpuVerdict> {
        let report = self.imp().report.borrow();
        report
            .as_ref()?
            .gpus
            .iter()
            .find(|g| {
                g.driver.as_deref() == Some("vfio-pci")
                    && g.verdict == Verdict::Isolated
                    && !s.hostdevs.contains(&g.address)
            })
            .cloned()
    }

    fn add_gpu(&self) {
        let Some(s) = self.imp().settings.borrow().clone() else {
            return;
        };
        let Some(gpu) = self.reserved_gpu_not_in(&s) else {
            return;
        };
        let (vendor, device) = gpu_ids(&gpu);
        let c = code43::recommended(&vendor, &device);
        let imp = self.imp();
        imp.pending
            .borrow_mut()
            .push(Edit::AddHostdevs(group_of(&gpu)));
        // The settings against error 43 for its maker, on top of what the VM has.
        imp.code43_group.add(&c);
        self.toast(&gettext_f(
            "{name} is added when you save.",
            &[("name", &gpu.display_name())],
        ));
    }

    /// The edits the switches and buttons ask for.
    pub fn edits(&self) -> Vec<Edit> {
        let imp = self.imp();
        let mut edits = imp.pending.borrow().clone();
        let c = imp.code43_group.value();
        edits.push(Edit::VendorId(c.vendor_id));
        edits.push(Edit::KvmHidden(c.kvm_hidden));
        edits.push(Edit::IoapicKvm(c.ioapic_kvm));
        edits.push(Edit::IgnoreMsrs(c.ignore_msrs));
        if let Some((address, row)) = imp.rom.borrow().as_ref() {
            let file = row.text().trim().to_owned();
            edits.push(Edit::RomFile {
                address: *address,
                file: (!file.is_empty()).then_some(file),
            });
        }
        edits
    }

    fn save(&self) {
        let imp = self.imp();
        let Some(xml) = imp.xml.borrow().clone() else {
            return;
        };
        if imp.saving.replace(true) {
            return;
        }
        let new_xml = match features::edit(&xml, &self.edits()) {
            Ok(x) => x,
            Err(e) => {
                self.toast(e.message());
                imp.saving.set(false);
                return;
            }
        };
        let Some(service) = imp.service.borrow().clone() else {
            return;
        };
        glib::spawn_future_local(glib::clone!(
            #[weak(rename_to = p)]
            self,
            async move {
                match service
                    .call(move |c| {
                        let info = c.define(&new_xml).map_err(|e| e.message())?;
                        // What libvirt kept, read back.
                        let kept = c.xml(&info.uuid).map_err(|e| e.message())?;
                        Ok((info, kept))
                    })
                    .await
                {
                    Ok((info, kept)) => {
                        if std::env::var_os("PASSTHROUGH_TEST_REPORT").is_some() {
                            match features::read(&kept) {
                                Ok(s) => println!(
                                    "panel-saved: uuid={} vendor-id={} kvm-hidden={} ioapic={} ignore-msrs={} emulated-display={} rom={} hostdevs={}",
                                    info.uuid,
                                    s.code43.vendor_id.as_deref().unwrap_or("-"),
                                    s.code43.kvm_hidden,
                                    s.code43.ioapic_kvm,
                                    s.code43.ignore_msrs,
                                    s.emulated_display,
                                    s.rom_files
                                        .first()
                                        .map_or("-", |(_, f)| f.as_str()),
                                    s.hostdevs.len()
                                ),
                                Err(e) => println!("panel-saved: unreadable {}", e.message()),
                            }
                        }
                        p.close();
                    }
                    Err(message) => {
                        p.toast(&message);
                        p.imp().saving.set(false);
                    }
                }
            }
        ));
    }
}
