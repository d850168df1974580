"""python -m batchlab status [--watch [SECONDS]] [DIR] | peek [DIR]: follow a study while it
runs (see batchlab.follow.status and batchlab.follow.peek). Run with workflow/scripts on PYTHONPATH
(`make status`, `make peek`)."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from batchlab import BatchlabError


def show_status(root: Path, watch: float | None) -> None:
    from batchlab.follow.status import render, study_status

    tty = sys.stdout.isatty()
    while True:
        status = study_status(root)
        lines = render(status)
        if watch and tty:
            print("\x1b[H\x1b[2J", end="")
        print("\n".join(lines), flush=True)
        if not watch or status["settled"]:  # complete, or nothing left that runs or waits
            return
        if not tty:
            print(flush=True)
        time.sleep(watch)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m batchlab", description="Follow a batchlab study.")
    sub = parser.add_subparsers(dest="command", required=True)
    status = sub.add_parser("status", help="what is done, running and waiting, and when it ends")
    status.add_argument("root", nargs="?", default=".", help="the project folder (default: here)")
    status.add_argument("--watch", nargs="?", type=float, const=5.0, default=None, metavar="SECONDS",
                        help="redraw every SECONDS (default 5) until the study is complete")  # fmt: skip
    peek = sub.add_parser("peek", help="a partial report of the cells finished so far")
    peek.add_argument("root", nargs="?", default=".", help="the project folder (default: here)")
    args = parser.parse_args(argv)
    try:
        if args.command == "status":
            show_status(Path(args.root), args.watch)
        else:
            from batchlab.follow.peek import peek as write_partial

            path, line = write_partial(Path(args.root))
            print(f"{line} Wrote {path}")
    except BatchlabError as exc:
        print(f"batchlab: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
