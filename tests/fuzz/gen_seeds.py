#!/usr/bin/env python3
"""Writes the hand-made seed inputs of the fuzz targets into corpus/<target>/seed-*.

The encoders mirror the parse() functions of fuzz_problem.c, fuzz_state.c and
fuzz_levels.c byte for byte.  Run from anywhere: python3 tests/fuzz/gen_seeds.py
(the seeds are committed; rerun after changing an input format, then re-check the
corpus with `meson test fuzz_problem fuzz_state fuzz_levels`).
"""
import os
import struct

HERE = os.path.dirname(os.path.abspath(__file__))

F64, F32, BF16, F16 = 0x00, 0x80, 0xE0, 0xE8   # fz_dtype selectors
EDGE = [0, 1, -1, 2, 2**63 - 1, -2**63, 2**63 - 2, -2**63 + 1,
        2**31, 2**31 - 1, 2**32, 2**32 + 1, 2**62, 2**62 + 1, 2**61, 2**61 + 1,
        2**60, 3037000499, 3037000500, 2**20, 2**30, 2**40, 2**50, 61,
        62, 63, 64, 65, 1023, 1024, 1025, 2048,
        -2, -64, -2**62, 4096, 65536, 100000,
        65537, 12345678901, 255, 256, 127, 128, 3, 5, 7, 2**33]


def small(v, lo):
    """fz_int selector for a value in the small range lo..lo+191."""
    assert 0 <= v - lo < 0xC0
    return bytes([v - lo])


def edge(v):
    """fz_int bytes for an edge value (or raw 8 bytes)."""
    if v in EDGE:
        return bytes([0xC0 + EDGE.index(v)])
    return bytes([0xF0]) + struct.pack('<q', v)


def chunk(c):
    if c == 0:
        return bytes([0])
    log = c.bit_length() - 1
    return bytes([next(s for s in range(0x20, 0xA0) if s % 11 == log)])


def scale(x):
    return bytes([int(x * 32 + 96)])


def problem(name, flags=0, variant=0, hierarchy=0, batch=2, seqlen=5, qk=1, heads=1,
            dk=3, dv=2, levels=None, chunk_len=0, scl=1.0, lengths=None, dtype=F64,
            fault=0, fault_dtype=F32, layouts=None, chaos=None, garbage_stride=None, seed=1,
            misc=0, offsets_raw=None, raw=None):
    """fuzz_problem input.  Sizes are encoded as small values unless given as bytes."""
    b = bytearray([flags])
    enc = lambda v, lo: v if isinstance(v, (bytes, bytearray)) else small(v, lo)
    b += bytes([variant])
    b += bytes([hierarchy])
    b += enc(batch, 1) + enc(seqlen, 1) + enc(qk, 1)
    if flags & 1:
        b += enc(heads, 1)          # group
    else:
        b += enc(heads, 1)
    b += enc(dk, 1) + enc(dv, 1)
    if levels is None:
        levels = 1 if flags & 2 else max(1, (seqlen - 1).bit_length() + 1 if isinstance(seqlen, int) else 1)
    b += enc(levels, 1)
    b += chunk_len if isinstance(chunk_len, (bytes, bytearray)) else chunk(chunk_len)
    b += scl if isinstance(scl, (bytes, bytearray)) else scale(scl)
    if flags & 4:
        if offsets_raw is not None:      # raw entries: mode >= 0xC0, batch + 1 fz_int values
            b += bytes([0xC0]) + b''.join(small(o, 0) if 0 <= o < 0xC0 else edge(o) for o in offsets_raw)
        else:
            if lengths is None:
                lengths = [seqlen // batch] * batch
            b += bytes([0]) + bytes(lengths)
    b += bytes([dtype, fault])
    if fault >= 0xE0 and not fault & 8 and (fault & 7) < 7:
        b += bytes([fault_dtype])
    for i in range(7):
        lay = layouts[i] if layouts else (0, 0, 0)
        b += bytes(lay)
    if flags & 0x80:
        t, d, v = chaos
        b += bytes([t, d]) + edge(v)
    if garbage_stride is None:
        b += bytes([0])
    else:
        b += bytes([1]) + edge(garbage_stride)
    b += struct.pack('<Q', seed) + bytes([misc])
    if raw:
        b += raw
    return name, bytes(b)


def state(name, variant=0, hierarchy=0, dtype64=True, batch=2, qk=1, group=1, dk=2, dv=3,
          levels=6, chunk_sel=0, scale_sel=3, ntok=4, op=0, values=1, final_mode=1,
          corrupt=0, positions=(0, 0, 0), lengths=(2, 3, 1), seed=7, misc=0):
    """fuzz_state input.  positions are already-encoded selector bytes (see parse_position)."""
    shape = variant | (hierarchy << 1) | ((qk - 1) << 2) | ((group - 1) << 3) | ((0 if dtype64 else 1) << 4)
    b = bytearray([shape, batch - 1, dk - 1, dv - 1, levels - 1, chunk_sel, scale_sel, ntok - 1,
                   op, values, final_mode, corrupt])
    for i in range(batch):
        p = positions[i]
        b += p if isinstance(p, (bytes, bytearray)) else bytes([p])
    if op == 2:
        b += bytes(lengths[:batch])
    b += struct.pack('<Q', seed) + bytes([misc])
    return name, bytes(b)


def pos_small(v):
    assert 0 <= v < 0x60
    return bytes([v])


def pos_cap_minus(k):
    return bytes([0x60 + k])


def pos_cap_plus(k):
    return bytes([0xA0 + k])


def pos_edge(v):
    return bytes([0xD0]) + edge(v)


def levels_record(h, t, s, level, base, T, near=0):
    enc = lambda v, lo: small(v, lo) if isinstance(v, int) and 0 <= v - lo < 0xC0 else edge(v)
    return bytes([h]) + enc(t, 0) + enc(s, 0) + enc(level, 0) + enc(base, 0) + enc(T, 0) + bytes([near])


def seeds():
    P = {}
    add = lambda nv: P.setdefault('fuzz_problem', []).append(nv)
    # valid problems: every variant / hierarchy / dtype, decode + final + initial states
    for v in (0, 1):
        for h in (0, 1):
            for dt in (F64, F32):
                add(problem(f'valid-v{v}h{h}-{"f64" if dt == F64 else "f32"}', flags=0x70,
                            variant=v, hierarchy=h, batch=2, seqlen=7, qk=1, heads=2, dk=3,
                            dv=2, chunk_len=4, dtype=dt, seed=v * 4 + h * 2 + (dt != F64)))
    add(problem('T1', flags=0x50, batch=1, seqlen=1, dk=1, dv=1, levels=1))
    add(problem('grouped-heads', flags=0x51, variant=1, qk=2, heads=2, seqlen=9, chunk_len=2))
    add(problem('chunk1-strong', flags=0x70, hierarchy=1, seqlen=13, chunk_len=1))
    add(problem('long-T', flags=0x50, variant=1, batch=1, seqlen=48, dk=2, dv=2, chunk_len=16))
    add(problem('varlen', flags=0x34, batch=3, seqlen=9, lengths=[3, 0, 6], chunk_len=2))
    add(problem('varlen-gdn-strong', flags=0x36, variant=1, hierarchy=1, batch=3,
                lengths=[5, 1, 7], chunk_len=4, levels=2))
    add(problem('strided', flags=0x70, variant=1, seqlen=6,
                layouts=[(5, 0x55, 0x02), (7, 0x1b, 0x24), (23, 0xff, 0x0c), (1, 0x40, 0),
                         (3, 0x11, 0x08), (9, 0x22, 0x00), (13, 0x99, 0x06)]))
    add(problem('garbage-values', flags=0x78, variant=1, seqlen=6))
    # backward (misc bit 7), with and without states, d_initial aliasing initial (bit 6)
    for v in (0, 1):
        for h in (0, 1):
            add(problem(f'backward-v{v}h{h}', flags=0x40, variant=v, hierarchy=h, batch=2, seqlen=9,
                        qk=1, heads=2, dk=3, dv=2, chunk_len=2, dtype=F64 if h else F32, misc=0x80,
                        seed=11 + v + 2 * h))
    add(problem('backward-states', flags=0x30, variant=1, seqlen=7, chunk_len=4, misc=0x80))
    add(problem('backward-states-alias', flags=0x30, hierarchy=1, seqlen=7, misc=0xC5))
    add(problem('backward-varlen', flags=0x04, variant=1, batch=3, lengths=[4, 0, 5], chunk_len=2,
                misc=0x80))
    add(problem('backward-strided', flags=0x00, variant=1, seqlen=6, misc=0x80,
                layouts=[(5, 0x55, 0x02), (7, 0x1b, 0x04), (23, 0xff, 0x0c), (1, 0x40, 0),
                         (3, 0x11, 0x08), (9, 0x22, 0x00), (13, 0x99, 0x06)]))
    add(problem('backward-levels-too-few', flags=0x00, seqlen=9, levels=2, misc=0x80))
    add(problem('backward-bf16', flags=0x00, dtype=BF16, misc=0x80))
    add(problem('garbage-unused-strides', flags=0x54, batch=2, seqlen=6, lengths=[2, 4],
                garbage_stride=-2**63))
    # invalid descriptors
    add(problem('levels-too-few', flags=0x50, seqlen=9, levels=2))
    add(problem('levels-63', flags=0x50, levels=63))
    add(problem('batch-negative', flags=0x50, batch=edge(-1)))
    add(problem('seqlen-huge', flags=0x00, seqlen=edge(2**62)))
    add(problem('dims-overflow', flags=0x00, dk=edge(2**32), dv=edge(2**32)))
    add(problem('heads-not-multiple', flags=0x50, qk=2, heads=3))
    add(problem('variant-bad', flags=0x50, variant=0xF0))
    add(problem('chunk-3', flags=0x50, chunk_len=bytes([0xA0])))
    add(problem('scale-nan', flags=0x50, scl=bytes([0xC0])))
    add(problem('scale-1e301', flags=0x50, scl=bytes([0xC5])))
    add(problem('dtype-bf16', flags=0x50, dtype=BF16))
    add(problem('dtype-unknown', flags=0x50, dtype=0xF1))
    add(problem('null-k', flags=0x50, fault=0xE9))
    add(problem('mixed-dtype-v', flags=0x50, fault=0xE2))
    add(problem('g-f32-with-f16', flags=0x50, dtype=F16, fault=0xE3))
    add(problem('offsets-decreasing', flags=0x04, batch=2, seqlen=4, offsets_raw=[0, 3, 2]))
    add(problem('offsets-last-wrong', flags=0x04, batch=2, seqlen=4, offsets_raw=[0, 1, 5]))
    add(problem('offsets-first-nonzero', flags=0x04, batch=2, seqlen=4, offsets_raw=[1, 2, 4]))
    add(problem('stride-int64max', flags=0xD0, chaos=(0, 1, 2**63 - 1)))
    add(problem('stride-int64min-o', flags=0xD0, chaos=(6, 2, -2**63)))
    add(problem('stride-huge-lambda', flags=0xD0, chaos=(4, 3, 2**62)))

    S = []
    for v in (0, 1):
        for h in (0, 1):
            S.append(state(f'both-v{v}h{h}', variant=v, hierarchy=h, op=3, values=1,
                           positions=(pos_small(5), pos_small(12), 0), seed=v * 2 + h))
    S.append(state('both-f32-strong-finite', hierarchy=1, dtype64=False, op=3, values=2,
                   positions=(pos_small(37), pos_small(0), 0), levels=8))
    S.append(state('decode-at-capacity', op=0, levels=4, ntok=3, positions=(pos_cap_minus(1), pos_small(2), 0)))
    S.append(state('decode-past-capacity', op=0, levels=4, positions=(pos_cap_plus(0), pos_small(0), 0)))
    S.append(state('decode-negative', op=0, positions=(bytes([0xC0]), pos_small(0), 0)))
    S.append(state('decode-int64max', op=0, levels=62, positions=(pos_edge(2**63 - 1), pos_small(0), 0)))
    S.append(state('forward-huge-position', op=1, levels=62, values=1, ntok=8,
                   positions=(pos_cap_minus(3), pos_edge(2**40 + 3), 0)))
    S.append(state('forward-same-block', op=1, final_mode=2, values=2, positions=(pos_small(9), pos_small(1), 0)))
    S.append(state('forward-garbage', op=1, values=0, final_mode=1, positions=(pos_small(9), pos_small(1), 0)))
    S.append(state('varlen', op=2, batch=3, values=1, lengths=(2, 0, 5), positions=(pos_small(3), pos_small(0), pos_small(30))))
    S.append(state('backward-separate', op=6, values=1, final_mode=1, positions=(pos_small(5), pos_small(9), 0)))
    S.append(state('backward-alias-initial', op=6, values=2, variant=1, final_mode=2, positions=(pos_small(3), pos_small(0), 0)))
    S.append(state('backward-alias-final', op=6, values=0, hierarchy=1, final_mode=1, misc=0x80,
                   positions=(pos_small(6), pos_small(1), 0)))
    S.append(state('backward-past-capacity', op=6, levels=4, final_mode=1, positions=(pos_cap_plus(0), pos_small(0), 0)))
    for k in range(11):
        S.append(state(f'corrupt-{k}', op=4 + (k & 1), corrupt=k, positions=(pos_small(2), pos_small(4), 0)))

    L = []
    L.append(('small', b''.join(levels_record(h, t, s, l, b, T) for h in (0, 1)
                                for (t, s, l, b, T) in [(5, 2, 1, 2, 1), (12, 9, 3, 3, 9),
                                                        (16, 0, 5, 10, 17), (7, 7, 0, 2, 2)])))
    L.append(('edges', b''.join(levels_record(h, t, s, l, b, T, near) for h in (0, 1, 0xF0)
                                for (t, s, l, b, T, near) in [
                                    (2**63 - 1, 0, 63, 2, 2**63 - 1, 0),
                                    (2**63 - 1, 2**63 - 2, 64, 3, -1, 0x81),
                                    (2**62, 2**62 + 1, 62, 2**63 - 1, 2**62 + 1, 0),
                                    (-2**63, -1, -1, -2**63, 0, 0),
                                    (2**62 + 1, 0, 2**63 - 1, 10, 1023, 0xff)])))
    L.append(('bases', b''.join(levels_record(0, t, s, 1, b, T) for (t, s, b, T) in [
        (242, 243 - 1 - 81, 3, 243), (999, 0, 10, 1000), (1000, 999, 10, 1001),
        (4095, 2048, 4, 4096), (2**62, 2**62 - 1, 7, 2**62)])))
    return {'fuzz_problem': P['fuzz_problem'], 'fuzz_state': S, 'fuzz_levels': L}


def main():
    for target, items in seeds().items():
        d = os.path.join(HERE, 'corpus', target)
        os.makedirs(d, exist_ok=True)
        for f in os.listdir(d):
            if f.startswith('seed-'):
                os.remove(os.path.join(d, f))
        for name, data in items:
            with open(os.path.join(d, f'seed-{name}'), 'wb') as fh:
                fh.write(data)
        print(f'{target}: {len(items)} seeds in {d}')


if __name__ == '__main__':
    main()
