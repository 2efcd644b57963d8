"""Three-class SYNTHETIC studies (Normal / Pneumonia / Tuberculosis) for the RadGen classifier.

Each study is a phantom chest radiograph from :func:`mtl_report.data.synthetic.render_phantom`
with the class's sign composed onto it, and a short report whose wording agrees with it:

- **normal**: the plain phantom; reports say so with varied phrasing and negations
  ("no focal consolidation", "no cavitation");
- **pneumonia** → *lobar consolidation*: a homogeneous dense region in one lower or middle
  lobe, sharply bounded above by the fissure, with darker branching air bronchograms;
- **tuberculosis** → *upper-lobe cavitary / nodular pattern*: clustered small nodules and
  patchy opacity in one or both upper zones, often a thick-walled cavity (a bright ring
  with a lucent centre), sometimes apical volume loss streaks.

About 12 % of the abnormal reports are hedged or non-specific ("patchy opacity, infection
not excluded"), and some normals mention incidental findings, so the text alone is strong
but not perfect evidence, as in real reports; the image carries the rest.

The default class ratio is the RadGen cohort's 519 : 4202 : 1312 (Normal : Pneumonia : TB),
scaled to ``n_studies``. About 20 % of patients have two studies (same class), so
patient-level splitting and grouped cross-validation matter. The output is a prepared
``"classification"`` dataset (:func:`mtl_report.data.io.write_prepared`), marked synthetic in
``dataset.json`` and stamped ``SYNTHETIC`` on every image.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image

from mtl_report.data.cohort import CohortLog
from mtl_report.data.errors import DataError
from mtl_report.data.image_table import class_counts
from mtl_report.data.io import write_prepared
from mtl_report.data.outputs import atomic_dir, check_prepared_out
from mtl_report.data.splits import DEFAULT_FRACTIONS, split_by_patient
from mtl_report.data.synthetic.phantom import _blur, _grid, _soft, render_phantom

CLASSES: tuple[str, ...] = ("normal", "pneumonia", "tuberculosis")
#: RadGen cohort sizes (Normal : Pneumonia : TB).
DEFAULT_RATIO: tuple[int, int, int] = (519, 4202, 1312)
HEDGED_FRACTION = 0.12

Progress = Callable[[str, int], Callable[[int], None]]


# --------------------------------------------------------------------------------------
# Signs, composed on the phantom (0–1 float image, patient right = image left)
# --------------------------------------------------------------------------------------
def _lung_x(side: str, rng: np.random.Generator) -> float:
    return (0.31 if side == "right" else 0.69) + 0.02 * rng.standard_normal()


def add_lobar_consolidation(
    image: np.ndarray, rng: np.random.Generator, side: str, lobe: str
) -> np.ndarray:
    """A dense homogeneous lobar opacity with a sharp fissure edge and air bronchograms.

    Args:
        image: ``(S, S)`` float in [0, 1].
        side: ``"right"`` or ``"left"`` (patient side).
        lobe: ``"lower"`` or ``"middle"``.
    """
    size = image.shape[0]
    x, y = _grid(size)
    px = 1.0 / size
    cx = _lung_x(side, rng)
    cy = (0.63 if lobe == "lower" else 0.52) + 0.02 * rng.standard_normal()
    rx, ry = 0.10 + 0.02 * rng.random(), 0.09 + 0.02 * rng.random()
    fissure = cy - ry * (0.55 + 0.2 * rng.random())
    body = _soft((1.0 - np.hypot((x - cx) / rx, (y - cy) / ry)) / 0.12)
    body = body * _soft((y - fissure) / (0.6 * px))
    density = (0.30 + 0.12 * rng.random()) * body
    # Air bronchograms: a few darker branching lines inside the consolidation.
    lines = np.zeros_like(image)
    for _ in range(rng.integers(2, 5)):
        angle = rng.uniform(-0.6, 0.6) + (np.pi / 2)
        t = np.linspace(0, ry * 1.4, 80)
        xs = cx + 0.5 * rx * rng.uniform(-1, 1) + t * np.cos(angle) * 0.4
        ys = fissure + t * np.sin(angle) * 0.8
        ix = np.clip((xs * size).astype(int), 0, size - 1)
        iy = np.clip((ys * size).astype(int), 0, size - 1)
        np.add.at(lines, (iy, ix), 1.0)
    lines = np.minimum(_blur(lines) * 2.0, 1.0) * body
    return np.clip(image + density - 0.12 * lines, 0.0, 1.0)


def add_upper_lobe_tb(
    image: np.ndarray, rng: np.random.Generator, sides: Sequence[str], cavity: bool
) -> np.ndarray:
    """Clustered nodules and patchy opacity in the upper zone(s), optionally a cavity.

    Args:
        image: ``(S, S)`` float in [0, 1].
        sides: patient side(s) involved.
        cavity: draw a thick-walled cavity (bright ring, lucent centre) in the first side.
    """
    size = image.shape[0]
    x, y = _grid(size)
    out = image.copy()
    for k, side in enumerate(sides):
        cx = _lung_x(side, rng)
        cy = 0.29 + 0.02 * rng.standard_normal()
        patch = _soft((1.0 - np.hypot((x - cx) / 0.11, (y - cy) / 0.08)) / 0.3)
        out += (0.10 + 0.06 * rng.random()) * patch
        for _ in range(rng.integers(6, 14)):
            nx, ny = cx + 0.09 * rng.standard_normal(), cy + 0.055 * rng.standard_normal()
            r = 0.012 + 0.01 * rng.random()
            out += 0.22 * np.exp(-(((x - nx) ** 2 + (y - ny) ** 2) / (2 * r * r)))
        if cavity and k == 0:
            kx, ky = cx + 0.02 * rng.standard_normal(), cy + 0.01 * rng.standard_normal()
            radius = 0.035 + 0.015 * rng.random()
            dist = np.hypot(x - kx, y - ky)
            ring = np.exp(-(((dist - radius) / 0.012) ** 2))
            lucent = _soft((radius - 0.008 - dist) / 0.006)
            out += 0.32 * ring - 0.22 * lucent
        if rng.random() < 0.4:  # apical fibrotic streaks (volume loss)
            for _ in range(3):
                sx = cx + 0.06 * rng.standard_normal()
                streak = np.exp(-(((x - sx - 0.3 * (y - 0.2)) / 0.006) ** 2)) * (y > 0.16)
                out += 0.12 * streak * (y < cy + 0.05)
    return np.clip(out, 0.0, 1.0)


# --------------------------------------------------------------------------------------
# Reports: varied phrasing, negations, some hedging
# --------------------------------------------------------------------------------------
_NORMAL = (
    "The lungs are clear. No focal consolidation, pleural effusion or pneumothorax. "
    "Heart size is normal.",
    "No acute cardiopulmonary abnormality. Lungs are well expanded and clear.",
    "Clear lungs without consolidation or cavitation. Cardiomediastinal silhouette is "
    "within normal limits.",
    "No evidence of pneumonia. No nodules or cavities. No effusion.",
    "Normal chest radiograph. The upper lobes are clear. No airspace disease.",
    "Heart and mediastinum are normal. No focal opacity. No pleural abnormality.",
)
_NORMAL_INCIDENTAL = (
    "Minimal linear atelectasis at the {side} base. Otherwise the lungs are clear. "
    "No consolidation.",
    "Lungs are clear. Old healed {side} rib fracture. No acute process.",
)
_PNEUMONIA = (
    "Dense consolidation in the {side} {lobe} lobe with air bronchograms, consistent with "
    "lobar pneumonia. No cavitation. No pleural effusion.",
    "{Side} {lobe} lobe airspace consolidation compatible with pneumonia. The upper lobes "
    "are clear.",
    "Homogeneous opacity of the {side} {lobe} lobe bounded by the fissure, in keeping with "
    "lobar pneumonia. No pneumothorax.",
    "Lobar pneumonia of the {side} {lobe} lobe. No cavity or nodule is seen.",
    "Focal consolidation in the {side} {lobe} zone, likely bacterial pneumonia. Heart size "
    "is normal.",
)
_TB = (
    "Cavitary lesion with surrounding nodular opacities in the {side} upper lobe, "
    "suspicious for reactivation tuberculosis. No lower lobe consolidation.",
    "{Side} upper lobe fibronodular opacities with a thick walled cavity, consistent with "
    "pulmonary tuberculosis.",
    "Clustered nodules in the {side} apex and upper zone, concerning for active "
    "tuberculosis. No pleural effusion.",
    "Upper lobe predominant nodular and cavitary disease ({side}), typical of "
    "post primary tuberculosis.",
    "Apical scarring and nodular infiltrates in the {side} upper lobe, tuberculosis is "
    "likely. The lung bases are clear.",
)
_HEDGED = (
    "Patchy opacity in the {side} lung, infection not excluded. Clinical correlation recommended.",
    "Ill defined {side} sided opacity. Differential includes pneumonia or other infection.",
    "Nonspecific {side} lung opacities. Follow up radiograph suggested.",
)
_TB_NO_CAVITY = " No definite cavity."


def _fill(template: str, side: str, lobe: str = "") -> str:
    return template.format(side=side, Side=side.capitalize(), lobe=lobe)


def compose_report(
    label: str, rng: np.random.Generator, side: str = "right", lobe: str = "lower", cavity=True
) -> str:
    """A report for one study of class ``label`` (random template, hedged at times)."""
    if label == "normal":
        if rng.random() < 0.15:
            return _fill(_NORMAL_INCIDENTAL[rng.integers(len(_NORMAL_INCIDENTAL))], side)
        return _NORMAL[rng.integers(len(_NORMAL))]
    if label not in ("pneumonia", "tuberculosis"):
        raise ValueError(f"unknown label {label!r}; expected one of {CLASSES}")
    if rng.random() < HEDGED_FRACTION:
        return _fill(_HEDGED[rng.integers(len(_HEDGED))], side)
    if label == "pneumonia":
        return _fill(_PNEUMONIA[rng.integers(len(_PNEUMONIA))], side, lobe)
    text = _fill(_TB[rng.integers(len(_TB))], side)
    if not cavity and "cavit" not in text:
        text += _TB_NO_CAVITY
    return text


# --------------------------------------------------------------------------------------
# Studies and the prepared dataset
# --------------------------------------------------------------------------------------
def class_sizes(n_studies: int, ratio: Sequence[float] = DEFAULT_RATIO) -> list[int]:
    """Studies per class for ``n_studies`` at ``ratio`` (largest remainder; ≥ 2 each)."""
    ratio = np.asarray(ratio, dtype=float)
    if len(ratio) != len(CLASSES) or (ratio <= 0).any():
        raise ValueError(f"ratio needs {len(CLASSES)} positive numbers, got {list(ratio)}")
    if n_studies < 2 * len(CLASSES):
        raise ValueError(f"need at least {2 * len(CLASSES)} studies, got {n_studies}")
    exact = n_studies * ratio / ratio.sum()
    sizes = np.maximum(np.floor(exact).astype(int), 2)
    order = np.argsort(-(exact - np.floor(exact)))
    i = 0
    while sizes.sum() < n_studies:
        sizes[order[i % len(order)]] += 1
        i += 1
    while sizes.sum() > n_studies:
        sizes[int(np.argmax(sizes))] -= 1
    return [int(s) for s in sizes]


def render_study(
    label: str, rng: np.random.Generator, size: int = 128
) -> tuple[np.ndarray, str, dict]:
    """One study: ``(uint8 image (size, size), report, sign parameters)``."""
    side = ("right", "left")[rng.integers(2)]
    lobe = ("lower", "middle")[int(rng.random() < 0.3)]
    cavity = bool(rng.random() < 0.6)
    if label == "normal":
        image = render_phantom({}, rng, size)
        params: dict = {}
    elif label == "pneumonia":
        base = render_phantom({}, rng, size).astype(np.float32) / 255.0
        image = add_lobar_consolidation(base, rng, side, lobe)
        params = {"side": side, "lobe": lobe}
    elif label == "tuberculosis":
        base = render_phantom({}, rng, size).astype(np.float32) / 255.0
        sides = [side] if rng.random() < 0.7 else [side, "left" if side == "right" else "right"]
        image = add_upper_lobe_tb(base, rng, sides, cavity)
        params = {"side": side, "sides": sides, "cavity": cavity}
    else:
        raise ValueError(f"unknown label {label!r}; expected one of {CLASSES}")
    if image.dtype != np.uint8:
        image = np.clip(np.round(image * 255.0), 0, 255).astype(np.uint8)
    report = compose_report(label, rng, side, lobe, cavity)
    return image, report, params


def prepare_synthetic_classes(
    out: Path,
    n_studies: int = 600,
    *,
    seed: int = 0,
    image_size: int = 128,
    ratio: Sequence[float] = DEFAULT_RATIO,
    fractions: Sequence[float] = DEFAULT_FRACTIONS,
    progress: Progress | None = None,
    overwrite: bool = True,
) -> CohortLog:
    """Generate and write a three-class SYNTHETIC classification dataset.

    Args:
        out: output directory (replaced atomically).
        n_studies: total studies, split over the classes at ``ratio``.
        seed: seed of everything (images, reports, patients, split).
        image_size: side of the written PNG images.
        ratio: Normal : Pneumonia : TB sizes (default 519 : 4202 : 1312).
        fractions: train/val/test fractions (patient-level, stratified).
        progress: ``progress(description, total) -> update(n)`` or None.
        overwrite: replace an existing prepared dataset in ``out`` (never anything else;
            see :func:`mtl_report.data.outputs.check_prepared_out`).

    Returns:
        The cohort log (also ``out/cohort_log.json``).
    """
    if image_size < 32:
        raise DataError(f"image_size must be >= 32, got {image_size}")
    try:
        sizes = class_sizes(n_studies, ratio)
    except ValueError as exc:
        raise DataError(str(exc)) from None
    rng = np.random.default_rng(seed)
    labels = np.repeat(np.array(CLASSES, dtype=object), sizes)
    rng.shuffle(labels)
    # Patients: ~20 % of them have two studies of the same class.
    subjects = np.empty(len(labels), dtype=object)
    next_id = 10_000_000
    for cls in CLASSES:
        idx = np.flatnonzero(labels == cls)
        i = 0
        while i < len(idx):
            take = 2 if (rng.random() < 0.2 and i + 1 < len(idx)) else 1
            subjects[idx[i : i + take]] = f"s{next_id}"
            next_id += 1
            i += take
    update = progress("rendering synthetic studies", len(labels)) if progress else None
    log = CohortLog("synthetic_classes", unit="studies")
    log.start("synthetic studies", len(labels))
    out = Path(out).absolute()
    check_prepared_out(out, (), overwrite)
    with atomic_dir(out, overwrite) as tmp:
        (tmp / "images").mkdir()
        rows = []
        for i, label in enumerate(labels):
            image, report, _ = render_study(str(label), rng, image_size)
            name = f"images/syn{i:06d}.png"
            Image.fromarray(image).save(tmp / name, optimize=False)
            rows.append(
                {
                    "study_id": f"syn{i:06d}",
                    "subject_id": subjects[i],
                    "image_path": name,
                    "label": str(label),
                    "report": report,
                }
            )
            if update:
                update(1)
        records = pd.DataFrame(rows)
        records["split"] = split_by_patient(
            records, fractions, seed=seed, stratify=records["label"]
        )
        counts = class_counts(records, CLASSES)
        metadata = {
            "kind": "classification",
            "source": "synthetic_classes",
            "synthetic": True,
            "classes": list(CLASSES),
            "class_counts": counts,
            "ratio": [float(r) for r in ratio],
            "seed": seed,
            "image_size": image_size,
            "fractions": [float(f) for f in fractions],
        }
        cleaning = {
            "classes": list(CLASSES),
            "train_class_counts": counts["train"],
            "fitted_on": "train",
            "n_train": int((records["split"] == "train").sum()),
        }
        log.info["classes"] = list(CLASSES)
        write_prepared(tmp, records, log, metadata, cleaning)
    return log
