"""``python -m ui.launch [streamlit options]``: ``streamlit run`` of the packaged dashboard
(``ui/app.py``) in a process that has already imported torch and the audit core, so the first
visitor does not wait for those imports (3-7 s on the 2-core dev machine, bench/RESULTS.md).

The entry script and its pages (``ui/views/``) ship inside the ``ui`` package, so this works the
same from a checkout, a wheel or the Docker image. The pages folder is deliberately not called
``pages/``: Streamlit would build its own navigation from such a folder for a deep link that reaches
a fresh server before ``app.py`` ran once.
"""

from __future__ import annotations

import sys
from pathlib import Path

from streamlit.web.cli import main as streamlit_main

APP = Path(__file__).resolve().parent / "app.py"

# Streamlit settings of the product (flags, so they hold wherever the package is installed;
# a ``.streamlit/config.toml`` is only read from the working directory). Options given on the
# command line after these win.
SETTINGS = {
    "server.headless": "true",
    "server.runOnSave": "false",
    "server.fileWatcherType": "none",
    "browser.gatherUsageStats": "false",
    "client.toolbarMode": "minimal",  # no Deploy button or developer menu for radiologists
    "theme.base": "light",
}


def preload() -> None:
    """Import what every page needs (torch, the metrics, findings and report modules, models)."""
    # imported here, before serving: their 3-7 s land on start-up, not on the first page a user opens
    import models  # noqa: F401
    import xai_core.attribution  # noqa: F401
    import xai_core.findings  # noqa: F401
    import xai_core.report  # noqa: F401


def streamlit_argv(argv: list[str]) -> list[str]:
    """``streamlit run APP`` with the product settings, then the caller's options."""
    flags = [f"--{key}={value}" for key, value in SETTINGS.items()]
    return ["streamlit", "run", str(APP), *flags, *argv]


def main(argv: list[str]) -> None:
    preload()
    sys.argv = streamlit_argv(argv)
    streamlit_main()


if __name__ == "__main__":
    main(sys.argv[1:])
