#!/usr/bin/env python3
"""What the decode path costs in firmware, from the GNU ld map of decode-min.

decode-min (tests/embedded/decode_min.c) is the smallest program that decodes with lla:
open the scalar backend by name, initialise a static state, run decode steps.  It is
linked with -ffunction-sections/-fdata-sections and --gc-sections, so the input
sections left in its map are exactly what the decode path pulls in.  This script sums
them like `size` does: text = code + read-only data, data = initialised RAM,
bss = zeroed RAM; per object of liblla.a, and separately for the C runtime and libgcc
pieces (soft-float helpers, memset, ...) the image carries.

    decode-size.py MAP [--budget BYTES] [--functions]

With --budget, exits 1 when liblla.a's text exceeds BYTES.
"""
import argparse
import re
import sys

INPUT_INLINE = re.compile(r"^ (\S+)\s+0x([0-9a-fA-F]+)\s+0x([0-9a-fA-F]+)\s+(\S.*)$")
INPUT_NAME = re.compile(r"^ (\S+)\s*$")
INPUT_ADDR = re.compile(r"^\s+0x([0-9a-fA-F]+)\s+0x([0-9a-fA-F]+)\s+(\S.*)$")
MEMBER = re.compile(r"([^/()\s]+\.a)\(([^)]+)\)")


def kind(section):
    if section.startswith((".text", ".rodata", ".srodata")):
        return "text"
    if section.startswith((".data", ".sdata", ".tdata")):
        return "data"
    if section.startswith((".bss", ".sbss", ".tbss", "COMMON", ".noinit")):
        return "bss"
    return None


def parse(path):
    """Yields (section, size, origin) of every input section kept in the image."""
    with open(path) as f:
        lines = f.read().splitlines()
    try:
        start = lines.index("Linker script and memory map")
    except ValueError:
        sys.exit(f"{path}: no 'Linker script and memory map' part; is it a GNU ld map?")
    pending = None
    for line in lines[start + 1:]:
        if line.startswith("/DISCARD/") or line.startswith(".debug") or line.startswith(".comment"):
            pending = None
            continue
        m = INPUT_INLINE.match(line)
        if m:
            yield m.group(1), int(m.group(3), 16), m.group(4).strip()
            pending = None
            continue
        m = INPUT_NAME.match(line)
        if m and not line.startswith(" *"):
            pending = m.group(1)
            continue
        m = INPUT_ADDR.match(line)
        if m and pending:
            yield pending, int(m.group(2), 16), m.group(3).strip()
        pending = None


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("map")
    ap.add_argument("--budget", type=int, help="maximum text bytes of liblla.a")
    ap.add_argument("--functions", action="store_true", help="list lla's sections too")
    args = ap.parse_args()

    lla = {}          # object -> {"text","data","bss"}
    runtime = {"text": 0, "data": 0, "bss": 0}
    program = {"text": 0, "data": 0, "bss": 0}
    functions = []
    for section, size, origin in parse(args.map):
        k = kind(section)
        if k is None or size == 0:
            continue
        m = MEMBER.search(origin)
        if m and m.group(1).endswith("liblla.a"):
            obj = re.sub(r"\.c\.o(bj)?$", "", m.group(2))
            lla.setdefault(obj, {"text": 0, "data": 0, "bss": 0})[k] += size
            functions.append((size, k, obj, section))
        elif m:
            runtime[k] += size
        else:
            program[k] += size

    total = {k: sum(v[k] for v in lla.values()) for k in ("text", "data", "bss")}
    print(f"decode path in {args.map} (bytes, like `size`):")
    print(f"  {'object':<34} {'text':>7} {'data':>6} {'bss':>6}")
    for obj in sorted(lla, key=lambda o: -lla[o]["text"]):
        v = lla[obj]
        print(f"  {obj:<34} {v['text']:>7} {v['data']:>6} {v['bss']:>6}")
    print(f"  {'liblla.a total':<34} {total['text']:>7} {total['data']:>6} {total['bss']:>6}")
    print(f"  {'C runtime + libgcc (whole image)':<34} {runtime['text']:>7} "
          f"{runtime['data']:>6} {runtime['bss']:>6}")
    print(f"  {'program objects (decode_min.o, crt0)':<34} {program['text']:>7} "
          f"{program['data']:>6} {program['bss']:>6}")
    if args.functions:
        for size, k, obj, section in sorted(functions, reverse=True):
            print(f"    {size:>6} {k:<4} {obj:<28} {section}")
    if args.budget is not None:
        verdict = "within" if total["text"] <= args.budget else "OVER"
        print(f"budget: liblla.a text {total['text']} B, budget {args.budget} B: {verdict}")
        if total["text"] > args.budget:
            return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
