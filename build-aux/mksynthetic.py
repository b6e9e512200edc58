#!/usr/bin/env python3
"""Writes a synthetic host root with N PCI functions, for benchmarks.

    mksynthetic.py N OUTDIR

Buses 1..k hang under root ports 0000:00:BB.0; every bus holds up to 32 eight-function
devices; each device is one IOMMU group; every fourth device is a GPU (VGA + HDMI audio).
The files are what the kernel shows (vendor, device, class, config, links, groups), so
passthroughctl and `lspci -A linux-sysfs` can both read the tree.
"""
import os
import shutil
import struct
import sys


def write(path: str, text: str) -> None:
    with open(path, "w") as f:
        f.write(text)


def config(vendor: int, device: int, cls: int, header: int, bus_nums=None) -> bytes:
    b = bytearray(64)
    struct.pack_into("<HH", b, 0, vendor, device)
    b[8] = 0xa1
    b[9], b[10], b[11] = cls & 0xff, (cls >> 8) & 0xff, (cls >> 16) & 0xff
    b[14] = header
    if bus_nums:
        b[0x18], b[0x19], b[0x1a] = bus_nums
    return bytes(b)


def device(root: str, path: str, addr: str, vendor: int, dev: int, cls: int, group: int,
           driver: str, header: int = 0, bus_nums=None) -> None:
    d = os.path.join(root, path)
    os.makedirs(d, exist_ok=True)
    write(f"{d}/vendor", f"0x{vendor:04x}\n")
    write(f"{d}/device", f"0x{dev:04x}\n")
    write(f"{d}/class", f"0x{cls:06x}\n")
    write(f"{d}/revision", "0xa1\n")
    write(f"{d}/subsystem_vendor", f"0x{vendor:04x}\n")
    write(f"{d}/subsystem_device", f"0x{dev:04x}\n")
    write(f"{d}/current_link_width", "16\n")
    write(f"{d}/max_link_width", "16\n")
    write(f"{d}/current_link_speed", "16.0 GT/s PCIe\n")
    write(f"{d}/max_link_speed", "16.0 GT/s PCIe\n")
    if cls >> 16 == 3:
        write(f"{d}/boot_vga", "0\n")
    with open(f"{d}/config", "wb") as f:
        f.write(config(vendor, dev, cls, header, bus_nums))
    up = "../" * path.count("/")  # from the device directory up to sys/
    rel = path.removeprefix("sys/")
    os.makedirs(f"{root}/sys/bus/pci/drivers/{driver}", exist_ok=True)
    os.symlink(f"{up}bus/pci/drivers/{driver}", f"{d}/driver")
    os.makedirs(f"{root}/sys/kernel/iommu_groups/{group}/devices", exist_ok=True)
    os.symlink(f"{up}kernel/iommu_groups/{group}", f"{d}/iommu_group")
    os.symlink(f"../../../../{rel}", f"{root}/sys/kernel/iommu_groups/{group}/devices/{addr}")
    os.symlink(f"../../../{rel}", f"{root}/sys/bus/pci/devices/{addr}")


def main() -> None:
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    n, out = int(sys.argv[1]), sys.argv[2]
    shutil.rmtree(out, ignore_errors=True)
    os.makedirs(f"{out}/sys/bus/pci/devices")
    os.makedirs(f"{out}/proc")
    write(f"{out}/proc/cmdline", "BOOT_IMAGE=/vmlinuz root=/dev/sda1 ro quiet iommu=pt\n")
    write(f"{out}/proc/cpuinfo", "processor\t: 0\nvendor_id\t: AuthenticAMD\nmodel name\t: Synthetic\nflags\t\t: fpu svm\n")
    made, group, slot = 0, 0, 0
    buses = (n + 255) // 256
    for bus in range(1, buses + 1):
        rp = f"0000:00:{bus:02x}.0"
        rp_path = f"sys/devices/pci0000:00/{rp}"
        device(out, rp_path, rp, 0x1022, 0x1483, 0x060400, group, "pcieport", 1, (0, bus, bus))
        group += 1
        made += 1
        for dev in range(32):
            if made >= n:
                break
            gpu = slot % 4 == 0
            slot += 1
            for fn in range(8):
                if made >= n:
                    break
                addr = f"0000:{bus:02x}:{dev:02x}.{fn}"
                if gpu and fn == 0:
                    ids, cls, drv = (0x10de, 0x1c02), 0x030000, "vfio-pci"
                elif gpu and fn == 1:
                    ids, cls, drv = (0x10de, 0x10f1), 0x040300, "vfio-pci"
                else:
                    ids, cls, drv = (0x8086, 0x1533), 0x020000, "igb"
                device(out, f"{rp_path}/{addr}", addr, ids[0], ids[1], cls, group, drv, 0x80 if fn == 0 else 0)
                made += 1
            group += 1


if __name__ == "__main__":
    main()
