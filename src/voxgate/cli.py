"""The ``voxgate`` command."""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys
from collections.abc import Sequence

from aiohttp import web

from voxgate.config import Settings
from voxgate.errors import ConfigError
from voxgate.upstream.engine.accounts import Accounts
from voxgate.upstream.engine.app import API_PREFIX, create_engine_app

log = logging.getLogger("voxgate")


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    try:
        code: int = args.run(args)
    except ConfigError as exc:
        print(f"voxgate: {exc.message}", file=sys.stderr)
        return 2
    return code


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="voxgate", description="Real-time voice gateway.")
    commands = parser.add_subparsers(dest="command", required=True)
    local = commands.add_parser(
        "local-tts",
        help="run the embedded Voxtral-compatible engine (espeak-ng) on its own",
        description="Serve the Voxtral TTS API under /api/tts with real espeak-ng speech.",
    )
    local.add_argument("--host", default="127.0.0.1")
    local.add_argument("--port", type=int, default=8081)
    local.add_argument(
        "--api-key",
        action="append",
        default=[],
        metavar="KEY[:CREDITS]",
        help="accept this key (repeatable; default credits 1,000,000). "
        "Also VOXTRAL_LOCAL_API_KEYS=KEY[:CREDITS],...",
    )
    local.set_defaults(run=_run_local_tts)
    return parser


def _run_local_tts(args: argparse.Namespace) -> int:
    settings = Settings.from_env()
    accounts = Accounts()
    specs = [*args.api_key, *settings.local_api_keys]
    for spec in specs:
        accounts.add_spec(spec)
    if not specs:
        key = accounts.generate_key()
        accounts.add_key(key)
        print(
            f"voxgate local-tts: no API key given; this run accepts the dev key\n\n    {key}\n",
            flush=True,
        )
    url = f"http://{args.host}:{args.port}{API_PREFIX}"
    print(f"voxgate local-tts: Voxtral-compatible API at {url}", flush=True)
    asyncio.run(_serve(create_engine_app(accounts), args.host, args.port))
    return 0


async def _serve(app: web.Application, host: str, port: int) -> None:
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, host, port)
    await site.start()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        await stop.wait()
    finally:
        await runner.cleanup()
