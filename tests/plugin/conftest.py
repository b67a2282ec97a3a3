import os

import pytest

if not os.environ.get("DISPLAY") and os.environ.get("QT_QPA_PLATFORM") != "offscreen":
    pytest.skip("napari tests need a display: run them under xvfb-run", allow_module_level=True)
