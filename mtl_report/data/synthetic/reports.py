"""Report text composed from the findings (phrase banks, negations, layout variants) and the
CheXpert labels derived from the sentences actually written.

Part of :mod:`mtl_report.data.synthetic` (SYNTHETIC data; see the package docstring)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from mtl_report.data.schema import CHEXPERT_LABELS
from mtl_report.data.synthetic.common import (
    _ATEL,
    _CARDIO,
    _EFF,
    _OPAC,
    _PTX,
    _SIDES,
    FINDING_COLUMNS,
    REPORT_VARIANTS,
    _cap,
    _objects,
    _pick_lists,
)
from mtl_report.data.synthetic.findings import _category

_ADJ = ("", "mild", "moderate", "severe")
_ADV = ("", "mildly", "moderately", "markedly")
_SIZE = ("", "small", "moderate", "large")
_NODULE_MM = ("", "7", "9", "12")
_CODE = {0.0: 1, -1.0: 2, 1.0: 3}  # label value → priority code (0 = not mentioned)
_DECODE = np.array([np.nan, 0.0, -1.0, 1.0])
_LABEL_INDEX = {label: i for i, label in enumerate(CHEXPERT_LABELS)}

EC, CONS, PNA = "Enlarged Cardiomediastinum", "Consolidation", "Pneumonia"
ATEL, CARDIO, EFF, PTX, OPAC = FINDING_COLUMNS


def _forms(grade: int, side: int, zone: int) -> dict[str, str]:
    """Words a template may use, for one (grade, side, zone) combination."""
    bil = side == 3
    name = _SIDES[side] or "right"
    if bil:
        lobe_adj = ("bilateral lower lobe", "bilateral upper lobe", "bilateral mid lung")[zone]
        in_lobe = ("in both lower lobes", "in both upper lobes", "in both mid lungs")[zone]
    elif zone == 2:
        lobe_adj = "right middle lobe" if name == "right" else "lingular"
        in_lobe = "in the right middle lobe" if name == "right" else "in the lingula"
    else:
        lobe_adj = f"{name} {('lower', 'upper')[zone]} lobe"
        in_lobe = f"in the {lobe_adj}"
    basilar = "bibasilar" if bil else f"{name} basilar"
    forms = {
        "adj": _ADJ[grade] or "mild",
        "adv": _ADV[grade] or "mildly",
        "size": _SIZE[grade] or "small",
        "side": name if not bil else "bilateral",
        "s": "s" if bil else "",
        "is_are": "are" if bil else "is",
        "a": "" if bil else "a ",
        "ies": "ies" if bil else "y",
        "lobe_adj": lobe_adj,
        "in_lobe": in_lobe,
        "basilar": basilar,
        "base": "lung bases" if bil else f"{name} lung base",
        "mm": _NODULE_MM[grade] or "8",
    }
    forms.update({_cap(k): _cap(v) for k, v in list(forms.items()) if k[0].islower()})
    return forms


@dataclass(frozen=True)
class _Bank:
    """Sentences expanded for every (grade, side, zone), and their label effects.

    ``texts[t, grade, side, zone]`` is template ``t`` in words followed by one space;
    ``effects[t]`` the CheXpert label codes it implies. Template 0 is the empty sentence
    (slot omitted). Expanding all combinations up front makes report composition a
    fancy-indexing operation, and the trailing spaces make joining a plain concatenation.
    """

    texts: np.ndarray
    effects: np.ndarray

    def text(self, idx: np.ndarray, grade, side, zone) -> np.ndarray:
        return self.texts[idx, grade, side, zone]


def _bank(*templates: tuple[str, Mapping[str, float]]) -> _Bank:
    items = (("", {}), *templates)
    texts = np.empty((len(items), 4, 4, 3), dtype=object)
    effects = np.zeros((len(items), len(CHEXPERT_LABELS)), dtype=np.int8)
    combos = [(g, s, z) for g in range(4) for s in range(4) for z in range(3)]
    for t, (template, labels) in enumerate(items):
        for g, s, z in combos:
            texts[t, g, s, z] = template.format(**_forms(g, s, z)) + " " if template else ""
        for label, value in labels.items():
            effects[t, _LABEL_INDEX[label]] = _CODE[value]
    return _Bank(texts, effects)


# Lungs (opacity: findings sentence and its impression counterpart share the index).
_OPAC_CERTAIN = range(1, 7)
_OPAC_UNCERTAIN = 7
_OPAC_F = _bank(
    ("Patchy opacity {in_lobe}, concerning for pneumonia.", {OPAC: 1, PNA: -1}),
    ("Focal consolidation {in_lobe}, consistent with pneumonia.", {OPAC: 1, CONS: 1, PNA: 1}),
    ("Ill-defined opacit{ies} {in_lobe}.", {OPAC: 1}),
    ("There is {adj} airspace opacity {in_lobe}.", {OPAC: 1}),
    (
        "New {adj} opacity {in_lobe}, which may represent infection or aspiration.",
        {OPAC: 1, PNA: -1},
    ),
    ("Patchy airspace opacit{ies} {in_lobe}.", {OPAC: 1}),
    ("Possible subtle opacity {in_lobe}.", {OPAC: -1}),
)
_OPAC_I = _bank(
    ("{Lobe_adj} opacit{ies}, concerning for pneumonia.", {OPAC: 1, PNA: -1}),
    ("{Lobe_adj} pneumonia.", {OPAC: 1, CONS: 1, PNA: 1}),
    ("{Lobe_adj} opacit{ies}.", {OPAC: 1}),
    ("{Adj} {lobe_adj} airspace opacity.", {OPAC: 1}),
    ("{Lobe_adj} opacit{ies}, possibly infection or aspiration.", {OPAC: 1, PNA: -1}),
    ("Patchy {lobe_adj} opacit{ies}; pneumonia is not excluded.", {OPAC: 1, PNA: -1}),
    ("Possible subtle {lobe_adj} opacity.", {OPAC: -1}),
)
_ATEL_F = _bank(
    ("{Adj} {basilar} atelectasis.", {ATEL: 1}),
    ("Linear atelectasis at the {base}.", {ATEL: 1}),
    ("Plate-like atelectasis at the {base} with mild volume loss.", {ATEL: 1}),
    ("There is {adj} {basilar} atelectasis.", {ATEL: 1}),
    ("Subsegmental atelectasis at the {base}.", {ATEL: 1}),
    ("Possible minimal {basilar} atelectasis.", {ATEL: -1}),
)
_ATEL_I = _bank(
    ("{Adj} {basilar} atelectasis.", {ATEL: 1}),
    ("{Basilar} atelectasis.", {ATEL: 1}),
    ("Possible minimal {basilar} atelectasis.", {ATEL: -1}),
)
_LUNG_CLEAR = range(1, 7)  # no opacity, no atelectasis
_LUNG_OTHERWISE = range(7, 10)  # atelectasis but no opacity
_LUNG_NEG = _bank(
    ("The lungs are clear.", {}),
    ("The lungs are clear without focal consolidation.", {CONS: 0}),
    ("There is no focal consolidation.", {CONS: 0}),
    ("Lungs are well expanded and clear.", {}),
    ("No focal consolidation is seen.", {CONS: 0}),
    ("The lungs are well aerated without focal consolidation.", {CONS: 0}),
    ("No focal consolidation.", {CONS: 0}),
    ("The lungs are otherwise clear.", {}),
    ("There is no focal consolidation.", {CONS: 0}),
)
_EDEMA_POS = range(1, 5)
_EDEMA_NEG = range(5, 8)
_EDEMA = _bank(
    ("Mild pulmonary edema.", {"Edema": 1}),
    ("There is mild interstitial pulmonary edema.", {"Edema": 1}),
    ("Pulmonary vascular congestion with mild interstitial edema.", {"Edema": 1}),
    ("Moderate pulmonary edema.", {"Edema": 1}),
    ("No pulmonary edema.", {"Edema": 0}),
    ("There is no pulmonary edema.", {"Edema": 0}),
    ("No evidence of pulmonary edema.", {"Edema": 0}),
)
_EDEMA_I = _bank(
    ("Mild pulmonary edema.", {"Edema": 1}),
    ("Pulmonary vascular congestion and mild interstitial edema.", {"Edema": 1}),
)
# Pleura: effusion sentences, pneumothorax sentences and the negations.
_EFF_CERTAIN, _EFF_UNCERTAIN = range(1, 7), 7
_PTX_CERTAIN, _PTX_UNCERTAIN = range(8, 12), 12
_PLEURA_NEG, _NO_PTX, _NO_EFF = range(13, 18), range(18, 21), range(21, 23)
_PLEURA = _bank(
    ("{Size} {side} pleural effusion{s}.", {EFF: 1}),
    ("There {is_are} {a}{size} {side} pleural effusion{s}.", {EFF: 1}),
    ("{Size} {side} pleural effusion{s} {is_are} present.", {EFF: 1}),
    ("{Size} {side} pleural effusion{s} with blunting of the costophrenic angle{s}.", {EFF: 1}),
    (
        "Blunting of the {side} costophrenic angle{s} consistent with "
        "{a}{size} pleural effusion{s}.",
        {EFF: 1},
    ),
    ("{Size} layering {side} pleural effusion{s}.", {EFF: 1}),
    ("Possible trace {side} pleural effusion{s}.", {EFF: -1}),
    ("There is a {size} {side} apical pneumothorax.", {PTX: 1}),
    ("{Size} {side} pneumothorax with a visible pleural line.", {PTX: 1}),
    ("A {size} {side} pneumothorax is seen along the lateral chest wall.", {PTX: 1}),
    ("{Size} {side} apical pneumothorax.", {PTX: 1}),
    ("Possible tiny {side} apical pneumothorax.", {PTX: -1}),
    ("No pleural effusion or pneumothorax.", {EFF: 0, PTX: 0}),
    ("There is no pleural effusion or pneumothorax.", {EFF: 0, PTX: 0}),
    ("No pleural effusion or pneumothorax is seen.", {EFF: 0, PTX: 0}),
    ("No pleural effusion. No pneumothorax.", {EFF: 0, PTX: 0}),
    ("No evidence of pleural effusion or pneumothorax.", {EFF: 0, PTX: 0}),
    ("No pneumothorax.", {PTX: 0}),
    ("There is no pneumothorax.", {PTX: 0}),
    ("No pneumothorax is seen.", {PTX: 0}),
    ("No pleural effusion.", {EFF: 0}),
    ("There is no pleural effusion.", {EFF: 0}),
)
_EFF_I = _bank(
    ("{Size} {side} pleural effusion{s}.", {EFF: 1}),
    ("{Side} pleural effusion{s}.", {EFF: 1}),
    ("Possible trace {side} pleural effusion{s}.", {EFF: -1}),
)
_PTX_I = _bank(
    ("{Size} {side} pneumothorax.", {PTX: 1}),
    ("{Side} pneumothorax.", {PTX: 1}),
    ("{Size} {side} apical pneumothorax.", {PTX: 1}),
    ("Possible tiny {side} apical pneumothorax.", {PTX: -1}),
)
# Heart.
_CARDIO_CERTAIN, _CARDIO_UNCERTAIN, _HEART_NORMAL = range(1, 6), 6, range(7, 13)
_HEART = _bank(
    ("{Adj} cardiomegaly.", {CARDIO: 1}),
    ("The heart is {adv} enlarged.", {CARDIO: 1}),
    ("Heart size is {adv} enlarged.", {CARDIO: 1}),
    ("There is {adj} enlargement of the cardiac silhouette.", {CARDIO: 1}),
    ("The cardiac silhouette is {adv} enlarged.", {CARDIO: 1}),
    ("Possible mild cardiomegaly.", {CARDIO: -1}),
    ("Heart size is normal.", {CARDIO: 0}),
    ("The cardiomediastinal silhouette is within normal limits.", {EC: 0}),
    ("The cardiac and mediastinal silhouettes are unremarkable.", {EC: 0}),
    ("Normal heart size.", {CARDIO: 0}),
    ("Heart size and mediastinal contours are normal.", {CARDIO: 0, EC: 0}),
    ("The cardiomediastinal and hilar contours are normal.", {EC: 0}),
)
_CARDIO_I = _bank(
    ("{Adj} cardiomegaly.", {CARDIO: 1}),
    ("Cardiomegaly.", {CARDIO: 1}),
    ("Possible mild cardiomegaly.", {CARDIO: -1}),
)
# Devices (two phrasings per device kind: line, tube, pacemaker) and other remarks.
_DEVICE = _bank(
    (
        "A right internal jugular central venous catheter terminates in the mid SVC.",
        {"Support Devices": 1},
    ),
    ("Right IJ central line tip projects over the cavoatrial junction.", {"Support Devices": 1}),
    ("An endotracheal tube terminates 4 cm above the carina.", {"Support Devices": 1}),
    ("Endotracheal tube tip is 5 cm above the carina.", {"Support Devices": 1}),
    (
        "A left-sided pacemaker has leads terminating in the right atrium and right ventricle.",
        {"Support Devices": 1},
    ),
    ("Left chest wall dual-lead pacemaker device is noted.", {"Support Devices": 1}),
)
_MISC = _bank(
    ("No acute osseous abnormality.", {}),
    ("No displaced rib fractures are seen.", {"Fracture": 0}),
    ("Degenerative changes are noted in the thoracic spine.", {}),
    ("Old healed {side} rib fractures.", {"Fracture": 1}),
    ("A {mm} mm nodule projects over the {side} upper lung.", {"Lung Lesion": 1}),
)
_LESION_I = _bank(
    (
        "{mm} mm {side} upper lung nodule; chest CT is recommended for further evaluation.",
        {"Lung Lesion": 1},
    ),
)
_NORMAL_I = _bank(
    ("No acute cardiopulmonary process.", {}),
    ("No acute cardiopulmonary abnormality.", {}),
    ("No evidence of acute cardiopulmonary disease.", {}),
    ("No acute intrathoracic process.", {}),
    ("Normal chest radiograph.", {}),
    ("No radiographic evidence of pneumonia.", {PNA: 0}),
)

_INDICATIONS: tuple[tuple[str, ...], ...] = (  # by _category
    (
        "chest pain",
        "sudden onset shortness of breath",
        "pleuritic chest pain",
        "fall and chest wall pain",
    ),
    ("dyspnea", "shortness of breath", "dyspnea on exertion", "decreased breath sounds"),
    ("cough and fever", "fever", "productive cough", "hypoxia", "cough"),
    (
        "dyspnea on exertion",
        "leg swelling",
        "history of CHF with shortness of breath",
        "shortness of breath",
    ),
    ("abdominal pain", "shortness of breath", "recent surgery", "weakness"),
    (
        "chest pain",
        "syncope",
        "fall",
        "weakness",
        "palpitations",
        "cough",
        "shortness of breath",
        "fever",
    ),
)
_QUESTIONS = (
    "eval for pneumonia",
    "?pna",
    "r/o acute process",
    "eval for effusion",
    "evaluate for pneumothorax",
    "eval for acute cardiopulmonary process",
    "r/o infiltrate",
    "assess for interval change",
)
_COMPARISONS = (
    "None.",
    "___",
    "Chest radiograph ___.",
    "Prior chest radiographs ___ and ___.",
    "___ chest radiograph.",
)
_NOTIFICATION = (
    " NOTIFICATION:  The findings were discussed with Dr. ___ by Dr. ___ on the telephone on\n"
    " ___ at 2:15 PM, 5 minutes after discovery of the findings.\n"
)
_HEADER = "                                 FINAL REPORT\n"


def _wrap(text: np.ndarray) -> np.ndarray:
    """Wrap paragraphs at about 70–80 columns with a leading space, like MIMIC reports.

    A lazy regex (break at the first space after 66 characters) is several times faster
    than textwrap over 228k reports.
    """
    s = pd.Series(text, dtype=object).str.replace(r"(.{66,}?) ", "\\1\n ", regex=True)
    return s.to_numpy(dtype=object)


def _join(*parts: np.ndarray) -> np.ndarray:
    """Concatenate sentence columns (each sentence ends with a space; empty ones are ``""``)
    and drop the final space."""
    out = parts[0]
    for part in parts[1:]:
        out = out + part
    return pd.Series(out, dtype=object).str.rstrip().to_numpy(dtype=object)


def _pick_index(rng: np.random.Generator, n: int, choices: range | Sequence[int]) -> np.ndarray:
    choices = np.asarray(list(choices))
    return choices[rng.integers(0, len(choices), size=n)]


def _compose_reports(
    rng: np.random.Generator,
    truth: Mapping[str, np.ndarray],
    variant: np.ndarray,
    first_view: np.ndarray,
    female: np.ndarray,
) -> tuple[np.ndarray, np.ndarray]:
    """Free-text reports and their CheXpert labels, composed without a loop over studies.

    Each slot (devices, opacity, atelectasis, lungs, edema, pleura, heart, remarks) picks a
    template index per study; the text is a fancy-index into the expanded bank and the
    labels are the strongest code over the sentences the report actually contains
    (positive > uncertain > negative > not mentioned), as the CheXpert labeler reads them.

    Returns:
        texts (object array; ``""`` for the ``missing`` variant) and labels (n, 14) float.
    """
    n = len(variant)
    present, grade, side = truth["present"], truth["grade"], truth["side"]
    zone, unc = truth["zone"], truth["uncertain"]
    u = rng.random((n, 12))

    def slot_index(f: int, certain: range, uncertain: int) -> np.ndarray:
        idx = np.where(unc[:, f], uncertain, _pick_index(rng, n, certain))
        return np.where(present[:, f], idx, 0)

    g = {f: grade[:, f] for f in range(5)}
    sd = {f: side[:, f] for f in range(5)}
    zero = np.zeros(n, dtype=np.int64)

    # Findings paragraph slots.
    dev_idx = np.where(truth["device"] > 0, 2 * truth["device"] - 1 + (u[:, 0] < 0.5), 0)
    opac_idx = slot_index(_OPAC, _OPAC_CERTAIN, _OPAC_UNCERTAIN)
    atel_idx = slot_index(_ATEL, range(1, 6), 6)
    lung_idx = np.where(
        present[:, _OPAC],
        0,
        np.where(
            present[:, _ATEL],
            np.where(u[:, 1] < 0.7, _pick_index(rng, n, _LUNG_OTHERWISE), 0),
            _pick_index(rng, n, _LUNG_CLEAR),
        ),
    )
    edema_idx = np.where(
        truth["edema"],
        _pick_index(rng, n, _EDEMA_POS),
        np.where(
            (present[:, _CARDIO] & (u[:, 2] < 0.4)) | (u[:, 2] < 0.04),
            _pick_index(rng, n, _EDEMA_NEG),
            0,
        ),
    )
    eff, ptx = present[:, _EFF], present[:, _PTX]
    eff_idx = slot_index(_EFF, _EFF_CERTAIN, _EFF_UNCERTAIN)
    ptx_idx = slot_index(_PTX, _PTX_CERTAIN, _PTX_UNCERTAIN)
    pleura_a = np.select(
        [eff, ptx & (u[:, 3] < 0.6), ~eff & ~ptx & (u[:, 3] < 0.85)],
        [eff_idx, _pick_index(rng, n, _NO_EFF), _pick_index(rng, n, _PLEURA_NEG)],
        0,
    )
    pleura_b = np.where(
        ptx, ptx_idx, np.where(eff & (u[:, 4] < 0.7), _pick_index(rng, n, _NO_PTX), 0)
    )
    heart_idx = np.where(
        present[:, _CARDIO],
        slot_index(_CARDIO, _CARDIO_CERTAIN, _CARDIO_UNCERTAIN),
        np.where(u[:, 5] < 0.9, _pick_index(rng, n, _HEART_NORMAL), 0),
    )
    routine = np.select([u[:, 6] < 0.08, u[:, 6] < 0.13, u[:, 6] < 0.18], [1, 2, 3], 0)
    remark_idx = np.select([truth["fracture"] > 0, truth["lesion"] > 0], [4, 5], 0)
    remark_side = np.maximum(truth["fracture"], truth["lesion"])
    nodule_grade = rng.integers(1, 4, size=n)

    f_slots = [
        (_DEVICE, dev_idx, zero, zero),
        (_OPAC_F, opac_idx, g[_OPAC], sd[_OPAC]),
        (_ATEL_F, atel_idx, g[_ATEL], sd[_ATEL]),
        (_LUNG_NEG, lung_idx, zero, zero),
        (_EDEMA, edema_idx, zero, zero),
        (_PLEURA, pleura_a, g[_EFF], sd[_EFF]),
        (_PLEURA, pleura_b, g[_PTX], sd[_PTX]),
        (_HEART, heart_idx, g[_CARDIO], zero),
        (_MISC, routine, zero, zero),
        (_MISC, remark_idx, nodule_grade, remark_side),
    ]
    f_texts = [bank.text(idx, gr, si, zone) for bank, idx, gr, si in f_slots]
    heart_first = u[:, 7] < 0.35  # two common sentence orders
    order_a = _join(*f_texts)
    order_b = _join(f_texts[0], f_texts[7], *f_texts[1:7], *f_texts[8:])
    findings = np.where(heart_first, order_b, order_a)
    f_effects = np.max([bank.effects[idx] for bank, idx, _, _ in f_slots], axis=0)

    # Impression: positive findings by priority, else a normal impression.
    imp_opac = opac_idx
    imp_eff = np.where(eff, np.where(unc[:, _EFF], 3, 1 + (u[:, 8] < 0.4)), 0)
    imp_ptx = np.where(ptx, np.where(unc[:, _PTX], 4, _pick_index(rng, n, range(1, 4))), 0)
    imp_edema = np.where(truth["edema"], 1 + (u[:, 9] < 0.5), 0)
    imp_cardio = np.where(
        present[:, _CARDIO], np.where(unc[:, _CARDIO], 3, 1 + (u[:, 10] < 0.4)), 0
    )
    imp_atel = np.where(
        present[:, _ATEL] & (u[:, 11] < 0.7),
        np.where(unc[:, _ATEL], 3, 1 + (u[:, 11] < 0.3)),
        0,
    )
    imp_lesion = (truth["lesion"] > 0).astype(np.int64)
    i_slots = [
        (_PTX_I, imp_ptx, g[_PTX], sd[_PTX]),
        (_EFF_I, imp_eff, g[_EFF], sd[_EFF]),
        (_OPAC_I, imp_opac, g[_OPAC], sd[_OPAC]),
        (_EDEMA_I, imp_edema, zero, zero),
        (_CARDIO_I, imp_cardio, g[_CARDIO], zero),
        (_ATEL_I, imp_atel, g[_ATEL], sd[_ATEL]),
        (_LESION_I, imp_lesion, nodule_grade, truth["lesion"]),
    ]
    has_imp = np.any([idx > 0 for _, idx, _, _ in i_slots], axis=0)
    normal_idx = np.where(has_imp, 0, _pick_index(rng, n, range(1, 7)))
    i_slots.append((_NORMAL_I, normal_idx, zero, zero))
    impression = _join(*(bank.text(idx, gr, si, zone) for bank, idx, gr, si in i_slots))
    i_effects = np.max([bank.effects[idx] for bank, idx, _, _ in i_slots], axis=0)

    # Labels: union over the paragraphs the report contains.
    v = np.asarray(variant)
    has_f = v != REPORT_VARIANTS.index("impression")
    has_i = v != REPORT_VARIANTS.index("findings")
    codes = np.maximum(f_effects * has_f[:, None], i_effects * has_i[:, None])
    pathology = [
        i for i, lab in enumerate(CHEXPERT_LABELS) if lab not in ("No Finding", "Support Devices")
    ]
    no_finding = (codes[:, pathology] < 2).all(axis=1)
    codes[:, _LABEL_INDEX["No Finding"]] = np.where(no_finding, 3, 0)
    labels = _DECODE[codes]

    texts = _assemble(rng, v, _wrap(findings), _wrap(impression), truth, first_view, female)
    return texts, labels


def _assemble(
    rng: np.random.Generator,
    variant: np.ndarray,
    findings: np.ndarray,
    impression: np.ndarray,
    truth: Mapping[str, np.ndarray],
    first_view: np.ndarray,
    female: np.ndarray,
) -> np.ndarray:
    """Put header, indication, comparison and the sections together per report variant."""
    n = len(variant)
    u = rng.random((n, 3))
    cat = _category(truth["present"])
    complaint = _pick_lists(rng, cat, _INDICATIONS)
    question = _objects(_QUESTIONS)[rng.integers(0, len(_QUESTIONS), size=n)]
    sex = np.where(female, "F", "M").astype(object)
    person = np.where(female, "woman", "man").astype(object)
    form = rng.integers(0, 4, size=n)
    indication = np.select(
        [form == 0, form == 1, form == 2],
        [
            "___ year old " + person + " with " + complaint + "  // " + question,
            "___ with " + complaint + "  // " + question,
            "___" + sex + " with " + complaint + ", " + question + ".",
        ],
        "History: ___" + sex + " with " + complaint,
    )
    comparison = _objects(_COMPARISONS)[rng.integers(0, len(_COMPARISONS), size=n)]
    ap = first_view == "AP"
    exam = np.where(ap, "CHEST (PORTABLE AP)", "CHEST (PA AND LAT)").astype(object)
    technique = np.where(
        ap,
        np.where(u[:, 0] < 0.5, "Portable AP chest radiograph", "Single frontal view of the chest"),
        np.where(u[:, 0] < 0.5, "Chest PA and lateral", "PA and lateral views of the chest."),
    ).astype(object)
    modern = u[:, 1] < 0.7  # EXAMINATION/INDICATION/TECHNIQUE layout vs the older HISTORY one
    pre = np.where(
        modern,
        _HEADER
        + " EXAMINATION:  "
        + exam
        + "\n \n INDICATION:  "
        + indication
        + "\n \n TECHNIQUE:  "
        + technique
        + "\n \n COMPARISON:  "
        + comparison
        + "\n \n",
        _HEADER + " HISTORY:  " + indication + "\n \n COMPARISON:  " + comparison + "\n \n",
    )

    notify = np.where(truth["present"][:, _PTX] & (u[:, 2] < 0.5), _NOTIFICATION, "")
    notify = notify.astype(object)
    texts = np.full(n, "", dtype=object)
    for name in REPORT_VARIANTS[:-1]:  # "missing" has no text
        m = variant == REPORT_VARIANTS.index(name)
        if not m.any():
            continue
        mod, f_par, i_par, note = modern[m], findings[m], impression[m], notify[m]

        def section(header: str, body: np.ndarray, mod=mod) -> np.ndarray:
            return np.where(
                mod, f" {header}: \n \n " + body + "\n \n", f" {header}:  " + body + "\n \n"
            )

        if name == "findings+impression":
            body = section("FINDINGS", f_par) + section("IMPRESSION", i_par) + note
        elif name == "impression":
            body = section("IMPRESSION", i_par) + note
        elif name == "findings":
            body = section("FINDINGS", f_par)
        elif name == "conclusion":
            body = section("FINDINGS", f_par) + section("CONCLUSION", i_par) + note
        elif name == "combined":
            body = section("FINDINGS AND IMPRESSION", _wrap(f_par + " " + i_par))
        else:  # "none": an older free-text report without section headers
            body = " CHEST RADIOGRAPHS ___\n \n " + _wrap(f_par + " " + i_par) + "\n"
        head = pre[m]
        if name == "none":
            head = _HEADER + " CLINICAL HISTORY:  ___ with " + complaint[m] + ".\n \n"
        texts[m] = (head + body).astype(object)
    return texts
