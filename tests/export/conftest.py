"""The export tests need onnxruntime and onnxscript (the ``export`` extra); one folder per module."""

import pytest

pytest.importorskip("onnxruntime")
pytest.importorskip("onnxscript")


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    return tmp_path_factory.mktemp("export")
