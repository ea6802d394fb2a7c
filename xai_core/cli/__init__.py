"""``xaudit`` command line. Each command group lives in its own module of this package."""

from xai_core.cli.base import app, main, run

# Importing a module registers its commands on ``app``.
from xai_core.cli import data  # noqa: F401,E402
from xai_core.cli import attribution  # noqa: F401,E402
from xai_core.cli import metrics  # noqa: F401,E402
from xai_core.cli import training  # noqa: F401,E402
from xai_core.cli import demo  # noqa: F401,E402
from xai_core.cli import review  # noqa: F401,E402
from xai_core.cli import sanity  # noqa: F401,E402
from xai_core.cli import sweep  # noqa: F401,E402

__all__ = ["app", "main", "run"]
