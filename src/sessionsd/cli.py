"""Command line: ``python -m sessionsd`` / ``sessionsd``.

Data goes to stdout, diagnostics to stderr.  Exit codes: 0 success, 1 failure,
2 usage error.  ``--json`` gives machine-readable output where it applies.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import sys
import tempfile
import time
from typing import Callable, Optional, Sequence

from . import __version__, _codec, datagen
from .errors import SessionsdError


def _version_line() -> str:
    try:
        import orjson

        json_impl = f"orjson {orjson.__version__}"
    except ImportError:
        json_impl = "stdlib json"
    return (
        f"sessionsd {__version__} ({_codec.BACKEND} codec, {json_impl}, "
        f"Python {sys.version.split()[0]})"
    )


def _emit(args: argparse.Namespace, payload: object, text: str) -> None:
    if args.json:
        print(json.dumps(payload, ensure_ascii=False))
    else:
        print(text)


def cmd_encode(args: argparse.Namespace) -> int:
    rows = [{"key": key, "name": _codec.encode_key(key)} for key in args.keys]
    _emit(args, rows, "\n".join(row["name"] for row in rows))
    return 0


def cmd_decode(args: argparse.Namespace) -> int:
    rows = [
        {"name": name, "kind": _codec.classify_name(name), "key": _codec.decode_name(name)}
        for name in args.names
    ]
    lines = []
    for row in rows:
        if row["kind"] == "inline":
            lines.append(row["key"])
        elif row["kind"] == "hashed":
            lines.append(f"<hashed: the key is inside {row['name']}>")
        else:
            lines.append(f"<not an entry file name: {row['name']}>")
    _emit(args, rows, "\n".join(lines))
    return 0 if all(row["kind"] for row in rows) else 1


def cmd_scan(args: argparse.Namespace) -> int:
    found = _codec.scan_entries(args.directory)
    rows = [{"name": name, "key": key} for name, key in sorted(found)]
    text = "\n".join(f"{row['name']}\t{row['key'] if row['key'] is not None else '<hashed>'}"
                     for row in rows)
    _emit(args, rows, text if rows else "(no entry files)")
    return 0


def _best_of(fn: Callable[[], object], repeat: int = 5) -> float:
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best


def cmd_demo(args: argparse.Namespace) -> int:
    count = args.sessions
    with tempfile.TemporaryDirectory(prefix="sessionsd-demo-") as scratch:
        root = args.dir or scratch
        entries = os.path.join(root, "sessions.d", "entries")
        os.makedirs(entries, exist_ok=True)
        print(_version_line())
        print(f"generating {count} realistic session keys and entry files in {entries}")
        keys = datagen.generate_keys(count, args.seed)
        for key in keys:
            document = {"sessionKey": key, "entry": {"sessionId": key[-12:], "updatedAt": 0}}
            with open(os.path.join(entries, _codec.encode_key(key)), "w") as fh:
                json.dump(document, fh)
        # Impostors the scan must ignore: a dotfile, a temp file, a padded name,
        # a symlink to a file outside the store, a subdirectory.
        outside = os.path.join(root, "outside.json")
        with open(outside, "w") as fh:
            fh.write("{}")
        impostors = [".hidden.json", _codec.encode_key("tmp") + ".1a2b.tmp", "session-YQ==.json"]
        for name in impostors:
            open(os.path.join(entries, name), "w").close()
        os.symlink(outside, os.path.join(entries, _codec.encode_key("agent:main:evil")))
        os.mkdir(os.path.join(entries, _codec.encode_key("a directory")))

        found = dict(_codec.scan_entries(entries))
        missing = [k for k in keys if found.get(_codec.encode_key(k), "") != k
                   and _codec.classify_name(_codec.encode_key(k)) == "inline"]
        extra = len(found) - len(keys)
        print(f"scan found {len(found)} entry files ({extra} impostors accepted, "
              f"{len(missing)} sessions missed); 5 impostors were planted")

        backends = [("python", importlib.import_module("sessionsd._codec_py"))]
        try:
            backends.insert(0, ("compiled", importlib.import_module("sessionsd._codec_c")))
        except ImportError:
            print("(compiled codec not built: showing the pure-Python twin only)")
        names = [_codec.encode_key(k) for k in keys]
        timings = {}
        for label, module in backends:
            timings[label] = (
                _best_of(lambda m=module: [m.encode_key(k) for k in keys]),
                _best_of(lambda m=module: m.decode_names(names)),
                _best_of(lambda m=module: m.scan_entries(entries)),
            )
        print()
        header = f"{'operation':<26}" + "".join(f"{label:>12}" for label, _ in backends)
        if len(backends) == 2:
            header += f"{'speed-up':>11}"
        print(header)
        for row, title in enumerate((f"encode {count} keys", f"decode {count} names",
                                      f"scan + decode {count}")):
            line = f"{title:<26}" + "".join(f"{timings[label][row] * 1e3:>9.2f} ms" for label, _ in backends)
            if len(backends) == 2:
                line += f"{timings['python'][row] / timings['compiled'][row]:>10.1f}×"
            print(line)
        return 0 if not missing and extra == 0 else 1


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="sessionsd", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="version", version=_version_line())
    parser.add_argument("--json", action="store_true", default=argparse.SUPPRESS,
                        help="machine-readable output")
    parser.set_defaults(json=False)
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    # --json is accepted after the subcommand too; SUPPRESS keeps a global
    # --json from being reset by the subcommand's default.
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--json", action="store_true", default=argparse.SUPPRESS,
                        help="machine-readable output")

    encode = commands.add_parser("encode", parents=[common], help="print the entry file name of each KEY")
    encode.add_argument("keys", nargs="+", metavar="KEY")
    encode.set_defaults(func=cmd_encode)

    decode = commands.add_parser("decode", parents=[common], help="print the key an entry file NAME encodes")
    decode.add_argument("names", nargs="+", metavar="NAME")
    decode.set_defaults(func=cmd_decode)

    scan = commands.add_parser("scan", parents=[common], help="list the entry files of an entries/ DIRECTORY")
    scan.add_argument("directory")
    scan.set_defaults(func=cmd_scan)

    demo = commands.add_parser("demo", parents=[common], help="generate keys and entry files, scan and time both codecs")
    demo.add_argument("--sessions", type=int, default=5000, help="how many sessions (default 5000)")
    demo.add_argument("--seed", type=int, default=0)
    demo.add_argument("--dir", help="write here instead of a temporary directory")
    demo.set_defaults(func=cmd_demo)
    return parser


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # --help, --version (0) and usage errors (2)
        return exc.code if isinstance(exc.code, int) else 2
    if not getattr(args, "func", None):
        parser.print_help(sys.stderr)
        return 2
    try:
        return args.func(args)
    except (SessionsdError, OSError) as exc:
        print(f"sessionsd: {exc}", file=sys.stderr)
        return 1
