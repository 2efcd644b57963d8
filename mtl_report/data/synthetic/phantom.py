"""Phantom chest radiographs with the visible signs of each finding (:func:`render_phantom`).

Part of :mod:`mtl_report.data.synthetic` (SYNTHETIC data; see the package docstring)."""

from __future__ import annotations

from collections.abc import Mapping
from functools import lru_cache

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from mtl_report.data.synthetic.common import _DEVICES, _ZONES, SYNTHETIC_MARK
from mtl_report.data.synthetic.reports import ATEL, CARDIO, EFF, OPAC, PTX


@lru_cache(maxsize=4)
def _grid(size: int) -> tuple[np.ndarray, np.ndarray]:
    c = (np.arange(size, dtype=np.float32) + 0.5) / size
    x, y = np.meshgrid(c, c)
    x.setflags(write=False)
    y.setflags(write=False)
    return x, y


def _soft(z: np.ndarray) -> np.ndarray:
    """Smooth step 0→1 (a logistic via tanh: no overflow warnings)."""
    return 0.5 + 0.5 * np.tanh(0.5 * z)


def _smooth_noise(rng: np.random.Generator, size: int, cells: int) -> np.ndarray:
    """Zero-mean, unit-ish smooth noise: a coarse random grid upsampled bicubically."""
    coarse = rng.standard_normal((cells, cells)).astype(np.float32)
    img = Image.fromarray(coarse, mode="F").resize((size, size), Image.Resampling.BICUBIC)
    return np.asarray(img, dtype=np.float32)


def _blur(a: np.ndarray) -> np.ndarray:
    """A small separable [1, 2, 1] / 4 blur twice (σ ≈ 1 px): softens edges like a PSF."""
    for _ in range(2):
        p = np.pad(a, 1, mode="edge")
        a = (p[:-2, 1:-1] + 2 * p[1:-1, 1:-1] + p[2:, 1:-1]) * 0.25
        p = np.pad(a, 1, mode="edge")
        a = (p[1:-1, :-2] + 2 * p[1:-1, 1:-1] + p[1:-1, 2:]) * 0.25
    return a


@lru_cache(maxsize=4)
def _mark_mask(size: int) -> np.ndarray:
    """The constant ``SYNTHETIC`` stamp for the top-left corner, as a 0–1 mask."""
    img = Image.new("L", (size, size), 0)
    draw = ImageDraw.Draw(img)
    try:
        font = ImageFont.load_default(size=max(8, size // 28))
    except (TypeError, OSError):  # Pillow without FreeType: the bitmap default font
        font = ImageFont.load_default()
    margin = max(2, size // 85)
    draw.text((margin, margin), SYNTHETIC_MARK, fill=255, font=font)
    mask = np.asarray(img, dtype=np.float32) / 255.0
    mask.setflags(write=False)
    return mask


def _stamp(image: np.ndarray) -> np.ndarray:
    """Blend the SYNTHETIC mark into a 0–1 image (constant light gray text)."""
    mask = _mark_mask(image.shape[0])
    return image * (1 - mask) + 0.85 * mask


def _to_uint8(image: np.ndarray) -> np.ndarray:
    return np.clip(np.round(image * 255.0), 0, 255).astype(np.uint8)


def _splat_curve(size: int, xs: np.ndarray, ys: np.ndarray, weight: float) -> np.ndarray:
    """A thin bright curve (devices): points added into an empty image, then blurred."""
    canvas = np.zeros((size, size), dtype=np.float32)
    ix = np.clip((xs * size).astype(int), 0, size - 1)
    iy = np.clip((ys * size).astype(int), 0, size - 1)
    np.add.at(canvas, (iy, ix), weight)
    return np.minimum(_blur(canvas) * 2.0, 1.0)


def _side_signs(side: str) -> tuple[float, ...]:
    """Image-x direction(s) of a patient side: the patient's right is on the image left
    (radiological convention, PA and AP views)."""
    return {"right": (-1.0,), "left": (1.0,), "bilateral": (-1.0, 1.0)}[side]


def _resolve(
    rng: np.random.Generator,
    strength: Mapping[str, float],
    laterality: Mapping[str, str] | None,
    zones: Mapping[str, str] | None,
) -> tuple[dict[str, str], str]:
    """Sides of the lateralised findings and the opacity zone (random where not given)."""
    laterality = dict(laterality or {})
    defaults = {
        "Pleural Effusion": ("right", "left", "bilateral"),
        "Lung Opacity": ("right", "left", "bilateral"),
        "Atelectasis": ("right", "left", "bilateral"),
        "Pneumothorax": ("right", "left"),
        "Lung Lesion": ("right", "left"),
    }
    sides = {}
    for name, options in defaults.items():
        if strength.get(name, 0.0) > 0:
            side = laterality.get(name) or options[rng.integers(len(options))]
            if side not in options:
                raise ValueError(f"laterality of {name} must be one of {options}, got {side!r}")
            sides[name] = side
    zone = (zones or {}).get("Lung Opacity") or _ZONES[rng.integers(3)]
    if zone not in _ZONES:
        raise ValueError(f"opacity zone must be one of {_ZONES}, got {zone!r}")
    return sides, zone


def _strengths(findings: Mapping[str, float]) -> dict[str, float]:
    out = {}
    for name, value in findings.items():
        v = float(value) if value is not None else 0.0
        out[name] = 0.0 if not np.isfinite(v) else float(np.clip(v, 0.0, 1.0))
    return out


def render_phantom(
    findings: Mapping[str, float],
    rng: np.random.Generator,
    size: int = 256,
    laterality: Mapping[str, str] | None = None,
    *,
    zones: Mapping[str, str] | None = None,
    view: str = "PA",
    device: str | None = None,
) -> np.ndarray:
    """A synthetic chest radiograph (uint8, ``(size, size)``) whose signs match ``findings``.

    The phantom is an additive density model: body soft tissue, two air-filled lung fields
    with vessel markings fanning from the hila, mediastinum and heart, spine, clavicles,
    rib hints, diaphragm domes and a gastric bubble; then exposure, smooth and fine noise
    and a small blur. Position, size and contrast vary per image (all from ``rng``), so no
    two images are identical. The anatomy is drawn from ``rng`` *before* anything that
    depends on the findings, so the same seed with and without a finding gives the same
    patient with and without the sign (what the pixel tests compare).

    Signs (patient right = image left):

    - Cardiomegaly: heart shadow wider, cardiothoracic ratio 0.55–0.63 (normal ≈ 0.42);
    - Pleural Effusion: fluid density at the lung base with a meniscus rising laterally,
      blunting the costophrenic angle and hiding the diaphragm contour;
    - Lung Opacity: patchy, mottled densities in a lung zone (lower/upper/middle);
    - Atelectasis: a band-like linear density above the diaphragm, hemidiaphragm raised
      (volume loss);
    - Pneumothorax: a lucent rim without lung markings at the apex and lateral chest wall,
      bounded by a thin bright visceral pleural line;
    - optional: Edema (perihilar haze), Lung Lesion (a nodule), ``device`` ("line",
      "tube" or "pacemaker").

    Args:
        findings: finding name → strength in [0, 1] (0 or missing: absent; 0.45 / 0.7 / 1.0
            are the mild / moderate / severe grades used by the generator).
        rng: the image's generator.
        laterality: finding → ``"left"``, ``"right"`` or ``"bilateral"``; random if absent.
        zones: ``{"Lung Opacity": "lower" | "upper" | "middle"}``; random if absent.
        view: ``"PA"``, ``"AP"`` (portable: magnified heart, higher diaphragm) or
            ``"LATERAL"``/``"LL"`` (a simpler side-view phantom).
        device: support device to draw, if any.
    """
    view = (view or "PA").upper()
    if view in ("LATERAL", "LL"):
        return _render_lateral(findings, rng, size, laterality)
    x_grid, y_grid = _grid(size)
    ap = view == "AP"

    # ---- anatomy: a fixed number of draws, independent of the findings -----------------
    a = rng.standard_normal(14)
    cx = 0.5 + 0.012 * a[0]
    half_w = 0.355 + 0.013 * a[1]
    apex = 0.15 + 0.012 * a[2]
    base = 0.80 + 0.016 * a[3] - (0.035 if ap else 0.0)
    dome = 0.075 + 0.01 * a[4]
    ctr_normal = float(np.clip(0.415 + 0.022 * a[5], 0.36, 0.46))
    heart_dy = 0.01 * a[6]
    med_w = 0.052 + 0.004 * a[7]
    gain, offset, gamma = 1.0 + 0.05 * a[8], 0.025 * a[9], float(np.exp(0.08 * a[10]))
    hilum_dy = 0.012 * a[11]
    rib_shift = 0.01 * a[12]
    bubble_on = a[13] > -0.4
    low_noise = _smooth_noise(rng, size, 6)
    mid_noise = _smooth_noise(rng, size, 22)
    grain = rng.standard_normal((size, size), dtype=np.float32)
    vessel_tex = rng.random((2, 2, 200)).astype(np.float32)
    vessel_phase = rng.uniform(0, 2 * np.pi, size=(2, 2))

    # ---- findings: sides, zones, then each finding's own draws -------------------------
    st = _strengths(findings)
    sides, zone = _resolve(rng, st, laterality, zones)
    cardio, eff, ptx = st.get(CARDIO, 0.0), st.get(EFF, 0.0), st.get(PTX, 0.0)
    opac, atel = st.get(OPAC, 0.0), st.get(ATEL, 0.0)
    edema, lesion = st.get("Edema", 0.0), st.get("Lung Lesion", 0.0)

    ctr = 0.53 + 0.1 * cardio if cardio > 0 else ctr_normal
    ctr += 0.025 if ap else 0.0
    heart_w = ctr * 2 * half_w
    atel_signs = _side_signs(sides[ATEL]) if atel > 0 else ()
    raise_by = {s: (0.015 + 0.02 * atel) if s in atel_signs else 0.0 for s in (-1.0, 1.0)}
    # patient right hemidiaphragm (image left) sits higher
    base_s = {-1.0: base - 0.025 - raise_by[-1.0], 1.0: base - raise_by[1.0]}

    x, y = x_grid, y_grid
    dx = x - cx
    adx = np.abs(dx)
    px = 1.0 / size  # one pixel, in image units

    # ---- geometry -------------------------------------------------------------------
    # Body: torso with shoulders/arms at the top, thinner (darker) towards its edges.
    shoulder = np.clip((y - 0.0) / 0.16, 0, 1)
    torso_w = 0.09 + (half_w + 0.085 - 0.09) * (3 * shoulder**2 - 2 * shoulder**3)
    torso_w = torso_w + 0.07 * np.exp(-(((y - 0.17) / 0.1) ** 2))
    body = _soft((torso_w - adx) / (1.5 * px))
    thick = np.sqrt(np.clip(1 - (dx / (torso_w + 1e-3)) ** 2, 0, 1))

    # Diaphragm: one dome per hemithorax, the costophrenic angles laterally.
    dome_y = np.where(
        dx < 0,
        base_s[-1.0] - dome * np.clip(1 - ((dx + 0.5 * half_w) / (0.6 * half_w)) ** 2, 0, 1),
        base_s[1.0] - dome * np.clip(1 - ((dx - 0.5 * half_w) / (0.6 * half_w)) ** 2, 0, 1),
    )
    below_dome = _soft((y - dome_y) / px)

    # Heart and mediastinum.
    hx = cx + 0.16 * heart_w
    hy = base - 0.10 + heart_dy
    heart_r = np.sqrt(((x - hx) / (heart_w / 2)) ** 2 + ((y - hy) / 0.16) ** 2)
    heart = _soft((1 - heart_r) / (2.5 * px / (heart_w / 2)))
    heart_top = hy - 0.16
    knob = _soft((0.034 - np.hypot(x - (cx + 0.065), y - (heart_top - 0.015))) / px)
    mediastinum = _soft((med_w - adx) / px) * (y < heart_top + 0.02)

    # Lungs: asymmetric ellipses (rounded apex, widest at the base), cut by the domes,
    # the mediastinum and the heart.
    rho = {}
    lungs = {}
    for s in (-1.0, 1.0):
        ex = cx + s * 0.45 * half_w
        ey = base_s[s] - 0.02
        lat = (x - ex) * s
        ax = np.where(lat > 0, 0.62 * half_w, 0.45 * half_w)
        by = np.where(y < ey, ey - apex, 0.15)
        r = np.sqrt(((x - ex) / ax) ** 2 + ((y - ey) / by) ** 2)
        rho[s] = r
        field = _soft((1 - r) / (1.2 * px / (0.5 * half_w)))
        field = field * (1 - below_dome) * (dx * s > 0) * _soft((adx - med_w) / px)
        lungs[s] = field * (1 - heart) * (1 - knob)
    lung = lungs[-1.0] + lungs[1.0]

    # Vessel markings: streaks fanning out of each hilum, fading to the periphery.
    vessels = np.zeros_like(x)
    for i, s in enumerate((-1.0, 1.0)):
        hlx, hly = cx + s * 0.11, 0.46 + hilum_dy + (0.015 if s > 0 else 0.0)
        ddx, ddy = (x - hlx) * s, y - hly
        rr = np.hypot(ddx, ddy)
        th = np.arctan2(ddy, ddx)
        streak = np.zeros_like(x)
        for level, (bins, lo) in enumerate(((60, 0.0), (140, 0.12))):
            wig = th + 0.06 * np.sin(rr * 30 + vessel_phase[i, level])
            idx = ((wig + np.pi) / (2 * np.pi) * bins).astype(np.int64) % bins
            t = vessel_tex[i, level, :bins][idx]
            streak += np.clip((t - 0.72) / 0.28, 0, 1) * (rr > lo)
        vessels += streak * np.exp(-rr / 0.2) * np.clip(rr / 0.03, 0, 1)
        vessels += 0.8 * np.exp(-((rr / 0.035) ** 2))  # hilum

    # ---- pathology -------------------------------------------------------------------
    extra = np.zeros_like(x)  # added density
    marking_keep = np.ones_like(x)

    if eff > 0:
        for s in _side_signs(sides[EFF]):
            level = base_s[s] - (0.035 + 0.17 * eff) + 0.008 * rng.standard_normal()
            lateral = np.clip((adx - 0.15 * half_w) / (0.9 * half_w), 0, 1)
            meniscus = level + (0.05 + 0.03 * eff) * (1 - lateral) ** 1.5
            fluid = _soft((y - meniscus) / (4 * px)) * (dx * s > 0)
            hemithorax = _soft((1 - rho[s]) / 0.03) * _soft((adx - med_w) / px)
            extra += 0.31 * fluid * lungs[s] + 0.08 * fluid * hemithorax * below_dome
            marking_keep *= 1 - 0.8 * fluid * lungs[s]

    if opac > 0:
        zone_y = {"lower": None, "upper": apex + 0.11, "middle": (apex + base) / 2 + 0.03}
        for s in _side_signs(sides[OPAC]):
            yc = zone_y[zone] if zone_y[zone] is not None else base_s[s] - 0.09
            xc = cx + s * half_w * (0.58 + 0.08 * rng.standard_normal())
            n_blobs = 5 + round(4 * opac)
            centers = rng.normal(0, 0.045, size=(n_blobs, 2)) + np.array([xc, yc])
            radii = rng.uniform(0.02, 0.05, size=n_blobs) * (0.8 + 0.5 * opac)
            cloud = np.zeros_like(x)
            for (bx, by_), rad in zip(centers, radii):
                cloud += np.exp(-((x - bx) ** 2 + (y - by_) ** 2) / rad**2)
            patch = np.clip(cloud, 0, 1.2) * (0.55 + 0.9 * np.maximum(mid_noise, 0))
            extra += (0.12 + 0.16 * opac) * np.clip(patch, 0, 1) * lungs[s]

    if atel > 0:
        for s in atel_signs:
            bx = cx + s * half_w * (0.5 + 0.08 * rng.standard_normal())
            by_ = base_s[s] - 0.05 - 0.03 * rng.random()
            angle = s * rng.uniform(-0.25, 0.15)
            half_len = 0.06 + 0.04 * atel
            sigma = 0.006 + 0.004 * atel
            ca, sa = np.cos(angle), np.sin(angle)
            along = (x - bx) * ca + (y - by_) * sa
            perp = -(x - bx) * sa + (y - by_) * ca
            ends = np.exp(-((along / half_len) ** 6))
            band = np.exp(-((perp / sigma) ** 2)) * ends
            haze = np.exp(-((perp / (4 * sigma)) ** 2)) * ends
            extra += ((0.17 + 0.1 * atel) * band + 0.04 * haze) * lungs[s]

    if ptx > 0:
        for s in _side_signs(sides[PTX]):
            gap = 0.10 + 0.22 * ptx
            height = np.clip((y - apex) / (base_s[s] - apex), 0, 1)
            lateral = np.clip(
                ((x - (cx + s * 0.45 * half_w)) * s) / (0.62 * half_w) * 1.5 + 0.6, 0, 1
            )
            weight = np.clip(1.3 - 1.5 * height, 0, 1) * np.maximum(
                lateral, np.clip(1 - 3 * height, 0, 1)
            )
            edge = 1 - gap * weight
            air = lungs[s] * _soft((rho[s] - edge) / 0.01) * (weight > 0.05)
            line = np.exp(-(((rho[s] - edge) / 0.012) ** 2)) * lungs[s] * np.clip(4 * weight, 0, 1)
            marking_keep *= 1 - air
            extra += -0.06 * air + 0.03 * lungs[s] * (1 - air) * weight + 0.17 * line

    if edema > 0:
        for s in (-1.0, 1.0):
            hr_ = np.hypot(x - (cx + s * 0.12), y - 0.47)
            haze = np.exp(-((hr_ / 0.14) ** 2)) * (0.7 + 0.3 * mid_noise)
            extra += 0.12 * edema * np.clip(haze, 0, 1) * lungs[s]

    if lesion > 0:
        s = _side_signs(sides["Lung Lesion"])[0]
        nx = cx + s * half_w * rng.uniform(0.45, 0.75)
        ny = apex + rng.uniform(0.08, 0.18)
        nr = 0.012 + 0.008 * lesion
        extra += 0.22 * _soft((nr - np.hypot(x - nx, y - ny)) / (1.5 * px)) * lung

    if device:
        t = np.linspace(0, 1, 4 * size)
        if device == "line":  # right IJ catheter down to the SVC
            xs = cx - 0.16 + 0.13 * np.sin(t * np.pi / 2) + 0.01 * t
            ys = 0.02 + (heart_top - 0.05) * t
            extra += 0.25 * _splat_curve(size, xs, ys, 0.5)
        elif device == "tube":  # endotracheal tube walls in the trachea
            ys = 0.0 + (heart_top - 0.12) * t
            for off in (-0.008, 0.008):
                extra += 0.2 * _splat_curve(size, cx + off + 0 * t, ys, 0.5)
        elif device == "pacemaker":  # generator in the left upper chest, leads to the heart
            gx, gy = cx + 0.75 * half_w, apex + 0.06
            extra += 0.5 * _soft(
                (1 - np.maximum(np.abs(x - gx) / 0.035, np.abs(y - gy) / 0.022)) / 0.1
            )
            for end in ((cx - 0.02, hy - 0.08), (cx + 0.05, hy + 0.04)):
                xs = gx + (end[0] - gx) * t
                ys = gy + (end[1] - gy) * t + 0.05 * np.sin(np.pi * t)
                extra += 0.3 * _splat_curve(size, xs, ys, 0.6)
        else:
            raise ValueError(f"device must be one of {_DEVICES[1:]}, got {device!r}")

    # ---- bones -----------------------------------------------------------------------
    thorax = _soft((1.04 - np.minimum(rho[-1.0], rho[1.0])) / 0.02)
    t_lat = np.clip(adx / half_w, 0, 1.2)
    period = (base - apex) / 8.5
    phase = (y - apex - 0.015 - rib_shift - 0.09 * t_lat**1.5 + 0.03 * t_lat) / period
    post_ribs = np.exp(-((((phase % 1.0) - 0.5) / 0.13) ** 2))
    phase2 = (y - apex + 0.10 * t_lat - 0.02 - rib_shift) / period
    ant_ribs = np.exp(-((((phase2 % 1.0) - 0.5) / 0.1) ** 2))
    ribs = (0.075 * post_ribs + 0.03 * ant_ribs) * thorax * (t_lat > 0.12) * (y > apex - 0.03)
    clav_y = apex + 0.025 - 0.045 * t_lat + 0.05 * (t_lat - 0.55) ** 2
    clavicle = _soft((0.011 - np.abs(y - clav_y)) / px) * (t_lat > 0.05) * (t_lat < 1.15)
    spine_mod = 0.75 + 0.25 * np.cos(2 * np.pi * (y - apex) / 0.055)
    spine = _soft((0.036 - adx) / px) * spine_mod
    humerus = sum(
        _soft((0.065 - np.hypot(x - (cx + s * (half_w + 0.12)), y - 0.15)) / (2 * px))
        for s in (-1.0, 1.0)
    )
    trachea = _soft((0.016 - adx) / px) * (y < heart_top - 0.03)
    bubble = 0.0
    if bubble_on:
        gbx, gby = cx + 0.52 * half_w, base_s[1.0] + 0.04
        bubble = _soft((1 - np.hypot((x - gbx) / 0.035, (y - gby) / 0.022)) / 0.15)

    # ---- compose ---------------------------------------------------------------------
    height = np.clip((y - apex) / (base - apex), 0, 1)
    density = body * (0.50 + 0.12 * thick)
    density += 0.06 * heart * body + 0.05 * mediastinum + 0.04 * knob
    density += 0.08 * spine * body
    density -= 0.34 * lung * (1.0 - 0.22 * height)
    density += 0.09 * vessels * lung * marking_keep
    density += ribs + 0.16 * clavicle + 0.14 * humerus * body
    density -= 0.10 * trachea * body + 0.15 * bubble
    density += extra * body
    density += 0.025 * low_noise * body
    image = np.clip(gain * density + offset, 0, 1) ** gamma
    image = _blur(image) + 0.012 * grain
    return _to_uint8(_stamp(np.clip(image, 0, 1)))


def _render_lateral(
    findings: Mapping[str, float],
    rng: np.random.Generator,
    size: int,
    laterality: Mapping[str, str] | None,
) -> np.ndarray:
    """A simpler side-view phantom (patient facing image left): one lung field, heart
    anteriorly, spine posteriorly, diaphragm; effusion fills the posterior sulcus,
    cardiomegaly enlarges the heart, opacity adds patchy density."""
    x, y = _grid(size)
    px = 1.0 / size
    a = rng.standard_normal(8)
    cx, cy = 0.5 + 0.015 * a[0], 0.52 + 0.015 * a[1]
    base = 0.80 + 0.02 * a[2]
    gain, offset, gamma = 1.0 + 0.05 * a[3], 0.025 * a[4], float(np.exp(0.08 * a[5]))
    heart_shift = 0.01 * a[6]
    low_noise = _smooth_noise(rng, size, 6)
    mid_noise = _smooth_noise(rng, size, 22)
    grain = rng.standard_normal((size, size), dtype=np.float32)

    st = _strengths(findings)
    cardio, eff, opac = st.get(CARDIO, 0.0), st.get(EFF, 0.0), st.get(OPAC, 0.0)

    body = _soft((1 - np.hypot((x - cx) / 0.36, (y - cy - 0.1) / 0.62)) / 0.01)
    thick = np.sqrt(np.clip(1 - ((x - cx) / 0.36) ** 2, 0, 1))
    dome_y = base - 0.09 * np.clip(1 - ((x - cx + 0.02) / 0.3) ** 2, 0, 1)
    below = _soft((y - dome_y) / px)
    lung_r = np.hypot((x - cx) / 0.27, (y - base + 0.02) / np.where(y < base, 0.6, 0.1))
    lung = _soft((1 - lung_r) / 0.02) * (1 - below)
    hw = 0.13 + 0.06 * cardio
    heart = _soft(
        (
            1
            - np.hypot(
                (x - (cx - 0.1 + heart_shift + 0.5 * (hw - 0.13))) / hw, (y - (base - 0.12)) / 0.15
            )
        )
        / 0.03
    )
    lung = lung * (1 - heart)
    spine_x = cx + 0.24
    vertebra = 0.6 + 0.4 * (np.cos(2 * np.pi * (y - 0.1) / 0.06) > -0.6)
    spine = _soft((0.045 - np.abs(x - spine_x)) / px) * vertebra
    sternum = _soft((0.012 - np.abs(x - (cx - 0.27 + 0.05 * (y - 0.5)))) / px) * (y > 0.3)
    arms = np.exp(-(((y - 0.2) / 0.12) ** 2)) * np.exp(-(((x - cx) / 0.2) ** 2))

    extra = np.zeros_like(x)
    if eff > 0:  # fluid in the posterior costophrenic sulcus (image right), meniscus
        level = base - 0.04 - 0.15 * eff + 0.008 * rng.standard_normal()
        meniscus = level + (0.06 + 0.03 * eff) * np.clip((spine_x - x) / 0.4, 0, 1)
        fluid = _soft((y - meniscus) / (4 * px)) * (x > cx - 0.05)
        extra += 0.3 * fluid * lung
    if opac > 0:
        yc = base - 0.12 + 0.1 * rng.standard_normal()
        centers = rng.normal(0, 0.05, size=(6, 2)) + np.array([cx + 0.05, yc])
        cloud = sum(np.exp(-((x - bx) ** 2 + (y - by_) ** 2) / 0.04**2) for bx, by_ in centers)
        extra += (
            (0.1 + 0.12 * opac)
            * np.clip(cloud, 0, 1)
            * (0.55 + 0.9 * np.maximum(mid_noise, 0)).clip(0, 1)
            * lung
        )

    density = body * (0.5 + 0.14 * thick) + 0.12 * arms * body
    density -= 0.28 * lung
    density += 0.06 * heart * body + 0.12 * spine * body + 0.1 * sternum * body
    density += extra * body + 0.025 * low_noise * body
    image = np.clip(gain * density + offset, 0, 1) ** gamma
    image = _blur(image) + 0.012 * grain
    return _to_uint8(_stamp(np.clip(image, 0, 1)))
