#!/usr/bin/env python3
"""Per-flush latency of durable-write variants on the disk holding DIR (issue 24, BENCHMARKS.md
"Synchronous stream to a filesystem"): 8 KiB per flush, N flushes per variant.

Usage: probe-durable-write.py DIR [N] [rev]   (rev: run the variants in reverse order)
Environment: ONLY=prefix,prefix selects variants; INTERLEAVE=1 runs one flush of each in turn.
Remove DIR afterwards. The "unsafe" variant is a reference only: its name is visible before
its bytes are durable, which walship must never do."""
import os, sys, time, statistics, ctypes
LIBC = ctypes.CDLL(None, use_errno=True)
D = sys.argv[1]; N = int(sys.argv[2]) if len(sys.argv) > 2 else 200
os.makedirs(D, exist_ok=True)
BUF = os.urandom(8192)
def dirsync():
    fd = os.open(D, os.O_RDONLY); os.fsync(fd); os.close(fd)
def p_current(i):  # create, fchmod, write, fsync, rename noreplace (link+unlink here), fsync dir
    t = f"{D}/.tmp.{i}"; fd = os.open(t, os.O_WRONLY|os.O_CREAT|os.O_EXCL, 0o640); os.fchmod(fd, 0o640)
    os.write(fd, BUF); os.fsync(fd); os.close(fd); os.rename(t, f"{D}/cur.{i}"); dirsync()
def p_a(i):  # O_EXCL hidden name, write, fdatasync, link into place, fsync dir
    t = f"{D}/.tmpa.{i}"; fd = os.open(t, os.O_WRONLY|os.O_CREAT|os.O_EXCL, 0o640)
    os.write(fd, BUF); os.fdatasync(fd); os.close(fd); os.link(t, f"{D}/a.{i}"); dirsync(); os.unlink(t)
def p_b(i):  # O_TMPFILE, write, fdatasync, linkat, fsync dir
    fd = os.open(D, os.O_WRONLY|os.O_TMPFILE, 0o640); os.write(fd, BUF); os.fdatasync(fd)
    r = LIBC.linkat(fd, b"", -100, f"{D}/b.{i}".encode(), 0x1000)
    assert r == 0, ctypes.get_errno()
    os.close(fd); dirsync()
def p_late(i):  # UNSAFE reference: write, rename, then fsync file + dir (one commit on ext4)
    t = f"{D}/.tmpl.{i}"; fd = os.open(t, os.O_WRONLY|os.O_CREAT|os.O_EXCL, 0o640)
    os.write(fd, BUF); os.rename(t, f"{D}/l.{i}"); os.fsync(fd); os.close(fd); dirsync()
def p_d(i):  # d) hidden file zero-filled+fsynced off the commit path; then overwrite, fdatasync,
    # ftruncate to the piece size, link into place, fdatasync the file (commits the link on
    # ext4) and fsync the directory
    t = f"{D}/.tmpd.{i}"; fd = os.open(t, os.O_WRONLY|os.O_CREAT|os.O_EXCL, 0o640)
    os.write(fd, b"\0" * 65536); os.fsync(fd)
    s = time.perf_counter()
    os.pwrite(fd, BUF, 0); os.fdatasync(fd); os.ftruncate(fd, len(BUF)); os.link(t, f"{D}/d.{i}")
    os.fdatasync(fd); dirsync(); os.close(fd)
    return (time.perf_counter() - s) * 1000
afd = None
def p_append(i):  # append to one file + fdatasync (extends size)
    global afd
    if afd is None: afd = os.open(f"{D}/append", os.O_WRONLY|os.O_CREAT|os.O_APPEND, 0o640)
    os.write(afd, BUF); os.fdatasync(afd)
pfd = None
def p_prealloc(i):  # overwrite inside a zero-filled, fsynced 16 MiB file + fdatasync (pg_receivewal)
    global pfd
    if pfd is None:
        pfd = os.open(f"{D}/prealloc", os.O_WRONLY|os.O_CREAT, 0o640)
        os.write(pfd, b"\0" * (16 << 20)); os.fsync(pfd)
    os.pwrite(pfd, BUF, i * 8192); os.fdatasync(pfd)
ONLY = os.environ.get("ONLY")
ORDER = [("current (temp+fsync+rename+dir fsync)", p_current), ("a) O_EXCL+fdatasync+link+dir fsync", p_a),
                ("b) O_TMPFILE+fdatasync+linkat+dir fsync", p_b), ("unsafe: rename before fsync", p_late),
                ("d) prefilled hidden file, link after truncate", p_d),
                ("append+fdatasync", p_append), ("preallocated overwrite+fdatasync", p_prealloc)]
if len(sys.argv) > 3: ORDER.reverse()
if os.environ.get("INTERLEAVE"):  # one flush of each selected variant in turn: fairer under load
    chosen = [(n, f) for n, f in ORDER if not ONLY or n.startswith(tuple(ONLY.split(",")))]
    times = {n: [] for n, _ in chosen}
    for i in range(N):
        for name, f in chosen:
            s = time.perf_counter(); own = f(i)
            times[name].append(own if own is not None else (time.perf_counter() - s) * 1000)
    for name, ts in times.items():
        ts.sort()
        print(f"{name:45s} median {statistics.median(ts):6.2f} ms  p90 {ts[int(N*.9)]:6.2f}  p99 {ts[int(N*.99)]:6.2f}  (interleaved)", flush=True)
    sys.exit(0)
for name, f in ORDER:
    if ONLY and not name.startswith(tuple(ONLY.split(","))): continue
    ts = []
    for i in range(N):
        s = time.perf_counter(); own = f(i); ts.append(own if own is not None else (time.perf_counter() - s) * 1000)
    ts.sort()
    print(f"{name:45s} median {statistics.median(ts):6.2f} ms  p90 {ts[int(N*.9)]:6.2f}  p99 {ts[int(N*.99)]:6.2f}", flush=True)
