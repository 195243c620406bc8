"""An earlier version of ``lnc_sklearn``, imported beside today's, for benchmarks that compare the
two in one process (same data, same machine, same moment)."""

import importlib.util
import io
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

__all__ = ["load_before"]

REPO = Path(__file__).resolve().parents[1]


def load_before(revision, name="lnc_sklearn_before"):
    """The package ``lnc_sklearn`` as it was at git ``revision`` of this checkout, imported as
    ``name`` (its imports are relative, so the copy is self-contained)."""
    if name in sys.modules:
        return sys.modules[name]
    archive = subprocess.run(["git", "archive", revision, "lnc_sklearn"], cwd=REPO, capture_output=True, check=True)
    folder = Path(tempfile.mkdtemp(prefix="lnc_before_"))
    with tarfile.open(fileobj=io.BytesIO(archive.stdout)) as tar:
        tar.extractall(folder, filter="data")
    package = folder / name
    (folder / "lnc_sklearn").rename(package)
    spec = importlib.util.spec_from_file_location(name, package / "__init__.py",
                                                  submodule_search_locations=[str(package)])
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module
