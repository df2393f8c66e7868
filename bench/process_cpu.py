"""The CPU a command takes, split by process: the driver, Ray's own processes, each kind of
Ray actor (a Tune trial, a Ray Train worker or controller, ...).

Runs the command and polls its process tree every ``--interval`` seconds with psutil, keeping
each process's last CPU time (user + system); a process that ends between two polls loses
its last moments. Prints the wall time, the total and the CPU seconds per kind of process with
how many there were. On a machine where CPU is the bottleneck (a test suite on two cores), CPU
seconds, not wall time, say what a sweep costs.

``--system`` polls every process of the machine started after the command instead: processes
whose parent died before them (a killed sweep's Ray) are counted too, so run it on an
otherwise idle machine.

    python bench/process_cpu.py -- python sweeps/rank_e2e.py --preset smoke --set train.max_steps=1
    python bench/process_cpu.py --system --interval 2 -- bash .ci/run    # the test suite
"""

from __future__ import annotations

import argparse
import collections
import subprocess
import sys
import time

import psutil

#: Ray's process titles and scripts, in the order they are looked for in a command line.
KINDS = ("ImplicitFunc", "RayTrainWorker", "TrainController", "DashboardAgent", "RuntimeEnvAgent",
         "default_worker.py", "log_monitor", "monitor.py", "dashboard.py", "ray::IDLE", "huey_consumer", "uvicorn")

#: Ray's programs, by their executable's name (their command lines name other programs).
PROGRAMS = ("raylet", "gcs_server")

#: Other processes a test suite starts, by a part of their command line.
NAMED = {"meteor-1.5.jar": "METEOR (Java)", "exec(eval(sys.stdin.readline()))": "pytest-xdist worker",
         "/sweeps/": "a sweep's driver (sweeps/*.py)", "mlflow server": "mlflow server", "chrom": "Chromium"}


def kind(cmdline: str) -> str:
    program = cmdline.split(" ", 1)[0].rsplit("/", 1)[-1]
    if program in PROGRAMS:
        return program
    for k in KINDS:
        if k in cmdline:
            return k
    if cmdline.startswith("ray::"):
        # A long actor name is cut short in the process title ("ray::ImplicitF").
        name = cmdline.split()[0].split(".")[0]
        return next((k for k in KINDS if k.startswith(name[len("ray::"):])), name)
    return next((v for k, v in NAMED.items() if k in cmdline), cmdline[:70])


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


def system_cpu(since: float) -> dict[tuple[int, float], tuple[str, float]]:
    """Each live process of the machine started at or after ``since`` (epoch seconds), by pid
    and start time: its command line and CPU seconds so far."""
    out = {}
    for p in psutil.process_iter(["pid", "create_time", "cmdline", "name", "cpu_times"]):
        info = p.info
        if info["create_time"] is None or info["create_time"] < since or info["cpu_times"] is None:
            continue
        cmdline = " ".join(info["cmdline"] or []) or info["name"] or ""
        out[(info["pid"], info["create_time"])] = (cmdline, info["cpu_times"].user + info["cpu_times"].system)
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--interval", type=float, default=0.3, help="seconds between polls")
    ap.add_argument("--system", action="store_true",
                    help="every process of the machine started after the command, not only its tree")
    ap.add_argument("command", nargs=argparse.REMAINDER, help="the command, after --")
    args = ap.parse_args()
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not command:
        ap.error("command: give the command to measure after --")
    start, since = time.monotonic(), time.time() - 1
    proc = subprocess.Popen(command, stdout=subprocess.DEVNULL)
    seen: dict[object, tuple[str, float]] = {}
    while proc.poll() is None:
        polled = system_cpu(since) if args.system else tree_cpu(proc.pid)
        seen.update({key: (kind(cmdline), cpu) for key, (cmdline, cpu) in polled.items()})
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
