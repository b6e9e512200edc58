//! The boot-configuration editors on real files, and their properties on generated ones:
//! bytes outside the edited value stay, `kernel_args(edit(f, ops)) == apply_ops(
//! kernel_args(f), ops)`, editing twice is editing once, no word is duplicated, no ops means
//! the same bytes, and no input makes an editor panic.

use passthrough_core::bootcfg::{
    apply_ops, booster, dracut, grub, initramfs_tools, kernel_cmdline, kernelstub, loader_entry,
    mkinitcpio, modprobe, EditError, KargOp,
};
use proptest::prelude::*;

// ---------------------------------------------------------------------------------------
// Ops
// ---------------------------------------------------------------------------------------

fn set(key: &str, value: Option<&str>) -> KargOp {
    KargOp::SetKey {
        key: key.into(),
        value: value.map(Into::into),
    }
}

fn add(arg: &str) -> KargOp {
    KargOp::AddExact { arg: arg.into() }
}

fn remove(arg: &str) -> KargOp {
    KargOp::RemoveExact { arg: arg.into() }
}

fn remove_key(key: &str) -> KargOp {
    KargOp::RemoveKey { key: key.into() }
}

fn strings(words: &[&str]) -> Vec<String> {
    words.iter().map(|w| (*w).to_owned()).collect()
}

/// What the reference post's boot configuration becomes: intel_iommu, iommu=pt, the GPU's
/// IDs, and the post's invalid `amd_iommu=on` gone.
fn passthrough_ops() -> Vec<KargOp> {
    vec![
        remove("amd_iommu=on"),
        set("intel_iommu", Some("on")),
        set("iommu", Some("pt")),
        set("vfio-pci.ids", Some("10de:1c02,10de:10f1")),
    ]
}

// ---------------------------------------------------------------------------------------
// apply_ops
// ---------------------------------------------------------------------------------------

#[test]
fn apply_ops_reference_semantics() {
    let words = strings(&[
        "quiet",
        "vfio_pci.ids=1",
        "splash",
        "vfio-pci.ids=2",
        "quiet",
        "--",
        "single",
    ]);
    assert_eq!(
        apply_ops(&words, &[set("vfio-pci.ids", Some("3")), add("iommu=pt")]),
        [
            "quiet",
            "vfio-pci.ids=3",
            "splash",
            "quiet",
            "iommu=pt",
            "--",
            "single"
        ],
        "SetKey leaves one, at the first place; new words go before `--`"
    );
    assert_eq!(
        apply_ops(&words, &[set("vfio-pci.ids", Some("1"))]),
        ["quiet", "vfio_pci.ids=1", "splash", "quiet", "--", "single"],
        "a first one that already says the same is kept as written"
    );
    assert_eq!(
        apply_ops(&words, &[add("quiet"), remove_key("vfio_pci.ids")]),
        ["quiet", "splash", "--", "single"]
    );
    assert_eq!(
        apply_ops(&words, &[remove("quiet"), set("single", None)]),
        [
            "vfio_pci.ids=1",
            "splash",
            "vfio-pci.ids=2",
            "single",
            "--",
            "single"
        ],
        "arguments after `--` belong to init and are never matched"
    );
}

#[test]
fn edit_errors_display_the_file() {
    let err = grub::edit("GRUB_CMDLINE_LINUX_DEFAULT=\"$(x)\"\n", &[add("a")]).unwrap_err();
    assert_eq!(err.file, grub::PATH);
    assert_eq!(err.line, Some(1));
    assert!(
        err.to_string().starts_with("/etc/default/grub: Line 1 "),
        "{err}"
    );
    let err: &dyn std::error::Error = &err;
    assert!(!err.to_string().is_empty());
}

#[test]
fn ops_that_cannot_be_written_are_refused() {
    for op in [
        add("a b"),
        add(""),
        add("x\"y"),
        add("$(reboot)"),
        set("a=b", Some("c")),
        set("", None),
        set("k", Some("two words")),
    ] {
        let one = std::slice::from_ref(&op);
        let err: EditError = kernel_cmdline::edit("quiet\n", one).unwrap_err();
        assert_eq!(err.line, None, "{op:?}");
        assert!(grub::edit("", one).is_err());
        assert!(loader_entry::edit("", one).is_err());
        assert!(kernelstub::edit("{}", one).is_err());
    }
}

// ---------------------------------------------------------------------------------------
// GRUB: real files
// ---------------------------------------------------------------------------------------

const UBUNTU_GRUB: &str = r#"# If you change this file, run 'update-grub' afterwards to update
# /boot/grub/grub.cfg.
# For full documentation of the options in this file, see:
#   info -f grub -n 'Simple configuration'

GRUB_DEFAULT=0
GRUB_TIMEOUT_STYLE=hidden
GRUB_TIMEOUT=0
GRUB_DISTRIBUTOR=`lsb_release -i -s 2> /dev/null || echo Debian`
GRUB_CMDLINE_LINUX_DEFAULT="quiet splash"
GRUB_CMDLINE_LINUX=""

# Uncomment to enable BadRAM filtering, modify to suit your needs
# This works with Linux (no patch required) and with any kernel that obtains
# the memory map information from GRUB (GNU Mach, kernel of FreeBSD ...)
#GRUB_BADRAM="0x01234567,0xfefefefe,0x89abcdef,0xefefefef"

# Uncomment to disable graphical terminal (grub-pc only)
#GRUB_TERMINAL=console

# The resolution used on graphical terminal
# note that you can use only modes which your graphic card supports via VBE
# you can see them in real GRUB with the command `vbeinfo'
#GRUB_GFXMODE=640x480

# Uncomment if you don't want GRUB to pass "root=UUID=xxx" parameter to Linux
#GRUB_DISABLE_LINUX_UUID=true

# Uncomment to disable generation of recovery mode menu entries
#GRUB_DISABLE_RECOVERY="true"

# Uncomment to get a beep at grub start
#GRUB_INIT_TUNE="480 440 1"
"#;

const FEDORA_GRUB: &str = r#"GRUB_TIMEOUT=5
GRUB_DISTRIBUTOR="$(sed 's, release .*$,,g' /etc/system-release)"
GRUB_DEFAULT=saved
GRUB_DISABLE_SUBMENU=true
GRUB_TERMINAL_OUTPUT="console"
GRUB_CMDLINE_LINUX="rhgb quiet"
GRUB_DISABLE_RECOVERY="true"
GRUB_ENABLE_BLSCFG=true
"#;

#[test]
fn ubuntu_grub() {
    assert_eq!(grub::kernel_args(UBUNTU_GRUB).unwrap(), ["quiet", "splash"]);
    assert!(grub::linux_args(UBUNTU_GRUB).unwrap().is_empty());
    let out = grub::edit(UBUNTU_GRUB, &passthrough_ops()).unwrap();
    assert_eq!(
        out,
        UBUNTU_GRUB.replace(
            "GRUB_CMDLINE_LINUX_DEFAULT=\"quiet splash\"",
            "GRUB_CMDLINE_LINUX_DEFAULT=\"quiet splash intel_iommu=on iommu=pt vfio-pci.ids=10de:1c02,10de:10f1\""
        )
    );
    assert_eq!(grub::edit(&out, &passthrough_ops()).unwrap(), out);
    let back = [
        remove_key("intel_iommu"),
        remove_key("iommu"),
        remove_key("vfio_pci.ids"),
    ];
    assert_eq!(
        grub::edit(&out, &back).unwrap(),
        UBUNTU_GRUB,
        "release restores the file"
    );
}

#[test]
fn fedora_grub_gets_a_new_line() {
    assert!(grub::kernel_args(FEDORA_GRUB).unwrap().is_empty());
    assert_eq!(grub::linux_args(FEDORA_GRUB).unwrap(), ["rhgb", "quiet"]);
    let out = grub::edit(FEDORA_GRUB, &[set("intel_iommu", Some("on"))]).unwrap();
    assert_eq!(
        out,
        format!("{FEDORA_GRUB}GRUB_CMDLINE_LINUX_DEFAULT=\"intel_iommu=on\"\n")
    );
}

#[test]
fn reference_post_grub_line() {
    let text = "GRUB_CMDLINE_LINUX_DEFAULT=\"quiet splash amd_iommu=on vfio_pci.ids=10de:1d01,10de:0fb8 kvm.ignore_msrs=1\"\n";
    assert_eq!(
        grub::kernel_args(text).unwrap(),
        [
            "quiet",
            "splash",
            "amd_iommu=on",
            "vfio_pci.ids=10de:1d01,10de:0fb8",
            "kvm.ignore_msrs=1"
        ]
    );
    assert_eq!(
        grub::edit(text, &passthrough_ops()).unwrap(),
        "GRUB_CMDLINE_LINUX_DEFAULT=\"quiet splash vfio-pci.ids=10de:1c02,10de:10f1 kvm.ignore_msrs=1 intel_iommu=on iommu=pt\"\n"
    );
}

#[test]
fn grub_quoting_styles() {
    let ops = [add("iommu=pt"), remove("quiet")];
    let cases = [
        // The last assignment wins; an earlier one and comments stay.
        (
            "GRUB_CMDLINE_LINUX_DEFAULT=\"quiet\"\n#GRUB_CMDLINE_LINUX_DEFAULT=\"x\"\nGRUB_CMDLINE_LINUX_DEFAULT='quiet splash'  # mine\n",
            "GRUB_CMDLINE_LINUX_DEFAULT=\"quiet\"\n#GRUB_CMDLINE_LINUX_DEFAULT=\"x\"\nGRUB_CMDLINE_LINUX_DEFAULT='splash iommu=pt'  # mine\n",
        ),
        // Expansions stay as opaque words.
        (
            "GRUB_CMDLINE_LINUX_DEFAULT=\"$GRUB_CMDLINE_LINUX_DEFAULT quiet ${EXTRA}\"",
            "GRUB_CMDLINE_LINUX_DEFAULT=\"$GRUB_CMDLINE_LINUX_DEFAULT ${EXTRA} iommu=pt\"",
        ),
        // Continuation lines and escaped quotes inside double quotes.
        (
            "GRUB_CMDLINE_LINUX_DEFAULT=\"quiet \\\n  dyndbg=\\\"file x.c +p\\\" splash\"\n",
            "GRUB_CMDLINE_LINUX_DEFAULT=\"dyndbg=\\\"file x.c +p\\\" splash iommu=pt\"\n",
        ),
        // A bare word that needs company becomes double-quoted.
        (
            "\texport GRUB_CMDLINE_LINUX_DEFAULT=quiet\r\nGRUB_TIMEOUT=5\r\n",
            "\texport GRUB_CMDLINE_LINUX_DEFAULT=iommu=pt\r\nGRUB_TIMEOUT=5\r\n",
        ),
        (
            "GRUB_CMDLINE_LINUX_DEFAULT=nomodeset\n",
            "GRUB_CMDLINE_LINUX_DEFAULT=\"nomodeset iommu=pt\"\n",
        ),
        ("GRUB_CMDLINE_LINUX_DEFAULT=\"\"", "GRUB_CMDLINE_LINUX_DEFAULT=\"iommu=pt\""),
        // An expansion stays as written, quotes inside it included.
        (
            "GRUB_CMDLINE_LINUX_DEFAULT=\"${X:-\"a }\"} quiet\"",
            "GRUB_CMDLINE_LINUX_DEFAULT=\"${X:-\"a }\"} iommu=pt\"",
        ),
        // Another variable's multi-line value is not an assignment.
        (
            "GRUB_X=\"a\nGRUB_CMDLINE_LINUX_DEFAULT=no\"\n",
            "GRUB_X=\"a\nGRUB_CMDLINE_LINUX_DEFAULT=no\"\nGRUB_CMDLINE_LINUX_DEFAULT=\"iommu=pt\"\n",
        ),
    ];
    for (before, after) in cases {
        assert_eq!(grub::edit(before, &ops).unwrap(), after, "{before:?}");
    }
    assert_eq!(
        grub::kernel_args("GRUB_CMDLINE_LINUX_DEFAULT=\"quiet \\\n  dyndbg=\\\"file x.c +p\\\"\"")
            .unwrap(),
        ["quiet", "dyndbg=\"file x.c +p\""]
    );
}

#[test]
fn grub_refuses_what_it_cannot_edit() {
    let cases = [
        ("GRUB_CMDLINE_LINUX_DEFAULT=\"$(cat /etc/args)\"\n", 1),
        ("\nGRUB_CMDLINE_LINUX_DEFAULT=`cat /etc/args`\n", 2),
        ("GRUB_CMDLINE_LINUX_DEFAULT=\"quiet\nGRUB_TIMEOUT=5\n", 1),
        ("GRUB_CMDLINE_LINUX_DEFAULT='quiet\n", 1),
        ("GRUB_TIMEOUT=5 GRUB_CMDLINE_LINUX_DEFAULT=\"quiet\"\n", 1),
        ("GRUB_CMDLINE_LINUX_DEFAULT=\"quiet\" GRUB_TIMEOUT=5\n", 1),
        ("A=1\nB=2; GRUB_CMDLINE_LINUX_DEFAULT=\"quiet\"\n", 2),
        ("GRUB_CMDLINE_LINUX_DEFAULT=\"a=\\\"b\"\n", 1),
        ("GRUB_CMDLINE_LINUX_DEFAULT=\"${X:-$(reboot)}\"\n", 1),
        ("GRUB_CMDLINE_LINUX_DEFAULT=\"${X:-`reboot`}\"\n", 1),
    ];
    for (text, line) in cases {
        let err = grub::edit(text, &[add("iommu=pt")]).unwrap_err();
        assert_eq!(err.line, Some(line), "{text:?}: {err}");
        assert_eq!(grub::kernel_args(text).unwrap_err(), err);
    }
}

// ---------------------------------------------------------------------------------------
// Other kernel-argument files: real files
// ---------------------------------------------------------------------------------------

const ARCH_ENTRY: &str = "title   Arch Linux\nlinux   /vmlinuz-linux\ninitrd  /intel-ucode.img\ninitrd  /initramfs-linux.img\noptions root=UUID=0a3407de-014b-458b-b5c1-848e92a327a3 rw quiet\n";

#[test]
fn systemd_boot_entry() {
    let out = loader_entry::edit(ARCH_ENTRY, &passthrough_ops()).unwrap();
    assert_eq!(
        out,
        ARCH_ENTRY.replace(
            "rw quiet\n",
            "rw quiet intel_iommu=on iommu=pt vfio-pci.ids=10de:1c02,10de:10f1\n"
        )
    );
    let fedora = "title Fedora Linux (6.8.5-301.fc40.x86_64) 40 (Workstation Edition)\nversion 6.8.5-301.fc40.x86_64\nlinux /vmlinuz-6.8.5-301.fc40.x86_64\ninitrd /initramfs-6.8.5-301.fc40.x86_64.img\noptions root=UUID=1 ro rhgb quiet\noptions\t$kernelopts\ngrub_users $grub_users\ngrub_arg --unrestricted\ngrub_class fedora\n";
    let half = "options \"a b\" c\n";
    assert_eq!(
        loader_entry::edit(half, &[remove("c")]).unwrap_err().line,
        Some(1)
    );
    assert_eq!(
        loader_entry::kernel_args("options 'a b c'\n").unwrap(),
        ["a", "b", "c"],
        "systemd-boot takes off quotes around the whole value"
    );
    assert_eq!(
        loader_entry::kernel_args(fedora).unwrap(),
        ["root=UUID=1", "ro", "rhgb", "quiet", "$kernelopts"]
    );
    assert_eq!(
        loader_entry::edit(fedora, &[add("iommu=pt"), remove("quiet")]).unwrap(),
        fedora
            .replace("rhgb quiet\n", "rhgb\n")
            .replace("\t$kernelopts\n", "\t$kernelopts iommu=pt\n")
    );
}

#[test]
fn kernel_cmdline_file() {
    let text = "root=UUID=1 ro rhgb quiet\n";
    assert_eq!(
        kernel_cmdline::edit(text, &passthrough_ops()).unwrap(),
        "root=UUID=1 ro rhgb quiet intel_iommu=on iommu=pt vfio-pci.ids=10de:1c02,10de:10f1\n"
    );
    assert_eq!(
        kernel_cmdline::kernel_args("a \"b c").unwrap_err().file,
        kernel_cmdline::PATH
    );
}

const POP_KERNELSTUB: &str = r#"{
  "default": {
    "kernel_options": [
      "quiet",
      "splash"
    ],
    "esp_path": "/boot/efi",
    "setup_loader": false,
    "manage_mode": false,
    "force_update": false,
    "live_mode": false,
    "config_rev": 3
  },
  "user": {
    "kernel": "/boot/vmlinuz",
    "initrd": "/boot/initrd.img",
    "kernel_options": [
      "quiet",
      "loglevel=0",
      "systemd.show_status=false",
      "splash"
    ],
    "esp_path": "/boot/efi",
    "setup_loader": true,
    "manage_mode": true,
    "force_update": false,
    "live_mode": false,
    "config_rev": 3
  }
}"#;

#[test]
fn pop_os_kernelstub() {
    let out = kernelstub::edit(POP_KERNELSTUB, &passthrough_ops()).unwrap();
    let expected = POP_KERNELSTUB.replace(
        "      \"splash\"\n    ],\n    \"esp_path\": \"/boot/efi\",\n    \"setup_loader\": true",
        "      \"splash\",\n      \"intel_iommu=on\",\n      \"iommu=pt\",\n      \"vfio-pci.ids=10de:1c02,10de:10f1\"\n    ],\n    \"esp_path\": \"/boot/efi\",\n    \"setup_loader\": true",
    );
    assert_ne!(expected, POP_KERNELSTUB);
    assert_eq!(out, expected);

    // No "user": kernelstub copies "default"; so does the editor.
    let default_only = r#"{
  "default": {
    "kernel_options": ["quiet", "splash"],
    "esp_path": "/boot/efi",
    "config_rev": 3
  }
}
"#;
    assert_eq!(
        kernelstub::kernel_args(default_only).unwrap(),
        ["quiet", "splash"]
    );
    let out = kernelstub::edit(default_only, &[add("iommu=pt")]).unwrap();
    assert_eq!(
        out,
        r#"{
  "default": {
    "kernel_options": ["quiet", "splash"],
    "esp_path": "/boot/efi",
    "config_rev": 3
  },
  "user": {
    "kernel_options": ["quiet", "splash", "iommu=pt"],
    "esp_path": "/boot/efi",
    "config_rev": 3
  }
}
"#
    );

    // A "user" without options gets them, laid out as kernelstub writes.
    let no_options = "{\n  \"user\": {\n    \"esp_path\": \"/boot/efi\"\n  }\n}";
    assert_eq!(
        kernelstub::edit(no_options, &[add("iommu=pt")]).unwrap(),
        "{\n  \"user\": {\n    \"esp_path\": \"/boot/efi\",\n    \"kernel_options\": [\n      \"iommu=pt\"\n    ]\n  }\n}"
    );
}

// ---------------------------------------------------------------------------------------
// Initramfs files: real files
// ---------------------------------------------------------------------------------------

const ARCH_MKINITCPIO: &str = r#"# vim:set ft=sh
# MODULES
# The following modules are loaded before any boot hooks are
# run.  Advanced users may wish to specify all system modules
# in this array.  For instance:
#     MODULES=(usbhid xhci_hcd)
MODULES=()

# BINARIES
# This setting includes any additional binaries a given user may
# wish into the CPIO image.  This is run last, so it may be used to
# override the actual binaries included by a given hook
# BINARIES are dependency parsed, so you may safely ignore libraries
BINARIES=()

# FILES
# This setting is similar to BINARIES above, however, files are added
# as-is and are not parsed in any way.  This is useful for config files.
FILES=()

# HOOKS
# 'base' is _required_ unless you know precisely what you are doing.
# 'udev' is _required_ in order to automatically create devices in /dev.
HOOKS=(base udev autodetect microcode modconf kms keyboard keymap consolefont block filesystems fsck)

# COMPRESSION
# Use this to compress the initramfs image. By default, zstd compression
# is used for Linux ≥ 5.9 and gzip compression is used for Linux < 5.9.
# Use 'cat' to create an uncompressed image.
#COMPRESSION="zstd"
#COMPRESSION_OPTIONS=()

# MODULES_DECOMPRESS
#MODULES_DECOMPRESS="no"
"#;

const VFIO: [&str; 3] = ["vfio_pci", "vfio", "vfio_iommu_type1"];

#[test]
fn arch_mkinitcpio() {
    assert!(mkinitcpio::modules(ARCH_MKINITCPIO).is_empty());
    let out = mkinitcpio::edit(ARCH_MKINITCPIO, &VFIO, &[]).unwrap();
    assert_eq!(
        out,
        ARCH_MKINITCPIO.replace(
            "\nMODULES=()\n",
            "\nMODULES=(vfio_pci vfio vfio_iommu_type1)\n"
        )
    );
    assert_eq!(mkinitcpio::edit(&out, &VFIO, &[]).unwrap(), out);
    assert_eq!(mkinitcpio::edit(&out, &[], &VFIO).unwrap(), ARCH_MKINITCPIO);

    let mine = "MODULES=(\n    \"nvidia\"   # the old driver\n    'ext4'\n    nvidia_drm\n)\n";
    assert_eq!(mkinitcpio::modules(mine), ["nvidia", "ext4", "nvidia_drm"]);
    assert_eq!(
        mkinitcpio::edit(mine, &VFIO, &["nvidia_drm"]).unwrap(),
        "MODULES=(\n    \"nvidia\"   # the old driver\n    'ext4' vfio_pci vfio vfio_iommu_type1\n)\n"
    );
    let err = mkinitcpio::edit("MODULES=($(ls))\n", &VFIO, &[]).unwrap_err();
    assert_eq!(err.line, Some(1));
    assert!(mkinitcpio::edit("", &["bad name"], &[]).is_err());
}

#[test]
fn ubuntu_initramfs_tools() {
    let stock = "# List of modules that you want to include in your initramfs.\n# They will be loaded at boot time in the order below.\n#\n# Syntax:  module_name [args ...]\n#\n# You must run update-initramfs(8) to effect this change.\n#\n# Examples:\n#\n# raid1\n# sd_mod\n";
    assert!(initramfs_tools::modules(stock).is_empty());
    let out = initramfs_tools::edit(stock, &VFIO, &[]).unwrap();
    assert_eq!(out, format!("{stock}vfio_pci\nvfio\nvfio_iommu_type1\n"));
    assert_eq!(initramfs_tools::edit(&out, &[], &VFIO).unwrap(), stock);
}

#[test]
fn booster_yaml() {
    let text = "network:\n  dhcp: on\nuniversal: false\ncompression: zstd\n";
    let out = booster::edit(text, &VFIO, &[]).unwrap();
    assert_eq!(
        out,
        format!("{text}modules_force_load: vfio_pci,vfio,vfio_iommu_type1\n")
    );
    assert_eq!(booster::modules(&out), VFIO);
    let nested = "extra:\n  modules_force_load: x\n";
    assert!(
        booster::modules(nested).is_empty(),
        "only the top-level key counts"
    );
}

#[test]
fn dracut_and_modprobe_drop_ins() {
    assert!(dracut::PATH.ends_with(".conf"), "dracut skips other names");
    assert!(dracut::PATH.starts_with("/etc/dracut.conf.d/"));
    let text = dracut::render(&VFIO);
    assert!(text.lines().next().unwrap().contains("Passthrough"));
    assert!(text.contains("\nforce_drivers+=\" vfio_pci vfio vfio_iommu_type1 \"\n"));

    let conf = modprobe::VfioModprobe::new(&["10de:1c02", "10de:10f1"]);
    let text = modprobe::render(&conf);
    assert!(text.contains("\noptions vfio-pci ids=10de:1c02,10de:10f1\n"));
    for driver in ["nvidia", "nouveau", "amdgpu", "radeon", "snd_hda_intel"] {
        assert!(text.contains(&format!("\nsoftdep {driver} pre: vfio-pci\n")));
    }
    assert_eq!(modprobe::parse(&text), conf);
    assert!(modprobe::PATH.starts_with("/etc/modprobe.d/") && modprobe::PATH.ends_with(".conf"));
}

// ---------------------------------------------------------------------------------------
// Generators
// ---------------------------------------------------------------------------------------

const KEYS: &[&str] = &[
    "intel_iommu",
    "iommu",
    "vfio-pci.ids",
    "vfio_pci.ids",
    "video",
    "kvm.ignore_msrs",
    "quiet",
    "splash",
    "amd_iommu",
    "pcie_acs_override",
];

const VALUES: &[Option<&str>] = &[
    None,
    Some("on"),
    Some("pt"),
    Some("10de:1c02,10de:10f1"),
    Some("efifb:off"),
    Some("1"),
];

/// A plain kernel argument, bare-safe in every file.
fn plain_word() -> impl Strategy<Value = String> {
    prop_oneof![
        (prop::sample::select(KEYS), prop::sample::select(VALUES)).prop_map(|(k, v)| match v {
            Some(v) => format!("{k}={v}"),
            None => k.to_owned(),
        }),
        prop::sample::select(
            &[
                "ro",
                "rw",
                "nomodeset",
                "root=UUID=5d81-2412",
                "vt.handoff=7",
                "loglevel=0",
            ][..]
        )
        .prop_map(str::to_owned),
        "[a-z][a-z_.-]{0,6}(=[a-z0-9:,]{1,5})?",
    ]
}

/// Any word a GRUB value may hold: plain ones, expansions, a kernel-quoted value.
fn grub_word() -> impl Strategy<Value = String> {
    prop_oneof![
        6 => plain_word(),
        1 => Just("$GRUB_CMDLINE_LINUX_DEFAULT".to_owned()),
        1 => Just("${GRUB_CMDLINE_LINUX_DEFAULT}".to_owned()),
        1 => Just("dyndbg=\"file x.c +p\"".to_owned()),
    ]
}

fn op() -> impl Strategy<Value = KargOp> {
    let key = prop::sample::select(KEYS).prop_map(str::to_owned);
    prop_oneof![
        (key.clone(), prop::sample::select(VALUES)).prop_map(|(key, v)| KargOp::SetKey {
            key,
            value: v.map(str::to_owned),
        }),
        key.prop_map(|key| KargOp::RemoveKey { key }),
        plain_word().prop_map(|arg| KargOp::AddExact { arg }),
        plain_word().prop_map(|arg| KargOp::RemoveExact { arg }),
    ]
}

fn ops() -> impl Strategy<Value = Vec<KargOp>> {
    prop::collection::vec(op(), 0..6)
}

/// A file: its pieces before, the edited region, and after; `None` when nothing in the
/// file is the edited region.
#[derive(Debug, Clone)]
struct Generated {
    text: String,
    /// `text[..head]` and `text[tail..]` lie outside the edited value.
    region: Option<(usize, usize)>,
    words: Vec<String>,
}

/// A GRUB value in one quoting style: (raw value, words).
fn grub_value(nl: &'static str) -> impl Strategy<Value = (String, Vec<String>)> {
    let double = (
        prop::collection::vec(grub_word(), 0..6),
        prop::collection::vec(prop::sample::select(&[" ", "  ", "\t", "CONT"][..]), 6),
        prop::sample::select(&["", " "][..]),
    )
        .prop_map(move |(words, seps, pad)| {
            let mut raw = format!("\"{pad}");
            for (k, w) in words.iter().enumerate() {
                if k > 0 {
                    let sep = seps[k];
                    raw.push_str(&if sep == "CONT" {
                        format!(" \\{nl}    ")
                    } else {
                        sep.to_owned()
                    });
                }
                raw.push_str(&w.replace('"', "\\\""));
            }
            raw.push_str(pad);
            raw.push('"');
            (raw, words)
        });
    let single = prop::collection::vec(grub_word(), 0..6)
        .prop_map(|words| (format!("'{}'", words.join(" ")), words));
    let bare = prop::option::of(plain_word()).prop_map(|w| match w {
        Some(w) => (w.clone(), vec![w]),
        None => (String::new(), vec![]),
    });
    prop_oneof![4 => double, 2 => single, 1 => bare]
}

#[derive(Debug, Clone)]
enum GrubPiece {
    Other(String),
    Assign {
        head: String,
        value: String,
        tail: String,
        words: Vec<String>,
    },
}

fn grub_piece(nl: &'static str) -> impl Strategy<Value = GrubPiece> {
    let others = prop::sample::select(
        &[
            "",
            "# If you change this file, run 'update-grub' afterwards",
            "# you can see them in real GRUB with the command `vbeinfo'",
            "GRUB_DEFAULT=0",
            "GRUB_TIMEOUT=5",
            "GRUB_DISTRIBUTOR=`lsb_release -i -s 2> /dev/null || echo Debian`",
            "GRUB_DISTRIBUTOR=\"$(sed 's, release .*$,,g' /etc/system-release)\"",
            "GRUB_CMDLINE_LINUX=\"rhgb quiet\"",
            "#GRUB_CMDLINE_LINUX_DEFAULT=\"commented out\"",
            "  # GRUB_CMDLINE_LINUX_DEFAULT=x",
            "GRUB_X=\"one NL GRUB_CMDLINE_LINUX_DEFAULT=inside\"",
            "if [ -e /x ]; then GRUB_TERMINAL=console; fi",
            "GRUB_GFXMODE=640x480 # don't",
        ][..],
    )
    .prop_map(move |s| GrubPiece::Other(s.replace(" NL ", nl)));
    let assign = (
        prop::sample::select(&["", "  ", "\t", "export ", " export "][..]),
        grub_value(nl),
        prop::sample::select(&["", " # keep me", "\t#x"][..]),
    )
        .prop_map(|(lead, (value, words), tail)| GrubPiece::Assign {
            head: format!("{lead}GRUB_CMDLINE_LINUX_DEFAULT="),
            value,
            tail: tail.to_owned(),
            words,
        });
    prop_oneof![3 => others, 2 => assign]
}

fn grub_file() -> impl Strategy<Value = Generated> {
    prop::sample::select(&["\n", "\r\n"][..]).prop_flat_map(|nl| {
        (prop::collection::vec(grub_piece(nl), 0..8), any::<bool>()).prop_map(
            move |(pieces, final_newline)| {
                let mut g = Generated {
                    text: String::new(),
                    region: None,
                    words: vec![],
                };
                for (k, piece) in pieces.iter().enumerate() {
                    match piece {
                        GrubPiece::Other(s) => g.text.push_str(s),
                        GrubPiece::Assign {
                            head,
                            value,
                            tail,
                            words,
                        } => {
                            g.text.push_str(head);
                            let start = g.text.len();
                            g.text.push_str(value);
                            g.region = Some((start, g.text.len()));
                            g.text.push_str(tail);
                            g.words = words.clone();
                        }
                    }
                    if k + 1 < pieces.len() || final_newline {
                        g.text.push_str(nl);
                    }
                }
                g
            },
        )
    })
}

/// Checks what every kernel-argument editor promises, on one file and op list.
fn karg_properties(
    g: &Generated,
    ops: &[KargOp],
    kernel_args: fn(&str) -> Result<Vec<String>, EditError>,
    edit: fn(&str, &[KargOp]) -> Result<String, EditError>,
) -> Result<String, TestCaseError> {
    let before = kernel_args(&g.text).map_err(|e| TestCaseError::fail(e.to_string()))?;
    prop_assert_eq!(&before, &g.words, "the parser reads what was written");
    let out = edit(&g.text, ops).map_err(|e| TestCaseError::fail(e.to_string()))?;
    let after = kernel_args(&out).map_err(|e| TestCaseError::fail(e.to_string()))?;
    prop_assert_eq!(
        &after,
        &apply_ops(&before, ops),
        "edit agrees with apply_ops"
    );
    prop_assert_eq!(
        edit(&out, ops).map_err(|e| TestCaseError::fail(e.to_string()))?,
        out.clone(),
        "editing twice is editing once"
    );
    prop_assert_eq!(
        edit(&g.text, &[]).unwrap(),
        g.text.clone(),
        "no ops, same bytes"
    );
    for word in &after {
        let count = |list: &[String]| list.iter().filter(|w| *w == word).count();
        prop_assert!(
            count(&after) <= count(&before).max(1),
            "{} duplicated",
            word
        );
    }
    if apply_ops(&before, ops) == before {
        prop_assert_eq!(&out, &g.text, "ops that change nothing change no byte");
    }
    Ok(out)
}

/// The bytes before and after the edited region are the same in `out`.
fn outside_unchanged(g: &Generated, out: &str) -> Result<(), TestCaseError> {
    match g.region {
        Some((head, tail)) => {
            prop_assert!(
                out.starts_with(&g.text[..head]),
                "bytes before the value changed"
            );
            prop_assert!(
                out.ends_with(&g.text[tail..]),
                "bytes after the value changed"
            );
        }
        None => prop_assert!(out.starts_with(&g.text), "a new line goes at the end"),
    }
    Ok(())
}

/// Text that looks like configuration files, quoting and all, for the no-panic tests.
fn noise() -> impl Strategy<Value = String> {
    prop_oneof![
        any::<String>(),
        "[ a-z_=.\"'\\\\$(){}`#;&|\\[\\]:,\n\t\r-]{0,120}",
        prop::collection::vec(
            prop::sample::select(
                &[
                    "GRUB_CMDLINE_LINUX_DEFAULT=",
                    "MODULES=(",
                    "MODULES+=",
                    "options ",
                    "\"",
                    "'",
                    "\\",
                    "\n",
                    "\r\n",
                    " ",
                    "$(",
                    "${",
                    "`",
                    ")",
                    "}",
                    "#",
                    "quiet",
                    "iommu=pt",
                    "export ",
                    ";",
                    "{",
                    "[",
                    "]",
                    ":",
                    ",",
                    "\"user\"",
                    "\"kernel_options\"",
                    "modules_force_load:",
                    "vfio",
                    "=",
                ][..],
            ),
            0..40,
        )
        .prop_map(|parts| parts.concat()),
    ]
}

// ---------------------------------------------------------------------------------------
// Properties
// ---------------------------------------------------------------------------------------

proptest! {
    #![proptest_config(ProptestConfig::with_cases(1000))]

    #[test]
    fn grub_properties(g in grub_file(), ops in ops()) {
        let out = karg_properties(&g, &ops, grub::kernel_args, grub::edit)?;
        outside_unchanged(&g, &out)?;
    }
}

fn cmdline_file() -> impl Strategy<Value = Generated> {
    (
        prop::sample::select(&["", " ", "\t"][..]),
        prop::collection::vec(plain_word(), 0..8),
        prop::collection::vec(prop::sample::select(&[" ", "  ", "\t", "\n"][..]), 8),
        prop::sample::select(&["", "\n", " \n", "\r\n"][..]),
    )
        .prop_map(|(lead, words, seps, trail)| {
            let mut text = lead.to_owned();
            for (k, w) in words.iter().enumerate() {
                if k > 0 {
                    text.push_str(seps[k]);
                }
                text.push_str(w);
            }
            let region = (!words.is_empty()).then_some((lead.len(), text.len()));
            text.push_str(trail);
            Generated {
                text,
                region,
                words,
            }
        })
}

/// A systemd-boot entry.
fn entry_file() -> impl Strategy<Value = Generated> {
    let line = prop_oneof![
        prop::sample::select(
            &[
                "title   Arch Linux",
                "linux   /vmlinuz-linux",
                "initrd  /initramfs-linux.img",
                "# options commented",
                "",
                "sort-key arch",
                "optionsx not-an-option",
            ][..]
        )
        .prop_map(|s| (s.to_owned(), None)),
        (
            prop::sample::select(&["options ", "options\t", "options   ", "  options "][..]),
            prop::collection::vec(plain_word(), 0..4),
            any::<bool>(),
        )
            .prop_map(|(head, words, quoted)| {
                let q = if quoted && !words.is_empty() {
                    "\""
                } else {
                    ""
                };
                (format!("{head}{q}{}{q}", words.join(" ")), Some(words))
            }),
    ];
    (
        prop::collection::vec(line, 0..8),
        prop::sample::select(&["\n", "\r\n"][..]),
        any::<bool>(),
    )
        .prop_map(|(lines, nl, final_newline)| {
            let mut text = String::new();
            let mut words = Vec::new();
            for (k, (line, opts)) in lines.iter().enumerate() {
                text.push_str(line);
                words.extend(opts.iter().flatten().cloned());
                if k + 1 < lines.len() || final_newline {
                    text.push_str(nl);
                }
            }
            Generated {
                text,
                region: None,
                words,
            }
        })
}

/// The lines of an entry that are not `options` lines.
fn other_lines(text: &str) -> Vec<&str> {
    text.lines()
        .filter(|l| {
            let l = l.trim_start();
            !(l.starts_with("options ") || l.starts_with("options\t"))
        })
        .collect()
}

/// A kernelstub configuration, pretty (as kernelstub writes it) or compact.
fn kernelstub_file() -> impl Strategy<Value = Generated> {
    (
        any::<bool>(),
        any::<bool>(),
        prop::option::of((prop::collection::vec(plain_word(), 0..5), 0usize..4)),
        prop::option::of(prop::collection::vec(plain_word(), 0..3)),
    )
        .prop_map(|(pretty, has_default, user, default_words)| {
            let array = |words: &[String], indent: &str| -> String {
                let items: Vec<String> = words.iter().map(|w| format!("\"{w}\"")).collect();
                match (pretty, items.is_empty()) {
                    (_, true) => "[]".to_owned(),
                    (true, false) => format!(
                        "[\n{indent}  {}\n{indent}]",
                        items.join(&format!(",\n{indent}  "))
                    ),
                    (false, false) => format!("[{}]", items.join(", ")),
                }
            };
            let object = |members: Vec<(String, String)>, indent: &str| -> String {
                let inner: Vec<String> = members
                    .iter()
                    .map(|(k, v)| {
                        if pretty {
                            format!("{indent}  \"{k}\": {v}")
                        } else {
                            format!("\"{k}\": {v}")
                        }
                    })
                    .collect();
                if pretty {
                    format!("{{\n{}\n{indent}}}", inner.join(",\n"))
                } else {
                    format!("{{{}}}", inner.join(", "))
                }
            };
            let base = |indent: &str| -> Vec<(String, String)> {
                let _ = indent;
                vec![
                    ("kernel".into(), "\"/boot/vmlinuz\"".into()),
                    ("esp_path".into(), "\"/boot/efi\"".into()),
                    ("setup_loader".into(), "true".into()),
                    ("config_rev".into(), "3".into()),
                ]
            };
            let mut root = Vec::new();
            let mut words = Vec::new();
            if has_default {
                let mut d = base("  ");
                let dw = default_words.clone().unwrap_or_default();
                d.insert(0, ("kernel_options".into(), array(&dw, "    ")));
                root.push(("default".to_owned(), object(d, "  ")));
                words = dw;
            }
            if let Some((uw, at)) = &user {
                let mut u = base("  ");
                u.insert(*at, ("kernel_options".into(), "@ARRAY@".into()));
                root.push(("user".to_owned(), object(u, "  ")));
                words = uw.clone();
            }
            let mut text = object(root, "");
            let mut region = None;
            if let Some((uw, _)) = &user {
                let at = text.find("@ARRAY@").unwrap();
                let arr = array(uw, "    ");
                text.replace_range(at..at + "@ARRAY@".len(), &arr);
                region = Some((at, at + arr.len()));
            }
            if pretty {
                text.push('\n');
            }
            Generated {
                text,
                region,
                words,
            }
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(500))]

    #[test]
    fn kernel_cmdline_properties(g in cmdline_file(), ops in ops()) {
        let out = karg_properties(&g, &ops, kernel_cmdline::kernel_args, kernel_cmdline::edit)?;
        if let Some((head, tail)) = g.region {
            prop_assert!(out.starts_with(&g.text[..head]));
            prop_assert!(out.ends_with(&g.text[tail..]));
        }
    }

    #[test]
    fn loader_entry_properties(g in entry_file(), ops in ops()) {
        let out = karg_properties(&g, &ops, loader_entry::kernel_args, loader_entry::edit)?;
        prop_assert_eq!(other_lines(&out), other_lines(&g.text), "other lines stay");
    }

    #[test]
    fn kernelstub_properties(g in kernelstub_file(), ops in ops()) {
        let out = karg_properties(&g, &ops, kernelstub::kernel_args, kernelstub::edit)?;
        if g.region.is_some() {
            outside_unchanged(&g, &out)?;
        }
        let before: serde_json::Value = serde_json::from_str(&g.text).unwrap();
        let mut after: serde_json::Value = serde_json::from_str(&out).unwrap();
        if before.get("user").is_some() {
            after["user"]["kernel_options"] = before["user"]["kernel_options"].clone();
            if before["user"].get("kernel_options").is_none() {
                after["user"].as_object_mut().unwrap().remove("kernel_options");
            }
        } else if after.get("user").is_some() && before.get("default").is_some() {
            let mut user = after["user"].clone();
            user["kernel_options"] = before["default"]["kernel_options"].clone();
            prop_assert_eq!(&user, &before["default"], "user is a copy of default");
            after.as_object_mut().unwrap().remove("user");
        } else {
            after.as_object_mut().unwrap().remove("user");
        }
        prop_assert_eq!(after, before, "every other value stays");
    }
}

// ---------------------------------------------------------------------------------------
// Module lists
// ---------------------------------------------------------------------------------------

const MODULE_NAMES: &[&str] = &[
    "vfio_pci",
    "vfio",
    "vfio_iommu_type1",
    "nvidia",
    "nvidia_drm",
    "amdgpu",
    "ext4",
    "i915",
];

fn names() -> impl Strategy<Value = Vec<&'static str>> {
    prop::collection::vec(prop::sample::select(MODULE_NAMES), 0..4)
}

/// An mkinitcpio.conf: (text, bytes before the first and after the last MODULES line).
fn mkinitcpio_file() -> impl Strategy<Value = (String, Option<(usize, usize)>)> {
    let other = prop::sample::select(
        &[
            "# MODULES",
            "#     MODULES=(usbhid xhci_hcd)",
            "",
            "BINARIES=()",
            "FILES=(/etc/modprobe.d/x.conf)",
            "HOOKS=(base udev autodetect modconf kms block filesystems fsck)",
            "#COMPRESSION=\"zstd\"",
            "COMPRESSION_OPTIONS=(-v -5)",
        ][..],
    )
    .prop_map(|s| (s.to_owned(), false));
    let item = prop::sample::select(MODULE_NAMES).prop_flat_map(|n| {
        prop::sample::select(vec![n.to_owned(), format!("\"{n}\""), format!("'{n}'")])
    });
    let modules = (
        prop::sample::select(&["MODULES=", "MODULES+=", "MODULES=", "MODULES=\""][..]),
        prop::collection::vec(item, 0..5),
        prop::sample::select(&[" ", "\n  ", "  # c\n    "][..]),
        prop::sample::select(&["", " # done"][..]),
    )
        .prop_map(|(head, items, sep, tail)| {
            let text = if head.ends_with('"') {
                let bare: Vec<String> = items
                    .iter()
                    .map(|i| i.trim_matches(['"', '\'']).to_owned())
                    .collect();
                format!("{head}{}\"{tail}", bare.join(" "))
            } else if sep == " " {
                format!("{head}({}){tail}", items.join(" "))
            } else {
                format!("{head}({sep}{}\n){tail}", items.join(sep))
            };
            (text, true)
        });
    prop::collection::vec(prop_oneof![2 => other, 1 => modules], 0..8).prop_map(|pieces| {
        let mut text = String::new();
        let mut first = None;
        let mut last = None;
        for (piece, is_modules) in pieces {
            if is_modules {
                first.get_or_insert(text.len());
            }
            text.push_str(&piece);
            if is_modules {
                last = Some(text.len());
            }
            text.push('\n');
        }
        let region = first.zip(last);
        (text, region)
    })
}

fn initramfs_tools_file() -> impl Strategy<Value = String> {
    prop::collection::vec(
        prop_oneof![
            prop::sample::select(&["# comment", "", "  # indented", "raid1 opt=1"][..])
                .prop_map(str::to_owned),
            prop::sample::select(MODULE_NAMES).prop_map(str::to_owned),
        ],
        0..8,
    )
    .prop_map(|lines| lines.join("\n"))
}

fn booster_file() -> impl Strategy<Value = String> {
    (
        prop::collection::vec(
            prop::sample::select(&["network:", "  dhcp: on", "universal: false", "# x", ""][..]),
            0..5,
        ),
        prop::option::of((
            names(),
            prop::sample::select(&["", "\"", "'"][..]),
            prop::sample::select(&[",", ", "][..]),
            prop::sample::select(&["", " # forced"][..]),
        )),
    )
        .prop_map(|(lines, setting)| {
            let mut lines: Vec<String> = lines.into_iter().map(str::to_owned).collect();
            if let Some((list, q, sep, tail)) = setting {
                let line = format!("modules_force_load: {q}{}{q}{tail}", list.join(sep));
                lines.insert(lines.len() / 2, line);
            }
            lines.join("\n")
        })
}

/// A module-list editor's `edit`.
type ModuleEdit = fn(&str, &[&str], &[&str]) -> Result<String, EditError>;

/// Checks what every module-list editor promises.
fn module_properties(
    text: &str,
    add: &[&str],
    remove: &[&str],
    modules: fn(&str) -> Vec<String>,
    edit: ModuleEdit,
) -> Result<String, TestCaseError> {
    let before = modules(text);
    let out = edit(text, add, remove).map_err(|e| TestCaseError::fail(e.to_string()))?;
    let after = modules(&out);
    for name in add {
        prop_assert_eq!(
            after.iter().filter(|m| m == name).count().max(1),
            before.iter().filter(|m| m == name).count().max(1)
        );
        prop_assert!(after.iter().any(|m| m == name), "{} added", name);
    }
    for name in remove.iter().filter(|n| !add.contains(n)) {
        prop_assert!(!after.iter().any(|m| m == name), "{} removed", name);
    }
    let untouched: Vec<&String> = before
        .iter()
        .filter(|m| !add.contains(&m.as_str()) && !remove.contains(&m.as_str()))
        .collect();
    let untouched_after: Vec<&String> = after
        .iter()
        .filter(|m| !add.contains(&m.as_str()) && !remove.contains(&m.as_str()))
        .collect();
    prop_assert_eq!(untouched, untouched_after, "other modules stay, in order");
    prop_assert_eq!(edit(&out, add, remove).unwrap(), out.clone(), "idempotent");
    prop_assert_eq!(edit(text, &[], &[]).unwrap(), text, "no change, same bytes");
    Ok(out)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(500))]

    #[test]
    fn mkinitcpio_properties((text, region) in mkinitcpio_file(), add in names(), remove in names()) {
        let out = module_properties(&text, &add, &remove, mkinitcpio::modules, mkinitcpio::edit)?;
        match region {
            Some((first, last)) => {
                prop_assert!(out.starts_with(&text[..first]));
                prop_assert!(out.ends_with(&text[last..]));
            }
            None => prop_assert!(out.starts_with(&text)),
        }
    }

    #[test]
    fn initramfs_tools_properties(text in initramfs_tools_file(), add in names(), remove in names()) {
        let out = module_properties(&text, &add, &remove, initramfs_tools::modules, initramfs_tools::edit)?;
        let others = |t: &str| -> Vec<String> {
            t.lines().filter(|l| l.trim().is_empty() || l.trim_start().starts_with('#') || l.contains(' ')).map(str::to_owned).collect()
        };
        prop_assert_eq!(others(&out), others(&text), "comments, blank lines and module options stay");
    }

    #[test]
    fn booster_properties(text in booster_file(), add in names(), remove in names()) {
        let out = module_properties(&text, &add, &remove, booster::modules, booster::edit)?;
        let others = |t: &str| -> Vec<String> {
            t.lines().filter(|l| !l.starts_with("modules_force_load:")).map(str::to_owned).collect()
        };
        prop_assert_eq!(others(&out), others(&text), "only the modules_force_load line changes");
    }

    #[test]
    fn modprobe_round_trips(ids in prop::collection::vec("[0-9a-f]{4}:[0-9a-f]{4}", 0..4), softdeps in prop::collection::vec("[a-z_]{1,12}", 0..6)) {
        let conf = modprobe::VfioModprobe { ids, softdeps };
        prop_assert_eq!(modprobe::parse(&modprobe::render(&conf)), conf);
    }
}

// ---------------------------------------------------------------------------------------
// No input makes an editor panic; whatever it accepts, it edits consistently
// ---------------------------------------------------------------------------------------

fn karg_never_panics(
    text: &str,
    ops: &[KargOp],
    kernel_args: fn(&str) -> Result<Vec<String>, EditError>,
    edit: fn(&str, &[KargOp]) -> Result<String, EditError>,
) -> Result<(), TestCaseError> {
    match kernel_args(text) {
        Ok(before) => {
            let out = edit(text, ops).map_err(|e| TestCaseError::fail(e.to_string()))?;
            prop_assert_eq!(kernel_args(&out).unwrap(), apply_ops(&before, ops));
            prop_assert_eq!(edit(&out, ops).unwrap(), out);
            prop_assert_eq!(edit(text, &[]).unwrap(), text);
        }
        Err(_) => prop_assert!(
            edit(text, ops).is_err(),
            "what cannot be read is not edited"
        ),
    }
    Ok(())
}

fn modules_never_panic(
    text: &str,
    add: &[&str],
    remove: &[&str],
    modules: fn(&str) -> Vec<String>,
    edit: ModuleEdit,
) -> Result<(), TestCaseError> {
    let _ = modules(text);
    if let Ok(out) = edit(text, add, remove) {
        prop_assert_eq!(edit(&out, add, remove).unwrap(), out.clone());
        for name in add {
            prop_assert!(modules(&out).iter().any(|m| m == name));
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(1500))]

    #[test]
    fn arbitrary_text_never_panics(text in noise(), ops in ops(), add in names(), remove in names()) {
        karg_never_panics(&text, &ops, grub::kernel_args, grub::edit)?;
        karg_never_panics(&text, &ops, kernel_cmdline::kernel_args, kernel_cmdline::edit)?;
        karg_never_panics(&text, &ops, loader_entry::kernel_args, loader_entry::edit)?;
        karg_never_panics(&text, &ops, kernelstub::kernel_args, kernelstub::edit)?;
        let _ = grub::linux_args(&text);
        modules_never_panic(&text, &add, &remove, mkinitcpio::modules, mkinitcpio::edit)?;
        modules_never_panic(&text, &add, &remove, initramfs_tools::modules, initramfs_tools::edit)?;
        modules_never_panic(&text, &add, &remove, booster::modules, booster::edit)?;
        let conf = modprobe::parse(&text);
        prop_assert_eq!(modprobe::parse(&modprobe::render(&conf)), conf);
        let _ = dracut::modules(&text);
    }
}
