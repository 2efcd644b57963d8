"""ReportTokenizer: standardisation, vocabulary, encode/decode, persistence, graph export,
and the real IU X-ray report language."""

from __future__ import annotations

import keras
import numpy as np
import pandas as pd
import pytest
import tensorflow as tf
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mtl_report.text import DEID, ReportTokenizer, standardize_report


def std(text: str) -> str:
    return standardize_report(tf.constant([text])).numpy()[0].decode("utf-8")


TRAIN = [
    "The heart is normal. No effusion.",
    "The heart is enlarged. Small left effusion.",
    "No pneumothorax. The lungs are clear.",
    "The lungs are clear, no effusion.",
    "Heart size normal. XXXX lungs are clear. rareword",
]


@pytest.fixture(scope="module")
def tok() -> ReportTokenizer:
    return ReportTokenizer(max_length=12, min_count=2).fit(TRAIN)


# ------------------------------------------------------------------ standardisation
@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("Normal chest x-XXXX.", f"[START] normal chest x {DEID} . [END]"),
        ("No ___ effusion", f"[START] no {DEID} effusion [END]"),
        (
            "1. Bullous emphysema. 2. Probably scarring.",
            "[START] bullous emphysema . probably scarring . [END]",
        ),
        (
            "Nodule 1.5 cm in the apex.There is",
            "[START] nodule 1.5 cm in the apex . there is [END]",
        ),
        (
            "Well-expanded lungs, and/or (PA) view:",
            "[START] well expanded lungs and or pa view [END]",
        ),
        ("The patient's heart... Normal!!", "[START] the patients heart . normal [END]"),
        ("Seen at 10 a.m. today", "[START] seen at 10 am today [END]"),
        ("", "[START] [END]"),
        ("   ...  ", "[START] [END]"),
        ("[START] spoof [END]", "[START] start spoof end [END]"),
    ],
)
def test_standardize(raw, expected):
    assert std(raw) == expected


@pytest.mark.parametrize(
    "raw", ["The heart is normal. 1. No XXXX, effusion.", "Zebra [UNK] at 1.5 cm. x-XXXX."]
)
def test_standardize_is_idempotent_on_its_body(raw):
    body = " ".join(std(raw).split()[1:-1])
    assert std(body) == std(raw)


# ------------------------------------------------------------------ vocabulary
def test_vocabulary_layout_and_min_count(tok):
    vocab = tok.vocabulary
    assert vocab[:4] == ["", "[UNK]", "[START]", "[END]"]
    assert (tok.pad_id, tok.unk_id, tok.start_id, tok.end_id) == (0, 1, 2, 3)
    assert "." in vocab and "heart" in vocab and "effusion" in vocab
    # seen once: below min_count 2
    assert "rareword" not in vocab and "enlarged" not in vocab and DEID not in vocab
    assert tok.vocab_size == len(vocab) == len(set(vocab))
    # most frequent first: "." occurs 9 times
    assert vocab[4] == "."
    assert tok.stats["n_reports"] == len(TRAIN)


def test_fit_is_deterministic_and_order_independent():
    a = ReportTokenizer(min_count=1).fit(TRAIN).vocabulary
    b = ReportTokenizer(min_count=1).fit(TRAIN[::-1]).vocabulary
    assert a == b


def test_max_vocab_caps_the_vocabulary():
    small = ReportTokenizer(min_count=1, max_vocab=8).fit(TRAIN)
    assert small.vocab_size == 8
    assert small.stats["n_words_over_max_vocab"] > 0


def test_invalid_settings_and_unfitted_use():
    with pytest.raises(ValueError):
        ReportTokenizer(max_length=2)
    with pytest.raises(ValueError):
        ReportTokenizer(min_count=0)
    with pytest.raises(RuntimeError, match="not fitted"):
        ReportTokenizer().encode(["x"])
    with pytest.raises(ValueError):
        ReportTokenizer().fit([])
    with pytest.raises(TypeError):
        ReportTokenizer().fit("a single string")


# ------------------------------------------------------------------ encode / decode
def test_encode_shape_specials_padding_and_unknown_words(tok):
    ids = tok.encode(["The heart is normal.", "zebra heart", None, float("nan")])
    assert ids.dtype == np.int32 and ids.shape == (4, 12)
    assert ids[0].tolist()[:7] == [
        2,
        *(tok.vocabulary.index(w) for w in ["the", "heart", "is", "normal", "."]),
        3,
    ]
    assert (ids[0, 7:] == 0).all()
    assert ids[1, 1] == tok.unk_id  # out-of-vocabulary word
    assert ids[2, :3].tolist() == [2, 3, 0]  # missing report: start, end
    assert ids[3, :3].tolist() == [2, 3, 0]
    assert tok.decode(ids[1:2]) == ["[UNK] heart"]


def test_encode_tensor_input_gives_tensor(tok):
    out = tok.encode(tf.constant(["the heart"]))
    assert isinstance(out, tf.Tensor) and out.dtype == tf.int32
    np.testing.assert_array_equal(out.numpy(), tok.encode(["the heart"]))


def test_long_reports_are_truncated_without_end_and_counted(tok):
    long = "the heart is normal . " * 10
    ids = tok.encode([long, "the heart"])
    assert ids.shape == (2, 12)
    assert tok.end_id not in ids[0].tolist() and (ids[0] != 0).all()
    assert tok.count_truncated([long, "the heart"]) == 1
    assert tok.token_lengths([long]).tolist() == [52]
    fitted = ReportTokenizer(max_length=5, min_count=1).fit([long, "the heart"])
    assert fitted.stats["n_truncated"] == 1
    assert fitted.stats["max_report_tokens"] == 52


def test_decoder_io_shifts_by_one(tok):
    ids = tok.encode(["the heart is normal ."])
    dec_in, target = tok.decoder_io(ids)
    assert dec_in.shape == target.shape == (1, 11)
    np.testing.assert_array_equal(dec_in[:, 1:], target[:, :-1])
    assert dec_in[0, 0] == tok.start_id and target[0, 5] == tok.end_id


def test_decode_stops_at_end_and_drops_specials(tok):
    h, n = tok.vocabulary.index("heart"), tok.vocabulary.index("normal")
    ids = np.array([[2, h, 0, n, 3, h, h], [h, h, n, 1, 0, 0, 0]])
    assert tok.decode(ids) == ["heart normal", "heart heart normal [UNK]"]
    assert tok.decode(ids[0]) == ["heart normal"]
    with pytest.raises(ValueError, match="outside the vocabulary"):
        tok.decode([[2, 10_000]])


@settings(
    max_examples=25,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(st.lists(st.lists(st.integers(0, 11), min_size=7, max_size=7), min_size=1, max_size=4))
def test_graph_detokenize_equals_python_decode(tok, rows):
    ids = np.array(rows, dtype=np.int32) % tok.vocab_size
    graph = [s.decode("utf-8") for s in tok.detokenize_graph(tf.constant(ids)).numpy()]
    assert graph == tok.decode(ids)


def test_detokenize_graph_in_tf_function_and_rank1(tok):
    fn = tf.function(tok.detokenize_graph, input_signature=[tf.TensorSpec([None, None], tf.int64)])
    ids = tok.encode(["the heart is normal . no effusion ."])
    out = fn(tf.constant(ids, tf.int64)).numpy()[0].decode()
    assert out == "the heart is normal . no effusion ."
    assert tok.detokenize_graph(tf.constant(ids[0])).numpy().decode() == out
    with pytest.raises(tf.errors.InvalidArgumentError, match="outside the vocabulary"):
        tok.detokenize_graph(tf.constant([[2, tok.vocab_size]]))


def test_save_load_round_trip(tok, tmp_path):
    tok.save(tmp_path / "tk")
    again = ReportTokenizer.load(tmp_path / "tk")
    assert again.vocabulary == tok.vocabulary and again.max_length == tok.max_length
    assert again.stats == tok.stats
    texts = ["the heart is normal . zebra", ""]
    np.testing.assert_array_equal(again.encode(texts), tok.encode(texts))
    with pytest.raises(FileNotFoundError):
        ReportTokenizer.load(tmp_path / "nothing")
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "tokenizer.json").write_text('{"max_length": 60}')
    with pytest.raises(ValueError, match="not a valid"):
        ReportTokenizer.load(tmp_path / "bad")


def test_layer_survives_keras_save_and_load(tok, tmp_path):
    inp = keras.Input((), dtype="string")
    model = keras.Model(inp, tok.layer()(inp))
    model.save(tmp_path / "m.keras")
    loaded = keras.models.load_model(tmp_path / "m.keras")
    x = tf.constant(["The heart is normal. Zebra!"])
    np.testing.assert_array_equal(loaded(x).numpy(), model(x).numpy())


def test_saved_model_uses_core_ops_only(tok, tmp_path):
    layer = tok.layer()

    class Serving(tf.Module):
        @tf.function(input_signature=[tf.TensorSpec([None], tf.string)])
        def round_trip(self, text):
            return tok.detokenize_graph(layer(text))

    module = Serving()
    module.layer = layer
    tf.saved_model.save(module, str(tmp_path / "sm"))
    loaded = tf.saved_model.load(str(tmp_path / "sm"))
    out = loaded.round_trip(tf.constant(["The heart is normal. Zebra."])).numpy()[0]
    assert out.decode() == "the heart is normal . [UNK] ."
    from tensorflow.core.protobuf import saved_model_pb2
    from tensorflow.python.framework import op_def_registry

    proto = saved_model_pb2.SavedModel()
    proto.ParseFromString((tmp_path / "sm" / "saved_model.pb").read_bytes())
    graph = proto.meta_graphs[0].graph_def
    ops = {n.op for n in graph.node} | {n.op for f in graph.library.function for n in f.node_def}
    assert {"StaticRegexReplace", "StringLower", "LookupTableFindV2"} <= ops
    assert all(op_def_registry.get(op) is not None for op in ops)


# ------------------------------------------------------------------ real IU X-ray reports
@pytest.fixture(scope="module")
def iu(shared_data):
    folder = shared_data / "iu_xray_reports"
    reports = pd.read_csv(folder / "indiana_reports.csv")
    split = pd.read_csv(folder / "r2gen_split.csv")
    df = reports.merge(split, on="uid")
    df["report"] = (df["findings"].fillna("") + " " + df["impression"].fillna("")).str.strip()
    train = df.loc[df["split"] == "train", "report"].tolist()
    val = df.loc[df["split"] == "val", "report"].tolist()
    return ReportTokenizer().fit(train), train, val


def test_iu_vocabulary_size_and_unknown_rate(iu):
    tok, train, val = iu
    assert len(train) == 2069 and len(val) == 296
    # Measured 1,209 at min_count 2 (1,680 at min_count 1): a small radiology vocabulary.
    assert 900 <= tok.vocab_size <= 1600
    assert tok.vocabulary[4:7] == [".", "no", "the"]
    assert "[DEID]" in tok.vocabulary[:20]  # XXXX masks are frequent
    ids = tok.encode(val)
    words = ids > tok.end_id
    unk = (ids == tok.unk_id).sum() / ((ids == tok.unk_id).sum() + words.sum())
    assert 0.0 < unk < 0.02  # measured 0.67 %


def test_iu_round_trip_of_in_vocabulary_reports(iu):
    tok, _, val = iu
    ids = tok.encode(val)
    lengths = tok.token_lengths(val)
    standard = [s.decode() for s in standardize_report(tf.constant(val)).numpy()]
    decoded = tok.decode(ids)
    checked = 0
    for text, dec, n, row in zip(standard, decoded, lengths, ids):
        if n <= tok.max_length and tok.unk_id not in row:
            assert dec == " ".join(text.split()[1:-1])
            checked += 1
    assert checked > 150
    graph = [s.decode() for s in tok.detokenize_graph(tf.constant(ids)).numpy()]
    assert graph == decoded
    # Reports longer than 60 tokens are cut (and counted): about a fifth of IU X-ray.
    assert 0 < tok.count_truncated(val) < len(val) // 2


def test_detokenize_graph_traced_first_then_eager():
    """The vocabulary constant cached by a first call inside a trace serves eager calls."""
    fresh = ReportTokenizer(max_length=8, min_count=1).fit(["the heart is normal ."])
    ids = fresh.encode(["the heart is normal ."])
    traced = tf.function(fresh.detokenize_graph)(tf.constant(ids)).numpy()[0].decode()
    assert fresh.detokenize_graph(tf.constant(ids)).numpy()[0].decode() == traced
    assert traced == "the heart is normal ."
