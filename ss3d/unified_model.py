"""The MLflow pyfunc of the registered ``ss3d-unified`` model ("models from code").

MLflow copies this file into each model version and runs it when the version is loaded with
``mlflow.pyfunc.load_model``. The weights travel beside it as an ss3d checkpoint, which
:func:`ss3d.model.load_network` reads with ``torch.load(weights_only=True)``: neither this
path nor :func:`ss3d.stages.unified.load_unified` unpickles Python objects, so a registry
cannot hand you code hidden in a weights file. (Running this file is running the code of the
ss3d version that registered the model, as with any pyfunc.)

``predict``: images ``(B, 3, S, S)`` float32, masked RGB in [0, 1] -> latent codes
``(B, latent_dim)`` float32, the shape code the decoder is conditioned on. For meshes and
renders load the network itself (``load_unified``) and use ``ss3d.reconstruct``.
"""

from __future__ import annotations

import mlflow
import numpy as np
import torch
from mlflow.pyfunc import PythonModel


class UnifiedModel(PythonModel):
    # MLflow would wrap predict() for type-hint validation and warn that it has no hints; the
    # logged signature (images -> latents) already states the input and output.
    _skip_type_hint_validation = True

    def load_context(self, context) -> None:  # noqa: ANN001 (MLflow's context type)
        from ss3d.model import load_network

        self.net, _ = load_network(context.artifacts["checkpoint"])

    def predict(self, context, model_input, params=None):  # noqa: ANN001, ANN201
        images = torch.as_tensor(np.asarray(model_input, dtype=np.float32))
        with torch.no_grad():
            return self.net.encode(images).float().numpy()


mlflow.models.set_model(UnifiedModel())
