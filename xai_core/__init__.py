"""xaudit's domain core: data, attribution, metrics and the jobs that connect them.

Never imports streamlit; the CLI, the dashboard and the demo all call into it.
"""

from xai_core.errors import XAuditError

__all__ = ["XAuditError"]
