"""The CPU a command takes, split by process: the driver, Ray's own processes, each kind of
Ray actor (a Tune trial, a Ray Train worker or controller, ...).

Runs the command and polls its process tree every ``--interval`` seconds with psutil, keeping
each process's last CPU time (user + system); a process that ends between two polls loses
its last moments. Prints the wall time, the total and the CPU seconds per kind of process with
how many there were. On a machine where CPU is the bottleneck (a test suite on two cores), CPU
seconds, not wall time, say what a sweep costs.

    python bench/process_cpu.py -- python sweeps/rank_e2e.py --preset smoke --set train.max_steps=1
"""

from __future__ import annotations

import argparse
import collections
import subprocess
import sys
import time

import psutil

#: Ray's process titles and scripts, in the order they are looked for in a command line.
KINDS = ("ImplicitFunc", "RayTrainWorker", "TrainController", "DashboardAgent", "RuntimeEnvAgent", "raylet",
         "gcs_server", "log_monitor", "monitor.py", "dashboard.py", "ray::IDLE", "huey_consumer", "uvicorn")


def kind(cmdline: str) -> str:
    for k in KINDS:
        if k in cmdline:
            return k
    if cmdline.startswith("ray::"):
        return cmdline.split()[0]
    return cmdline[:70]


def tree_cpu(pid: int) -> dict[int, tuple[str, float]]:
    """Each live process of ``pid``'s tree (itself included): its command line and CPU seconds
    so far (user + system). Empty once ``pid`` has ended."""
    try:
        root = psutil.Process(pid)
        tree = [root, *root.children(recursive=True)]
    except psutil.NoSuchProcess:
        return {}
    out = {}
    for p in tree:
        try:
            t = p.cpu_times()
            out[p.pid] = (" ".join(p.cmdline()), t.user + t.system)
        except psutil.Error:
            pass
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--interval", type=float, default=0.3, help="seconds between polls")
    ap.add_argument("command", nargs=argparse.REMAINDER, help="the command, after --")
    args = ap.parse_args()
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not command:
        ap.error("command: give the command to measure after --")
    start = time.monotonic()
    proc = subprocess.Popen(command, stdout=subprocess.DEVNULL)
    seen: dict[int, tuple[str, float]] = {}
    while proc.poll() is None:
        seen.update({pid: (kind(cmdline), cpu) for pid, (cmdline, cpu) in tree_cpu(proc.pid).items()})
        time.sleep(args.interval)
    cpu: collections.Counter[str] = collections.Counter()
    count: collections.Counter[str] = collections.Counter()
    for name, seconds in seen.values():
        cpu[name] += seconds
        count[name] += 1
    print(f"exit {proc.returncode}, wall {time.monotonic() - start:.1f} s, CPU {sum(cpu.values()):.1f} s")
    for name, seconds in cpu.most_common():
        print(f"  {seconds:7.1f} s  x{count[name]:<3} {name}")
    return proc.returncode


if __name__ == "__main__":
    sys.exit(main())
