"""``python -m ui.launch [streamlit options]``: ``streamlit run app.py`` in a process that has already
imported torch and the audit core, so the first visitor does not wait for those imports (3-7 s on
the 2-core dev machine, bench/RESULTS.md)."""

from __future__ import annotations

import sys
from pathlib import Path

APP = Path(__file__).resolve().parents[1] / "app.py"


def preload() -> None:
    """Import what every page needs (torch, the metrics, findings and report modules, models)."""
    import models  # noqa: F401
    import xai_core.attribution  # noqa: F401
    import xai_core.findings  # noqa: F401
    import xai_core.report  # noqa: F401


def main(argv: list[str]) -> None:
    preload()
    from streamlit.web.cli import main as streamlit_main

    sys.argv = ["streamlit", "run", str(APP), *argv]
    streamlit_main()


if __name__ == "__main__":
    main(sys.argv[1:])
