import numpy as np
import pandas as pd
import pytest
import torch

from how_cnns_learn import repro


def test_seeding_reproduces_numpy_and_torch():
    repro.seed_everything(3)
    a = (np.random.rand(3), torch.rand(3))
    repro.seed_everything(3)
    b = (np.random.rand(3), torch.rand(3))
    np.testing.assert_array_equal(a[0], b[0])
    assert torch.equal(a[1], b[1])


def test_device_resolution():
    assert repro.resolve_device("cpu").type == "cpu"
    assert repro.resolve_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")
    with pytest.raises(ValueError, match="unknown device"):
        repro.resolve_device("tpu")
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="CUDA is not available"):
            repro.resolve_device("cuda")


@pytest.mark.parametrize("quick, seed", [("yes", 0), (True, -1), (True, 1.5)])
def test_chapter_setup_rejects_bad_parameters(quick, seed):
    with pytest.raises(ValueError):
        repro.chapter_setup(quick=quick, seed=seed, device="cpu")


def test_environment_report_names_what_a_reader_needs():
    ctx = repro.chapter_setup(quick=True, seed=0, device="cpu")
    report = repro.environment_report(ctx)
    for key in ("python", "torch", "git commit", "lib hash", "device used", "device requested", "run time [s]",
                "parameters"):
        assert key in report.index
    assert len(repro.lib_hash()) == 12


def test_progress_bar_wraps_or_passes_through(capsys):
    from how_cnns_learn import repro

    assert repro.progress_bar(range(3), enabled=False) == range(3)
    bar = repro.progress_bar(range(3), desc="toy", file=__import__("sys").stderr)
    assert list(bar) == [0, 1, 2] and "toy" in capsys.readouterr().err


def test_glue_returns_its_value_with_or_without_myst_nb(monkeypatch):
    from how_cnns_learn import repro

    shown = []
    monkeypatch.setattr("IPython.display.display", lambda *args, **kwargs: shown.append((args, kwargs)))
    monkeypatch.setattr(repro, "_myst_nb_installed", lambda: False)
    assert repro.glue("x", 1.5) == 1.5 and shown == []  # a launched notebook without MyST-NB still runs
    monkeypatch.setattr(repro, "_myst_nb_installed", lambda: True)
    assert repro.glue("x", 1.5) == 1.5 and len(shown) == 1


@pytest.mark.parametrize("value", [1.25, np.float64(1.25), np.array(3), 7, "text", [1, 2], pd.DataFrame({"a": [1]})])
def test_glue_emits_what_myst_nb_glue_emits(monkeypatch, value):
    """The book's prose reads what repro.glue displays: the same bundle and metadata as MyST-NB's own glue
    (numpy scalars first turned into Python numbers, as repro.glue does)."""
    import myst_nb.ext.glue as myst_glue

    plain = value.item() if isinstance(value, (np.generic, np.ndarray)) else value
    theirs, ours = [], []
    monkeypatch.setattr(myst_glue, "ipy_display", lambda *args, **kwargs: theirs.append((args, kwargs)))
    monkeypatch.setattr("IPython.display.display", lambda *args, **kwargs: ours.append((args, kwargs)))
    myst_glue.glue("name", plain, display=False)
    repro.glue("name", value)
    assert ours == theirs and len(ours) == 1
    assert repro.GLUE_PREFIX == myst_glue.GLUE_PREFIX


def test_glue_turns_numpy_scalars_into_python_numbers(monkeypatch):
    from how_cnns_learn import repro

    glued = {}
    monkeypatch.setattr(repro, "_myst_nb_installed", lambda: True)
    monkeypatch.setattr("IPython.core.formatters.format_display_data", lambda value: (glued.setdefault("v", []).append(value) or ({}, {})))
    monkeypatch.setattr("IPython.display.display", lambda *args, **kwargs: None)
    assert repro.glue("x", np.float64(1.25)) == 1.25
    repro.glue("n", np.array(3))
    x, n = glued["v"]
    assert type(x) is float and repr(x) == "1.25" and type(n) is int


def test_check_device_names_the_parameter():
    assert repro.check_device("cpu") == torch.device("cpu")
    assert repro.check_device(torch.device("meta")).type == "meta"
    assert repro.check_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")
    with pytest.raises(ValueError, match="device: unknown device 'tpu0'"):
        repro.check_device("tpu0")
    with pytest.raises(ValueError, match="target_device must be"):
        repro.check_device(3, name="target_device")
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="device='cuda' was asked for but CUDA is not available"):
            repro.check_device("cuda")


def test_the_footer_reports_the_devices_the_trainers_reported():
    ctx = repro.chapter_setup(quick=True, seed=0, device="cpu")
    assert repro.devices_used() == {}
    assert "none reported" in repro.environment_report(ctx).loc["device used", "value"]
    repro.record_device(torch.zeros(1, device="meta"), by="toy_trainer")
    repro.record_device(torch.nn.Linear(2, 2), by="other_trainer")
    repro.record_device("meta", by="toy_trainer")
    assert repro.devices_used() == {"meta": ["toy_trainer"], "cpu": ["other_trainer"]}
    report = repro.environment_report(ctx)
    assert report.loc["device used", "value"] == "meta (toy_trainer); cpu (other_trainer)"
    assert report.loc["device requested", "value"] == "cpu"
    repro.chapter_setup(quick=True, seed=0, device="cpu")  # a new chapter starts with an empty registry
    assert repro.devices_used() == {}
