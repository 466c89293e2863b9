"""Dataset specifications: what each dataset's files are and where they come from.

A dataset is described by one YAML file, ``conf/dataset/<name>.yaml``. This
module turns such a file (or any plain mapping with the same keys) into a
:class:`DatasetSpec`. It knows nothing about Hydra: entry points that hold a
``DictConfig`` convert it to a plain dict first.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

import yaml

from dfkd.core.paths import CONF_DIR
from dfkd.errors import ConfigError

_SHA256_RE = re.compile(r"^[0-9a-f]{64}$")
_FILE_KEYS = {"path", "url", "sha256"}
_REQUIRED_KEYS = ("name", "format", "n_rows", "n_features", "files")
_OPTIONAL_TEXT_KEYS = ("target", "origin", "licence")


def default_conf_dir() -> Path:
    """Returns the shipped ``conf`` folder (beside the package in a checkout, inside it in a wheel)."""
    return CONF_DIR


@dataclass(frozen=True)
class FileSpec:
    """One file a dataset's loader needs.

    Attributes:
        path: Location relative to the data directory (and to a mirror), POSIX style.
        url: A canonical public address serving exactly these bytes.
        sha256: Expected SHA-256 (lower-case hex), or None when no verified copy
            was available to pin; such a file is checked by shape instead.
    """

    path: str
    url: str
    sha256: str | None


@dataclass(frozen=True)
class DatasetSpec:
    """Everything needed to install, verify and load one dataset.

    Attributes:
        name: Dataset name, as in ``conf/dataset/<name>.yaml``.
        format: Key of the loader in :data:`dfkd.data.loaders.LOADERS`.
        n_rows: Expected number of rows of X and y.
        n_features: Expected number of columns of X.
        files: The files the loader reads.
        target: Human-readable description of y.
        origin: The dataset's canonical home page.
        licence: Licence or terms of use, as far as known.
        extra: Any other top-level keys of the YAML, kept for other consumers.
    """

    name: str
    format: str
    n_rows: int
    n_features: int
    files: tuple[FileSpec, ...]
    target: str = ""
    origin: str = ""
    licence: str = ""
    extra: Mapping[str, Any] = field(default_factory=dict, hash=False, compare=False)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> DatasetSpec:
        """Builds a spec from a plain mapping, validating every field.

        Unknown top-level keys are kept in ``extra`` (other parts of the suite
        may add their own); unknown keys inside a file entry are rejected,
        because a misspelt ``sha256`` would silently disable verification.

        Args:
            d: Mapping with keys name, format, n_rows, n_features, files and
                optionally target, origin, licence.

        Returns:
            The validated spec.

        Raises:
            ConfigError: If a field is missing, of the wrong type or out of range.
        """
        if not isinstance(d, Mapping):
            raise ConfigError(f"a dataset spec must be a mapping, got {type(d).__name__}")
        label = d.get("name", "<unnamed>")
        missing = [k for k in _REQUIRED_KEYS if k not in d]
        if missing:
            raise ConfigError(f"dataset spec {label!r} lacks {', '.join(missing)}")
        name = _text(d, "name", label)
        if not re.fullmatch(r"[A-Za-z0-9_.-]+", name):
            raise ConfigError(f"dataset name {name!r} may only use letters, digits, '_', '.' and '-'")
        fmt = _text(d, "format", name)
        n_rows = _positive_int(d, "n_rows", name)
        n_features = _positive_int(d, "n_features", name)
        files = d["files"]
        if isinstance(files, (str, bytes)) or not isinstance(files, Sequence) or not files:
            raise ConfigError(f"dataset {name!r}: 'files' must be a non-empty list of {{path, url, sha256}}")
        file_specs = tuple(_file_spec(f, name, i) for i, f in enumerate(files))
        paths = [f.path for f in file_specs]
        if len(set(paths)) != len(paths):
            raise ConfigError(f"dataset {name!r}: the same file path is listed twice")
        texts = {}
        for key in _OPTIONAL_TEXT_KEYS:
            value = d.get(key)
            texts[key] = "" if value in (None, "") else _text({key: value}, key, name)
        known = set(_REQUIRED_KEYS) | set(_OPTIONAL_TEXT_KEYS)
        extra = {k: v for k, v in d.items() if k not in known}
        return cls(name=name, format=fmt, n_rows=n_rows, n_features=n_features,
                   files=file_specs, extra=extra, **texts)

    def file_path(self, file: FileSpec, data_dir: str | Path) -> Path:
        """Returns where ``file`` lives under ``data_dir``."""
        return Path(data_dir) / Path(*PurePosixPath(file.path).parts)

    def available(self, data_dir: str | Path) -> bool:
        """Tells whether every file of the dataset is present (checksums not checked)."""
        return all(self.file_path(f, data_dir).is_file() for f in self.files)


def _text(d: Mapping[str, Any], key: str, name: str) -> str:
    value = d[key]
    if not isinstance(value, str) or not value.strip():
        raise ConfigError(f"dataset {name!r}: {key!r} must be a non-empty string, got {value!r}")
    return value


def _positive_int(d: Mapping[str, Any], key: str, name: str) -> int:
    value = d[key]
    # bool is an int subclass; `n_rows: yes` is a typo, not a size.
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise ConfigError(f"dataset {name!r}: {key!r} must be a positive integer, got {value!r}")
    return int(value)


def _file_spec(f: Any, name: str, i: int) -> FileSpec:
    where = f"dataset {name!r}, files[{i}]"
    if not isinstance(f, Mapping):
        raise ConfigError(f"{where} must be a mapping with path, url and sha256")
    keys = set(f.keys())
    if keys != _FILE_KEYS:
        wrong = sorted(map(str, keys - _FILE_KEYS))
        lacking = sorted(_FILE_KEYS - keys)
        problem = "; ".join(filter(None, [
            f"unknown keys {', '.join(wrong)}" if wrong else "",
            f"missing {', '.join(lacking)}" if lacking else "",
        ]))
        raise ConfigError(f"{where}: {problem} (expected exactly path, url, sha256)")
    path = f["path"]
    if not isinstance(path, str) or not path:
        raise ConfigError(f"{where}: 'path' must be a non-empty string")
    pure = PurePosixPath(path)
    # The path is joined to the data dir and to a mirror: it must stay inside both.
    if pure.is_absolute() or ".." in pure.parts or "\\" in path:
        raise ConfigError(f"{where}: path {path!r} must be relative, with '/' and no '..'")
    url = f["url"]
    if not isinstance(url, str) or not re.match(r"^(https?|file)://", url):
        raise ConfigError(f"{where}: url {url!r} must be an http(s):// or file:// address")
    sha = f["sha256"]
    if sha is not None:
        if not isinstance(sha, str) or not _SHA256_RE.match(sha.lower()):
            raise ConfigError(f"{where}: sha256 must be 64 hex digits or null, got {sha!r}")
        sha = sha.lower()
    return FileSpec(path=str(pure), url=url, sha256=sha)


def list_datasets(conf_dir: str | Path | None = None) -> list[str]:
    """Lists the registered datasets.

    Args:
        conf_dir: The config folder; defaults to the repository's ``conf``.

    Returns:
        Sorted names of the ``conf/dataset/*.yaml`` files.
    """
    folder = Path(conf_dir or default_conf_dir()) / "dataset"
    return sorted(p.stem for p in folder.glob("*.yaml"))


def load_spec(name: str, conf_dir: str | Path | None = None) -> DatasetSpec:
    """Reads ``conf/dataset/<name>.yaml`` into a :class:`DatasetSpec`.

    Args:
        name: The dataset's name.
        conf_dir: The config folder; defaults to the repository's ``conf``.

    Returns:
        The validated spec.

    Raises:
        ConfigError: If no such dataset is registered or its file is malformed.
    """
    conf_dir = Path(conf_dir or default_conf_dir())
    path = conf_dir / "dataset" / f"{name}.yaml"
    if not re.fullmatch(r"[A-Za-z0-9_.-]+", name or "") or not path.is_file():
        known = ", ".join(list_datasets(conf_dir)) or "none"
        raise ConfigError(f"unknown dataset {name!r}: known datasets are {known}")
    try:
        d = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as e:
        first = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise ConfigError(f"{path} is not valid YAML ({first}): fix the file") from None
    spec = DatasetSpec.from_dict(d if d is not None else {})
    if spec.name != name:
        raise ConfigError(f"{path} declares name {spec.name!r}: it must match the file name {name!r}")
    return spec
