"""Fixtures for the hostile-input scenarios: the acceptance deployment, reused.

``authnode_env`` (a fresh, migrated deployment per test, parametrized over both Redis
modes) and ``authnode`` (``serve --role all`` on it) come from the acceptance suite. A
module that needs only one Redis mode narrows ``redis_target`` with
``pytestmark = pytest.mark.parametrize("redis_target", ["single"], indirect=True)``.
"""

from __future__ import annotations

from tests.acceptance.conftest import authnode, authnode_env

__all__ = ["authnode", "authnode_env"]
