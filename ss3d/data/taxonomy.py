"""ShapeNetCore v2 category names ↔ synset ids (plus ss3d's procedural-only animals).

Dependency-free on purpose: :mod:`ss3d.config` and :mod:`ss3d.data.procedural` import it, so it
imports nothing of ss3d. :func:`canonical_category_keys` (the category check of config
validation) is told which categories have a procedural generator by its caller.

* Every one of the 55 ShapeNetCore v2 synsets has one canonical name (:data:`SHAPENET_CORE`);
  the procedural bird, quadruped and fish use ids outside ShapeNet's range
  (:data:`PROCEDURAL_ONLY`).
* Common aliases (ShapeNet's own synonyms and the names other codebases use: ``vessel``,
  ``plane``, ``monitor``, ``speaker``, ``motorcycle``, ...) resolve to the canonical name.
  Lookup ignores case and treats spaces and hyphens as underscores (``"Trash can"``).
* A synset id (8 digits) resolves to its canonical name; an id that is not in the taxonomy is
  only accepted where the caller allows it (e.g. a synset folder of a real ShapeNet root) and
  is then its own name.

>>> resolve("couch")
('sofa', '04256520')
>>> synset_of("vessel"), name_of("02691156")
('04530566', 'airplane')
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Collection, Iterable, Mapping, Sequence
from pathlib import Path

__all__ = [
    "ALIASES", "NAMES", "PROCEDURAL_ONLY", "SHAPENET_CORE", "SYNSETS", "CategoryKeyError",
    "UnknownCategoryError", "canonical_category_keys", "canonical_name", "close_matches",
    "is_synset_id", "name_of", "normalise", "resolve", "synset_from_yaml_int", "synset_of",
    "synsets_under",
]

# The 55 categories of ShapeNetCore v2 (taxonomy.json), canonical name -> synset id.
SHAPENET_CORE: dict[str, str] = {
    "airplane": "02691156",
    "trash_bin": "02747177",  # "ashcan, trash can, garbage can, wastebin, ..."
    "bag": "02773838",
    "basket": "02801938",
    "bathtub": "02808440",
    "bed": "02818832",
    "bench": "02828884",
    "birdhouse": "02843684",
    "bookshelf": "02871439",
    "bottle": "02876657",
    "bowl": "02880940",
    "bus": "02924116",
    "cabinet": "02933112",
    "camera": "02942699",
    "can": "02946921",  # "can, tin, tin can"
    "cap": "02954340",
    "car": "02958343",
    "cellphone": "02992529",
    "chair": "03001627",
    "clock": "03046257",
    "keyboard": "03085013",
    "dishwasher": "03207941",
    "display": "03211117",
    "earphone": "03261776",
    "faucet": "03325088",
    "file_cabinet": "03337140",
    "guitar": "03467517",
    "helmet": "03513137",
    "jar": "03593526",
    "knife": "03624134",
    "lamp": "03636649",
    "laptop": "03642806",
    "loudspeaker": "03691459",
    "mailbox": "03710193",
    "microphone": "03759954",
    "microwave": "03761084",
    "motorbike": "03790512",
    "mug": "03797390",
    "piano": "03928116",
    "pillow": "03938244",
    "pistol": "03948459",
    "pot": "03991062",  # "pot, flowerpot"
    "printer": "04004475",
    "remote": "04074963",
    "rifle": "04090263",
    "rocket": "04099429",
    "skateboard": "04225987",
    "sofa": "04256520",
    "stove": "04330267",
    "table": "04379243",
    "telephone": "04401088",
    "tower": "04460130",
    "train": "04468005",
    "watercraft": "04530566",  # "vessel, watercraft"
    "washer": "04554684",
}

# Categories that exist only as ss3d procedural generators (ids outside ShapeNet's range).
# Procedural categories ShapeNet lacks (animals), with ids outside ShapeNet's range
PROCEDURAL_ONLY: dict[str, str] = {"bird": "99000001", "quadruped": "99000002",
                                   "fish": "99000003"}

# Every known category, canonical name -> synset id (``ss3d.config.SYNSETS`` is this dict).
SYNSETS: dict[str, str] = {**SHAPENET_CORE, **PROCEDURAL_ONLY}
# synset id -> canonical name
NAMES: dict[str, str] = {synset: name for name, synset in SYNSETS.items()}

# alias -> canonical name (keys already normalised). ShapeNet's synonyms that are unambiguous,
# plus the names used by other codebases (PointFlow, Occupancy Networks, ...).
ALIASES: dict[str, str] = {
    "aeroplane": "airplane", "plane": "airplane",
    "ashcan": "trash_bin", "trash_can": "trash_bin", "trashcan": "trash_bin",
    "garbage_can": "trash_bin", "wastebin": "trash_bin", "waste_bin": "trash_bin",
    "dustbin": "trash_bin", "ash_bin": "trash_bin", "ashbin": "trash_bin",
    "trash_barrel": "trash_bin",
    "traveling_bag": "bag", "travelling_bag": "bag", "suitcase": "bag",
    "handbasket": "basket",
    "bathing_tub": "bathtub", "tub": "bathtub",
    "bookcase": "bookshelf",
    "autobus": "bus", "motorbus": "bus", "motorcoach": "bus", "omnibus": "bus",
    "photographic_camera": "camera",
    "tin": "can", "tin_can": "can",
    "auto": "car", "automobile": "car", "motorcar": "car",
    "cell_phone": "cellphone", "cellular_phone": "cellphone",
    "cellular_telephone": "cellphone", "mobile_phone": "cellphone",
    "computer_keyboard": "keyboard", "keypad": "keyboard",
    "dish_washer": "dishwasher", "dishwashing_machine": "dishwasher",
    "monitor": "display", "video_display": "display",
    "earpiece": "earphone", "headphone": "earphone", "headphones": "earphone",
    "spigot": "faucet",
    "file": "file_cabinet", "filing_cabinet": "file_cabinet",
    "laptop_computer": "laptop",
    "speaker": "loudspeaker", "speaker_unit": "loudspeaker",
    "loudspeaker_system": "loudspeaker", "speaker_system": "loudspeaker",
    "letter_box": "mailbox", "letterbox": "mailbox",
    "mike": "microphone",
    "microwave_oven": "microwave",
    "motorcycle": "motorbike",
    "pianoforte": "piano", "forte_piano": "piano",
    "handgun": "pistol", "side_arm": "pistol",
    "flowerpot": "pot", "flower_pot": "pot",
    "printing_machine": "printer",
    "remote_control": "remote",
    "projectile": "rocket",
    "couch": "sofa", "lounge": "sofa",
    "phone": "telephone", "telephone_set": "telephone",
    "railroad_train": "train",
    "vessel": "watercraft", "boat": "watercraft", "ship": "watercraft",
    "washing_machine": "washer", "automatic_washer": "washer",
}

_SYNSET_RE = re.compile(r"^\d{8}$")


class UnknownCategoryError(ValueError):
    """A name or synset id that is neither in the taxonomy nor allowed by the caller."""


class CategoryKeyError(ValueError):
    """A config key's category that cannot be used; the message names the key and the source.

    :mod:`ss3d.config` re-raises it as its ``ConfigError`` with the same message.
    """


def normalise(text: str) -> str:
    """Lookup form of a name: lower case, spaces and hyphens as underscores."""
    return re.sub(r"[\s\-]+", "_", str(text).strip().lower())


def is_synset_id(text: str) -> bool:
    """Whether ``text`` looks like a ShapeNet synset id (8 digits)."""
    return bool(_SYNSET_RE.match(str(text).strip()))


def canonical_name(name_or_id: str) -> str | None:
    """The canonical name of a taxonomy name, alias or synset id; None if unknown."""
    key = normalise(name_or_id)
    if key in SYNSETS:
        return key
    if key in ALIASES:
        return ALIASES[key]
    return NAMES.get(key)


def close_matches(name: str, n: int = 5) -> list[str]:
    """Canonical names (or aliases, shown as ``alias (=name)``) closest to ``name``."""
    key = normalise(name)
    out: list[str] = []
    for match in difflib.get_close_matches(key, [*SYNSETS, *ALIASES], n=n, cutoff=0.6):
        label = match if match in SYNSETS else f"{match} (={ALIASES[match]})"
        if label not in out:
            out.append(label)
    return out


def resolve(name_or_id: str, *, extra_synsets: Iterable[str] = ()) -> tuple[str, str]:
    """``(canonical name, synset id)`` of a name, alias or synset id.

    ``extra_synsets``: synset ids accepted although not in the taxonomy (for example the
    folders of a real ShapeNet root, see :func:`synsets_under`); such an id is its own name.

    Raises:
        UnknownCategoryError: unknown name (the message lists close matches) or a synset id
            that is neither in the taxonomy nor in ``extra_synsets``.
    """
    text = str(name_or_id).strip()
    name = canonical_name(text)
    if name is not None:
        return name, SYNSETS[name]
    if is_synset_id(text):
        if text in set(extra_synsets):
            return text, text
        raise UnknownCategoryError(
            f"unknown synset id {text!r}: not one of the 55 ShapeNetCore v2 categories (nor "
            f"the procedural-only {', '.join(f'{k} {v}' for k, v in PROCEDURAL_ONLY.items())})")
    close = close_matches(text)
    hint = f"did you mean {', '.join(close)}? " if close else ""
    raise UnknownCategoryError(
        f"unknown category {text!r}; {hint}give an 8-digit synset id, an alias (e.g. vessel, "
        f"plane, monitor) or one of the names {', '.join(SYNSETS)}")


def synset_of(name_or_id: str) -> str:
    """Synset id of a name, alias or known synset id."""
    return resolve(name_or_id)[1]


def name_of(synset: str) -> str:
    """Canonical name of a synset id; an 8-digit id outside the taxonomy is its own name.

    Raises:
        UnknownCategoryError: ``synset`` is not an 8-digit id.
    """
    text = str(synset).strip()
    if not is_synset_id(text):
        raise UnknownCategoryError(f"{synset!r} is not a synset id (8 digits)")
    return NAMES.get(text, text)


def synsets_under(shapenet_root: str | Path) -> list[str]:
    """Sorted synset ids (8-digit folders) found directly under a ShapeNetCore root.

    Both the v1 (``<synset>/<model>/model.obj``) and the v2
    (``<synset>/<model>/models/model_normalized.obj``) layouts keep synsets at the top level,
    which is where :func:`ss3d.data.shapenet.index_shapenet` looks. A missing root gives ``[]``.
    """
    root = Path(shapenet_root)
    if not root.is_dir():
        return []
    return sorted(p.name for p in root.iterdir() if p.is_dir() and is_synset_id(p.name))


def synset_from_yaml_int(value: int) -> str | None:
    """The known synset id that YAML 1.1 turned into ``value``, if any.

    PyYAML reads an unquoted ``04256520`` (only digits 0-7 after a leading 0) as the octal
    number 1138000 and ``99000001`` as an int; this recovers ``'04256520'`` / ``'99000001'``.
    """
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        return None
    for text in (format(value, "o").zfill(8), str(value).zfill(8)):
        if text in NAMES:
            return text
    return None


def canonical_category_keys(values: Mapping[str, Sequence[str]], *, shapenet_root: str,
                            generated: Collection[str], generators: Collection[str],
                            source: str) -> dict[str, list[str]]:
    """Every key's categories as canonical names (in order); CategoryKeyError if one is unusable.

    ``values``: dotted config key → its category values (names, aliases or synset ids), checked
    key by key in the given order. Accepted: a taxonomy name, alias or synset id, or any 8-digit
    synset folder of ``shapenet_root`` (then the id is its own name). Without ``shapenet_root``,
    models are generated, so the categories of the keys in ``generated`` (pre-training and
    held-out categories) must be among ``generators``, the categories that have a procedural
    generator (listed in this order in the message). Other keys (collections, the
    self-training category) may be ingested photos: the render stage checks them. ``source``
    (the config file or "overrides") ends every message.
    """
    root = shapenet_root
    folders: list[str] | None = None

    def canonical(key: str, value: str) -> str:
        nonlocal folders
        is_id = is_synset_id(value)
        if folders is None and root and is_id and value.strip() not in NAMES:
            folders = synsets_under(root)  # the disk is read for such ids only
        try:
            return resolve(value, extra_synsets=folders or ())[0]
        except UnknownCategoryError as err:
            hint = ""
            if is_id:
                hint = (f", and data.shapenet_root={root!r} has no folder {value.strip()}"
                        if root else "; a synset outside the taxonomy needs data.shapenet_root "
                        "set to a ShapeNet folder that has it")
            raise CategoryKeyError(f"{key}: {err}{hint} ({source})") from None

    def generated_name(key: str, value: str) -> str:
        name = canonical(key, value)
        if root:
            return name
        if name not in generators:
            written = "" if value == name else f" ({name})"
            raise CategoryKeyError(
                f"{key}: category {value!r}{written}, synset {SYNSETS[name]}, has no procedural "
                f"generator (those are: {', '.join(generators)}) and "
                f"data.shapenet_root is empty: set data.shapenet_root to a ShapeNetCore folder "
                f"that has it ({source})")
        return name

    return {key: [generated_name(key, v) if key in generated else canonical(key, v)
                  for v in items]
            for key, items in values.items()}
