"""The two locks `make lock` exports from uv.lock, and what each may hold.

requirements.lock is the runtime: what `make setup`, the image (airflow/Dockerfile) and the
ansible hosts install. requirements-dev.lock is the runtime plus the dev group (tests, lint,
ansible, bench and dashboard tools), for developers and CI. Both are hash-checked and resolve
for Linux x86_64 and aarch64 (CPython 3.11).

What is "dev only" is derived, not guessed: uv.lock's dependency graph says which packages the
pyproject `dependencies` need (flask, for the FAB provider, is one) and which only the dev group
brings in (moto[server]'s flask-cors, cfn-lint, sympy...). A short list of tool families
(pytest*, ruff, ansible*...) is refused in the runtime lock even if a runtime dependency named it.
Each check is also run once on a planted copy, to prove it can fail.
"""

from __future__ import annotations

import re
import tomllib
import urllib.parse
from dataclasses import dataclass
from functools import cache

import pytest
from packaging.markers import Marker, default_environment
from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet
from packaging.utils import canonicalize_name, parse_wheel_filename

from stackctl.model import settings

RUNTIME_LOCK = settings.REPO / "requirements.lock"
DEV_LOCK = settings.REPO / "requirements-dev.lock"
UV_LOCK = settings.REPO / "uv.lock"
PYPROJECT = settings.REPO / "pyproject.toml"

ARCHES = ("x86_64", "aarch64")
# Debian 12 (bookworm): the native hosts and the image's base. A manylinux wheel needing a newer
# glibc would not install there.
GLIBC = (2, 36)
LEGACY_MANYLINUX = {"manylinux1": (2, 5), "manylinux2010": (2, 12), "manylinux2014": (2, 17)}

# Test, lint and dev tools: never in the runtime lock, whoever asks for them.
TOOL_FAMILIES = re.compile(
    r"pytest(-.+)?|ruff|moto|ansible(-.+)?|mypy|coverage|black|flake8(-.+)?|pylint|isort|pre-commit|tox|nox"
    r"|hypothesis|cfn-lint|yamllint|bandit|pyright|grafana-foundation-sdk"
)


@dataclass(frozen=True)
class Pin:
    name: str
    version: str
    marker: str
    hashes: frozenset[str]


def parse_lock(text: str) -> dict[str, Pin]:
    """`name==version ; marker \\` then `--hash=sha256:...` lines, as `uv export` writes them."""
    pins: dict[str, Pin] = {}
    logical = re.sub(r"\\\n", " ", text)
    for line in logical.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        hashes = frozenset(re.findall(r"--hash=(sha256:[0-9a-f]{64})", line))
        requirement = re.sub(r"\s*--hash=\S+", "", line).strip()
        spec, _, marker = requirement.partition(";")
        match = re.fullmatch(r"([A-Za-z0-9][A-Za-z0-9._-]*)(\[[^\]]*\])?==(\S+)", spec.strip())
        assert match, f"not a pinned requirement: {line[:120]}"
        name = canonicalize_name(match.group(1))
        assert name not in pins, f"{name} pinned twice"
        pins[name] = Pin(name, match.group(3), marker.strip(), hashes)
    return pins


@cache
def runtime_lock() -> dict[str, Pin]:
    return parse_lock(RUNTIME_LOCK.read_text())


@cache
def dev_lock() -> dict[str, Pin]:
    return parse_lock(DEV_LOCK.read_text())


@cache
def uv_lock() -> dict:
    return tomllib.loads(UV_LOCK.read_text())


@cache
def pyproject() -> dict:
    return tomllib.loads(PYPROJECT.read_text())


@cache
def uv_packages() -> dict[str, dict]:
    packages = {}
    for package in uv_lock()["package"]:
        name = canonicalize_name(package["name"])
        assert name not in packages, f"uv.lock holds {name} twice; these checks assume one version per name"
        packages[name] = package
    return packages


def project() -> dict:
    return uv_packages()[canonicalize_name(pyproject()["project"]["name"])]


def closure(roots: list[dict]) -> set[str]:
    """Every package that the uv.lock dependency entries `roots` need, extras followed."""
    packages = uv_packages()
    seen: set[tuple[str, str | None]] = set()
    todo = [(canonicalize_name(d["name"]), extra) for d in roots for extra in [None, *d.get("extra", [])]]
    while todo:
        name, extra = todo.pop()
        if (name, extra) in seen:
            continue
        seen.add((name, extra))
        package = packages[name]
        deps = package.get("dependencies", []) if extra is None else package["optional-dependencies"][extra]
        todo += [(canonicalize_name(d["name"]), e) for d in deps for e in [None, *d.get("extra", [])]]
    return {name for name, _ in seen}


def runtime_closure() -> set[str]:
    return closure(project().get("dependencies", []))


def dev_closure() -> set[str]:
    return runtime_closure() | closure([d for group in project().get("dev-dependencies", {}).values() for d in group])


def dev_group_names() -> set[str]:
    return {canonicalize_name(Requirement(r).name) for r in pyproject()["dependency-groups"]["dev"]}


def uv_files(name: str, version: str) -> dict[str, str]:
    """hash -> file name of every file uv.lock records for name==version."""
    package = uv_packages().get(name)
    if package is None or package["version"] != version:
        return {}
    files = [package["sdist"]] if "sdist" in package else []
    files += package.get("wheels", [])
    return {f["hash"]: urllib.parse.unquote(f["url"].rsplit("/", 1)[-1]) for f in files}


# --- the checks: each returns what is wrong, [] when nothing is ------------------------------


def runtime_findings(runtime: dict[str, Pin]) -> list[str]:
    """The runtime lock holds what the pyproject dependencies need, and no dev-only or tool package."""
    needed = runtime_closure()
    dev_only = (dev_closure() - needed) | (dev_group_names() - needed)
    findings = []
    for name in sorted(runtime):
        if TOOL_FAMILIES.fullmatch(name):
            findings.append(f"{name}: a test, lint or dev tool")
        elif name in dev_only:
            findings.append(f"{name}: only the dev group needs it")
        elif name not in needed:
            findings.append(f"{name}: no runtime dependency needs it")
    findings += [f"{name}: a runtime dependency needs it, the lock misses it" for name in sorted(needed - set(runtime))]
    return findings


def agreement_findings(runtime: dict[str, Pin], dev: dict[str, Pin]) -> list[str]:
    """The dev lock is the runtime lock plus the dev group: every runtime pin, same version and hashes."""
    findings = []
    for name, pin in sorted(runtime.items()):
        other = dev.get(name)
        if other is None:
            findings.append(f"{name}: in the runtime lock, missing from the dev lock")
        elif other.version != pin.version:
            findings.append(f"{name}: {pin.version} in the runtime lock, {other.version} in the dev lock")
        elif other.hashes != pin.hashes:
            findings.append(f"{name}: other hashes in the dev lock")
    findings += [f"{name}: in the dev lock, not needed by runtime or dev" for name in sorted(set(dev) - dev_closure())]
    findings += [f"{name}: needed, missing from the dev lock" for name in sorted(dev_closure() - set(dev))]
    return findings


def hash_findings(lock: dict[str, Pin]) -> list[str]:
    """Every pin carries the sha256 of every file uv.lock records for it, and nothing else."""
    findings = []
    for name, pin in sorted(lock.items()):
        expected = set(uv_files(name, pin.version))
        if not pin.hashes:
            findings.append(f"{name}=={pin.version}: no hash")
        elif not expected:
            findings.append(f"{name}=={pin.version}: not in uv.lock (stale export? run `make lock`)")
        elif pin.hashes != expected:
            findings.append(f"{name}=={pin.version}: hashes differ from uv.lock's files (run `make lock`)")
    return findings


def environment(arch: str, python: str) -> dict[str, str]:
    return {**default_environment(), "sys_platform": "linux", "platform_system": "Linux", "os_name": "posix",
            "platform_machine": arch, "implementation_name": "cpython", "platform_python_implementation": "CPython",
            "python_version": "3.11", "python_full_version": python}


def applies_on(pin: Pin, arch: str) -> bool:
    # Early and late 3.11 patch releases: some pins (async-timeout) apply to early ones only.
    return not pin.marker or any(Marker(pin.marker).evaluate(environment(arch, py)) for py in ("3.11.0", "3.11.99"))


def wheel_installs_on(filename: str, arch: str) -> bool:
    """A CPython 3.11 wheel for `arch` on glibc <= GLIBC, or a pure-Python one."""
    for tag in parse_wheel_filename(filename)[3]:
        abi3 = re.fullmatch(r"cp3(\d+)", tag.interpreter) and tag.abi == "abi3" and int(tag.interpreter[3:]) <= 11
        if not (abi3 or (tag.interpreter == "cp311" and tag.abi in ("cp311", "none"))
                or (tag.interpreter in ("py3", "py311") and tag.abi == "none")):
            continue
        if tag.platform == "any":
            return True
        if not tag.platform.endswith(f"_{arch}") or tag.platform.startswith("musllinux"):
            continue
        prefix = tag.platform.removesuffix(f"_{arch}")
        glibc = LEGACY_MANYLINUX.get(prefix)
        if glibc is None and (m := re.fullmatch(r"manylinux_(\d+)_(\d+)", prefix)):
            glibc = (int(m.group(1)), int(m.group(2)))
        if glibc is not None and glibc <= GLIBC:
            return True
    return False


def platform_findings(lock: dict[str, Pin]) -> list[str]:
    """Every pin applies on both machines and carries the hash of a wheel that installs there."""
    findings = []
    for name, pin in sorted(lock.items()):
        files = uv_files(name, pin.version)
        wheels = [files[h] for h in pin.hashes if h in files and files[h].endswith(".whl")]
        for arch in ARCHES:
            if not applies_on(pin, arch):
                findings.append(f"{name}=={pin.version}: does not apply on linux {arch} ({pin.marker})")
            elif not any(wheel_installs_on(w, arch) for w in wheels):
                findings.append(f"{name}=={pin.version}: no wheel for linux {arch}, CPython 3.11, glibc <= 2.36")
    return findings


# --- the tests ---------------------------------------------------------------------------------


def test_uv_lock_is_for_linux_x86_64_and_aarch64_and_matches_pyproject():
    supported = [Marker(m) for m in uv_lock()["supported-markers"]]
    for arch in ARCHES:
        assert any(m.evaluate(environment(arch, "3.11.9")) for m in supported), f"uv.lock does not resolve for {arch}"
    assert not any(m.evaluate({**environment("x86_64", "3.11.9"), "sys_platform": "darwin"}) for m in supported)

    # uv.lock records what pyproject asked for when it was resolved; it must be what it asks now.
    def locked(entries):
        return {(canonicalize_name(e["name"]), frozenset(e.get("extras", [])), SpecifierSet(e.get("specifier", "")))
                for e in entries}

    def declared(strings):
        return {(canonicalize_name(r.name), frozenset(r.extras), r.specifier) for r in map(Requirement, strings)}

    metadata = project()["metadata"]
    stale = "uv.lock is stale: run `make lock`"
    assert locked(metadata["requires-dist"]) == declared(pyproject()["project"]["dependencies"]), stale
    assert locked(metadata["requires-dev"]["dev"]) == declared(pyproject()["dependency-groups"]["dev"]), stale


def test_runtime_lock_holds_no_test_lint_or_dev_tool():
    assert runtime_findings(runtime_lock()) == []
    # The derivation is not empty-handed: the dev group does bring in packages of its own.
    assert dev_group_names() <= dev_closure() - runtime_closure()
    assert {"flask-cors", "cfn-lint", "sympy"} <= dev_closure() - runtime_closure()


def test_dev_lock_is_the_runtime_lock_plus_the_dev_group():
    assert agreement_findings(runtime_lock(), dev_lock()) == []


@pytest.mark.parametrize("lock", [RUNTIME_LOCK, DEV_LOCK], ids=lambda p: p.name)
def test_every_pin_is_hash_checked_against_uv_lock(lock):
    assert hash_findings(parse_lock(lock.read_text())) == []


@pytest.mark.parametrize("lock", [RUNTIME_LOCK, DEV_LOCK], ids=lambda p: p.name)
def test_every_pin_installs_from_a_wheel_on_x86_64_and_aarch64(lock):
    assert platform_findings(parse_lock(lock.read_text())) == []


# --- each check fails on a planted copy ---------------------------------------------------------


def planted(lock: dict[str, Pin], **changes: Pin | None) -> dict[str, Pin]:
    copy = dict(lock)
    for name, pin in changes.items():
        name = canonicalize_name(name)
        if pin is None:
            copy.pop(name)
        else:
            copy[name] = pin
    return copy


@pytest.mark.parametrize("tool", ["pytest", "ruff", "moto", "ansible-core", "pandas", "flask-cors", "sympy"])
def test_a_dev_package_planted_in_the_runtime_lock_is_found(tool):
    findings = runtime_findings(planted(runtime_lock(), **{tool: dev_lock()[tool]}))
    assert [f.split(":")[0] for f in findings] == [tool], findings


def test_a_tool_that_a_runtime_dependency_named_is_still_refused():
    # As if a runtime dependency pulled in pytest: the closure would allow it, the family does not.
    findings = runtime_findings(planted(runtime_lock(), **{"pytest": dev_lock()["pytest"]}))
    assert "pytest: a test, lint or dev tool" in findings


def test_a_version_skew_between_the_locks_is_found():
    numpy = runtime_lock()["numpy"]
    skewed = planted(dev_lock(), numpy=Pin("numpy", "0.0.1", numpy.marker, numpy.hashes))
    expected = f"numpy: {numpy.version} in the runtime lock, 0.0.1 in the dev lock"
    assert agreement_findings(runtime_lock(), skewed) == [expected]


def test_a_pin_without_hashes_or_an_x86_only_pin_is_found():
    faiss = runtime_lock()["faiss-cpu"]
    files = uv_files("faiss-cpu", faiss.version)
    x86_only = frozenset(h for h in faiss.hashes if "aarch64" not in files[h])
    lock = planted(runtime_lock(), **{"faiss-cpu": Pin(faiss.name, faiss.version, faiss.marker, x86_only)})
    expected = f"faiss-cpu=={faiss.version}: no wheel for linux aarch64, CPython 3.11, glibc <= 2.36"
    assert platform_findings(lock) == [expected]
    unhashed = planted(runtime_lock(), **{"faiss-cpu": Pin(faiss.name, faiss.version, faiss.marker, frozenset())})
    assert hash_findings(unhashed) == [f"faiss-cpu=={faiss.version}: no hash"]
