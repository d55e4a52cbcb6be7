"""The reconstruction network (README: Pre-training): ResNet encoder, latent, decoder.

``net.encode(images (B, 3, H, W)) -> latent (B, L)``
``net.query(points (B, ..., 3), latent (B, L)) -> (rgb_logits (B, ..., 3), density (B, ..., 1))``

Two decoders share that interface (``model.decoder``): the paper's FiLM-SIREN (a global
latent modulates a sine MLP) and :class:`TriplaneDecoder` (the latent generates three
axis-aligned feature planes, read by a small MLP: spatial capacity from the same latent). A
decoder computes its per-image conditioning once (``condition(latent)``) and is then called
on the image's points (``decoder(points, *conditioning)``); the stages never see which one runs.

The FiLM values of an image are computed once per image and broadcast over all of its points:
the latent is never copied per ray or per sample.

The hidden layers run as one fused op each (:mod:`ss3d.fused`: FiLM folded into per-image
weights, a hand-written backward) unless ``model.fused_layers`` is false; both paths have the
same parameters, so checkpoints load either way.

Two deliberate departures from the plain recipe, both chosen by measurement during development:
* density = relu(density_scale · raw), zero outside the object cube;
* the last layer of the FiLM head is zero-initialised, so training starts as an unconditional
  SIREN (frequency 1, shift 0 for every image) and learns the conditioning.
"""

from __future__ import annotations

import math
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from ss3d.config import ModelConfig
from ss3d.config.loading import encoder_feature_side
from ss3d.engine import load_plain
from ss3d.fused import film_sine, film_sine_reference
from ss3d.resnet import resnet

__all__ = ["FiLMSiren", "ImageEncoder", "ReconstructionNet", "TriplaneDecoder", "ViewpointNet",
           "has_viewpoint_net", "load_network"]

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
# Density is forced to 0 outside this cube: the object lives in [-0.5, 0.5]^3; the margin
# absorbs rounding so surfaces on the cube's faces survive.
CUBE_HALF = 0.52


class ImageEncoder(nn.Module):
    """ResNet (no classifier; torchvision's, rebuilt in :mod:`ss3d.resnet` to spare its
    import) + MLP head: ``(B, 3, H, W) -> (B, latent_dim)``.

    Args:
        pretrained_weights: a local torchvision state-dict file (e.g. resnet34-b627a593.pth).
            Nothing is ever downloaded.
    """

    def __init__(self, name: str = "resnet18", latent_dim: int = 256, input_size: int = 64,
                 pretrained_weights: str | Path = ""):
        super().__init__()
        backbone = resnet(name)
        if pretrained_weights:
            path = Path(pretrained_weights)
            if not path.is_file():
                raise FileNotFoundError(f"model.pretrained_weights: file not found: {path}")
            state = load_plain(path, "model.pretrained_weights", kind="weights file")
            missing, unexpected = backbone.load_state_dict(state, strict=False)
            if [k for k in missing if not k.startswith("fc.")] or unexpected:
                raise ValueError(f"{path}: not {name} weights (missing {missing[:3]}, "
                                 f"unexpected {unexpected[:3]})")
        features = backbone.fc.in_features
        backbone.fc = nn.Identity()
        self.backbone = backbone
        self.input_size = input_size
        self.feature_side = encoder_feature_side(input_size)
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1))
        self.head_in = nn.Sequential(nn.Linear(features, latent_dim), nn.LayerNorm(latent_dim),
                                     nn.LeakyReLU(0.2))
        self.head_res = nn.Sequential(nn.Linear(latent_dim, latent_dim), nn.LeakyReLU(0.2),
                                      nn.Linear(latent_dim, latent_dim))

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        if self.training and images.shape[0] * self.feature_side ** 2 < 2:
            raise ValueError(
                f"a training batch of {images.shape[0]} image at model.encoder_size="
                f"{self.input_size} gives the encoder's BatchNorm 1 value per channel (it needs "
                "more than 1): raise optim.batch_size (per process, under torchrun) to >= 2, or "
                "model.encoder_size to >= 33")
        if images.shape[-1] != self.input_size or images.shape[-2] != self.input_size:
            images = F.interpolate(images, size=(self.input_size, self.input_size),
                                   mode="bilinear", align_corners=False, antialias=True)
        x = self.backbone((images - self.mean) / self.std)
        h = self.head_in(x)
        return h + self.head_res(h)


class FiLMSiren(nn.Module):
    """SIREN whose hidden layers are FiLM-modulated by a latent code.

    Layer i: ``h = sin(omega_0 * (freq_i * (W_i h + b_i) + shift_i))`` with
    ``freq_i = 1 + Δfreq_i(latent)`` and ``shift_i = Δshift_i(latent)``.
    Output: 3 colour logits + 1 raw density per point.
    """

    def __init__(self, latent_dim: int = 256, hidden: int = 64, layers: int = 3,
                 omega_0: float = 30.0, fused: bool = True):
        super().__init__()
        self.hidden, self.n_layers, self.omega_0 = hidden, layers, omega_0
        self.fused = fused
        dims = [3] + [hidden] * layers
        self.linears = nn.ModuleList(nn.Linear(dims[i], dims[i + 1]) for i in range(layers))
        self.out = nn.Linear(hidden, 4)
        self.film = nn.Sequential(nn.Linear(latent_dim, latent_dim), nn.LeakyReLU(0.2),
                                  nn.Linear(latent_dim, 2 * layers * hidden))
        self._siren_init()

    @torch.no_grad()
    def _siren_init(self) -> None:
        # Sitzmann et al. 2020: first layer U(-1/in, 1/in), later U(-sqrt(6/in)/w0, ...).
        for i, layer in enumerate(self.linears):
            fan_in = layer.in_features
            bound = 1.0 / fan_in if i == 0 else math.sqrt(6.0 / fan_in) / self.omega_0
            layer.weight.uniform_(-bound, bound)
            layer.bias.uniform_(-1.0 / math.sqrt(fan_in), 1.0 / math.sqrt(fan_in))
        bound = math.sqrt(6.0 / self.hidden) / self.omega_0
        self.out.weight.uniform_(-bound, bound)
        self.out.bias.zero_()
        # zero-initialised FiLM output: frequency 1 and shift 0 for every image at step 0
        self.film[-1].weight.zero_()
        self.film[-1].bias.zero_()

    def film_params(self, latent: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(B, L) -> freq, shift``, each ``(B, layers, hidden)``."""
        values = self.film(latent).view(latent.shape[0], 2, self.n_layers, self.hidden)
        return 1.0 + values[:, 0], values[:, 1]

    def condition(self, latent: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The per-image conditioning :meth:`forward` takes: the FiLM values."""
        return self.film_params(latent)

    def forward(self, points: torch.Tensor, freq: torch.Tensor,
                shift: torch.Tensor) -> torch.Tensor:
        """``points (B, N, 3)``, FiLM ``(B, layers, hidden)`` -> ``(B, N, 4)``."""
        # omega_0 (freq W h + shift) = (omega_0 freq) W h + omega_0 shift: scale the small
        # (B, layers, hidden) FiLM tensors, never the big (B, N, hidden) activations
        freq, shift = self.omega_0 * freq, self.omega_0 * shift
        layer_fn = film_sine if self.fused else film_sine_reference
        h = points
        for i, layer in enumerate(self.linears):
            # FiLM values are (B, hidden) per image, applied to all N points without copies
            h = layer_fn(h, layer.weight, layer.bias, freq[:, i], shift[:, i])
        return self.out(h)


class TriplaneDecoder(nn.Module):
    """Three axis-aligned feature planes generated from the latent, read by a small MLP.

    The FiLM-SIREN turns one global latent into a whole field through a few hundred modulation
    values, so every detail has to come from the sine layers' frequencies. Here the latent is
    decoded by a small convolutional generator into planes ``(B, 3, C, R, R)`` over the object
    cube (XY, XZ and YZ, as EG3D's tri-planes); a point's feature is the sum of its three
    bilinear plane samples, and an MLP of ``layers`` hidden layers maps it to 3 colour logits
    and 1 raw density. The planes are generated from the latent alone, never read from the
    image through a camera: a hypothesised camera still changes what the model shows, which
    self-training's pose choice needs.

    Cost per point: three bilinear reads of ``C`` values and the MLP, about the FiLM-SIREN's at
    the same ``hidden``; per image, the generator (a few convolutions at ``R``² or below).
    """

    def __init__(self, latent_dim: int = 256, hidden: int = 64, layers: int = 2,
                 channels: int = 16, resolution: int = 32):
        super().__init__()
        if resolution < 4 or resolution & (resolution - 1):
            raise ValueError(f"model.plane_resolution must be a power of two >= 4, got "
                             f"{resolution}")
        self.channels, self.resolution = channels, resolution
        width = 4 * channels
        self.seed = nn.Linear(latent_dim, width * 4 * 4)
        ups = []
        side = 4
        while side < resolution:  # 4 -> 8 -> ... -> R: upsample, 3x3 conv, LeakyReLU
            ups += [nn.Upsample(scale_factor=2, mode="bilinear", align_corners=False),
                    nn.Conv2d(width, width, 3, padding=1), nn.LeakyReLU(0.2)]
            side *= 2
        self.generator = nn.Sequential(*ups, nn.Conv2d(width, 3 * channels, 3, padding=1))
        dims = [channels] + [hidden] * layers
        self.mlp = nn.Sequential(*[m for i in range(layers) for m in (
            nn.Linear(dims[i], dims[i + 1]), nn.Softplus(beta=10.0))])
        self.out = nn.Linear(hidden if layers else channels, 4)
        with torch.no_grad():  # start near an empty, grey field, as the FiLM-SIREN's init does
            self.out.weight.mul_(0.1)
            self.out.bias.zero_()

    def condition(self, latent: torch.Tensor) -> tuple[torch.Tensor]:
        """``(B, L) -> planes (B, 3, C, R, R)``."""
        b = latent.shape[0]
        seed = self.seed(latent).view(b, 4 * self.channels, 4, 4)
        planes = self.generator(seed)
        return (planes.view(b, 3, self.channels, self.resolution, self.resolution),)

    def forward(self, points: torch.Tensor, planes: torch.Tensor) -> torch.Tensor:
        """``points (B, N, 3)``, ``planes (B, 3, C, R, R)`` -> ``(B, N, 4)``."""
        b, n = points.shape[:2]
        p = (points / CUBE_HALF).to(planes.dtype)  # the cube onto [-1, 1]
        # (x, y), (x, z), (y, z): grid_sample reads its last coordinate as the row
        coords = torch.stack([p[..., [0, 1]], p[..., [0, 2]], p[..., [1, 2]]], 1)
        feats = F.grid_sample(planes.reshape(b * 3, self.channels, self.resolution,
                                             self.resolution),
                              coords.reshape(b * 3, n, 1, 2), mode="bilinear",
                              padding_mode="border", align_corners=False)  # (3B, C, N, 1)
        feature = feats.view(b, 3, self.channels, n).sum(1).transpose(1, 2)  # (B, N, C)
        out = self.out(self.mlp(feature))
        # raw density through a softplus: the network's relu(density_scale · raw) then never
        # sees a negative raw value. With a plain linear output, the background rays (most of
        # every step's) pushed every raw density below 0 within 100 steps of the embedded
        # pre-training, and relu passed no gradient back: an empty field for good.
        return torch.cat([out[..., :3], F.softplus(out[..., 3:] - 2.0)], -1)


class ViewpointNet(nn.Module):
    """Where was an image taken from? ``images (B, 3, H, W)`` -> azimuth and elevation bins.

    Its own ResNet encoder and an MLP classifier over ``azimuth_bins`` equal azimuth sectors
    (circular) and ``elevation_bins`` equal elevation bands over [-90°, 90°], trained during
    pre-training on the input views' known cameras (soft labels: a Gaussian of one bin over the
    neighbouring bins). Self-training can add ``-log p(azimuth, elevation)`` to each
    hypothesis' score (``selftrain.viewpoint_weight``): a prior that silhouettes cannot give,
    e.g. front from back or above from below (U-CMR and Unicorn use such priors; SS3D does not).

    Why a separate encoder: sharing the reconstruction encoder (a head on the latent) learned
    almost nothing in the embedded budget at a small loss weight and cost shape quality at a
    large one (docs/results.md has the measurements).
    """

    def __init__(self, encoder: str = "resnet18", latent_dim: int = 256, input_size: int = 64,
                 pretrained_weights: str | Path = "", azimuth_bins: int = 24,
                 elevation_bins: int = 12):
        super().__init__()
        self.azimuth_bins, self.elevation_bins = azimuth_bins, elevation_bins
        self.encoder = ImageEncoder(encoder, latent_dim, input_size, pretrained_weights)
        self.classifier = nn.Sequential(nn.Linear(latent_dim, latent_dim), nn.LeakyReLU(0.2),
                                        nn.Linear(latent_dim, azimuth_bins + elevation_bins))

    @property
    def azimuth_width(self) -> float:
        return 360.0 / self.azimuth_bins

    @property
    def elevation_width(self) -> float:
        return 180.0 / self.elevation_bins

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Log-probabilities ``(B, azimuth_bins)`` and ``(B, elevation_bins)``."""
        logits = self.classifier(self.encoder(images)).float()
        return (F.log_softmax(logits[:, :self.azimuth_bins], -1),
                F.log_softmax(logits[:, self.azimuth_bins:], -1))

    def _positions(self, azimuth: torch.Tensor, elevation: torch.Tensor
                   ) -> tuple[torch.Tensor, torch.Tensor]:
        """Continuous bin coordinates (bin k's centre at k) of angles in degrees."""
        return (torch.remainder(azimuth.float(), 360.0) / self.azimuth_width - 0.5,
                (elevation.float() + 90.0) / self.elevation_width - 0.5)

    def log_prob(self, log_azimuth: torch.Tensor, log_elevation: torch.Tensor,
                 azimuth: torch.Tensor, elevation: torch.Tensor) -> torch.Tensor:
        """``log p(azimuth) + log p(elevation)`` of ``(B, P)`` cameras (degrees) under the bin
        log-probabilities ``(B, A)``, ``(B, E)`` of :meth:`forward`: ``(B, P)``.

        Linear between bin centres (circular in azimuth), so that nearby poses score alike.
        """
        u, v = self._positions(azimuth, elevation)
        a0 = torch.floor(u)
        fa = u - a0
        a0 = torch.remainder(a0, self.azimuth_bins).long()
        a1 = torch.remainder(a0 + 1, self.azimuth_bins)
        v = v.clamp(0, self.elevation_bins - 1)
        e0 = torch.floor(v).clamp(max=max(self.elevation_bins - 2, 0)).long()
        fe = (v - e0).clamp(0, 1)
        e1 = (e0 + 1).clamp(max=self.elevation_bins - 1)
        return ((1 - fa) * log_azimuth.gather(1, a0) + fa * log_azimuth.gather(1, a1)
                + (1 - fe) * log_elevation.gather(1, e0) + fe * log_elevation.gather(1, e1))

    def loss(self, images: torch.Tensor, azimuth: torch.Tensor, elevation: torch.Tensor,
             sigma_bins: float = 1.0) -> torch.Tensor:
        """Soft-label cross-entropy of the true cameras ``azimuth, elevation (B,)``."""
        log_az, log_el = self(images)
        u, v = self._positions(azimuth, elevation)
        k_az = torch.arange(self.azimuth_bins, device=images.device, dtype=torch.float32)
        d_az = torch.remainder(k_az[None] - u[:, None] + self.azimuth_bins / 2,
                               self.azimuth_bins) - self.azimuth_bins / 2
        k_el = torch.arange(self.elevation_bins, device=images.device, dtype=torch.float32)
        d_el = k_el[None] - v[:, None]
        target_az = torch.softmax(-0.5 * (d_az / sigma_bins) ** 2, -1)
        target_el = torch.softmax(-0.5 * (d_el / sigma_bins) ** 2, -1)
        return -((target_az * log_az).sum(-1) + (target_el * log_el).sum(-1)).mean()

    def most_likely(self, log_azimuth: torch.Tensor, log_elevation: torch.Tensor
                    ) -> tuple[torch.Tensor, torch.Tensor]:
        """The most likely azimuth and elevation ``(B,)`` (bin centres, degrees)."""
        return ((log_azimuth.argmax(-1).float() + 0.5) * self.azimuth_width,
                (log_elevation.argmax(-1).float() + 0.5) * self.elevation_width - 90.0)


class ReconstructionNet(nn.Module):
    """Encoder + FiLM-SIREN decoder: a single image → a coloured density field."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.cfg = cfg
        self.encoder = ImageEncoder(cfg.encoder, cfg.latent_dim, cfg.encoder_size,
                                    cfg.pretrained_weights)
        self.decoder = (FiLMSiren(cfg.latent_dim, cfg.hidden, cfg.layers, cfg.omega_0,
                                  cfg.fused_layers) if cfg.decoder == "film_siren" else
                        TriplaneDecoder(cfg.latent_dim, cfg.hidden, cfg.layers,
                                        cfg.plane_channels, cfg.plane_resolution))
        self.density_scale = cfg.density_scale
        self.viewpoint = ViewpointNet(cfg.encoder, cfg.latent_dim, cfg.encoder_size,
                                      cfg.pretrained_weights) if cfg.viewpoint_net else None

    def reconstruction_parameters(self) -> list[nn.Parameter]:
        """Encoder and decoder parameters: what every stage's reconstruction loss trains (the
        viewpoint network has its own optimiser in pre-training and is fixed afterwards)."""
        return [*self.encoder.parameters(), *self.decoder.parameters()]

    def encode(self, images: torch.Tensor) -> torch.Tensor:
        """``(B, 3, H, W)`` masked RGB in [0, 1] -> ``(B, latent_dim)``."""
        return self.encoder(images)

    def query(self, points: torch.Tensor,
              latent: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Colour logits ``(B, ..., 3)`` and density ``(B, ..., 1)`` (>= 0) at ``points``."""
        batch, shape = points.shape[0], points.shape[1:-1]
        flat = points.reshape(batch, -1, 3)
        # model.symmetric: the decoder sees one half-space, mirrored about the Y-Z plane
        read = torch.cat([flat[..., :1].abs(), flat[..., 1:]], -1) if self.cfg.symmetric else flat
        raw = self.decoder(read, *self.decoder.condition(latent)).float()
        rgb_logits, density_raw = raw[..., :3], raw[..., 3:]
        inside = (flat.abs() <= CUBE_HALF).all(dim=-1, keepdim=True)
        density = F.relu(self.density_scale * density_raw) * inside
        return rgb_logits.reshape(batch, *shape, 3), density.reshape(batch, *shape, 1)

    def forward(self, images: torch.Tensor, points: torch.Tensor):
        return self.query(points, self.encode(images))


def has_viewpoint_net(payload: dict) -> bool:
    """Whether a checkpoint ``payload`` holds a viewpoint network (checkpoints written before
    the viewpoint network existed have no such key in their model config: they hold none)."""
    return bool(payload.get("config", {}).get("model", {}).get("viewpoint_net", False))


# The function a checkpoint's weights compute depends on these fields of its model config; the
# rest (how rays are sampled, fused or plain layers, where the encoder's initial weights came
# from) is the running experiment's own choice.
FUNCTION_FIELDS = ("encoder", "encoder_size", "latent_dim", "hidden", "layers", "omega_0",
                   "density_scale", "viewpoint_net", "decoder", "plane_channels",
                   "plane_resolution", "symmetric")


def checkpoint_model_config(payload: dict, path: str | Path) -> ModelConfig:
    """The model config a checkpoint ``payload`` (read from ``path``) was trained with."""
    from ss3d.config import ConfigError, from_dict
    from ss3d.engine import CheckpointError

    try:
        model_cfg = from_dict({"model": payload["config"].get("model", {})}, str(path)).model
    except (ConfigError, AttributeError, KeyError) as err:
        raise CheckpointError(f"{path}: checkpoint has no usable model config ({err})") from None
    # a local encoder-weights path is only needed to initialise; the checkpoint has the weights
    model_cfg.pretrained_weights = ""
    model_cfg.viewpoint_net = has_viewpoint_net(payload)
    # written before the key existed: the field was not folded, whatever today's default is
    model_cfg.symmetric = bool(payload["config"].get("model", {}).get("symmetric", False))
    return model_cfg


def adopt_checkpoint_model(model_cfg: ModelConfig, payload: dict,
                           path: str | Path) -> list[str]:
    """Set :data:`FUNCTION_FIELDS` of ``model_cfg`` (in place) to the checkpoint's.

    A stage that continues a checkpoint (self-training, distillation) must run its network as
    it was trained: a ``density_scale`` of 10 in the experiment config and 20 in the checkpoint
    would silently halve every density. Returns one ``"field: run -> checkpoint"`` line per
    field that differed, for the stage to print.
    """
    saved = checkpoint_model_config(payload, path)
    changed = []
    for name in FUNCTION_FIELDS:
        ours, theirs = getattr(model_cfg, name), getattr(saved, name)
        if ours != theirs:
            changed.append(f"model.{name}: {ours!r} -> {theirs!r}")
            setattr(model_cfg, name, theirs)
    return changed


def load_network(path: str | Path, map_location: str | torch.device = "cpu",
                 skip_init: bool = False) -> tuple[ReconstructionNet, dict]:
    """A network rebuilt from a checkpoint's own model config (teachers, evaluation, inference).

    Returns the network (eval mode) and the checkpoint payload. Raises
    :class:`ss3d.engine.CheckpointError` naming the file when it is not an ss3d checkpoint.

    ``skip_init`` builds the modules on PyTorch's meta device and adopts the checkpoint's
    tensors, skipping the random initialisation the checkpoint overwrites anyway (``ss3d
    reconstruct`` uses it; docs/results.md has its cost). The stages keep the default: the
    initialisation draws from the global random stream, and their later draws follow it.
    """
    from ss3d.engine import load_checkpoint

    payload = load_checkpoint(path, map_location=map_location)
    model_cfg = checkpoint_model_config(payload, path)
    if skip_init:
        with torch.device("meta"):
            net = ReconstructionNet(model_cfg)
        net.load_state_dict(payload["model"], assign=True)
    else:
        net = ReconstructionNet(model_cfg)
        net.load_state_dict(payload["model"])
    return net.to(map_location).eval(), payload
