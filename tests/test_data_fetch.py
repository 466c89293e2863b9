"""Tests of installing and verifying data files (dfkd.data.fetch) and of `python -m dfkd.data`."""

from __future__ import annotations

import functools
import hashlib
import http.server
import io
import os
import shutil
import subprocess
import sys
import threading
import zipfile
from pathlib import Path

import numpy as np
import pytest

from dfkd.data import DatasetSpec, ensure_dataset, load_dataset, load_spec
from dfkd.data.fetch import MIRROR_ENV, install_file, sha256_file
from dfkd.data.registry import FileSpec
from dfkd.errors import ConfigError, DataError, DataMissingError

REPO = Path(__file__).resolve().parents[1]
UCI_CT = "https://archive.ics.uci.edu/static/public/206/relative+location+of+ct+slices+on+axial+axis.zip"


@pytest.fixture(autouse=True)
def _no_env_mirror(monkeypatch: pytest.MonkeyPatch):
    # Each test says which mirror it uses; an inherited one would hide missing-file paths.
    monkeypatch.delenv(MIRROR_ENV, raising=False)


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _npy_bytes(a: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, a)
    return buf.getvalue()


def _leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.rglob("*")) if folder.exists() else []


def _one_line(e: pytest.ExceptionInfo) -> str:
    msg = str(e.value)
    assert "\n" not in msg and msg
    return msg


# --- mirror ---------------------------------------------------------------------------------

def test_corrupted_mirror_copy_is_rejected_and_leaves_nothing(tmp_path: Path, data_mirror: Path):
    fake = tmp_path / "mirror"
    (fake / "compactiv").mkdir(parents=True)
    good = (data_mirror / "compactiv" / "X.npy").read_bytes()
    (fake / "compactiv" / "X.npy").write_bytes(good[:-8] + b"\0" * 8)
    shutil.copy(data_mirror / "compactiv" / "y.npy", fake / "compactiv" / "y.npy")
    data = tmp_path / "data"
    with pytest.raises(DataError) as e:
        load_dataset(load_spec("compactiv"), data, mirror=fake)
    msg = _one_line(e)
    assert "checksum mismatch" in msg and "compactiv/X.npy" in msg and "expected 23de22dab515" in msg
    assert not (data / "compactiv" / "X.npy").exists()
    assert _leftovers(data) == []  # no temp file, no half-made folder


def test_env_mirror_is_used_and_files_are_verified(tmp_path: Path, data_mirror: Path,
                                                   monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv(MIRROR_ENV, str(data_mirror))
    spec = load_spec("cpusmall")
    statuses = ensure_dataset(spec, tmp_path)
    assert [s.state for s in statuses] == ["installed", "installed"]
    assert [sha256_file(s.path) for s in statuses] == [f.sha256 for f in spec.files]
    assert [s.state for s in ensure_dataset(spec, tmp_path)] == ["ok", "ok"]
    assert os.stat(statuses[0].path).st_mode & 0o200  # writable copy, not the mirror's read-only mode


def test_missing_file_without_mirror_names_make_data(tmp_path: Path):
    with pytest.raises(DataMissingError) as e:
        load_dataset(load_spec("pole"), tmp_path)
    msg = _one_line(e)
    assert "dataset 'pole'" in msg and "pole/X.npy" in msg and "`make data`" in msg and MIRROR_ENV in msg
    assert _leftovers(tmp_path) == []


def test_ctscan_offline_is_missing_and_names_the_uci_address(tmp_path: Path, data_mirror: Path):
    with pytest.raises(DataMissingError) as e:
        load_dataset(load_spec("ctscan"), tmp_path, mirror=data_mirror)
    msg = _one_line(e)
    assert UCI_CT in msg and "`make data`" in msg and "ctscan" in msg


def test_damaged_installed_file_is_replaced_from_mirror_or_reported(tmp_path: Path, data_mirror: Path):
    spec = load_spec("puma32h")
    ensure_dataset(spec, tmp_path, mirror=data_mirror)
    target = tmp_path / "puma32h" / "y.npy"
    target.write_bytes(target.read_bytes()[:100])
    with pytest.raises(DataError) as e:
        ensure_dataset(spec, tmp_path, mirror="")
    assert "checksum mismatch" in _one_line(e) and "delete it" in str(e.value)
    statuses = ensure_dataset(spec, tmp_path, mirror=data_mirror)
    assert [s.state for s in statuses] == ["ok", "installed"]
    assert sha256_file(target) == spec.files[1].sha256


def test_mirror_that_is_not_a_folder_is_a_config_error(tmp_path: Path):
    with pytest.raises(ConfigError, match="not a folder"):
        ensure_dataset(load_spec("pole"), tmp_path, mirror=tmp_path / "nope")


# --- shape and value checks -----------------------------------------------------------------

def _pinned_spec(folder: Path, X: np.ndarray, y: np.ndarray, n_rows: int, n_features: int) -> DatasetSpec:
    files = []
    for name, arr in (("X.npy", X), ("y.npy", y)):
        data = _npy_bytes(arr) if isinstance(arr, np.ndarray) else arr
        (folder / "toy").mkdir(parents=True, exist_ok=True)
        (folder / "toy" / name).write_bytes(data)
        files.append({"path": f"toy/{name}", "url": f"https://example.org/{name}", "sha256": _sha(data)})
    return DatasetSpec.from_dict({"name": "toy", "format": "npy", "n_rows": n_rows,
                                  "n_features": n_features, "files": files})


def test_wrong_shape_is_a_one_line_data_error(tmp_path: Path):
    spec = _pinned_spec(tmp_path, np.zeros((10, 26)), np.zeros(10), 14998, 26)
    with pytest.raises(DataError) as e:
        load_dataset(spec, tmp_path)
    msg = _one_line(e)
    assert "toy/X.npy has shape (10, 26), expected (14998, 26)" in msg and "`make data`" in msg


def test_wrong_target_length_is_a_data_error(tmp_path: Path):
    spec = _pinned_spec(tmp_path, np.zeros((10, 2)), np.zeros(9), 10, 2)
    with pytest.raises(DataError, match=r"toy/y.npy has shape \(9,\), expected \(10,\)"):
        load_dataset(spec, tmp_path)


def test_nan_is_a_data_error(tmp_path: Path):
    X = np.ones((10, 2))
    X[3, 1] = np.nan
    spec = _pinned_spec(tmp_path, X, np.zeros(10), 10, 2)
    with pytest.raises(DataError, match="toy/X.npy has 1 non-finite values"):
        load_dataset(spec, tmp_path)


def test_unreadable_npy_is_a_data_error(tmp_path: Path):
    spec = _pinned_spec(tmp_path, b"not an npy file", np.zeros(10), 10, 2)
    with pytest.raises(DataError) as e:
        load_dataset(spec, tmp_path)
    assert "is not a readable .npy file" in _one_line(e)


def test_integer_files_load_as_float64(tmp_path: Path):
    spec = _pinned_spec(tmp_path, np.arange(20).reshape(10, 2), np.arange(10), 10, 2)
    X, y = load_dataset(spec, tmp_path)
    assert X.dtype == y.dtype == np.float64 and X[9, 1] == 19.0


# --- downloads from a local HTTP server -------------------------------------------------------

class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):  # keep test output clean
        pass


@pytest.fixture()
def http_root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """Serves a temp folder on 127.0.0.1; yields (folder, base_url)."""
    monkeypatch.setenv("no_proxy", "127.0.0.1,localhost")
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    root = tmp_path / "www"
    root.mkdir()
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0),
                                             functools.partial(_QuietHandler, directory=str(root)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield root, f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def test_download_installs_a_good_file(http_root, tmp_path: Path):
    root, base = http_root
    payload = _npy_bytes(np.arange(1000.0))
    (root / "good.npy").write_bytes(payload)
    f = FileSpec("toy/good.npy", f"{base}/good.npy", _sha(payload))
    data = tmp_path / "data"
    status = install_file(f, data, mirror="", progress=False)
    assert status.state == "installed" and status.source == f.url
    assert (data / "toy" / "good.npy").read_bytes() == payload
    assert _leftovers(data / "toy") == ["good.npy"]
    assert install_file(f, data, mirror="", progress=False).state == "ok"


def test_download_with_wrong_checksum_leaves_no_file(http_root, tmp_path: Path):
    root, base = http_root
    payload = _npy_bytes(np.arange(1000.0))
    (root / "bad.npy").write_bytes(payload[:-1] + b"\x01")
    f = FileSpec("toy/bad.npy", f"{base}/bad.npy", _sha(payload))
    data = tmp_path / "data"
    with pytest.raises(DataError) as e:
        install_file(f, data, mirror="", progress=False)
    msg = _one_line(e)
    assert "checksum mismatch" in msg and f.url in msg
    assert _leftovers(data) == []


def test_download_404_is_missing(http_root, tmp_path: Path):
    _, base = http_root
    f = FileSpec("toy/none.npy", f"{base}/none.npy", "0" * 64)
    with pytest.raises(DataMissingError) as e:
        install_file(f, tmp_path / "data", mirror="", progress=False)
    assert "HTTP 404" in _one_line(e) and "`make data`" in str(e.value)
    assert _leftovers(tmp_path / "data") == []


def test_ensure_dataset_downloads_only_when_allowed(http_root, tmp_path: Path):
    root, base = http_root
    payload = _npy_bytes(np.arange(6.0))
    (root / "X.npy").write_bytes(payload)
    spec = DatasetSpec.from_dict({"name": "toy", "format": "npy", "n_rows": 3, "n_features": 2, "files": [
        {"path": "toy/X.npy", "url": f"{base}/X.npy", "sha256": _sha(payload)}]})
    with pytest.raises(DataMissingError):
        ensure_dataset(spec, tmp_path / "data", mirror="")
    assert ensure_dataset(spec, tmp_path / "data", mirror="", allow_download=True,
                          progress=False)[0].state == "installed"


def _ct_zip(n_rows: int, n_values: int, nested: bool = False) -> bytes:
    rng = np.random.default_rng(1)
    header = ["patientId"] + [f"value{i}" for i in range(n_values)] + ["reference"]
    rows = [",".join(header)]
    for r in range(n_rows):
        vals = [str(r // 2)] + [f"{v:.4f}" for v in rng.random(n_values)] + [f"{10.0 * r:.3f}"]
        rows.append(",".join(vals))
    csv = ("\n".join(rows) + "\n").encode()

    def zipped(name: str, data: bytes) -> bytes:
        buf = io.BytesIO()
        with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
            zf.writestr(name, data)
        return buf.getvalue()

    inner = zipped("slice_localization_data.csv", csv)
    return zipped("slice_localization_data.zip", inner) if nested else inner


def _ct_spec(base: str, n_rows: int = 6, n_features: int = 3) -> DatasetSpec:
    return DatasetSpec.from_dict({"name": "ct", "format": "ctscan_csv", "n_rows": n_rows,
                                  "n_features": n_features, "files": [
                                      {"path": "ct/ct.zip", "url": f"{base}/ct.zip", "sha256": None}]})


@pytest.mark.parametrize("nested", [False, True])
def test_unpinned_download_is_shape_checked_and_its_sha_printed(http_root, tmp_path: Path, capsys, nested):
    root, base = http_root
    payload = _ct_zip(6, 3, nested=nested)
    (root / "ct.zip").write_bytes(payload)
    X, y = load_dataset(_ct_spec(base), tmp_path / "data", mirror="", allow_download=True)
    assert X.shape == (6, 3) and y.tolist() == [0.0, 10.0, 20.0, 30.0, 40.0, 50.0]
    assert X.min() >= 0.0 and X.max() <= 1.0  # patientId (up to 2) was dropped
    assert _sha(payload) in capsys.readouterr().err


def test_unpinned_download_of_wrong_shape_is_rejected(http_root, tmp_path: Path):
    root, base = http_root
    (root / "ct.zip").write_bytes(_ct_zip(5, 3))
    data = tmp_path / "data"
    with pytest.raises(DataError) as e:
        ensure_dataset(_ct_spec(base), data, mirror="", allow_download=True, progress=False)
    assert "has shape (5, 3), expected (6, 3)" in _one_line(e)
    assert _leftovers(data) == []


# --- the command line -------------------------------------------------------------------------

def _cli(*args: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != MIRROR_ENV}
    return subprocess.run([sys.executable, "-m", "dfkd.data", "--no-progress", *args], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=120)


def test_cli_installs_offline_datasets_and_reports_ctscan(tmp_path: Path, data_mirror: Path):
    # --no-download keeps the test off the internet where there is one.
    r = _cli("--mirror", str(data_mirror), "--data-dir", str(tmp_path), "--no-download")
    assert r.returncode == 0, r.stderr
    for name in ["compactiv", "cpusmall", "indoorloc", "mv", "pole", "puma32h"]:
        assert load_spec(name).available(tmp_path), name
    ct_lines = [line for line in r.stdout.splitlines() if line.startswith("missing") and "'ctscan'" in line]
    assert len(ct_lines) == 1 and UCI_CT in ct_lines[0]
    assert sum(line.startswith("installed") for line in r.stdout.splitlines()) >= 11
    assert "missing: ctscan" in r.stdout.splitlines()[-1]
    r2 = _cli("--mirror", str(data_mirror), "--data-dir", str(tmp_path), "--no-download",
              "--datasets", "pole,indoorloc")
    assert r2.returncode == 0 and [line.split()[0] for line in r2.stdout.splitlines()[1:4]] == ["ok"] * 3
    r3 = _cli("--mirror", "", "--data-dir", str(tmp_path), "--no-download", "--datasets", "ctscan", "--strict")
    assert r3.returncode == 2 and r3.stderr.startswith("error: ") and "Traceback" not in r3.stderr


def test_cli_bad_mirror_checksum_exits_2_in_one_line(tmp_path: Path, data_mirror: Path):
    fake = tmp_path / "mirror" / "compactiv"
    fake.mkdir(parents=True)
    (fake / "X.npy").write_bytes(b"garbage")
    r = _cli("--mirror", str(fake.parent), "--data-dir", str(tmp_path / "data"), "--no-download",
             "--datasets", "compactiv")
    assert r.returncode == 2
    assert r.stderr.count("\n") == 1 and r.stderr.startswith("error: checksum mismatch")
    assert "Traceback" not in r.stderr
    assert not (tmp_path / "data" / "compactiv" / "X.npy").exists()


def test_cli_unknown_dataset_exits_2(tmp_path: Path):
    r = _cli("--data-dir", str(tmp_path), "--datasets", "nope")
    assert r.returncode == 2 and r.stderr.startswith("error: unknown dataset 'nope'")
    assert "Traceback" not in r.stderr


class _FlakyHandler(http.server.BaseHTTPRequestHandler):
    """Announces the whole file, sends half of it and drops the connection, once; then serves it whole."""

    payload = b""
    failures_left = 1

    def do_GET(self):  # noqa: N802 (http.server's naming)
        body = type(self).payload
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if type(self).failures_left > 0:
            type(self).failures_left -= 1
            self.wfile.write(body[: len(body) // 2])
            self.wfile.flush()
            self.close_connection = True
            return
        self.wfile.write(body)

    def log_message(self, *args):
        pass


def test_interrupted_download_leaves_no_partial_file_and_a_retry_succeeds(tmp_path: Path, monkeypatch):
    monkeypatch.setenv("no_proxy", "127.0.0.1,localhost")
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    payload = _npy_bytes(np.arange(50000.0))
    handler = type("Flaky", (_FlakyHandler,), {"payload": payload, "failures_left": 1})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/big.npy"
        f = FileSpec("toy/big.npy", url, _sha(payload))
        data = tmp_path / "data"
        with pytest.raises(DataMissingError) as e:
            install_file(f, data, mirror="", progress=False)
        assert "bytes" in _one_line(e) and url in _one_line(e)
        assert not (data / "toy").exists() or _leftovers(data / "toy") == []  # nothing half-written
        status = install_file(f, data, mirror="", progress=False)  # the retry
        assert status.state == "installed" and (data / "toy" / "big.npy").read_bytes() == payload
        assert _leftovers(data / "toy") == ["big.npy"]
    finally:
        server.shutdown()
        server.server_close()
