"""`python -m how_cnns_learn predict`: the prediction on a bundled data set, on an .npz and an image folder written
here, the simulation and its outputs, and bad input (a clear error, nothing written)."""

import json
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from how_cnns_learn import data, predict
from how_cnns_learn.__main__ import main as cli


def template_images(per_class: int = 6, noise: float = 0.02, seed: int = 0, n: int = 8):
    """Three classes whose templates are cos(0,2), cos(1,1) and sin(0,2) (two share the pair ±(0,2)), plus noise."""
    structure = data.shared_pair_structure(n=n)
    rng = np.random.default_rng(seed)
    y = np.repeat(np.arange(3), per_class)
    amplitude = np.array([3.0, 2.0, 1.0])[y]
    X = amplitude[:, None, None] * structure.phi[y] + noise * rng.standard_normal((y.size, n, n))
    return X, y


def equal_power_templates(scale: int = 4, noise: float = 0.002, seed: int = 0, n: int = 8):
    """The templates of :func:`template_images` with 9, 4 and 1 (× ``scale``) images per class and amplitudes
    ``√(N/N_c)``: every class then carries the same input power ``d`` and ``s_c ∝ √N_c`` = 3 : 2 : 1, the setting in
    which the merged gain of the shared pair is derived (A1 with ``Σ_xx ∝ I`` on the shared frequency)."""
    structure = data.shared_pair_structure(n=n)
    counts = scale * np.array([9, 4, 1])
    y = np.repeat(np.arange(3), counts)
    amplitude = np.sqrt(counts.sum() / counts)[y]
    X = amplitude[:, None, None] * structure.phi[y] + noise * np.random.default_rng(seed).standard_normal((y.size, n, n))
    return X, y


def test_bundled_data_set():
    X, y, description = predict.load_dataset("digits-0-3")
    assert X.shape == (720, 8, 8) and sorted(set(y.tolist())) == [0, 1, 2, 3] and "No other chapter" in description
    result = predict.predict(predict.training_set(X, y), name="digits-0-3")
    assert result.k == 3  # centred images: K − 1 modes
    assert result.order_fcnn == result.order_s == [1, 2, 3]
    assert result.order_cnn == [1, 3, 2]  # the CNN gains of modes 2 and 3 swap their order
    assert result.eta_gain == pytest.approx(predict.TARGET_GAIN_STEP)


def test_npz_written_here(tmp_path):
    X, y = template_images()
    path = tmp_path / "templates.npz"
    np.savez(path, X=X, y=np.array(["vertical", "diagonal", "sine"])[y])  # string labels are fine
    X2, y2, _ = predict.load_dataset(path)
    result = predict.predict(predict.training_set(X2, y2))
    assert result.k == 3 and result.shared == [(1, 3)]
    # labels are sorted: 'diagonal' < 'sine' < 'vertical', so the modes still come by decreasing s
    assert np.all(np.diff(result.modes["s"]) < 0)
    merged = result.modes["gain_cnn"].to_numpy()
    assert merged[0] == pytest.approx(merged[2]) and merged[2] > 2 * result.modes["gain_cnn_independent"][2]
    assert result.order_cnn == [1, 3, 2] and result.order_fcnn == [1, 2, 3]


def test_merged_gain_needs_equal_input_power():
    uneven = predict.predict(predict.training_set(*template_images(per_class=20, noise=0.002)))
    even = predict.predict(predict.training_set(*equal_power_templates()))
    assert uneven.shared == even.shared == [(1, 3)]
    assert uneven.modes["d_spread"][0] > 0.5 and even.modes["d_spread"].max() < 1e-3
    assert "not reliable" in predict.format_report(uneven) and "not reliable" not in predict.format_report(even)


def test_theory_progress_follows_the_fcnn_and_the_merged_cnn_stages():
    """On data that meet the assumptions (equal input power, A1), the predicted logistics follow the runs."""
    result = predict.predict(predict.training_set(*equal_power_templates(noise=0.0002)))
    simulation = predict.simulate_stages(result, seeds=0)
    for model in ("CNN", "FCNN"):
        progress = simulation.runs[model].mode_strength[:, :, : result.k] / result.structure.s[: result.k]
        assert np.abs(progress - predict.theory_progress(result, simulation, model)).max() < 0.05, model


def test_image_folder(tmp_path):
    X, y = template_images(per_class=3)
    pixels = np.round(255 * (X - X.min()) / (X.max() - X.min())).astype(np.uint8)
    rows = ["file,label"]
    for i, (image, label) in enumerate(zip(pixels, y)):
        Image.fromarray(image, mode="L").save(tmp_path / f"img{i}.png")
        rows.append(f"img{i}.png,{label}")
    (tmp_path / "labels.csv").write_text("\n".join(rows) + "\n")
    X2, y2, _ = predict.load_dataset(tmp_path)
    assert X2.shape == X.shape and np.array_equal(y2, y)
    assert np.allclose(X2, pixels / 255.0)
    result = predict.predict(predict.training_set(X2, y2, centre=True))
    assert result.k == 2 and result.shared == []  # centring 3 classes leaves 2 modes


def test_simulate_writes_json_and_figures(tmp_path, capsys):
    X, y = template_images(per_class=2, n=6)
    np.savez(tmp_path / "small.npz", X=X, y=y)
    out = tmp_path / "out"
    assert cli(["predict", str(tmp_path / "small.npz"), "--simulate", "--networks", "1", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "predicted order, linear CNN:  [1, 3, 2]" in printed and "measured order, CNN: [1, 3, 2]" in printed
    assert sorted(p.name for p in out.iterdir()) == ["prediction.json", "stages-cnn.png", "stages-fcnn.png", "widths.png"]
    record = json.loads((out / "prediction.json").read_text())
    assert record["simulation"]["measured_order"]["FCNN"] == [[1, 2, 3]]
    assert record["prediction"]["shared_dominant_frequencies"] == [[1, 3]]


def _save(tmp_path, **arrays):
    path = tmp_path / "bad.npz"
    np.savez(path, **arrays)
    return path


X_OK, Y_OK = template_images(per_class=2)
BAD = {
    "missing file": (lambda tmp: tmp / "nowhere.npz", "no such file or directory"),
    "missing key": (lambda tmp: _save(tmp, images=X_OK, y=Y_OK), r"missing array\(s\) \['X'\]"),
    "flat images": (lambda tmp: _save(tmp, X=X_OK.reshape(6, -1), y=Y_OK), r"shape \(N, n, n\)"),
    "colour images": (lambda tmp: _save(tmp, X=np.stack([X_OK] * 3, -1), y=Y_OK), "grey levels"),
    "non-square images": (lambda tmp: _save(tmp, X=X_OK[:, :, :6], y=Y_OK), "must be square"),
    "labels of wrong length": (lambda tmp: _save(tmp, X=X_OK, y=Y_OK[:-1]), "one per image"),
    "one class": (lambda tmp: _save(tmp, X=X_OK, y=np.zeros(6, int)), "at least two classes"),
    "non-finite values": (lambda tmp: _save(tmp, X=np.where(np.arange(8) == 3, np.nan, X_OK), y=Y_OK), "NaN or infinite"),
    "all-zero images": (lambda tmp: _save(tmp, X=np.zeros((6, 8, 8)), y=Y_OK), "no structure"),
    "text file": (lambda tmp: (tmp / "data.txt").write_text("1 2 3") and tmp / "data.txt", "expected an .npz file"),
    "folder without labels.csv": (lambda tmp: tmp, "no labels.csv"),
    "labels.csv naming a missing image": (
        lambda tmp: (tmp / "labels.csv").write_text("file,label\na.png,0\n") and tmp, "'a.png' not found"),
}


@pytest.mark.parametrize("case", list(BAD), ids=list(BAD))
def test_bad_input_gives_a_clear_error_and_writes_nothing(tmp_path, capsys, case):
    make, message = BAD[case]
    source = make(tmp_path)
    out = tmp_path / "out"
    assert cli(["predict", str(source), "--simulate", "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and __import__("re").search(message, err), err
    assert not out.exists()


def test_unstable_learning_rate_is_refused(tmp_path, capsys):
    path = _save(tmp_path, X=X_OK, y=Y_OK)
    assert cli(["predict", str(path), "--lr", "5", "--out", str(tmp_path / "out")]) == 2
    assert "above the stability limit" in capsys.readouterr().err and not (tmp_path / "out").exists()


def test_module_entry_point():
    done = subprocess.run([sys.executable, "-m", "how_cnns_learn", "predict", "--help"], capture_output=True, text=True)
    assert done.returncode == 0 and "labels.csv" in done.stdout
    done = subprocess.run([sys.executable, "-m", "how_cnns_learn"], capture_output=True, text=True)
    assert done.returncode == 2 and "usage" in done.stderr
