"""Blinded radiologist reading studies: accounts and logins, the audit log, studies and their
per-reviewer queues, ratings, and the results.

Plain Python over the database (no Streamlit): the dashboard pages and the CLI call these
functions. Every function that reads or changes something a role restricts takes the acting
:class:`~xai_core.review.accounts.Actor` and refuses (and logs) what that role may not do.
"""
