#!/usr/bin/env python3
"""Build a fake Linux host root (sys/, proc/, etc/, usr/share/ ...) from a
pasted hardware listing, for the Passthrough test suite.

    mkfixture.py LISTING.txt OUTDIR   build one root (OUTDIR is wiped first)
    mkfixture.py --all                rebuild tests/fixtures/listings/*.txt
                                      into tests/fixtures/roots/<stem>/

Output is deterministic: the same listing gives a byte-identical tree,
symlink targets included.  Python 3.11 standard library only.

LISTING FORMAT
--------------
A text file cut into sections by header lines `== NAME [ARG] ==`.  Lines
before the first header, and lines starting with `#` in every section except
`file`, are comments; one of them must be `# source: <where it came from>`.
Lines a section cannot parse (shell prompts, "Please be patient ...") are
ignored, with a warning when they look like a device line.

== iommu ==        IOMMU group listing, pasted verbatim.  Its presence turns
                   the IOMMU on (sys/kernel/iommu_groups exists, even empty).
                   Either format, or a mix:
                     Group:  15  0000:02:00.0 USB controller [0c03]: ... [1022:43ee]   Driver: xhci_hcd
                   or the Arch wiki script:
                     IOMMU Group 15:
                     <TAB>02:00.0 USB controller [0c03]: ... [1022:43ee] (rev 01)
== lspci ==        `lspci -nn` or `lspci -nnk` output: devices outside any
                   group, or extra facts (driver, subsystem) for devices
                   already listed.  "Kernel driver in use:" and "Subsystem:
                   ... [vvvv:dddd]" lines apply to the device line above.
                   In both sections: `02:00.0` means domain 0000, ` (rev xx)`
                   is the revision, ` (prog-if xx ...)` the prog-if,
                   `Driver: x` the bound driver.
== tree ==         `lspci -tv` (or -tvnn) output.  Gives the bridge chain, so
                   device dirs nest like real sysfs; every device in it must
                   be listed above.  Devices not in the tree sit directly
                   under sys/devices/pciDDDD:BB.  `-+-[0001:00]-+-` style
                   multi-domain/multi-root trees are understood.
== vendors ==      pci.ids vendor lines (`1e0f  KIOXIA Corporation`) for
                   vendors missing from the built-in table.
== cpuinfo ==      `key: value` lines (vendor_id, model name, flags, ...)
                   repeated in each processor block; `processors: N` sets the
                   number of blocks (default 4).  A pasted real /proc/cpuinfo
                   (has `processor` lines) is written verbatim.
== cmdline ==      the kernel command line (proc/cmdline).
== device ADDR ==  per-device overrides, `key = value`:
                     link = x4 8.0       current width/speed (also max unless
                     max_link = x8 8.0   max_link is given); link = none drops
                                         the link files
                     boot_vga = 1|0      reset_method = flr bus
                     subsystem = 19da:2438   driver = vfio-pci | none
                     iommu_group = 7 | none  class = 0x030200
                     revision = 0xa1         attr.NAME = VALUE (extra file)
== file PATH ==    following lines written verbatim to PATH (trailing blank
                   lines dropped, one final newline; `#` lines are content).
== touch ==        one PATH per line: empty file (PATH/ makes a directory).
== symlink ==      `PATH -> TARGET` per line.
== damage ==       applied last, in order, to make broken fixtures:
                     delete PATH            write PATH TEXT (\\n escapes)
                     empty PATH             truncate PATH BYTES
                     dangle PATH [TARGET]   (re)point a symlink at nothing
                     keep DIR NAME...       delete DIR's files except NAMEs
                   PATH may start with @ADDR = that device's sysfs dir.
== include FILE == splice in another file (relative to this one).

All PATHs are relative to the root.  Files under a bin/ or sbin/ directory
are made executable.

GENERATED SYSFS
---------------
Per device: vendor device class revision subsystem_vendor subsystem_device
irq resource config (64 bytes) [boot_vga] [current|max_link_width|speed]
[reset_method] [driver ->] [iommu_group ->] subsystem ->; plus
sys/bus/pci/devices/ADDR ->, sys/bus/pci/drivers/NAME/ADDR ->,
sys/kernel/iommu_groups/N/{type,devices/ADDR ->}, usr/share/hwdata/pci.ids,
proc/cpuinfo, proc/cmdline.  boot_vga exists only for VGA-class (0x0300)
devices, as in the kernel, unless set explicitly.  Link files exist for
bridges and for devices off a root bus; defaults: the other functions of a
card copy function 0, a bridge copies its first child, otherwise x16 for
GPUs, x4 for NVMe, x1 else, all at 8.0 GT/s.
"""
from __future__ import annotations

import argparse
import os
import re
import shutil
import struct
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

VENDORS: dict[int, str] = {
    0x1002: "Advanced Micro Devices, Inc. [AMD/ATI]",
    0x1022: "Advanced Micro Devices, Inc. [AMD]",
    0x1043: "ASUSTeK Computer Inc.", 0x106B: "Apple Inc.",
    0x10DE: "NVIDIA Corporation", 0x10EC: "Realtek Semiconductor Co., Ltd.",
    0x1179: "Toshiba Corporation", 0x126F: "Silicon Motion, Inc.",
    0x1344: "Micron Technology Inc", 0x144D: "Samsung Electronics Co Ltd",
    0x1458: "Gigabyte Technology Co., Ltd",
    0x1462: "Micro-Star International Co., Ltd. [MSI]",
    0x14E4: "Broadcom Inc. and subsidiaries", 0x15B7: "Sandisk Corp",
    0x168C: "Qualcomm Atheros", 0x1849: "ASRock Incorporation",
    0x1912: "Renesas Technology Corp.", 0x1987: "Phison Electronics Corporation",
    0x19DA: "ZOTAC International (MCO) Ltd.", 0x1AF4: "Red Hat, Inc.",
    0x1B21: "ASMedia Technology Inc.", 0x1B36: "Red Hat, Inc.",
    0x1B4B: "Marvell Technology Group Ltd.", 0x1C5C: "SK hynix",
    0x1CC1: "ADATA Technology Co., Ltd.", 0x1D6A: "Aquantia Corp.",
    0x1E0F: "KIOXIA Corporation", 0x2646: "Kingston Technology Company, Inc.",
    0x8086: "Intel Corporation", 0xC0A9: "Micron/Crucial Technology",
}
BASE_CLASSES = ["Unclassified device", "Mass storage controller",
                "Network controller", "Display controller",
                "Multimedia controller", "Memory controller", "Bridge",
                "Communication controller", "Generic system peripheral",
                "Input device controller", "Docking station", "Processor",
                "Serial bus controller", "Wireless controller",
                "Intelligent controller", "Satellite communications controller",
                "Encryption controller", "Signal processing controller",
                "Processing accelerators", "Non-Essential Instrumentation"]
CLASS_NAMES = dict(enumerate(BASE_CLASSES)) | {0x40: "Coprocessor",
                                               0xFF: "Unassigned class"}
PROG_IF = {0x0C03: 0x30, 0x0106: 0x01, 0x0108: 0x02, 0x0604: 0x00}
SYSTEM_PCI_IDS = ("/usr/share/misc/pci.ids", "/usr/share/hwdata/pci.ids")

HEADER_RE = re.compile(r"^==\s*([a-z]+)(?:\s+(.*?))?\s*==\s*$")
DEV_RE = re.compile(
    r"^(?:(?P<dom>[0-9a-f]{4,}):)?(?P<bus>[0-9a-f]{2}):(?P<slot>[0-9a-f]{2})"
    r"\.(?P<fn>[0-7])\s+(?P<cname>.*?)\s*\[(?P<cls>[0-9a-f]{4})\]:\s*"
    r"(?P<desc>.*?)\s*\[(?P<ven>[0-9a-f]{4}):(?P<dev>[0-9a-f]{4})\](?P<tail>.*)$",
    re.I)
BLOG_RE = re.compile(r"^Group:\s*(\d+)\s+(.*)$")
ARCH_RE = re.compile(r"^IOMMU Group\s+(\d+)\s*:?\s*(.*)$", re.I)
TREE_RE = re.compile(
    r"-(?:\[(?:(?P<rdom>[0-9a-f]{4,}):)?(?P<rbus>[0-9a-f]{2})\]-"
    r"|(?P<slot>[0-9a-f]{2})\.(?P<fn>[0-7])"
    r"(?:-\[(?P<sec>[0-9a-f]{2})(?:-(?P<sub>[0-9a-f]{2}))?\])?)")
ADDR_RE = re.compile(r"^(?:([0-9a-f]{4,}):)?([0-9a-f]{2}):([0-9a-f]{2})\.([0-7])$",
                     re.I)
LINK_RE = re.compile(r"^x(\d+)\s+(\d+(?:\.\d+)?)(?:\s*GT/s)?(?:\s*PCIe)?$")


class ListingError(Exception):
    pass


def warn(msg: str) -> None:
    print(f"mkfixture: warning: {msg}", file=sys.stderr)


@dataclass
class Device:
    dom: int
    bus: int
    slot: int
    fn: int
    cls: int = 0            # 24-bit class code
    cls_name: str = ""
    vendor: int = 0
    device: int = 0
    desc: str = ""
    rev: int = 0
    driver: str | None = None
    group: int | None = None
    subsys: tuple[int, int] | None = None
    parent: str | None = None
    bus_range: tuple[int, int] | None = None
    over: dict[str, str] = field(default_factory=dict)
    known: bool = False     # seen in iommu/lspci (not only in the tree)

    @property
    def addr(self) -> str:
        return f"{self.dom:04x}:{self.bus:02x}:{self.slot:02x}.{self.fn}"

    @property
    def key(self) -> tuple[int, int, int, int]:
        return (self.dom, self.bus, self.slot, self.fn)

    @property
    def is_bridge(self) -> bool:
        return self.cls >> 8 == 0x0604


@dataclass
class Listing:
    path: Path
    source: str | None = None
    iommu: bool = False
    devs: dict[str, Device] = field(default_factory=dict)
    root_buses: set[tuple[int, int]] = field(default_factory=set)
    vendors: dict[int, str] = field(default_factory=dict)
    cpuinfo: list[str] | None = None
    cmdline: str | None = None
    files: list[tuple[str, str, str]] = field(default_factory=list)
    damage: list[str] = field(default_factory=list)


def norm_addr(text: str) -> str:
    m = ADDR_RE.match(text.strip())
    if not m:
        raise ListingError(f"bad PCI address {text!r}")
    dom, bus, slot, fn = m.groups()
    return f"{int(dom or '0', 16):04x}:{int(bus, 16):02x}:{int(slot, 16):02x}.{fn}"


# ---------------------------------------------------------------- parsing

def read_sections(path: Path, out: list[tuple[str, str, list[str]]],
                  top: list[str]) -> None:
    cur: list[str] = top
    for raw in path.read_text(encoding="utf-8").splitlines():
        m = HEADER_RE.match(raw)
        if m and m.group(1) == "include":
            read_sections(path.parent / (m.group(2) or ""), out, [])
            cur = []  # lines after an include up to the next header: ignored
        elif m:
            cur = []
            out.append((m.group(1), m.group(2) or "", cur))
        else:
            cur.append(raw)


def device_from_line(text: str, lst: Listing) -> Device | None:
    m = DEV_RE.match(text.strip())
    if not m:
        if re.search(r"\[[0-9a-f]{4}:[0-9a-f]{4}\]", text, re.I):
            warn(f"{lst.path.name}: cannot parse {text.strip()!r}")
        return None
    addr = norm_addr(m.expand(r"\g<bus>:\g<slot>.\g<fn>") if not m["dom"]
                     else m.expand(r"\g<dom>:\g<bus>:\g<slot>.\g<fn>"))
    d = lst.devs.get(addr) or Device(*(int(x, 16) for x in re.split("[:.]", addr)))
    lst.devs[addr] = d
    base = int(m["cls"], 16)
    tail = m["tail"]
    pm = re.search(r"\(prog-if ([0-9a-f]{2})", tail, re.I)
    d.cls = base << 8 | (int(pm[1], 16) if pm else PROG_IF.get(base, 0))
    d.cls_name, d.desc = m["cname"], m["desc"]
    d.vendor, d.device = int(m["ven"], 16), int(m["dev"], 16)
    rm = re.search(r"\(rev ([0-9a-f]{2})\)", tail, re.I)
    if rm:
        d.rev = int(rm[1], 16)
    dm = re.search(r"Driver:\s*(\S+)", tail)
    if dm:
        d.driver = dm[1]
    d.known = True
    return d


def parse_pci(lines: list[str], lst: Listing, grouped: bool) -> None:
    group: int | None = None
    last: Device | None = None
    for line in lines:
        text = line.strip()
        if not text or text.startswith("#"):
            continue
        if grouped and (m := BLOG_RE.match(text)):
            group, text = int(m[1]), m[2]
        elif grouped and (m := ARCH_RE.match(text)):
            group, text = int(m[1]), m[2]
            if not text:
                continue
        if m2 := re.match(r"Kernel driver in use:\s*(\S+)", text):
            if last:
                last.driver = m2[1]
            continue
        if m2 := re.match(r"Subsystem:.*\[([0-9a-f]{4}):([0-9a-f]{4})\]\s*$", text, re.I):
            if last:
                last.subsys = (int(m2[1], 16), int(m2[2], 16))
            continue
        last = device_from_line(text, lst)
        if last and grouped and group is not None:
            last.group = group


def parse_tree(lines: list[str], lst: Listing) -> None:
    stack: list[tuple[int, int, int, str | None]] = []  # col, dom, bus, parent
    for line in lines:
        cut = re.search(r"[0-9a-f]{2}\.[0-7]  ", line)
        art = line[:cut.end()] if cut else line
        for t in TREE_RE.finditer(art):
            col = t.start() if t["rbus"] else t.start("slot")
            while stack and stack[-1][0] >= col:
                stack.pop()
            if t["rbus"]:
                dom = int(t["rdom"], 16) if t["rdom"] else 0
                stack.append((col, dom, int(t["rbus"], 16), None))
                lst.root_buses.add((dom, int(t["rbus"], 16)))
                continue
            if not stack:
                raise ListingError(f"tree line without a root: {line!r}")
            _, dom, bus, parent = stack[-1]
            addr = f"{dom:04x}:{bus:02x}:{int(t['slot'], 16):02x}.{t['fn']}"
            d = lst.devs.setdefault(addr, Device(dom, bus, int(t["slot"], 16),
                                                 int(t["fn"])))
            d.parent = parent
            if t["sec"]:
                sec = int(t["sec"], 16)
                d.bus_range = (sec, int(t["sub"] or t["sec"], 16))
                stack.append((t.start("sec") - 1, dom, sec, addr))


def parse_cpuinfo(lines: list[str]) -> list[str]:
    body = [ln for ln in lines if ln.strip() and not ln.startswith("#")]
    if any(re.match(r"processor\s*:", ln) for ln in body):
        return lines  # pasted verbatim
    count, pairs = 4, []
    for ln in body:
        key, _, val = ln.partition(":")
        key, val = key.strip(), val.strip()
        if key == "processors":
            count = int(val)
        else:
            pairs.append((key, val))
    out: list[str] = []
    for n in range(count):
        for key, val in [("processor", str(n))] + pairs:
            sep = "\t\t" if len(key) < 8 else "\t"
            out.append(f"{key}{sep}: {val}".rstrip() if key != "power management"
                       else "power management:" + (f" {val}" if val else ""))
        out.append("")
    return out


def parse_listing(path: Path) -> Listing:
    lst = Listing(path)
    sections: list[tuple[str, str, list[str]]] = []
    top: list[str] = []
    read_sections(path, sections, top)
    comments = top + [ln for name, _, lines in sections if name != "file"
                      for ln in lines]
    for ln in comments:
        if m := re.match(r"#\s*source:\s*(.+)", ln):
            lst.source = lst.source or m[1].strip()
    overrides: list[tuple[str, list[str]]] = []
    for name, arg, lines in sections:
        body = [ln for ln in lines if not ln.startswith("#")]
        if name == "iommu":
            lst.iommu = True
            parse_pci(body, lst, grouped=True)
        elif name == "lspci":
            parse_pci(body, lst, grouped=False)
        elif name == "tree":
            parse_tree(body, lst)
        elif name == "vendors":
            for ln in body:
                if m := re.match(r"^([0-9a-f]{4})\s+(.+)$", ln.strip(), re.I):
                    lst.vendors[int(m[1], 16)] = m[2].strip()
        elif name == "cpuinfo":
            lst.cpuinfo = parse_cpuinfo(lines)
        elif name == "cmdline":
            lst.cmdline = " ".join(ln.strip() for ln in body if ln.strip())
        elif name == "device":
            overrides.append((norm_addr(arg), body))
        elif name == "file":
            while lines and not lines[-1].strip():
                lines.pop()
            lst.files.append(("file", arg, "\n".join(lines) + "\n" if lines else ""))
        elif name == "touch":
            lst.files += [("touch", ln.strip(), "") for ln in body if ln.strip()]
        elif name == "symlink":
            for ln in body:
                if "->" in ln:
                    src, dst = (s.strip() for s in ln.split("->", 1))
                    lst.files.append(("symlink", src, dst))
        elif name == "damage":
            lst.damage += [ln.strip() for ln in body if ln.strip()]
        else:
            raise ListingError(f"{path.name}: unknown section {name!r}")
    for addr, body in overrides:
        if addr not in lst.devs:
            raise ListingError(f"{path.name}: override for unknown device {addr}")
        lst.devs[addr].over |= {k.strip(): v.strip() for k, _, v in
                                (ln.partition("=") for ln in body if "=" in ln)}
    for d in lst.devs.values():
        if not d.known:
            raise ListingError(f"{path.name}: {d.addr} is in the tree but not "
                               "listed; add its `lspci -nn` line")
        apply_overrides(d)
    return lst


def apply_overrides(d: Device) -> None:
    o = d.over
    if "class" in o:
        d.cls = int(o["class"], 16)
    if "revision" in o:
        d.rev = int(o["revision"], 16)
    if "driver" in o:
        d.driver = None if o["driver"] == "none" else o["driver"]
    if "iommu_group" in o:
        d.group = None if o["iommu_group"] == "none" else int(o["iommu_group"])
    if "subsystem" in o:
        sv, sd = o["subsystem"].split(":")
        d.subsys = (int(sv, 16), int(sd, 16))


# ---------------------------------------------------------------- pci.ids

_system_ids: dict[int, str] | None = None


def system_vendor(vid: int) -> str | None:
    """Vendor name from the system pci.ids (makes the root host-dependent)."""
    global _system_ids
    if _system_ids is None:
        found = [p for p in SYSTEM_PCI_IDS if os.path.exists(p)]
        text = Path(found[0]).read_text(errors="replace") if found else ""
        _system_ids = {int(m[1], 16): m[2].rstrip() for m in
                       re.finditer(r"^([0-9a-f]{4})  (.+)$", text, re.M)}
    return _system_ids.get(vid)


def pci_ids(lst: Listing) -> str:
    vendors: dict[int, str] = {}
    devices: dict[int, dict[int, str]] = {}
    subclasses: dict[int, dict[int, str]] = {}
    for d in sorted(lst.devs.values(), key=lambda x: x.key):
        subclasses.setdefault(d.cls >> 16, {}).setdefault(d.cls >> 8 & 0xFF, d.cls_name)
        vname = lst.vendors.get(d.vendor) or VENDORS.get(d.vendor)
        if vname is None and (vname := system_vendor(d.vendor)):
            warn(f"{lst.path.name}: vendor {d.vendor:04x} taken from the system "
                 "pci.ids; add it to == vendors == for a reproducible root")
        if not vname or not d.desc.startswith(vname + " "):
            if d.desc != "Device":
                warn(f"{lst.path.name}: cannot split vendor from {d.desc!r}")
            continue
        vendors[d.vendor] = vname
        name = d.desc[len(vname) + 1:]
        if not re.fullmatch(r"Device(?: [0-9a-f]{4})?", name):
            devices.setdefault(d.vendor, {}).setdefault(d.device, name)
    out = ["#", "#\tList of PCI ID's", "#",
           f"#\tMini pci.ids generated by build-aux/mkfixture.py from {lst.path.name}",
           "#", ""]
    for vid in sorted(vendors):
        out.append(f"{vid:04x}  {vendors[vid]}")
        out += [f"\t{did:04x}  {n}" for did, n in sorted(devices.get(vid, {}).items())]
    out += ["", "# List of known device classes, subclasses and programming interfaces", ""]
    for base in sorted(subclasses):
        out.append(f"C {base:02x}  {CLASS_NAMES.get(base, 'Unknown class')}")
        out += [f"\t{sub:02x}  {n}" for sub, n in sorted(subclasses[base].items()) if n]
    return "\n".join(out) + "\n"


# ---------------------------------------------------------------- sysfs

def dev_dir(lst: Listing, d: Device) -> str:
    if d.parent:
        return f"{dev_dir(lst, lst.devs[d.parent])}/{d.addr}"
    return f"sys/devices/pci{d.dom:04x}:{d.bus:02x}/{d.addr}"


def parse_link(text: str, where: str) -> tuple[int, str]:
    m = LINK_RE.match(text.strip())
    if not m:
        raise ListingError(f"{where}: bad link {text!r} (want e.g. `x4 8.0`)")
    return int(m[1]), f"{float(m[2]):.1f} GT/s PCIe"


Link = tuple[tuple[int, str], tuple[int, str]]  # (current, max)


def resolve_link(lst: Listing, d: Device, memo: dict[str, Link | None]) -> Link | None:
    if d.addr in memo:
        return memo[d.addr]
    memo[d.addr] = None  # also guards against cycles
    o = d.over
    if o.get("link") == "none":
        return None
    cur = parse_link(o["link"], d.addr) if "link" in o else None
    mx = parse_link(o["max_link"], d.addr) if "max_link" in o else None
    f0 = lst.devs.get(d.addr[:-1] + "0")
    if (cur is None and d.fn and f0 and not on_root_bus(lst, d)
            and (l0 := resolve_link(lst, f0, memo))):
        cur, mx = l0[0], mx or l0[1]  # functions of a card share one link
    if cur is None and d.is_bridge:
        kids = sorted((c for c in lst.devs.values() if c.parent == d.addr),
                      key=lambda c: c.key)
        cur = next((lk[0] for c in kids if (lk := resolve_link(lst, c, memo))), None)
    if cur is None:
        width = 16 if d.cls >> 16 == 0x03 else 4 if d.cls >> 8 == 0x0108 else 1
        cur = (width, "8.0 GT/s PCIe")
    memo[d.addr] = (cur, mx or cur)
    return memo[d.addr]


def on_root_bus(lst: Listing, d: Device) -> bool:
    roots = lst.root_buses or {(x.dom, 0) for x in lst.devs.values()}
    return d.parent is None and (d.dom, d.bus) in roots


def has_link_files(lst: Listing, d: Device) -> bool:
    return d.is_bridge or not on_root_bus(lst, d)


def config_space(lst: Listing, d: Device, multi: bool) -> bytes:
    cfg = bytearray(64)
    hdr = (1 if d.is_bridge else 0) | (0x80 if multi else 0)
    struct.pack_into("<HHHHBBBBBBBB", cfg, 0, d.vendor, d.device, 0, 0, d.rev,
                     d.cls & 0xFF, d.cls >> 8 & 0xFF, d.cls >> 16, 0, 0, hdr, 0)
    if d.is_bridge:
        sec, sub = d.bus_range or (0, 0)
        struct.pack_into("<BBB", cfg, 0x18, d.bus, sec, sub)
    else:
        sv, sd = d.subsys or (d.vendor, d.device)
        struct.pack_into("<HH", cfg, 0x2C, sv, sd)
    return bytes(cfg)


class Writer:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.dirs: set[Path] = set()

    def _fresh(self, rel: str) -> Path:
        path = self.root / rel
        if path.parent not in self.dirs:
            path.parent.mkdir(parents=True, exist_ok=True)
            self.dirs.add(path.parent)
        if os.path.lexists(path):
            path.unlink()
        return path

    def file(self, rel: str, data: str | bytes) -> None:
        path = self._fresh(rel)
        path.write_bytes(data.encode() if isinstance(data, str) else data)
        parts = Path(rel).parts[:-1]
        path.chmod(0o755 if "bin" in parts or "sbin" in parts else 0o644)

    def link(self, rel: str, target: str, relative_to_root: bool = True) -> None:
        path = self._fresh(rel)
        if relative_to_root:
            target = os.path.relpath(self.root / target, path.parent)
        os.symlink(target, path)

    def resolve(self, rel: str, dirs: dict[str, str]) -> Path:
        if rel.startswith("@"):
            addr, _, rest = rel[1:].partition("/")
            rel = dirs[norm_addr(addr)] + ("/" + rest if rest else "")
        return self.root / rel


def write_device(w: Writer, lst: Listing, d: Device, rel: str,
                 memo: dict[str, Link | None], multi: bool) -> None:
    sv, sd = d.subsys or (d.vendor, d.device)
    attrs = {"vendor": f"0x{d.vendor:04x}", "device": f"0x{d.device:04x}",
             "class": f"0x{d.cls:06x}", "revision": f"0x{d.rev:02x}",
             "subsystem_vendor": f"0x{sv:04x}", "subsystem_device": f"0x{sd:04x}",
             "irq": "0"}
    if "boot_vga" in d.over or d.cls >> 8 == 0x0300:
        attrs["boot_vga"] = d.over.get("boot_vga", "0")
    if has_link_files(lst, d) and (lk := resolve_link(lst, d, memo)):
        (cw, cs), (mw, ms) = lk
        attrs |= {"current_link_width": str(cw), "current_link_speed": cs,
                  "max_link_width": str(mw), "max_link_speed": ms}
    if d.over.get("reset_method"):
        attrs["reset_method"] = d.over["reset_method"]
    attrs |= {k[5:]: v for k, v in d.over.items() if k.startswith("attr.")}
    for name, value in attrs.items():
        w.file(f"{rel}/{name}", value + "\n")
    zero = "0x0000000000000000 0x0000000000000000 0x0000000000000000\n"
    w.file(f"{rel}/resource", zero * (17 if d.is_bridge else 13))
    w.file(f"{rel}/config", config_space(lst, d, multi))
    w.link(f"{rel}/subsystem", "sys/bus/pci")
    w.link(f"sys/bus/pci/devices/{d.addr}", rel)
    if d.driver:
        w.link(f"{rel}/driver", f"sys/bus/pci/drivers/{d.driver}")
        w.link(f"sys/bus/pci/drivers/{d.driver}/{d.addr}", rel)
    if lst.iommu and d.group is not None:
        w.link(f"{rel}/iommu_group", f"sys/kernel/iommu_groups/{d.group}")
        w.link(f"sys/kernel/iommu_groups/{d.group}/devices/{d.addr}", rel)


def apply_damage(w: Writer, lst: Listing, dirs: dict[str, str]) -> None:
    for line in lst.damage:
        op, *args = line.split(None, 2 if line.startswith("write") else -1)
        path = w.resolve(args[0], dirs)
        if not (path.exists() or path.is_symlink()) and op not in ("dangle", "write"):
            raise ListingError(f"{lst.path.name}: damage on missing {args[0]}")
        if op == "delete":
            shutil.rmtree(path) if path.is_dir() and not path.is_symlink() else path.unlink()
        elif op == "write":
            text = args[1] if len(args) > 1 else ""
            path.write_bytes(text.encode().decode("unicode_escape").encode("latin-1"))
        elif op == "empty":
            path.write_bytes(b"")
        elif op == "truncate":
            os.truncate(path, int(args[1]))
        elif op == "dangle":
            target = args[1] if len(args) > 1 else os.readlink(path) + "-gone"
            w.link(str(path.relative_to(w.root)), target, relative_to_root=False)
        elif op == "keep":
            for child in sorted(path.iterdir()):
                if child.name not in args[1:] and (child.is_symlink() or child.is_file()):
                    child.unlink()
        else:
            raise ListingError(f"{lst.path.name}: unknown damage op {op!r}")


def safe_wipe(out: Path) -> None:
    real = out.resolve()
    if len(real.parts) < 3 or (real / ".git").exists() or real == Path.home():
        raise ListingError(f"refusing to wipe {real}")
    if out.is_symlink() or out.is_file():
        out.unlink()
    elif out.exists():
        shutil.rmtree(out)


def build(listing: Path, out: Path) -> Listing:
    lst = parse_listing(listing)
    if not lst.source:
        warn(f"{listing.name}: no `# source:` comment")
    safe_wipe(out)
    out.mkdir(parents=True)
    w = Writer(out)
    devs = sorted(lst.devs.values(), key=lambda d: d.key)
    dirs = {d.addr: dev_dir(lst, d) for d in devs}
    slots: dict[tuple[int, int, int], int] = {}
    for d in devs:
        slots[d.key[:3]] = slots.get(d.key[:3], 0) + 1
    memo: dict[str, Link | None] = {}
    for d in devs:
        write_device(w, lst, d, dirs[d.addr], memo, slots[d.key[:3]] > 1)
    if lst.iommu:
        (out / "sys/kernel/iommu_groups").mkdir(parents=True, exist_ok=True)
        gtype = "identity" if re.search(r"(^|\s)iommu=pt(\s|$)", lst.cmdline or "") else "DMA-FQ"
        for g in sorted({d.group for d in devs if d.group is not None}):
            w.file(f"sys/kernel/iommu_groups/{g}/type", gtype + "\n")
    w.file("usr/share/hwdata/pci.ids", pci_ids(lst))
    if lst.cpuinfo is not None:
        w.file("proc/cpuinfo", "\n".join(lst.cpuinfo) + "\n")
    if lst.cmdline is not None:
        w.file("proc/cmdline", lst.cmdline + "\n")
    for kind, rel, content in lst.files:
        if kind == "file":
            w.file(rel, content)
        elif kind == "symlink":
            w.link(rel, content, relative_to_root=False)
        elif rel.endswith("/"):
            (out / rel).mkdir(parents=True, exist_ok=True)
        else:
            w.file(rel, "")
    apply_damage(w, lst, dirs)
    # git keeps no empty directories, and some matter (an empty iommu_groups/ means "IOMMU
    # on, no groups"): give each a .gitkeep, which no reader of a host root looks at.
    for rel in empty_dirs(out):
        (out / rel / ".gitkeep").write_text("")
    return lst


def empty_dirs(root: Path) -> list[str]:
    return sorted(str(Path(p).relative_to(root)) for p, ds, fs in os.walk(root)
                  if not ds and not fs)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("listing", nargs="?", type=Path, help="listing .txt file")
    ap.add_argument("outdir", nargs="?", type=Path, help="root to (re)create")
    ap.add_argument("--all", action="store_true",
                    help="rebuild tests/fixtures/listings/*.txt into "
                         "tests/fixtures/roots/<stem>/")
    args = ap.parse_args(argv)
    try:
        if args.all:
            base = Path(__file__).resolve().parent.parent / "tests/fixtures"
            start = time.monotonic()
            listings = sorted((base / "listings").glob("*.txt"))
            for listing in listings:
                out = base / "roots" / listing.stem
                build(listing, out)
                note = ", ".join(empty_dirs(out))
                print(f"{listing.stem}: ok" + (f" (empty dirs, not kept by git: {note})"
                                               if note else ""))
            print(f"{len(listings)} roots in {time.monotonic() - start:.2f}s")
            for stale in sorted(set(os.listdir(base / "roots"))
                                - {p.stem for p in listings}):
                warn(f"roots/{stale} has no listing")
        elif args.listing and args.outdir:
            build(args.listing, args.outdir)
        else:
            ap.error("need LISTING OUTDIR or --all")
    except (ListingError, OSError, ValueError, KeyError) as exc:
        print(f"mkfixture: error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
