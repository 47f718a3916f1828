"""The `reconciler` command. `reconciler run` starts the service through
reconciler.service.start, without loading the CLI's framework (typer, click, rich: about 8 MB
the service would keep for nothing); every other verb, and `run --help`, is the CLI's."""

from __future__ import annotations

import sys


def main() -> None:
    argv = sys.argv[1:]
    if argv[:1] == ["run"] and not {"-h", "--help"} & set(argv[1:]):
        from reconciler.service import start

        sys.exit(start.main(argv[1:]))
    from reconciler.cli import main as cli_main

    cli_main()
