"""SavedModel export for TF Serving: same answers as ``mtl-report generate``, REST requests
as TF Serving feeds them, clean INVALID_ARGUMENT errors for bad requests.

One tiny model is trained on synthetic studies and exported once per test process (the
session fixtures of tests/conftest.py, shared with the image-limit and fuzz tests); the exported
model is then called on the real images of ../shared/data. TF Serving itself is not
available here; :class:`ServingSession` does what it does with a SavedModel (TF1-style
``LoadSavedModel`` into a session, feeds by the SignatureDef's tensor names, fetches its
outputs), and :func:`rest_to_feeds` converts a REST ``predict`` body as its JSON layer does
(``{"b64": ...}`` → bytes, numbers → the signature's dtype, type mismatches rejected).
"""

from __future__ import annotations

import base64
import io
import json
import math
import subprocess
import sys
import textwrap
from contextlib import redirect_stdout
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf
from serving_helpers import STRINGS

from mtl_report.data.schema import VITALS
from mtl_report.export import (
    PIXELS_SIGNATURE,
    SERVING_DEFAULT,
    WARMUP_FILE,
    prediction_log_bytes,
)

#: ED data of the test requests: abbreviations, °C typed as °F, implausible and missing
#: vitals, diastolic above systolic, unseen categories, punctuation and case.
STUDIES = [
    {
        "o2sat": 97.0,
        "heartrate": 88.0,
        "resprate": 18.0,
        "sbp": 128.0,
        "dbp": 79.0,
        "temperature": 98.4,
        "gender": "F",
        "ethnicity": "WHITE - RUSSIAN",
        "chief_complaint": "SOB, CP..",
        "icd_title": "Pneumonia, unspecified organism",
    },
    {
        "o2sat": math.nan,
        "heartrate": 112.0,
        "resprate": 400.0,
        "sbp": 90.0,
        "dbp": 95.0,
        "temperature": 38.6,
        "gender": " male ",
        "ethnicity": "",
        "chief_complaint": "s/p Fall w/ head strike; n/v/d",
        "icd_title": "",
    },
    {
        "o2sat": 92.0,
        "heartrate": math.nan,
        "resprate": math.nan,
        "sbp": math.nan,
        "dbp": math.nan,
        "temperature": math.nan,
        "gender": "",
        "ethnicity": "BLACK/AFRICAN AMERICAN",
        "chief_complaint": "",
        "icd_title": "CHF exacerbation (HTN)",
    },
]


# --------------------------------------------------------------------------------------
# Fixtures
# --------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def run_dir(serving_run_dir):
    return serving_run_dir


@pytest.fixture(scope="module")
def exported(serving_export):
    return serving_export


@pytest.fixture(scope="module")
def images(shared_data) -> list[Path]:
    """Real X-rays of different sizes: IU X-ray (RGB JPEG) and a pneumonia image."""
    iu = sorted((shared_data / "iu_xray_sample" / "images").glob("*"))[:2]
    pneumonia = sorted((shared_data / "pneumonia_sample" / "images").glob("*"))[:1]
    paths = [*iu, *pneumonia]
    assert len(paths) == 3
    return paths


@pytest.fixture(scope="module")
def session(serving_session):
    return serving_session


def _request(paths, studies) -> dict[str, np.ndarray]:
    """The serving_default tensors for image files + ED dicts (NaN = missing)."""
    x = {"image_bytes": np.array([Path(p).read_bytes() for p in paths], object)}
    for v in VITALS:
        x[v] = np.array([s.get(v, math.nan) for s in studies], np.float32)
    for s_ in STRINGS:
        x[s_] = np.array([s.get(s_, "").encode() for s in studies], object)
    return x


def rest_to_feeds(body: str, signature_def) -> tuple[str, dict[str, np.ndarray]]:
    """A REST ``predict`` body → (signature name, feeds), as TF Serving's JSON layer does.

    Row (``instances``) or columnar (``inputs``) form; ``{"b64": ...}`` only for DT_STRING
    inputs; numbers for float inputs (``NaN`` allowed); anything else is INVALID_ARGUMENT.
    """
    request = json.loads(body)
    name = request.get("signature_name", SERVING_DEFAULT)
    sig = signature_def[name]
    if "instances" in request:
        rows = request["instances"]
        columns = {k: [row[k] for row in rows if k in row] for k in rows[0]}
    else:
        columns = request["inputs"]
    feeds = {}
    for key, values in columns.items():
        if key not in sig.inputs:
            raise tf.errors.InvalidArgumentError(None, None, f"unknown input {key!r}")
        dtype = tf.dtypes.as_dtype(sig.inputs[key].dtype)

        def convert(v, key=key, dtype=dtype):
            if isinstance(v, list):
                return [convert(u) for u in v]
            if dtype == tf.string:
                if isinstance(v, dict) and set(v) == {"b64"}:
                    return base64.b64decode(v["b64"], validate=True)
                if isinstance(v, str):
                    return v.encode()
            elif isinstance(v, int | float) and not isinstance(v, bool):
                return float(v)
            raise tf.errors.InvalidArgumentError(
                None, None, f"JSON value {v!r} of {key!r} is not of expected type {dtype.name}"
            )

        array = np.array([convert(v) for v in values], object if dtype == tf.string else None)
        feeds[key] = array if dtype == tf.string else array.astype(dtype.as_numpy_dtype)
    return name, feeds


@pytest.mark.slow
# --------------------------------------------------------------------------------------
# The export
# --------------------------------------------------------------------------------------
def test_export_layout_signatures_and_assets(exported):
    from tensorflow.python.tools import saved_model_cli

    path = exported.path
    assert path.name == "1" and exported.version == 1
    for name in ("saved_model.pb", "variables/variables.index", "assets/findings.txt"):
        assert (path / name).is_file(), name
    assert (path / "assets" / "findings.txt").read_text().split("\n")[:5] == [
        "Atelectasis",
        "Cardiomegaly",
        "Pleural Effusion",
        "Pneumothorax",
        "Lung Opacity",
    ]
    # What `saved_model_cli show --dir PATH --all` prints for the signatures (without its
    # last part, which loads the whole model again to list the tf.functions).
    out = io.StringIO()
    with redirect_stdout(out):
        saved_model_cli._show_signature_def_map_keys(str(path), "serve")
        for name in (SERVING_DEFAULT, PIXELS_SIGNATURE):
            saved_model_cli._show_inputs_outputs(str(path), "serve", name)
    shown = out.getvalue()
    for text in (
        'SignatureDef key: "serving_default"',
        'SignatureDef key: "generate_from_pixels"',
        "inputs['image_bytes']",
        "inputs['image'] tensor_info",
        "outputs['report']",
        "outputs['acuity_level']",
        "outputs['findings_probs']",
        "inputs['temperature']",
    ):
        assert text in shown, text


@pytest.mark.slow
def test_exported_graph_has_no_ops_a_standard_tf_serving_lacks(exported):
    from tensorflow.core.protobuf import saved_model_pb2

    sm = saved_model_pb2.SavedModel()
    sm.ParseFromString((exported.path / "saved_model.pb").read_bytes())
    graph = sm.meta_graphs[0].graph_def
    ops = {n.op for n in graph.node}
    for fn in graph.library.function:
        ops |= {n.op for n in fn.node_def}
        assert "_XlaMustCompile" not in fn.attr, fn.signature.name
    # XLA-only ops need XLA at run time (off in TF Serving by default); Py*Func needs
    # Python; file and print ops are what `saved_model_cli scan` flags.
    forbidden = {o for o in ops if o.startswith("Xla") or "PyFunc" in o}
    forbidden |= ops & {"ReadFile", "WriteFile", "PrintV2"}
    assert not forbidden, forbidden
    # Every op is a registered core TensorFlow op (no tensorflow-text, no custom kernels).
    from tensorflow.python.framework import op_def_registry

    assert {o for o in ops if op_def_registry.get(o) is None} == set()


@pytest.mark.slow
def test_warmup_requests_are_prediction_logs_for_both_signatures(exported, session):
    prediction_log_pb2 = pytest.importorskip("tensorflow_serving.apis.prediction_log_pb2")

    records = list(
        tf.data.TFRecordDataset(
            str(exported.path / "assets.extra" / WARMUP_FILE)
        ).as_numpy_iterator()
    )
    assert len(records) == exported.warmup_requests == 3
    names = []
    for record in records:
        log = prediction_log_pb2.PredictionLog.FromString(record)
        request = log.predict_log.request
        names.append(request.model_spec.signature_name)
        feeds = {k: tf.make_ndarray(v) for k, v in request.inputs.items()}
        out = session.run(request.model_spec.signature_name, feeds)
        assert len(out["report"]) == len(feeds["gender"])
    assert names == [SERVING_DEFAULT, SERVING_DEFAULT, PIXELS_SIGNATURE]


def test_hand_written_prediction_log_equals_the_proto_library(monkeypatch):
    prediction_log_pb2 = pytest.importorskip("tensorflow_serving.apis.prediction_log_pb2")

    inputs = {"image_bytes": np.array([b"\x89PNG"], object), "o2sat": np.array([97.0], "f4")}
    with_library = prediction_log_bytes("m", "sig", inputs)
    monkeypatch.setitem(sys.modules, "tensorflow_serving.apis", None)  # import fails
    by_hand = prediction_log_bytes("m", "sig", inputs)
    assert prediction_log_pb2.PredictionLog.FromString(by_hand) == (
        prediction_log_pb2.PredictionLog.FromString(with_library)
    )


_FRESH_PROCESS = textwrap.dedent(
    """
    import json, sys
    import numpy as np
    import tensorflow as tf

    export_dir, request_file, out_file = sys.argv[1:]
    request = np.load(request_file, allow_pickle=True)
    model = tf.saved_model.load(export_dir)
    results = {}
    for name in ("serving_default", "generate_from_pixels"):
        keys = [k for k in request.files if k.startswith(name + "/")]
        if not keys:
            continue
        feeds = {k.split("/", 1)[1]: tf.constant(request[k]) for k in keys}
        out = model.signatures[name](**feeds)
        results[name] = {
            k: (v.numpy().tolist() if v.dtype != tf.string else
                [s.decode() for s in v.numpy()])
            for k, v in out.items()
        }
    assert not any(m.startswith("mtl_report") for m in sys.modules), "imported mtl_report"
    json.dump(results, open(out_file, "w"))
    """
)


@pytest.mark.slow
def test_savedmodel_in_a_fresh_process_equals_the_report_generator(
    exported, run_dir, images, tmp_path
):
    from mtl_report.models.aksoy import AksoyReportGenerator

    # generate_from_pixels: a client that decoded a PNG itself (no JPEG DCT scaling, so
    # the pixels are exactly what decode_image sees for the same file).
    pixels = tf.io.decode_image(images[2].read_bytes(), channels=1, expand_animations=False)
    pixels = tf.image.resize(pixels, [150, 120], antialias=True)
    pixels = tf.cast(tf.round(pixels), tf.uint8)
    png = tmp_path / "client.png"
    png.write_bytes(tf.io.encode_png(pixels).numpy())
    request = {f"{SERVING_DEFAULT}/{k}": v for k, v in _request(images, STUDIES).items()}
    one = _request([png], STUDIES[:1])
    one.pop("image_bytes")
    one["image"] = tf.cast(pixels, tf.float32).numpy()[None]
    request.update({f"{PIXELS_SIGNATURE}/{k}": v for k, v in one.items()})
    np.savez(tmp_path / "request.npz", **request)

    proc = subprocess.run(
        [
            sys.executable,
            "-c",
            _FRESH_PROCESS,
            str(exported.path),
            str(tmp_path / "request.npz"),
            str(tmp_path / "out.json"),
        ],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    served = json.loads((tmp_path / "out.json").read_text())

    generator = AksoyReportGenerator.from_preset(run_dir)
    cases = [
        (served[SERVING_DEFAULT], generator.generate([str(p) for p in images], STUDIES)),
        (served[PIXELS_SIGNATURE], generator.generate([str(png)], STUDIES[:1])),
    ]
    for out, expected in cases:
        assert len(out["report"]) == len(expected)
        for i, exp in enumerate(expected):
            assert out["report"][i] == exp["report"]
            assert exp["report"]  # a report was generated
            assert out["acuity_level"][i] == exp["acuity_level"]
            np.testing.assert_allclose(out["acuity_probs"][i], exp["acuity_probs"], atol=1e-5)
            np.testing.assert_allclose(
                out["findings_probs"][i], list(exp["findings"].values()), atol=1e-5
            )


# --------------------------------------------------------------------------------------
# REST requests and bad input
# --------------------------------------------------------------------------------------
def _rest_body(images, studies, columnar=False) -> str:
    rows = []
    for path, study in zip(images, studies):
        row = {"image_bytes": {"b64": base64.b64encode(Path(path).read_bytes()).decode()}}
        row.update({k: study[k] for k in (*VITALS, *STRINGS)})
        rows.append(row)
    if columnar:
        body = {
            "signature_name": SERVING_DEFAULT,
            "inputs": {k: [r[k] for r in rows] for k in rows[0]},
        }
    else:
        body = {"signature_name": SERVING_DEFAULT, "instances": rows}
    return json.dumps(body)  # NaN is written as NaN, which TF Serving's parser accepts


@pytest.mark.slow
@pytest.mark.parametrize("columnar", [False, True], ids=["instances", "inputs"])
def test_rest_predict_body_runs_as_tf_serving_feeds_it(session, images, columnar):
    body = _rest_body(images, STUDIES, columnar)
    assert '"b64"' in body
    name, feeds = rest_to_feeds(body, session.signatures)
    out = session.run(name, feeds)
    assert out["report"].shape == (3,) and all(isinstance(r, bytes) for r in out["report"])
    assert out["acuity_probs"].shape == (3, 5) and out["findings_probs"].shape == (3, 5)
    np.testing.assert_allclose(out["acuity_probs"].sum(axis=1), 1.0, atol=1e-6)
    assert set(out["acuity_level"].tolist()) <= {1, 2, 3, 4, 5}
    assert out["acuity_level"].dtype == np.int32


def _feeds(images, **changes):
    feeds = _request(images, STUDIES[: len(images)])
    feeds.update(changes)
    return feeds


@pytest.mark.slow
@pytest.mark.parametrize(
    ("case", "message"),
    [
        ("undecodable", r"image_bytes\[0\]: cannot decode image"),
        ("truncated", r"image_bytes\[0\]: cannot decode image"),
        ("empty_image", r"image_bytes\[0\]: cannot decode image"),
        ("missing_input", "You must feed a value for placeholder"),
        ("batch_mismatch", "has batch size"),
        ("empty_batch", "empty batch"),
        ("pixels_nan", "NaN or infinite"),
        ("pixels_channels", "C in 1..4"),
    ],
)
def test_malformed_requests_fail_with_invalid_argument(session, images, case, message):
    signature = SERVING_DEFAULT
    feeds = _feeds(images[:1])
    jpeg = images[0].read_bytes()
    if case == "undecodable":
        feeds["image_bytes"] = np.array([b"this is not an image at all"], object)
    elif case == "truncated":
        feeds["image_bytes"] = np.array([jpeg[: len(jpeg) // 2]], object)
    elif case == "empty_image":
        feeds["image_bytes"] = np.array([b""], object)
    elif case == "missing_input":
        del feeds["temperature"]
    elif case == "batch_mismatch":
        feeds["gender"] = np.array([b"F", b"M"], object)
    elif case == "empty_batch":
        feeds = {k: v[:0] for k, v in feeds.items()}
    else:
        signature = PIXELS_SIGNATURE
        feeds.pop("image_bytes")
        image = np.full((1, 40, 36, 1), 120.0, np.float32)
        if case == "pixels_nan":
            image[0, 3, 4, 0] = np.nan
        else:
            image = np.full((1, 40, 36, 5), 120.0, np.float32)
        feeds["image"] = image
    with pytest.raises(tf.errors.InvalidArgumentError, match=message):
        session.run(signature, feeds)


@pytest.mark.slow
@pytest.mark.parametrize(
    "change",
    [
        {"o2sat": "ninety-seven"},  # a string where the signature says float
        {"image_bytes": 12345},  # a number where it says string
        {"image_bytes": {"b64": "***not base64***"}},
    ],
)
def test_wrong_json_types_are_rejected_as_tf_serving_does(session, images, change):
    body = json.loads(_rest_body(images[:1], STUDIES[:1]))
    body["instances"][0].update(change)
    with pytest.raises((tf.errors.InvalidArgumentError, ValueError)):
        rest_to_feeds(json.dumps(body), session.signatures)


def _vocabulary_sizes(run) -> dict:
    """``build_aksoy_model``'s vocabulary sizes of a run, as training computes them."""
    return {**run.preprocessor().vocabulary_sizes(), "report": run.tokenizer().vocab_size}


@pytest.mark.slow
def test_presets_without_a_task_leave_its_outputs_out(run_dir, tmp_path, images):
    """stl_findings: no decoder, no acuity head → only ``findings_probs`` is served."""
    import shutil

    from mtl_report.export import ServingGraph
    from mtl_report.models.aksoy import AksoyReportGenerator, build_aksoy_model
    from mtl_report.models.aksoy.aksoy_setups import get_setup
    from mtl_report.run import Run

    run = Run.read(run_dir)
    stl = tmp_path / "stl"
    shutil.copytree(run_dir, stl, ignore=shutil.ignore_patterns("logs"))
    mc, tc = get_setup("stl_findings", run.model_config)
    vocab = _vocabulary_sizes(run)
    model = build_aksoy_model(
        mc, vocab, tc, tuple(run.load_model().input["image_features"].shape[1:])
    )
    model.save(stl / "model.keras")
    info = json.loads((stl / "config.json").read_text())
    info["model"] = mc.to_dict()
    (stl / "config.json").write_text(json.dumps(info))

    graph = ServingGraph(AksoyReportGenerator.from_preset(stl))
    assert graph.outputs == ["findings_probs"]
    feeds = {k: tf.constant(v) for k, v in _request(images[:2], STUDIES[:2]).items()}
    out = graph.serve_bytes(feeds)
    assert set(out) == {"findings_probs"} and out["findings_probs"].shape == (2, 5)


def test_a_findings_guided_model_serves_with_the_findings_from_its_own_head(
    run_dir, tmp_path, images
):
    """mtl_tp_guided: the serving graph tells the decoder nothing; the head decides."""
    import shutil

    from mtl_report.export import ServingGraph
    from mtl_report.models.aksoy import AksoyReportGenerator, build_aksoy_model
    from mtl_report.models.aksoy.aksoy_setups import get_setup
    from mtl_report.run import Run

    run = Run.read(run_dir)
    guided = tmp_path / "guided"
    shutil.copytree(run_dir, guided, ignore=shutil.ignore_patterns("logs"))
    mc, tc = get_setup("mtl_tp_guided", run.model_config)
    shape = tuple(run.load_model().input["image_features"].shape[1:])
    model = build_aksoy_model(mc, _vocabulary_sizes(run), tc, shape)
    model.get_layer("findings_tokens").set_thresholds([0.3] * 5)
    model.save(guided / "model.keras")
    info = json.loads((guided / "config.json").read_text())
    info["model"] = mc.to_dict()
    (guided / "config.json").write_text(json.dumps(info))

    graph = ServingGraph(AksoyReportGenerator.from_preset(guided))
    assert {"report", "findings_probs"} <= set(graph.outputs)
    feeds = {k: tf.constant(v) for k, v in _request(images[:2], STUDIES[:2]).items()}
    out = graph.serve_bytes(feeds)
    served = [r.decode() for r in out["report"].numpy()]
    local = AksoyReportGenerator.from_preset(guided).generate(
        [str(p) for p in images[:2]], STUDIES[:2]
    )
    assert served == [r["report"] for r in local]
    # Attention maps of a guided decoder cover the image regions (not the finding tokens).
    from mtl_report.explain import explain_image

    generator = AksoyReportGenerator.from_preset(guided)
    exp = explain_image(generator, str(images[0]), STUDIES[0])
    maps = exp.word_maps()
    assert exp.report == served[0] and all(m.shape == exp.grid for m in maps)


def test_overwrite_never_replaces_a_folder_that_is_not_an_exported_version(run_dir, tmp_path):
    from mtl_report.data.errors import DataError
    from mtl_report.export import export_run

    (tmp_path / "1").mkdir()
    (tmp_path / "1" / "notes.txt").write_text("mine")
    with pytest.raises(DataError, match=r"1: not a SavedModel version \(no saved_model\.pb\)"):
        export_run(run_dir, tmp_path, version=1, overwrite=True)
    assert (tmp_path / "1" / "notes.txt").read_text() == "mine"
