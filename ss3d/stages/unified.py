"""The unified model in MLflow's model registry: registered after distillation, loaded by
name (``models:/ss3d-unified/<version>``) by ``ss3d reconstruct`` and by users.

The weights travel as an ss3d checkpoint read with ``weights_only=True``; the pyfunc wrapper is
:mod:`ss3d.unified_model`.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from pathlib import Path

import mlflow
import torch

from ss3d import tracking
from ss3d.config import ExperimentConfig, to_dict
from ss3d.engine import CheckpointError, save_checkpoint, unwrap
from ss3d.model import ReconstructionNet, load_network

__all__ = ["REGISTERED_MODEL", "load_unified", "register_student"]

REGISTERED_MODEL = "ss3d-unified"
STAGE = "distill"  # the stage the registered checkpoint belongs to


def register_student(student: ReconstructionNet, cfg: ExperimentConfig, *,
                     description: str = "", tags: Mapping[str, str] | None = None
                     ) -> str | None:
    """Log the student as an MLflow pyfunc (:mod:`ss3d.unified_model`, weights in an ss3d
    checkpoint) and register it as ``ss3d-unified``; returns the new model version.

    Not ``mlflow.pytorch.log_model``: that pickles the whole module, and loading a pickle runs
    whatever code it names. Here the weights load with ``weights_only=True``.
    """
    import tempfile
    import warnings

    import mlflow.pyfunc
    import numpy as np
    from mlflow.models import infer_signature
    from mlflow.tracking import MlflowClient

    net = copy.deepcopy(unwrap(student)).to("cpu").eval()  # the caller's copy stays put
    size = cfg.data.crop_size
    example = np.zeros((1, 3, size, size), np.float32)
    with torch.no_grad():
        latent = net.encode(torch.from_numpy(example)).float().numpy()
    with tempfile.TemporaryDirectory(prefix="ss3d-register-") as tmp:
        weights = save_checkpoint(Path(tmp) / "student.pt", stage=STAGE, step=0,
                                  config={"model": to_dict(cfg)["model"]}, model=net)
        with warnings.catch_warnings():
            # MLflow asks for predict() type hints or an input example; the explicit
            # signature already states the input and output shapes
            warnings.simplefilter("ignore", UserWarning)
            import ss3d.unified_model

            info = mlflow.pyfunc.log_model(
                name="model", python_model=ss3d.unified_model.__file__,
                artifacts={"checkpoint": str(weights)},
                registered_model_name=REGISTERED_MODEL,
                signature=infer_signature(example, latent),
                pip_requirements=[f"torch=={torch.__version__.split('+')[0]}", "ss3d"])
    version = getattr(info, "registered_model_version", None)
    if version is None:
        return None
    client = MlflowClient()
    client.update_registered_model(REGISTERED_MODEL, description=(
        "ss3d: one network distilled from the pre-trained synthetic model and the "
        "self-trained category models. predict: masked images (B, 3, S, S) in [0, 1] -> "
        "latent codes; ss3d.stages.unified.load_unified() gives the network."))
    client.update_model_version(REGISTERED_MODEL, str(version), description=description)
    for key, value in (tags or {}).items():
        client.set_model_version_tag(REGISTERED_MODEL, str(version), key, value)
    return str(version)


def load_unified(version: str = "latest") -> ReconstructionNet:
    """The registered student, by name: ``models:/ss3d-unified/<version>``.

    Reads the version's checkpoint with ``weights_only=True`` (no unpickling of code).
    """
    from mlflow.artifacts import download_artifacts

    mlflow.set_tracking_uri(tracking.tracking_uri())
    local = Path(download_artifacts(artifact_uri=f"models:/{REGISTERED_MODEL}/{version}"))
    found = sorted(local.glob("artifacts/*.pt"))
    if not found:
        raise CheckpointError(f"models:/{REGISTERED_MODEL}/{version}: no ss3d checkpoint in "
                              f"the model's artifacts ({local}); it was registered by an "
                              "older ss3d that pickled the module; distil again")
    net, _ = load_network(found[0])
    return net.eval()
