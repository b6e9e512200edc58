//! [`PtVmWizard`]: a new Windows VM for GPU passthrough, in virt-manager's steps: the
//! Windows and virtio-win discs, memory and processors, the system disk, the network, the
//! graphics card with the settings against error 43, and a review with the libvirt XML.
//!
//! Actions (also used by the tests): `wizard.next`, `wizard.back`, `wizard.goto` (a page
//! name), `wizard.create`, `wizard.show-xml` (unfolds the XML on the review), `wizard.choose-iso`, `wizard.choose-virtio`, and `wizard.set`
//! (`KEY=VALUE`: `name`, `iso`, `virtio`, `disk-size` in GiB, `disk-path`, `windows` 10|11,
//! `gpu` none|ADDRESS), which fills a field as the user would.

use std::cell::{Cell, RefCell};
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::sync::OnceLock;

use adw::prelude::*;
use adw::subclass::prelude::*;
use gettextrs::gettext;
use gtk::glib;
use gtk::glib::subclass::Signal;
use passthrough_core::gpu::{GpuVerdict, Verdict};
use passthrough_core::i18n::gettext_f;
use passthrough_core::pci::PciAddress;
use passthrough_core::vm::code43::{self, Code43Setting};
use passthrough_core::vm::spec::check_name;
use passthrough_core::vm::{
    launcher, xml, Code43, Display, GpuAssignment, NetworkChoice, Storage, VmSpec, WindowsVersion,
};
use passthrough_core::HostRoot;

use crate::vm_service::VmService;
use crate::window::Scan;

const PAGES: &[&str] = &["media", "resources", "storage", "network", "gpu", "review"];

mod imp {
    use super::*;

    #[derive(Debug, Default, gtk::CompositeTemplate)]
    #[template(file = "vm_wizard.ui")]
    pub struct PtVmWizard {
        #[template_child]
        pub(super) title: TemplateChild<adw::WindowTitle>,
        #[template_child]
        pub(super) back_button: TemplateChild<gtk::Button>,
        #[template_child]
        pub(super) next_button: TemplateChild<gtk::Button>,
        #[template_child]
        pub(super) toasts: TemplateChild<adw::ToastOverlay>,
        #[template_child]
        pub(super) stack: TemplateChild<gtk::Stack>,
        #[template_child]
        pub(super) name_row: TemplateChild<adw::EntryRow>,
        #[template_child]
        pub(super) windows_row: TemplateChild<adw::ComboRow>,
        #[template_child]
        pub(super) iso_row: TemplateChild<adw::ActionRow>,
        #[template_child]
        pub(super) virtio_row: TemplateChild<adw::ActionRow>,
        #[template_child]
        pub(super) resources_group: TemplateChild<adw::PreferencesGroup>,
        #[template_child]
        pub(super) memory_spin: TemplateChild<gtk::SpinButton>,
        #[template_child]
        pub(super) cpus_row: TemplateChild<adw::ActionRow>,
        #[template_child]
        pub(super) cpus_spin: TemplateChild<gtk::SpinButton>,
        #[template_child]
        pub(super) storage_row: TemplateChild<adw::ComboRow>,
        #[template_child]
        pub(super) pool_row: TemplateChild<adw::ComboRow>,
        #[template_child]
        pub(super) size_row: TemplateChild<adw::ActionRow>,
        #[template_child]
        pub(super) size_spin: TemplateChild<gtk::SpinButton>,
        #[template_child]
        pub(super) path_row: TemplateChild<adw::EntryRow>,
        #[template_child]
        pub(super) nvme_row: TemplateChild<adw::ComboRow>,
        #[template_child]
        pub(super) network_group: TemplateChild<adw::PreferencesGroup>,
        #[template_child]
        pub(super) network_row: TemplateChild<adw::ComboRow>,
        #[template_child]
        pub(super) gpu_group: TemplateChild<adw::PreferencesGroup>,
        #[template_child]
        pub(super) gpu_row: TemplateChild<adw::ComboRow>,
        #[template_child]
        pub(super) code43_group: TemplateChild<crate::widgets::PtCode43Group>,
        #[template_child]
        pub(super) rom_row: TemplateChild<adw::EntryRow>,
        #[template_child]
        pub(super) review_label: TemplateChild<gtk::Label>,
        #[template_child]
        pub(super) xml_expander: TemplateChild<gtk::Expander>,
        #[template_child]
        pub(super) xml_view: TemplateChild<gtk::TextView>,
        #[template_child]
        pub(super) launcher_switch: TemplateChild<gtk::Switch>,

        pub(super) scan: RefCell<Option<Rc<Scan>>>,
        pub(super) service: RefCell<Option<VmService>>,
        pub(super) iso: RefCell<Option<String>>,
        pub(super) virtio: RefCell<Option<String>>,
        pub(super) pools: RefCell<Vec<String>>,
        pub(super) networks: RefCell<Vec<NetworkChoice>>,
        pub(super) nvmes: RefCell<Vec<PciAddress>>,
        /// The GPUs offered, index 1.. of the combo (0 is "none").
        pub(super) gpus: RefCell<Vec<GpuVerdict>>,
        /// Names of the existing VMs (a new one must differ).
        pub(super) taken: RefCell<Vec<String>>,
        pub(super) creating: Cell<bool>,
        pub(super) loading: Cell<bool>,
    }

    #[glib::object_subclass]
    impl ObjectSubclass for PtVmWizard {
        const NAME: &'static str = "PtVmWizard";
        type Type = super::PtVmWizard;
        type ParentType = adw::Window;

        fn class_init(klass: &mut Self::Class) {
            crate::widgets::PtCode43Group::ensure_type();
            klass.bind_template();
            klass.install_action("wizard.next", None, |w, _, _| w.next());
            klass.install_action("wizard.back", None, |w, _, _| w.back());
            klass.install_action("wizard.create", None, |w, _, _| w.create());
            klass.install_action("wizard.show-xml", None, |w, _, _| {
                w.imp().xml_expander.set_expanded(true);
            });
            klass.install_action("wizard.goto", Some(glib::VariantTy::STRING), |w, _, p| {
                if let Some(page) = p.and_then(|p| p.str()) {
                    w.goto(page);
                }
            });
            klass.install_action("wizard.set", Some(glib::VariantTy::STRING), |w, _, p| {
                if let Some((key, value)) = p.and_then(|p| p.str()).and_then(|s| s.split_once('='))
                {
                    w.set_field(key, value);
                }
            });
            klass.install_action_async("wizard.choose-iso", None, |w, _, _| async move {
                if let Some(path) = w.choose_file(&gettext("Windows Installation Disc")).await {
                    w.imp().iso.replace(Some(path));
                    w.show_discs();
                }
            });
            klass.install_action_async("wizard.choose-virtio", None, |w, _, _| async move {
                if let Some(path) = w.choose_file(&gettext("virtio-win Drivers Disc")).await {
                    w.imp().virtio.replace(Some(path));
                    w.show_discs();
                }
            });
        }

        fn instance_init(obj: &glib::subclass::InitializingObject<Self>) {
            obj.init_template();
        }
    }

    impl ObjectImpl for PtVmWizard {
        fn signals() -> &'static [Signal] {
            static SIGNALS: OnceLock<Vec<Signal>> = OnceLock::new();
            SIGNALS.get_or_init(|| {
                vec![Signal::builder("created")
                    .param_types([String::static_type()])
                    .build()]
            })
        }

        fn constructed(&self) {
            self.parent_constructed();
            let obj = self.obj();
            self.stack.connect_visible_child_notify(glib::clone!(
                #[weak]
                obj,
                move |_| obj.update_buttons()
            ));
            self.storage_row.connect_selected_notify(glib::clone!(
                #[weak]
                obj,
                move |_| obj.show_storage()
            ));
            self.gpu_row.connect_selected_notify(glib::clone!(
                #[weak]
                obj,
                move |_| obj.gpu_changed()
            ));
            self.cpus_spin.connect_value_changed(glib::clone!(
                #[weak]
                obj,
                move |_| obj.show_topology()
            ));
        }
    }

    impl WidgetImpl for PtVmWizard {}
    impl WindowImpl for PtVmWizard {}
    impl AdwWindowImpl for PtVmWizard {}
}

glib::wrapper! {
    pub struct PtVmWizard(ObjectSubclass<imp::PtVmWizard>)
        @extends adw::Window, gtk::Window, gtk::Widget,
        @implements gtk::Buildable, gtk::ConstraintTarget, gtk::Native, gtk::Root,
            gtk::ShortcutManager;
}

/// The host's memory in MiB, from `/proc/meminfo`.
fn host_memory_mib(root: &HostRoot) -> Option<u64> {
    let text = root.read_string("/proc/meminfo").ok()?;
    let kib: u64 = text
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))?
        .split_whitespace()
        .next()?
        .parse()
        .ok()?;
    Some(kib / 1024)
}

/// Bridges of the host (`/sys/class/net/*/bridge`).
fn host_bridges(root: &HostRoot) -> Vec<String> {
    let mut out: Vec<String> = root
        .list_dir("/sys/class/net")
        .unwrap_or_default()
        .into_iter()
        .filter(|n| root.exists(format!("/sys/class/net/{n}/bridge")))
        .collect();
    out.sort();
    out
}

/// (sockets, cores, threads) for `vcpus`: pairs of threads per core, as on SMT hosts.
pub fn topology_for(vcpus: u32) -> (u32, u32, u32) {
    if vcpus >= 2 && vcpus.is_multiple_of(2) {
        (1, vcpus / 2, 2)
    } else {
        (1, vcpus, 1)
    }
}

impl PtVmWizard {
    pub fn new(
        parent: &impl IsA<gtk::Window>,
        scan: &Rc<Scan>,
        root: &Path,
        service: VmService,
    ) -> Self {
        let wizard: Self = glib::Object::builder()
            .property("transient-for", parent)
            .build();
        let imp = wizard.imp();
        imp.scan.replace(Some(scan.clone()));
        imp.service.replace(Some(service));
        let host = HostRoot::new(root.to_path_buf());
        let report = &scan.report;

        imp.name_row.set_text("win11");
        imp.virtio.replace(report.virtio_win.clone());
        wizard.show_discs();

        // Memory: half the host's, at most 16 GiB, in whole GiB; processors: half the host's.
        let host_mib = host_memory_mib(&host);
        let memory = host_mib
            .map(|m| ((m / 2).clamp(4096, 16384) / 1024) * 1024)
            .unwrap_or(8192);
        imp.memory_spin.set_value(memory as f64);
        let threads = report.cpu.as_ref().map(|c| c.threads).unwrap_or(8).max(1);
        imp.cpus_spin.set_range(1.0, f64::from(threads));
        imp.cpus_spin
            .set_value(f64::from((threads / 2).max(2).min(threads)));
        imp.resources_group.set_description(Some(&gettext_f(
            "This computer has {memory} MiB of memory and {threads} processor threads. Leave enough for the host: about half is a good start.",
            &[
                ("memory", &host_mib.map_or_else(|| "?".to_owned(), |m| m.to_string())),
                ("threads", &threads.to_string()),
            ],
        )));
        wizard.show_topology();

        // NVMe controllers alone in their IOMMU group.
        let nvmes: Vec<PciAddress> = report
            .pci
            .devices
            .iter()
            .filter(|d| d.class.is_some_and(|c| c >> 8 == 0x0108))
            .filter(|d| {
                d.iommu_group.is_some_and(|g| {
                    report
                        .pci
                        .devices
                        .iter()
                        .filter(|o| o.iommu_group == Some(g) && o.address != d.address)
                        .all(|o| o.is_bridge())
                })
            })
            .map(|d| d.address)
            .collect();
        let names: Vec<String> = nvmes
            .iter()
            .map(|a| {
                let name = report
                    .pci
                    .get(a)
                    .map(|d| d.display_name())
                    .unwrap_or_default();
                format!("{a} · {name}")
            })
            .collect();
        imp.nvme_row.set_model(Some(&string_list(&names)));
        imp.nvmes.replace(nvmes);

        // Graphics cards that can go: isolated ones, the reserved (vfio-pci) one first.
        let mut gpus: Vec<GpuVerdict> = report
            .gpus
            .iter()
            .filter(|g| g.verdict == Verdict::Isolated)
            .cloned()
            .collect();
        gpus.sort_by_key(|g| g.driver.as_deref() != Some("vfio-pci"));
        let mut labels = vec![gettext("None (add one later)")];
        labels.extend(gpus.iter().map(|g| {
            let held = if g.driver.as_deref() == Some("vfio-pci") {
                gettext("reserved")
            } else {
                gettext("not reserved yet")
            };
            format!("{} · {} · {held}", g.display_name(), g.address)
        }));
        imp.gpu_row.set_model(Some(&string_list(&labels)));
        let first = usize::from(!gpus.is_empty()) as u32;
        imp.gpus.replace(gpus);
        imp.gpu_row.set_selected(first);
        wizard.gpu_changed();

        // Network: bridges first (the Network step makes br0), then libvirt's networks.
        let bridges = host_bridges(&host);
        wizard.fill_networks(&bridges, &[]);
        wizard.show_storage();
        wizard.update_buttons();
        wizard.load_from_libvirt(bridges);
        wizard
    }

    /// Fills a field (`wizard.set`).
    fn set_field(&self, key: &str, value: &str) {
        let imp = self.imp();
        match key {
            "name" => imp.name_row.set_text(value),
            "iso" => {
                imp.iso.replace(Some(value.to_owned()));
                self.show_discs();
            }
            "virtio" => {
                imp.virtio.replace(Some(value.to_owned()));
                self.show_discs();
            }
            "disk-size" => {
                imp.storage_row.set_selected(0);
                imp.size_spin.set_value(value.parse().unwrap_or(0.0));
            }
            "disk-path" => {
                imp.storage_row.set_selected(1);
                imp.path_row.set_text(value);
            }
            "windows" => imp.windows_row.set_selected(u32::from(value == "10")),
            "gpu" => {
                let i = imp
                    .gpus
                    .borrow()
                    .iter()
                    .position(|g| g.address.to_string() == value)
                    .map_or(0, |i| i + 1);
                imp.gpu_row.set_selected(i as u32);
            }
            _ => tracing::warn!("wizard.set: unknown field {key}"),
        }
    }

    /// Loading from libvirt or creating (tests wait for it).
    pub fn is_busy(&self) -> bool {
        let imp = self.imp();
        imp.loading.get() || imp.creating.get()
    }

    fn service(&self) -> VmService {
        self.imp().service.borrow().clone().expect("set in new()")
    }

    fn toast(&self, text: &str) {
        let toast = adw::Toast::new(&glib::markup_escape_text(text));
        toast.set_timeout(8);
        self.imp().toasts.add_toast(toast);
        if std::env::var_os("PASSTHROUGH_TEST_REPORT").is_some() {
            println!("wizard-message: {text}");
        }
    }

    /// Pools, networks and taken names, from libvirt.
    fn load_from_libvirt(&self, bridges: Vec<String>) {
        let service = self.service();
        self.imp().loading.set(true);
        glib::spawn_future_local(glib::clone!(
            #[weak(rename_to = w)]
            self,
            async move {
                let result = service
                    .call(|c| {
                        let pools = c.pools().map_err(|e| e.message())?;
                        let nets = c.networks().map_err(|e| e.message())?;
                        let names = c
                            .domains()
                            .map_err(|e| e.message())?
                            .into_iter()
                            .map(|d| d.name)
                            .collect::<Vec<_>>();
                        Ok((pools, nets, names))
                    })
                    .await;
                match result {
                    Ok((pools, nets, names)) => {
                        let imp = w.imp();
                        let selected = pools.iter().position(|p| p == "default").unwrap_or(0);
                        imp.pool_row.set_model(Some(&string_list(&pools)));
                        imp.pool_row.set_selected(selected as u32);
                        imp.pools.replace(pools);
                        let nets: Vec<(String, Option<String>)> =
                            nets.into_iter().map(|n| (n.name, n.forward)).collect();
                        w.fill_networks(&bridges, &nets);
                        // A name no VM has yet.
                        let base = imp.name_row.text().to_string();
                        let mut name = base.clone();
                        let mut n = 2;
                        while names.contains(&name) {
                            name = format!("{base}-{n}");
                            n += 1;
                        }
                        imp.name_row.set_text(&name);
                        imp.taken.replace(names);
                    }
                    Err(message) => w.toast(&message),
                }
                w.show_storage();
                w.imp().loading.set(false);
            }
        ));
    }

    fn fill_networks(&self, bridges: &[String], networks: &[(String, Option<String>)]) {
        let imp = self.imp();
        let mut choices = Vec::new();
        let mut labels = Vec::new();
        for b in bridges {
            choices.push(NetworkChoice::Bridge(b.clone()));
            labels.push(gettext_f(
                "Bridge {name}: on your network like another computer",
                &[("name", b)],
            ));
        }
        for (name, forward) in networks {
            choices.push(NetworkChoice::Network(name.clone()));
            labels.push(match forward.as_deref() {
                Some("nat") | None => gettext_f(
                    "libvirt network {name} (NAT): reaches the internet, hidden from your network",
                    &[("name", name)],
                ),
                Some(mode) => gettext_f(
                    "libvirt network {name} ({mode})",
                    &[("name", name), ("mode", mode)],
                ),
            });
        }
        if choices.is_empty() {
            choices.push(NetworkChoice::Network("default".into()));
            labels.push(gettext_f(
                "libvirt network {name} (NAT): reaches the internet, hidden from your network",
                &[("name", "default")],
            ));
        }
        imp.network_group.set_description(Some(&if bridges.is_empty() {
            gettext("There is no network bridge yet: the Network step makes one, so the virtual machine can be reached from other computers (Parsec, Steam Link, RDP).")
        } else {
            gettext("A bridge puts the virtual machine on your network, where Parsec, Steam Link and RDP clients find it.")
        }));
        imp.network_row.set_model(Some(&string_list(&labels)));
        imp.network_row.set_selected(0);
        imp.networks.replace(choices);
    }

    fn show_discs(&self) {
        let imp = self.imp();
        match imp.iso.borrow().as_deref() {
            Some(p) => imp.iso_row.set_subtitle(&glib::markup_escape_text(p)),
            None => imp.iso_row.set_subtitle(&gettext(
                "Not chosen: download Windows from Microsoft's website as an ISO file.",
            )),
        }
        match imp.virtio.borrow().as_deref() {
            Some(p) => imp.virtio_row.set_subtitle(&glib::markup_escape_text(p)),
            None => imp.virtio_row.set_subtitle(&gettext(
                "Not found: download virtio-win.iso from the Fedora project (fedorapeople.org, virtio-win) and choose it here.",
            )),
        }
    }

    fn show_topology(&self) {
        let imp = self.imp();
        let vcpus = imp.cpus_spin.value_as_int().max(1) as u32;
        let (s, c, t) = topology_for(vcpus);
        imp.cpus_row.set_subtitle(&gettext_f(
            "Host processor model passed through, as {sockets} socket × {cores} cores × {threads} threads.",
            &[
                ("sockets", &s.to_string()),
                ("cores", &c.to_string()),
                ("threads", &t.to_string()),
            ],
        ));
    }

    fn show_storage(&self) {
        let imp = self.imp();
        let kind = imp.storage_row.selected();
        imp.pool_row.set_visible(kind == 0);
        imp.size_row.set_visible(kind == 0);
        imp.path_row.set_visible(kind == 1);
        imp.nvme_row.set_visible(kind == 2);
        if kind == 2 && imp.nvmes.borrow().is_empty() {
            imp.nvme_row.set_subtitle(&gettext(
                "No NVMe drive of this computer is alone in its IOMMU group.",
            ));
        }
        if kind == 0 && imp.pools.borrow().is_empty() {
            imp.pool_row.set_subtitle(&gettext(
                "libvirt has no storage pool yet: virt-manager or “virsh pool-define-as” makes one.",
            ));
        } else {
            imp.pool_row.set_subtitle("");
        }
    }

    fn selected_gpu(&self) -> Option<GpuVerdict> {
        let imp = self.imp();
        let i = imp.gpu_row.selected() as usize;
        (i > 0)
            .then(|| imp.gpus.borrow().get(i - 1).cloned())
            .flatten()
    }

    /// A new card: the group it takes along, and the settings against error 43 for its maker.
    fn gpu_changed(&self) {
        let imp = self.imp();
        let gpu = self.selected_gpu();
        imp.code43_group.set_visible(gpu.is_some());
        let Some(gpu) = gpu else {
            imp.gpu_group.set_description(Some(&gettext(
                "Without a card the virtual machine has only its emulated display. The Passthrough settings of the virtual machine add one later.",
            )));
            return;
        };
        let (vendor, device) = gpu_ids(&gpu);
        let c = code43::recommended(&vendor, &device);
        imp.code43_group.set(&c);
        let mut text = vec![gettext_f(
            "The whole IOMMU group goes to the virtual machine: {addresses}.",
            &[(
                "addresses",
                &group_of(&gpu)
                    .iter()
                    .map(|a| a.to_string())
                    .collect::<Vec<_>>()
                    .join(", "),
            )],
        )];
        if gpu.driver.as_deref() != Some("vfio-pci") {
            text.push(gettext("It is not held by vfio-pci yet: reserve it on the Boot configuration step first, or the host's driver keeps it."));
        }
        if gpu.boot_vga {
            text.push(gettext("It is the boot GPU: the launcher removes it and rescans the PCI bus before the start, and a ROM file may be needed (see below)."));
        }
        if let Some(hint) = code43::reset_bug_hint(&vendor, &device) {
            text.push(hint);
        }
        imp.gpu_group.set_description(Some(&text.join("\n")));
        imp.rom_row
            .set_tooltip_text(Some(&code43::explain(Code43Setting::RomFile)));
    }

    fn page(&self) -> usize {
        let name = self.imp().stack.visible_child_name().unwrap_or_default();
        PAGES.iter().position(|p| *p == name.as_str()).unwrap_or(0)
    }

    fn update_buttons(&self) {
        let imp = self.imp();
        let page = self.page();
        imp.back_button.set_label(&if page == 0 {
            gettext("_Cancel")
        } else {
            gettext("_Back")
        });
        imp.next_button.set_label(&if page + 1 == PAGES.len() {
            gettext("C_reate")
        } else {
            gettext("_Next")
        });
        imp.next_button
            .set_action_name(Some(if page + 1 == PAGES.len() {
                "wizard.create"
            } else {
                "wizard.next"
            }));
        if let Some(child) = imp.stack.visible_child() {
            imp.title
                .set_subtitle(&imp.stack.page(&child).title().unwrap_or_default());
        }
    }

    fn goto(&self, name: &str) {
        if !PAGES.contains(&name) {
            return;
        }
        if name == "review" {
            self.show_review();
        }
        self.imp().stack.set_visible_child_name(name);
    }

    fn next(&self) {
        let page = self.page();
        if page == 0 {
            if let Err(message) = self.check_name() {
                self.toast(&message);
                return;
            }
        }
        if let Some(next) = PAGES.get(page + 1) {
            self.goto(next);
        }
    }

    fn back(&self) {
        let page = self.page();
        if page == 0 {
            self.close();
        } else {
            self.imp().stack.set_visible_child_name(PAGES[page - 1]);
        }
    }

    fn check_name(&self) -> Result<(), String> {
        let name = self.imp().name_row.text().to_string();
        check_name(&name).map_err(|e| e.message().to_owned())?;
        if self.imp().taken.borrow().contains(&name) {
            return Err(gettext_f(
                "A virtual machine named “{name}” exists already.",
                &[("name", &name)],
            ));
        }
        Ok(())
    }

    /// The choices as a spec.
    pub fn spec(&self) -> VmSpec {
        let imp = self.imp();
        let vcpus = imp.cpus_spin.value_as_int().max(1) as u32;
        let storage = match imp.storage_row.selected() {
            1 => Storage::Path {
                path: imp.path_row.text().trim().to_owned(),
            },
            2 => match imp.nvmes.borrow().get(imp.nvme_row.selected() as usize) {
                Some(address) => Storage::Nvme { address: *address },
                None => Storage::Path {
                    path: String::new(),
                },
            },
            _ => Storage::NewVolume {
                pool: imp
                    .pools
                    .borrow()
                    .get(imp.pool_row.selected() as usize)
                    .cloned()
                    .unwrap_or_default(),
                size_gib: imp.size_spin.value_as_int().max(1) as u64,
            },
        };
        let gpu = self.selected_gpu();
        let rom = imp.rom_row.text().trim().to_owned();
        VmSpec {
            name: imp.name_row.text().to_string(),
            windows: if imp.windows_row.selected() == 1 {
                WindowsVersion::Windows10
            } else {
                WindowsVersion::Windows11
            },
            memory_mib: imp.memory_spin.value_as_int().max(1) as u64,
            vcpus,
            topology: Some(topology_for(vcpus)),
            install_iso: imp.iso.borrow().clone(),
            virtio_iso: imp.virtio.borrow().clone(),
            storage,
            network: imp
                .networks
                .borrow()
                .get(imp.network_row.selected() as usize)
                .cloned()
                .unwrap_or(NetworkChoice::Network("default".into())),
            gpu: gpu.as_ref().map(|g| GpuAssignment {
                addresses: group_of(g),
                rom_file: (!rom.is_empty()).then_some(rom),
            }),
            code43: if gpu.is_some() {
                imp.code43_group.value()
            } else {
                Code43::default()
            },
            display: Display::QxlSpice,
            // libvirt's test driver and hosts without /dev/kvm get plain emulation.
            kvm: self
                .imp()
                .scan
                .borrow()
                .as_ref()
                .is_some_and(|s| s.report.kvm)
                && !self.service().uri().starts_with("test:"),
        }
    }

    fn show_review(&self) {
        let imp = self.imp();
        let spec = self.spec();
        match xml::domain_xml(&spec) {
            Ok(text) => {
                imp.xml_view.buffer().set_text(&text);
                imp.review_label.set_label(&review_text(&spec));
                imp.next_button.set_sensitive(true);
            }
            Err(e) => {
                imp.xml_view.buffer().set_text("");
                imp.review_label.set_label(e.message());
                imp.next_button.set_sensitive(false);
            }
        }
    }

    fn create(&self) {
        let imp = self.imp();
        if imp.creating.replace(true) {
            return;
        }
        let spec = self.spec();
        let xml = match xml::domain_xml(&spec) {
            Ok(x) => x,
            Err(e) => {
                self.toast(e.message());
                imp.creating.set(false);
                return;
            }
        };
        let add_launcher = imp.launcher_switch.is_active();
        imp.next_button.set_sensitive(false);
        let service = self.service();
        glib::spawn_future_local(glib::clone!(
            #[weak(rename_to = w)]
            self,
            async move {
                let volume = match &spec.storage {
                    Storage::NewVolume { pool, size_gib } => {
                        Some((pool.clone(), xml::volume_name(&spec.name), *size_gib))
                    }
                    _ => None,
                };
                let result = service
                    .call(move |c| {
                        if let Some((pool, name, size)) = volume {
                            c.create_volume(&pool, &name, size)
                                .map_err(|e| e.message())?;
                        }
                        c.define(&xml).map_err(|e| e.message())
                    })
                    .await;
                match result {
                    Ok(info) => {
                        if add_launcher {
                            if let Err(e) = launcher::install(
                                &crate::pages::data_home(),
                                &info.name,
                                &info.uuid,
                            ) {
                                w.toast(&e.to_string());
                            }
                        }
                        if std::env::var_os("PASSTHROUGH_TEST_REPORT").is_some() {
                            println!("vm-created: uuid={} name={}", info.uuid, info.name);
                        }
                        w.emit_by_name::<()>("created", &[&info.name]);
                        w.close();
                    }
                    Err(message) => {
                        w.toast(&message);
                        w.imp().next_button.set_sensitive(true);
                        w.imp().creating.set(false);
                    }
                }
            }
        ));
    }

    async fn choose_file(&self, title: &str) -> Option<String> {
        let chooser = gtk::FileChooserNative::new(
            Some(title),
            Some(self),
            gtk::FileChooserAction::Open,
            Some(&gettext("_Choose")),
            Some(&gettext("_Cancel")),
        );
        let filter = gtk::FileFilter::new();
        filter.set_name(Some(&gettext("Disc images")));
        filter.add_pattern("*.iso");
        filter.add_pattern("*.ISO");
        chooser.add_filter(&filter);
        let (sender, receiver) = futures_channel::oneshot::channel();
        let sender = Cell::new(Some(sender));
        chooser.connect_response(move |c, response| {
            let path = (response == gtk::ResponseType::Accept)
                .then(|| c.file().and_then(|f| f.path()))
                .flatten();
            if let Some(s) = sender.take() {
                let _ = s.send(path);
            }
        });
        chooser.show();
        let path: Option<PathBuf> = receiver.await.ok().flatten();
        drop(chooser);
        path.map(|p| p.display().to_string())
    }
}

/// The GPU's vendor and device IDs as lowercase hex (`10de`, `1c02`).
pub fn gpu_ids(gpu: &GpuVerdict) -> (String, String) {
    (
        gpu.vendor_id
            .map(|v| format!("{v:04x}"))
            .unwrap_or_default(),
        gpu.device_id
            .map(|d| format!("{d:04x}"))
            .unwrap_or_default(),
    )
}

/// The GPU and the rest of its group, GPU first.
pub fn group_of(gpu: &GpuVerdict) -> Vec<PciAddress> {
    std::iter::once(gpu.address)
        .chain(gpu.companions.iter().copied())
        .collect()
}

fn string_list(items: &[String]) -> gtk::StringList {
    let refs: Vec<&str> = items.iter().map(String::as_str).collect();
    gtk::StringList::new(&refs)
}

/// A plain summary of the choices.
fn review_text(spec: &VmSpec) -> String {
    let mut lines = vec![gettext_f(
        "{name}: {windows}, {memory} MiB of memory, {vcpus} processors, UEFI (OVMF){extra}.",
        &[
            ("name", &spec.name),
            (
                "windows",
                match spec.windows {
                    WindowsVersion::Windows11 => "Windows 11",
                    WindowsVersion::Windows10 => "Windows 10",
                },
            ),
            ("memory", &spec.memory_mib.to_string()),
            ("vcpus", &spec.vcpus.to_string()),
            (
                "extra",
                &match spec.windows {
                    WindowsVersion::Windows11 => gettext(" with Secure Boot and a TPM"),
                    WindowsVersion::Windows10 => String::new(),
                },
            ),
        ],
    )];
    lines.push(match &spec.storage {
        Storage::NewVolume { pool, size_gib } => gettext_f(
            "System disk: a new {size} GiB disk image in the pool “{pool}”.",
            &[("size", &size_gib.to_string()), ("pool", pool)],
        ),
        Storage::Path { path } => gettext_f("System disk: {path}.", &[("path", path)]),
        Storage::Nvme { address } => gettext_f(
            "System disk: the NVMe drive {address}, passed through.",
            &[("address", &address.to_string())],
        ),
    });
    lines.push(match &spec.network {
        NetworkChoice::Bridge(b) => gettext_f("Network: bridge {name}.", &[("name", b)]),
        NetworkChoice::Network(n) => gettext_f("Network: libvirt network {name}.", &[("name", n)]),
    });
    lines.push(match &spec.gpu {
        Some(g) => gettext_f(
            "Graphics card: {addresses}, with a QXL display and SPICE for installing Windows (remove them later in the Passthrough settings).",
            &[(
                "addresses",
                &g.addresses
                    .iter()
                    .map(|a| a.to_string())
                    .collect::<Vec<_>>()
                    .join(", "),
            )],
        ),
        None => gettext("Graphics card: none yet; a QXL display and SPICE."),
    });
    if spec.install_iso.is_none() {
        lines.push(gettext(
            "No installation disc is chosen: attach one in virt-manager before the first start.",
        ));
    }
    if spec.virtio_iso.is_none() {
        lines.push(gettext(
            "No virtio-win disc is chosen: Windows setup will not see the virtio disk without its viostor driver.",
        ));
    }
    lines.join("\n")
}
