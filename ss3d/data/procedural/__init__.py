"""Built-in procedural categories, written in the ShapeNetCore v2 layout.

Nothing can be downloaded, so ss3d generates its own textured models. Each category is a
*family* of parametric assemblies of closed primitives (boxes, prisms, solids of revolution,
ellipsoids, cylinders): discrete variants (tail types, body styles, chair bases, lid types, ...)
times widely varying continuous proportions, so that a category's instances really differ in
shape after normalisation. Without that, the "category medoid" baseline (one training shape
predicted for every test shape) scores as well as a reconstruction model and the benchmark
measures recognition, not reconstruction (Tatarchenko et al., CVPR 2019);
``benchmarks/category_variation.py`` measures it.

Colours are consistent per *part* within a category (a base colour per part, e.g. the airplane
nose cone is red and the tail fin blue, with a small per-instance jitter in hue, saturation and
value), and front and back differ as on real objects (cockpit and nose, head- and tail-lights,
beak and head vs tail, screen vs lid back, seat vs back, the bin's front label and pedal), so
that colour supervision means something and front and back views are distinguishable
(near-symmetric shapes made camera selection ambiguous in our measurements).
:func:`describe_model` / :func:`part_colours` report the part colours the texture atlas uses.

Frame: +Y up; the "front" of every category points to +X (nose, hood, beak, the laptop's
screen faces +X, the chair faces +X). Models are centred and scaled to a unit bounding-box
diagonal, like ShapeNetCore v2's ``model_normalized.obj``. Generators work in units of the
object's main length (fuselage, car or bird body length, laptop depth); the normalisation
removes the scale.

Output: ``<root>/<synset>/<model_id>/models/model_normalized.{obj,mtl}`` plus the texture PNG,
with the synset ids of :data:`ss3d.data.taxonomy.SYNSETS` (the procedural bird has an id
outside ShapeNet's range). Everything is deterministic in ``(category, index, seed)``.

Layout of the package:

* :mod:`.primitives`: closed mesh primitives (box, cylinder, sphere, prism, revolve), part UVs
  and placement transforms;
* :mod:`.materials`: part styles, colour jitter, texture tiles and the atlas;
* :mod:`.builder`: the builder that generators add parts to, and the model-level functions
  (:func:`make_model`, :func:`describe_model`, :func:`generate_category`, ...);
* :mod:`.registry`: category name → generator, part palette and synset id;
* one module per category (``airplane``, ``trash_bin``, ``car``, ``laptop``, ``chair``,
  ``bird``) holding its palette and its generator, registered with
  ``@register("name", PALETTE, core=..., front=..., back=..., top=..., bottom=...)``: the
  parts every instance has and the parts that show the frame, which the tests check.

Adding a category is adding one module and its name to :data:`_CATEGORY_MODULES` below (the
name must be in the taxonomy first). The modules are listed, not discovered with ``pkgutil``,
because their import order is the order of :data:`PROCEDURAL_CATEGORIES`, which messages and
iterations (tests, the data stage) show.
"""

from __future__ import annotations

import importlib

from ss3d.data.procedural.builder import (
    PROCEDURAL_VERSION,
    GeneratorVersionError,
    ModelSpec,
    base_colours,
    check_generated_version,
    describe_model,
    generate_category,
    make_model,
    model_id_for,
    part_colours,
    write_model,
)
from ss3d.data.procedural.materials import ATLAS_TILES as ATLAS_TILES
from ss3d.data.procedural.materials import HSV_JITTER as HSV_JITTER
from ss3d.data.procedural.materials import TILE as TILE
from ss3d.data.procedural.registry import CATEGORY_FRAMES, PART_PALETTES, PROCEDURAL_CATEGORIES

__all__ = ["CATEGORY_FRAMES", "PART_PALETTES", "PROCEDURAL_CATEGORIES", "PROCEDURAL_VERSION",
           "GeneratorVersionError", "ModelSpec", "base_colours", "check_generated_version",
           "describe_model", "generate_category", "make_model", "model_id_for",
           "part_colours", "write_model"]

# the category modules, in registration order; importing one registers it
_CATEGORY_MODULES = (
    "airplane",
    "trash_bin",
    "car",
    "laptop",
    "chair",
    "bird",
    "bench",
    "sofa",
    "table",
    "cabinet",
    "bookshelf",
    "display",
    "lamp",
    "loudspeaker",
    "telephone",
    "bottle",
    "mug",
    "bowl",
    "bed",
    "quadruped",
    "fish",
    "rifle",
    "watercraft",
    "guitar",
    "motorbike",
)
for _name in _CATEGORY_MODULES:
    importlib.import_module(f"{__name__}.{_name}")
