#!/usr/bin/env python3
"""Self-check for the fixture roots built by mkfixture.py.

1. Builds every tests/fixtures/listings/*.txt twice into temporary dirs and
   checks both builds and the committed tests/fixtures/roots/<stem>/ are
   identical (paths, types, executable bits, symlink targets, contents).
2. For every root with IOMMU groups and no damage, prints the listing the
   blog's iommu-viewer.sh would print, by walking sys/kernel/iommu_groups
   and the root's own pci.ids, and compares it with the listing's
   `Group:` lines when the listing is in that format (the b550 ones).
3. If lspci (pciutils) is installed, runs it on every undamaged root:
   `lspci -tv` must give the listing's tree (same structure; names compared
   too, against the system pci.ids), and `lspci -nn -i ROOT/.../pci.ids`
   must give the listing's device lines.

Usage: check-fixtures.py [-v]   (exit status 1 on any mismatch)
"""
from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
BASE = HERE.parent / "tests/fixtures"
sys.path.insert(0, str(HERE))
sys.dont_write_bytecode = True
import mkfixture  # noqa: E402

VERBOSE = "-v" in sys.argv
failures: list[str] = []


def manifest(root: Path) -> list[str]:
    """One line per entry, without following symlinks."""
    out = []
    for dirpath, dirs, files in os.walk(root):
        dirs.sort()
        for name in sorted(dirs + files):
            p = Path(dirpath, name)
            rel = p.relative_to(root)
            mode = "x" if p.lstat().st_mode & 0o100 else "-"  # all git keeps
            if p.is_symlink():
                out.append(f"l {rel} -> {os.readlink(p)}")
            elif p.is_dir():
                out.append(f"d {rel}")
            else:
                out.append(f"f {rel} {mode} {hashlib.sha256(p.read_bytes()).hexdigest()}")
    return out


def digest(lines: list[str]) -> str:
    return hashlib.sha256("\n".join(lines).encode()).hexdigest()[:16]


def read_ids(root: Path) -> tuple[dict, dict, dict]:
    vendors: dict[str, str] = {}
    devices: dict[tuple[str, str], str] = {}
    classes: dict[str, str] = {}
    vid = cls = None
    for line in (root / "usr/share/hwdata/pci.ids").read_text().splitlines():
        if m := re.match(r"^C ([0-9a-f]{2})  (.*)", line):
            vid, cls = None, m[1]
        elif m := re.match(r"^([0-9a-f]{4})  (.*)", line):
            vid, cls = m[1], None
            vendors[vid] = m[2]
        elif m := re.match(r"^\t([0-9a-f]{2,4})  (.*)", line):
            if vid:
                devices[(vid, m[1])] = m[2]
            elif cls:
                classes[cls + m[1]] = m[2]
    return vendors, devices, classes


def group_listing(root: Path, arch: bool = False) -> list[str]:
    """What iommu-viewer.sh (the blog's script) prints for this root, or with
    ARCH the Arch wiki script (`IOMMU Group N:` + tab + `lspci -nns` line)."""
    vendors, devices, classes = read_ids(root)
    groups = root / "sys/kernel/iommu_groups"
    out = []
    for g in sorted(os.listdir(groups), key=int):
        if arch:
            out.append(f"IOMMU Group {g}:")
        for addr in sorted(os.listdir(groups / g / "devices")):
            d = groups / g / "devices" / addr
            attr = {n: (d / n).read_text().strip()[2:] for n in
                    ("vendor", "device", "class", "revision")}
            v, dv, cc = attr["vendor"], attr["device"], attr["class"][:4]
            name = devices.get((v, dv), "Device")
            rev = f" (rev {attr['revision']})" if attr["revision"] != "00" else ""
            drv = d / "driver"
            drv_s = f"   Driver: {os.path.basename(os.readlink(drv))}" if drv.is_symlink() else ""
            text = (f"{classes.get(cc, 'Class ' + cc)} [{cc}]: "
                    f"{vendors.get(v, '')} {name} [{v}:{dv}]{rev}")
            out.append(f"\t{addr[5:] if addr.startswith('0000:') else addr} {text}" if arch
                       else f"Group:  {g:<3} {addr} {text}{drv_s}")
    return out


def section(listing: Path, name: str) -> list[str]:
    """Non-blank, non-comment lines of every section NAME (includes followed)."""
    sections: list[tuple[str, str, list[str]]] = []
    mkfixture.read_sections(listing, sections, [])
    return [ln for sname, _, lines in sections if sname == name for ln in lines
            if ln.strip() and not ln.startswith("#")]


def tree_shape(lines: list[str]) -> list[str]:
    return [re.sub(r"([0-9a-f]{2}\.[0-7])  .*", r"\1", ln).rstrip() for ln in lines]


def check(cond: bool, what: str) -> None:
    print(("ok    " if cond else "FAIL  ") + what)
    if not cond:
        failures.append(what)


def lspci(root: Path, *args: str) -> list[str]:
    res = subprocess.run(["lspci", "-A", "linux-sysfs", "-O",
                          f"sysfs.path={root}/sys/bus/pci", *args],
                         capture_output=True, text=True)
    return res.stdout.rstrip("\n").splitlines() if res.returncode == 0 else [res.stderr]


def check_determinism(listings: list[Path], tmp: Path) -> None:
    print("== determinism: two builds and the committed roots")
    for listing in listings:
        runs = []
        for n in (1, 2):
            mkfixture.build(listing, tmp / f"run{n}" / listing.stem)
            runs.append(manifest(tmp / f"run{n}" / listing.stem))
        committed = manifest(BASE / "roots" / listing.stem)
        check(runs[0] == runs[1], f"{listing.stem}: build 1 == build 2 "
              f"({len(runs[0])} entries, manifest {digest(runs[0])})")
        missing = set(runs[0]) - set(committed)
        only_dirs = all(ln.startswith("d ") for ln in missing)
        check(set(committed) <= set(runs[0]) and only_dirs,
              f"{listing.stem}: committed root == fresh build"
              + (f" (minus {len(missing)} empty dirs git cannot keep)" if missing else ""))


def check_group_listings(listing: Path, root: Path) -> None:
    print(f"\n== {listing.stem}: iommu-viewer.sh listing rebuilt from the root")
    rebuilt = group_listing(root)
    if VERBOSE or listing.stem.startswith("b550"):
        print("\n".join(rebuilt))
    given = [ln for ln in section(listing, "iommu") if ln.startswith("Group:")]
    if given:
        check(rebuilt == given, f"{listing.stem}: group listing == listing's "
              f"iommu section ({len(given)} lines)")
    given = [ln for ln in section(listing, "iommu")
             if ln.startswith(("IOMMU Group", "\t"))]
    if given:
        check(group_listing(root, arch=True) == given,
              f"{listing.stem}: Arch-wiki-script listing == listing's iommu "
              f"section ({len(given)} lines)")


def check_lspci(listing: Path, root: Path) -> None:
    tree = [ln for ln in section(listing, "tree") if not ln.startswith(("➜", "$"))]
    got = lspci(root, "-tv")
    check(tree_shape(got) == tree_shape(tree),
          f"{listing.stem}: lspci -tv has the listing's tree shape ({len(got)} lines)")
    if got == tree:
        print(f"      {listing.stem}: lspci -tv is byte-identical to the listing")
    nn = lspci(root, "-nn", "-i", str(root / "usr/share/hwdata/pci.ids"))
    want = {}
    for ln in section(listing, "iommu") + section(listing, "lspci"):
        ln = re.sub(r"^(Group:\s*\d+\s+|IOMMU Group \d+:)", "", ln.strip())
        if mkfixture.DEV_RE.match(ln):
            ln = re.sub(r"\s+Driver:.*$", "", ln)
            want[mkfixture.norm_addr(ln.split()[0])] = ln.split(None, 1)[1]
    have = {mkfixture.norm_addr(ln.split()[0]): ln.split(None, 1)[1] for ln in nn}
    bad = [a for a in want if have.get(a) != want[a]]
    check(not bad and set(have) == set(want),
          f"{listing.stem}: lspci -nn with the root's pci.ids == listing lines"
          + (f" (differs: {bad[:3]})" if bad else ""))


def main() -> int:
    listings = sorted((BASE / "listings").glob("*.txt"))
    tmp = Path(tempfile.mkdtemp(prefix="mkfixture-check-"))
    try:
        check_determinism(listings, tmp)
        undamaged = [ls for ls in listings if not section(ls, "damage")]
        for listing in undamaged:
            root = tmp / "run1" / listing.stem
            if (root / "sys/kernel/iommu_groups").is_dir():
                check_group_listings(listing, root)
        if not shutil.which("lspci"):
            print("\nlspci not installed: lspci comparison skipped")
        else:
            print("\n== lspci on the generated roots")
            for listing in undamaged:
                if section(listing, "tree"):
                    check_lspci(listing, tmp / "run1" / listing.stem)
    finally:
        shutil.rmtree(tmp)
    print(f"\n{len(failures)} failure(s)")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
