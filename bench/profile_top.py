#!/usr/bin/env python3
"""Summarise py-spy raw (collapsed) profiles: `python bench/profile_top.py DIR/web-*.txt [--match TEXT]`.

Prints the frames holding the most samples, inclusive (each frame counted once per
stack), as a share of all samples of the files given.
"""

from __future__ import annotations

import argparse
import collections
import re
import sys


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("files", nargs="+")
    parser.add_argument("--match", default="", help="only frames whose text contains this")
    parser.add_argument("--top", type=int, default=40)
    options = parser.parse_args(argv)
    inclusive: collections.Counter = collections.Counter()
    total = 0
    for name in options.files:
        for line in open(name, errors="replace"):
            stack, _, count = line.rstrip("\n").rpartition(" ")
            if not count.isdigit():
                continue
            count = int(count)
            total += count
            seen = set()
            for frame in stack.split(";"):
                frame = re.sub(r":\d+\)$", ")", frame)  # merge lines of one function
                if frame in seen or (options.match and options.match not in frame):
                    continue
                seen.add(frame)
                inclusive[frame] += count
    print(f"{total} samples")
    for frame, count in inclusive.most_common(options.top):
        print(f"{100 * count / max(total, 1):5.1f}%  {frame[:160]}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
