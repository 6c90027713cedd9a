"""``make audit`` (fraudtools/audit.py, README "Development"; CI runs it and fails on it).

The audit asks PyPI's JSON API over the network (``https://pypi.org/pypi/NAME/json``: the
advisories of a project's latest release). These tests run it offline, the way ``make
audit`` runs it (``python -m fraudtools.audit -r LOCK --no-deps --disable-pip``), in a
fresh interpreter in which only pip-audit's HTTP session is replaced by one that answers
from a few recorded documents — the PyPI advisory PYSEC-2018-28 (CVE-2018-18074) of
requests 2.19.1 among them — and every real connection would fail (a dead proxy).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]

#: PyPI's advisory for requests 2.19.1, as its JSON API lists it under "vulnerabilities".
PYSEC_2018_28 = {
    "aliases": ["CVE-2018-18074", "GHSA-x84v-xcm2-53pg"],
    "details": "The Requests package before 2.20.0 for Python sends an HTTP Authorization "
    "header to an http URI upon receiving a same-hostname https-to-http redirect, which "
    "makes it easier for remote attackers to discover credentials by sniffing the network.",
    "fixed_in": ["2.20.0"],
    "id": "PYSEC-2018-28",
    "link": "https://osv.dev/vulnerability/PYSEC-2018-28",
    "source": "osv",
    "summary": None,
    "withdrawn": None,
}

#: The index as these tests have it: project -> (latest release, its advisories).
INDEX = {
    "requests": ("2.19.1", [PYSEC_2018_28]),  # the vulnerable release taken as the latest
    "six": ("1.16.0", []),
    "idna": ("3.7", [{**PYSEC_2018_28, "id": "PYSEC-0000-1", "withdrawn": "2020-01-01"}]),
}

#: Run in the fresh interpreter: pip-audit's session replaced, then make audit's entry point.
_WRAPPER = '''
import json, sys
from pip_audit._service import pypi

INDEX = json.loads(sys.argv[1])
ASKED = []


class Response:
    def __init__(self, status, document):
        self.status_code, self._document = status, document

    def json(self):
        return self._document

    def raise_for_status(self):
        if self.status_code >= 400:
            import requests
            raise requests.HTTPError(f"{self.status_code}", response=self)


class Session:
    def get(self, url, timeout=None):
        ASKED.append(url)
        name = url.split("/pypi/", 1)[1].split("/", 1)[0]
        if name not in INDEX:
            return Response(404, {"message": "Not Found"})
        latest, vulnerabilities = INDEX[name]
        return Response(200, {"info": {"name": name, "version": latest},
                              "vulnerabilities": vulnerabilities})


pypi.caching_session = lambda *args, **kwargs: Session()
sys.argv = ["fraudtools.audit", *sys.argv[2:]]
import atexit
atexit.register(lambda: print("asked:", *ASKED, file=sys.stderr))
from fraudtools.audit import main
main()
'''


def _audit(tmp_path: Path, lock: str, *flags: str) -> subprocess.CompletedProcess[str]:
    (tmp_path / "requirements.lock").write_text(lock)
    (tmp_path / "audit_offline.py").write_text(_WRAPPER)
    env = {**os.environ, "HTTPS_PROXY": "http://127.0.0.1:9", "HTTP_PROXY": "http://127.0.0.1:9",
           "NO_PROXY": "", "PYTHONPATH": str(ROOT)}  # this checkout's fraudtools
    index: dict[str, Any] = INDEX
    return subprocess.run(
        [sys.executable, str(tmp_path / "audit_offline.py"), json.dumps(index), *flags,
         "-r", str(tmp_path / "requirements.lock"), "--no-deps", "--disable-pip",
         "--progress-spinner", "off", "--cache-dir", str(tmp_path / "cache")],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=120,
    )


def test_a_known_vulnerability_in_a_pin_fails_the_audit(tmp_path: Path) -> None:
    done = _audit(tmp_path, "requests==2.19.1\nsix==1.16.0\n")
    assert done.returncode == 1, done.stdout + done.stderr
    report = done.stdout + done.stderr
    assert "PYSEC-2018-28" in report and "requests" in report and "2.20.0" in report
    assert "Found 1 known vulnerability in 1 package" in report
    asked = done.stderr.rsplit("asked:", 1)[1].split()
    assert sorted(asked) == ["https://pypi.org/pypi/requests/json",  # once each
                             "https://pypi.org/pypi/six/json"]


def test_pins_without_advisories_pass(tmp_path: Path) -> None:
    done = _audit(tmp_path, "six==1.16.0\nidna==3.7\n")  # idna's advisory is withdrawn
    assert done.returncode == 0, done.stdout + done.stderr
    assert "No known vulnerabilities found" in done.stdout + done.stderr


def test_a_pin_behind_the_latest_release_is_not_audited_and_fails_only_with_strict(
    tmp_path: Path,
) -> None:
    lock = "requests==2.19.0\nsix==1.16.0\nnot-on-the-index==1.0\n"
    done = _audit(tmp_path, lock)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "2 pinned package(s) not audited:" in done.stderr
    assert ("requests: pinned 2.19.0; advisories reach here only for the latest (2.19.1)"
            in done.stderr)
    assert "not-on-the-index: https://pypi.org/pypi/not-on-the-index/json answered HTTP 404" in (
        done.stderr)
    strict = _audit(tmp_path, lock, "--strict")
    assert strict.returncode == 1, strict.stdout + strict.stderr
    assert "2 pinned package(s) not audited (--strict: failing):" in strict.stderr
