"""Operator commands: ``python -m promptforge.admin keys create|list|revoke``.

Runs with the same environment as the functions (on the local stack: ``source
.run/dev/stack.env``; in production: application default credentials and
GOOGLE_CLOUD_PROJECT). A new key is printed once and never stored.
"""

from __future__ import annotations

import argparse
import json
import sys

from . import config
from .service import keys
from .wiring import LiveDeps


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="promptforge.admin", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="group", required=True)
    k = sub.add_parser("keys", help="manage API keys").add_subparsers(dest="action", required=True)
    create = k.add_parser("create", help="create a key (for a new client unless --client-id)")
    create.add_argument("--client-id", help="add the key to this existing client")
    create.add_argument("--label", default="", help="a note to tell keys apart")
    create.add_argument("--json", action="store_true", help="print JSON instead of text")
    k.add_parser("list", help="list keys (prefixes only)")
    revoke = k.add_parser("revoke", help="revoke a key by its prefix or hash")
    revoke.add_argument("key_id")
    w = sub.add_parser("webhooks", help="callback signing").add_subparsers(dest="action", required=True)
    secret = w.add_parser("secret", help="show a client's webhook secret (made on first use)")
    secret.add_argument("--client-id", required=True)
    secret.add_argument("--rotate", action="store_true", help="replace it with a new one")
    args = parser.parse_args(argv)

    deps = LiveDeps(config.load())
    if args.group == "webhooks":
        from .service.webhooks import webhook_secret

        print(webhook_secret(deps, args.client_id, rotate=args.rotate))
        return 0
    if args.action == "create":
        key, record = keys.create_key(deps, args.client_id, args.label)
        if args.json:
            print(json.dumps({"api_key": key, "client_id": record.client_id, "prefix": record.prefix}))
        else:
            print(f"client_id: {record.client_id}\napi_key:   {key}\n(shown once; only its hash is stored)")
        return 0
    if args.action == "list":
        for rec in deps.store.list_api_keys():
            state = f"revoked {rec.revoked_at:%Y-%m-%d}" if rec.revoked_at else "active"
            print(f"{rec.prefix}…  {rec.client_id}  {rec.created_at:%Y-%m-%d %H:%M}  {state}  {rec.label}")
        return 0
    revoked = keys.revoke_key(deps, args.key_id)
    if not revoked:
        print(f"no active key matches {args.key_id!r}", file=sys.stderr)
        return 1
    for rec in revoked:
        print(f"revoked {rec.prefix}… of {rec.client_id}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
