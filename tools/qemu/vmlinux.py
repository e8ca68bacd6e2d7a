#!/usr/bin/python3
"""tools/qemu/vmlinux.py KVER DIR: prints DIR/vmlinux-KVER, made once from /boot/vmlinuz-KVER.

Debian's bzImage is XZ-compressed; under TCG its decompressor (and the real-mode
loader before it) took 10-15 s of a guest's boot here. The uncompressed ELF
inside boots through its PVH entry point (CONFIG_PVH; QEMU loads the ELF
directly), skipping both: the runner and the libvirt guests boot from it.
"""
import lzma
import os
import sys

XZ_MAGIC = b"\xfd7zXZ\x00"


def main(kver, directory):
    out = os.path.join(directory, f"vmlinux-{kver}")
    source = f"/boot/vmlinuz-{kver}"
    if os.path.exists(out) and os.path.getmtime(out) >= os.path.getmtime(source):
        print(out)
        return 0
    with open(source, "rb") as handle:
        image = handle.read()
    start = image.find(XZ_MAGIC)
    if start < 0:
        sys.stderr.write(f"vmlinux.py: no XZ payload in {source}\n")
        return 1
    # the payload is followed by the bzImage's trailer: decompress the first stream only
    elf = lzma.LZMADecompressor(format=lzma.FORMAT_XZ).decompress(image[start:])
    if not elf.startswith(b"\x7fELF"):
        sys.stderr.write(f"vmlinux.py: {source}'s payload is not an ELF kernel\n")
        return 1
    os.makedirs(directory, exist_ok=True)
    with open(out + ".tmp", "wb") as handle:
        handle.write(elf)
    os.replace(out + ".tmp", out)
    print(out)
    return 0


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:]))
