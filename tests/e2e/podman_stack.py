"""Podman, a local base image and a wheelhouse, set up the way this machine needs them.

Facts that shape it: there is no Docker daemon and no image registry is reachable, so the base
image is made here (``mmdebstrap`` a minimal Debian bookworm root filesystem with ``python3``,
``podman import`` it); pip inside a container cannot verify this machine's registry
certificate, so dependency wheels are fetched on the host, for the *base's* Python, and the image
installs them ``--no-index``; crun fails on this kernel's cgroup layout, so podman runs with
``runc``, ``cgroupfs`` and no default ulimits (a containers.conf), on ``vfs`` storage.

Everything slow is cached under ``cache_dir()`` (``$RTSERVE_TEST_CACHE``, else
``~/.cache/rtserve-tests``) and survives between runs: the rootfs tar (keyed by the mmdebstrap
inputs, no date), podman's storage holding the imported base, and the wheelhouse (keyed by the
exported requirements and the base's Python). Delete the directory to start cold.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import platform
import shutil
import subprocess
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from packaging.requirements import Requirement

CACHE_ENV = "RTSERVE_TEST_CACHE"
BASE_IMAGE = "localhost/rtserve-test-base:bookworm"
#: The label on the imported base that says which inputs made it.
BASE_KEY_LABEL = "io.rtserve.test.base-key"
#: What mmdebstrap is asked for; the cache key (no date: a cached base is reused until deleted).
DEBOOTSTRAP = {
    "suite": "bookworm",
    "variant": "apt",
    "include": ["python3", "python3-venv", "ca-certificates"],
    "architecture": platform.machine(),
}
CONTAINERS_CONF = """\
# rtserve's container tests: crun fails on this kernel's cgroup layout; runc with cgroupfs works.
[engine]
cgroup_manager = "cgroupfs"
runtime = "runc"
events_logger = "file"

[containers]
default_ulimits = []
"""
#: What the base's python3 says about itself: marker values, ABI and glibc, as JSON.
_DESCRIBE_PYTHON = """\
import json, os, platform, sys, sysconfig
print(json.dumps({
    "markers": {
        "implementation_name": sys.implementation.name,
        "implementation_version": platform.python_version(),
        "os_name": os.name,
        "platform_machine": platform.machine(),
        "platform_python_implementation": platform.python_implementation(),
        "platform_system": platform.system(),
        "python_full_version": platform.python_version(),
        "python_version": ".".join(platform.python_version_tuple()[:2]),
        "sys_platform": sys.platform,
    },
    "abi": "cp" + sysconfig.get_config_var("py_version_nodot"),
    "glibc": platform.libc_ver()[1],
}))
"""


def cache_dir() -> Path:
    """Where the base, podman's storage and the wheelhouse are kept between runs."""
    configured = os.environ.get(CACHE_ENV)
    if configured:
        return Path(configured).expanduser()
    return Path(os.environ.get("XDG_CACHE_HOME", "~/.cache")).expanduser() / "rtserve-tests"


@contextlib.contextmanager
def cache_lock(cache: Path) -> Iterator[None]:
    """One test run at a time prepares the cache (two would build the same base twice)."""
    cache.mkdir(parents=True, exist_ok=True)
    with (cache / "lock").open("w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        yield


@dataclass(frozen=True)
class Podman:
    """podman with isolated, cached storage and the settings that work on this machine."""

    home: Path

    @classmethod
    def under(cls, cache: Path) -> Podman:
        home = cache / "podman"
        home.mkdir(parents=True, exist_ok=True)
        (home / "containers.conf").write_text(CONTAINERS_CONF)
        return cls(home)

    def command(self, *args: str) -> list[str]:
        return [
            "podman",
            "--root", str(self.home / "storage"),
            "--runroot", str(self.home / "run"),
            "--tmpdir", str(self.home / "tmp"),
            "--storage-driver", "vfs",
            "--runtime", "runc",
            "--cgroup-manager", "cgroupfs",
            *args,
        ]  # fmt: skip

    def env(self) -> dict[str, str]:
        return {**os.environ, "CONTAINERS_CONF": str(self.home / "containers.conf")}

    def run(
        self, *args: str, timeout: float = 120, check: bool = True
    ) -> subprocess.CompletedProcess[str]:
        """Run a podman command; a failure (with ``check``) says what podman printed."""
        done = subprocess.run(
            self.command(*args), env=self.env(), capture_output=True, text=True, timeout=timeout,
            check=False,
        )  # fmt: skip
        if check and done.returncode != 0:
            raise AssertionError(
                f"podman {' '.join(args)} exited {done.returncode}:\n{done.stdout}\n{done.stderr}"
            )
        return done

    def popen(self, *args: str) -> subprocess.Popen[str]:
        return subprocess.Popen(
            self.command(*args), env=self.env(), stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT, text=True,
        )  # fmt: skip

    def image_label(self, image: str, label: str) -> str | None:
        """``label`` of a local image; None when there is no such image (or label)."""
        if self.run("image", "exists", image, check=False).returncode != 0:
            return None
        labels = json.loads(
            self.run("image", "inspect", image, "--format", "{{json .Labels}}").stdout
        )
        return (labels or {}).get(label)

    def exec_python(self, image: str, code: str) -> str:
        """Run ``python3 -c CODE`` in a throwaway container of ``image`` without a network."""
        return self.run("run", "--rm", "--network=none", image, "python3", "-c", code).stdout


@dataclass(frozen=True)
class Base:
    """The local base image and how it was obtained this run."""

    image: str
    how: str  # "cached image", "imported cached rootfs" or "mmdebstrap + import"
    seconds: float


def base_image(podman: Podman, cache: Path) -> Base:
    """The bookworm + python3 base in podman's storage: reused, re-imported or made afresh."""
    started = time.perf_counter()
    key = hashlib.sha256(json.dumps(DEBOOTSTRAP, sort_keys=True).encode()).hexdigest()[:16]
    if podman.image_label(BASE_IMAGE, BASE_KEY_LABEL) == key:
        return Base(BASE_IMAGE, "cached image", time.perf_counter() - started)
    rootfs = cache / "base" / f"{DEBOOTSTRAP['suite']}-{key}.tar"
    how = "imported cached rootfs"
    if not rootfs.exists():
        how = "mmdebstrap + import"
        rootfs.parent.mkdir(parents=True, exist_ok=True)
        partial = rootfs.with_suffix(".partial.tar")
        subprocess.run(
            [
                "mmdebstrap", f"--variant={DEBOOTSTRAP['variant']}",
                f"--include={','.join(DEBOOTSTRAP['include'])}",
                DEBOOTSTRAP["suite"], str(partial),
            ],
            check=True, capture_output=True, timeout=900,
        )  # fmt: skip
        partial.rename(rootfs)
    podman.run(
        "import", "--change", f"LABEL {BASE_KEY_LABEL}={key}", "--change", 'CMD ["python3"]',
        str(rootfs), BASE_IMAGE, timeout=300,
    )  # fmt: skip
    return Base(BASE_IMAGE, how, time.perf_counter() - started)


@dataclass(frozen=True)
class TargetPython:
    """The base image's Python: what wheels and requirement markers must match."""

    markers: dict[str, str]
    abi: str
    glibc: str

    @classmethod
    def of(cls, podman: Podman, image: str) -> TargetPython:
        facts = json.loads(podman.exec_python(image, _DESCRIBE_PYTHON))
        return cls(facts["markers"], facts["abi"], facts["glibc"])

    def platforms(self) -> list[str]:
        """pip ``--platform`` tags the base can load: manylinux up to its glibc."""
        arch = self.markers["platform_machine"]
        major, minor = (int(part) for part in self.glibc.split(".")[:2])
        tags = [f"manylinux_{major}_{m}_{arch}" for m in range(minor, 4, -1)]
        return [*tags, f"manylinux2014_{arch}", f"manylinux2010_{arch}", f"manylinux1_{arch}"]

    def requirements(self, exported: str) -> str:
        """The exported (hashed) requirements that apply to this Python, markers evaluated.

        pip evaluates markers against the interpreter it runs on, not ``--python-version``: the
        host's 3.11.x would drop ``async-timeout; python_full_version < '3.11.3'``, which the
        base's 3.11.2 needs.
        """
        kept = []
        for line in exported.replace("\\\n", " ").splitlines():
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            spec, *hashes = line.split(" --hash=")
            requirement = Requirement(spec)
            if requirement.marker is not None and not requirement.marker.evaluate(self.markers):
                continue
            pins = " ".join(f"--hash={digest.strip()}" for digest in hashes)
            kept.append(f"{requirement.name}{requirement.specifier} {pins}")
        return "\n".join(kept) + "\n"


def export_requirements(project: Path) -> str:
    """The lock's runtime requirements with hashes, as ``rtserve containerize`` exports them."""
    from rtserve.deploy.container import export_requirements as export

    return export(project)


def wheelhouse(cache: Path, exported: str, target: TargetPython) -> tuple[Path, str, float]:
    """A directory of every dependency wheel for ``target``: (path, "cached"/"downloaded", s)."""
    started = time.perf_counter()
    wanted = target.requirements(exported)
    key = hashlib.sha256(
        json.dumps([wanted, target.markers, target.abi, target.glibc]).encode()
    ).hexdigest()[:16]
    directory = cache / "wheelhouse" / key
    if (directory / ".complete").exists():
        return directory, "cached", time.perf_counter() - started
    partial = directory.with_name(key + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir(parents=True)
    (partial / "requirements.txt").write_text(wanted)
    platforms: Sequence[str] = target.platforms()
    command = [
        "uvx", "--from", "pip", "pip", "download", "--quiet", "--no-deps",
        "--only-binary=:all:", "--require-hashes",
        "--python-version", target.markers["python_full_version"],
        "--implementation", "cp", "--abi", target.abi,
        *(f"--platform={tag}" for tag in platforms),
        "-r", str(partial / "requirements.txt"), "-d", str(partial),
    ]  # fmt: skip
    done = subprocess.run(command, capture_output=True, text=True, timeout=900, check=False)
    if done.returncode != 0:
        raise AssertionError(f"pip download failed:\n{done.stdout}\n{done.stderr}")
    (partial / ".complete").write_text("")
    shutil.rmtree(directory, ignore_errors=True)
    partial.rename(directory)
    return directory, "downloaded", time.perf_counter() - started
