"""`bnn predict` end to end on real MNIST test digits saved as pictures, its uncertainty
threshold, its three output formats, and bad images (exit 3, with and without --keep-going)."""

import csv
import io
import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from rich.console import Console

from bnn_cli import load_run
from bnn_cli.data.datasets import DATASETS
from bnn_cli.data.images import NamedImage
from bnn_cli.posterior.classify import (
    Answer,
    Prediction,
    entropy_threshold,
    print_answers,
    summarize,
)
from bnn_cli.posterior.threshold import THRESHOLD_FILE
from bnn_cli.report import metrics
from tests.conftest import REAL_DATA_DIR

ROOT = Path(__file__).resolve().parents[1]


def python(*args: object) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, *map(str, args)],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
        cwd=ROOT,
    )


def bnn(*args: object) -> subprocess.CompletedProcess:
    return python("-m", "bnn_cli.cli", *args)


@pytest.fixture(scope="module")
def pictures(tiny_run, tmp_path_factory) -> tuple[list[Path], np.ndarray]:
    """12 real MNIST test digits: PNGs as MNIST stores them, and every third one as a dark digit
    on white paper, 10 times larger, in a JPEG."""
    from bnn_cli.data.idx import read_idx

    folder = tmp_path_factory.mktemp("pictures")
    images = read_idx(REAL_DATA_DIR / "mnist" / "t10k-images-idx3-ubyte.gz")[:12]
    labels = read_idx(REAL_DATA_DIR / "mnist" / "t10k-labels-idx1-ubyte.gz")[:12]
    paths = []
    for i, image in enumerate(images):
        if i % 3 == 2:
            paths.append(folder / f"paper{i}.jpg")
            paper = Image.fromarray(255 - image).resize((280, 280), Image.Resampling.BICUBIC)
            paper.convert("RGB").save(paths[-1], quality=92)
        else:
            paths.append(folder / f"digit{i}.png")
            Image.fromarray(image).save(paths[-1])
    return paths, labels.astype(int)


@pytest.mark.slow
def test_predict_real_digits_saved_as_pictures(tiny_run, pictures, bnn_here):
    paths, labels = pictures
    result = bnn_here("predict", tiny_run, *paths, "--json", "--data-dir", REAL_DATA_DIR)
    assert result.returncode == 0, result.stderr
    assert "warning: --json is deprecated; use --format json" in result.stderr
    document = json.loads(result.stdout)
    assert document["run"] == str(tiny_run) and document["draws"] == 8
    assert document["coverage"] == 0.95 and document["uncertain_above_entropy"] > 0
    answers = document["images"]
    assert [a["image"] for a in answers] == [p.name for p in paths]
    predicted = np.array([a["predicted"] for a in answers])
    assert (predicted == labels).mean() >= 0.75, (predicted, labels)
    for answer in answers:
        assert 0.1 <= answer["probability"] <= 1
        assert 0 <= answer["mutual_information"] <= answer["entropy"] <= np.log(10)
        assert answer["uncertain"] == (answer["entropy"] > document["uncertain_above_entropy"])
    cache = json.loads((tiny_run / THRESHOLD_FILE).read_text())
    assert cache["entropy_by_draws"]["8"] == document["uncertain_above_entropy"]


@pytest.mark.slow
def test_predicting_does_not_import_pymc(tiny_run, pictures):
    """Reading a fit needs PyTensor, not PyMC: importing PyMC (and ArviZ with it) was half of
    `bnn predict`'s start-up."""
    script = (
        "import atexit, sys\n"
        "atexit.register(lambda: print('pymc imported:', 'pymc' in sys.modules))\n"
        "sys.argv = ['bnn', *sys.argv[1:]]\n"
        "from bnn_cli.cli import main\n"
        "raise SystemExit(main())\n"
    )
    paths, _ = pictures
    result = python(
        "-c", script, "predict", tiny_run, paths[0], "--format", "csv", "--data-dir", REAL_DATA_DIR
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[-1] == "pymc imported: False"


@pytest.mark.slow
def test_pictures_predict_as_the_digits_themselves(tiny_run, pictures):
    """The pictures' preprocessing gives back MNIST's digits closely enough that the network
    predicts the same class as on the original arrays."""
    from bnn_cli.data.idx import read_idx
    from bnn_cli.data.images import read_images

    paths, _ = pictures
    run = load_run(tiny_run)
    originals = read_idx(REAL_DATA_DIR / "mnist" / "t10k-images-idx3-ubyte.gz")[:12]
    pixels = np.stack([read_images(p)[0].pixels for p in paths])
    from_pictures = run.predict(pixels, draws=4).mean(axis=0).argmax(axis=1)
    from_arrays = run.predict(originals, draws=4).mean(axis=0).argmax(axis=1)
    assert (from_pictures == from_arrays).mean() >= 11 / 12


@pytest.mark.slow
def test_the_threshold_is_the_95th_percentile_on_validation_and_is_cached(own_tiny_run, tmp_path):
    from bnn_cli.data.datasets import load_splits

    run = load_run(own_tiny_run)
    quiet = Console(file=io.StringIO())
    threshold = entropy_threshold(run, 3, str(REAL_DATA_DIR), quiet)
    x_val = load_splits("mnist", REAL_DATA_DIR, 10000, 1000).x_val
    total, _, _ = metrics.entropy(run.predict(x_val, draws=3))
    assert threshold == pytest.approx(np.quantile(total, 0.95))
    assert (total <= threshold).mean() == pytest.approx(0.95, abs=0.002)
    # cached: no data needed the second time
    assert entropy_threshold(run, 3, str(tmp_path / "no-data"), quiet) == threshold
    # a damaged cache is never trusted: computed again (and here the data is missing)
    (own_tiny_run / THRESHOLD_FILE).write_text("{not json")
    with pytest.raises(Exception, match="no mnist data"):
        entropy_threshold(run, 3, str(tmp_path / "no-data"), quiet)
    assert entropy_threshold(run, 3, str(REAL_DATA_DIR), quiet) == pytest.approx(threshold)


@pytest.mark.slow
def test_bad_images_exit_3_naming_the_file(tiny_run, pictures, tmp_path, bnn_here):
    good = pictures[0][0]
    (tmp_path / "empty.png").write_bytes(b"")
    (tmp_path / "notes.png").write_text("not a picture")
    bad = [tmp_path / "empty.png", tmp_path / "notes.png"]
    stopped = bnn_here("predict", tiny_run, good, *bad, "--data-dir", REAL_DATA_DIR)
    assert stopped.returncode == 3 and stopped.stdout == ""
    assert stopped.stderr.strip() == f"error: '{bad[0]}' is empty (0 bytes)"

    kept = bnn_here(
        "predict",
        tiny_run,
        good,
        *bad,
        "--format",
        "csv",
        "--keep-going",
        "--data-dir",
        REAL_DATA_DIR,
    )
    assert kept.returncode == 3
    rows = list(csv.DictReader(io.StringIO(kept.stdout)))
    assert [row["image"] for row in rows] == [good.name]
    assert rows[0]["predicted"] == "7"  # MNIST's first test digit
    errors = kept.stderr.strip().splitlines()
    assert errors == [
        f"error: '{bad[0]}' is empty (0 bytes)",
        f"error: '{bad[1]}' is not an image that Pillow can read, nor an .npy or IDX file",
        "error: 2 of 3 files could not be read (see above)",
    ]

    nothing = bnn_here("predict", tiny_run, *bad, "--keep-going")
    assert nothing.returncode == 3 and nothing.stdout == ""
    assert nothing.stderr.strip().splitlines()[-1] == (
        "error: none of the 2 files could be read; nothing to predict"
    )


def test_usage_and_run_errors(tmp_path):
    unknown = bnn("predict", tmp_path, "x.png", "--format", "yaml")
    assert unknown.returncode == 2 and unknown.stderr.startswith("error: invalid value")
    both = bnn("predict", tmp_path, "x.png", "--json", "--csv")
    assert both.returncode == 2 and "deprecated" not in both.stderr
    assert both.stderr.startswith("error: choose one output format, not csv and json (")
    missing = bnn("predict", tmp_path / "no-run", "x.png")
    assert missing.returncode == 4
    assert missing.stderr.strip() == f"error: run directory '{tmp_path / 'no-run'}' not found"
    no_images = bnn("predict", tmp_path)
    assert no_images.returncode == 2 and no_images.stderr == (
        "error: missing argument 'IMAGE...' (see 'bnn predict --help')\n"
    )


def test_help_says_how_pictures_are_prepared():
    out = bnn("predict", "--help").stdout
    for words in ("Pillow", ".npy or IDX", "inverted", "20x20", "centre of mass", "--keep-going"):
        assert words in " ".join(out.split()), words


PREDICTION = Prediction(
    run=Path("runs/x"),
    draws=5,
    threshold=0.5,
    answers=[
        Answer("a[1].png", 7, "7", 0.9, 0.3, 0.01, False),
        Answer("b.png", 1, "1", 0.4, 1.2, 0.2, True),
        Answer("c:smile:.png", 3, "3", 0.5, 0.9, 0.1, False),
    ],
)


def test_every_format():
    def render(fmt: str) -> str:
        buffer = io.StringIO()
        print_answers(PREDICTION, fmt, Console(file=buffer, width=120))
        return buffer.getvalue()

    assert render("csv").splitlines() == [
        "image,predicted,label,probability,entropy,mutual_information,uncertain",
        "a[1].png,7,7,0.9,0.3,0.01,False",
        "b.png,1,1,0.4,1.2,0.2,True",
        "c:smile:.png,3,3,0.5,0.9,0.1,False",
    ]
    document = json.loads(render("json"))
    assert document["images"][2]["image"] == "c:smile:.png"  # a name, not an emoji code
    assert document["images"][1] == {
        "image": "b.png",
        "predicted": 1,
        "label": "1",
        "probability": 0.4,
        "entropy": 1.2,
        "mutual_information": 0.2,
        "uncertain": True,
    }
    table = render("table")
    assert "a[1].png" in table and "0.500 nats" in table and "yes" in table
    markdown = render("markdown").splitlines()
    assert "| a[1].png | 7 | 0.900 | 0.300 | 0.010 | no |" in markdown


def test_fashion_mnist_answers_name_their_class():
    images = [NamedImage("shoe.png", np.zeros((28, 28), np.float32))]
    probs = np.zeros((2, 1, 10))
    probs[:, 0, 9] = 1.0
    names = DATASETS["fashion-mnist"].class_names
    (answer,) = summarize(images, probs, threshold=0.5, class_names=names)
    assert (answer.predicted, answer.label) == (9, "Ankle boot")


def test_uncertain_answers_stand_out_in_a_terminal():
    """Only the "yes" of an uncertain image is red; the other cells keep the terminal's colour."""
    buffer = io.StringIO()
    console = Console(file=buffer, width=120, force_terminal=True, color_system="standard")
    print_answers(PREDICTION, "table", console)
    lines = {line.split()[1]: line for line in buffer.getvalue().splitlines() if ".png" in line}
    red = "\x1b[1;31m"
    assert re.search(re.escape(red) + r" *yes", lines["b.png"])
    assert red not in lines["a[1].png"] and red not in lines["c:smile:.png"]
    plain = io.StringIO()
    print_answers(PREDICTION, "table", Console(file=plain, width=120))
    assert "\x1b[" not in plain.getvalue()  # no colour in a pipe
