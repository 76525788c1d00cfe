"""The ``voxgate`` command."""

from __future__ import annotations

import argparse
import asyncio
import gc
import logging
import signal
import sys
from collections.abc import Sequence

from aiohttp import web

from voxgate.config import Settings, settings_table
from voxgate.errors import ConfigError
from voxgate.gateway.access.keys_cli import add_keys_command
from voxgate.gateway.app import create_gateway_app, drain
from voxgate.gateway.services import Services
from voxgate.gateway.webrtc.collector import MediaCollector
from voxgate.gateway.workers import WorkerInfo, run_workers
from voxgate.logs import configure_logging
from voxgate.upstream.engine.accounts import Accounts
from voxgate.upstream.engine.app import API_PREFIX, create_engine_app

log = logging.getLogger("voxgate")


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    configure_logging("text")
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

    serve = commands.add_parser(
        "serve",
        help="run the gateway (embedded engine and in-process store unless configured)",
        description="Serve the realtime WebSocket, the Voxtral-compatible REST API and the "
        "demo page. Every flag has an environment variable; see --help-config.",
    )
    serve.add_argument("--host", help="listen address (VOXGATE_HOST, default 127.0.0.1)")
    serve.add_argument("--port", type=int, help="port (VOXGATE_PORT, default 8080)")
    serve.add_argument("--redis-url", help="Redis for keys, credits, sessions (VOXGATE_REDIS_URL)")
    serve.add_argument(
        "--api-key",
        action="append",
        metavar="KEY[:CREDITS]",
        help="accept this key, in-process store (repeatable; VOXGATE_API_KEYS)",
    )
    serve.add_argument(
        "--workers",
        type=int,
        default=1,
        help="worker processes sharing the port (needs VOXGATE_REDIS_URL above 1)",
    )
    serve.add_argument(
        "--help-config",
        action="store_true",
        help="print every setting with its variable and default, then exit",
    )
    serve.set_defaults(run=_run_serve)
    add_keys_command(commands)
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


def _run_serve(args: argparse.Namespace) -> int:
    if args.help_config:
        print(settings_table())
        return 0
    settings = Settings.from_env(
        host=args.host,
        port=args.port,
        redis_url=args.redis_url,
        api_keys=tuple(args.api_key) if args.api_key else None,
    )
    configure_logging(settings.log_format)
    if args.workers < 1:
        raise ConfigError("--workers must be at least 1")
    if args.workers > 1:
        return run_workers(settings, args.workers, _serve_gateway)
    asyncio.run(_serve_gateway(settings))
    return 0


async def _serve_gateway(settings: Settings, worker: WorkerInfo | None = None) -> None:
    services = await Services.start(settings, worker=worker)
    runner = web.AppRunner(create_gateway_app(services), access_log=None)
    try:
        await runner.setup()
        # What start-up built lives as long as the process: keep the collector from walking
        # it every time, which would show up as stalls in the 20 ms media clock.
        gc.collect()
        gc.freeze()
        if settings.media_gc_freeze:
            MediaCollector.install()
        await web.TCPSite(
            runner, settings.host, settings.port, reuse_port=worker is not None
        ).start()
        if worker is not None:
            await web.TCPSite(runner, settings.host, worker.internal_port).start()
            if worker.index:
                await _until_signalled()
                await drain(services)
                return
        url = f"http://{'localhost' if settings.host in ('127.0.0.1', '::1') else settings.host}"
        print(
            f"voxgate serve: demo at {url}:{settings.port}/ , realtime WebSocket at "
            f"ws://{settings.host}:{settings.port}/v1/realtime",
            flush=True,
        )
        upstream = "embedded engine (espeak-ng)" if services.engine else settings.upstream.base_url
        store = "Redis" if settings.redis_url else "in-process"
        print(f"voxgate serve: upstream {upstream}; {store} store", flush=True)
        if services.dev_api_key:
            print(
                f"voxgate serve: no API key configured; this run accepts the dev key\n\n"
                f"    {services.dev_api_key}\n",
                flush=True,
            )
        await _until_signalled()
        log.info("shutting down")
        await drain(services)
    finally:
        await runner.cleanup()
        await services.aclose()


async def _until_signalled() -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()


async def _serve(app: web.Application, host: str, port: int) -> None:
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, host, port)
    await site.start()
    try:
        await _until_signalled()
    finally:
        await runner.cleanup()
