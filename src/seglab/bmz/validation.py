"""Check a package with the bioimage.io tools themselves, offline.

``bioimageio.spec`` validates the description and its files (hashes, shapes of the test
tensors); ``bioimageio.core`` runs the package's TorchScript with its pre- and
post-processing on the test input and compares with the test output. Both are optional
dependencies (extra ``bmz``), imported only here.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from seglab.errors import SeglabError


def _offline_env() -> None:
    """Keep bioimageio's cache out of the user's home when nothing set it (no downloads are needed)."""
    if "BIOIMAGEIO_CACHE_PATH" not in os.environ:
        import tempfile

        os.environ["BIOIMAGEIO_CACHE_PATH"] = str(Path(tempfile.gettempdir()) / "seglab-bioimageio-cache")


def _errors(summary: Any) -> str:
    lines = []
    for detail in getattr(summary, "details", []):
        for err in getattr(detail, "errors", []):
            loc = ".".join(str(p) for p in getattr(err, "loc", ()))
            lines.append(f"{loc}: {getattr(err, 'msg', err)}")
    return "; ".join(lines[:5]) or str(getattr(summary, "status", "invalid"))


def offline_validation(path: str | os.PathLike, perform_io_checks: bool = True) -> Any:
    """``bioimageio.spec.load_description`` of the package: the loaded ModelDescr, or a
    :class:`SeglabError` naming the validator's first errors."""
    _offline_env()
    try:
        from bioimageio.spec import InvalidDescr, load_description
    except ImportError:
        raise SeglabError("validating a package needs bioimageio.spec: pip install 'napari-seglab[bmz]'") from None
    try:
        descr = load_description(Path(path), perform_io_checks=perform_io_checks, format_version="discover")
    except Exception as e:  # noqa: BLE001  whatever the validator trips on, the user gets one line
        raise SeglabError(f"bioimageio.spec could not check {Path(path).name}: {type(e).__name__}: {e}") from None
    if isinstance(descr, InvalidDescr) or getattr(descr, "type", None) != "model":
        raise SeglabError(f"bioimageio.spec found the package invalid: {_errors(descr.validation_summary)}")
    return descr


def core_test(path: str | os.PathLike) -> Any:
    """``bioimageio.core.test_model`` on the package (CPU): its ValidationSummary."""
    _offline_env()
    try:
        from bioimageio.core import test_model
    except ImportError:
        raise SeglabError("testing a package needs bioimageio.core: pip install 'napari-seglab[bmz]'") from None
    return test_model(Path(path), weight_format="torchscript", devices=["cpu"])


def core_reproduce(path: str | os.PathLike) -> dict[str, tuple[Any, Any]]:
    """Run the package's test input through ``bioimageio.core``'s prediction pipeline (its
    pre-processing, the TorchScript on the CPU, its post-processing): ``{output id: (reproduced,
    expected test output)}`` as numpy arrays. Quicker than :func:`core_test`, which also runs
    several other input sizes."""
    descr = offline_validation(path)
    from bioimageio.core import create_prediction_pipeline
    from bioimageio.core.digest_spec import get_test_input_sample, get_test_output_sample

    sample = get_test_input_sample(descr)
    expected = get_test_output_sample(descr)
    with create_prediction_pipeline(bioimageio_model=descr, devices=["cpu"], weight_format="torchscript") as pp:
        result = pp.predict_sample_without_blocking(sample)
    return {str(k): (result.members[k].data.to_numpy(), expected.members[k].data.to_numpy())
            for k in expected.members}
