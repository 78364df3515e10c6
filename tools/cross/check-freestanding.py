#!/usr/bin/env python3
"""Checks that a freestanding liblla.a needs nothing beyond a bare-metal C runtime.

    check-freestanding.py NM LIBRARY

Every symbol the archive uses but does not define must be on the allowlist:
memory/string primitives the compiler may emit anyway (memset, memcpy, ...), float libm
(expf, logf, ...) and compiler runtime helpers (__aeabi_*, libgcc's __<op><mode>N).
Anything else -- malloc, stdio, getenv, threads/TLS, double-precision libm -- fails,
and is printed with the objects that reference it.
"""
import re
import subprocess
import sys

ALLOWED = {
    "memset", "memcpy", "memmove", "memcmp", "strlen", "strchr", "strcmp", "strncmp",
    "expf", "logf", "sqrtf", "fabsf", "expm1f", "log1pf",
}
COMPILER_RUNTIME = re.compile(r"^__aeabi_\w+$|^__[a-z]+(qi|hi|si|di|ti|sf|df|tf)[0-9]?$")
NEVER = {"__aeabi_read_tp", "__tls_get_addr"}  # thread-local storage


def main():
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    nm, lib = sys.argv[1], sys.argv[2]
    out = subprocess.run([nm, "-A", lib], check=True, capture_output=True, text=True).stdout
    defined, used = set(), {}
    for line in out.splitlines():
        # "liblla.a:member.o:         U name" or "liblla.a:member.o:00000000 T name"
        parts = line.rsplit(None, 2)
        if len(parts) < 2:
            continue
        where = line.split(":")[1] if line.count(":") >= 2 else lib
        kind, name = parts[-2], parts[-1]
        if kind == "U":
            used.setdefault(name, set()).add(where)
        elif kind.upper() in "TDBRVWCG" or kind in "tdbrs":
            defined.add(name)
    external = sorted(n for n in used if n not in defined)
    bad = [n for n in external
           if n in NEVER or not (n in ALLOWED or COMPILER_RUNTIME.match(n))]
    print(f"{lib}: {len(external)} external symbols: {' '.join(external)}")
    if bad:
        for n in bad:
            print(f"  NOT ALLOWED in the freestanding build: {n} (used by {', '.join(sorted(used[n]))})")
        return 1
    print("  all allowed (no heap, stdio, getenv, threads or double libm)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
