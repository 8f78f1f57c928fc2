"""``noisetrace serve``: run the REST API and the web page with uvicorn."""

from __future__ import annotations

import argparse


def add_arguments(p: argparse.ArgumentParser) -> None:
    """The arguments of ``noisetrace serve`` (registered in ``noisetrace.cli.COMMANDS``)."""
    p.description = (
        "Serve a web page at / and a REST API (/v1/scan, /v1/explain, /v1/models, /healthz; "
        "OpenAPI at /openapi.json). Listens on 127.0.0.1 unless --host says otherwise; put a "
        "TLS proxy in front before exposing it."
    )
    p.epilog = """examples:
  noisetrace serve                       # http://127.0.0.1:8000/ with the bundled model
  noisetrace serve --model runs/mine/best --port 8080 --max-upload-mb 50
  noisetrace serve --offer mine=runs/mine/best    # clients may also choose "mine"

Clients choose among the offered models by name (field or query parameter `model`; GET
/v1/models lists them): --model, every bundled model, MODEL+faces (with the bundled face
model) and each --offer. Never a path: a client cannot make the server open a directory."""
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    p.add_argument("--port", type=int, default=8000, help="TCP port (default 8000)")
    p.add_argument("--model", default="default",
                   help="bundled model name or model directory: used when a request names none")
    p.add_argument("--offer", action="append", default=[], metavar="NAME=DIR",
                   help="also offer the model directory DIR to clients as NAME (repeatable; "
                        "default: the bundled models and --model+faces only)")
    p.add_argument("--only-model", action="store_true",
                   help="offer clients only --model and --offer, not the bundled models (each "
                   "model a client chooses stays loaded: this bounds memory)")
    p.add_argument("--max-upload-mb", type=float, default=200,
                   help="largest upload in MB (413 above)")
    p.add_argument("--workers", type=int, default=2, help="files scored at once")
    p.add_argument("--queue", type=int, default=8, help="requests that may wait (503 beyond)")
    p.add_argument("--timeout", type=float, default=120, help="seconds per request (504 after)")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:1 ...")
    p.add_argument("--log-level", default="info", help="uvicorn log level")
    p.add_argument("--allowed-host", action="append", default=[], metavar="NAME",
                   help="a host name clients may use to reach the server (repeatable; '*' "
                   "for any). Default: the --host address, 127.0.0.1 and localhost; other "
                   "Host headers get 400 (DNS rebinding)")  # fmt: skip
    p.set_defaults(func=_serve, needs=needs)


def needs(args: argparse.Namespace) -> dict[str, str]:
    """Optional modules the service needs (checked before the model is loaded)."""
    return {m: "noisetrace[serve]" for m in ("fastapi", "uvicorn")}


def _serve(args: argparse.Namespace) -> int:
    import os

    from rich.console import Console
    from rich.markup import escape

    err = Console(stderr=True, soft_wrap=True)
    for name, value, low in (
        ("--workers", args.workers, 1), ("--queue", args.queue, 0), ("--port", args.port, 0),
    ):  # fmt: skip
        if value < low:
            err.print(f"[red]{name} must be at least {low}[/red]")
            return 2
    if args.max_upload_mb <= 0 or args.timeout <= 0:
        err.print("[red]--max-upload-mb and --timeout must be positive[/red]")
        return 2
    try:
        import uvicorn

        from noisetrace.serve.app import create_app
    except ImportError as exc:
        # escape: rich would read [serve] as markup and print "pip install 'noisetrace'"
        err.print(
            f"[red]the web service needs the serve extra ({exc.name} is missing):[/red] "
            + escape("pip install 'noisetrace[serve]'")
        )
        return 2
    offer: dict[str, str] = {}
    for item in args.offer:
        name, sep, path = item.partition("=")
        if not sep or not name or not path:
            err.print(f"[red]--offer {escape(item)}: write NAME=DIR, e.g. --offer "
                      "mine=runs/mine/best[/red]")  # fmt: skip
            return 2
        offer[name] = path
    import torch

    # Workers share the cores: without this each would start one thread per core.
    torch.set_num_threads(max(1, (os.cpu_count() or 1) // args.workers))
    app = create_app(
        args.model, max_upload_mb=args.max_upload_mb, workers=args.workers,
        timeout_s=args.timeout, queue=args.queue, device=args.device,
        allowed_hosts=allowed_hosts(args.host, args.allowed_host),
        bundled=not args.only_model, offer=offer,
    )  # fmt: skip
    if args.host not in ("127.0.0.1", "localhost", "::1"):
        err.print(
            f"[yellow]listening on {args.host}: anyone who can reach it can upload files; "
            "put it behind TLS and authentication[/yellow]"
        )
    err.print(f"noisetrace serve: http://{args.host}:{args.port}/ (Ctrl+C to stop)")
    uvicorn.run(app, host=args.host, port=args.port, log_level=args.log_level)
    return 0


def allowed_hosts(host: str, extra: list[str]) -> list[str]:
    """Host header names the server answers to: the address it listens on and ``extra``.
    Bound to every address (0.0.0.0, ::) the server cannot know its names, so any is
    accepted unless ``--allowed-host`` lists them."""
    if host in ("0.0.0.0", "::", "") and not extra:
        return ["*"]
    return [host, *extra]
