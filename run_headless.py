#!/usr/bin/env python3
"""Headless entry point kept for the seed's muscle memory: ``run_headless.py [run options]``."""

import sys

from tradebot.cli import main

if __name__ == "__main__":
    raise SystemExit(main(["run", *sys.argv[1:]]))
