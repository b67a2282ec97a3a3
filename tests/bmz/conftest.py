"""bioimage.io tests run offline: bioimageio's cache (read when bioimageio.spec is first imported)
points into the temporary folder, never the user's; nothing there is downloaded (packages are local)."""

import os
import tempfile

os.environ.setdefault("BIOIMAGEIO_CACHE_PATH", os.path.join(tempfile.gettempdir(), "seglab-tests-bioimageio-cache"))
