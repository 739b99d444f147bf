#!/usr/bin/python3
"""Dask distributed side of the Skein benchmark suite.

Run by bench/run.mjs with Debian's /usr/bin/python3 (python3-distributed 2022.12.x):

    /usr/bin/python3 bench/dask/bench_dask.py --workload map [--short] [--repeat N] [--best]

Every measured run prints one JSON line on stdout:

    {"system": "dask" | "dask-best", "workload": ..., "params": {...}, "value": ..., "unit": ...}

Everything else (logs, progress) goes to stderr. Each invocation starts its own
LocalCluster(n_workers=2, threads_per_worker=1, processes=True) and closes it.

--best applies the settings under which Dask does best for that workload (see BEST below)
and labels the rows "dask-best".
"""
from __future__ import annotations

import argparse
import gc
import json
import logging
import os
import statistics
import subprocess
import sys
import time

import dask
import distributed
from distributed import Client, LocalCluster, wait

# The settings that change Dask's figure, per workload (used with --best).
# worker-saturation: inf turns off scheduler-side queuing (the 2022.11+ default is 1.1), so
# every ready task is sent to a worker at once, as before queuing existed.
BEST = {
    "map": {"distributed.scheduler.worker-saturation": float("inf")},
    "tree": {"distributed.scheduler.worker-saturation": float("inf")},
    "fanin": {"distributed.scheduler.worker-saturation": float("inf")},
    # the map's and the startup's best settings together
    "coldstart": {"distributed.scheduler.worker-saturation": float("inf"),
                  "distributed.worker.multiprocessing-method": "fork"},
    # lz4 is installed, so "auto" compression samples each frame; random bytes never compress
    "transfer": {"distributed.comm.compression": None},
    # fork instead of spawn: workers do not re-import Python and dask from scratch
    "startup": {"distributed.worker.multiprocessing-method": "fork"},
}
BEST_DESC = {
    "map": "worker-saturation=inf",
    "tree": "worker-saturation=inf, whole graph in one client.get (not one submit per task)",
    "fanin": "worker-saturation=inf",
    "coldstart": "worker-saturation=inf, worker multiprocessing-method=fork",
    "transfer": "comm.compression=None",
    "startup": "worker multiprocessing-method=fork",
}

SYSTEM = "dask"
SETTING = {}
OUT = sys.stdout


def log(*a):
    print("[dask]", *a, file=sys.stderr, flush=True)


def emit(workload, params, value, unit, **extra):
    rec = {"system": SYSTEM, "workload": workload, "params": params,
           "value": value, "unit": unit}
    rec.update(SETTING)
    rec.update(extra)
    OUT.write(json.dumps(rec) + "\n")
    OUT.flush()


# ---- task functions (module level; cloudpickle ships them by value from __main__) ----

def noop(x):
    return x


def add(a, b):
    return a + b


def sum_all(*xs):
    return sum(xs)


def make_bytes(n):
    # random so that lz4 compression (on by default when lz4 is installed) cannot shrink it
    return os.urandom(n)


def nbytes(b):
    return len(b)


def slow_root(seconds):
    time.sleep(seconds)
    return 0


def dep(i, root):
    return i


def rss_and_gc():
    gc.collect()
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError("no VmRSS")


def scheduler_task_count(dask_scheduler=None):
    return len(dask_scheduler.tasks)


# ---- cluster ----

def start_cluster():
    cluster = LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                           dashboard_address=None, silence_logs=logging.ERROR)
    client = Client(cluster)
    client.wait_for_workers(2)
    return cluster, client


def worker_addrs(client):
    return sorted(client.scheduler_info()["workers"].keys())


# ---- workloads ----

def w_map(client, args):
    sizes = [2000] if args.short else [20000, 100000]
    for n in sizes:
        for r in range(args.repeat):
            xs = list(range(n * r, n * (r + 1)))  # fresh keys each run
            t0 = time.perf_counter()
            futs = client.map(noop, xs)
            vals = client.gather(futs)
            dt = time.perf_counter() - t0
            assert len(vals) == n and vals[0] == xs[0] and vals[-1] == xs[-1]
            emit("map", {"n": n}, round(n / dt, 1), "tasks/s", seconds=round(dt, 4))
            del futs, vals
            time.sleep(0.5)  # let releases settle


def w_latency(client, args):
    n = 100 if args.short else 1000
    for r in range(args.repeat):
        # warm-up: ship the function once
        client.submit(noop, -1, pure=False).result()
        times = []
        for i in range(n):
            t0 = time.perf_counter()
            v = client.submit(noop, i, pure=False).result()
            times.append((time.perf_counter() - t0) * 1000.0)
            assert v == i
        times.sort()
        p50 = statistics.median(times)
        p99 = times[min(len(times) - 1, int(round(0.99 * len(times))) - 1)]
        emit("latency-p50", {"n": n}, round(p50, 3), "ms")
        emit("latency-p99", {"n": n}, round(p99, 3), "ms")


def w_tree(client, args):
    levels = 10 if args.short else 14
    leaves = 2 ** levels
    ntasks = 2 * leaves - 1
    expect = leaves * (leaves - 1) // 2
    for r in range(args.repeat):
        off = r * leaves  # fresh keys each run
        t0 = time.perf_counter()
        if args.best:
            # the whole tree as one graph: one update_graph message
            dsk = {}
            tok = f"{os.getpid()}-{r}"
            level = []
            for i in range(leaves):
                k = f"leaf-{tok}-{i}"
                dsk[k] = (noop, i + off)
                level.append(k)
            depth = 0
            while len(level) > 1:
                nxt = []
                for j in range(0, len(level), 2):
                    k = f"add-{tok}-{depth}-{j // 2}"
                    dsk[k] = (add, level[j], level[j + 1])
                    nxt.append(k)
                level = nxt
                depth += 1
            total = client.get(dsk, level[0])
        else:
            level = client.map(noop, range(off, off + leaves))
            while len(level) > 1:
                level = [client.submit(add, level[j], level[j + 1])
                         for j in range(0, len(level), 2)]
            total = level[0].result()
        dt = time.perf_counter() - t0
        assert total == expect + off * leaves, (total, expect)
        emit("tree", {"leaves": leaves, "tasks": ntasks}, round(ntasks / dt, 1), "tasks/s",
             seconds=round(dt, 4))
        del level
        time.sleep(0.5)


def w_fanin(client, args):
    # leaves no-ops by one map, summed in groups by one submit each, then one root
    leaves, group = (1000, 10) if args.short else (10_000, 100)
    ntasks = leaves + leaves // group + 1
    for r in range(args.repeat):
        off = r * leaves  # fresh keys each run
        expect = leaves * (leaves - 1) // 2 + off * leaves
        t0 = time.perf_counter()
        ls = client.map(noop, range(off, off + leaves))
        mids = [client.submit(sum_all, *ls[g:g + group]) for g in range(0, leaves, group)]
        total = client.submit(sum_all, *mids).result()
        dt = time.perf_counter() - t0
        assert total == expect, (total, expect)
        emit("fanin", {"leaves": leaves, "group": group, "tasks": ntasks}, round(ntasks / dt, 1),
             "tasks/s", seconds=round(dt, 4))
        del ls, mids
        time.sleep(0.5)


def w_transfer(client, args):
    sizes = [20_000_000] if args.short else [100_000_000, 500_000_000]
    a, b = worker_addrs(client)
    for size in sizes:
        for r in range(args.repeat):
            prod = client.submit(make_bytes, size, workers=[a], allow_other_workers=False,
                                 pure=False)
            wait(prod)
            assert prod.status == "finished", prod.status
            t0 = time.perf_counter()
            cons = client.submit(nbytes, prod, workers=[b], allow_other_workers=False,
                                 pure=False)
            got = cons.result()
            dt = time.perf_counter() - t0
            assert got == size
            who = client.who_has([prod])[prod.key]
            assert b in who, who  # the consumer's worker holds a copy: it was transferred
            emit("transfer", {"mb": size // 1_000_000}, round(size / 1e6 / dt, 1), "MB/s",
                 seconds=round(dt, 4))
            del prod, cons
            time.sleep(1.0)


def w_memory(args):
    n = 10_000 if args.short else 100_000
    if args.repeat > 1:
        # One fresh process per run: LocalCluster runs the scheduler in this process, and memory
        # freed by an earlier run is reused rather than returned to the OS, so a second run in
        # the same process would grow much less.
        cmd = [sys.executable, os.path.abspath(__file__), "--workload", "memory", "--repeat", "1"]
        if args.short:
            cmd.append("--short")
        for r in range(args.repeat):
            subprocess.run(cmd, check=True)
        return
    cluster, client = start_cluster()
    try:
        memory_run(cluster, client, n)
    finally:
        client.close()
        cluster.close()


def memory_run(cluster, client, n):
    # The tasks are submitted by a separate client process, so that the scheduler process (this
    # one: LocalCluster runs the Scheduler in-process) holds no client futures; only the
    # scheduler's own per-task state is counted. The client first runs a small warm-up graph of
    # the same shape, so that code paths are loaded before the baseline.
    child = subprocess.Popen(
        [sys.executable, os.path.abspath(__file__), "--mem-client", cluster.scheduler_address,
         str(n)],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        line = child.stdout.readline().strip()
        assert line == "CONNECTED", line
        time.sleep(0.5)
        base_tasks = client.run_on_scheduler(scheduler_task_count)
        rss0 = client.run_on_scheduler(rss_and_gc)
        child.stdin.write("GO\n")
        child.stdin.flush()
        line = child.stdout.readline().strip()
        assert line == "SUBMITTED", line
        deadline = time.time() + 120
        while client.run_on_scheduler(scheduler_task_count) < base_tasks + n + 1:
            if time.time() > deadline:
                raise RuntimeError("scheduler never saw all tasks")
            time.sleep(0.2)
        time.sleep(1.0)
        rss1 = client.run_on_scheduler(rss_and_gc)
        emit("memory", {"tasks": n}, round((rss1 - rss0) / n, 1), "bytes/task",
             rss_before=rss0, rss_after=rss1)
        child.stdin.write("DONE\n")
        child.stdin.flush()
        child.stdin.close()
        child.wait(timeout=60)
    finally:
        if child.poll() is None:
            child.kill()


def mem_client(address, n):
    client = Client(address)
    # warm-up: the same graph shape, small, run to completion and released
    root = client.submit(slow_root, 0, pure=False)
    warm = client.map(dep, range(100), [root] * 100)
    client.gather(warm)
    del warm, root
    time.sleep(0.5)
    print("CONNECTED", flush=True)
    assert sys.stdin.readline().strip() == "GO"
    root = client.submit(slow_root, 600, pure=False)
    futs = client.map(dep, range(n), [root] * n)
    print("SUBMITTED", flush=True)
    sys.stdin.readline()  # DONE
    client.cancel(futs + [root])
    del futs, root
    client.close()


def w_coldstart(args):
    # One fresh process per run (the first cluster of a fresh Python), as on the Skein side:
    # start-to-ready, then three maps of fresh no-ops in that cluster; first over third.
    n = 2000 if args.short else 20_000
    if not args.inner:
        cmd = [sys.executable, os.path.abspath(__file__), "--workload", "coldstart", "--inner"]
        if args.short:
            cmd.append("--short")
        if args.best:
            cmd.append("--best")
        for r in range(args.repeat):
            out = subprocess.run(cmd, check=True, stdout=subprocess.PIPE, text=True).stdout
            rates = {}
            for line in out.splitlines():
                OUT.write(line + "\n")
                rec = json.loads(line)
                if rec["workload"] == "coldstart-map":
                    rates[rec["params"]["run"]] = rec["value"]
            OUT.flush()
            emit("coldstart-first-vs-warm", {"n": n}, round(rates[1] / rates[3], 3), "ratio")
        return
    t0 = time.perf_counter()
    cluster, client = start_cluster()
    emit("coldstart-ready", {"workers": 2}, round((time.perf_counter() - t0) * 1000.0, 1), "ms")
    try:
        for run in (1, 2, 3):
            xs = list(range(n * run, n * (run + 1)))
            t1 = time.perf_counter()
            vals = client.gather(client.map(noop, xs))
            dt = time.perf_counter() - t1
            assert len(vals) == n and vals[0] == xs[0] and vals[-1] == xs[-1]
            emit("coldstart-map", {"n": n, "run": run}, round(n / dt, 1), "tasks/s",
                 seconds=round(dt, 4))
            del vals
            time.sleep(0.5)
    finally:
        client.close()
        cluster.close()


def w_startup(args):
    for r in range(args.repeat):
        t0 = time.perf_counter()
        cluster = LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                               dashboard_address=None, silence_logs=logging.ERROR)
        client = Client(cluster)
        client.wait_for_workers(2)
        dt = time.perf_counter() - t0
        assert len(client.scheduler_info()["workers"]) == 2
        emit("startup", {"workers": 2}, round(dt * 1000.0, 1), "ms")
        client.close()
        cluster.close()


WORKLOADS = ["map", "latency", "tree", "fanin", "transfer", "memory", "startup", "coldstart"]


def main():
    global SYSTEM
    ap = argparse.ArgumentParser()
    ap.add_argument("--workload", choices=WORKLOADS)
    ap.add_argument("--short", action="store_true")
    ap.add_argument("--best", action="store_true")
    ap.add_argument("--repeat", type=int, default=None)
    ap.add_argument("--list-best", action="store_true")
    ap.add_argument("--inner", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--mem-client", nargs=2, metavar=("ADDRESS", "N"))
    args = ap.parse_args()

    if args.mem_client:
        mem_client(args.mem_client[0], int(args.mem_client[1]))
        return
    if args.list_best:
        print(json.dumps(BEST_DESC))
        return
    if args.repeat is None:
        args.repeat = 1 if args.short else 3
    w = args.workload
    if args.best:
        if w not in BEST:
            log(f"no best setting for {w}")
            return
        SYSTEM = "dask-best"
        dask.config.set(BEST[w])
        SETTING["setting"] = BEST_DESC[w]
    log(f"distributed {distributed.__version__}, workload {w}, best={args.best}")

    if w == "startup":
        w_startup(args)
        return
    if w == "memory":
        w_memory(args)
        return
    if w == "coldstart":
        w_coldstart(args)
        return
    cluster, client = start_cluster()
    try:
        if w == "map":
            w_map(client, args)
        elif w == "latency":
            w_latency(client, args)
        elif w == "tree":
            w_tree(client, args)
        elif w == "fanin":
            w_fanin(client, args)
        elif w == "transfer":
            w_transfer(client, args)
    finally:
        client.close()
        cluster.close()


if __name__ == "__main__":
    main()
