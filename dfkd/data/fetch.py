"""Installing and verifying data files.

Files come from a local mirror (a folder laid out like the data directory, for
offline machines) or from their canonical URL. Either way the bytes go to a
temporary file beside the target, are checked, and only then are renamed into
place, so an interrupted or corrupted transfer never leaves a file under the
final name that a later run would trust.
"""

from __future__ import annotations

import contextlib
import hashlib
import http.client
import os
import secrets
import sys
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from dfkd.data.loaders import check_candidate
from dfkd.data.registry import DatasetSpec, FileSpec
from dfkd.errors import ConfigError, DataError, DataMissingError

MIRROR_ENV = "DFKD_DATA_MIRROR"
_CHUNK = 1 << 20
_TIMEOUT_S = 60

Validator = Callable[[Path], None]


@dataclass(frozen=True)
class FileStatus:
    """What happened to one file.

    Attributes:
        path: The file's location under the data directory.
        state: ``"ok"`` (present and verified), ``"installed"`` (copied or
            downloaded just now) or ``"missing"`` (no source could provide it).
        source: Where an installed file came from (mirror path or URL).
        sha256: The file's SHA-256 when it was computed, else None.
        message: For a missing file, the one-line explanation and fix.
    """

    path: Path
    state: str
    source: str | None = None
    sha256: str | None = None
    message: str = ""


def sha256_file(path: str | Path) -> str:
    """Returns the SHA-256 of a file as lower-case hex, reading it in chunks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(_CHUNK), b""):
            h.update(chunk)
    return h.hexdigest()


def resolve_mirror(mirror: str | os.PathLike | None) -> Path | None:
    """Returns the mirror folder to use, or None.

    Args:
        mirror: An explicit folder; None means "use $DFKD_DATA_MIRROR if set".
            An empty string means no mirror (what ``make data`` passes when
            the variable is unset).

    Raises:
        ConfigError: If the chosen mirror is not an existing folder.
    """
    if mirror is None:
        mirror = os.environ.get(MIRROR_ENV)
    if mirror is None or not str(mirror).strip():
        return None
    path = Path(mirror).expanduser()
    if not path.is_dir():
        raise ConfigError(f"data mirror {path} is not a folder: fix --mirror or ${MIRROR_ENV}")
    return path


def _short(digest: str | None) -> str:
    return f"{digest[:12]}.." if digest else "?"


def _one_line(e: BaseException) -> str:
    return " ".join(str(e).split()) or type(e).__name__


def _missing_message(filespec: FileSpec, target: Path, mirror: Path | None) -> str:
    mirror_note = f" (mirror {mirror} has no {filespec.path})" if mirror is not None else ""
    return (f"{target} is missing{mirror_note}: run `make data` on a machine with internet "
            f"(downloads {filespec.url}) or set {MIRROR_ENV} to a folder that has {filespec.path}")


def _from_mirror(src: Path) -> Iterator[bytes]:
    with open(src, "rb") as f:
        yield from iter(lambda: f.read(_CHUNK), b"")


def _from_url(filespec: FileSpec, target: Path, progress: bool) -> Iterator[bytes]:
    from tqdm import tqdm

    def failed(reason: str) -> DataMissingError:
        return DataMissingError(
            f"could not download {filespec.url} ({reason}) for {target}: run `make data` on a machine "
            f"with internet, or set {MIRROR_ENV} to a folder that has {filespec.path}")

    try:
        response = urllib.request.urlopen(filespec.url, timeout=_TIMEOUT_S)
    except urllib.error.HTTPError as e:
        raise failed(f"HTTP {e.code} {e.reason}") from None
    except urllib.error.URLError as e:
        raise failed(_one_line(e.reason) if isinstance(e.reason, BaseException) else str(e.reason)) from None
    except (OSError, http.client.HTTPException) as e:
        raise failed(_one_line(e)) from None
    with response:
        length = response.headers.get("Content-Length")
        total = int(length) if length and length.isdigit() else None
        received = 0
        with tqdm(total=total, unit="B", unit_scale=True, unit_divisor=1024,
                  desc=filespec.path, disable=not progress, leave=False) as bar:
            while True:
                try:
                    chunk = response.read(_CHUNK)
                except (OSError, http.client.HTTPException) as e:
                    raise failed(f"connection lost after {received} bytes: {_one_line(e)}") from None
                if not chunk:
                    break
                received += len(chunk)
                bar.update(len(chunk))
                yield chunk
    if total is not None and received != total:
        raise failed(f"got {received} of {total} bytes")


def _temp_path(target: Path) -> Path:
    # Same folder as the target so os.replace is an atomic rename; the random
    # part lets two processes install the same file without clobbering each other.
    return target.with_name(f".{target.name}.{os.getpid()}.{secrets.token_hex(4)}.part")


def _write_verified(target: Path, filespec: FileSpec, chunks: Iterator[bytes], source: str,
                    via_mirror: bool, validate: Validator | None) -> str:
    created_dir = not target.parent.exists()
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise DataError(f"could not create {target.parent} ({_one_line(e)}): check that it is writable") from None
    tmp = _temp_path(target)
    done = False
    try:
        h = hashlib.sha256()
        # os.open with 0o666 so the umask, not tempfile's 0o600, decides the mode.
        with os.fdopen(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666), "wb") as out:
            for chunk in chunks:
                h.update(chunk)
                out.write(chunk)
        got = h.hexdigest()
        if filespec.sha256 is not None and got != filespec.sha256:
            if via_mirror:
                fix = f"the mirror's copy is damaged: replace {source} or use another mirror"
            else:
                fix = "the download is damaged or the file changed upstream: rerun `make data`"
            raise DataError(f"checksum mismatch for {target} from {source} (expected "
                            f"{_short(filespec.sha256)}, got {_short(got)}): {fix}")
        if filespec.sha256 is None and validate is not None:
            validate(tmp)
        os.replace(tmp, target)
        done = True
        return got
    except OSError as e:
        raise DataError(f"could not write {target} ({_one_line(e)}): check that "
                        f"{target.parent} is writable and has space") from None
    finally:
        if not done:
            tmp.unlink(missing_ok=True)
            if created_dir:
                # An empty folder would make the dataset look half-installed.
                with contextlib.suppress(OSError):
                    target.parent.rmdir()


def install_file(filespec: FileSpec, data_dir: str | Path, mirror: str | os.PathLike | None = None,
                 progress: bool = True, *, allow_download: bool = True,
                 validate: Validator | None = None) -> FileStatus:
    """Makes sure one file is present under ``data_dir`` with the right content.

    A present file whose checksum matches is left alone. Otherwise the file is
    copied from ``<mirror>/<path>`` when the mirror has it, else downloaded
    from its URL (when ``allow_download``), into a temporary file that replaces
    the target only once verified.

    Args:
        filespec: The file to install.
        data_dir: The data directory.
        mirror: A mirror folder; None uses $DFKD_DATA_MIRROR when set.
        progress: Show a progress bar while downloading.
        allow_download: Whether the URL may be used when no mirror has the file.
        validate: For a file without a pinned sha256, a check run on the
            temporary file before it is renamed (it raises DataError to reject).

    Returns:
        The file's status, ``"ok"`` or ``"installed"``.

    Raises:
        DataMissingError: If the file is absent and no source could provide it.
        DataError: If the new copy fails verification (nothing is left under
            the final name), or a present copy is wrong and cannot be replaced.
        ConfigError: If the mirror is not a folder.
    """
    target = Path(data_dir) / filespec.path
    present_sha = None
    if target.is_file():
        if filespec.sha256 is None:
            # Nothing to check against; the loader's shape check guards it.
            return FileStatus(target, "ok")
        present_sha = sha256_file(target)
        if present_sha == filespec.sha256:
            return FileStatus(target, "ok", sha256=present_sha)

    mirror_dir = resolve_mirror(mirror)
    src = mirror_dir / filespec.path if mirror_dir is not None else None
    if src is not None and src.is_file():
        source, via_mirror = str(src), True
        chunks = _from_mirror(src)
    elif allow_download:
        source, via_mirror = filespec.url, False
        chunks = _from_url(filespec, target, progress)
    elif present_sha is not None:
        raise DataError(f"checksum mismatch for {target} (expected {_short(filespec.sha256)}, got "
                        f"{_short(present_sha)}): delete it and rerun `make data`")
    else:
        raise DataMissingError(_missing_message(filespec, target, mirror_dir))

    got = _write_verified(target, filespec, chunks, source, via_mirror, validate)
    if filespec.sha256 is None:
        print(f"note: {target} has no pinned sha256; this copy's is {got}: "
              f"set `sha256: {got}` for {filespec.path} in conf/dataset to pin it", file=sys.stderr)
    return FileStatus(target, "installed", source=source, sha256=got)


def _unpinned_validator(spec: DatasetSpec, filespec: FileSpec, data_dir: str | Path) -> Validator | None:
    if filespec.sha256 is not None:
        return None
    def validate(candidate: Path) -> None:
        check_candidate(spec, data_dir, {filespec.path: candidate})

    return validate


def install_dataset(spec: DatasetSpec, data_dir: str | Path = "data", mirror: str | os.PathLike | None = None,
                    *, allow_download: bool = False, progress: bool = True) -> list[FileStatus]:
    """Installs and verifies every file of a dataset, reporting missing ones instead of raising.

    Args:
        spec: The dataset.
        data_dir: The data directory.
        mirror: A mirror folder; None uses $DFKD_DATA_MIRROR when set.
        allow_download: Whether files may be downloaded from their URLs.
        progress: Show progress bars while downloading.

    Returns:
        One status per file, in the spec's order; absent files have state ``"missing"``.

    Raises:
        DataError: If a file fails verification.
        ConfigError: If the mirror is not a folder.
    """
    statuses = []
    for f in spec.files:
        try:
            statuses.append(install_file(f, data_dir, mirror, progress, allow_download=allow_download,
                                         validate=_unpinned_validator(spec, f, data_dir)))
        except DataMissingError as e:
            statuses.append(FileStatus(Path(data_dir) / f.path, "missing",
                                       message=f"dataset {spec.name!r}: {e}"))
    return statuses


def ensure_dataset(spec: DatasetSpec, data_dir: str | Path = "data", mirror: str | os.PathLike | None = None,
                   *, allow_download: bool = False, progress: bool = True) -> list[FileStatus]:
    """Makes sure every file of a dataset is present and verified, or says how to get it.

    Missing files are installed from a mirror (the argument, else
    $DFKD_DATA_MIRROR); the internet is used only with ``allow_download``.

    Args:
        spec: The dataset.
        data_dir: The data directory.
        mirror: A mirror folder; None uses $DFKD_DATA_MIRROR when set.
        allow_download: Whether files may be downloaded from their URLs.
        progress: Show progress bars while downloading.

    Returns:
        One status per file.

    Raises:
        DataMissingError: If a file is absent and cannot be installed; the
            message names the file and the fix.
        DataError: If a file fails verification.
        ConfigError: If the mirror is not a folder.
    """
    statuses = install_dataset(spec, data_dir, mirror, allow_download=allow_download, progress=progress)
    for s in statuses:
        if s.state == "missing":
            raise DataMissingError(s.message)
    return statuses
