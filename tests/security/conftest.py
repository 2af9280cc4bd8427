"""Fixtures of the security tests: the API tests' connection tracker."""

from tests.api.conftest import net

__all__ = ["net"]
