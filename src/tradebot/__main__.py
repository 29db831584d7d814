"""Allow ``python -m tradebot``."""

from tradebot.cli import main

raise SystemExit(main())
