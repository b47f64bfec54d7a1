"""The command line of the local stack: ``python infra/stack.py up|down|status|env``.

Kept apart from :mod:`infra.stack` so the Python API (tests, benchmarks, the demo) does not
carry argument parsing and printing; ``infra/stack.py`` runs :func:`main` when executed.
"""

from __future__ import annotations

import argparse
import json
import logging
import shlex
import sys
from collections.abc import Iterable
from pathlib import Path

from infra import stack as stack_module
from infra.stack import Stack, StackError
from infra.stack_services import PROFILES


def _stack_from_args(args: argparse.Namespace) -> Stack:
    services = [s.strip() for s in args.services.split(",") if s.strip()] if args.services else None
    stack = Stack(args.profile, base_port=args.base_port, services=services, model_server=args.model_server)
    # status/down/env of a running stack follow what `up` recorded (base port, services).
    try:
        state = json.loads((stack.run_dir / "stack.json").read_text())
    except (OSError, ValueError):
        return stack
    if args.command != "up" and args.base_port is None and services is None:
        stack = Stack(
            args.profile,
            base_port=state["base_port"],
            services=list(state["services"]),
            functions_source=Path(state["functions_source"]),
            model_server="model-server" in state["services"],
        )
    return stack


def main(argv: Iterable[str] | None = None) -> int:
    """Run the CLI; returns the exit code."""
    parser = argparse.ArgumentParser(
        description="The local PromptForge stack", epilog=(stack_module.__doc__ or "").split("\n\n")[1]
    )
    parser.add_argument("command", choices=("up", "down", "status", "env"))
    parser.add_argument("--profile", choices=sorted(PROFILES), default="dev")
    parser.add_argument("--base-port", type=int, default=None, help="override the profile's base port")
    parser.add_argument("--services", default=None, help=f"comma-separated subset of: {', '.join(Stack.service_names())}")
    parser.add_argument(
        "--model-server",
        action="store_true",
        help="also run the real model server (infra/model_server.py; install it first: bash infra/llm_install.sh)",
    )
    args = parser.parse_args(list(argv) if argv is not None else None)
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stderr)

    try:
        stack = _stack_from_args(args)
        if args.command == "up":
            stack.up()
            print(f"Stack {stack.profile!r} is up. Gateway: {stack.base_url}")
            cli = ".venv/bin/python infra/stack.py"
            print(f'Use it from a shell: eval "$({cli} env --profile {stack.profile})"')
            print(f"Logs: {stack.run_dir}/NAME.log   Stop: {cli} down --profile {stack.profile}")
            return 0
        if args.command == "down":
            problems = stack.down()
            for p in problems:
                print(f"LEFT OVER: {p}", file=sys.stderr)
            print("stopped" if not problems else "stopped, with problems (see above)")
            return 1 if problems else 0
        if args.command == "env":
            for k, v in stack.env().items():
                print(f"export {k}={shlex.quote(v)}")
            return 0
        # status
        report = stack.status()
        print(f"profile {stack.profile} (project {stack.project}, base port {stack.base_port}, run dir {stack.run_dir})")
        for name, s in report.items():
            state = (
                "up"
                if s["healthy"]
                else "RUNNING, NOT ANSWERING"
                if s["running"]
                else "PORT TAKEN BY ANOTHER PROCESS"
                if s["port_taken_by_other"]
                else "down"
            )
            print(f"  {name:<20} {s['port']:>5}  pid {s['pid'] or '-'!s:>7}  {state}")
        return 0 if all(s["healthy"] for s in report.values()) else 3
    except StackError as exc:
        print(f"stack: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:  # up() has already stopped what it started
        print("stack: interrupted", file=sys.stderr)
        return 130
