"""``make audit``: pip-audit over requirements.lock, with what this network allows.

pip-audit's PyPI service asks ``/pypi/NAME/VERSION/json``; the index reachable from the
project's machines serves only ``/pypi/NAME/json`` (and api.osv.dev does not resolve).
That document's ``vulnerabilities`` are PyPI's live advisories (PYSEC/OSV with their GHSA
aliases) for the project's *latest* release. So a pin equal to the latest release is
audited by pip-audit's own parser, and any other pin is reported as not audited: this
run cannot say whether an older release has advisories.

Exit status: 1 when a known vulnerability is found (pip-audit's report says which), and
with ``--strict`` also when a pin could not be audited; 0 otherwise. Other arguments go
to pip-audit. Relies on pip-audit's internal PyPIService (checked with 2.10).
"""

from __future__ import annotations

import sys
from typing import Any

from packaging.version import Version
from pip_audit._cli import audit
from pip_audit._service import pypi
from pip_audit._service.interface import SkippedDependency

__all__ = ["main"]

_NOT_AUDITED: list[str] = []
_original_query = pypi.PyPIService.query


class _Answered:
    """A session that hands pip-audit's parser the project document already fetched."""

    def __init__(self, response: Any) -> None:
        self.response = response

    def get(self, url: str, timeout: float | None = None) -> Any:
        return self.response


def _query(self: pypi.PyPIService, spec: Any) -> Any:
    if spec.is_skipped():
        return spec, []
    url = f"https://pypi.org/pypi/{spec.canonical_name}/json"
    response = self.session.get(url=url, timeout=self.timeout)
    if response.status_code == 200:
        latest = response.json()["info"]["version"]
        if Version(latest) == spec.version:
            answered = pypi.PyPIService.__new__(pypi.PyPIService)
            answered.session, answered.timeout = _Answered(response), self.timeout
            return _original_query(answered, spec)
        reason = f"pinned {spec.version}; advisories reach here only for the latest ({latest})"
    else:
        reason = f"{url} answered HTTP {response.status_code}"
    _NOT_AUDITED.append(f"{spec.canonical_name}: {reason}")
    return SkippedDependency(name=spec.name, skip_reason=f"not audited: {reason}"), []


def main() -> None:
    strict = "--strict" in sys.argv
    arguments = [a for a in sys.argv[1:] if a != "--strict"]
    pypi.PyPIService.query = _query
    sys.argv = ["pip-audit", "--vulnerability-service", "pypi", *arguments]
    try:
        audit()
        code = 0
    except SystemExit as exit_:
        code = exit_.code if isinstance(exit_.code, int) else (0 if exit_.code is None else 1)
    if _NOT_AUDITED:
        print(
            f"{len(_NOT_AUDITED)} pinned package(s) not audited"
            f"{' (--strict: failing)' if strict else ''}:",
            file=sys.stderr,
        )
        for line in _NOT_AUDITED:
            print(f"  {line}", file=sys.stderr)
        if strict:
            code = code or 1
    sys.exit(code)


if __name__ == "__main__":
    main()
