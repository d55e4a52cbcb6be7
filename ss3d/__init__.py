"""ss3d: Pre-train, Self-train, Distill — single-view 3D reconstruction (Alwala et al., 2022).

Layers, data flowing one way: ``ss3d.data`` → ``ss3d.cameras`` → model → volume rendering →
training stages → evaluation → ``ss3d.tracking`` / reports. ``ss3d.config`` and ``ss3d.engine``
are shared by all of them.
"""

import os
import warnings

# Our progress bars are plain text (papermill streams them to `ss3d pipeline`); a dependency
# that imports tqdm.auto inside a notebook kernel without ipywidgets would otherwise print
# "TqdmWarning: IProgress not found" into every notebook.
warnings.filterwarnings("ignore", message="IProgress not found")

# pyrender must pick its OpenGL platform before OpenGL is first imported; EGL renders headless
# on the CPU (Mesa) and on NVIDIA nodes alike. Users can still override it.
os.environ.setdefault("PYOPENGL_PLATFORM", "egl")
# pyrender imports its pyglet viewer at import time; pyglet's default (X11) backend
# needs libX11/libXrender, which a GPU node often lacks. Headless pyglet uses EGL too.
os.environ.setdefault("PYGLET_HEADLESS", "true")

# Large CPU tensors are re-used from the heap instead of mapped and unmapped every step
# (ss3d.allocator: page faults were a large share of a step on a CPU without bf16).
from ss3d.allocator import keep_large_blocks  # noqa: E402

keep_large_blocks()

__version__ = "0.1.0"
