"""Processes, sockets and ports of the local stack, read from /proc and probed on loopback.

Linux only (the stack's only platform): process groups come from ``/proc/PID/stat``,
listening sockets from ``/proc/net/tcp*`` matched to ``/proc/PID/fd``. Nothing here knows
which services the stack runs; ``infra/stack.py`` asks by pid and port.
"""

from __future__ import annotations

import os
import socket
import urllib.error
import urllib.request
from pathlib import Path

HOST = "127.0.0.1"  # every server of the stack binds loopback only, and is probed there


def port_in_use(port: int, host: str = HOST) -> bool:
    """Whether something accepts TCP connections on ``host:port``."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.settimeout(0.5)
        return s.connect_ex((host, port)) == 0


def http_ok(url: str, timeout: float = 1.0) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:
            return 200 <= int(resp.status) < 300
    except (urllib.error.URLError, OSError, ValueError):
        return False


def proc_start_time(pid: int) -> str | None:
    """The process's start time in clock ticks since boot (field 22 of /proc/PID/stat)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name (field 2) may hold spaces; fields after it follow the last ')'.
    return stat.rsplit(")", 1)[1].split()[19]


def process_groups() -> dict[int, list[int]]:
    """Process group -> pids of its live (non-zombie) processes, from one pass over /proc."""
    groups: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        # fields[0] is the state, fields[2] the process group. Zombies hold no resources
        # and are reaped by their parent (or init) in their own time.
        if fields[0] != "Z":
            groups.setdefault(int(fields[2]), []).append(int(entry.name))
    return groups


def group_members(pgid: int) -> list[int]:
    """Pids of the live processes in process group ``pgid``."""
    return process_groups().get(pgid, [])


def listening_inodes() -> dict[int, tuple[str, int]]:
    """Socket inode -> (address, port) for every TCP socket in LISTEN state."""
    import ipaddress

    found: dict[int, tuple[str, int]] = {}
    for table, v6 in (("/proc/net/tcp", False), ("/proc/net/tcp6", True)):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            cols = line.split()
            if cols[3] != "0A":  # TCP_LISTEN
                continue
            addr_hex, port_hex = cols[1].split(":")
            raw = bytes.fromhex(addr_hex)
            # The kernel prints each 32-bit word in host (little-endian) order.
            raw = b"".join(raw[i : i + 4][::-1] for i in range(0, len(raw), 4))
            if v6:
                addr6 = ipaddress.IPv6Address(raw)
                # Dual-stack sockets bound to 127.0.0.1 (the JVMs, gRPC) show as ::ffff:7f00:1.
                addr = f"::ffff:{addr6.ipv4_mapped}" if addr6.ipv4_mapped else str(addr6)
            else:
                addr = str(ipaddress.IPv4Address(raw))
            found[int(cols[9])] = (addr, int(port_hex, 16))
    return found


def socket_inodes(pid: int) -> set[int]:
    inodes = set()
    try:
        for fd in Path(f"/proc/{pid}/fd").iterdir():
            try:
                target = os.readlink(fd)
            except OSError:
                continue
            if target.startswith("socket:["):
                inodes.add(int(target[8:-1]))
    except OSError:
        pass
    return inodes


def log_tail(path: Path, lines: int = 40) -> str:
    try:
        text = path.read_text(errors="replace").splitlines()
    except OSError:
        return "(no log)"
    return "\n".join(text[-lines:]) or "(log is empty)"
